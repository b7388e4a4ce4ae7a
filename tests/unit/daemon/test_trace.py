"""The degradation-triggered traceroute: the trigger's decisions with a fake clock, and the
Tracer shell with a fake traceroute prober (no sockets)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from netopt.config import TracerouteConfig, parse_config
from netopt.core.decide import Decision
from netopt.daemon.metrics import Metrics
from netopt.daemon.trace import Origin, Tracer, TraceRequest, TraceTrigger, origins
from probes.base import ProbeOptions, Target
from probes.traceroute import Hop, Trace
from topology.planner import PathStats

CFG = TracerouteConfig(cooldown_s=60, min_samples=20)


def ps(rtt_ms: float = 40.0, loss_pct: float = 0.0, samples: int = 100) -> PathStats:
    return PathStats("lagos", "fra", rtt_ms, 1.0, loss_pct, samples)


def failover(region: str = "lagos", old: str | None = "jnb", action: str = "failover") -> Decision:
    return Decision(at=0, region=region, dest="fra", action=action, old_entry=old,
                    new_entry=None, old_mos=4.0, new_mos=3.9, consecutive=0, penalty=0,
                    reason="pop jnb stopped answering")  # fmt: skip


def test_clean_path_is_not_traced() -> None:
    trig = TraceTrigger(CFG)
    assert trig.check([ps(), ps(rtt_ms=45, loss_pct=1.2)], 0.0) == []


def test_loss_above_threshold_traces_once_per_cooldown() -> None:
    trig = TraceTrigger(CFG)
    [req] = trig.check([ps(loss_pct=3.0)], 100.0)
    assert req == TraceRequest("lagos", "fra", "loss", "loss 3.00 % > 1.2 %")
    assert trig.check([ps(loss_pct=3.0)], 159.9) == []
    assert [r.trigger for r in trig.check([ps(loss_pct=3.0)], 160.0)] == ["loss"]


def test_too_few_samples_are_not_judged() -> None:
    trig = TraceTrigger(CFG)
    assert trig.check([ps(loss_pct=50.0, samples=19)], 0.0) == []
    assert len(trig.check([ps(loss_pct=50.0, samples=20)], 0.0)) == 1


def test_rtt_jump_over_the_best_window() -> None:
    trig = TraceTrigger(CFG)
    assert trig.check([ps(rtt_ms=40.0)], 0.0) == []
    assert trig.check([ps(rtt_ms=89.0)], 1.0) == []  # 49 ms above: under the 50 ms threshold
    [req] = trig.check([ps(rtt_ms=95.0)], 2.0)
    assert req.trigger == "rtt_jump" and "55.0 ms above the best window (40.0 ms" in req.reason


def test_a_dead_path_does_not_poison_the_baseline() -> None:
    # however the window reports a path with no answers (PathStats refuses inf today), an
    # infinite RTT must neither become the best window nor hide the loss
    down: Any = SimpleNamespace(src="lagos", dst="fra", rtt_ms=float("inf"), jitter_ms=0.0,
                                loss_pct=100.0, samples=100)  # fmt: skip
    trig = TraceTrigger(TracerouteConfig(cooldown_s=0))
    trig.check([ps(rtt_ms=40.0)], 0.0)
    assert [r.trigger for r in trig.check([down], 1.0)] == ["loss"]
    assert [r.trigger for r in trig.check([ps(rtt_ms=100.0)], 2.0)] == ["rtt_jump"]


def test_absolute_rtt_threshold() -> None:
    trig = TraceTrigger(CFG)
    [req] = trig.check([ps(rtt_ms=400.0)], 0.0)  # also the first (best) window: not a jump
    assert (req.trigger, req.reason) == ("rtt", "rtt 400.0 ms > 320 ms")


def test_failover_traces_the_withdrawn_path() -> None:
    trig = TraceTrigger(CFG)
    reqs = trig.withdrawn([failover(), failover(old=None), failover(action="switch")], 0.0)
    assert [(r.src, r.dst, r.trigger) for r in reqs] == [
        ("lagos", "jnb", "withdrawn"),
        ("lagos", "fra", "withdrawn"),  # the direct route: region → destination
    ]
    assert reqs[0].reason == "withdrawn: pop jnb stopped answering"
    # the same path is in cooldown for the window check as well
    assert trig.check([ps(loss_pct=100)], 10.0) == []


CONFIG: dict[str, Any] = {
    "regions": [{"id": "lagos", "address": "198.18.0.1", "netns": "lab-lagos"}],
    "pops": [
        {"id": "fra", "role": "core", "address": "198.18.0.2"},
        {"id": "jnb", "role": "edge", "address": "198.18.0.3", "netns": "lab-jnb"},
    ],
    "destinations": ["fra"],
    "probes": [
        {"kind": "icmp", "from": "lagos", "to": ["fra"], "timeout_s": 0.5},
        {"kind": "icmp", "from": "jnb", "to": ["lagos"], "timeout_s": 0.5},
    ],
}


def test_origins_are_the_probing_sites_in_either_orientation() -> None:
    o = origins(parse_config(CONFIG))
    assert o[("lagos", "fra")] == Origin("lagos", "fra", "198.18.0.2", "lab-lagos")
    assert o[("fra", "lagos")] == o[("lagos", "fra")]
    # the planner names it lagos → jnb; the probes go jnb → lagos, from jnb's namespace
    assert o[("lagos", "jnb")] == Origin("jnb", "lagos", "198.18.0.1", "lab-jnb")
    assert ("fra", "jnb") not in o


class FakeProber:
    def __init__(self) -> None:
        self.calls: list[tuple[Target, ProbeOptions]] = []
        self.closed = False
        self.max_hops = 0

    async def trace(self, target: Target, options: ProbeOptions) -> Trace:
        self.calls.append((target, options))
        hops = (Hop(1, "198.18.0.254", (1_500_000, None), False),
                Hop(2, None, (None, None), False),
                Hop(3, target.address, (3_000_000, 3_100_000), True))  # fmt: skip
        return Trace(target, options.transport, hops, True, 0)

    async def close(self) -> None:
        self.closed = True


def _metric(m: Metrics, src: str, dst: str, trigger: str) -> float:
    value = m.registry.get_sample_value(
        "netopt_traceroutes_total", {"src": src, "dst": dst, "trigger": trigger}
    )
    return value or 0.0


async def test_tracer_runs_queued_traces_keeps_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = parse_config({**CONFIG, "traceroute": {"keep": 2, "max_hops": 5, "attempts": 2}})
    metrics = Metrics()
    tracer = Tracer(cfg, metrics.traceroutes, wall_clock=lambda: 1234.5)
    fake: Any = FakeProber()
    tracer._probers["lab-jnb"] = fake
    tracer._probers["lab-lagos"] = fake
    assert tracer.observe([ps(loss_pct=5)], [], 0.0) == []  # not running yet: dropped
    task = asyncio.create_task(tracer.run())
    await asyncio.sleep(0)
    try:
        stats = [ps(loss_pct=5), PathStats("lagos", "jnb", 40, 1, 9.0, 100),
                 PathStats("fra", "jnb", 40, 1, 9.0, 100)]  # fmt: skip
        with caplog.at_level(logging.INFO, "netopt.trace"):
            queued = tracer.observe(stats, [], 1000.0)
            assert [(r.src, r.dst) for r in queued] == [("lagos", "fra"), ("lagos", "jnb")]
            for _ in range(50):
                if len(tracer.traces) == 2:
                    break
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.closed and fake.max_hops == 5
    assert [(t.address, o.count, o.transport) for t, o in fake.calls] == [
        ("198.18.0.2", 2, "icmp"), ("198.18.0.1", 2, "icmp")
    ]  # fmt: skip
    newest = tracer.recent()[0]
    assert (newest.src, newest.dst, newest.trigger, newest.reached) == (
        "jnb",
        "lagos",
        "loss",
        True,
    )
    doc = newest.to_json()
    assert doc["at"] == 1234.5 and doc["error"] is None
    assert doc["hops"][0] == {"ttl": 1, "address": "198.18.0.254", "reached": False,
                              "rtt_ms": [1.5, None]}  # fmt: skip
    assert [t.dst for t in tracer.recent(src="lagos")] == ["fra"]
    assert tracer.recent(src="lagos", dst="lagos") == []
    assert (
        _metric(metrics, "jnb", "lagos", "loss") == 1
        and _metric(metrics, "lagos", "fra", "loss") == 1
    )
    assert "hops=198.18.0.254,*,198.18.0.1" in caplog.text


async def test_a_failing_trace_is_recorded_not_raised() -> None:
    class Broken(FakeProber):
        async def trace(self, target: Target, options: ProbeOptions) -> Trace:
            raise PermissionError("raw sockets need CAP_NET_RAW")

    metrics = Metrics()
    tracer = Tracer(parse_config(CONFIG), metrics.traceroutes, wall_clock=lambda: 0.0)
    tracer._probers["lab-lagos"] = Broken()
    record = await tracer.trace(TraceRequest("lagos", "fra", "rtt", "rtt 400 ms > 320 ms"))
    assert not record.reached and record.hops == () and "CAP_NET_RAW" in (record.error or "")
    assert _metric(metrics, "lagos", "fra", "rtt") == 1


def test_disabled_tracer_never_queues() -> None:
    cfg = parse_config({**CONFIG, "traceroute": {"enabled": False}})
    tracer = Tracer(cfg, Metrics().traceroutes, wall_clock=lambda: 0.0)
    assert tracer.observe([ps(loss_pct=50)], [failover()], 0.0) == []


def test_reload_keeps_cooldowns_unless_the_thresholds_change() -> None:
    cfg = parse_config(CONFIG)
    tracer = Tracer(cfg, Metrics().traceroutes, wall_clock=lambda: 0.0)
    assert len(tracer.trigger.check([ps(loss_pct=5)], 0.0)) == 1
    tracer.reconfigure(parse_config(CONFIG))
    assert tracer.trigger.check([ps(loss_pct=5)], 1.0) == []  # still cooling down
    tracer.reconfigure(parse_config({**CONFIG, "traceroute": {"keep": 5, "loss_pct": 2}}))
    assert tracer.traces.maxlen == 5
    assert len(tracer.trigger.check([ps(loss_pct=5)], 2.0)) == 1
    # a reload that drops the probe job leaves nothing to trace that path from
    tracer.reconfigure(parse_config({**CONFIG, "probes": CONFIG["probes"][1:]}))
    assert ("lagos", "fra") not in tracer._origins


def test_a_silent_path_is_traced_once_per_cooldown() -> None:
    trig = TraceTrigger(CFG)
    [req] = trig.silent([("jnb", "lagos")], 0.0)
    assert req == TraceRequest("jnb", "lagos", "silent", "no reply in the whole window")
    assert trig.silent([("jnb", "lagos")], 30.0) == []
    assert len(trig.silent([("jnb", "lagos")], 60.0)) == 1


def test_observe_queues_silent_paths_it_can_trace_from_here() -> None:
    tracer = Tracer(parse_config(CONFIG), Metrics().traceroutes, wall_clock=lambda: 0.0)
    tracer._queue = asyncio.Queue(4)
    queued = tracer.observe([], [], 0.0, silent=[("jnb", "lagos"), ("fra", "jnb")])
    assert [(r.src, r.dst, r.trigger) for r in queued] == [("jnb", "lagos", "silent")]
