"""The values a plan is made of: measured PathStats in, ranked Routes and verdicts out.

Flow: window stats → **PathStats** → planner → **RegionPlan** (Routes with Expected quality)
→ decide. Frozen dataclasses; `topology.planner` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from topology.model import check_path_numbers

ACCELERATIONS = ("needed", "not_needed", "insufficient", "unmeasured", "unreachable")


@dataclass(frozen=True)
class PathStats:
    """Window stats of one measured directed pair: region → PoP (access; region → destination
    is the direct route), PoP → region (access measured from the PoP side), or PoP → PoP
    (overrides or adds to the declared backbone in that direction).

    `samples`: packets sent in the window (how sure `loss_pct` is). `sent_total`/`lost_total`:
    packets sent and lost on the path since counting began, never decreasing (0 = not
    counted), so the decider can pool evidence across windows without counting a packet twice."""

    src: str
    dst: str
    rtt_ms: float
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    samples: int = 0
    sent_total: int = 0
    lost_total: int = 0

    def __post_init__(self) -> None:
        check_path_numbers(
            f"path {self.src}->{self.dst}", self.rtt_ms, self.jitter_ms, self.loss_pct
        )


@dataclass(frozen=True)
class Expected:
    """Expected quality of a route: composed round trip, jitter, loss, and E-model MOS.

    `samples` is how many probe packets the measured loss rests on (the region's leg: the
    access path, or the direct path); 0 = unknown. `sent_total`/`lost_total` are that leg's
    running packet counters (see PathStats). `topology.uncertainty` uses them."""

    rtt_ms: float
    jitter_ms: float
    loss_pct: float
    mos: float
    samples: int = 0
    sent_total: int = 0
    lost_total: int = 0


@dataclass(frozen=True)
class Route:
    """One way for a region's media to reach a destination."""

    region: str
    dest: str
    kind: str  # "direct" | "relay"
    path: tuple[str, ...]
    entry_pop: str | None
    expected: Expected


@dataclass(frozen=True)
class Skipped:
    """A candidate entry PoP that could not be scored, and why."""

    pop: str
    why: str


@dataclass(frozen=True)
class RegionPlan:
    """The ranked routes of one region to one destination, with the acceleration verdict."""

    region: str
    dest: str
    routes: tuple[Route, ...]
    acceleration: str
    reason: str
    skipped: tuple[Skipped, ...] = ()

    @property
    def best(self) -> Route | None:
        return self.routes[0] if self.routes else None

    @property
    def direct(self) -> Route | None:
        return next((r for r in self.routes if r.kind == "direct"), None)
