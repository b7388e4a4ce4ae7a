"""netopt.core.evidence with a fake clock: the detector's accepted change feeds plan and decide.

A region `r` with two nearly equal relays `a` and `b` (and a worse direct route), probed as the
daemon does by default (a round of 5 packets a second per path) through the real
ChangeDetector, WindowStats, planner and Decider, replanned every second: a +150 ms / 8 %
change on the route in force moves it within a few packets with the detector and only after
the windows without it; noise never moves it.
"""

from __future__ import annotations

import random
import statistics

import pytest

from netopt.core.decide import Decider, Policy
from netopt.core.detect import Level
from netopt.core.evidence import (
    Accepted,
    PathChanges,
    incumbent_changed,
    overlay,
    proof,
    round_rtts,
)
from netopt.core.window import WindowStats
from netopt.store.model import RoundRecord
from tests.unit.noisy_world import world
from topology.planner import PathStats, plan
from topology.quality import mos

WINDOW_S = 60.0
COUNT = 5
POLICY = Policy(windows_to_switch=3, hold_down_s=60.0, evidence_s=20.0)  # the daemon's defaults


def _rtt(rng: random.Random, base: float) -> float:
    spike = rng.paretovariate(1.5) * 10 if rng.random() < 0.01 else 0.0
    return base + rng.lognormvariate(0.0, 0.5) + spike


def _beyond_clip(changes: PathChanges) -> list[float]:
    det = changes.detectors[("r", "a")]
    return [det.level().rtt_ms + 1.05 * det.clip * det._scale] * det.jump_packets  # type: ignore[operator]


def run(
    seconds: int,
    *,
    change_at: float | None,
    detect: bool,
    seed: int = 1,
    extra_ms: float = 150.0,
    dead: bool = False,
    base: dict[tuple[str, str], float] | None = None,
    loss0: float = 0.003,
    loss1: float = 0.08,
    false_alarm_at: float | None = None,
) -> list[tuple[float, str | None]]:
    """(time, entry PoP) of every route the region took; at `change_at` the path to `a`
    gains `extra_ms` and its round-trip loss goes from `loss0` to `loss1`. At `false_alarm_at`
    the path to `a` sends the fewest packets beyond its detector's clip that make an alarm
    (how a false alarm looks: as many spikes in a row), the rest of that round as usual."""
    rng = random.Random(seed)
    topo = world({"a": 10.0, "b": 14.0})  # a a little better than b: first choice, kept
    base = base or {("r", "a"): 250.0, ("r", "b"): 250.0, ("r", "fra"): 450.0}
    changes = PathChanges(["r"])
    window = WindowStats(WINDOW_S)
    decider = Decider(POLICY)
    routes: list[tuple[float, str | None]] = []
    for t in range(seconds):
        for (src, dst), rtt in base.items():
            bad = change_at is not None and t >= change_at and dst == "a"
            loss = (1.0 if dead else loss1) if bad else loss0
            rtts = [_rtt(rng, rtt + (extra_ms if bad else 0.0)) for _ in range(COUNT)]
            rtts = [x for x in rtts if rng.random() >= loss]
            if t == false_alarm_at and dst == "a":
                rtts[: changes.detectors[(src, dst)].jump_packets] = _beyond_clip(changes)
            p50 = statistics.median(rtts) if rtts else None
            rec = RoundRecord(int(t * 1e9), src, dst, "icmp", COUNT, len(rtts), p50, p50, p50,
                              p50, p50, None)  # fmt: skip
            window.add(rec)
            changes.update(src, dst, float(t), COUNT, rtts)
        stats = window.stats(int(t * 1e9))
        accepted = changes.accepted if detect else {}
        stats = overlay(stats, accepted, float(t), WINDOW_S)
        table, _ = decider.update(plan(topo, stats), float(t), proven=proof(accepted))
        entry = table.get("r")
        assert entry is not None and entry.route is not None
        if not routes or routes[-1][1] != entry.route.entry_pop:
            routes.append((float(t), entry.route.entry_pop))
    return routes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_change_on_the_route_in_force_moves_it_on_the_next_plan(seed: int) -> None:
    change_at = 300.0
    routes = run(360, change_at=change_at, detect=True, seed=seed)
    assert routes[0] == (0.0, "a"), routes
    moved = [(t, pop) for t, pop in routes[1:] if t >= change_at]
    assert moved and moved[0][1] == "b", routes
    # accepted on its 2nd or 3rd packet (a spiky reference needs 3), switched on that plan
    assert moved[0][0] - change_at <= 3.0, routes
    assert [t for t, _ in routes[1:] if t < change_at] == [], routes  # nothing before it


