"""PostgreSQL store (`store.url: postgresql://…`): what the SQLite store keeps, shared by several
controllers (probe → sample → **store** → stats).

The queues and the writer task are writer.py's, as for SQLite; a write here is one
transaction on a connection of a psycopg 3 pool: the batch ids are claimed first (`INSERT …
ON CONFLICT DO NOTHING`, so of two controllers handed one batch exactly one stores it), the
rounds are COPYed into a per-connection staging table and moved into the day-partitioned
`rounds` with `ON CONFLICT DO NOTHING RETURNING` (which tells what was new), then the rollup
buckets touched are queued and the decisions COPYed. Rollups are rebuilt from below exactly as
in SQLite (minutes from rounds, hours from minutes; reads sum the queued buckets on the fly),
and queued buckets are claimed with `DELETE … RETURNING`, so two controllers never rebuild one
bucket at once. Retention drops whole day partitions and deletes what is older than the cutoff
in the one day that straddles it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool

from netopt.errors import StoreError
from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord
from netopt.store.pg_schema import (
    DAY_NS,
    STAGING,
    create_partitions,
    migrate,
    partitions,
)
from netopt.store.schema import ROLLUP_COLUMNS, ROUND_COLUMNS
from netopt.store.sqlite import _DECISION_COLUMNS, TABLES
from netopt.store.writer import Batch, QueuedWriter

_COLS = ", ".join(ROUND_COLUMNS)
_GROUP = " GROUP BY bucket, src, dst, kind"
_MINUTE_OF = "(started_wall_ns / 1000000000) / 60 * 60"
_MINUTES_SELECT = (
    f"SELECT {_MINUTE_OF} AS bucket, src, dst, kind, COUNT(*), SUM(sent), SUM(received), "
    "MIN(rtt_min_ms), MAX(rtt_max_ms), COALESCE(SUM(rtt_p50_ms), 0), COUNT(rtt_p50_ms), "
    "COALESCE(SUM(jitter_ms), 0), COUNT(jitter_ms)"
)
_HOURS_SELECT = (
    "SELECT bucket_s / 3600 * 3600 AS bucket, src, dst, kind, SUM(rounds)::BIGINT, "
    "SUM(sent)::BIGINT, SUM(received)::BIGINT, MIN(rtt_min_ms), MAX(rtt_max_ms), "
    "COALESCE(SUM(rtt_p50_sum_ms), 0), SUM(rtt_p50_n)::BIGINT, COALESCE(SUM(jitter_sum_ms), 0), "
    "SUM(jitter_n)::BIGINT"
)
# the raw rounds of some minute buckets, found by index range (never by scanning every round)
_IN_MINUTES = (
    " FROM rounds r JOIN {buckets} ON r.started_wall_ns >= d.b * 1000000000 "
    "AND r.started_wall_ns < (d.b + 60) * 1000000000"
)
_REBUILD = {
    "1m": f"INSERT INTO rounds_1m ({ROLLUP_COLUMNS}) {_MINUTES_SELECT}"
    + _IN_MINUTES.format(buckets="unnest(%s::BIGINT[]) AS d(b)")
    + _GROUP,
    "1h": f"INSERT INTO rounds_1h ({ROLLUP_COLUMNS}) {_HOURS_SELECT} FROM rounds_1m m "
    "JOIN unnest(%s::BIGINT[]) AS d(b) ON m.bucket_s >= d.b AND m.bucket_s < d.b + 3600" + _GROUP,
}
# what a rollup says now: its rebuilt rows, and the queued buckets summed from what is below
_MINUTES = (
    f"SELECT {ROLLUP_COLUMNS} FROM rounds_1m "
    "WHERE bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty_1m) "
    f"UNION ALL {_MINUTES_SELECT}"
    + _IN_MINUTES.format(buckets="(SELECT bucket_s AS b FROM rollup_dirty_1m) d")
    + _GROUP
)
_READ = {
    "1m": f"SELECT * FROM ({_MINUTES}) m WHERE bucket_s >= %s ORDER BY 1, 2, 3, 4",
    "1h": f"SELECT {ROLLUP_COLUMNS} FROM rounds_1h WHERE bucket_s >= %s "
    "AND bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty) "
    f"UNION ALL SELECT * FROM ({_HOURS_SELECT} FROM ({_MINUTES}) m "
    "WHERE bucket_s / 3600 * 3600 IN (SELECT bucket_s FROM rollup_dirty)" + _GROUP + ") h "
    "WHERE bucket >= %s ORDER BY 1, 2, 3, 4",
}
_ROLLUPS = (("1m", "rounds_1m", "rollup_dirty_1m", 60), ("1h", "rounds_1h", "rollup_dirty", 3600))
_round_row = attrgetter(*ROUND_COLUMNS)
_decision_row = attrgetter(*_DECISION_COLUMNS)
_Key = tuple[str, str, str, int]
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
                self.version = migrate(db, self.path)
                self._days = set(partitions(db))
                self._ahead(db)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=pool_size, timeout=connect_timeout_s, open=True,
            kwargs={"autocommit": True, "connect_timeout": timeout}, configure=_configure,
            name="netopt-store",
        )  # fmt: skip

    def _ahead(self, db: psycopg.Connection[Any]) -> None:
        today = int(self._clock() * 1e9) // DAY_NS
        self._partitions(db, range(today, today + AHEAD_DAYS + 1))

    def _partitions(self, db: psycopg.Connection[Any], days: Iterable[int]) -> None:
        missing = set(days) - self._days
        if missing:
            create_partitions(db, missing)
            self._days |= missing

    # --- one write ----------------------------------------------------------------------
    def _write(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        first: dict[str, Batch] = {}
        for b in batches:
            first.setdefault(b.batch_id, b)  # a batch twice in one write: the second is a dup
        records = [*rounds, *(r for b in first.values() for r in b.records)]
        try:
            with self._pool.connection() as db:
                self._partitions(db, {r.started_wall_ns // DAY_NS for r in records})
                with db.transaction():
                    new = self._claim(db, list(first.values()))
                    fresh = [b for b in first.values() if b.batch_id in new]
                    stored = self._insert(db, rounds, fresh)
                    if fresh:
                        db.execute(
                            "UPDATE batches AS b SET stored = v.n FROM unnest(%s::TEXT[], "
                            "%s::INTEGER[]) AS v(id, n) WHERE b.batch_id = v.id",
                            ([b.batch_id for b in fresh], [len(stored[b.batch_id]) for b in fresh]),
                        )  # fmt: skip
                    self._copy_decisions(db, decisions)
        except psycopg.Error:
            self._days.clear()  # a partition dropped meanwhile (another controller): recheck
            raise
        return [
            BatchOutcome(b.batch_id, len(b.records), stored[b.batch_id], False)
            if first[b.batch_id] is b and b.batch_id in new
            else BatchOutcome(b.batch_id, len(b.records), (), True)
            for b in batches
        ]

    def _claim(self, db: psycopg.Connection[Any], batches: list[Batch]) -> set[str]:
        """Record the batch ids not stored yet; returns those (the others are duplicates)."""
        if not batches:
            return set()
        now_ns = int(self._clock() * 1e9)
        ordered = sorted(batches, key=attrgetter("batch_id"))  # one lock order for everyone
        cur = db.execute(
            "INSERT INTO batches (batch_id, agent, received_wall_ns, rounds, stored) "
            "SELECT * FROM unnest(%s::TEXT[], %s::TEXT[], %s::BIGINT[], %s::INTEGER[], "
            "%s::INTEGER[]) ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
            ([b.batch_id for b in ordered], [b.agent for b in ordered], [now_ns] * len(ordered),
             [len(b.records) for b in ordered], [0] * len(ordered)),
        )  # fmt: skip
        return {str(row[0]) for row in cur.fetchall()}

    def _insert(
        self, db: psycopg.Connection[Any], rounds: list[RoundRecord], fresh: list[Batch]
    ) -> dict[str, tuple[RoundRecord, ...]]:
        """COPY the rounds in, keep the new ones; returns each fresh batch's new rounds (a
        round in two places of one write counts where it came first, as in SQLite)."""
        records = [*rounds, *(r for b in fresh for r in b.records)]
        if not records:
            return {b.batch_id: () for b in fresh}
        with db.cursor() as cur:
            with cur.copy(f"COPY netopt_incoming (ord, {_COLS}) FROM STDIN") as copy:
                for i, r in enumerate(records):
                    copy.write_row((i, *_round_row(r)))
            cur.execute(
                f"INSERT INTO rounds ({_COLS}) SELECT {_COLS} FROM netopt_incoming ORDER BY ord "
                "ON CONFLICT DO NOTHING RETURNING src, dst, kind, started_wall_ns"
            )
            new: set[_Key] = set(cur.fetchall())
        minutes = sorted({k[3] // 1_000_000_000 // 60 * 60 for k in new})
        hours = sorted({m // 3600 * 3600 for m in minutes})
        for queue, buckets in (("rollup_dirty_1m", minutes), ("rollup_dirty", hours)):
            db.execute(
                f"INSERT INTO {queue} (bucket_s) SELECT unnest(%s::BIGINT[]) "
                "ON CONFLICT DO NOTHING",
                (buckets,),
            )
        claimed: set[_Key] = set()

        def take(r: RoundRecord) -> bool:
            key = (r.src, r.dst, r.kind, r.started_wall_ns)
            if key in new and key not in claimed:
                claimed.add(key)
                return True
            return False

        for r in rounds:
            take(r)
        return {b.batch_id: tuple(r for r in b.records if take(r)) for b in fresh}

    @staticmethod
    def _copy_decisions(db: psycopg.Connection[Any], decisions: list[DecisionRecord]) -> None:
        if decisions:
            sql = f"COPY decisions ({', '.join(_DECISION_COLUMNS)}) FROM STDIN"
            with db.cursor() as cur, cur.copy(sql) as copy:
                for d in decisions:
                    copy.write_row(_decision_row(d))

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

    # --- reads ---------------------------------------------------------------------------
    def rounds(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]:
        where, args = ["started_wall_ns >= %s"], [since_wall_ns]
        for column, value in (("src", src), ("dst", dst)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)  # type: ignore[arg-type]
        sql = f"SELECT {_COLS} FROM rounds WHERE {' AND '.join(where)} ORDER BY started_wall_ns"
        with self._pool.connection() as db:
            rows = db.execute(sql, args).fetchall()
        return [RoundRecord(*row) for row in rows]

    def rollup(self, resolution: str = "1m", since_s: int = 0) -> list[dict[str, object]]:
        """Aggregates per path and bucket ('1m' or '1h'), oldest first."""
        if resolution not in _READ:
            raise ValueError(f"rollup resolution {resolution!r}: use '1m' or '1h'")
        args = (since_s,) * (2 if resolution == "1h" else 1)
        with self._pool.connection() as db:
            cur = db.execute(_READ[resolution], args)
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def decisions(self, since_wall_ns: int = 0) -> list[DecisionRecord]:
        sql = (f"SELECT {', '.join(_DECISION_COLUMNS)} FROM decisions WHERE at_wall_ns >= %s "
               "ORDER BY id")  # fmt: skip
        with self._pool.connection() as db:
            rows = db.execute(sql, (since_wall_ns,)).fetchall()
        return [DecisionRecord(*row) for row in rows]

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
        sql = ("SELECT id, received_wall_ns, site, created, verdict, verdicts, partial "
               "FROM assessments ORDER BY id DESC LIMIT %s")  # fmt: skip
        with self._pool.connection() as db:
            cur = db.execute(sql, (limit,))
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def assessment(self, assessment_id: int) -> str | None:
        """The report.json text of one uploaded report, or None."""
        with self._pool.connection() as db:
            row = db.execute(
                "SELECT body FROM assessments WHERE id = %s", (assessment_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def count(self, table: str = "rounds") -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        with self._pool.connection() as db:
            row = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._thread.shutdown(wait=True)  # a write still in flight finishes first
        self._pool.close()
