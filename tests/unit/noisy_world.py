"""A seeded, clock-free simulation of probing → window → plan → decide, for decision tests.

Every path is probed in rounds of `count` packets every `interval_s`; a round's lost packets are
Binomial(count, round-trip loss), its median RTT and RFC 3550 jitter are drawn around the path's
truth. Rounds go through the real `WindowStats`, the real planner and the real `Decider`, with
the daemon's timing: a round's data is usable `result_delay_s` after it started, and the
daemon replans every `replan_s`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from netopt.core.decide import Decider, Decision, Policy
from netopt.core.window import WindowStats
from netopt.store.model import RoundRecord
from topology.model import Link, Pop, Region, Topology
from topology.planner import plan


@dataclass
class Truth:
    """What a path really is: round-trip delay, per-packet jitter, round-trip loss."""

    rtt_ms: float
    jitter_ms: float
    loss_pct: float


@dataclass
class Sim:
    topology: Topology
    truth: dict[tuple[str, str], Truth]
    policy: Policy
    window_s: float = 30.0
    interval_s: float = 1.0
    count: int = 5
    replan_s: float = 1.0
    result_delay_s: float = 0.6
    seed: int = 1
    decisions: list[Decision] = field(default_factory=list)

    def run(
        self, duration_s: float, events: dict[float, Callable[[Sim], None]] | None = None
    ) -> list[tuple[float, str | None]]:
        """Run for `duration_s`; `events` at given times change the truth. Returns every
        (time, entry PoP) the region's route took: the initial one, then each change."""
        rng = random.Random(self.seed)
        window = WindowStats(self.window_s)
        decider = Decider(self.policy)
        paths = sorted(self.truth)
        phase = {p: rng.random() * self.interval_s for p in paths}
        started = {p: phase[p] - self.interval_s for p in paths}
        pending: list[tuple[float, RoundRecord]] = []
        pending_events = sorted((events or {}).items())
        routes: list[tuple[float, str | None]] = []
        fresh = -1e9
        last_got: dict[tuple[str, str], int] = {}
        t = 0.0
        while t <= duration_s:
            while pending_events and pending_events[0][0] <= t:
                pending_events.pop(0)[1](self)
            for p in paths:
                while started[p] + self.interval_s <= t:
                    started[p] += self.interval_s
                    rec = self._round(rng, p, started[p])
                    pending.append((started[p] + self.result_delay_s, rec))
            for at, rec in [x for x in pending if x[0] <= t]:
                window.add(rec)
                fresh = max(fresh, at)
                last_got[(rec.src, rec.dst)] = rec.received
            pending = [x for x in pending if x[0] > t]
            stats = window.stats(int(t * 1e9))
            if len(stats) == len(paths):
                alive = {dst: got > 0 for (_, dst), got in last_got.items()}  # as Daemon.pop_alive
                table, decisions = decider.update(
                    plan(self.topology, stats), t, fresh_at={"r": fresh}, pop_alive=alive
                )
                self.decisions += decisions
                entry = table.get("r")
                if entry is not None and entry.route is not None:
                    key = entry.route.entry_pop
                    if not routes or routes[-1][1] != key:
                        routes.append((t, key))
            t = round(t + self.replan_s, 6)
        return routes

    def _round(self, rng: random.Random, path: tuple[str, str], start_s: float) -> RoundRecord:
        tr = self.truth[path]
        lost = sum(rng.random() < tr.loss_pct / 100 for _ in range(self.count))
        got = self.count - lost
        p50 = tr.rtt_ms + rng.gauss(0, tr.jitter_ms / 3) if got else None
        jit = tr.jitter_ms * rng.gammavariate(4, 0.25) if got > 1 else None
        return RoundRecord(
            int(start_s * 1e9), path[0], path[1], "icmp", self.count, got, p50, p50, p50, p50,
            p50, jit,
        )  # fmt: skip


def world(backbone_ms: dict[str, float]) -> Topology:
    """Region `r`, destination `fra`, edge PoPs with the given backbone RTTs to fra."""
    return Topology(
        regions=(Region("r"),),
        pops=(Pop("fra", "core"), *(Pop(p, "edge") for p in backbone_ms)),
        destinations=("fra",),
        backbone=tuple(Link(p, "fra", ms) for p, ms in backbone_ms.items()),
    )
