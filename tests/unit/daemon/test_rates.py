"""netopt.daemon.rates: steady round shapes and burst rates from the budget, on a fake clock."""

from __future__ import annotations

import copy
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from prometheus_client import generate_latest

from netopt.config import parse_config
from netopt.core.decide import RouteTable, TableEntry
from netopt.core.detect import Level, Verdict
from netopt.daemon.metrics import Metrics
from netopt.daemon.rates import ProbeRates, round_count, signal_of, steady_timeout
from netopt.daemon.wiring import Daemon
from netopt.errors import ConfigError
from netopt.store import RoundRecord
from tests.unit.test_config import BASE
from topology.planner import Expected, Route

NOW_S = 1_800_000_000.0
LEVEL = Level(40.0, 1.0, 0.0, 100)
JNB_ROUTE = Route("lagos", "fra", "relay", ("lagos", "jnb", "fra"), "jnb", Expected(40, 1, 0, 4.4))


def verdict(at_s: float, *, jump: bool = False, lost: int = 0) -> Verdict:
    return Verdict(at_s, "suspect" if jump else "steady", None, 0.0, LEVEL, jump, lost)


def table(route: Route | None) -> RouteTable:
    entry = TableEntry("lagos", "fra", route, 0.0, "needed", "test")
    return RouteTable(MappingProxyType({("lagos", "fra"): entry}), 0.0)


def config(**probe: Any) -> Any:
    data = copy.deepcopy(BASE)
    data["probes"][0].update({"rate": "adaptive"} | probe)
    return parse_config(data)


def counts(rates: ProbeRates) -> dict[str, int]:
    """Packets per steady round (the scheduler's) by target."""
    return {j.dst: j.options.count for j in rates.jobs()}


def pps(rates: ProbeRates) -> dict[str, float]:
    """Packets/s by target: the steady round's plus the bursts'."""
    extra = {job.dst: more for job, more in rates.extra.values()}
    return {j.dst: j.options.count / j.interval_s + extra.get(j.dst, 0.0) for j in rates.jobs()}


def test_adaptive_is_the_default_for_a_group_that_asks_for_no_shape() -> None:
    assert config().probes[0].adaptive
    assert parse_config(BASE).probes[0].adaptive  # BASE names only kind, from and to
    assert not config(rate="fixed").probes[0].adaptive
    assert config(count=20, rate="adaptive").probes[0].adaptive
    shaped = copy.deepcopy(BASE)
    shaped["probes"][0]["count"] = 20  # a group that names its round shape keeps it
    assert not parse_config(shaped).probes[0].adaptive
    shaped["probes"][0] = {**BASE["probes"][0], "interval_s": 2.0}
    assert not parse_config(shaped).probes[0].adaptive
    fixed = ProbeRates(config(count=20, rate="fixed"), Metrics())
    assert counts(fixed) == {"fra": 20, "jnb": 20}
    assert not fixed.extra


def alarm(at_s: float) -> Verdict:
    return Verdict(at_s, "changed", "rtt_up", 1.0, LEVEL, True, 0)


def test_steady_is_one_packet_a_second_and_an_alarm_escalates_the_region() -> None:
    m = Metrics()
    rates = ProbeRates(config(), m)
    assert counts(rates) == {"fra": 1, "jnb": 1}
    t = table(JNB_ROUTE)
    verdicts = {("lagos", "jnb"): alarm(10.0)}
    reshaped = rates.update(10.0, verdicts, lambda s, d: (s, d), t)
    # the route's path and its candidate (direct to fra) at once, as bursts: the scheduler's
    # steady rounds stay one packet a second
    assert reshaped.jobs is None and reshaped.extra is not None
    assert counts(rates) == {"fra": 1, "jnb": 1}
    assert pps(rates) == {"fra": 25.0, "jnb": 25.0}
    text = generate_latest(m.registry).decode()
    assert 'netopt_probe_rate_packets_per_second{dst="jnb",src="lagos"} 25.0' in text
    assert 'netopt_probe_escalations_total{dst="jnb",reason="alarm",src="lagos"} 1.0' in text
    assert 'netopt_probe_escalations_total{dst="fra",reason="candidate",src="lagos"} 1.0' in text
    assert 'netopt_probe_escalations_total{dst="fra",reason="jump",src="lagos"} 0.0' in text
    # the same (old) verdict again is no new signal: relaxed after relax_s (2 s)
    assert rates.update(11.0, verdicts, lambda s, d: (s, d), t).extra is None
    assert rates.update(12.5, verdicts, lambda s, d: (s, d), t).extra == {}
    assert pps(rates) == {"fra": 1.0, "jnb": 1.0}


