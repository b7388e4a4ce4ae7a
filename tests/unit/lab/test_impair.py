"""The impairment model without a network: loss, bursts, jitter, order, live changes."""

from __future__ import annotations

import math
import statistics

import pytest

from netopt.lab.impair import Direction, RandomStream, predicted_rtt_ms, round_trip_loss
from netopt.lab.profile import Burst, LinkParams

MS = 1_000_000


def _run(params: LinkParams, n: int, spacing_ns: int = 20 * MS, seed: int = 7) -> list[int]:
    """One-way delay (ns) per packet, -1 for a loss."""
    d, rnd = Direction("a", "b", params), RandomStream(seed)
    out = []
    for i in range(n):
        due = d.admit(i * spacing_ns, rnd)
        out.append(due - i * spacing_ns if due >= 0 else -1)
    return out


def test_fixed_delay_is_exact() -> None:
    assert set(_run(LinkParams(delay_ms=40), 100)) == {40 * MS}


def test_bernoulli_loss_rate_within_99pct_interval() -> None:
    n, p = 20_000, 0.03
    lost = _run(LinkParams(loss_pct=3), n).count(-1)
    assert abs(lost - n * p) <= 2.576 * math.sqrt(n * p * (1 - p))


def test_gilbert_elliott_bursts_and_stationary_loss() -> None:
    n, p, r = 50_000, 0.05, 0.3
    res = _run(LinkParams(burst=Burst(p=p, r=r)), n)
    bursts, run = [], 0
    for x in res:
        if x < 0:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert statistics.fmean(bursts) == pytest.approx(1 / r, rel=0.1)
    assert res.count(-1) / n == pytest.approx(p / (p + r), rel=0.1)


def test_jitter_has_the_set_deviation_and_is_clamped_at_zero() -> None:
    delays = _run(LinkParams(delay_ms=40, jitter_ms=5), 20_000)
    assert statistics.fmean(delays) / MS == pytest.approx(40, abs=0.15)
    assert statistics.pstdev(delays) / MS == pytest.approx(5, rel=0.05)
    assert min(_run(LinkParams(delay_ms=1, jitter_ms=20), 2000)) >= 0


def test_order_is_preserved_unless_reorder() -> None:
    params = LinkParams(delay_ms=10, jitter_ms=10)
    kept = _run(params, 2000, spacing_ns=MS)
    dues = [i * MS + x for i, x in enumerate(kept)]
    assert dues == sorted(dues)
    free = _run(params.model_copy(update={"reorder": True}), 2000, spacing_ns=MS)
    free_dues = [i * MS + x for i, x in enumerate(free)]
    assert free_dues != sorted(free_dues)


def test_configure_changes_live_and_keeps_counters() -> None:
    d, rnd = Direction("a", "b", LinkParams(loss_pct=100)), RandomStream(1)
    assert d.admit(0, rnd) == -1
    d.configure(LinkParams(delay_ms=5))
    assert d.admit(MS, rnd) == 6 * MS
    assert d.dropped == 1


def test_predicted_rtt_of_two_jittered_directions() -> None:
    p = LinkParams(delay_ms=40, jitter_ms=5)
    mean, std = predicted_rtt_ms(p, p)
    assert mean == pytest.approx(80) and std == pytest.approx(5 * math.sqrt(2))
    # heavily clamped jitter: mean rises above the set delay, deviation shrinks
    mean0, std0 = predicted_rtt_ms(LinkParams(jitter_ms=5), LinkParams())
    assert mean0 == pytest.approx(5 / math.sqrt(2 * math.pi))
    assert 0 < std0 < 5


def test_round_trip_loss_composes_directions() -> None:
    p = LinkParams(loss_pct=3)
    assert round_trip_loss(p, p) == pytest.approx(1 - 0.97**2)
    bursty = LinkParams(burst=Burst(p=0.01, r=0.3))
    assert round_trip_loss(bursty, LinkParams()) == pytest.approx(0.01 / 0.31)
