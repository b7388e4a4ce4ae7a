"""PostgreSQL store (`store.url: postgresql://…`): what the SQLite store keeps, shared by several
controllers (probe → sample → **store** → stats).

The queues and the writer task are writer.py's, as for SQLite; a write here (pg_writes.py) is
one transaction on a connection of a psycopg 3 pool: the batch ids are claimed first (`INSERT …
ON CONFLICT DO NOTHING`, so of two controllers handed one batch exactly one stores it), the
rounds are COPYed into a per-connection staging table and moved into the day-partitioned
`rounds` with `ON CONFLICT DO NOTHING RETURNING` (which tells what was new), then the rollup
buckets touched are queued and the decisions COPYed. Rollups are rebuilt from below exactly as
in SQLite (minutes from rounds, hours from minutes; reads sum the queued buckets on the fly),
and queued buckets are claimed with `DELETE … RETURNING`, so two controllers never rebuild one
bucket at once. Retention drops whole day partitions and deletes what is older than the cutoff
in the one day that straddles it.

Reads (pg_reads.py) have two doors: the `*_async` ones, which the daemon's event loop uses,
run on a psycopg AsyncConnectionPool under `read_timeout_s`, so a slow or stalled database
never blocks the loop; the plain ones run on the writer's sync pool (scripts, tests).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, ClassVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from netopt.errors import StoreError
from netopt.store import pg_reads as reads
from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord
from netopt.store.pg_reads import GROUP, HOURS_SELECT, IN_MINUTES, MINUTES_SELECT
from netopt.store.pg_schema import (
    DAY_NS,
    STAGING,
    bound_lock_waits,
    create_partitions,
    migrate,
    partitions,
)
from netopt.store.pg_writes import (
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
from netopt.store.schema import ROLLUP_COLUMNS, ROUND_COLUMNS
from netopt.store.sqlite import _DECISION_COLUMNS
from netopt.store.writer import Batch, QueuedWriter

_REBUILD = {
    "1m": f"INSERT INTO rounds_1m ({ROLLUP_COLUMNS}) {MINUTES_SELECT}"
    + IN_MINUTES.format(buckets="unnest(%s::BIGINT[]) AS d(b)")
    + GROUP,
    "1h": f"INSERT INTO rounds_1h ({ROLLUP_COLUMNS}) {HOURS_SELECT} FROM rounds_1m m "
    "JOIN unnest(%s::BIGINT[]) AS d(b) ON m.bucket_s >= d.b AND m.bucket_s < d.b + 3600" + GROUP,
}
_ROLLUPS = (("1m", "rounds_1m", "rollup_dirty_1m", 60), ("1h", "rounds_1h", "rollup_dirty", 3600))
log = logging.getLogger("netopt.store")
_round_row = attrgetter(*ROUND_COLUMNS)
_decision_row = attrgetter(*_DECISION_COLUMNS)
AHEAD_DAYS = 2  # day partitions kept ready beyond today


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", url)


def _configure(db: psycopg.Connection[Any]) -> None:
    db.execute(STAGING)  # autocommit: the staging table lives as long as the connection


class PostgresStore(QueuedWriter):
    """A PostgreSQL database shared by controllers; see the module docstring."""

    db_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)

    def __init__(
        self,
        url: str,
        *,
        retention: Retention | None = None,
        max_pending_rounds: int = 100_000,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        on_error: Callable[[Exception], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(
            retention=retention, max_pending_rounds=max_pending_rounds, wall_clock=wall_clock,
            on_error=on_error, on_drop=on_drop,
        )  # fmt: skip
        self.path = redact(url)
        timeout = max(1, int(connect_timeout_s))
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=timeout) as db:
                bound_lock_waits(db, connect_timeout_s)  # migration and partitions alike
                self.version = migrate(db, self.path, lock_wait_s=connect_timeout_s)
                self._days = set(partitions(db))
                self._ahead(db)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        # the writer thread's pool (and sync reads: scripts, tests); writes are one at a time
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=2, timeout=connect_timeout_s, open=True,
            kwargs={"autocommit": True, "connect_timeout": timeout}, configure=_configure,
            name="netopt-store",
        )  # fmt: skip
        # the event loop's reads: an AsyncConnectionPool of `pool_size`, opened on first use
        self._url, self._pool_size, self._connect_s = url, pool_size, timeout
        self.read_timeout_s = read_timeout_s
        self._apool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None

    def _ahead(self, db: psycopg.Connection[Any]) -> None:
        today = int(self._clock() * 1e9) // DAY_NS
        self._partitions(db, range(today, today + AHEAD_DAYS + 1))

    def _partitions(self, db: psycopg.Connection[Any], days: Iterable[int]) -> None:
        missing = set(days) - self._days
        if missing:
            create_partitions(db, missing)
            self._days |= missing

    # --- one write (its SQL and pure steps are pg_writes.py's) --------------------------
    def _write(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        first = first_of_each(batches)
        try:
            with self._pool.connection() as db:
                self._partitions(db, days_of(rounds, first))
                with db.transaction():
                    new: set[str] = set()
                    if first:
                        cur = db.execute(CLAIM, self._claim_args(list(first.values())))
                        new = {str(row[0]) for row in cur.fetchall()}
                    fresh = [b for b in first.values() if b.batch_id in new]
                    stored = self._insert(db, rounds, fresh)
                    if fresh:
                        db.execute(STORED, stored_args(fresh, stored))
                    if decisions:
                        with db.cursor() as c, c.copy(COPY_DECISIONS) as copy:
                            for d in decisions:
                                copy.write_row(_decision_row(d))
        except psycopg.Error:
            self._days.clear()  # a partition dropped meanwhile (another controller): recheck
            raise
        return outcomes(batches, first, new, stored)

    def _claim_args(self, batches: list[Batch]) -> tuple[list[Any], ...]:
        """CLAIM's arguments: the batch ids not stored yet come back (the rest are dups)."""
        now_ns = int(self._clock() * 1e9)
        ordered = sorted(batches, key=attrgetter("batch_id"))  # one lock order for everyone
        return ([b.batch_id for b in ordered], [b.agent for b in ordered], [now_ns] * len(ordered),
                [len(b.records) for b in ordered], [0] * len(ordered))  # fmt: skip

    def _insert(
        self, db: psycopg.Connection[Any], rounds: list[RoundRecord], fresh: list[Batch]
    ) -> dict[str, tuple[RoundRecord, ...]]:
        """COPY the rounds in, keep the new ones; returns each fresh batch's new rounds."""
        records = [*rounds, *(r for b in fresh for r in b.records)]
        if not records:
            return {b.batch_id: () for b in fresh}
        with db.cursor() as cur:
            with cur.copy(COPY_IN) as copy:
                for i, r in enumerate(records):
                    copy.write_row((i, *_round_row(r)))
            new: set[Key] = set(cur.execute(MOVE_IN).fetchall())
        for sql, args in dirty(new):
            db.execute(sql, args)
        return split(rounds, fresh, new)

    # --- rollups and retention ----------------------------------------------------------
    def refresh_rollups(self) -> int:
        """Rebuild the minutes and hours written to since the last time — minutes from the
        raw rounds, then hours from the minutes; returns how many buckets."""
        with self._pool.connection() as db, db.transaction():
            done = 0
            for resolution, table, queue, _size in _ROLLUPS:  # minutes first
                sql = f"DELETE FROM {queue} RETURNING bucket_s"
                buckets = [int(b) for (b,) in db.execute(sql).fetchall()]
                if buckets:
                    db.execute(f"DELETE FROM {table} WHERE bucket_s = ANY(%s)", (buckets,))
                    db.execute(_REBUILD[resolution], (buckets,))
                done += len(buckets)
            return done

    def prune(self, now_wall_s: float | None = None) -> dict[str, int]:
        """Delete what is past its retention; returns rows deleted per table. Raw rounds go by
        whole day partitions, and by DELETE in the day the cutoff falls in."""
        self.refresh_rollups()
        now = self._clock() if now_wall_s is None else now_wall_s
        ret, day = self.retention, 86400.0
        raw_cutoff_ns = int((now - ret.raw_days * day) * 1e9)
        plan = (
            ("rounds", "started_wall_ns", raw_cutoff_ns),
            ("rounds_1m", "bucket_s", int(now - ret.minute_days * day)),
            ("rounds_1h", "bucket_s", int(now - ret.hour_days * day)),
            ("batches", "received_wall_ns", int((now - ret.batch_ids_days * day) * 1e9)),
            ("decisions", "at_wall_ns", int((now - ret.minute_days * day) * 1e9)),
        )
        with self._pool.connection() as db:
            deleted = {"rounds": self._drop_days(db, raw_cutoff_ns)}
            with db.transaction():
                for table, column, cutoff in plan:
                    sql = f"DELETE FROM {table} WHERE {column} < %s"
                    cur = db.execute(sql, (cutoff,))
                    deleted[table] = deleted.get(table, 0) + cur.rowcount
            self._ahead(db)
        return deleted

    def _drop_days(self, db: psycopg.Connection[Any], cutoff_ns: int) -> int:
        """Drop the day partitions wholly before the cutoff; returns the rounds they held
        (summed from the minute rollup, just rebuilt, when it is kept at least as long)."""
        dropped = 0
        exact_from_minutes = self.retention.minute_days >= self.retention.raw_days
        for d, name in sorted(partitions(db).items()):
            if (d + 1) * DAY_NS > cutoff_ns:
                continue
            with db.transaction():
                if exact_from_minutes:
                    sql = "SELECT SUM(rounds) FROM rounds_1m WHERE bucket_s >= %s AND bucket_s < %s"
                    row = db.execute(sql, (d * 86400, (d + 1) * 86400)).fetchone()
                else:
                    row = db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()
                dropped += int(row[0] or 0) if row else 0
                db.execute(f"DROP TABLE {name}")
            self._days.discard(d)
        return dropped

    # --- reads: sync on the writer's pool, async on the loop's AsyncConnectionPool -------
    def _run(self, q: reads.Query) -> Any:
        with self._pool.connection() as db:
            return reads.run(db, q)

    async def _run_async(self, q: reads.Query) -> Any:
        """One read on the event loop, never blocking it, under `read_timeout_s`."""
        try:
            async with asyncio.timeout(self.read_timeout_s):
                async with (await self._reads()).connection() as db:
                    return await reads.run_async(db, q)
        except TimeoutError:
            raise StoreError(f"store read not answered within {self.read_timeout_s} s") from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"store read failed: {exc}") from None

    async def _reads(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The read pool of the running loop, opened on its first read. A pool lives on one
        loop: a new loop (only tests make more than one) gets a pool of its own."""
        loop = asyncio.get_running_loop()
        if self._apool is None or self._apool_loop is not loop:
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self._url, min_size=1, max_size=self._pool_size, timeout=self.read_timeout_s,
                open=False, kwargs={"autocommit": True, "connect_timeout": self._connect_s},
                name="netopt-store-reads",
            )  # fmt: skip
            self._apool, self._apool_loop = pool, loop
            await pool.open()  # starts its workers; connections are made in the background
        return self._apool

    def rounds(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]:
        return self._run(reads.rounds(src, dst, since_wall_ns))  # type: ignore[no-any-return]

    async def rounds_async(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]:
        return await self._run_async(reads.rounds(src, dst, since_wall_ns))  # type: ignore[no-any-return]

    def rollup(self, resolution: str = "1m", since_s: int = 0) -> list[dict[str, object]]:
        """Aggregates per path and bucket ('1m' or '1h'), oldest first."""
        return self._run(reads.rollup(resolution, since_s))  # type: ignore[no-any-return]

    async def rollup_async(
        self, resolution: str = "1m", since_s: int = 0
    ) -> list[dict[str, object]]:
        return await self._run_async(reads.rollup(resolution, since_s))  # type: ignore[no-any-return]

    def decisions(self, since_wall_ns: int = 0) -> list[DecisionRecord]:
        return self._run(reads.decisions(since_wall_ns))  # type: ignore[no-any-return]

    async def decisions_async(self, since_wall_ns: int = 0) -> list[DecisionRecord]:
        return await self._run_async(reads.decisions(since_wall_ns))  # type: ignore[no-any-return]

    # --- assessments: add_assessment is the writer's, the insert and reads are here ------
    def _insert_assessment(self, row: tuple[object, ...]) -> int:
        sql = ("INSERT INTO assessments (received_wall_ns, site, created, verdict, verdicts, "
               "partial, body) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id")  # fmt: skip
        try:
            with self._pool.connection() as db:
                got = db.execute(sql, row).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"cannot store the assessment: {exc}") from None
        return int(got[0]) if got else 0

    def assessments(self, limit: int = 100) -> list[dict[str, object]]:
        """Uploaded reports, newest first: id, site, created, verdict, verdicts (JSON text)."""
        return self._run(reads.assessments(limit))  # type: ignore[no-any-return]

    async def assessments_async(self, limit: int = 100) -> list[dict[str, object]]:
        return await self._run_async(reads.assessments(limit))  # type: ignore[no-any-return]

    def assessment(self, assessment_id: int) -> str | None:
        """The report.json text of one uploaded report, or None."""
        return self._run(reads.assessment(assessment_id))  # type: ignore[no-any-return]

    async def assessment_async(self, assessment_id: int) -> str | None:
        return await self._run_async(reads.assessment(assessment_id))  # type: ignore[no-any-return]

    def count(self, table: str = "rounds") -> int:
        return self._run(reads.count(table))  # type: ignore[no-any-return]

    async def count_async(self, table: str = "rounds") -> int:
        return await self._run_async(reads.count(table))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close from the event loop: the read pool, then the writer's side in a thread."""
        pool, self._apool = self._apool, None
        if pool is not None and self._apool_loop is asyncio.get_running_loop():
            await pool.close(timeout=self._connect_s)
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close from synchronous code (after async reads, `aclose` closes their pool)."""
        self._thread.shutdown(wait=True)  # a write still in flight finishes first
        self._pool.close()
        if self._apool is not None:  # its loop is gone or not ours to wait on: let it go
            log.warning("store_read_pool_abandoned path=%s (close it with aclose)", self.path)
            self._apool = None
