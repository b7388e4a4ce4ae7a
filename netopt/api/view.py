"""What the API reads and asks of the daemon: daemon → **DaemonView** → routes, ingest.

A Protocol, so the HTTP faces depend on this small surface and not on the `Daemon` class that
wires them (netopt.daemon.wiring implements it; tests pass a fake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import Counter

    from netopt.config import Config
    from netopt.core.decide import RouteTable
    from netopt.store.model import BatchOutcome, DecisionRecord, RoundRecord
    from topology.planner import PathStats


class Trace(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Traces(Protocol):
    def recent(self, src: str | None = None, dst: str | None = None) -> Sequence[Trace]: ...


class ApiMetrics(Protocol):
    @property
    def ingest_batches(self) -> Counter: ...

    @property
    def plans(self) -> Counter: ...

    def exposition(self) -> bytes: ...


class ApiStore(Protocol):
    """What the HTTP faces ask of the store: ingest, the status page, assessments — all
    awaited, none blocking the loop (netopt.store.model.Store)."""

    async def write_batch(
        self, batch_id: str, agent: str, records: Sequence[RoundRecord], timeout_s: float = ...
    ) -> BatchOutcome: ...

    async def decisions_async(self, since_wall_ns: int = ...) -> list[DecisionRecord]: ...

    async def add_assessment(
        self, site: str, created: str, verdict: str, verdicts: str, partial: bool, body: str
    ) -> int: ...

    async def assessments_async(self, limit: int = ...) -> list[dict[str, object]]: ...

    async def assessment_async(self, assessment_id: int) -> str | None: ...


class DaemonView(Protocol):
    """The daemon as the route API and the ingest routes see it."""

    @property
    def config(self) -> Config: ...

    @property
    def table(self) -> RouteTable: ...

    @property
    def publishers(self) -> Sequence[Callable[[RouteTable], None]]: ...

    @property
    def metrics(self) -> ApiMetrics: ...

    @property
    def tracer(self) -> Traces: ...

    @property
    def store(self) -> ApiStore: ...

    @property
    def wall_clock(self) -> Callable[[], float]: ...

    def wall_time(self, mono_s: float) -> float: ...

    def path_stats(self) -> list[PathStats]: ...

    def account_ingested(self, agent: str, stored: tuple[RoundRecord, ...], depth: int) -> None:
        """An agent's batch, durable in the store: into the window and the next plan."""

    def reload(self) -> tuple[bool, list[str]]:
        """Re-read the config file; (ok, problems or changes)."""
