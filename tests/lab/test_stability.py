"""Decisions do not chase measurement noise, yet still leave a path that really degrades.

World: one region `acc` with two edge PoPs `e1`, `e2` that are equal in truth — the same
access impairment (20 ms each way, 10 ms jitter, 1 % loss each way: ~2 % of round trips lost)
and the same backbone to the core `fra` — and a hopeless direct path (300 ms each way). `netopt
serve` probes from the region's namespace (ICMP, 10 packets a second, 3 s windows, k = 2: the
fast configuration of tests/lab/test_reroute.py, where noise is hardest to tell from signal).

1. steady, ~36 s: after the initial decision the route never changes (`netopt_route_changes_total`
   and the route API's answer), though e1 and e2 trade the lead by chance all the time;
2. degrade the chosen PoP's access (+150 ms RTT, 8 % loss each way): the route moves to the
   other PoP. The time is printed, not asserted tightly (timing belongs in bench/reroute.py);
   a generous 15 s bound catches a decider that no longer moves at all.

The same test runs on defaults (`defaults`): a probe group naming only kind, from and to
(adaptive probing: 1 packet a second per path, bursts where a route is in doubt; change
detection, 60 s windows, k = 3, 60 s hold-down). Its steady phase lasts `NETOPT_STABILITY_S`
seconds (120 by default, to keep CI short; the issue's 10 minutes is `NETOPT_STABILITY_S=600`),
and the packets it sent per path in that phase are printed (from
`netopt_probe_packets_sent_total`, from `SETTLE_S` into the phase: the start-up bursts while
each path learns its baseline are a one-off): on average over the region's paths at most the 2
per second the budget aims at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from netopt.lab import Lab
from tests.integration.conftest import REPO, free_port, http_get
from tests.lab.conftest import STATISTICAL, LabFactory
from tests.procs import stop

pytestmark = pytest.mark.lab

ACCESS = {"delay_ms": 20, "jitter_ms": 10, "loss_pct": 1}
PROFILE: dict[str, Any] = {
    "nodes": [
        {"name": "acc", "role": "region"},
        {"name": "fra", "role": "pop", "pop_role": "core"},
        {"name": "e1", "role": "pop", "pop_role": "edge"},
        {"name": "e2", "role": "pop", "pop_role": "edge"},
    ],
    "links": [
        {"a": "acc", "b": "fra", "delay_ms": 300, "jitter_ms": 2, "loss_pct": 1},
        {"a": "acc", "b": "e1", **ACCESS},
        {"a": "acc", "b": "e2", **ACCESS},
        {"a": "e1", "b": "fra", "delay_ms": 20, "jitter_ms": 0.2},
        {"a": "e2", "b": "fra", "delay_ms": 20, "jitter_ms": 0.2},
        {"a": "e1", "b": "e2", "delay_ms": 5, "jitter_ms": 0.2},
    ],
}
# the default timeout (0.5 s) does not wait for a 600 ms round trip, and a core that never
# answers is dead: on defaults the hopeless direct path is 200 ms each way with 5 % loss
DEFAULTS_PROFILE: dict[str, Any] = PROFILE | {
    "links": [{**link, "delay_ms": 200, "loss_pct": 5}
              if link["b"] == "fra" and link["a"] == "acc" else link
              for link in PROFILE["links"]]
}  # fmt: skip
STEADY_S = 36.0
SETTLE_S = 30.0
DEFAULTS_STEADY_S = float(os.environ.get("NETOPT_STABILITY_S", "120"))


def netopt_config(lab: Lab, tmp: Path, defaults: bool = False) -> dict[str, Any]:
    pops = {"fra": "core", "e1": "edge", "e2": "edge"}
    tuned: dict[str, Any] = {
        "probes": [{"kind": "icmp", "from": "acc", "to": list(pops), "interval_s": 1.0,
                    "count": 10, "packet_interval_s": 0.02, "timeout_s": 0.6}],
        "planner": {"window_s": 3, "min_replan_interval_s": 0.2, "margin_mos": 0.2},
        "decide": {"windows_to_switch": 2, "hold_down_s": 15, "stale_after_s": 10,
                   "expire_after_s": 60},
    }  # fmt: skip
    if defaults:
        tuned = {"probes": [{"kind": "icmp", "from": "acc", "to": list(pops)}]}
    return tuned | {
        "regions": [{"id": "acc", "address": lab.address("acc"), "netns": lab.netns("acc")}],
        "pops": [{"id": p, "role": role, "address": lab.address(p), "netns": lab.netns(p)}
                 for p, role in pops.items()],
        "destinations": ["fra"],
        "backbone": [{"a": "e1", "b": "fra", "rtt_ms": 40}, {"a": "e2", "b": "fra", "rtt_ms": 40}],
        "store": {"url": f"sqlite:///{tmp / 'netopt.db'}"},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
    }  # fmt: skip


@pytest.fixture(params=["tuned", "defaults"])
def serve(
    request: pytest.FixtureRequest, lab_world: LabFactory, tmp_path: Path
) -> Iterator[tuple[Lab, str, Path]]:
    defaults = request.param == "defaults"
    lab = lab_world(DEFAULTS_PROFILE if defaults else PROFILE)
    cfg = netopt_config(lab, tmp_path, defaults=defaults)
    (tmp_path / "netopt.yaml").write_text(yaml.safe_dump(cfg))
    err = tmp_path / "serve.stderr"
    with err.open("w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netopt", "serve", "--config", str(tmp_path / "netopt.yaml")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=errf,
        )  # fmt: skip
    try:
        yield lab, f"http://{cfg['api']['listen']}", err
    finally:
        stop(proc, 10)


def route(api: str) -> tuple[str, float] | None:
    """(entry PoP, decided_at) of acc's measured route, or None (not up yet, or the default)."""
    try:
        status, body = http_get(api + "/v1/route?region=acc", 1.0)
    except OSError:
        return None
    if status != 200 or body.get("default"):
        return None
    return str(body["primary"]["pop"]), float(body["decided_at"])


