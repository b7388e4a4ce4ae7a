"""Prometheus metrics: one registry per daemon, passed in, never global (… → **metrics**).

Names follow netopt_<what>_<unit>, base units, `_total` on counters, bounded labels.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# WAN voice: 1 ms .. 2 s, denser where calls live (50–400 ms)
RTT_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2,
    0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.probes = ProbeSeries(r)  # per path: packets, outcomes, RTTs, jitter
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        self.site_info = Gauge(
            "netopt_site_info", "1 per configured site (region or PoP), with its map position.",
            ("site", "kind", "role", "name", "lat", "lon"), registry=r,
        )  # fmt: skip
        self.backbone_rtt = Gauge(
            "netopt_backbone_rtt_seconds", "Configured RTT of a backbone link between PoPs.",
            ("a", "b"), registry=r,
        )  # fmt: skip
        self.pop_up = Gauge(
            "netopt_pop_up", "1 while a PoP answers (its latest probe rounds; SIP OPTIONS where "
            "probed), 0 when dead; set by each plan.", ("pop",), registry=r,
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
        self.leader = Gauge(
            "netopt_leader", "1 while this controller leads (decides and pushes), 0 on a "
            "follower; always 1 with a SQLite store.", registry=r,
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
        self.probe_rate = Gauge(
            "netopt_probe_rate_packets_per_second",
            "Probe packets per second scheduled on the path (adaptive: netopt.core.budget).",
            ("src", "dst"), registry=r,
        )  # fmt: skip
        self.probe_escalations = Counter(
            "netopt_probe_escalations_total",
            "Times the path's probe rate was escalated, by reason (alarm, jump, loss, doubt, "
            "learning, candidate).",
            ("src", "dst", "reason"), registry=r,
        )  # fmt: skip
        self.task_failures = task_failures_counter(r)

    def observe_round(
        self, src: str, dst: str, kind: str, rtts_s: Sequence[float], sent: int, received: int,
        outcomes: Mapping[str, int], jitter_s: float | None,
    ) -> None:  # fmt: skip
        """One probe round (`observe_rounds` takes a slot's at once)."""
        self.probes.observe([(src, dst, kind)], [rtts_s], [sent], [received], [outcomes],
                            [jitter_s])  # fmt: skip

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


OUTCOMES = ("ok", "timeout", "unreachable", "refused", "bad_status", "error")
_OUTCOME_COLUMN = {o: i for i, o in enumerate(OUTCOMES)}
_PATH = ("src", "dst", "kind")
_LE = [*(floatToGoString(b) for b in RTT_BUCKETS_S), "+Inf"]  # type: ignore[no-untyped-call]


class ProbeSeries(Collector):
    """Per path (src, dst, kind): packets sent and answered, packets by outcome, the RTT
    histogram and the last round's jitter — in numpy arrays, a row per path, updated a slot of
    rounds at a time (`observe`) and turned into metric families when scraped.

    prometheus_client keeps a locked object per labelled child and per histogram bucket; at a
    thousand rounds a second updating those cost more CPU than probing itself. The exposition
    is the same series with the same values (sums added in the same order)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._row: dict[tuple[str, str, str], int] = {}
        self._keys: list[tuple[str, str, str]] = []
        self.sent = np.zeros(0)
        self.received = np.zeros(0)
        self.outcomes = np.zeros((0, len(OUTCOMES)))
        self.buckets = np.zeros((0, len(RTT_BUCKETS_S) + 1))  # the last column: +Inf only
        self.rtt_sum = np.zeros(0)
        self.jitter = np.zeros(0)
        self._declared: set[int] = set()  # rows exported with every outcome, zeros included
        self._grow(64)
        self._lock = threading.Lock()  # scrapes may come from another thread
        if registry is not None:
            registry.register(self)

    def _grow(self, rows: int) -> None:
        """Room for `rows` paths (the arrays double as paths appear, keeping what they hold)."""

        def wider(old: npt.NDArray[np.float64], fill: float = 0.0) -> npt.NDArray[np.float64]:
            new = np.full((rows, *old.shape[1:]), fill)
            new[: len(old)] = old
            return new

        self.sent = wider(self.sent)
        self.received = wider(self.received)
        self.outcomes = wider(self.outcomes)
        self.buckets = wider(self.buckets)
        self.rtt_sum = wider(self.rtt_sum)
        self.jitter = wider(self.jitter, np.nan)  # NaN: never set

    def rows(self, keys: Sequence[tuple[str, str, str]]) -> list[int]:
        out = []
        for key in keys:
            row = self._row.get(key)
            if row is None:
                row = self._row[key] = len(self._keys)
                self._keys.append(key)
                if row >= len(self.sent):
                    self._grow(2 * len(self.sent))
            out.append(row)
        return out

    def declare(self, keys: Sequence[tuple[str, str, str]]) -> None:
        """Known paths (the configured probe jobs): their series exist at 0 before any round,
        so `rate()`, `increase()` and alerts see a quiet path from the start."""
        with self._lock:
            self._declared.update(self.rows(keys))

    def observe(
        self, keys: Sequence[tuple[str, str, str]], rtts_s: Sequence[Sequence[float]],
        sent: Sequence[int], received: Sequence[int], outcomes: Sequence[Mapping[str, int]],
        jitter_s: Sequence[float | None],
    ) -> None:  # fmt: skip
        """Rounds, one entry per round in every argument (keys in a call may repeat)."""
        with self._lock:
            rows = self.rows(keys)
            np.add.at(self.sent, rows, sent)
            np.add.at(self.received, rows, received)
            lengths = [len(v) for v in rtts_s]
            if sum(lengths):
                values = np.fromiter(itertools.chain.from_iterable(rtts_s), np.float64)
                owners = np.repeat(rows, lengths)
                keep = ~np.isnan(values)  # as `Histogram.observe`: NaN lands in no bucket
                # the first bound ≥ v, as `observe`; past the last bound, the +Inf column
                bucket = np.searchsorted(RTT_BUCKETS_S, values, side="left")
                np.add.at(self.buckets, (owners[keep], bucket[keep]), 1)
                np.add.at(self.rtt_sum, owners, values)
            out = self.outcomes
            for row, counts in zip(rows, outcomes, strict=True):
                for outcome, n in counts.items():
                    column = _OUTCOME_COLUMN.get(outcome)
                    if column is not None:
                        out[row, column] += n
            for row, j in zip(rows, jitter_s, strict=True):
                if j is not None:
                    self.jitter[row] = j

    def count(
        self, key: tuple[str, str, str], sent: int, received: int, jitter_s: float | None
    ) -> None:
        """Packets of a round measured elsewhere (an agent's): counts and jitter, no RTTs."""
        self.observe([key], [()], [sent], [received], [{}], [jitter_s])

    def describe(self) -> Iterable[Metric]:
        return self._families(0)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return self._families(len(self._keys))

    def _families(self, n: int) -> list[Metric]:
        rtt = HistogramMetricFamily(
            "netopt_probe_rtt_seconds", "Probe round-trip time per packet.", labels=_PATH
        )
        sent = CounterMetricFamily("netopt_probe_packets_sent", "Probe packets sent.", labels=_PATH)
        received = CounterMetricFamily(
            "netopt_probe_packets_received", "Probe packets answered in time.", labels=_PATH
        )
        outcomes = CounterMetricFamily(
            "netopt_probe_outcomes", "Probe packets by how they ended.",
            labels=(*_PATH, "outcome"),
        )  # fmt: skip
        jitter = GaugeMetricFamily(
            "netopt_path_jitter_seconds", "RFC 3550 interarrival jitter of the last round.",
            labels=_PATH,
        )  # fmt: skip
        cumulative = np.cumsum(self.buckets[:n], axis=1).tolist()
        sums = self.rtt_sum[:n].tolist()
        sents, receiveds = self.sent[:n].tolist(), self.received[:n].tolist()
        by_outcome, jitters = self.outcomes[:n].tolist(), self.jitter[:n].tolist()
        for row, key in enumerate(self._keys[:n]):
            labels = list(key)
            rtt.add_metric(labels, list(zip(_LE, cumulative[row], strict=True)), sums[row])
            sent.add_metric(labels, sents[row])
            received.add_metric(labels, receiveds[row])
            declared = row in self._declared
            for column, value in enumerate(by_outcome[row]):
                if value or declared:
                    outcomes.add_metric([*labels, OUTCOMES[column]], value)
            if jitters[row] == jitters[row]:  # not NaN: set at least once
                jitter.add_metric(labels, jitters[row])
        return [rtt, sent, received, outcomes, jitter]


def task_failures_counter(registry: CollectorRegistry) -> Counter:
    """netopt_task_failures_total{task}: background tasks that raised and were restarted, and
    scheduler runs that raised (netopt.daemon.tasks)."""
    return Counter(
        "netopt_task_failures_total",
        "Background tasks (and scheduler runs) that failed; each is restarted with backoff.",
        ("task",), registry=registry,
    )  # fmt: skip


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
            "split, rejected, refused, unreachable, bad_answer).", ("agent", "outcome"), registry=r,
        )  # fmt: skip
        self.sent = Counter(
            "netopt_probe_packets_sent_total", "Probe packets sent.", ("src", "dst", "kind"),
            registry=r,
        )  # fmt: skip
        self.received = Counter(
            "netopt_probe_packets_received_total", "Probe packets answered in time.",
            ("src", "dst", "kind"), registry=r,
        )  # fmt: skip
        self.task_failures = task_failures_counter(r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
