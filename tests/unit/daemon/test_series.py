"""Every series a dashboard or rule reads exists from start-up, for every known label value
(a Daemon built from a config, no sockets, nothing measured yet), and reloads keep it so."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from netopt.config import parse_config
from netopt.daemon.series import INGEST_OUTCOMES, RELOAD_OUTCOMES
from netopt.daemon.wiring import Daemon
from netopt.dashboards import build as dashboards
from tests.unit.dashboards.test_dashboards import PROMETHEUS_SERIES, RULES, metric_names
from tests.unit.test_config import BASE

NOW_S = 1_800_000_000.0
# measured state: no honest value before the first plan (a 0 MOS would be a false alarm)
MEASURED = {"netopt_route_info", "netopt_path_mos", "netopt_acceleration_needed",
            "netopt_path_loss_ratio", "netopt_path_rtt_seconds", "netopt_path_jitter_seconds",
            "netopt_pop_up"}  # fmt: skip
WORLD: dict[str, Any] = {
    **copy.deepcopy(BASE),
    "regions": [{"id": "lagos", "address": "127.0.0.1", "location": {"lat": 6.5, "lon": 3.4}},
                {"id": "abuja", "address": "127.0.1.1"}],
    "agents": [{"id": "a1", "site": "abuja", "token": "t" * 24}],
    "proxies": [{"kind": "kamailio", "id": "core", "dispatcher_file": "d.list",
                 "rpc_url": "http://127.0.0.1:1/RPC"}],
}  # fmt: skip
WORLD["pops"][0]["location"] = {"lat": 50.1, "lon": 8.7}


def daemon_of(data: dict[str, Any], tmp_path: Path) -> Daemon:
    data = {**data, "store": {"url": f"sqlite:///{tmp_path / 'n.db'}"}}
    return Daemon(parse_config(data), wall_clock=lambda: NOW_S, mono_clock=lambda: 100.0)


def samples(d: Daemon) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in d.metrics.registry.collect():
        for s in family.samples:
            out.setdefault(s.name, []).append(s.labels)
    return out


def used_names() -> set[str]:
    exprs = [e for t in dashboards.build_all().values()
             for e in dashboards.iter_exprs(json.loads(t))]  # fmt: skip
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        exprs += [r["expr"] for r in group["rules"]]
    names = set().union(*(metric_names(e) for e in exprs))
    return {n for n in names if ":" not in n} - PROMETHEUS_SERIES - MEASURED


def test_every_used_series_exists_before_anything_happened(tmp_path: Path) -> None:
    d = daemon_of(WORLD, tmp_path)
    try:
        have = samples(d)
        used = used_names()
        assert {
            "netopt_route_changes_total",
            "netopt_push_total",
            "netopt_site_info",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        } <= used
        assert sorted(n for n in used if not have.get(n)) == []
        known = {"region": {"lagos", "abuja"}, "agent": {"a1"}, "proxy": {"core"},
                 "site": {"lagos", "abuja", "fra", "jnb"}}  # fmt: skip
        for name in used:
            for label, values in known.items():
                seen = {s[label] for s in have[name] if label in s}
                assert not seen or seen == values, (name, label, seen)
        outcomes = {n: {s["outcome"] for s in have[n]} for n in
                    ("netopt_config_reloads_total", "netopt_ingest_batches_total")}  # fmt: skip
        assert outcomes["netopt_config_reloads_total"] == set(RELOAD_OUTCOMES)
        assert outcomes["netopt_ingest_batches_total"] == set(INGEST_OUTCOMES)
        paths = {(s["src"], s["dst"]) for s in have["netopt_probe_packets_sent_total"]}
        assert paths == {("lagos", "fra"), ("lagos", "jnb")}
        assert len(have["netopt_probe_outcomes_total"]) == 2 * 6  # every outcome at 0
        # a never-heard agent counts as seen at start-up: silent after 5 minutes, not at once
        last_seen = d.metrics.agent_last_seen.labels("a1")._value.get()
        assert last_seen == NOW_S
    finally:
        d.store.close()


def test_site_info_carries_the_map_and_follows_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "netopt.yaml"
    data = {**WORLD, "store": {"url": f"sqlite:///{tmp_path / 'n.db'}"}}
    path.write_text(yaml.safe_dump(data))
    d = Daemon(parse_config(data), wall_clock=lambda: NOW_S, mono_clock=lambda: 100.0,
               config_path=path)  # fmt: skip
    try:
        sites = {s["site"]: s for s in samples(d)["netopt_site_info"]}
        assert sites["lagos"] == {"site": "lagos", "kind": "region", "role": "region",
                                  "name": "lagos", "lat": "6.5", "lon": "3.4"}  # fmt: skip
        assert sites["fra"]["kind"] == "pop" and sites["fra"]["role"] == "core"
        assert (sites["fra"]["lat"], sites["fra"]["lon"]) == ("50.1", "8.7")
        assert (sites["abuja"]["lat"], sites["jnb"]["lon"]) == ("", "")
        links = {(s["a"], s["b"]) for s in samples(d)["netopt_backbone_rtt_seconds"]}
        assert links == {("jnb", "fra")}
        smaller = copy.deepcopy(data)
        smaller["regions"] = [r for r in smaller["regions"] if r["id"] != "abuja"]
        smaller["agents"] = []
        smaller["regions"][0]["name"] = "Lagos"
        smaller["backbone"] = []
        path.write_text(yaml.safe_dump(smaller))
        ok, problems = d.reload()
        assert ok, problems
        after = {s["site"]: s for s in samples(d)["netopt_site_info"]}
        assert set(after) == {"lagos", "fra", "jnb"} and after["lagos"]["name"] == "Lagos"
        assert "netopt_backbone_rtt_seconds" not in samples(d)
    finally:
        d.store.close()
