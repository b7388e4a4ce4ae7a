"""netopt.daemon.rates: adaptive round shapes from the budget, on a fake clock, and the config."""

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
from netopt.daemon.rates import ProbeRates, round_count
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
    return {j.dst: j.options.count for j in rates.jobs()}


def test_adaptive_is_opt_in() -> None:
    assert config().probes[0].adaptive
    assert not parse_config(BASE).probes[0].adaptive  # the default: fixed
    assert not config(rate="fixed").probes[0].adaptive
    assert config(count=20, rate="adaptive").probes[0].adaptive
    fixed = ProbeRates(config(count=20, rate="fixed"), Metrics())
    assert counts(fixed) == {"fra": 20, "jnb": 20}


def test_steady_is_one_packet_a_second_and_a_jump_escalates_the_region() -> None:
    m = Metrics()
    rates = ProbeRates(config(), m)
    assert counts(rates) == {"fra": 1, "jnb": 1}
    t = table(JNB_ROUTE)
    verdicts = {("lagos", "jnb"): verdict(10.0, jump=True)}
    jobs = rates.update(10.0, verdicts, lambda s, d: (s, d), t)
    assert jobs is not None
    # the route's path and its candidate (direct to fra) at once; 20 ms apart, within 1 s
    assert counts(rates) == {"fra": 23, "jnb": 23}
    text = generate_latest(m.registry).decode()
    assert 'netopt_probe_rate_packets_per_second{dst="jnb",src="lagos"} 23.0' in text
    assert 'netopt_probe_escalations_total{dst="jnb",reason="jump",src="lagos"} 1.0' in text
    assert 'netopt_probe_escalations_total{dst="fra",reason="candidate",src="lagos"} 1.0' in text
    assert 'netopt_probe_escalations_total{dst="fra",reason="alarm",src="lagos"} 0.0' in text
    # the same (old) verdict again is no new signal: relaxed after relax_s (2 s)
    assert rates.update(11.0, verdicts, lambda s, d: (s, d), t) is None
    assert rates.update(12.5, verdicts, lambda s, d: (s, d), t) is not None
    assert counts(rates) == {"fra": 1, "jnb": 1}


def test_a_lost_packet_off_the_route_escalates_that_path_only() -> None:
    rates = ProbeRates(config(), Metrics())
    verdicts = {("lagos", "fra"): verdict(5.0, lost=1)}
    rates.update(5.0, verdicts, lambda s, d: (s, d), table(JNB_ROUTE))
    assert counts(rates) == {"fra": 23, "jnb": 1}


def test_the_site_budget_caps_the_escalation() -> None:
    data = copy.deepcopy(BASE)
    data["regions"][0]["budget_pps"] = 12
    data["probes"][0]["rate"] = "adaptive"
    rates = ProbeRates(parse_config(data), Metrics())
    verdicts = {("lagos", "jnb"): verdict(1.0, jump=True)}
    rates.update(1.0, verdicts, lambda s, d: (s, d), table(JNB_ROUTE))
    assert sum(counts(rates).values()) <= 12


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


def test_the_daemon_escalates_on_a_jump_and_reschedules(tmp_path: Path) -> None:
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
        for i in range(30):  # a steady path, then a round 150 ms late
            clock[0] += 1.0
            for dst in ("fra", "jnb"):
                rtt = 40.0 + (i % 3) + (150.0 if i == 29 and dst == "jnb" else 0.0)
                daemon.add_round(one_packet(dst, clock[0], rtt), [rtt])
        assert synced, "a jump on jnb escalated nothing"
        assert {j.dst: j.options.count for j in synced[-1]}["jnb"] == 23
        assert daemon.changes.last[("lagos", "jnb")].jump
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
    assert counts(rates)["jnb"] == 23
    for at in (2.0, 3.0, 4.0, 5.0):  # each round loses packets: the escalation stays
        building = Verdict(at, "suspect", "loss", 0.5, LEVEL, False, 2)
        rates.update(at, {key: building}, lambda s, d: (s, d), t)
        assert counts(rates)["jnb"] == 23, at  # relax_s (2 s) is long past the first loss
    lone = Verdict(9.0, "steady", "loss", 0.1, LEVEL, False, 1)  # a lone loss: no doubt
    rates.update(9.0, {key: lone}, lambda s, d: (s, d), t)
    rates.update(11.5, {key: lone}, lambda s, d: (s, d), t)
    assert counts(rates)["jnb"] == 1


def test_a_lost_packet_is_no_news_on_a_lossy_path() -> None:
    rates = ProbeRates(config(), Metrics())
    lossy = Verdict(5.0, "steady", None, 0.0, Level(40.0, 1.0, 0.05, 500), False, 1)
    rates.update(5.0, {("lagos", "fra"): lossy}, lambda s, d: (s, d), table(JNB_ROUTE))
    assert counts(rates) == {"fra": 1, "jnb": 1}
    doubtful = Verdict(6.0, "suspect", "loss", 0.5, Level(40.0, 1.0, 0.05, 500), False, 1)
    rates.update(6.0, {("lagos", "fra"): doubtful}, lambda s, d: (s, d), table(JNB_ROUTE))
    assert counts(rates) == {"fra": 23, "jnb": 1}  # its loss CUSUM's doubt still escalates


def test_no_reallocation_is_wanted_without_adaptive_jobs() -> None:
    rates = ProbeRates(config(rate="fixed"), Metrics())
    assert not rates.wanted(verdict(5.0, jump=True, lost=1), table(JNB_ROUTE))
    assert ProbeRates(config(), Metrics()).wanted(verdict(5.0, lost=1), table(JNB_ROUTE))


def test_with_probe_workers_the_escalation_goes_to_them(tmp_path: Path) -> None:
    """probing.workers > 1: the daemon still decides the rates; the escalated jobs go to its
    probe workers (`ProbeWorkers.sync`), its own scheduler keeps none."""
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
                rtt = 40.0 + (i % 3) + (150.0 if i == 29 and dst == "jnb" else 0.0)
                daemon.add_round(one_packet(dst, clock[0], rtt), [rtt])
        assert sharded, "a jump on jnb escalated nothing"
        assert {j.dst: j.options.count for j in sharded[-1]}["jnb"] == 23
        assert all(jobs == [] for jobs in local)
    finally:
        daemon.store.close()