def route_changes(api: str) -> float:
    return sum(metric(api, "netopt_route_changes_total", {"region": "acc"}).values())


def metric(api: str, name: str, labels: dict[str, str]) -> dict[str, float]:
    """dst (or "") → value of the samples of `name` that carry `labels`."""
    _, text = http_get(api + "/metrics")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                out[sample.labels.get("dst", "")] = float(sample.value)
    return out


def sent(api: str) -> dict[str, float]:
    return metric(api, "netopt_probe_packets_sent_total", {"src": "acc", "kind": "icmp"})


def switches(err: Path) -> list[str]:
    return [line for line in err.read_text().splitlines() if "action=switch" in line]


def watch(api: str, seconds: float, until: Any = None) -> list[tuple[float, str, float]]:
    """Poll the route every 0.2 s for `seconds` (or until `until(pop)`); every answer seen."""
    seen: list[tuple[float, str, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = route(api)
        if r is not None:
            seen.append((time.monotonic(), *r))
            if until is not None and until(r[0]):
                break
        time.sleep(0.2)
    return seen


@STATISTICAL  # decisions on noisy measurements: a rare chance run is retried once
def test_equal_routes_do_not_flap_and_a_real_degradation_still_moves(
    serve: tuple[Lab, str, Path], request: pytest.FixtureRequest
) -> None:
    lab, api, err = serve
    defaults = "defaults" in request.node.callspec.id
    steady_s = DEFAULTS_STEADY_S if defaults else STEADY_S
    first = watch(api, 30, until=lambda pop: True)
    assert first, f"no measured route for acc within 30 s: {err.read_text()[-2000:]}"
    chosen = first[-1][1]
    assert chosen in ("e1", "e2"), f"the direct path is hopeless, yet: {first[-1]}"
    before = route_changes(api)
    # 1. equal in truth: no change at all. The packets/s are counted after the first SETTLE_S
    # (on defaults): start-up bursts while each path learns its baseline are not the steady cost
    settle_s = SETTLE_S if defaults else 0.0
    steady = watch(api, settle_s)
    sent_before, t_before = sent(api), time.monotonic()
    steady += watch(api, steady_s - settle_s)
    pops = {pop for _, pop, _ in steady}
    decided = {at for _, _, at in steady}
    after = route_changes(api)
    pps = {d: (n - sent_before.get(d, 0.0)) / (time.monotonic() - t_before)
           for d, n in sent(api).items()}  # fmt: skip
    assert len(steady) > steady_s * 2, "the route API stopped answering"
    assert pops == {chosen} and len(decided) == 1 and after == before, (
        f"route changed without a real change: {sorted(pops)}, {after - before:.0f} changes; "
        f"{switches(err)}"
    )

    other = "e2" if chosen == "e1" else "e1"
    t0 = time.monotonic()  # 2. a real degradation of the chosen PoP's access
    lab.set_link("acc", chosen, delay_ms=ACCESS["delay_ms"] + 75, loss_pct=8)
    moved = watch(api, 15, until=lambda pop: pop != chosen)
    assert moved and moved[-1][1] == other, (
        f"still on {chosen} 15 s after +150 ms / 8 % loss: {switches(err)} "
        f"{http_get(api + '/v1/paths?region=acc')[1]}"
    )
    rates = " ".join(f"{d}={v:.2f}" for d, v in sorted(pps.items()))
    print(f"\nstability ({'defaults' if defaults else 'tuned'}): {steady_s:.0f} s steady on "
          f"{chosen} with 0 changes, packets/s per path {rates}; moved to {other} "
          f"{moved[-1][0] - t0:.1f} s after +150 ms / 8 % loss")  # fmt: skip
    if defaults:  # adaptive: 1 packet/s steady, escalations where in doubt; 2 on average
        assert sum(pps.values()) / len(pps) <= 2.0, f"steady packets/s per path: {rates}"
