"""`probing.workers: 2` in the lab: each worker process creates its probe sockets inside the
probing region's network namespace, as the in-process prober does — its rounds measure the
emulated delays (198.18.0.0/15 exists only inside the namespaces), on both workers' paths."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from netopt.cli.demo import config_for_lab
from netopt.daemon.shard import shard_of
from netopt.lab import Lab
from tests.integration.conftest import Served, http_get
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

DELAY_MS = {"b": 10, "g": 20, "k": 30}  # one way; b on one worker, g and k on the other
WORLD = {
    "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop", "pop_role": "core"},
              {"name": "g", "role": "pop"}, {"name": "k", "role": "pop"}],
    "links": [{"a": "a", "b": p, "delay_ms": d} for p, d in DELAY_MS.items()],
    "default_link": {"delay_ms": 5},
}  # fmt: skip


def test_workers_probe_inside_the_namespaces(lab_world: LabFactory, tmp_path: Any) -> None:
    assert {shard_of(f"icmp:a->{p}", 2) for p in DELAY_MS} == {0, 1}
    lab: Lab = lab_world(WORLD)
    cfg = config_for_lab(lab, listen="127.0.0.1:0", store=str(tmp_path / "x.db"), interval_s=0.5)
    data: dict[str, Any] = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["probing"] = {"workers": 2}
    served = Served(data, tmp_path)
    try:
        served.wait_ready(timeout_s=30)
        deadline, measured = time.monotonic() + 30, {}
        while time.monotonic() < deadline and set(measured) != set(DELAY_MS):
            time.sleep(0.5)
            status, body = http_get(served.url + "/v1/paths?region=a")
            assert status == 200, body
            measured = {p["dst"]: p for p in body["paths"] if p["samples"] > 0}
        assert set(measured) == set(DELAY_MS), served.stderr_path.read_text()[-3000:]
        for pop, delay_ms in DELAY_MS.items():  # the lab's round trip: twice the delay
            assert 2 * delay_ms - 1 <= measured[pop]["rtt_ms"] <= 2 * delay_ms + 15, measured
            assert measured[pop]["loss_pct"] == 0, measured
        log = served.stderr_path.read_text()
        assert len(set(re.findall(r"probe_worker_started index=(\d+)", log))) == 2
    finally:
        assert served.stop() == 0
    assert "Traceback" not in served.stderr_path.read_text()
