"""Prometheus metrics: one registry per daemon, passed in, never global (… → **metrics**).

Names follow netopt_<what>_<unit>, base units, `_total` on counters, bounded labels.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# WAN voice: 1 ms .. 2 s, denser where calls live (50–400 ms)
RTT_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2,
    0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
)  # fmt: skip


@dataclass(slots=True)
class _PathChildren:
    rtt: Any
    sent: Any
    received: Any
    jitter: Any
    outcomes: dict[str, Any]


class Metrics:
    def __init__(self) -> None:
        self._paths: dict[tuple[str, str, str], _PathChildren] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        path = ("src", "dst", "kind")
        self.rtt = Histogram(
            "netopt_probe_rtt_seconds", "Probe round-trip time per packet.", path,
            buckets=RTT_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.sent = Counter(
            "netopt_probe_packets_sent_total", "Probe packets sent.", path, registry=r
        )
        self.received = Counter(
            "netopt_probe_packets_received_total", "Probe packets answered in time.", path,
            registry=r,
        )  # fmt: skip
        self.outcomes = Counter(
            "netopt_probe_outcomes_total", "Probe packets by how they ended.",
            ("src", "dst", "kind", "outcome"), registry=r,
        )  # fmt: skip
        self.jitter = Gauge(
            "netopt_path_jitter_seconds", "RFC 3550 interarrival jitter of the last round.", path,
            registry=r,
        )  # fmt: skip
        self.path_loss = Gauge(
            "netopt_path_loss_ratio", "Loss over the planning window.", ("src", "dst"), registry=r
        )
        self.path_rtt = Gauge(
            "netopt_path_rtt_seconds", "Median RTT over the planning window.", ("src", "dst"),
            registry=r,
        )  # fmt: skip
        self.route_info = Gauge(
            "netopt_route_info", "The route in force (1) per region and destination.",
            ("region", "dest", "kind", "pop"), registry=r,
        )  # fmt: skip
        self.route_mos = Gauge(
            "netopt_path_mos", "Expected MOS of the route in force.", ("region", "dest"),
            registry=r,
        )  # fmt: skip
        self.route_changes = Counter(
            "netopt_route_changes_total", "Route changes per region.", ("region",), registry=r
        )
        self.acceleration = Gauge(
            "netopt_acceleration_needed", "1 where the region needs acceleration.",
            ("region", "dest"), registry=r,
        )  # fmt: skip
        self.plans = Counter("netopt_plans_total", "Plans computed.", registry=r)
        self.store_errors = Counter(
            "netopt_store_write_errors_total", "Failed store writes (retried).", registry=r
        )
        self.config_ok = Gauge(
            "netopt_config_last_reload_successful", "1 if the last config load succeeded.",
            registry=r,
        )  # fmt: skip
        self.config_reloads = Counter(
            "netopt_config_reloads_total", "Config reloads by outcome (ok, invalid).",
            ("outcome",), registry=r,
        )  # fmt: skip
        self.store_writable = Gauge(
            "netopt_store_writable", "0 while the store refuses writes (rounds are kept).",
            registry=r,
        )  # fmt: skip
        self.store_pending = Gauge(
            "netopt_store_pending_rounds", "Rounds waiting for the store writer.", registry=r
        )
        self.store_dropped = Counter(
            "netopt_store_dropped_rounds_total",
            "Rounds dropped because the store stayed unwritable past its queue bound.",
            registry=r,
        )  # fmt: skip
        self.agent_last_seen = Gauge(
            "netopt_agent_last_seen_timestamp_seconds", "When an agent's last batch arrived.",
            ("agent",), registry=r,
        )  # fmt: skip
        self.ingest_batches = Counter(
            "netopt_ingest_batches_total",
            "Ingest requests by outcome (stored, duplicate, unauthorized, forbidden, invalid, "
            "too_large, unavailable).", ("outcome",), registry=r,
        )  # fmt: skip
        self.ingest_rounds = Counter(
            "netopt_ingest_rounds_total", "Rounds stored from agents.", ("agent",), registry=r
        )
        self.spool_depth = Gauge(
            "netopt_spool_depth", "Rounds waiting in an agent's spool (as last reported).",
            ("agent",), registry=r,
        )  # fmt: skip
        self.schedule_skipped = Counter(
            "netopt_schedule_skipped_runs_total",
            "Runs skipped because the job's previous round was still running.", registry=r,
        )  # fmt: skip
        self.traceroutes = Counter(
            "netopt_traceroutes_total",
            "Traceroutes run because a path degraded (trigger: loss, rtt, rtt_jump, silent, "
            "withdrawn).",
            ("src", "dst", "trigger"), registry=r,
        )  # fmt: skip

    def observe_round(
        self, src: str, dst: str, kind: str, rtts_s: Iterable[float], sent: int, received: int,
        outcomes: dict[str, int], jitter_s: float | None,
    ) -> None:  # fmt: skip
        """One probe round (called ~1000×/s at scale: the labelled children are cached)."""
        key = (src, dst, kind)
        children = self._paths.get(key)
        if children is None:
            children = self._paths[key] = _PathChildren(
                self.rtt.labels(*key), self.sent.labels(*key), self.received.labels(*key),
                self.jitter.labels(*key), {},
            )  # fmt: skip
        _observe_all(children.rtt, rtts_s)
        children.sent.inc(sent)
        children.received.inc(received)
        for outcome, n in outcomes.items():
            counter = children.outcomes.get(outcome)
            if counter is None:
                counter = children.outcomes[outcome] = self.outcomes.labels(*key, outcome)
            counter.inc(n)
        if jitter_s is not None:
            children.jitter.set(jitter_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _observe_all(child: Any, values: Iterable[float]) -> None:
    """`child.observe(v)` for each value, with one lock round per bucket touched instead of
    two per value: the same sum (added in the same order) and bucket counts. Falls back to
    `observe` if the client's histogram internals ever differ."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or getattr(total, "_multiprocess", True):
        for v in values:
            child.observe(v)
        return
    counts: dict[int, int] = {}
    acc = total.get()
    for v in values:
        acc += v
        if v == v:  # NaN lands in no bucket, as in `observe`
            i = bisect.bisect_left(bounds, v)  # the first bound ≥ v: `observe`'s bucket
            if i < len(bounds):
                counts[i] = counts.get(i, 0) + 1
    total.set(acc)
    for i, n in counts.items():
        buckets[i].inc(n)


class AgentMetrics:
    """The agent's own registry (served on its optional metrics port)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.spool_depth = Gauge(
            "netopt_spool_depth", "Rounds waiting in this agent's spool.", ("agent",), registry=r
        )
        self.spool_dropped = Counter(
            "netopt_spool_dropped_total", "Rounds dropped from a full spool (oldest first).",
            ("agent",), registry=r,
        )  # fmt: skip
        self.batches = Counter(
            "netopt_agent_batches_total", "Batches shipped by outcome (acked, duplicate, "
            "rejected, unreachable).", ("agent", "outcome"), registry=r,
        )  # fmt: skip
        self.sent = Counter(
            "netopt_probe_packets_sent_total", "Probe packets sent.", ("src", "dst", "kind"),
            registry=r,
        )  # fmt: skip
        self.received = Counter(
            "netopt_probe_packets_received_total", "Probe packets answered in time.",
            ("src", "dst", "kind"), registry=r,
        )  # fmt: skip

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