def test_a_jump_on_the_route_bursts_that_path_until_confirmed() -> None:
    rates = ProbeRates(config(), Metrics())
    t = table(JNB_ROUTE)
    rates.update(10.0, {("lagos", "jnb"): verdict(10.0, jump=True)}, lambda s, d: (s, d), t)
    assert pps(rates) == {"fra": 1.0, "jnb": 25.0}
    rates.update(10.6, {}, lambda s, d: (s, d), t)  # confirm_s (0.5 s) passed, no alarm
    assert pps(rates) == {"fra": 1.0, "jnb": 1.0}


def test_a_lost_packet_off_the_route_escalates_nothing() -> None:
    rates = ProbeRates(config(), Metrics())
    verdicts = {("lagos", "fra"): verdict(5.0, lost=1)}
    rates.update(5.0, verdicts, lambda s, d: (s, d), table(JNB_ROUTE))
    assert pps(rates) == {"fra": 1.0, "jnb": 1.0}
    on_route = {("lagos", "jnb"): verdict(6.0, lost=1)}
    rates.update(6.0, on_route, lambda s, d: (s, d), table(JNB_ROUTE))
    assert pps(rates) == {"fra": 1.0, "jnb": 25.0}


def test_the_site_budget_caps_the_escalation() -> None:
    data = copy.deepcopy(BASE)
    data["regions"][0]["budget_pps"] = 12
    data["probes"][0]["rate"] = "adaptive"
    rates = ProbeRates(parse_config(data), Metrics())
    verdicts = {("lagos", "jnb"): alarm(1.0)}
    rates.update(1.0, verdicts, lambda s, d: (s, d), table(JNB_ROUTE))
    assert sum(pps(rates).values()) <= 12
    assert sum(pps(rates).values()) == pytest.approx(12)


@pytest.mark.parametrize(
    ("rate", "interval", "spacing", "timeout", "count"),
    [(1.0, 1.0, 0.02, 0.5, 1), (25.0, 1.0, 0.02, 0.5, 23), (25.0, 2.0, 0.02, 1.0, 48),
     (2.0, 1.0, 0.02, 0.5, 2), (0.2, 1.0, 0.02, 0.5, 1), (25.0, 1.0, 0.0, 0.5, 25)],
)  # fmt: skip
def test_round_count_fits_the_interval(
    rate: float, interval: float, spacing: float, timeout: float, count: int
) -> None:
    (job,) = ProbeRates(
        config(interval_s=interval, packet_interval_s=spacing, timeout_s=timeout, to=["jnb"]),
        Metrics(),
    ).jobs()
    assert round_count(rate, job) == count


def test_a_budget_below_the_floors_is_refused_naming_the_site() -> None:
    data = copy.deepcopy(BASE)
    data["regions"][0]["budget_pps"] = 0.3  # two paths need 2 x 0.2 packets/s at least
    data["probes"][0]["rate"] = "adaptive"
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "site 'lagos' budget_pps: probe budget 0.3 packets/s cannot give 2 paths" in str(
        err.value
    )


