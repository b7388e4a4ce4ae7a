"""Where rounds and decisions are kept (probe → sample → **store** → stats → plan ...).

`open_store(config.store, …)` picks the backend by the URL's scheme: `sqlite:///PATH`
(sqlite.py, the default) or `postgresql://…` (postgres.py, shared by several controllers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord, Store
from netopt.store.sqlite import SqliteStore, store_stats

if TYPE_CHECKING:
    from netopt.config import StoreConfig
    from netopt.store.postgres import PostgresStore

__all__ = [
    "BatchOutcome",
    "DecisionRecord",
    "PostgresStore",
    "Retention",
    "RoundRecord",
    "SqliteStore",
    "Store",
    "open_store",
    "store_stats",
]


def __getattr__(name: str) -> object:
    if name == "PostgresStore":  # psycopg is imported only by who uses PostgreSQL
        from netopt.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)


def open_store(
    config: StoreConfig,
    *,
    wall_clock: Callable[[], float],
    on_error: Callable[[Exception], None] | None = None,
    on_drop: Callable[[int], None] | None = None,
) -> Store:
    """The store `config.url` names (its scheme was checked by config validation)."""
    common = {"retention": config.retention(), "max_pending_rounds": config.max_pending_rounds,
              "wall_clock": wall_clock, "on_error": on_error, "on_drop": on_drop}  # fmt: skip
    if config.url.startswith(("postgresql://", "postgres://")):
        from netopt.store.postgres import PostgresStore

        return PostgresStore(config.url, pool_size=config.pool_size, **common)  # type: ignore[arg-type]
    return SqliteStore(config.sqlite_path, **common)  # type: ignore[arg-type]
