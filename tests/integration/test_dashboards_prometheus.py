"""Every PromQL expression of the dashboards and rules, run by a real Prometheus scraping a real
`netopt serve` on loopback; the rules through `promtool check rules` / `promtool test rules`;
`netopt dashboards push` is tested in test_grafana_push.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt.dashboards import build as dashboards
from tests.integration.conftest import REPO, free_port, http_get, icmp_allowed
from tests.procs import stop

RULES_DIR = REPO / "dashboards" / "rules"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# Grafana's own variables, as Grafana would fill them for a short range
GRAFANA_VARS = {"$__rate_interval": "5s", "$__range": "30s", "$__interval": "1s"}
AGENT_TOKEN = "token-of-agent-a1-for-dashboards"
CONFIG: dict[str, Any] = {
    "regions": [
        {"id": "lagos", "address": "127.0.0.1", "e164": ["+234"],
         "location": {"lat": 6.5, "lon": 3.4}},
        {"id": "abuja", "address": "127.0.1.1"},  # measured by agent a1
    ],
    "pops": [
        {"id": "fra", "role": "core", "address": "127.0.0.2", "sip_uri": "sip:127.0.0.2:5060",
         "location": {"lat": 50.1, "lon": 8.7}},
        {"id": "jnb", "role": "edge", "address": "127.0.0.3", "relay_delay_ms": 0.5},
    ],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160, "jitter_ms": 1}],
    "probes": [
        {"kind": "icmp", "from": "lagos", "to": ["fra"], "interval_s": 0.5, "count": 3,
         "timeout_s": 0.3, "packet_interval_s": 0.01},
        {"kind": "icmp", "from": "lagos", "to": ["jnb"]},  # adaptive: the default rate
    ],
    "agents": [{"id": "a1", "site": "abuja", "token": AGENT_TOKEN}],
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
    )


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", "netopt.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", "netopt.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_catches_a_changed_threshold(tmp_path: Path) -> None:
    rules = (RULES_DIR / "netopt.rules.yml").read_text()
    assert "ratio_rate5m > 0.012" in rules
    (tmp_path / "netopt.rules.yml").write_text(rules.replace("ratio_rate5m > 0.012", "> 0.05"))
    shutil.copy(RULES_DIR / "netopt.rules.test.yml", tmp_path)
    done = subprocess.run(
        [PROMTOOL or "promtool", "test", "rules", "netopt.rules.test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "NetoptPathLossHigh" in done.stdout + done.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """Start a Prometheus scraping one target every second; stopped by PID."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_DIR / "netopt.rules.yml")],
            "scrape_configs": [{"job_name": "netopt", "static_configs": [{"targets": [target]}]}],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(subprocess.Popen(
            [PROMETHEUS or "prometheus", f"--config.file={path}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for p in procs:
            stop(p, 10)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Any]:
    """A `netopt agent` at site abuja probing fra (127.0.0.2) for the controller; stopped by PID."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(controller_url: str) -> None:
        cfg = {
            "id": "a1", "site": "abuja",
            "controller": {"url": controller_url, "token": AGENT_TOKEN, "batch_interval_s": 0.5,
                           "min_backoff_s": 0.2, "max_backoff_s": 1.0, "timeout_s": 2},
            "spool": {"path": str(tmp_path / "spool.db")},
            "targets": [{"id": "fra", "address": "127.0.0.2"}],
            "probes": [{"kind": "icmp", "to": ["fra"], "interval_s": 0.5, "count": 2,
                        "timeout_s": 0.2}],
        }  # fmt: skip
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = (tmp_path / "agent.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "netopt", "agent", "--config", str(path)], cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=log,
        ))  # fmt: skip

    try:
        yield start
    finally:
        for p in procs:
            stop(p, 10)


def query(base: str, expr: str) -> dict[str, Any]:
    status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200 and body["status"] == "success", (expr, body)
    return body  # type: ignore[no-any-return]


def wait_for(base: str, expr: str, timeout_s: float, logs: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if query(base, expr)["data"]["result"]:
                return
        except (AssertionError, OSError):
            pass
        time.sleep(0.5)
    files = [*logs.glob("*.log"), *logs.glob("*.stderr")] if logs else []
    tails = "".join(f"\n--- {f.name}:\n" + "\n".join(f.read_text().splitlines()[-15:])
                    for f in sorted(files))  # fmt: skip
    raise AssertionError(f"{expr} stayed empty for {timeout_s} s{tails}")


def substitute(expr: str, values: dict[str, str], grafana: dict[str, str] = GRAFANA_VARS) -> str:
    for name, value in grafana.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: values[m.group(1)], expr)


def may_be_empty(expr: str) -> bool:
    """Route changes exist only after a route moved (never on loopback; see the promtool test
    below for those queries)."""
    return "netopt_route_changes_total" in expr


@pytest.mark.neighbour
@pytest.mark.skipif(not icmp_allowed(), reason="ICMP probes need root or ping_group_range")
def test_every_expression_runs_against_prometheus(
    serve: Any, prometheus: Any, agent: Any, tmp_path: Path
) -> None:
    # a proxy nobody answers for: its pushes fail, netopt_push_total has series from start-up
    proxy = {"kind": "kamailio", "id": "core", "rpc_url": f"http://127.0.0.1:{free_port()}/RPC",
             "dispatcher_file": str(tmp_path / "dispatcher.list")}  # fmt: skip
    daemon = serve({**CONFIG, "proxies": [proxy]})
    daemon.wait_ready()
    agent(daemon.url)
    base = prometheus(daemon.url.removeprefix("http://"))
    wait_for(base, 'count_over_time(netopt_plans_total{job="netopt"}[1m]) >= 6', 30)
    wait_for(base, "src_dst:netopt_probe_loss:ratio_rate5m", 10)
    # counters need a few scrapes before rate() over 5 s has two samples
    rounds = 'count_over_time(netopt_ingest_rounds_total{agent="a1"}[10s]) >= 3'
    wait_for(base, rounds, 20, daemon.stderr_path.parent)
    daemon.proc.send_signal(signal.SIGHUP)  # a config reload: netopt_config_reloads_total
    wait_for(base, 'count_over_time(netopt_config_reloads_total{outcome="ok"}[10s]) >= 3', 10)

    # template variables: real label values, as Grafana's label_values() would list them
    values = {"datasource": "netopt-prometheus", "job": "netopt"}
    for var, label in (("src", "src"), ("dst", "dst"), ("kind", "kind"), ("region", "region")):
        status, body = http_get(f"{base}/api/v1/label/{label}/values")
        assert status == 200 and body["data"], (label, body)
        values[var] = "|".join(body["data"])
    assert values["src"] == "abuja|lagos" and values["region"] == "abuja|lagos"

    ran = empty = 0
    for name, text in dashboards.build_all().items():
        for expr in dashboards.iter_exprs(json.loads(text)):
            result = query(base, substitute(expr, values))["data"]["result"]
            ran += 1
            if not result:
                empty += 1
                assert may_be_empty(expr), f"{name}: empty result for {expr}"
    assert ran >= 20 and empty < ran / 4

    for group in yaml.safe_load((RULES_DIR / "netopt.rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            result = query(base, rule["expr"])["data"]["result"]
            if "record" in rule and not may_be_empty(rule["expr"]):
                assert result, f"recording rule {rule['record']} is empty"
    # rules loaded and evaluated by Prometheus itself, without errors
    status, body = http_get(f"{base}/api/v1/rules")
    health = {r["name"]: r["health"] for g in body["data"]["groups"] for r in g["rules"]}
    assert len(health) >= 10 and set(health.values()) == {"ok"}, health
    # on loopback: nothing lost, RTT far under a millisecond, the direct route in force
    loss = query(base, 'src_dst:netopt_probe_loss:ratio_rate5m{src="lagos"}')["data"]["result"]
    assert len(loss) == 2
    assert all(float(r["value"][1]) < 0.012 for r in loss), loss
    route = query(base, "netopt_route_info")["data"]["result"]
    assert {r["metric"]["kind"] for r in route} == {"direct"}
    # the agent's batches reached the controller: the health dashboard's agent panels have data
    seen = query(base, 'time() - netopt_agent_last_seen_timestamp_seconds{agent="a1"}')
    assert 0 <= float(seen["data"]["result"][0]["value"][1]) < 30


def test_route_change_queries_return_data_on_synthetic_series(tmp_path: Path) -> None:
    """The queries a loopback run leaves empty, fed a flapping region through `promtool test`."""
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    exprs = [e for t in dashboards.build_all().values()
             for e in dashboards.iter_exprs(json.loads(t)) if may_be_empty(e)]  # fmt: skip
    assert len(exprs) >= 3
    values = {"region": "lagos", "job": "netopt", "datasource": "netopt-prometheus"}
    grafana = {"$__rate_interval": "2m", "$__range": "30m", "$__interval": "30s"}
    test = {
        "rule_files": [],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [{"series": 'netopt_route_changes_total{region="lagos",job="netopt"}',
                              "values": "0+1x60"}],
            "promql_expr_test": [
                {"expr": f"count({substitute(e, values, grafana)})", "eval_time": "20m",
                 "exp_samples": [{"labels": "{}", "value": 1}]} for e in exprs
            ],
        }],
    }  # fmt: skip
    (tmp_path / "t.yml").write_text(yaml.safe_dump(test))
    done = subprocess.run(
        [PROMTOOL or "promtool", "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
