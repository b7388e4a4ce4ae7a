"""SQLite store (default): raw rounds, 1-minute and 1-hour rollups, decisions, batch ids.

probe → sample → **store** → stats. The queues and the writer task are writer.py's; here is
what one write does: one transaction (WAL, synchronous=FULL), so an acknowledged batch is on
disk. Reads use their own connection; the `*_async` reads, which the daemon's event loop
uses, run the same read in a thread (one at a time on that connection), under
`read_timeout_s`, so a slow disk never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import ClassVar, TypeVar

from netopt.errors import StoreError
from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord
from netopt.store.schema import (
    HOURS_FROM_MINUTES,
    MINUTES_FROM_ROUNDS,
    ROLLUP_COLUMNS,
    ROUND_COLUMNS,
    migrate,
)
from netopt.store.writer import Batch, QueuedWriter

_DIRTY = {
    "1m": "INSERT OR IGNORE INTO rollup_dirty_1m (bucket_s) VALUES (?)",
    "1h": "INSERT OR IGNORE INTO rollup_dirty (bucket_s) VALUES (?)",
}
_GROUP = " GROUP BY bucket, src, dst, kind"
_REBUILD = {
    "1m": f"INSERT INTO rounds_1m ({ROLLUP_COLUMNS}) {MINUTES_FROM_ROUNDS} "
    "WHERE started_wall_ns >= ? AND started_wall_ns < ?" + _GROUP,
    "1h": f"INSERT INTO rounds_1h ({ROLLUP_COLUMNS}) {HOURS_FROM_MINUTES} FROM rounds_1m "
    "WHERE bucket_s >= ? AND bucket_s < ?" + _GROUP,
}
# what a rollup says now: its rebuilt rows, and the queued buckets summed from what is below
_MINUTES = (
    f"SELECT {ROLLUP_COLUMNS} FROM rounds_1m "
    "WHERE bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty_1m) "
    f"UNION ALL {MINUTES_FROM_ROUNDS} WHERE (CAST(started_wall_ns / 1000000000 AS INTEGER) / 60)"
    " * 60 IN (SELECT bucket_s FROM rollup_dirty_1m)" + _GROUP
)
_READ = {
    "1m": f"SELECT * FROM ({_MINUTES}) WHERE bucket_s >= ? ORDER BY 1, 2, 3",
    "1h": f"SELECT {ROLLUP_COLUMNS} FROM rounds_1h WHERE bucket_s >= ? "
    "AND bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty) "
    f"UNION ALL SELECT * FROM ({HOURS_FROM_MINUTES} FROM ({_MINUTES}) "
    "WHERE (bucket_s / 3600) * 3600 IN (SELECT bucket_s FROM rollup_dirty)" + _GROUP + ") "
    "WHERE bucket >= ? ORDER BY 1, 2, 3",
}
# (resolution, table, queue of buckets to rebuild, bucket seconds, unit of what it sums)
_ROLLUPS = (
    ("1m", "rounds_1m", "rollup_dirty_1m", 60, 1_000_000_000),  # raw rounds: ns
    ("1h", "rounds_1h", "rollup_dirty", 3600, 1),  # minutes: s
)
_INSERT_ROUND = (
    f"INSERT OR IGNORE INTO rounds ({', '.join(ROUND_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROUND_COLUMNS))})"
)
_DECISION_COLUMNS = (
    "at_wall_ns", "region", "dest", "action", "old_entry", "new_entry", "old_mos", "new_mos",
    "consecutive", "penalty", "reason", "inputs",
)  # fmt: skip
# a record's values in column order, read straight from its slots (astuple deep-copies)
_round_row = attrgetter(*ROUND_COLUMNS)
_decision_row = attrgetter(*_DECISION_COLUMNS)
assert tuple(f.name for f in fields(RoundRecord)) == ROUND_COLUMNS
assert tuple(f.name for f in fields(DecisionRecord)) == _DECISION_COLUMNS

_INSERT_DECISION = (
    f"INSERT INTO decisions ({', '.join(_DECISION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_DECISION_COLUMNS))})"
)
_T = TypeVar("_T")
TABLES = ("rounds", "rounds_1m", "rounds_1h", "decisions", "batches", "assessments")


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class SqliteStore(QueuedWriter):
    """A SQLite file in WAL mode, written by one writer task; see the module docstring."""

    db_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(
        self,
        path: str | Path,
        *,
        retention: Retention | None = None,
        max_pending_rounds: int = 100_000,
        wall_clock: Callable[[], float] = time.time,
        on_error: Callable[[Exception], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
        read_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            retention=retention, max_pending_rounds=max_pending_rounds, wall_clock=wall_clock,
            on_error=on_error, on_drop=on_drop,
        )  # fmt: skip
        self.path = str(path)
        self.read_timeout_s = read_timeout_s
        self._read_lock = threading.Lock()  # the read connection: one read at a time
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = _connect(self.path)
            self.version = migrate(self._db, self.path)
            self._read = self._db if self.path == ":memory:" else _connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None

    # --- one write ----------------------------------------------------------------------
    def _write(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        """One transaction: local rounds, decisions, then each batch unless already stored."""
        db, now_ns = self._db, int(self._clock() * 1e9)
        outcomes = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_INSERT_ROUND, map(_round_row, rounds))
            db.executemany(_INSERT_DECISION, map(_decision_row, decisions))
            seconds = {int(r.started_wall_ns // 1_000_000_000) for r in rounds}
            for b in batches:
                seconds.update(int(r.started_wall_ns // 1_000_000_000) for r in b.records)
            for resolution, _table, _queue, size, _unit in _ROLLUPS:  # see refresh_rollups
                buckets = {s // size * size for s in seconds}
                db.executemany(_DIRTY[resolution], [(b,) for b in buckets])
            for b in batches:
                seen = db.execute("SELECT 1 FROM batches WHERE batch_id = ?", (b.batch_id,))
                if seen.fetchone() is not None:
                    outcomes.append(BatchOutcome(b.batch_id, len(b.records), (), True))
                    continue
                stored = tuple(r for r in b.records if _inserted(db, r))
                db.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                    (b.batch_id, b.agent, now_ns, len(b.records), len(stored)),
                )
                outcomes.append(BatchOutcome(b.batch_id, len(b.records), stored, False))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return outcomes

    def refresh_rollups(self) -> int:
        """Rebuild the minutes and hours written to since the last time — minutes from the
        raw rounds, then hours from the minutes (writer thread); returns how many buckets."""
        db = self._db
        queued = {r: [b for (b,) in db.execute(f"SELECT bucket_s FROM {q}")]
                  for r, _t, q, _s, _u in _ROLLUPS}  # fmt: skip
        if not any(queued.values()):
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for resolution, table, queue, size, unit in _ROLLUPS:  # minutes first
                for b in queued[resolution]:
                    db.execute(f"DELETE FROM {table} WHERE bucket_s = ?", (b,))
                    db.execute(_REBUILD[resolution], (b * unit, (b + size) * unit))
                    db.execute(f"DELETE FROM {queue} WHERE bucket_s = ?", (b,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return sum(len(q) for q in queued.values())

    def prune(self, now_wall_s: float | None = None) -> dict[str, int]:
        """Delete what is past its retention; returns rows deleted per table. The rollup
        buckets written to are rebuilt first, while what they sum is still there."""
        self.refresh_rollups()
        now = self._clock() if now_wall_s is None else now_wall_s
        ret, day = self.retention, 86400.0
        plan = (
            ("rounds", "started_wall_ns", int((now - ret.raw_days * day) * 1e9)),
            ("rounds_1m", "bucket_s", int(now - ret.minute_days * day)),
            ("rounds_1h", "bucket_s", int(now - ret.hour_days * day)),
            ("batches", "received_wall_ns", int((now - ret.batch_ids_days * day) * 1e9)),
            ("decisions", "at_wall_ns", int((now - ret.minute_days * day) * 1e9)),
        )
        deleted = {}
        for table, column, cutoff in plan:
            cur = self._db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
            deleted[table] = cur.rowcount
        return deleted

    # --- reads (own connection) ----------------------------------------------------------
    def rounds(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]:
        where, args = ["started_wall_ns >= ?"], [since_wall_ns]
        if src is not None:
            where.append("src = ?")
            args.append(src)  # type: ignore[arg-type]
        if dst is not None:
            where.append("dst = ?")
            args.append(dst)  # type: ignore[arg-type]
        sql = (f"SELECT {', '.join(ROUND_COLUMNS)} FROM rounds WHERE {' AND '.join(where)} "
               "ORDER BY started_wall_ns")  # fmt: skip
        with self._read_lock:
            rows = self._read.execute(sql, args).fetchall()
        return [_record(row) for row in rows]

    def rollup(self, resolution: str = "1m", since_s: int = 0) -> list[dict[str, object]]:
        """Aggregates per path and bucket ('1m' or '1h'), oldest first."""
        if resolution not in _READ:
            raise ValueError(f"rollup resolution {resolution!r}: use '1m' or '1h'")
        return self._dicts(_READ[resolution], (since_s,) * (2 if resolution == "1h" else 1))

    def decisions(self, since_wall_ns: int = 0) -> list[DecisionRecord]:
        sql = (f"SELECT {', '.join(_DECISION_COLUMNS)} FROM decisions WHERE at_wall_ns >= ? "
               "ORDER BY id")  # fmt: skip
        with self._read_lock:
            rows = self._read.execute(sql, (since_wall_ns,)).fetchall()
        return [DecisionRecord(*row) for row in rows]

    def _dicts(self, sql: str, args: tuple[object, ...]) -> list[dict[str, object]]:
        with self._read_lock:
            cur = self._read.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # --- assessments: add_assessment is the writer's, the insert and reads are here ------
    def _insert_assessment(self, row: tuple[object, ...]) -> int:
        try:
            cur = self._db.execute(
                "INSERT INTO assessments (received_wall_ns, site, created, verdict, verdicts, "
                "partial, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the assessment: {exc}") from None
        return int(cur.lastrowid or 0)

    def assessments(self, limit: int = 100) -> list[dict[str, object]]:
        """Uploaded reports, newest first: id, site, created, verdict, verdicts (JSON text)."""
        sql = ("SELECT id, received_wall_ns, site, created, verdict, verdicts, partial "
               "FROM assessments ORDER BY id DESC LIMIT ?")  # fmt: skip
        return self._dicts(sql, (limit,))

    def assessment(self, assessment_id: int) -> str | None:
        """The report.json text of one uploaded report, or None."""
        with self._read_lock:
            sql = "SELECT body FROM assessments WHERE id = ?"
            row = self._read.execute(sql, (assessment_id,)).fetchone()
        return None if row is None else str(row[0])

    def count(self, table: str = "rounds") -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        with self._read_lock:
            return int(self._read.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    # --- the same reads for the event loop: in a thread, under a timeout -----------------
    async def _in_reader(self, fn: Callable[..., _T], *args: object) -> _T:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await asyncio.to_thread(fn, *args)
        except TimeoutError:
            raise StoreError(f"store read not answered within {self.read_timeout_s} s") from None
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from None

    async def rounds_async(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]:
        return await self._in_reader(self.rounds, src, dst, since_wall_ns)

    async def rollup_async(
        self, resolution: str = "1m", since_s: int = 0
    ) -> list[dict[str, object]]:
        return await self._in_reader(self.rollup, resolution, since_s)

    async def decisions_async(self, since_wall_ns: int = 0) -> list[DecisionRecord]:
        return await self._in_reader(self.decisions, since_wall_ns)

    async def assessments_async(self, limit: int = 100) -> list[dict[str, object]]:
        return await self._in_reader(self.assessments, limit)

    async def assessment_async(self, assessment_id: int) -> str | None:
        return await self._in_reader(self.assessment, assessment_id)

    async def count_async(self, table: str = "rounds") -> int:
        return await self._in_reader(self.count, table)

    async def aclose(self) -> None:
        """Close from the event loop (waiting for the write in flight in a thread)."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        self._thread.shutdown(wait=True)  # a write still in flight finishes first
        with self._read_lock:  # and so does a read
            for db in {id(self._read): self._read, id(self._db): self._db}.values():
                with contextlib.suppress(sqlite3.Error):
                    db.close()


