"""Planner at scale: 10,000 regions × 300 PoPs × 5 destinations, against a straightforward peer.

    .venv/bin/python bench/plan_scale.py [--regions 10000 --pops 300 --dests 5 --repeat 5]

netopt: `topology.planner.plan_matrix` — every candidate (direct + entry at each PoP, then the
multi-hop backbone) scored with the E-model in float32 numpy, verdicts included. Timed warm
(backbone paths and E-model tables cached, as when the daemon replans with new measurements)
and cold (first plan of a topology). Peak memory of one warm plan via tracemalloc (numpy
allocations are traced), in a separate run so tracing does not slow the timed one.

Peer: the straightforward planner — backbone paths from networkx (one Dijkstra per
destination), then for every candidate a composition and the E-model in plain Python `math`
(no numpy on scalars, which would be slower), on a smaller instance. Both planners' best
routes are compared there. Prints the per-candidate speed-up.
"""

from __future__ import annotations

import argparse
import itertools
import math
import resource
import time
import tracemalloc

import networkx as nx
import numpy as np

from topology import quality as q
from topology.model import Link, Pop, Region, Topology
from topology.planner import plan_matrix
from topology.scoring import AccessMatrix, build_backbone


def world(
    n_regions: int, n_pops: int, n_dests: int, seed: int = 7
) -> tuple[Topology, AccessMatrix]:
    """Random sites on a sphere; RTT ~ great-circle distance × detour noise; 5 % unmeasured."""
    rng = np.random.default_rng(seed)

    def sites(n: int) -> np.ndarray:
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    reg, pop = sites(n_regions), sites(n_pops)
    angle = np.arccos(np.clip(reg @ pop.T, -1, 1))
    rtt = angle * 6371 / 100 * rng.uniform(1.1, 2.5, angle.shape) + rng.uniform(2, 30, angle.shape)
    rtt[rng.random(rtt.shape) < 0.05] = np.nan
    jit = rng.gamma(1.5, 2.0, rtt.shape)
    loss = rng.choice([0.0, 0.1, 0.5, 2.0], rtt.shape, p=[0.6, 0.25, 0.1, 0.05])
    pops = tuple(
        Pop(f"p{i}", "core" if i < n_dests else "edge", relay_delay_ms=0.3) for i in range(n_pops)
    )
    pp = np.arccos(np.clip(pop @ pop.T, -1, 1)) * 6371 / 100 * 1.3 + 1
    links = {}
    for i in range(n_pops):  # each PoP to its 6 nearest: a multi-hop backbone
        for j in np.argsort(pp[i])[1:7]:
            a, b = sorted((i, int(j)))
            links[(a, b)] = Link(f"p{a}", f"p{b}", float(pp[a, b]), 0.5, 0.01)
    topo = Topology(
        tuple(Region(f"r{i}") for i in range(n_regions)),
        pops,
        tuple(f"p{i}" for i in range(n_dests)),
        tuple(links.values()),
    )
    return topo, AccessMatrix(rtt, jit, loss)


def peer_plan(topo: Topology, acc: AccessMatrix) -> dict[tuple[int, int], tuple[float, int]]:
    """Straightforward planner: best (mos, pop index) per (region, dest column)."""
    g = topo.backbone_graph()
    relay = {p.id: p.relay_delay_ms for p in topo.pops}
    for u, v, d in g.edges(data=True):
        d["w"] = (
            d["rtt_ms"] / 2 + 2 * d["jitter_ms"] + 50 * d["loss_pct"] + (relay[u] + relay[v]) / 2
        )
    index = {p.id: i for i, p in enumerate(topo.pops)}
    codec = q.CODECS["g711"]
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for k, dest in enumerate(topo.destinations):
        paths = nx.single_source_dijkstra_path(g, dest, weight="w")
        legs = {}
        for node, rpath in paths.items():
            path = list(reversed(rpath))
            rtt = sum(g[u][v]["rtt_ms"] + 2 * relay[u] for u, v in itertools.pairwise(path))
            j2 = sum(g[u][v]["jitter_ms"] ** 2 for u, v in itertools.pairwise(path))
            s = math.prod(1 - g[u][v]["loss_pct"] / 100 for u, v in itertools.pairwise(path))
            legs[index[node]] = (rtt, j2, s)
        for r in range(acc.rtt_ms.shape[0]):
            top = (-1.0, -1)
            for p, (b_rtt, b_j2, b_s) in legs.items():
                a_rtt = acc.rtt_ms[r, p]
                if math.isnan(a_rtt):
                    continue
                jit = math.sqrt(acc.jitter_ms[r, p] ** 2 + b_j2)
                loss = 100 * (1 - (1 - acc.loss_pct[r, p] / 100) * b_s)
                m = scalar_mos(a_rtt + b_rtt, jit, loss, codec)
                if m > top[0]:
                    top = (m, p)
            best[(r, k)] = top
    return best


