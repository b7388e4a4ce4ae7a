"""What-if placement: which new PoP (then k of them, greedily) lifts the most calls above target.

Flow: Topology + measured PathStats + candidate sites (with their own access and backbone
stats) → **placement** → ranked PlacementSteps, for platform engineers planning PoPs and for
the `insufficient` verdicts the planner cannot fix with the PoPs that exist.

Method: greedy. Each step tries every remaining candidate — the topology plus that site as an
edge PoP, its access measurements and backbone links — plans the whole world again (the planner
is fast enough that this is the simple, exact way), and keeps the site that lifts the most
region weight (calls) to a best route at or above `target_mos`. Greedy is the classic
(1 − 1/e)-approximation for this kind of coverage objective; it is not guaranteed optimal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from topology.model import Link, Pop, Topology
from topology.planner import PathStats, Plan, plan


@dataclass(frozen=True)
class CandidateSite:
    """A place a PoP could go: how regions reach it and how it joins the backbone."""

    id: str
    access: tuple[PathStats, ...]  # region → site window stats
    backbone: tuple[Link, ...]  # site ↔ existing PoPs
    relay_delay_ms: float = 0.0


@dataclass(frozen=True)
class PlacementStep:
    """One greedy step: the site added, what it lifted, and the running total."""

    site: str
    lifted_weight: float
    lifted: tuple[tuple[str, str], ...]  # (region, dest) pairs newly at or above target
    weight_above_target: float
    total_weight: float


def pairs_above_target(result: Plan, target_mos: float) -> set[tuple[str, str]]:
    """The (region, dest) pairs whose best route reaches the target."""
    return {
        (e.region, e.dest)
        for e in result
        if e.best is not None and max(r.expected.mos for r in e.routes) >= target_mos
    }


def place(
    topology: Topology,
    paths: Iterable[PathStats],
    candidates: Sequence[CandidateSite],
    *,
    k: int = 1,
    target_mos: float = 4.0,
    codec: str = "g711",
) -> tuple[PlacementStep, ...]:
    """Up to k greedy steps; stops early when no candidate lifts anything more."""
    paths = list(paths)
    weight = {r.id: r.weight for r in topology.regions}
    weight_total = sum(weight.values()) * len(topology.destinations)
    current = topology
    base = pairs_above_target(plan(current, paths, codec=codec), target_mos)
    steps: list[PlacementStep] = []
    left = list(candidates)
    for _ in range(k):
        best: tuple[float, CandidateSite, set[tuple[str, str]]] | None = None
        for site in left:
            world = _with_site(current, site)
            above = pairs_above_target(plan(world, [*paths, *site.access], codec=codec), target_mos)
            gain = sum(weight[r] for r, _ in above - base)
            if best is None or gain > best[0]:
                best = (gain, site, above)
        if best is None or best[0] <= 0:
            break
        gain, site, above = best
        lifted = tuple(sorted(above - base))
        current, paths = _with_site(current, site), [*paths, *site.access]
        base = above
        left.remove(site)
        covered = sum(weight[r] for r, _ in base)
        steps.append(PlacementStep(site.id, gain, lifted, covered, weight_total))
    return tuple(steps)


def _with_site(topology: Topology, site: CandidateSite) -> Topology:
    pop = Pop(site.id, "edge", relay_delay_ms=site.relay_delay_ms)
    return replace(
        topology, pops=(*topology.pops, pop), backbone=(*topology.backbone, *site.backbone)
    )