def _inserted(db: sqlite3.Connection, r: RoundRecord) -> bool:
    """Insert one round unless already stored; True when it was new (rowcount lies here)."""
    before = db.total_changes
    db.execute(_INSERT_ROUND, _round_row(r))
    return db.total_changes != before


def _record(row: tuple[object, ...]) -> RoundRecord:
    values = dict(zip(ROUND_COLUMNS, row, strict=True))
    for k in ("started_wall_ns", "sent", "received"):
        values[k] = int(values[k])  # type: ignore[call-overload]
    return RoundRecord(**values)  # type: ignore[arg-type]


def store_stats(path: str | Path) -> dict[str, object]:
    """Sizes and row counts of a store file, for `netopt db stats` (opens it read-only)."""
    if str(path).startswith(("postgresql://", "postgres://")):
        raise StoreError(
            "netopt db stats reads a SQLite store; for PostgreSQL ask the database "
            "(SELECT relname, n_live_tup FROM pg_stat_user_tables)"
        )
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no store at {p}")
    files = {s: Path(f"{p}{s}") for s in ("", "-wal", "-shm")}
    sizes = {f"file{s or ''}_bytes": f.stat().st_size for s, f in files.items() if f.exists()}
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            version = db.execute("SELECT version FROM schema_version").fetchone()
            counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
            span = db.execute("SELECT MIN(started_wall_ns), MAX(started_wall_ns) FROM rounds")
            oldest, newest = span.fetchone()
            page = db.execute("PRAGMA page_size").fetchone()[0]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read store {p}: {exc}") from None
    return {
        "path": str(p),
        "schema_version": version[0] if version else 0,
        **sizes,
        "pages_bytes": page * pages,
        "free_bytes": page * free,
        "rows": counts,
        "oldest_round_wall_s": None if oldest is None else oldest / 1e9,
        "newest_round_wall_s": None if newest is None else newest / 1e9,
    }
