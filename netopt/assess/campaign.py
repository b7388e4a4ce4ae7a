"""The timed campaign: from this machine to every configured PoP, spread over the duration.

config + site → **campaign** (cycles of ICMP, STAMP, voice stream, SIP OPTIONS rounds, all
PoPs at once) → Collected → analysis. One cycle every `period_s` (duration / 12, kept within
2–30 s), so a 15-minute run has 30 cycles and a 20-second one 8 to 10. A target that does not
answer is data: its rounds are kept; a kind that has not answered a PoP in its first
`GIVE_UP_ROUNDS` rounds stops being sent there (ICMP never stops, so a silent PoP still shows
its loss), and a kind this machine cannot send (ICMP without privilege) is noted, not fatal.
`stop` (set on SIGINT/SIGTERM by the CLI) ends the campaign at once: the cycle in flight is
cancelled and what was collected is returned, marked partial.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netopt.assess.analysis import Collected
from netopt.config import Config, PopConfig
from probes.base import ProbeOptions, Prober, ProbeResult, ProbeSetupError, Target, make_prober
from probes.stamp import STAMP_PORT

GIVE_UP_ROUNDS = 2
MIN_PERIOD_S, MAX_PERIOD_S, CYCLES = 2.0, 30.0, 12


@dataclass(frozen=True)
class Job:
    pop: str
    kind: str
    target: Target
    options: ProbeOptions


@dataclass
class Progress:
    """What the live display shows; updated after every cycle."""

    planned_s: float
    elapsed_s: float = 0.0
    cycle: int = 0
    latest: dict[tuple[str, str], ProbeResult] = field(default_factory=dict)
    totals: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # sent, received
    notes: dict[tuple[str, str], str] = field(default_factory=dict)


def period_s(duration_s: float) -> float:
    return min(MAX_PERIOD_S, max(MIN_PERIOD_S, duration_s / CYCLES))


def sip_target(uri: str, name: str) -> Target:
    """`sip:HOST[:PORT][;params]` → Target (HOST must be an IP address, as everywhere)."""
    rest = uri.split(":", 1)[1].split(";", 1)[0].split("@")[-1]
    host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    return Target(host or rest, int(port) if port else 5060, name=name)


def jobs_for(pops: tuple[PopConfig, ...], period: float, codec: str, stamp_port: int) -> list[Job]:
    voice_s = min(3.0, 0.5 * period)
    quick = ProbeOptions(count=10, interval_s=0.05, timeout_s=1.0, dscp=46)
    voice = ProbeOptions(count=max(10, round(voice_s / 0.02)), interval_s=0.02, timeout_s=1.0,
                         dscp=46, codec=codec)  # fmt: skip
    out = []
    for p in pops:
        out.append(Job(p.id, "icmp", Target(p.address, None, p.id), quick))
        out.append(Job(p.id, "stamp", Target(p.address, stamp_port, p.id), quick))
        out.append(Job(p.id, "voice", Target(p.address, stamp_port, p.id), voice))
        if p.sip_uri:
            sip = ProbeOptions(count=2, interval_s=0.2, timeout_s=1.0, dscp=46)
            out.append(Job(p.id, "sip_options", sip_target(p.sip_uri, p.id), sip))
    return out


class Campaign:
    """One campaign's probers and schedule; `run()` returns the Collected rounds."""

    def __init__(
        self,
        config: Config,
        site: str,
        duration_s: float,
        *,
        codec: str = "g711",
        stamp_port: int = STAMP_PORT,
        on_cycle: Callable[[Progress], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.site, self.duration_s = config, site, duration_s
        self.period_s = period_s(duration_s)
        self.jobs = jobs_for(config.pops, self.period_s, codec, stamp_port)
        self.on_cycle = on_cycle
        self.monotonic, self.wall = monotonic, wall
        self.progress = Progress(planned_s=duration_s)
        self.rounds: list[ProbeResult] = []
        self.probers: dict[str, Prober] = {}
        self.silent: dict[tuple[str, str], int] = {}

    def _prober(self, kind: str) -> Prober:
        if kind not in self.probers:
            kwargs = {"reflector": "stamp"} if kind == "voice" else {}
            self.probers[kind] = make_prober(kind, **kwargs)
        return self.probers[kind]

    def _active(self) -> list[Job]:
        notes = self.progress.notes
        return [j for j in self.jobs if (j.pop, j.kind) not in notes]

    async def _one(self, job: Job) -> None:
        key = (job.pop, job.kind)
        try:
            async with asyncio.timeout(job.options.count * job.options.interval_s + 5.0):
                result = await self._prober(job.kind).probe(job.target, job.options)
        except ProbeSetupError as exc:
            self.progress.notes[key] = f"not sent from this machine: {exc}"
            return
        except (TimeoutError, OSError) as exc:
            self.progress.notes[key] = f"stopped: {type(exc).__name__} {exc}"
            return
        self.rounds.append(result)
        self.progress.latest[key] = result
        tot = self.progress.totals.setdefault(key, [0, 0])
        tot[0] += result.sent
        tot[1] += result.received
        if tot[1] == 0 and job.kind != "icmp":
            self.silent[key] = self.silent.get(key, 0) + 1
            if self.silent[key] >= GIVE_UP_ROUNDS:
                self.progress.notes[key] = f"no answer in {GIVE_UP_ROUNDS} rounds; stopped"

    async def run(self, stop: asyncio.Event) -> Collected:
        started_wall, t0 = self.wall(), self.monotonic()
        partial = False
        try:
            while True:
                cycle_t0 = self.monotonic()
                batch = asyncio.gather(*(self._one(j) for j in self._active()))
                task = asyncio.ensure_future(batch)
                stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
                both: set[asyncio.Future[Any]] = {task, stopper}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    partial = True
                    await _cancel(task, stopper)
                    break
                self.progress.cycle += 1
                self.progress.elapsed_s = self.monotonic() - t0
                if self.on_cycle is not None:
                    self.on_cycle(self.progress)
                left = self.duration_s - (self.monotonic() - t0)
                if left <= 0.5:
                    await _cancel(stopper)
                    break
                wait_s = min(left, max(0.0, self.period_s - (self.monotonic() - cycle_t0)))
                await asyncio.wait({stopper}, timeout=wait_s)
                if stop.is_set():
                    partial = self.monotonic() - t0 < self.duration_s - 0.5
                    break
                await _cancel(stopper)
        finally:
            for prober in self.probers.values():
                with contextlib.suppress(Exception):
                    await prober.close()
        return Collected(
            site=self.site, started_wall_s=started_wall, duration_planned_s=self.duration_s,
            duration_s=self.monotonic() - t0, partial=partial, rounds=tuple(self.rounds),
            notes=dict(self.progress.notes),
        )  # fmt: skip


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