def test_the_daemon_escalates_on_a_jump_as_bursts(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["store"] = {"url": f"sqlite:///{tmp_path / 'n.db'}"}
    data["probes"][0]["rate"] = "adaptive"
    clock = [100.0]
    daemon = Daemon(parse_config(data), wall_clock=lambda: NOW_S + clock[0],
                    mono_clock=lambda: clock[0])  # fmt: skip
    synced: list[list[Any]] = []

    class Recorder:
        def sync(self, jobs: list[Any]) -> tuple[int, int, int]:
            synced.append(jobs)
            return 0, 0, len(jobs)

    daemon._scheduler = Recorder()  # type: ignore[assignment]
    try:
        for i in range(29):  # steady paths, a plan, then a round 150 ms late on the route
            clock[0] += 1.0
            for dst in ("fra", "jnb"):
                daemon.add_round(one_packet(dst, clock[0], 40.0 + i % 3), [40.0 + i % 3])
        (entry,) = daemon.replan()
        assert entry.route is not None
        hop = entry.route.path[1]
        clock[0] += 1.0
        daemon.add_round(one_packet(hop, clock[0], 190.0), [190.0])
        # the scheduler is re-synced only for steady timeouts (40 ms paths: 0.25 s), never
        # for an escalation: its steady rounds stay one packet a second
        assert all(j.options.count == 1 for jobs in synced for j in jobs)
        assert {j.options.timeout_s for j in synced[-1]} == {0.25}
        burst_jobs = [job for job, _ in daemon.rates.extra.values()]
        assert {j.options.timeout_s for j in burst_jobs} == {0.5}  # bursts wait the full timeout
        # the route's path bursts, 24 packets/s above its steady one; its candidate does not
        # (a jump is not yet an alarm)
        assert {job.dst: more for job, more in daemon.rates.extra.values()} == {hop: 24.0}
        assert daemon.changes.last[("lagos", hop)].jump
    finally:
        daemon.store.close()


def one_packet(dst: str, at_s: float, rtt_ms: float) -> RoundRecord:
    return RoundRecord(int((NOW_S + at_s) * 1e9), "lagos", dst, "icmp", 1, 1, rtt_ms, rtt_ms,
                       rtt_ms, rtt_ms, rtt_ms, None)  # fmt: skip


def test_loss_evidence_building_up_keeps_the_escalation() -> None:
    rates = ProbeRates(config(), Metrics())
    t = table(JNB_ROUTE)
    key = ("lagos", "jnb")
    rates.update(1.0, {key: verdict(1.0, lost=1)}, lambda s, d: (s, d), t)
    assert pps(rates)["jnb"] == 25.0
    for at in (2.0, 3.0, 4.0, 5.0):  # each round loses packets: the escalation stays
        building = Verdict(at, "suspect", "loss", 0.6, LEVEL, False, 2)
        rates.update(at, {key: building}, lambda s, d: (s, d), t)
        assert pps(rates)["jnb"] == 25.0, at  # relax_s (2 s) is long past the first loss
    lone = Verdict(9.0, "steady", "loss", 0.1, LEVEL, False, 1)  # a lone loss: no doubt
    rates.update(9.0, {key: lone}, lambda s, d: (s, d), t)
    rates.update(11.5, {key: lone}, lambda s, d: (s, d), t)
    assert pps(rates)["jnb"] == 1.0


@pytest.mark.parametrize(
    ("loss_ratio", "run", "news"),
    [(0.003, 1, True), (0.02, 1, False), (0.02, 2, True), (0.05, 1, False), (0.05, 2, True),
     (0.1, 2, False), (0.1, 3, True), (0.3, 3, False), (0.3, 4, True)],
)  # fmt: skip
def test_lost_packets_are_news_when_the_path_s_own_loss_rarely_explains_them(
    loss_ratio: float, run: int, news: bool
) -> None:
    """p^run < 1 %: on a lossy path a lone loss is its baseline, a run of them is not."""
    level = Level(40.0, 1.0, loss_ratio, 500)
    got = signal_of(Verdict(5.0, "steady", None, 0.0, level, False, 1, run))
    assert (got.trigger == "loss") is news


def test_a_lost_packet_is_no_news_on_a_lossy_path() -> None:
    rates = ProbeRates(config(), Metrics())
    lossy = Verdict(5.0, "steady", None, 0.0, Level(40.0, 1.0, 0.05, 500), False, 1, 1)
    rates.update(5.0, {("lagos", "jnb"): lossy}, lambda s, d: (s, d), table(JNB_ROUTE))
    assert pps(rates) == {"fra": 1.0, "jnb": 1.0}
    doubtful = Verdict(6.0, "suspect", "loss", 0.6, Level(40.0, 1.0, 0.05, 500), False, 1, 1)
    rates.update(6.0, {("lagos", "jnb"): doubtful}, lambda s, d: (s, d), table(JNB_ROUTE))
    assert pps(rates) == {"fra": 1.0, "jnb": 25.0}  # its loss CUSUM's doubt still escalates


def test_a_verdict_reallocates_its_own_site_and_the_busy_ones_only() -> None:
    data = copy.deepcopy(BASE)
    data["regions"].append({"id": "nairobi", "address": "127.0.0.4"})
    data["probes"].append({"kind": "icmp", "from": "nairobi", "to": ["fra", "jnb"]})
    rates = ProbeRates(parse_config(data), Metrics())
    t = table(JNB_ROUTE)
    rates.update(1.0, {}, lambda s, d: (s, d), t)  # a new table: every site
    assert set(rates.allocations) == {"lagos", "nairobi"}
    verdicts = {("lagos", "jnb"): alarm(2.0)}
    rates.update(2.0, verdicts, lambda s, d: (s, d), t, [("lagos", "jnb")])
    assert rates.allocations["lagos"].at_s == 2.0 and rates.allocations["nairobi"].at_s == 1.0
    verdicts[("nairobi", "fra")] = verdict(3.0)
    rates.update(3.0, verdicts, lambda s, d: (s, d), t, [("nairobi", "fra")])
    # nairobi's verdict, and lagos because its escalation is in force (so it can relax)
    assert rates.allocations["lagos"].at_s == 3.0 and rates.allocations["nairobi"].at_s == 3.0
    rates.update(5.0, verdicts, lambda s, d: (s, d), t, [("nairobi", "fra")])
    assert not rates.allocations["lagos"].reasons  # relaxed after relax_s (2 s)
    rates.update(6.0, verdicts, lambda s, d: (s, d), t, [("nairobi", "fra")])
    assert rates.allocations["lagos"].at_s == 5.0  # idle again: not touched


def test_a_young_accepted_level_keeps_its_path_escalated_a_dead_one_does_not() -> None:
    young = Verdict(5.0, "steady", None, 0.0, Level(190.0, 1.0, 0.1, 12), False, 0)
    assert signal_of(young).doubt == 1.0 and signal_of(young).trigger is None
    dead = Verdict(5.0, "steady", None, 0.0, Level(190.0, 1.0, 1.0, 12), False, 5, 12)
    assert signal_of(dead).doubt == 0.0
    grown = Verdict(5.0, "steady", None, 0.0, Level(190.0, 1.0, 0.1, 60), False, 0)
    assert signal_of(grown).doubt == 0.0
    rates = ProbeRates(config(), Metrics())
    rates.update(5.0, {("lagos", "jnb"): young}, lambda s, d: (s, d), table(JNB_ROUTE))
    assert (
        pps(rates)["jnb"] == 25.0
        and rates.allocations["lagos"].reasons[("lagos", "jnb")] == "doubt"
    )


@pytest.mark.parametrize(
    ("rtt_ms", "jitter_ms", "current", "timeout"),
    [(6.0, 0.7, None, 0.15), (40.0, 1.0, None, 0.25), (160.0, 1.0, None, 0.5),
     (40.0, 14.0, None, 0.5), (None, None, None, 0.5),
     # 2·RTT + 8·jitter + 50 ms: 148 ms, 170 ms, 218 ms, 258 ms; a shorter step only below
     # 80 % of it, the step in force kept up to 100 %
     (45.0, 1.0, None, 0.25), (45.0, 1.0, 0.15, 0.15), (60.0, 1.0, 0.15, 0.25),
     (80.0, 1.0, None, 0.5), (80.0, 1.0, 0.25, 0.25), (100.0, 1.0, 0.25, 0.5)],
)  # fmt: skip
def test_a_steady_round_waits_what_the_path_needs_with_hysteresis(
    rtt_ms: float | None, jitter_ms: float | None, current: float | None, timeout: float
) -> None:
    level = Level(rtt_ms, jitter_ms, 0.0, 100)
    assert steady_timeout(level, 0.5, current) == timeout


def test_a_dead_level_or_a_short_configured_timeout_keeps_the_configured_one() -> None:
    assert steady_timeout(Level(6.0, 0.5, 1.0, 10), 0.5) == 0.5
    assert steady_timeout(Level(6.0, 0.5, 0.0, 100), 0.1) == 0.1


def test_no_reallocation_is_wanted_without_adaptive_jobs() -> None:
    rates = ProbeRates(config(rate="fixed"), Metrics())
    assert not rates.wanted(verdict(5.0, jump=True, lost=1), table(JNB_ROUTE))
    assert ProbeRates(config(), Metrics()).wanted(verdict(5.0, lost=1), table(JNB_ROUTE))


def test_with_probe_workers_the_steady_shapes_go_to_them(tmp_path: Path) -> None:
    """probing.workers > 1: the daemon still decides the steady round shapes; they go to its
    probe workers (`ProbeWorkers.sync`), its own scheduler keeps none (bursts run in the
    daemon, netopt.daemon.bursts)."""
    data = copy.deepcopy(BASE)
    data["store"] = {"url": f"sqlite:///{tmp_path / 'n.db'}"}
    data["probes"][0]["rate"] = "adaptive"
    data["probing"] = {"workers": 2}
    clock = [100.0]
    daemon = Daemon(parse_config(data), wall_clock=lambda: NOW_S + clock[0],
                    mono_clock=lambda: clock[0])  # fmt: skip
    local: list[list[Any]] = []
    sharded: list[list[Any]] = []

    class Scheduler:
        def sync(self, jobs: list[Any]) -> tuple[int, int, int]:
            local.append(jobs)
            return 0, 0, 0

    class Workers:
        count = 2

        def sync(self, jobs: list[Any]) -> None:
            sharded.append(list(jobs))

    daemon._scheduler = Scheduler()  # type: ignore[assignment]
    daemon._workers = Workers()  # type: ignore[assignment]
    try:
        for i in range(30):
            clock[0] += 1.0
            for dst in ("fra", "jnb"):
                daemon.add_round(one_packet(dst, clock[0], 40.0 + i % 3), [40.0 + i % 3])
        # a steady round shape the daemon decides (here the 0.25 s timeout of a 40 ms path)
        assert sharded, "the reshaped steady rounds did not reach the workers"
        assert {j.options.timeout_s for j in sharded[-1]} == {0.25}
        assert all(jobs == [] for jobs in local)
    finally:
        daemon.store.close()
