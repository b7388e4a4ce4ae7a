"""Degradation-triggered traceroute: window stats / decisions → **trace** → log, API, metrics.

When a path turns poor — window loss above `traceroute.loss_pct` (1.2 %, the poor-path flag),
window RTT above `traceroute.rtt_ms`, RTT `rtt_jump_ms` above the best window seen on that
path, no reply at all in the window (silent), or the decider withdraws it (failover) — one
traceroute runs from the site that probes
that path to the other end, at most once per `cooldown_s` per path. So the evidence of *where*
a path broke is taken while it is broken.

Pure core: `TraceTrigger` takes window stats, decisions and `now` and returns `TraceRequest`s.
Thin shell: `Tracer` finds the probing site (and its network namespace) from the probe jobs,
runs the requests one at a time on the traceroute prober's worker thread (scapy blocks; never
on the loop), keeps the last `keep` traces in memory (`GET /v1/traces`), logs each one and
counts it in `netopt_traceroutes_total`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from netopt.config import Config, TracerouteConfig
from netopt.core.decide import Decision
from netopt.daemon.probing import jobs_from_config
from probes.base import ProbeOptions, Target, make_prober
from topology.planner import PathStats

log = logging.getLogger("netopt.trace")
QUEUE_MAX = 64  # pending traces; more are dropped (a storm of degradations needs no more)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    src: str  # as the window/decider name the path (region → PoP)
    dst: str
    trigger: str  # loss | rtt | rtt_jump | silent | withdrawn
    reason: str


class TraceTrigger:
    """Which paths to trace now. Keeps, per path, the best window RTT and the last trace time."""

    def __init__(self, cfg: TracerouteConfig) -> None:
        self.cfg = cfg
        self._best_rtt_ms: dict[tuple[str, str], float] = {}
        self._last_s: dict[tuple[str, str], float] = {}

    def check(self, stats: Iterable[PathStats], now_s: float) -> list[TraceRequest]:
        """Requests for the paths whose window crossed a poor-path threshold (cooldown applied)."""
        out = []
        for s in stats:
            key = (s.src, s.dst)
            best = self._best_rtt_ms.get(key, math.inf)
            if math.isfinite(s.rtt_ms) and s.rtt_ms < best:
                self._best_rtt_ms[key] = best = s.rtt_ms
            why = self._poor(s, best)
            if why is not None and self._due(key, now_s):
                out.append(TraceRequest(s.src, s.dst, *why))
        return out

    def _poor(self, s: PathStats, best_ms: float) -> tuple[str, str] | None:
        c = self.cfg
        if s.samples < c.min_samples:
            return None
        if s.loss_pct > c.loss_pct:
            return "loss", f"loss {s.loss_pct:.2f} % > {c.loss_pct:g} %"
        if s.rtt_ms > c.rtt_ms:
            return "rtt", f"rtt {s.rtt_ms:.1f} ms > {c.rtt_ms:g} ms"
        if s.rtt_ms - best_ms > c.rtt_jump_ms:
            return "rtt_jump", (
                f"rtt {s.rtt_ms:.1f} ms is {s.rtt_ms - best_ms:.1f} ms above the best window "
                f"({best_ms:.1f} ms; threshold {c.rtt_jump_ms:g} ms)"
            )
        return None

    def silent(self, paths: Iterable[tuple[str, str]], now_s: float) -> list[TraceRequest]:
        """Requests for the paths that answered nothing in the whole window (no stats at all)."""
        reason = "no reply in the whole window"
        return [TraceRequest(*key, "silent", reason) for key in paths if self._due(key, now_s)]

    def withdrawn(self, decisions: Iterable[Decision], now_s: float) -> list[TraceRequest]:
        """Requests for the paths the decider just withdrew (failover): region → old entry."""
        out = []
        for d in decisions:
            if d.action != "failover":
                continue
            key = (d.region, d.old_entry or d.dest)
            if self._due(key, now_s):
                out.append(TraceRequest(*key, "withdrawn", f"withdrawn: {d.reason}"))
        return out

    def _due(self, key: tuple[str, str], now_s: float) -> bool:
        last = self._last_s.get(key)
        if last is not None and now_s - last < self.cfg.cooldown_s:
            return False
        self._last_s[key] = now_s
        return True


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a trace of a path leaves from: the site that probes it, towards the other end."""

    src: str
    dst: str
    address: str
    netns: str | None


def origins(cfg: Config) -> dict[tuple[str, str], Origin]:
    """For each probed pair (either orientation), the site that sends its probes."""
    out: dict[tuple[str, str], Origin] = {}
    for job in jobs_from_config(cfg):
        origin = Origin(job.src, job.dst, job.target.address, job.netns)
        out.setdefault((job.src, job.dst), origin)
    for (a, b), origin in list(out.items()):
        out.setdefault((b, a), origin)
    return out


