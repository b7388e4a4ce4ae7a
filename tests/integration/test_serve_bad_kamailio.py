"""A real `netopt serve` pushing to a "Kamailio" that answers JSON-RPC in every bad way
(tests/bad_neighbour.py on loopback): the controller stays up, the route API keeps answering,
and `netopt_push_total{outcome="failed"}` counts every failed push."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.bad_neighbour import BAD_MODES, BadNeighbour
from tests.integration.conftest import http_get, icmp_allowed
from tests.integration.test_serve import CONFIG, samples

pytestmark = pytest.mark.skipif(
    not icmp_allowed(), reason="ICMP probes need root or net.ipv4.ping_group_range"
)
FAILED = ("netopt_push_total", frozenset({("proxy", "core"), ("outcome", "failed")}))
PUSHER_FAILURES = ("netopt_task_failures_total", frozenset({("task", "pusher:core")}))


def metric(url: str, key: tuple[str, frozenset[tuple[str, str]]]) -> float:
    status, text = http_get(url + "/metrics")
    assert status == 200
    return samples(text).get(key, -1.0)


@pytest.mark.parametrize("mode", [*BAD_MODES, "wrong_shape"])
def test_a_misbehaving_kamailio_never_stops_the_controller(
    serve: Any, tmp_path: Path, mode: str
) -> None:
    with BadNeighbour(mode, result={"RECORDS": []}) as kamailio:
        proxy = {"kind": "kamailio", "id": "core", "rpc_url": kamailio.url,
                 "dispatcher_file": str(tmp_path / "dispatcher.list"), "timeout_s": 0.5,
                 "verify_interval_s": 0.3, "reload_delta_s": 0.1}  # fmt: skip
        daemon = serve({**CONFIG, "proxies": [proxy]})
        daemon.wait_ready()
        seen: list[float] = []
        deadline = time.monotonic() + 30
        while len(set(seen)) < 3 and time.monotonic() < deadline:  # two failures after the first
            status, routes = http_get(daemon.url + "/v1/routes")
            assert status == 200 and routes, routes
            assert daemon.proc.poll() is None, daemon.stderr_path.read_text()[-2000:]
            seen.append(metric(daemon.url, FAILED))
            time.sleep(0.2)
        assert kamailio.requests >= 2
        assert len(set(seen)) >= 3 and seen[-1] >= 2, (seen, daemon.stderr_path.read_text()[-2000:])
        assert metric(daemon.url, PUSHER_FAILURES) == 0  # a push failure, not a task failure
        assert daemon.stop() == 0
    stderr = daemon.stderr_path.read_text()
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr
    assert "push_failed proxy=core" in stderr
    if mode != "wrong_shape":  # a transport or JSON-RPC fault names the URL as well
        assert kamailio.url in stderr
    else:
        assert "not the dispatcher's answer shape" in stderr
