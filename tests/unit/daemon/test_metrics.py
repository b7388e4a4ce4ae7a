"""Metric names and labels: netopt_<what>_<unit>, `_total` on counters, bounded labels only."""

from __future__ import annotations

import re

from netopt.daemon.metrics import AgentMetrics, Metrics

BOUNDED = {"src", "dst", "kind", "region", "dest", "pop", "outcome", "agent", "proxy"}
ISSUE_LIST = {
    "netopt_probe_rtt_seconds", "netopt_probe_packets_sent_total",
    "netopt_probe_packets_received_total", "netopt_path_jitter_seconds", "netopt_path_loss_ratio",
    "netopt_path_mos", "netopt_route_info", "netopt_route_changes_total",
    "netopt_acceleration_needed", "netopt_agent_last_seen_timestamp_seconds",
    "netopt_ingest_batches_total", "netopt_spool_depth", "netopt_config_last_reload_successful",
}  # fmt: skip


def families(registry):  # type: ignore[no-untyped-def]
    return {m.name: m for m in registry.collect()}


def test_every_metric_named_in_the_issue_is_exported() -> None:
    names = set()
    for f in families(Metrics().registry).values():
        names.add(f.name + ("_total" if f.type == "counter" else ""))
    assert names >= ISSUE_LIST, ISSUE_LIST - names


def test_names_units_and_labels() -> None:
    m = Metrics()
    m.observe_round("lagos", "fra", "icmp", [0.01], 5, 4, {"ok": 4, "timeout": 1}, 0.002)
    m.ingest_batches.labels("stored").inc()
    m.agent_last_seen.labels("a1").set(1)
    for registry in (m.registry, AgentMetrics().registry):
        for f in registry.collect():
            # process_*: prometheus_client's ProcessCollector (the standard names)
            assert re.fullmatch(r"(netopt|process)_[a-z0-9_]+", f.name), f.name
            if f.type == "counter":
                assert not f.name.endswith("_total")  # the client appends it on exposition
            for s in f.samples:
                assert set(s.labels) - {"le"} <= BOUNDED, (f.name, s.labels)
    text = m.exposition().decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert 'netopt_probe_packets_sent_total{dst="fra",kind="icmp",src="lagos"} 5.0' in text
    assert 'netopt_path_jitter_seconds{dst="fra",kind="icmp",src="lagos"} 0.002' in text