@dataclass(frozen=True, slots=True)
class TraceRecord:
    at_wall_s: float
    src: str  # the site the trace left from
    dst: str  # the site it went to
    address: str
    trigger: str
    reason: str
    protocol: str
    reached: bool
    hops: tuple[dict[str, Any], ...]  # {"ttl", "address", "rtt_ms": [...], "reached"}
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at_wall_s, "src": self.src, "dst": self.dst, "address": self.address,
            "trigger": self.trigger, "reason": self.reason, "protocol": self.protocol,
            "reached": self.reached, "hops": list(self.hops), "error": self.error,
        }  # fmt: skip


class Tracer:
    """Runs the trigger's requests, one trace at a time, and remembers the last few."""

    def __init__(
        self,
        config: Config,
        counter: Any,  # a prometheus Counter labelled (src, dst, trigger)
        wall_clock: Callable[[], float],
        socket_in: Callable[..., socket.socket] | None = None,
    ) -> None:
        self._counter = counter
        self._wall_clock = wall_clock
        self._socket_in = socket_in
        self._probers: dict[str | None, Any] = {}
        self._queue: asyncio.Queue[TraceRequest] | None = None
        self.cfg = config.traceroute
        self.trigger = TraceTrigger(self.cfg)
        self.traces: deque[TraceRecord] = deque(maxlen=self.cfg.keep)
        self._origins = origins(config)

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: new probe jobs (origins); new thresholds start a new trigger
        (same thresholds keep the cooldowns, so a reload does not re-trace every bad path)."""
        if config.traceroute != self.cfg:
            self.cfg = config.traceroute
            self.trigger = TraceTrigger(self.cfg)
            self.traces = deque(self.traces, maxlen=self.cfg.keep)
        self._origins = origins(config)

    def observe(
        self,
        stats: Iterable[PathStats],
        decisions: Iterable[Decision],
        now_s: float,
        silent: Iterable[tuple[str, str]] = (),
    ) -> list[TraceRequest]:
        """Judge one plan's inputs (window stats, silent paths) and decisions; queue the
        traces due. Returns them."""
        if not self.cfg.enabled:
            return []
        t = self.trigger
        requests = t.check(stats, now_s) + t.silent(silent, now_s) + t.withdrawn(decisions, now_s)
        queued = []
        for req in requests:
            if (req.src, req.dst) not in self._origins:
                continue  # measured by an agent elsewhere: not traceable from here
            if self._queue is None or self._queue.full():
                log.warning("trace_dropped src=%s dst=%s trigger=%s (queue full or not running)",
                            req.src, req.dst, req.trigger)  # fmt: skip
                continue
            self._queue.put_nowait(req)
            queued.append(req)
        return queued

    def recent(self, src: str | None = None, dst: str | None = None) -> list[TraceRecord]:
        """The kept traces, newest first, optionally of one source and/or destination site."""
        return [
            t for t in reversed(self.traces)
            if (src is None or t.src == src) and (dst is None or t.dst == dst)
        ]  # fmt: skip

    async def run(self) -> None:
        """Run queued traces until cancelled; closes the traceroute probers at the end."""
        self._queue = asyncio.Queue(QUEUE_MAX)
        try:
            while True:
                req = await self._queue.get()
                self.traces.append(await self.trace(req))
        finally:
            self._queue = None
            for prober in self._probers.values():
                await prober.close()
            self._probers.clear()

    async def trace(self, req: TraceRequest) -> TraceRecord:
        origin = self._origins[(req.src, req.dst)]
        c = self.cfg
        opts = ProbeOptions(count=c.attempts, timeout_s=c.timeout_s, dscp=c.dscp,
                            transport=c.transport)  # fmt: skip
        made = functools.partial(
            TraceRecord, self._wall_clock(), origin.src, origin.dst, origin.address,
            req.trigger, req.reason, c.transport,
        )  # fmt: skip
        try:
            trace = await self._prober(origin.netns).trace(Target(origin.address), opts)
        except Exception as exc:  # our fault or the host's (no raw sockets): say so, go on
            log.error("trace_failed src=%s dst=%s error=%r", origin.src, origin.dst, exc)
            record = made(False, (), repr(exc))
        else:
            hops = tuple(
                {"ttl": h.ttl, "address": h.address, "reached": h.reached,
                 "rtt_ms": [None if r is None else round(r / 1e6, 3) for r in h.rtts_ns]}
                for h in trace.hops
            )  # fmt: skip
            record = made(trace.reached, hops)
        self._counter.labels(origin.src, origin.dst, req.trigger).inc()
        path = ",".join(str(h["address"] or "*") for h in record.hops)
        log.info("trace src=%s dst=%s address=%s trigger=%s reached=%s hops=%s reason=%r",
                 origin.src, origin.dst, origin.address, req.trigger, record.reached, path,
                 req.reason)  # fmt: skip
        return record

    def _prober(self, netns: str | None) -> Any:
        if netns not in self._probers:
            kwargs: dict[str, Any] = {"max_hops": self.cfg.max_hops, "workers": 1}
            if netns is not None and self._socket_in is not None:
                kwargs["socket_factory"] = functools.partial(self._socket_in, netns)
            elif netns is not None:
                kwargs["netns"] = netns  # the prober's worker thread enters it
            self._probers[netns] = make_prober("traceroute", **kwargs)
        prober = self._probers[netns]
        prober.max_hops = self.cfg.max_hops
        return prober
