"""The planner on small hand-built worlds: direct vs relay, verdicts, reasons, skips."""

from __future__ import annotations

import pytest

from topology import quality
from topology.model import Link, Pop, Region, Topology
from topology.planner import PathStats, Plan, RegionPlan, plan

WORLD = Topology(
    regions=(Region("lagos"), Region("nairobi"), Region("quiet")),
    pops=(Pop("fra", "core"), Pop("jnb", "edge", relay_delay_ms=0.5), Pop("lon", "edge")),
    destinations=("fra",),
    backbone=(Link("jnb", "fra", 160, 1, 0.01), Link("lon", "fra", 10)),
)

PATHS = [
    PathStats("lagos", "fra", 300, 15, 2),
    PathStats("lagos", "lon", 96, 2, 0.1),
    PathStats("lagos", "jnb", 110, 3, 0.2),
    PathStats("nairobi", "fra", 178.5, 2, 0.1),
]


def entry(p: Plan, region: str) -> RegionPlan:
    e = p.get(region, "fra")
    assert e is not None
    return e


def test_poor_direct_with_a_better_relay_needs_acceleration() -> None:
    e = entry(plan(WORLD, PATHS), "lagos")
    assert e.acceleration == "needed"
    assert e.best is not None and e.best.kind == "relay"
    assert e.best.path == ("lagos", "lon", "fra") and e.best.entry_pop == "lon"
    assert [r.entry_pop for r in e.routes] == ["lon", "jnb", None]
    assert "loss 2.00 % > 1.2 %" in e.reason and "lon" in e.reason


def test_relay_expected_stats_compose_and_match_the_scalar_e_model() -> None:
    e = entry(plan(WORLD, PATHS), "lagos")
    via_jnb = e.routes[1]
    assert via_jnb.expected.rtt_ms == pytest.approx(110 + 160 + 2 * 0.5)
    assert via_jnb.expected.jitter_ms == pytest.approx((3**2 + 1**2) ** 0.5)
    assert via_jnb.expected.loss_pct == pytest.approx(100 * (1 - 0.998 * 0.9999))
    exact = quality.mos(271, (10) ** 0.5, 100 * (1 - 0.998 * 0.9999))
    assert via_jnb.expected.mos == pytest.approx(exact, abs=0.002)


def test_good_direct_is_not_accelerated_and_comes_first() -> None:
    e = entry(plan(WORLD, [*PATHS, PathStats("nairobi", "lon", 150, 1, 0)]), "nairobi")
    assert e.acceleration == "not_needed"
    assert e.best is not None and e.best.kind == "direct"
    assert "good" in e.reason


def test_region_without_measurements_is_unmeasured_not_routed() -> None:
    e = entry(plan(WORLD, PATHS), "quiet")
    assert e.acceleration == "unmeasured" and e.routes == () and e.best is None
    assert "Nothing has been measured from quiet" in e.reason
    assert {s.pop for s in e.skipped} == {"fra", "jnb", "lon"}


def test_unknown_id_in_paths_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown id 'mars'"):
        plan(WORLD, [PathStats("mars", "fra", 10)])


def test_plan_iterates_every_region_and_destination() -> None:
    p = plan(WORLD, PATHS)
    assert len(p) == 3
    assert {(e.region, e.dest) for e in p} == {
        ("lagos", "fra"),
        ("nairobi", "fra"),
        ("quiet", "fra"),
    }
    assert p.get("lagos", "nowhere") is None
