"""topology.uncertainty: the gain left once loss sampling noise is held against a challenger."""

from __future__ import annotations

import math

import pytest

from topology import quality
from topology.model import Link, Pop, Region, Topology
from topology.planner import Expected, PathStats, plan
from topology.uncertainty import gain_at_equal_loss, loss_shifts_pct, sure_gain


def e(rtt: float, loss: float, samples: int, jitter: float = 2.0) -> Expected:
    return Expected(rtt, jitter, loss, quality.mos(rtt, jitter, loss), samples)


def test_shifts_are_z_standard_errors_of_the_difference_at_the_pooled_loss() -> None:
    # 0 of 100 against 4 of 100: pooled 2 %, SE = sqrt(.02 * .98 * (1/100 + 1/100)) = 1.98 %
    up, down = loss_shifts_pct((0.0, 100), (4.0, 100), z=1.0)
    se = 100 * math.sqrt(0.02 * 0.98 * 0.02)
    assert up == pytest.approx(se / 2) and down == pytest.approx(se / 2)
    # unequal counts: the side with fewer packets takes the larger share (its 1/n)
    up, down = loss_shifts_pct((0.0, 50), (4.0, 200), z=2.0)
    assert up == pytest.approx(4 * down)


def test_sure_gain_by_hand() -> None:
    c, i = e(100, 0.0, 100), e(60, 4.0, 100)
    s = 100 * math.sqrt(0.02 * 0.98 * 0.02) / 2
    expected = (
        c.mos - i.mos
        + (quality.mos(100, 2.0, s) - quality.mos(100, 2.0, 0.0))
        - (quality.mos(60, 2.0, 4.0 - s) - quality.mos(60, 2.0, 4.0))
    )  # fmt: skip
    assert sure_gain(c, i, z=1.0) == pytest.approx(expected, abs=1e-9)
    assert sure_gain(c, i, z=1.0) < c.mos - i.mos


def test_nothing_uncertain_leaves_the_gain_alone() -> None:
    c, i = e(100, 0.0, 30), e(300, 0.0, 30)  # neither lost a packet: delay decides
    assert sure_gain(c, i, z=2.0) == pytest.approx(c.mos - i.mos)
    c, i = e(100, 1.0, 0), e(300, 3.0, 0)  # counts unknown (offline paths.csv)
    assert sure_gain(c, i, z=2.0) == pytest.approx(c.mos - i.mos)
    assert sure_gain(e(100, 1.0, 50), e(300, 3.0, 50), z=0.0) == pytest.approx(
        e(100, 1.0, 50).mos - e(300, 3.0, 50).mos
    )


def test_more_packets_or_less_confidence_leave_more_of_the_gain() -> None:
    gains = [sure_gain(e(100, 0.0, n), e(100, 2.0, n), z=2.0) for n in (30, 150, 1500, 15000)]
    assert gains == sorted(gains) and gains[-1] > 0 > gains[0]
    by_z = [sure_gain(e(100, 0.0, 150), e(100, 2.0, 150), z=z) for z in (3, 2, 1, 0)]
    assert by_z == sorted(by_z)


def test_planner_carries_the_sample_count_into_every_route() -> None:
    world = Topology(
        regions=(Region("lagos"),),
        pops=(Pop("fra", "core"), Pop("los", "edge")),
        destinations=("fra",),
        backbone=(Link("los", "fra", 80),),
    )
    paths = [PathStats("lagos", "fra", 400, samples=150), PathStats("lagos", "los", 6, samples=30)]
    entry = plan(world, paths).get("lagos", "fra")
    assert entry is not None
    assert {r.entry_pop: r.expected.samples for r in entry.routes} == {None: 150, "los": 30}
    unknown = plan(world, [PathStats("lagos", "fra", 400)]).get("lagos", "fra")
    assert unknown is not None and unknown.routes[0].expected.samples == 0


def test_pooled_evidence_replaces_the_window_figure() -> None:
    c, i = e(100, 0.0, 30), e(100, 10.0, 30)  # one lucky window...
    window_only = sure_gain(c, i, z=2.0)
    # ...against the same routes over 600 packets since, which lost alike: no gain left
    alike = sure_gain(c, i, z=2.0, evidence=((2.0, 630), (2.5, 630)))
    held = sure_gain(c, i, z=2.0, evidence=((0.5, 630), (10.0, 630)))
    assert held > 0.2 > window_only  # 3 of 30 lost is not sure; 63 of 630 against 3 is
    assert alike < 0.2  # the same routes, once the packets since show they lose alike


def test_gain_at_equal_loss_is_what_delay_and_jitter_are_worth() -> None:
    near, far = e(80, 0.0, 10), e(600, 10.0, 10)
    assert gain_at_equal_loss(near, far) == pytest.approx(
        quality.mos(80, 2.0, 5.0) - quality.mos(600, 2.0, 5.0), abs=1e-9
    )
    assert (
        gain_at_equal_loss(e(260, 0.0, 5), e(44, 20.0, 5)) < 0 < e(260, 0, 5).mos - e(44, 20, 5).mos
    )
