"""The planner's vector engine: backbone paths once per topology, every candidate scored at once.

Flow: Topology + PathStats → **scoring** (access matrix ⊕ backbone → R of every candidate,
top-k per region × destination) → planner (verdicts, Plan).

A candidate for (region r, destination d) is an entry PoP p: the region reaches p over the
measured access path, then the backbone carries the media from p to d. p = d is the direct
route (the region → destination measurement itself, no backbone, no relay delay).

Backbone paths (`build_backbone`) are chosen once per topology by Dijkstra on an additive weight
(one-way delay + 2·jitter + 50 ms per % loss + the relay delay of every PoP crossed except the
destination); the chosen path is then scored exactly. The weight only picks the backbone path;
it never ranks candidates.

Scoring (`Scorer`) evaluates R = (Ro − Is − Id(Ta)) − Ie,eff(Ppl) for every candidate with the
formulas of `topology.quality`, rearranged so each candidate costs a few float32 operations:
Ta, in table units of 0.1 ms, is access + backbone + codec + jitter-buffer depth; the delay part
of R is a table lookup; with s the packet survival ratio, Ie,eff = Ie + (95 − Ie)·Br·(1 − s) /
((1 − s) + Br·b), b = Bpl/100, which is const − C / (1 + Br·b − s). The jitter terms (buffer
depth and late loss) are looked up by the composed jitter on a 0.01 ms grid. Unmeasured or
unreachable candidates get a huge delay that lands on a sentinel entry of the table, so they
rank last without a separate mask.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
from numpy.typing import ArrayLike, NDArray

from topology import quality
from topology.model import Topology

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]

LOSS_WEIGHT_MS_PER_PCT = 50.0
JITTER_WEIGHT = 2.0
SENTINEL_R = -1.0e4  # R of an impossible candidate (well below any real R)
MAX_REAL_TA_MS = 25_000.0  # table covers Ta up to here; valid delays are clamped below it
MAX_LEG_OWD_MS = 10_000.0
INVALID_OWD = 1.0e8  # in table units: lands on the sentinel
MAX_JITTER_MS = 250.0
_JIT_STEP_MS = 0.01
_STEP_MS = 0.1


@dataclass(frozen=True)
class AccessMatrix:
    """Measured region → PoP window stats, arrays [regions, pops]; NaN rtt = not measured.
    `samples` (optional, same shape): probe packets behind each loss figure, 0 = unknown;
    `totals` (optional, [2, regions, pops]): running sent and lost counters (PathStats)."""

    rtt_ms: NDArray[np.float64]
    jitter_ms: NDArray[np.float64]
    loss_pct: NDArray[np.float64]
    samples: NDArray[np.int64] | None = None
    totals: NDArray[np.int64] | None = None

    @property
    def valid(self) -> NDArray[np.bool_]:
        return np.asarray(~np.isnan(self.rtt_ms))


@dataclass(frozen=True)
class Backbone:
    """Composed backbone stats from every PoP to every destination, arrays [pops, dests].

    `rtt_ms` includes twice the relay delay of every PoP crossed except the destination;
    unreachable pairs have `reachable` False (and NaN stats). `paths[(p, k)]` is the PoP-id
    path from pop index p to destination column k (just (d,) for p = d)."""

    rtt_ms: NDArray[np.float64]
    jitter_ms: NDArray[np.float64]
    loss_pct: NDArray[np.float64]
    reachable: NDArray[np.bool_]
    paths: Mapping[tuple[int, int], tuple[str, ...]]


BackboneOverrides = tuple[tuple[str, str, float, float, float], ...]


def build_backbone(topology: Topology, overrides: BackboneOverrides = ()) -> Backbone:
    """Shortest backbone paths from every PoP to every destination (one Dijkstra per
    destination on the reversed directed graph). `overrides` are measured (a, b, rtt, jitter,
    loss) for the direction a → b; they replace or add to the declared links."""
    pop_ids = [p.id for p in topology.pops]
    index = {pid: i for i, pid in enumerate(pop_ids)}
    relay = {p.id: p.relay_delay_ms for p in topology.pops}
    graph = nx.DiGraph()
    graph.add_nodes_from(pop_ids)
    stats: dict[tuple[str, str], tuple[float, float, float]] = {}
    for link in topology.backbone:
        stats[(link.a, link.b)] = (link.rtt_ms, link.jitter_ms, link.loss_pct)
        stats[(link.b, link.a)] = (link.rtt_ms, link.jitter_ms, link.loss_pct)
    for a, b, rtt, jit, loss in overrides:
        stats[(a, b)] = (rtt, jit, loss)
    for (a, b), (rtt, jit, loss) in stats.items():
        weight = rtt / 2 + relay[a] + JITTER_WEIGHT * jit + LOSS_WEIGHT_MS_PER_PCT * loss
        graph.add_edge(a, b, weight=weight)
    n_p, n_d = len(pop_ids), len(topology.destinations)
    rtt_a = np.full((n_p, n_d), np.nan)
    jit_a = np.full((n_p, n_d), np.nan)
    loss_a = np.full((n_p, n_d), np.nan)
    paths: dict[tuple[int, int], tuple[str, ...]] = {}
    reverse = graph.reverse(copy=False)
    for k, dest in enumerate(topology.destinations):
        _, rpaths = nx.single_source_dijkstra(reverse, dest, weight="weight")
        for node, rpath in rpaths.items():
            path = tuple(reversed(rpath))
            p = index[node]
            rtt = sum(stats[(u, v)][0] + 2 * relay[u] for u, v in itertools.pairwise(path))
            jit2 = sum(stats[(u, v)][1] ** 2 for u, v in itertools.pairwise(path))
            surv = math.prod(1 - stats[(u, v)][2] / 100 for u, v in itertools.pairwise(path))
            rtt_a[p, k], jit_a[p, k], loss_a[p, k] = rtt, math.sqrt(jit2), 100 * (1 - surv)
            paths[(p, k)] = path
    return Backbone(rtt_a, jit_a, loss_a, ~np.isnan(rtt_a), paths)


@dataclass(frozen=True)
class TopK:
    """Per destination column and region: the k best entry-PoP indices (-1 = none) and their
    R (float32, SENTINEL_R-ish when none), best first."""

    pop_idx: NDArray[np.int32]  # [dests, regions, k]
    r: F32  # [dests, regions, k]


@functools.lru_cache(maxsize=16)
def scorer_for(
    codec: str, jb: quality.JitterBuffer = quality.DEFAULT_JB, burst_r: float = 1.0
) -> Scorer:
    """A Scorer built once per (codec, jitter buffer, BurstR): its tables take ~0.1 s."""
    return Scorer(codec, jb, burst_r)


class Scorer:
    """Scores candidate routes with the E-model for one codec and jitter buffer (see module).

    Limits: jitter above 250 ms is scored as 250 ms and each leg's one-way delay is capped at
    10 s (such paths are far below any target either way; the order among them is kept where
    it can be, never inverted)."""

    def __init__(
        self,
        codec: quality.Codec | str = "g711",
        jb: quality.JitterBuffer = quality.DEFAULT_JB,
        burst_r: float = 1.0,
    ) -> None:
        self.codec = quality.codec_of(codec)
        self.jb = jb
        c = self.codec
        b = c.bpl / 100
        self.k = np.float32(1 + burst_r * b)
        self.c = np.float32((95 - c.ie) * burst_r**2 * b)
        self.r_const = float(c.ie + (95 - c.ie) * burst_r)
        n = round(MAX_REAL_TA_MS / _STEP_MS) + 1
        delay = quality.DelayTable(_STEP_MS, MAX_REAL_TA_MS).values[:n]
        self.delay_tab = np.append(delay - np.float32(self.r_const), np.float32(SENTINEL_R))
        self.delay_tab = self.delay_tab.astype(np.float32)
        # entry i covers jitter [i, i + 1) steps and holds the value at its middle
        jit = (np.arange(0, round(MAX_JITTER_MS / _JIT_STEP_MS) + 1) + 0.5) * _JIT_STEP_MS
        jit[-1] = MAX_JITTER_MS
        depth = jb.depth_ms(jit) + c.codec_delay_ms
        self.depth_tab = (depth / _STEP_MS).astype(np.float32)
        self.survive_tab = (1 - quality.late_loss_ratio(jit, jb)).astype(np.float32)

    def r_to_mos(self, r: ArrayLike) -> NDArray[np.float64]:
        return quality.mos_from_r(np.asarray(r, dtype=np.float64))

    def prepare_access(self, access: AccessMatrix, index: Any = ...) -> tuple[F32, F32, F32]:
        """Access terms in engine units — one-way delay (0.1 ms), jitter² (0.01 ms), survival —
        for `access.*[index]` (rows, one row, one column...), in float32."""
        rtt = np.asarray(access.rtt_ms[index])
        invalid = np.isnan(rtt)
        owd = rtt.astype(np.float32)
        np.multiply(owd, np.float32(0.5 / _STEP_MS), out=owd)
        np.minimum(owd, np.float32(MAX_LEG_OWD_MS / _STEP_MS), out=owd)
        np.putmask(owd, invalid, np.float32(INVALID_OWD))
        j2 = np.asarray(access.jitter_ms[index]).astype(np.float32)
        np.minimum(j2, np.float32(MAX_JITTER_MS), out=j2)
        np.multiply(j2, np.float32(1 / _JIT_STEP_MS), out=j2)
        np.multiply(j2, j2, out=j2)
        np.putmask(j2, invalid, np.float32(0))
        surv = np.asarray(access.loss_pct[index]).astype(np.float32)
        np.multiply(surv, np.float32(-0.01), out=surv)
        np.add(surv, np.float32(1), out=surv)
        np.putmask(surv, invalid, np.float32(1))
        return owd, j2, surv

    def prepare_backbone(self, bb: Backbone, k: int) -> tuple[F32, F32, F32]:
        """Backbone column k in engine units (+0.5 folded in for rounding to the grid)."""
        ok = bb.reachable[:, k]
        owd = np.where(ok, np.minimum(bb.rtt_ms[:, k] / 2, MAX_LEG_OWD_MS) / _STEP_MS, INVALID_OWD)
        j2 = np.where(ok, (np.minimum(bb.jitter_ms[:, k], MAX_JITTER_MS) / _JIT_STEP_MS) ** 2, 0.0)
        surv = np.where(ok, 1 - bb.loss_pct[:, k] / 100, 1.0)
        return (
            (owd + 0.5).astype(np.float32),
            j2.astype(np.float32),
            surv.astype(np.float32),
        )

    def score(
        self,
        a: tuple[F32, F32, F32],
        b: tuple[F32, F32, F32],
        out: F32 | None = None,
        scratch: tuple[I32, F32] | None = None,
    ) -> F32:
        """R of candidates from access terms `a` and backbone terms `b` (engine units, as from
        `prepare_access` / `prepare_backbone`), broadcast elementwise; float32."""
        a_owd, a_j2, a_s = a
        b_owd, b_j2, b_s = b
        shape = np.broadcast_shapes(a_owd.shape, b_owd.shape)
        if scratch is None:
            i, f = np.empty(shape, dtype=np.int32), np.empty(shape, dtype=np.float32)
        else:
            i, f = scratch
        r = out if out is not None else np.empty(shape, dtype=np.float32)
        np.add(a_j2, b_j2, out=f)
        np.sqrt(f, out=f)  # composed jitter, in steps of 0.01 ms
        np.copyto(i, f, casting="unsafe")
        np.take(self.survive_tab, i, mode="clip", out=r)  # r = late-packet survival (scratch)
        np.take(self.depth_tab, i, mode="clip", out=f)  # f = buffer depth + codec (table units)
        np.add(f, a_owd, out=f)
        np.add(f, b_owd, out=f)
        np.multiply(r, a_s, out=r)
        np.multiply(r, b_s, out=r)  # r = survival s
        np.subtract(self.k, r, out=r)
        np.divide(self.c, r, out=r)  # r = C / (k − s)
        np.copyto(i, f, casting="unsafe")
        np.take(self.delay_tab, i, mode="clip", out=f)
        np.add(r, f, out=r)
        return r

    def top_k(
        self,
        access: AccessMatrix,
        bb: Backbone,
        k: int,
        n_dests: int,
        chunk_rows: int = 256,
    ) -> TopK:
        """The k best candidates for every region and destination column. Row chunks outer,
        destinations inner: each access chunk is read from memory and converted once, and
        stays in cache for every destination."""
        n_r, n_p = access.rtt_ms.shape
        k = max(1, min(k, n_p))
        pop_idx = np.full((n_dests, n_r, k), -1, dtype=np.int32)
        r_out = np.full((n_dests, n_r, k), SENTINEL_R, dtype=np.float32)
        buf = np.empty((chunk_rows, n_p), dtype=np.float32)
        fbuf = np.empty((chunk_rows, n_p), dtype=np.float32)
        ibuf = np.empty((chunk_rows, n_p), dtype=np.int32)
        bbs = [self.prepare_backbone(bb, col) for col in range(n_dests)]
        for start in range(0, n_r, chunk_rows):
            rows = slice(start, min(start + chunk_rows, n_r))
            n = rows.stop - start
            a = self.prepare_access(access, rows)
            ar = np.arange(n)
            for col in range(n_dests):
                r = self.score(a, bbs[col], out=buf[:n], scratch=(ibuf[:n], fbuf[:n]))
                for j in range(k):
                    best = np.argmax(r, axis=1)
                    pop_idx[col, rows, j] = best
                    r_out[col, rows, j] = r[ar, best]
                    if j + 1 < k:
                        r[ar, best] = -np.inf
        invalid = r_out < SENTINEL_R / 2
        pop_idx[invalid] = -1
        return TopK(pop_idx, r_out)
