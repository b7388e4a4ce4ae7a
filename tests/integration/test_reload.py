"""Live reconfiguration of `netopt serve` with SIGHUP: targets added and removed without a
restart; a bad file keeps the old config and says so (log + gauge 0)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import yaml

from tests.integration.conftest import http_get, icmp_allowed
from tests.integration.test_serve import CONFIG, samples

pytestmark = pytest.mark.skipif(
    not icmp_allowed(), reason="ICMP probes need root or net.ipv4.ping_group_range"
)


def sent(url: str, dst: str) -> float:
    _, text = http_get(url + "/metrics")
    labels = frozenset({("src", "lagos"), ("dst", dst), ("kind", "icmp")})
    return samples(text).get(("netopt_probe_packets_sent_total", labels), 0.0)


def gauge(url: str, name: str) -> float:
    _, text = http_get(url + "/metrics")
    return samples(text)[(name, frozenset())]


def rewrite(daemon: Any, change: dict[str, Any]) -> None:
    data = yaml.safe_load(daemon.config_path.read_text())
    data.update(change)
    daemon.config_path.write_text(yaml.safe_dump(data))
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)


def test_sighup_adds_and_removes_targets_and_refuses_a_bad_file(serve: Any) -> None:
    probe = {**CONFIG["probes"][0], "to": ["fra"]}
    daemon = serve({**CONFIG, "probes": [probe]})
    daemon.wait_ready()
    assert sent(daemon.url, "jnb") == 0

    rewrite(daemon, {"probes": [{**probe, "to": ["fra", "jnb"]}]})  # add a target
    assert sent(daemon.url, "jnb") > 0
    assert gauge(daemon.url, "netopt_config_last_reload_successful") == 1

    rewrite(daemon, {"destinations": ["ams"]})  # a bad file: old config kept
    assert gauge(daemon.url, "netopt_config_last_reload_successful") == 0
    before = sent(daemon.url, "jnb")
    time.sleep(1.2)
    assert sent(daemon.url, "jnb") > before  # still probing with the old config

    rewrite(daemon, {"destinations": ["fra"], "probes": [probe]})  # remove jnb
    assert gauge(daemon.url, "netopt_config_last_reload_successful") == 1
    stopped = sent(daemon.url, "jnb")
    time.sleep(1.2)
    assert sent(daemon.url, "jnb") == stopped
    assert sent(daemon.url, "fra") > 0
    assert daemon.stop() == 0
    log = daemon.stderr_path.read_text()
    assert "config_reload_failed" in log and "destinations[0]: unknown pop 'ams'" in log
    assert "jobs_added=1" in log and "jobs_removed=1" in log
    assert "Traceback" not in log


def test_sighup_makes_a_new_region_routable(serve: Any) -> None:
    daemon = serve(CONFIG)
    daemon.wait_ready()
    status, _ = http_get(daemon.url + "/v1/route?caller=%2B254700000000")
    assert status == 404  # no region has +254 yet
    nairobi = {"id": "nairobi", "address": "127.0.0.4", "e164": ["+254"]}
    probes = [*CONFIG["probes"], {**CONFIG["probes"][0], "from": "nairobi"}]
    rewrite(daemon, {"regions": [*CONFIG["regions"], nairobi], "probes": probes})
    deadline = time.monotonic() + 10
    status, body = 0, None
    while time.monotonic() < deadline and status != 200:
        status, body = http_get(daemon.url + "/v1/route?caller=%2B254700000000")
        time.sleep(0.3)
    assert status == 200, body
    assert body["region"] == "nairobi"
    assert daemon.stop() == 0
