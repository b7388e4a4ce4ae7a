"""Which way each region's media should go, and whether it needs acceleration.

Flow: window stats (PathStats) → **plan** → Plan (per region × destination: ranked routes,
expected quality, acceleration verdict with a reason) → netopt.core.decide → RouteTable.

`plan(topology, paths)` scores every candidate at once (see `topology.scoring`): the direct
route (the region → destination measurement) and entry at every measured PoP followed by the
backbone's path to the destination. Routes are ranked by E-model MOS (`topology.quality`),
except that the direct route comes first whenever acceleration is `not_needed` (relaying a call
that is already good spends PoP capacity for no audible gain).

Verdicts (`RegionPlan.acceleration`), each with a one-sentence `reason`:

- `needed`: the direct route is poor (MOS below `target_mos` or a Via threshold crossed:
  RTT > 320 ms, loss > 1.2 %, jitter > 12 ms) or not measured, and a relay reaching the target
  beats it by at least `margin_mos`;
- `insufficient`: no route reaches `target_mos` (the best one is still offered);
- `not_needed`: otherwise (media goes direct);
- `unmeasured`: nothing measured from the region yet (no routes);
- `unreachable`: the region is measured but no measured path reaches the destination.

Candidates that could not be scored are listed in `RegionPlan.skipped` (PoP not measured from
the region, or no backbone path to the destination); a Plan never invents a route. PoP capacity
(`Pop.capacity_calls`, each region × destination carrying `Region.weight` calls) is applied by
`topology.capacity` (greedy by regret) when any PoP declares one.

The Plan materialises its RegionPlans lazily from the score arrays, so planning 50,000 region ×
destination pairs does not build 200,000 Python objects nobody reads.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator

import numpy as np

from topology import quality
from topology.capacity import CapacityChoice, apply_capacity
from topology.model import Topology
from topology.routes import (
    ACCELERATIONS,
    Expected,
    PathStats,
    RegionPlan,
    Route,
    Skipped,
)
from topology.scoring import (
    SENTINEL_R,
    AccessMatrix,
    Backbone,
    BackboneOverrides,
    Scorer,
    TopK,
    build_backbone,
    scorer_for,
)

NEEDED, NOT_NEEDED, INSUFFICIENT, UNMEASURED, UNREACHABLE = range(5)


__all__ = [
    "ACCELERATIONS",
    "Expected",
    "PathStats",
    "Plan",
    "RegionPlan",
    "Route",
    "Skipped",
    "collect_paths",
    "plan",
    "plan_matrix",
]


class Plan:
    """Every RegionPlan of one planning run. Iterable; `get(region, dest)` looks one up.

    Built either from ready entries (`Plan(entries)`) or by `plan()` from score arrays, in
    which case entries are materialised on first access."""

    def __init__(self, entries: Iterable[RegionPlan] = (), *, _run: _Run | None = None) -> None:
        self._run = _run
        self._cache: dict[tuple[str, str], RegionPlan] = {}
        if _run is None:
            self._cache = {(e.region, e.dest): e for e in entries}
            self._entries: tuple[RegionPlan, ...] | None = tuple(entries)
        else:
            self._entries = None

    @property
    def entries(self) -> tuple[RegionPlan, ...]:
        if self._entries is None:
            assert self._run is not None
            run = self._run
            run.rank_all()
            self._entries = tuple(
                self._materialise(r, k)
                for k in range(len(run.dests))
                for r in range(len(run.regions))
            )
        return self._entries

    def get(self, region: str, dest: str) -> RegionPlan | None:
        if (region, dest) in self._cache or self._run is None:
            return self._cache.get((region, dest))
        r, k = self._run.region_index.get(region), self._run.dest_index.get(dest)
        if r is None or k is None:
            return None
        return self._materialise(r, k)

    def __iter__(self) -> Iterator[RegionPlan]:
        return iter(self.entries)

    def __len__(self) -> int:
        if self._run is not None:
            return len(self._run.regions) * len(self._run.dests)
        return len(self._cache)

    def find(self, region: str, dest: str, entry_pop: str | None) -> Route | None:
        """The current route entering at `entry_pop` (None = direct) even if it is not among
        the ranked few, or None if that candidate is not measured or not reachable."""
        entry = self.get(region, dest)
        if entry is None:
            return None
        found = next((r for r in entry.routes if r.entry_pop == entry_pop), None)
        if found is not None or self._run is None:
            return found
        run = self._run
        r, k = run.region_index[region], run.dest_index[dest]
        p = run.dest_pops[k] if entry_pop is None else run.pop_index.get(entry_pop)
        if p is None or (entry_pop is not None and p == run.dest_pops[k]):
            return None
        value = float(run.row_r(r, k)[p])
        return run.route(r, k, p, value) if value > SENTINEL_R / 2 else None

    @property
    def unreachable(self) -> tuple[tuple[str, str], ...]:
        """(pop, destination) pairs with no backbone path."""
        return self._run.unreachable if self._run is not None else ()

    def _materialise(self, r: int, k: int) -> RegionPlan:
        assert self._run is not None
        key = (self._run.regions[r], self._run.dests[k])
        if key not in self._cache:
            self._cache[key] = self._run.region_plan(r, k)
        return self._cache[key]


def plan(
    topology: Topology,
    paths: Iterable[PathStats],
    *,
    target_mos: float = 4.0,
    margin_mos: float = 0.2,
    codec: str = "g711",
    max_routes: int = 4,
    prefer_direct: bool = True,
) -> Plan:
    """Plan every region × destination from measured window stats (see module docstring).
    `prefer_direct=False` ranks routes purely by MOS, even when acceleration is not needed.

    Raises ValueError for a PathStats naming an unknown id, a region → region pair, or a PoP
    to itself."""
    access, overrides = collect_paths(topology, paths)
    return plan_matrix(
        topology, access, overrides, target_mos=target_mos, margin_mos=margin_mos,
        codec=codec, max_routes=max_routes, prefer_direct=prefer_direct,
    )  # fmt: skip


def collect_paths(
    topology: Topology, paths: Iterable[PathStats]
) -> tuple[AccessMatrix, BackboneOverrides]:
    """Sort PathStats into the access matrix and backbone overrides. A region → PoP
    measurement wins over the PoP → region one for the same pair; a later duplicate wins."""
    regions = {r.id: i for i, r in enumerate(topology.regions)}
    pops = {p.id: i for i, p in enumerate(topology.pops)}
    shape = (len(regions), len(pops))
    rtt, jit, loss = np.full(shape, np.nan), np.zeros(shape), np.zeros(shape)
    samples = np.zeros(shape, dtype=np.int64)
    totals = np.zeros((2, *shape), dtype=np.int64)
    from_region = np.zeros(shape, dtype=bool)
    overrides: dict[tuple[str, str], tuple[float, float, float]] = {}
    for ps in paths:
        for node in (ps.src, ps.dst):
            if node not in regions and node not in pops:
                raise ValueError(f"path {ps.src}->{ps.dst}: unknown id {node!r}")
        if ps.src in regions and ps.dst in pops:
            r, p = regions[ps.src], pops[ps.dst]
            from_region[r, p] = True
        elif ps.src in pops and ps.dst in regions:
            r, p = regions[ps.dst], pops[ps.src]
            if from_region[r, p]:
                continue
        elif ps.src in pops and ps.dst in pops:
            if ps.src == ps.dst:
                raise ValueError(f"path {ps.src}->{ps.dst}: a PoP to itself is not a path")
            overrides[(ps.src, ps.dst)] = (ps.rtt_ms, ps.jitter_ms, ps.loss_pct)
            continue
        else:
            raise ValueError(f"path {ps.src}->{ps.dst}: region to region is not a candidate path")
        rtt[r, p], jit[r, p], loss[r, p] = ps.rtt_ms, ps.jitter_ms, ps.loss_pct
        samples[r, p] = ps.samples
        totals[:, r, p] = ps.sent_total, ps.lost_total
    ov = tuple((a, b, *v) for (a, b), v in sorted(overrides.items()))
    return AccessMatrix(rtt, jit, loss, samples, totals), ov


_BACKBONES: dict[int, tuple[weakref.ref[Topology], BackboneOverrides, Backbone]] = {}


def _backbone(topology: Topology, overrides: BackboneOverrides) -> Backbone:
    """Backbone paths, computed once per (topology object, overrides). Keyed by identity, not
    by hashing a topology of 10,000 regions on every plan; a few recent worlds are kept."""
    hit = _BACKBONES.get(id(topology))
    if hit is not None and hit[0]() is topology and hit[1] == overrides:
        return hit[2]
    bb = build_backbone(topology, overrides)
    if len(_BACKBONES) >= 8:
        _BACKBONES.pop(next(iter(_BACKBONES)))
    _BACKBONES[id(topology)] = (weakref.ref(topology), overrides, bb)
    return bb


def plan_matrix(
    topology: Topology,
    access: AccessMatrix,
    overrides: BackboneOverrides = (),
    *,
    target_mos: float = 4.0,
    margin_mos: float = 0.2,
    codec: str = "g711",
    max_routes: int = 4,
    prefer_direct: bool = True,
) -> Plan:
    """`plan` from an access matrix [regions, pops] (NaN rtt = not measured): the fast entry
    point for large worlds. The backbone is computed once per (topology, overrides)."""
    scorer = scorer_for(codec)
    bb = _backbone(topology, overrides)
    pop_index = {p.id: i for i, p in enumerate(topology.pops)}
    dest_pops = [pop_index[d] for d in topology.destinations]
    top = scorer.top_k(access, bb, 1, len(dest_pops))
    run = _Run(topology, access, bb, scorer, top, dest_pops, target_mos, margin_mos, max_routes)
    if not prefer_direct:
        run.prefer_direct[:] = False
    return Plan(_run=run)


class _Run:
    """The arrays of one planning run, vectorised verdicts, and lazy RegionPlan building."""

    def __init__(
        self,
        topology: Topology,
        access: AccessMatrix,
        bb: Backbone,
        scorer: Scorer,
        top: TopK,
        dest_pops: list[int],
        target_mos: float,
        margin_mos: float,
        max_routes: int,
    ) -> None:
        self.topology, self.access, self.bb, self.scorer = topology, access, bb, scorer
        self.regions = [r.id for r in topology.regions]
        self.pops = [p.id for p in topology.pops]
        self.pop_index = {p: i for i, p in enumerate(self.pops)}
        self.dests = list(topology.destinations)
        self.region_index = {r: i for i, r in enumerate(self.regions)}
        self.dest_index = {d: i for i, d in enumerate(self.dests)}
        self.dest_pops, self.target, self.margin, self.max_routes = (
            dest_pops, target_mos, margin_mos, max_routes,
        )  # fmt: skip
        self.valid = ~np.isnan(access.rtt_ms)
        self._bb_terms: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.top_full: TopK | None = None
        self.top_mos = np.zeros(0)
        self.unreachable = tuple(
            (self.pops[p], d)
            for k, d in enumerate(self.dests)
            for p in np.flatnonzero(~bb.reachable[:, k])
        )
        self.best_r = top.r[:, :, 0]
        self.best_p = top.pop_idx[:, :, 0]
        self.direct_r = np.stack(
            [self._direct_r(k, dp) for k, dp in enumerate(dest_pops)]
        ) if dest_pops else np.zeros((0, len(self.regions)), dtype=np.float32)  # fmt: skip
        self.codes, self.prefer_direct = self._verdicts()
        self.choices: dict[tuple[int, int], CapacityChoice] = apply_capacity(self)

    def _direct_r(self, k: int, dp: int) -> np.ndarray:
        a = self.scorer.prepare_access(self.access, (slice(None), dp))
        b = tuple(x[dp : dp + 1] for x in self.scorer.prepare_backbone(self.bb, k))
        return self.scorer.score(a, b)  # type: ignore[arg-type]

    def row_r(self, rows: slice | int, k: int) -> np.ndarray:
        """R of every candidate for the given region row(s) and destination column."""
        a = self.scorer.prepare_access(self.access, rows)
        if k not in self._bb_terms:
            self._bb_terms[k] = self.scorer.prepare_backbone(self.bb, k)
        return self.scorer.score(a, self._bb_terms[k])

    def _verdicts(self) -> tuple[np.ndarray, np.ndarray]:
        best_mos = self.scorer.r_to_mos(self.best_r)
        has_route = self.best_r > SENTINEL_R / 2
        direct_ok = self.direct_r > SENTINEL_R / 2
        direct_mos = self.scorer.r_to_mos(self.direct_r)
        a = self.access
        dp = self.dest_pops
        flags = (
            (a.rtt_ms[:, dp].T > quality.VIA_RTT_MS)
            | (a.loss_pct[:, dp].T > quality.VIA_LOSS_PCT)
            | (a.jitter_ms[:, dp].T > quality.VIA_JITTER_MS)
        )
        direct_poor = (direct_mos < self.target) | flags
        relay_best = self.best_p != np.asarray(dp, dtype=np.int32)[:, None]
        gain_ok = best_mos - direct_mos >= self.margin - 1e-9
        measured = np.asarray(self.valid.any(axis=1))[None, :]
        codes = np.full(self.best_r.shape, NOT_NEEDED, dtype=np.int8)
        needed = relay_best & (~direct_ok | (direct_poor & gain_ok))
        codes[needed] = NEEDED
        codes[best_mos < self.target] = INSUFFICIENT
        codes[~has_route] = UNREACHABLE
        codes[~has_route & ~measured] = UNMEASURED
        prefer_direct = (codes == NOT_NEEDED) & direct_ok & relay_best
        return codes, prefer_direct

    # ---- materialisation --------------------------------------------------------------

    def route(self, r: int, k: int, p: int, r_value: float, mos: float | None = None) -> Route:
        """The Route entering at pop index p (p = destination: direct), with its R value."""
        region, dest = self.regions[r], self.dests[k]
        a = self.access
        if mos is None:
            mos = float(self.scorer.r_to_mos(np.float64(r_value)))
        a_rtt, a_jit, a_loss = (x.item(r, p) for x in (a.rtt_ms, a.jitter_ms, a.loss_pct))
        n = 0 if a.samples is None else int(a.samples.item(r, p))
        sent, lost = (0, 0) if a.totals is None else (int(a.totals.item(i, r, p)) for i in (0, 1))
        if p == self.dest_pops[k]:
            e = Expected(a_rtt, a_jit, a_loss, mos, n, sent, lost)
            return Route(region, dest, "direct", (region, dest), None, e)
        bb = self.bb
        b_rtt, b_jit, b_loss = (x.item(p, k) for x in (bb.rtt_ms, bb.jitter_ms, bb.loss_pct))
        loss = 100 * (1 - (1 - a_loss / 100) * (1 - b_loss / 100))
        e = Expected(a_rtt + b_rtt, math.hypot(a_jit, b_jit), loss, mos, n, sent, lost)
        return Route(region, dest, "relay", (region, *bb.paths[(p, k)]), self.pops[p], e)

    def rank_all(self) -> None:
        """Rank the top candidates of every pair in one vector pass (before iterating all)."""
        if self.top_full is None:
            n_d = len(self.dest_pops)
            self.top_full = self.scorer.top_k(self.access, self.bb, self.max_routes + 1, n_d)
            self.top_mos = self.scorer.r_to_mos(self.top_full.r)

    def _ranked(self, r: int, k: int) -> tuple[list[int], dict[int, float], dict[int, float]]:
        """Candidate pop indices best first (up to max_routes + 1), their R and MOS values."""
        if self.top_full is not None:
            idx, vals = self.top_full.pop_idx[k, r], self.top_full.r[k, r]
            keep = idx >= 0
            order = idx[keep].tolist()
            r_of = dict(zip(order, vals[keep].tolist(), strict=True))
            return order, r_of, dict(zip(order, self.top_mos[k, r][keep].tolist(), strict=True))
        row = self.row_r(r, k)
        n = min(int((row > SENTINEL_R / 2).sum()), self.max_routes + 1)
        order = np.argsort(-row, kind="stable")[:n].tolist()
        mos = self.scorer.r_to_mos(row[order]).tolist()
        return order, {p: float(row[p]) for p in order}, dict(zip(order, mos, strict=True))

    def region_plan(self, r: int, k: int) -> RegionPlan:
        from topology.reasons import reason_for

        region, dest = self.regions[r], self.dests[k]
        order, r_of, mos_of = self._ranked(r, k)
        dp = self.dest_pops[k]
        r_of.setdefault(dp, float(self.direct_r[k, r]))
        choice = self.choices.get((r, k))
        first = choice.pop if choice is not None else (dp if self.prefer_direct[k, r] else None)
        if first is not None:
            order = [first] + [p for p in order if p != first]
            if first not in r_of:
                r_of[first] = float(self.row_r(r, k)[first])
        order = order[: self.max_routes]
        routes = tuple(self.route(r, k, p, r_of[p], mos_of.get(p)) for p in order)
        valid = self.valid[r]
        no_path = valid & ~self.bb.reachable[:, k]
        skipped = tuple(
            Skipped(self.pops[p], f"not measured from {region}")
            if not valid[p]
            else Skipped(self.pops[p], f"no backbone path to {dest}")
            for p in np.flatnonzero(~valid | no_path).tolist()
        )
        code = int(self.codes[k, r])
        direct = next((x for x in routes if x.kind == "direct"), None)
        if direct is None and valid[dp]:
            direct = self.route(r, k, dp, r_of[dp])
        reason = reason_for(
            ACCELERATIONS[code], region, dest, routes, direct, self.target, self.margin,
            choice.note if choice is not None else "",
        )  # fmt: skip
        return RegionPlan(region, dest, routes, ACCELERATIONS[code], reason, skipped)
