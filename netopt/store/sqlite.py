"""SQLite store (default): one row per probe round, WAL mode, one writer.

probe → sample → **store** → stats. Writes are batched: `add()` only queues, and the writer
task started by `run()` inserts whatever has queued in one transaction, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import astuple, fields
from pathlib import Path

from netopt.errors import StoreError
from netopt.store.model import RoundRecord

_COLUMNS = [f.name for f in fields(RoundRecord)]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY,
    {", ".join(f"{c} {'TEXT' if c in ('src', 'dst', 'kind') else 'REAL'}" for c in _COLUMNS)}
);
CREATE INDEX IF NOT EXISTS rounds_path_time ON rounds (src, dst, started_wall_ns);
"""


class SqliteStore:
    """A SQLite file in WAL mode. Safe to call from one event loop; writes go through a queue."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._queue: asyncio.Queue[RoundRecord] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self.write_errors = 0

    def add(self, record: RoundRecord) -> None:
        """Queue a round for the writer; never blocks."""
        self._queue.put_nowait(record)

    def insert(self, records: Sequence[RoundRecord]) -> None:
        """Insert rounds in one transaction (blocking; the writer calls it in a thread)."""
        marks = ", ".join("?" * len(_COLUMNS))
        sql = f"INSERT INTO rounds ({', '.join(_COLUMNS)}) VALUES ({marks})"
        with self._db:
            self._db.executemany(sql, [astuple(r) for r in records])

    async def flush(self) -> int:
        """Write everything queued so far; returns how many rounds were written."""
        async with self._lock:
            batch: list[RoundRecord] = []
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if not batch:
                return 0
            try:
                await asyncio.to_thread(self.insert, batch)
            except sqlite3.Error:
                # keep the rounds for the next try; the caller logs and counts
                for r in batch:
                    self._queue.put_nowait(r)
                self.write_errors += 1
                raise
            return len(batch)

    async def run(self, interval_s: float = 0.5) -> None:
        """The writer task: flush every `interval_s` until cancelled, then flush once more."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.flush()
                except sqlite3.Error:
                    continue
        finally:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.shield(self.flush())

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
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM rounds WHERE {' AND '.join(where)} "
            "ORDER BY started_wall_ns",
            args,
        ).fetchall()
        return [_record(row) for row in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _record(row: tuple[object, ...]) -> RoundRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for k in ("started_wall_ns", "sent", "received"):
        values[k] = int(values[k])  # type: ignore[call-overload]
    return RoundRecord(**values)  # type: ignore[arg-type]
