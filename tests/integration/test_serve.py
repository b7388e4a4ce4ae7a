"""`netopt serve` end to end on loopback: real ICMP rounds → store → plan → route API, metrics."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import http_get, icmp_allowed

pytestmark = pytest.mark.skipif(
    not icmp_allowed(), reason="ICMP probes need root or net.ipv4.ping_group_range"
)

CONFIG: dict[str, Any] = {
    "regions": [{"id": "lagos", "address": "127.0.0.1", "e164": ["+234"]}],
    "pops": [
        {"id": "fra", "role": "core", "address": "127.0.0.2", "sip_uri": "sip:127.0.0.2:5060"},
        {"id": "jnb", "role": "edge", "address": "127.0.0.3", "relay_delay_ms": 0.5},
    ],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160, "jitter_ms": 1}],
    "probes": [
        {
            "kind": "icmp",
            "from": "lagos",
            "to": ["fra", "jnb"],
            "interval_s": 0.5,
            "count": 3,
            "timeout_s": 0.3,
            "packet_interval_s": 0.01,
        },
    ],
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_serve_measures_plans_and_answers(serve: Any, tmp_path: Path) -> None:
    daemon = serve(CONFIG)
    daemon.wait_ready()
    time.sleep(1.2)  # at least two rounds per target

    status, route = http_get(daemon.url + "/v1/route?region=lagos")
    assert status == 200, route
    assert route["region"] == "lagos" and route["dest"] == "fra"
    # on loopback both paths are ~0 ms, so the direct path beats jnb + a 160 ms backbone
    assert route["kind"] == "direct"
    assert route["path"] == ["lagos", "fra"]
    assert route["entry_pop"] is None
    assert 0 < route["expected"]["rtt_ms"] < 50
    assert route["decided_at"] > 1e9
    assert route["fallbacks"] and route["fallbacks"][0]["path"][:2] == ["lagos", "jnb"]

    status, body = http_get(daemon.url + "/v1/route?region=atlantis")
    assert status == 404 and "atlantis" in body["error"]
    status, body = http_get(daemon.url + "/v1/route")
    assert status == 400
    status, body = http_get(daemon.url + "/healthz")
    assert status == 200 and body["status"] == "ok"
    status, doc = http_get(daemon.url + "/openapi.json")
    assert status == 200 and "/v1/route" in doc["paths"]

    status, text = http_get(daemon.url + "/metrics")
    assert status == 200
    m = samples(text)
    lab = frozenset({("src", "lagos"), ("dst", "fra"), ("kind", "icmp")})
    sent = m[("netopt_probe_packets_sent_total", lab)]
    received = m[("netopt_probe_packets_received_total", lab)]
    assert sent >= 6 and received == sent
    assert m[("netopt_probe_rtt_seconds_count", lab)] == received
    assert 0 < m[("netopt_probe_rtt_seconds_sum", lab)] / received < 0.05

    code = daemon.stop()
    assert code == 0
    stderr = daemon.stderr_path.read_text()
    assert "Traceback" not in stderr
    rows = (
        sqlite3.connect(tmp_path / "netopt.db")
        .execute("SELECT COUNT(*), SUM(sent), SUM(received) FROM rounds")
        .fetchone()
    )
    assert rows[0] >= 4 and rows[1] == rows[2]


def test_sigint_stops_cleanly(serve: Any) -> None:
    daemon = serve(CONFIG)
    daemon.wait_ready()
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=10) == 0
    assert not re.search("Traceback|Task was destroyed", daemon.stderr_path.read_text())


def test_serve_refuses_bad_config(serve: Any, tmp_path: Path) -> None:
    bad = {**CONFIG, "destinations": ["ams"]}
    daemon = serve(bad)
    assert daemon.proc.wait(timeout=20) == 2
    assert "destinations[0]: unknown pop 'ams'" in daemon.stderr_path.read_text()
