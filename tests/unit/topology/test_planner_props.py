"""Planner invariants: optimal against brute force on random worlds; capacity; bad input."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import quality
from topology.model import Link, Pop, Region, Topology
from topology.planner import PathStats, plan
from topology.scoring import JITTER_WEIGHT, LOSS_WEIGHT_MS_PER_PCT


def stat() -> st.SearchStrategy[tuple[float, float, float]]:
    return st.tuples(
        st.floats(1, 600), st.floats(0, 40), st.sampled_from([0.0, 0.1, 0.5, 2.0, 10.0, 100.0])
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Topology, list[PathStats]]:
    n_pops = draw(st.integers(2, 5))
    n_regions = draw(st.integers(1, 4))
    pops = tuple(
        Pop(f"p{i}", "edge", relay_delay_ms=draw(st.sampled_from([0.0, 0.5, 3.0])))
        for i in range(n_pops)
    )
    dests = tuple(f"p{i}" for i in range(draw(st.integers(1, min(2, n_pops)))))
    links = []
    for a, b in itertools.combinations(range(n_pops), 2):
        if draw(st.booleans()):
            rtt, jit, loss = draw(stat())
            links.append(Link(f"p{a}", f"p{b}", rtt, jit, loss))
    regions = tuple(Region(f"r{i}") for i in range(n_regions))
    paths = []
    for r in regions:
        for p in pops:
            if draw(st.integers(0, 4)) > 0:
                paths.append(PathStats(r.id, p.id, *draw(stat())))
    return Topology(regions, pops, dests, tuple(links)), paths


def brute_force(topo: Topology, paths: list[PathStats], region: str, dest: str) -> float | None:
    """Every entry PoP, every simple backbone path to dest; the path is the one with the
    lowest backbone weight (as documented), scored by the exact scalar E-model."""
    acc = {(p.src, p.dst): p for p in paths}
    relay = {p.id: p.relay_delay_ms for p in topo.pops}
    g = topo.backbone_graph()
    best: float | None = None
    for pop in topo.pops:
        a = acc.get((region, pop.id))
        if a is None:
            continue
        if pop.id == dest:
            m = quality.mos(a.rtt_ms, a.jitter_ms, a.loss_pct)
        else:
            options = []
            for path in nx.all_simple_paths(g, pop.id, dest):
                edges = [g[u][v] for u, v in itertools.pairwise(path)]
                weight = sum(
                    e["rtt_ms"] / 2 + relay[u] + JITTER_WEIGHT * e["jitter_ms"]
                    + LOSS_WEIGHT_MS_PER_PCT * e["loss_pct"]
                    for e, u in zip(edges, path, strict=False)
                )  # fmt: skip
                options.append((weight, path, edges))
            if not options:
                continue
            weight, path, edges = min(options, key=lambda o: o[0])
            rtt = a.rtt_ms + sum(
                e["rtt_ms"] + 2 * relay[u] for e, u in zip(edges, path, strict=False)
            )
            jit = math.sqrt(a.jitter_ms**2 + sum(e["jitter_ms"] ** 2 for e in edges))
            surv = (1 - a.loss_pct / 100) * math.prod(1 - e["loss_pct"] / 100 for e in edges)
            m = quality.mos(rtt, jit, 100 * (1 - surv))
        best = m if best is None else max(best, m)
    return best


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_planner_matches_brute_force(world: tuple[Topology, list[PathStats]]) -> None:
    topo, paths = world
    one_by_one = plan(topo, paths)
    looked_up = [one_by_one.get(r.id, d) for d in topo.destinations for r in topo.regions]
    result = plan(topo, paths)
    assert list(result.entries) == looked_up  # batch ranking == per-pair ranking
    for e in result:
        expected = brute_force(topo, paths, e.region, e.dest)
        if expected is None:
            assert e.routes == () and e.acceleration in ("unmeasured", "unreachable")
            continue
        assert e.routes, (e.region, e.dest)
        top = max(r.expected.mos for r in e.routes)
        # ties between backbone paths of equal weight may pick a different path
        assert top == pytest.approx(expected, abs=0.01)
        mos = [r.expected.mos for r in e.routes]
        if e.acceleration != "not_needed":
            assert mos == sorted(mos, reverse=True)
        for r in e.routes:
            assert r.path[0] == e.region and r.path[-1] == e.dest
            assert (r.kind == "direct") == (r.entry_pop is None)


# ---- capacity -------------------------------------------------------------------------------


def capacity_world(cap: int | None) -> tuple[Topology, list[PathStats]]:
    topo = Topology(
        tuple(Region(f"r{i}", weight=1.0) for i in range(3)),
        (Pop("fra", "core"), Pop("jnb", "edge", capacity_calls=cap), Pop("lon", "edge")),
        ("fra",),
        (Link("jnb", "fra", 20), Link("lon", "fra", 20)),
    )
    paths = [PathStats(f"r{i}", "fra", 400, 5, 3) for i in range(3)]
    # jnb is everyone's best; lon is a close second for r0, a poor one for r1 and r2
    paths += [PathStats(f"r{i}", "jnb", 40) for i in range(3)]
    paths += [PathStats("r0", "lon", 45), PathStats("r1", "lon", 350), PathStats("r2", "lon", 380)]
    return topo, paths


def test_without_capacity_everyone_takes_the_best_pop() -> None:
    topo, paths = capacity_world(None)
    result = plan(topo, paths)
    assert [e.best.entry_pop for e in result if e.best] == ["jnb", "jnb", "jnb"]


def test_capacity_moves_the_pair_that_loses_least() -> None:
    topo, paths = capacity_world(2)
    result = plan(topo, paths)
    chosen = {e.region: e.best.entry_pop for e in result if e.best}
    assert chosen == {"r0": "lon", "r1": "jnb", "r2": "jnb"}  # r0's regret is smallest
    r0 = result.get("r0", "fra")
    assert r0 is not None and "jnb is at capacity" in r0.reason


def test_over_capacity_is_said_not_hidden() -> None:
    topo, paths = capacity_world(0)
    paths = [p for p in paths if p.dst != "fra" and p.dst != "lon"]  # only jnb measured
    result = plan(topo, paths)
    for e in result:
        assert e.best is not None and e.best.entry_pop == "jnb"
        assert "over capacity at jnb" in e.reason


def test_duplicate_measurements_later_wins_and_region_side_beats_pop_side() -> None:
    topo, _ = capacity_world(None)
    paths = [
        PathStats("r0", "fra", 100),
        PathStats("fra", "r0", 50),  # measured from the PoP side: the region side wins
        PathStats("r1", "fra", 100),
        PathStats("r1", "fra", 60),  # a later duplicate wins
        PathStats("fra", "r2", 70),  # only the PoP side: used
    ]
    result = plan(topo, paths)
    rtt = {e.region: e.best.expected.rtt_ms for e in result if e.best}
    assert rtt == {"r0": 100, "r1": 60, "r2": 70}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (PathStats("r0", "r1", 10), "region to region"),
        (PathStats("jnb", "jnb", 10), "a PoP to itself"),
        (PathStats("r0", "nowhere", 10), "unknown id 'nowhere'"),
    ],
)
def test_bad_paths_are_refused(path: PathStats, message: str) -> None:
    topo, _ = capacity_world(None)
    with pytest.raises(ValueError, match=message):
        plan(topo, [path])


def test_path_stats_refuse_impossible_numbers() -> None:
    with pytest.raises(ValueError, match="rtt_ms"):
        PathStats("a", "b", float("nan"))
    with pytest.raises(ValueError, match="loss_pct"):
        PathStats("a", "b", 10, 0, 100.5)


def test_pop_to_pop_measurement_overrides_the_declared_backbone() -> None:
    topo, _ = capacity_world(None)
    paths = [PathStats("r0", "jnb", 40), PathStats("jnb", "fra", 200)]
    e = plan(topo, paths).get("r0", "fra")
    assert e is not None and e.best is not None
    assert e.best.expected.rtt_ms == pytest.approx(240)
