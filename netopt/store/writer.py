"""The store's one writer, common to every backend (probe → sample → **store** → stats).

`add()` / `add_decision()` only queue, and `write_batch()` queues an agent's batch with a
future; the writer task started by `run()` hands whatever has queued to the backend's
`_write` (one transaction, in a thread) and resolves the futures only after the commit, so an
acknowledged batch is durable. A failed write (read-only file, full disk, database down) keeps
the queued rounds (bounded, oldest dropped first), reports through `on_error`, and is retried
on the next tick. Backends (sqlite.py, postgres.py) provide `_write`, `refresh_rollups` and
`prune`, and name the exceptions their driver raises in `db_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from netopt.errors import StoreError
from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord

log = logging.getLogger("netopt.store")
_T = TypeVar("_T")


@dataclass
class Batch:
    batch_id: str
    agent: str
    records: Sequence[RoundRecord]
    done: asyncio.Future[BatchOutcome]


@dataclass
class _Pending:
    rounds: deque[RoundRecord] = field(default_factory=deque)
    decisions: deque[DecisionRecord] = field(default_factory=deque)
    batches: list[Batch] = field(default_factory=list)


class QueuedWriter:
    """Queues and the writer task; a backend subclasses it (see the module docstring)."""

    db_errors: ClassVar[tuple[type[Exception], ...]] = ()
    path: str

    def __init__(
        self,
        *,
        retention: Retention | None,
        max_pending_rounds: int,
        wall_clock: Callable[[], float],
        on_error: Callable[[Exception], None] | None,
        on_drop: Callable[[int], None] | None,
        write_threads: int = 1,
    ) -> None:
        self.retention = retention or Retention()
        self.max_pending_rounds = max_pending_rounds
        self._clock = wall_clock
        self._on_error = on_error
        self._on_drop = on_drop
        self._pending = _Pending()
        # every write runs on these threads, so close() can wait for the ones in flight
        self._thread = ThreadPoolExecutor(write_threads, thread_name_prefix="netopt-store")
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.write_errors = 0
        self.dropped_rounds = 0
        self.last_error: str | None = None

    # --- what a backend provides --------------------------------------------------------
    def _write(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        raise NotImplementedError

    def refresh_rollups(self) -> int:
        raise NotImplementedError

    def prune(self, now_wall_s: float | None = None) -> dict[str, int]:
        raise NotImplementedError

    def _insert_assessment(self, row: tuple[object, ...]) -> int:
        """Insert (received_wall_ns, site, created, verdict, verdicts, partial, body); its id."""
        raise NotImplementedError

    # --- assessments (netopt assess --upload; netopt.assess.api) ---------------------------
    async def add_assessment(
        self, site: str, created: str, verdict: str, verdicts: str, partial: bool, body: str
    ) -> int:
        """Keep an uploaded report (committed before this returns); its id."""
        row = (int(self._clock() * 1e9), site, created, verdict, verdicts, int(partial), body)
        return await self._in_thread(self._insert_assessment, row)

    # --- queueing (never blocks) ---------------------------------------------------------
    def add(self, record: RoundRecord) -> None:
        """Queue a round for the writer; past `max_pending_rounds` the oldest are dropped."""
        q = self._pending.rounds
        q.append(record)
        if len(q) > self.max_pending_rounds:
            q.popleft()
            self.dropped_rounds += 1
            if self._on_drop is not None:
                self._on_drop(1)

    def add_decision(self, decision: DecisionRecord) -> None:
        self._pending.decisions.append(decision)
        if len(self._pending.decisions) > self.max_pending_rounds:
            self._pending.decisions.popleft()

    async def write_batch(
        self, batch_id: str, agent: str, records: Sequence[RoundRecord], timeout_s: float = 10.0
    ) -> BatchOutcome:
        """Store an agent's batch; returns once it is committed (or raises `StoreError`)."""
        done: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._pending.batches.append(Batch(batch_id, agent, records, done))
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(done)
        except TimeoutError:
            raise StoreError(f"batch {batch_id} not committed within {timeout_s} s") from None

    @property
    def pending(self) -> int:
        return len(self._pending.rounds)

    # --- the writer ----------------------------------------------------------------------
    async def flush(self) -> int:
        """Write everything queued so far; returns how many local rounds were written."""
        async with self._lock:
            p = self._pending
            rounds, decisions, batches = list(p.rounds), list(p.decisions), p.batches
            if not (rounds or decisions or batches):
                return 0
            p.rounds.clear()
            p.decisions.clear()
            p.batches = []
            try:
                outcomes = await self._commit(rounds, decisions, batches)
            except self.db_errors as exc:
                self._failed(exc, rounds, decisions, batches)
                raise
            if self.last_error is not None:
                log.warning("store_write_resumed path=%s after=%r", self.path, self.last_error)
                self.last_error = None
            for b, outcome in zip(batches, outcomes, strict=True):
                if not b.done.done():
                    b.done.set_result(outcome)
            return len(rounds)

    def _failed(
        self, exc: Exception, rounds: list[RoundRecord], decisions: list[DecisionRecord],
        batches: list[Batch],
    ) -> None:  # fmt: skip
        self._requeue(rounds, decisions)
        self.write_errors += 1
        if self.last_error is None:
            log.error("store_write_failed path=%s error=%r (retrying)", self.path, exc)
        self.last_error = str(exc)
        if self._on_error is not None:
            self._on_error(exc)
        for b in batches:
            if not b.done.done():
                b.done.set_exception(StoreError(f"store write failed: {exc}"))

    async def _commit(
        self, rounds: list[RoundRecord], decisions: list[DecisionRecord], batches: list[Batch]
    ) -> list[BatchOutcome]:
        """One write, off the loop: the backend's `_write` on the writer thread."""
        return await self._in_thread(self._write, rounds, decisions, batches)

    async def _in_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _requeue(self, rounds: list[RoundRecord], decisions: list[DecisionRecord]) -> None:
        p = self._pending
        p.rounds.extendleft(reversed(rounds))
        p.decisions.extendleft(reversed(decisions))
        excess = len(p.rounds) - self.max_pending_rounds
        for _ in range(max(0, excess)):
            p.rounds.popleft()
        if excess > 0:
            self.dropped_rounds += excess
            log.warning("store_dropped_rounds count=%d (store unwritable too long)", excess)
            if self._on_drop is not None:
                self._on_drop(excess)

    async def run(
        self, interval_s: float = 0.5, prune_interval_s: float = 300.0,
        rollup_interval_s: float = 60.0,
    ) -> None:  # fmt: skip
        """The writer task: flush every `interval_s` (at once for batches), rebuild the rollup
        buckets written to every `rollup_interval_s`, prune every `prune_interval_s`."""
        next_prune = 0.0
        next_rollup = time.monotonic() + rollup_interval_s
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval_s):
                        await self._wake.wait()
                self._wake.clear()
                with contextlib.suppress(*self.db_errors):
                    await self.flush()
                if time.monotonic() >= next_rollup and self.last_error is None:
                    next_rollup = time.monotonic() + rollup_interval_s
                    try:
                        await self._in_thread(self.refresh_rollups)
                    except self.db_errors as exc:
                        log.error("store_rollup_failed error=%r", exc)
                if time.monotonic() >= next_prune and self.last_error is None:
                    next_prune = time.monotonic() + prune_interval_s
                    try:
                        await self._in_thread(self.prune)
                    except self.db_errors as exc:
                        log.error("store_prune_failed error=%r", exc)
        finally:
            with contextlib.suppress(*self.db_errors):
                await asyncio.shield(self.flush())