def test_without_the_detector_the_windows_take_longer() -> None:
    with_detector = run(400, change_at=300.0, detect=True)
    windows_only = run(400, change_at=300.0, detect=False)
    assert with_detector[-1][1] == "b" and windows_only[-1][1] == "b"
    assert windows_only[-1][0] - 300.0 >= 20.0 > with_detector[-1][0] - 300.0


@pytest.mark.parametrize(("seed", "loss0"), [(4, 0.003), (5, 0.003), (6, 0.02)])
def test_noise_never_moves_equal_routes(seed: int, loss0: float) -> None:
    routes = run(1800, change_at=None, detect=True, seed=seed, loss0=loss0)
    assert len(routes) == 1, routes


# a relay whose +150 ms still leaves it ahead on RTT (250 vs 264 ms): only its loss (2 % →
# 17 % round trip, 8 % each way) makes it worse; issue 16's lab case
AHEAD = {("r", "a"): 100.0, ("r", "b"): 250.0, ("r", "fra"): 450.0}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_change_leaves_a_route_ahead_on_rtt_on_its_post_change_loss(seed: int) -> None:
    change_at = 300.0
    routes = run(340, change_at=change_at, detect=True, seed=seed, base=AHEAD, loss0=0.02,
                 loss1=0.17)  # fmt: skip
    assert routes[0] == (0.0, "a"), routes
    moved = [(t, pop) for t, pop in routes[1:] if t >= change_at]
    assert moved and moved[0][1] == "b", routes
    # the loss CUSUM alone would take ~80 packets (16 s at 5 a second); the post-change loss
    # estimate, started at the RTT alarm, gets there within 5 s
    assert moved[0][0] - change_at < 5.0, routes
    assert [t for t, _ in routes[1:] if t < change_at] == [], routes


def test_the_accepted_level_is_live_until_the_next_alarm() -> None:
    changes = PathChanges(["r"])
    for t in range(100):
        changes.update("r", "a", float(t), 2, [40.0 + t % 3, 41.0])
    changes.update("r", "a", 100.0, 1, [190.0])
    changes.update("r", "a", 101.0, 1, [191.0])
    first = changes.accepted[("r", "a")]
    assert (first.at_s, first.statistic, first.level.packets) == (101.0, "rtt_up", 2)
    for t in range(102, 112):
        changes.update("r", "a", float(t), 5, [190.0, 192.0])  # 3 of 5 lost each round
    live = changes.accepted[("r", "a")]
    assert (live.at_s, live.statistic) == (101.0, "rtt_up")  # the alarm's, kept
    assert live.level.packets == 52 and live.level.loss_ratio > 0.25  # 30 of 52, prior 50
    assert live.level.rtt_ms == pytest.approx(191.0, abs=1.0)
    changes.update("a", "r", 112.0, 2, [191.0], per_packet=False)  # a summary: no jitter
    assert changes.accepted[("r", "a")].level.jitter_ms is None


def test_a_change_for_the_better_is_no_reason_to_leave() -> None:
    level = Level(50.0, 1.0, 0.0, 10)
    better = {("r", "a"): Accepted(5.0, "rtt_down", level)}
    worse = {("r", "a"): Accepted(5.0, "rtt_up", level)}
    dead = {("a", "r"): Accepted(5.0, "dead", level)}
    path = ("r", "a", "fra")
    assert not incumbent_changed(path, better, since=0.0)
    assert incumbent_changed(path, worse, since=0.0)
    assert incumbent_changed(path, dead, since=0.0)  # either orientation of the hop
    assert not incumbent_changed(path, worse, since=5.0)  # not after the route was chosen
    assert not incumbent_changed(("r", "b", "fra"), worse, since=0.0)


