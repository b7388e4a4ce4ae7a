"""PoP capacity: which region × destination pairs keep their best relay when PoPs are full.

Flow: scoring → planner (unconstrained verdicts) → **capacity** → Plan.

Method (greedy by regret): every region × destination whose preferred route relays through a
PoP with `capacity_calls` is a demand of `Region.weight` calls on every PoP of its path except
the destination. Demands are served in order of regret — how much R the pair loses if it must
fall back to its next candidate — largest first, each taking its best candidate whose capped
PoPs still have room. The direct route uses no PoP capacity, so a measured direct route is
always a fallback. A pair that fits nowhere keeps its best route and says it is over capacity:
the plan never hides the overload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from topology.scoring import SENTINEL_R


@dataclass(frozen=True)
class CapacityChoice:
    """The candidate (pop index) chosen for a pair under capacity, and why it moved."""

    pop: int
    note: str


def apply_capacity(run: Any) -> dict[tuple[int, int], CapacityChoice]:
    """Greedy-by-regret assignment for a planner run (`topology.planner._Run`); returns the
    pairs whose route differs from the unconstrained one, keyed by (region index, dest col)."""
    caps = {
        i: float(p.capacity_calls)
        for i, p in enumerate(run.topology.pops)
        if p.capacity_calls is not None
    }
    if not caps:
        return {}
    weights = [r.weight for r in run.topology.regions]
    demands = []
    for k, dp in enumerate(run.dest_pops):
        for ri in np.flatnonzero((run.best_p[k] != dp) & ~run.prefer_direct[k]):
            r = int(ri)
            if run.best_p[k, r] < 0:
                continue
            p = int(run.best_p[k, r])
            if not any(q in caps for q in _capped_path(run, p, k, caps)):
                continue
            row = run.row_r(r, k).astype(np.float64)
            order = [int(q) for q in np.argsort(-row, kind="stable") if row[q] > SENTINEL_R / 2]
            regret = row[order[0]] - row[order[1]] if len(order) > 1 else float("inf")
            demands.append((regret, r, k, order))
    demands.sort(key=lambda d: -d[0])
    left = dict(caps)
    choices: dict[tuple[int, int], CapacityChoice] = {}
    for _, r, k, order in demands:
        w = weights[r]
        fits = next(
            (q for q in order if all(left[c] >= w for c in _capped_path(run, q, k, caps))), None
        )
        if fits is None:
            full = ", ".join(sorted({run.pops[c] for c in _capped_path(run, order[0], k, caps)}))
            choices[(r, k)] = CapacityChoice(
                order[0], f"over capacity at {full}: no candidate has room"
            )
            continue
        for c in _capped_path(run, fits, k, caps):
            left[c] -= w
        if fits != order[0]:
            full = ", ".join(sorted({run.pops[c] for c in _capped_path(run, order[0], k, caps)}))
            choices[(r, k)] = CapacityChoice(fits, f"the better route's PoP {full} is at capacity")
    return choices


def _capped_path(run: Any, p: int, k: int, caps: dict[int, float]) -> list[int]:
    """Indices of capacity-limited PoPs the media crosses on candidate p (destination excluded)."""
    index = run.pop_index
    path = run.bb.paths.get((p, k), ())
    return [index[x] for x in path[:-1] if index[x] in caps]
