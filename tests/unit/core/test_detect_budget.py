"""The detector and the budget together, in simulated time (seeded): a stationary path costs
under 2 packets/s on average, escalations included; a +150 ms jump is accepted within a second
of the change and a dead path within about one, at the default settings."""

from __future__ import annotations

import numpy as np
import pytest

from netopt.core.budget import EMPTY, BudgetPolicy, PathRole, Signal, allocate
from netopt.core.detect import ChangeDetector
from tests.unit.core.paths import rtts_ms

KEY = ("site", "pop")
ROLES = [PathRole("site", "pop", "region", True)]


def simulate(
    seed: int, seconds: float, spikes: float, change_at: float = np.inf, kind: str = "jump"
) -> tuple[int, float | None]:
    """Packets sent in `seconds`, and the simulated time of the first accepted change at or
    after `change_at` (None if none)."""
    rng = np.random.default_rng(seed)
    det, policy, alloc = ChangeDetector(), BudgetPolicy(), EMPTY
    t, sent = 0.0, 0
    while t < seconds:
        changed = t >= change_at
        if (changed and kind == "dead") or rng.random() < 0.003:
            back = []
        else:
            base = 190.0 if changed else 40.0
            back = [float(rtts_ms(rng, 1, base_ms=base, spike_share=spikes)[0])]
        v = det.update(t, 1, back)
        sent += 1
        if v.state == "changed" and changed:
            return sent, t
        alloc = allocate(ROLES, {KEY: Signal.of(v)}, t, policy, previous=alloc)
        t += 1.0 / alloc.rates_pps[KEY]
    return sent, None


@pytest.mark.parametrize("spikes", [0.0, 0.01])
def test_a_stationary_path_costs_under_two_packets_a_second(spikes: float) -> None:
    sent, change = simulate(seed=1, seconds=7200.0, spikes=spikes)
    assert change is None
    assert 1.0 <= sent / 7200.0 < 2.0  # measured over 24 h (bench/detect.py): 1.23, 1.65


@pytest.mark.parametrize("seed", range(6))
def test_a_jump_is_accepted_within_a_second_of_the_change(seed: int) -> None:
    change_at = 600.0 + seed / 6
    _, at = simulate(seed, 700.0, 0.0, change_at=change_at)
    assert at is not None and at - change_at < 1.1  # ≤ 1 s to the next packet, then 40 ms


@pytest.mark.parametrize("seed", range(6))
def test_a_dead_path_is_accepted_about_a_second_after_it_dies(seed: int) -> None:
    change_at = 600.0 + seed / 6
    _, at = simulate(seed, 700.0, 0.0, change_at=change_at, kind="dead")
    assert at is not None and at - change_at < 1.2  # first loss ≤ 1 s, 3 more at 25/s