def scalar_mos(rtt: float, jit: float, loss: float, c: q.Codec) -> float:
    """The E-model of topology.quality in plain Python math (the peer's per-candidate cost)."""
    jb = q.DEFAULT_JB
    depth = min(max(jb.factor * jit, jb.min_ms), jb.max_ms)
    ta = rtt / 2 + depth + c.codec_delay_ms
    late = 0.5 * math.exp(-1.5 * depth / jit) if jit > 0 else 0.0
    ppl = 100 * (1 - (1 - loss / 100) * (1 - late))
    t, tr = ta, 2 * ta
    roe = -1.5 * (q.NO - q.RLR)
    terv = q.TELR - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    rle = 10.5 * (q.WEPL + 7) * (tr + 1) ** -0.25
    idle = (q.RO - rle) / 2 + math.sqrt((q.RO - rle) ** 2 / 4 + 169)
    x = math.log2(max(ta, 100) / 100)
    idd = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    stmro = -10 * math.log10(10 ** (-q.STMR / 10) + math.exp(-t / 4) * 10 ** (-q.TELR / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    r = q.RO - (IOLR_IQ + ist) - (idte + idle + idd) - (c.ie + (95 - c.ie) * ppl / (ppl + c.bpl))
    r = min(max(r, 0.0), 100.0)
    return min(max(1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r), 1.0), 4.5)


# Iolr + Iq do not depend on delay: Is(T) minus its Ist part, from the library once.
_STMRO0 = -10 * math.log10(10 ** (-q.STMR / 10) + 10 ** (-q.TELR / 10))
IOLR_IQ = float(q._is_terms(np.array(1e9))) - (
    12 * (1 + ((q.STMR - 13) / 6) ** 8) ** (1 / 8)
    - 28 * (1 + ((q.STMR + 1) / 19.4) ** 35) ** (1 / 35)
    - 13 * (1 + ((q.STMR - 3) / 33) ** 13) ** (1 / 13)
    + 29
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regions", type=int, default=10_000)
    ap.add_argument("--pops", type=int, default=300)
    ap.add_argument("--dests", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peer-regions", type=int, default=100)
    a = ap.parse_args()
    topo, acc = world(a.regions, a.pops, a.dests)
    n_cand = a.regions * a.pops * a.dests
    t0 = time.perf_counter()
    plan_matrix(topo, acc)
    cold = time.perf_counter() - t0
    warm, warm_cpu = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        p = plan_matrix(topo, acc)
        warm.append(time.perf_counter() - t0)
        warm_cpu.append(time.process_time() - c0)
    tracemalloc.start()
    plan_matrix(topo, acc)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t0 = time.perf_counter()
    build_backbone(topo)
    bb_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    some = [p.get(f"r{i}", "p0") for i in range(1000)]
    mat_s = (time.perf_counter() - t0) / len(some)
    best_w = min(warm)
    print(
        f"netopt plan: {a.regions} regions x {a.pops} PoPs x {a.dests} dests "
        f"= {n_cand:,} candidates"
    )
    print(
        f"  warm plan (scoring + verdicts): best {best_w:.3f} s, "
        f"median {sorted(warm)[len(warm) // 2]:.3f} s; CPU time best {min(warm_cpu):.3f} s"
    )
    print(
        f"  cold plan (incl. backbone Dijkstra + E-model tables): {cold:.3f} s "
        f"(backbone alone {bb_s:.3f} s)"
    )
    print(
        f"  peak traced memory of one warm plan: {peak / 2**20:.0f} MiB "
        f"(inputs: access matrix {3 * acc.rtt_ms.nbytes / 2**20:.0f} MiB float64)"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process max RSS so far: {rss:.0f} MiB (Python, numpy, networkx, the world)")
    print(f"  materialising one RegionPlan on demand: {mat_s * 1e6:.0f} us")
    print(f"  per candidate: {best_w / n_cand * 1e9:.1f} ns")

    small_topo, small_acc = world(a.peer_regions, a.pops, a.dests, seed=11)
    n_small = a.peer_regions * a.pops * a.dests
    t0 = time.perf_counter()
    peer = peer_plan(small_topo, small_acc)
    peer_s = time.perf_counter() - t0
    ours = plan_matrix(small_topo, small_acc)
    agree = 0
    for (r, k), (mos, _) in peer.items():
        e = ours.get(f"r{r}", small_topo.destinations[k])
        assert e is not None
        top = max((x.expected.mos for x in e.routes), default=-1.0)
        agree += abs(top - mos) <= 0.01
    print(
        f"peer (networkx + per-candidate Python E-model): {a.peer_regions} regions, {n_small:,} "
        f"candidates in {peer_s:.2f} s = {peer_s / n_small * 1e9:.0f} ns per candidate"
    )
    print(f"  best-route agreement with netopt (within 0.01 MOS): {agree}/{len(peer)}")
    print(f"speed-up per candidate: {(peer_s / n_small) / (best_w / n_cand):.0f}x")


if __name__ == "__main__":
    main()
