"""bench/ingest_scale's candidate: `netopt serve` whose PostgreSQL store writes on the event
loop through psycopg's AsyncConnectionPool (COPY on an AsyncConnection) instead of the
writer thread's sync pool. The same write (netopt.store.pg_writes: claim, COPY, move, queue
the rollups, split, COPY the decisions) in the same transaction, so the bench compares only
where it runs.

    python bench/pg_async_writes.py serve --config FILE    (as `netopt serve`)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

import netopt.store.postgres as pg  # noqa: E402
from netopt.store.model import BatchOutcome, DecisionRecord, RoundRecord  # noqa: E402
from netopt.store.pg_schema import STAGING  # noqa: E402
from netopt.store.pg_writes import (  # noqa: E402
    CLAIM,
    COPY_DECISIONS,
    COPY_IN,
    MOVE_IN,
    STORED,
    Key,
    days_of,
    dirty,
    first_of_each,
    outcomes,
    split,
    stored_args,
)
from netopt.store.writer import Batch  # noqa: E402


async def _staging(db: psycopg.AsyncConnection[Any]) -> None:
    await db.execute(STAGING)


class AsyncWritePostgresStore(pg.PostgresStore):
    """PostgresStore, its writes awaited on the loop (an AsyncConnectionPool of its own)."""

    _wpool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    async def _writes(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._wpool is None:
            self._wpool = AsyncConnectionPool(
                self._url, min_size=1, max_size=2, open=False, configure=_staging,
                kwargs={"autocommit": True, "connect_timeout": self._connect_s},
            )  # fmt: skip
            await self._wpool.open(wait=True)
        return self._wpool

    def _make_days(self, days: set[int]) -> None:
        with self._pool.connection() as db:
            self._partitions(db, days)

    async def _commit(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        first = first_of_each(batches)
        if days_of(rounds, first) - self._days:  # rare: a day not made ahead
            await asyncio.to_thread(self._make_days, days_of(rounds, first))
        try:
            return await self._commit_on(await self._writes(), rounds, decisions, batches, first)
        except psycopg.Error:
            self._days.clear()  # as _write: a partition dropped meanwhile, recheck
            raise

    async def _commit_on(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], rounds: list[RoundRecord],
        decisions: list[DecisionRecord], batches: list[Batch], first: dict[str, Batch],
    ) -> list[BatchOutcome]:  # fmt: skip
        async with pool.connection() as db, db.transaction():
            new: set[str] = set()
            if first:
                cur = await db.execute(CLAIM, self._claim_args(list(first.values())))
                new = {str(row[0]) for row in await cur.fetchall()}
            fresh = [b for b in first.values() if b.batch_id in new]
            records = [*rounds, *(r for b in fresh for r in b.records)]
            stored: dict[str, tuple[RoundRecord, ...]] = {b.batch_id: () for b in fresh}
            if records:
                async with db.cursor() as c:
                    async with c.copy(COPY_IN) as copy:
                        for i, r in enumerate(records):
                            await copy.write_row((i, *pg._round_row(r)))
                    moved: set[Key] = set(await (await c.execute(MOVE_IN)).fetchall())
                for sql, args in dirty(moved):
                    await db.execute(sql, args)
                stored = split(rounds, fresh, moved)
            if fresh:
                await db.execute(STORED, stored_args(fresh, stored))
            if decisions:
                async with db.cursor() as c, c.copy(COPY_DECISIONS) as copy:
                    for d in decisions:
                        await copy.write_row(pg._decision_row(d))
        return outcomes(batches, first, new, stored)

    async def aclose(self) -> None:
        if self._wpool is not None:
            await self._wpool.close()
        await super().aclose()


if __name__ == "__main__":
    pg.PostgresStore = AsyncWritePostgresStore  # type: ignore[misc]  # what open_store opens
    from netopt.cli import main

    sys.exit(main(sys.argv[1:]))
