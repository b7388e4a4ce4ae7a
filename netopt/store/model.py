"""The rows the store keeps (probe rounds — summaries, not packets — and logged decisions),
and the `Store` protocol every backend satisfies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One probe round from `src` to `dst`, summarised. Times in wall-clock ns / ms values."""

    started_wall_ns: int
    src: str
    dst: str
    kind: str
    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_p50_ms: float | None
    rtt_p90_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None

    @property
    def loss_ratio(self) -> float:
        return 0.0 if self.sent == 0 else 1.0 - self.received / self.sent


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision of the daemon with its reason and the inputs it rested on (JSON text)."""

    at_wall_ns: int
    region: str
    dest: str
    action: str
    old_entry: str | None
    new_entry: str | None
    old_mos: float | None
    new_mos: float | None
    consecutive: int
    penalty: float
    reason: str
    inputs: str


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What storing an agent's batch did: `duplicate` when the batch id was already stored."""

    batch_id: str
    rounds: int
    stored: tuple[RoundRecord, ...]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each resolution is kept, in days."""

    raw_days: float = 7.0
    minute_days: float = 31.0
    hour_days: float = 400.0
    batch_ids_days: float = 31.0


class Store(Protocol):
    """What the daemon asks of a store; SqliteStore and PostgresStore both are one.

    Every read comes twice: plain (synchronous, for scripts, tests and the writer thread) and
    `*_async`, the one code on the event loop calls — it never blocks the loop (SQLite: the
    read in a thread; PostgreSQL: a psycopg AsyncConnectionPool), is bounded by
    `read_timeout_s`, and raises `StoreError` for a timeout or a database error. A store an
    async read has used is closed with `aclose()`.
    """

    path: str
    version: int
    retention: Retention
    read_timeout_s: float
    last_error: str | None
    write_errors: int
    dropped_rounds: int

    @property
    def pending(self) -> int: ...
    def add(self, record: RoundRecord) -> None: ...
    def add_decision(self, decision: DecisionRecord) -> None: ...
    async def write_batch(
        self, batch_id: str, agent: str, records: Sequence[RoundRecord], timeout_s: float = 10.0
    ) -> BatchOutcome: ...
    async def flush(self) -> int: ...
    async def run(
        self, interval_s: float = 0.5, prune_interval_s: float = 300.0,
        rollup_interval_s: float = 60.0,
    ) -> None: ...  # fmt: skip
    def refresh_rollups(self) -> int: ...
    def prune(self, now_wall_s: float | None = None) -> dict[str, int]: ...
    def rounds(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]: ...
    def rollup(self, resolution: str = "1m", since_s: int = 0) -> list[dict[str, object]]: ...
    def decisions(self, since_wall_ns: int = 0) -> list[DecisionRecord]: ...
    async def add_assessment(
        self, site: str, created: str, verdict: str, verdicts: str, partial: bool, body: str
    ) -> int: ...
    def assessments(self, limit: int = 100) -> list[dict[str, object]]: ...
    def assessment(self, assessment_id: int) -> str | None: ...
    def count(self, table: str = "rounds") -> int: ...
    async def rounds_async(
        self, src: str | None = None, dst: str | None = None, since_wall_ns: int = 0
    ) -> list[RoundRecord]: ...
    async def rollup_async(
        self, resolution: str = "1m", since_s: int = 0
    ) -> list[dict[str, object]]: ...
    async def decisions_async(self, since_wall_ns: int = 0) -> list[DecisionRecord]: ...
    async def assessments_async(self, limit: int = 100) -> list[dict[str, object]]: ...
    async def assessment_async(self, assessment_id: int) -> str | None: ...
    async def count_async(self, table: str = "rounds") -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
