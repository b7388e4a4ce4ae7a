"""Where rounds and decisions are kept (probe → sample → **store** → stats → plan ...)."""

from netopt.store.model import RoundRecord
from netopt.store.sqlite import SqliteStore

__all__ = ["RoundRecord", "SqliteStore"]
