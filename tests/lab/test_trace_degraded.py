"""A path degrades in the lab → `netopt serve` runs one traceroute from the probing region's
namespace, through the lab router, and shows it at GET /v1/traces (issue #4: traceroute
"when a path degrades").

lab (a region, two PoPs) → daemon config from `netopt.cli.demo.config_for_lab` plus a
`traceroute:` section → clean paths: no trace → `lab.set_link(a, b, loss_pct=10)` → window
loss > 1.2 % → one trace a → b whose hops include the lab router, counted in the metric; the
untouched path a → c is never traced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netopt.cli.demo import config_for_lab
from netopt.lab import Lab
from netopt.lab.build import ROUTER_ADDRESS
from tests.integration.conftest import Served, http_get
from tests.lab.conftest import STATISTICAL, LabFactory

pytestmark = pytest.mark.lab

WORLD = {
    "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop", "pop_role": "core"},
              {"name": "c", "role": "pop"}],
    "links": [{"a": "a", "b": "b", "delay_ms": 10}, {"a": "a", "b": "c", "delay_ms": 20}],
    "default_link": {"delay_ms": 5},
}  # fmt: skip


@pytest.fixture(scope="module")
def lab(lab_world: LabFactory) -> Lab:
    return lab_world(WORLD)


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Served]:
    cfg = config_for_lab(lab, listen="127.0.0.1:0", store=str(tmp_path / "x.db"), interval_s=0.5)
    data: dict[str, Any] = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    # 2 attempts: the router's ICMP errors to one host are rate-limited (a burst of 6, then
    # 1/s), and it answers for two TTLs (before and after the impairment stage)
    data["traceroute"] = {"cooldown_s": 600, "min_samples": 10, "attempts": 2, "max_hops": 6,
                          "timeout_s": 1.0, "transport": "icmp"}  # fmt: skip
    served = Served(data, tmp_path)
    try:
        served.wait_ready(timeout_s=20)
        yield served
    finally:
        served.stop()


def _traces(d: Served, **query: str) -> list[dict[str, Any]]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = http_get(f"{d.url}/v1/traces?{q}")
    assert status == 200, body
    return list(body["traces"])


def _counted(d: Served) -> dict[tuple[str, str, str], float]:
    _status, text = http_get(d.url + "/metrics")
    out = {}
    for line in text.splitlines():
        if line.startswith("netopt_traceroutes_total{"):
            labels = dict(kv.split("=") for kv in line[line.index("{") + 1 : line.index("}")]
                          .replace('"', "").split(","))  # fmt: skip
            out[(labels["src"], labels["dst"], labels["trigger"])] = float(line.split()[-1])
    return out


@STATISTICAL
def test_a_degraded_path_is_traced_through_the_router(lab: Lab, daemon: Served) -> None:
    time.sleep(3)  # six rounds on clean paths
    assert _traces(daemon) == [] and _counted(daemon) == {}

    try:
        lab.set_link("a", "b", loss_pct=10)  # ~19 % round trip: a window crosses 1.2 % at once
        deadline = time.monotonic() + 20
        traces: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not traces:
            time.sleep(0.5)
            traces = _traces(daemon)
        assert len(traces) == 1, traces
        [t] = traces
        assert (t["src"], t["dst"], t["address"]) == ("a", "b", lab.address("b"))
        assert t["trigger"] == "loss" and t["reason"].startswith("loss ")
        assert t["error"] is None and t["protocol"] == "icmp"
        addresses = [h["address"] for h in t["hops"]]
        assert addresses[0] == ROUTER_ADDRESS, addresses  # TTL 1 expires at the lab router
        assert all(h["ttl"] == i + 1 for i, h in enumerate(t["hops"]))
        answered = [h for h in t["hops"] if h["address"] is not None]
        assert all(any(r is not None and r > 0 for r in h["rtt_ms"]) for h in answered)
        assert _counted(daemon) == {("a", "b", "loss"): 1.0}
        assert _traces(daemon, src="a", dst="b") == traces
        assert _traces(daemon, dst="c") == []

        time.sleep(2)  # still degraded, but inside the cooldown: no second trace
        assert len(_traces(daemon)) == 1
    finally:  # a rerun keeps the module's lab: it must start on a clean link
        lab.set_link("a", "b", loss_pct=0)
    assert daemon.stop() == 0
    log = daemon.stderr_path.read_text()
    assert "msg=trace src=a dst=b" in log or "trace src=a dst=b" in log
    assert "Traceback" not in log