def test_overlay_plans_with_the_accepted_level_within_a_window() -> None:
    s = PathStats("r", "a", 200.0, 3.0, 0.5, 600, 10_000, 50)
    level = Level(350.0, 9.0, 0.08, 40)
    for statistic in ("rtt_up", "rtt_down", "loss"):
        change = {("r", "a"): Accepted(100.0, statistic, level)}  # type: ignore[arg-type]
        (o,) = overlay([s], change, 110.0, WINDOW_S)
        assert (o.rtt_ms, o.jitter_ms, o.loss_pct, o.samples) == (350.0, 9.0, 8.0, 40)
        assert (o.sent_total, o.lost_total) == (10_000, 50)  # the running counters: the window's
    unknown = Level(None, None, 0.08, 0)  # no RTT, no jitter known: the window's stay
    (o,) = overlay([s], {("r", "a"): Accepted(100.0, "loss", unknown)}, 110.0, WINDOW_S)
    assert (o.rtt_ms, o.jitter_ms, o.loss_pct, o.samples) == (200.0, 3.0, 8.0, 1)
    (dead,) = overlay([s], {("r", "a"): Accepted(100.0, "dead", level)}, 110.0, WINDOW_S)
    assert dead.loss_pct == 100.0
    (alive,) = overlay([s], {("r", "a"): Accepted(100.0, "alive", level)}, 110.0, WINDOW_S)
    assert alive == s
    (old,) = overlay([s], {("r", "a"): Accepted(100.0, "rtt_up", level)}, 160.0, WINDOW_S)
    assert old == s  # a window later the window itself says it


def test_path_changes_key_paths_as_the_planner_does_and_forget_unprobed_ones() -> None:
    changes = PathChanges(["r"])
    changes.update("a", "r", 0.0, 2, [10.0, 11.0])  # measured from the PoP side
    assert set(changes.detectors) == {("r", "a")}
    changes.reconfigure(["r"], [("r", "b")])
    assert changes.detectors == {} and changes.last == {}
    assert round_rtts(3, 42.0) == [42.0, 42.0, 42.0]
    assert round_rtts(0, None) == [] and round_rtts(2, None) == []


def test_a_dead_path_is_withdrawn_by_its_detector_alone() -> None:
    """No pop_alive here: the detector's `dead` (4 packets lost in a row) is 100 % loss."""
    routes = run(320, change_at=300.0, detect=True, dead=True)
    assert [pop for _, pop in routes] == ["a", "b"], routes
    assert routes[1][0] - 300.0 <= 1.0, routes


def test_an_rtt_false_alarm_on_a_lossy_path_rarely_moves_its_loss_by_the_margin() -> None:
    """A path at 250 ms and 2 % loss, probed in rounds of 5 a second for 5 minutes, whose
    detector then accepts the fewest packets beyond its clip that make an alarm (how a false
    alarm looks): for the next minute, does the live accepted loss ever read so high that an
    equal route at the true 2 % would beat it by the 0.2 MOS margin (3.7 % here) while the
    alarm still stands as proof (an `rtt_up` not yet undone)? And, looser, under whatever
    change is in force (the alarm back, `rtt_down`, is planned with its level too, but through
    the decider's windows and noise test)? Measured over these 200 seeds (change_prior_packets
    50): 0 and 51 (25 %), 3 seeds skipped for a false alarm in the warm-up."""
    loss, base_ms = 0.02, 250.0
    true_mos = mos(base_ms, 2.0, 100 * loss)

    def round_of(rng: random.Random, t: float, changes: PathChanges) -> None:
        rtts = [_rtt(rng, base_ms) for _ in range(COUNT)]
        changes.update("r", "a", t, COUNT, [x for x in rtts if rng.random() >= loss])

    seeds, proven, planned, alarmed = 200, 0, 0, 0
    for seed in range(seeds):
        rng = random.Random(seed)
        changes = PathChanges(["r"])
        for t in range(300):
            round_of(rng, float(t), changes)
        if changes.accepted:  # a false alarm in the warm-up (1500 packets): not this case
            alarmed += 1
            continue
        m = changes.detectors[("r", "a")].jump_packets
        v = changes.update("r", "a", 300.0, m, _beyond_clip(changes))
        assert v.statistic == "rtt_up"
        beaten_proven = beaten = False
        for t in range(301, 361):
            round_of(rng, float(t), changes)
            change = changes.accepted[("r", "a")]
            if true_mos - mos(base_ms, 2.0, 100 * change.level.loss_ratio) >= 0.2:
                beaten = True
                beaten_proven |= change.statistic == "rtt_up"
        proven += beaten_proven
        planned += beaten
    print(f"beaten under proof {proven}/{seeds}, under any change {planned}/{seeds}, "
          f"warm-up alarms {alarmed}")  # fmt: skip
    assert alarmed <= 6  # 300,000 packets: 3.5 expected at one per 86,400; 3 here
    assert proven <= 0.05 * seeds, proven
    assert planned <= 0.4 * seeds, planned
