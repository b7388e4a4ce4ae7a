"""Probe jobs: config → schedule → **probe** → sample → store, window, metrics.

One `ProbeJob` per (kind, source site, target site). Running a job sends one round with the
source site's prober (created inside the site's network namespace when it has one), then hands
the round's summary to a sink. No clock is read here but through the prober's samples.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netopt.config import Config, ProbeConfig
from netopt.store.model import RoundRecord
from probes.base import ProbeOptions, Prober, Target, make_prober
from probes.stats import RoundDigest, RoundStats, RoundSummary, round_summary

SocketFactory = Callable[[int, int, int], socket.socket]


@dataclass(frozen=True, slots=True)
class ProbeJob:
    kind: str
    src: str
    dst: str
    target: Target
    options: ProbeOptions
    interval_s: float
    netns: str | None

    @property
    def job_id(self) -> str:
        return f"{self.kind}:{self.src}->{self.dst}"

    @property
    def batch_key(self) -> tuple[str, str | None, ProbeOptions]:
        """Jobs with equal keys (and one phase slot) run their rounds together."""
        return self.kind, self.netns, self.options


def jobs_from_config(cfg: Config) -> list[ProbeJob]:
    jobs = []
    for p in cfg.probes:
        src = cfg.site(p.from_)
        for dst_id in p.to:
            address = cfg.site(dst_id).address
            assert address is not None  # checked by config validation
            jobs.append(
                ProbeJob(
                    kind=p.kind,
                    src=p.from_,
                    dst=dst_id,
                    target=Target(address=address, port=p.port, name=dst_id),
                    options=_options(p),
                    interval_s=p.interval_s,
                    netns=src.netns,
                )
            )
    return jobs


def _options(p: ProbeConfig) -> ProbeOptions:
    return ProbeOptions(
        count=p.count,
        interval_s=p.packet_interval_s,
        timeout_s=p.timeout_s,
        dscp=p.dscp,
        codec=p.codec,
        transport=p.transport,
        clock_synced=p.clock_synced,
    )


def record_of(job: ProbeJob, started_wall_ns: int, stats: RoundStats | RoundDigest) -> RoundRecord:
    rtt = stats.rtt_ms
    return RoundRecord(
        started_wall_ns=started_wall_ns,
        src=job.src,
        dst=job.dst,
        kind=job.kind,
        sent=stats.sent,
        received=stats.received,
        rtt_min_ms=rtt.min if rtt else None,
        rtt_avg_ms=rtt.avg if rtt else None,
        rtt_p50_ms=rtt.p50 if rtt else None,
        rtt_p90_ms=rtt.p90 if rtt else None,
        rtt_max_ms=rtt.max if rtt else None,
        jitter_ms=stats.jitter_ms,
    )


class ProberPool:
    """One prober per (kind, network namespace), created on first use, closed together."""

    def __init__(self, socket_in: Callable[..., socket.socket] | None = None) -> None:
        self._socket_in = socket_in
        self._probers: dict[tuple[str, str | None], Prober] = {}

    def get(self, kind: str, netns: str | None) -> Prober:
        key = (kind, netns)
        if key not in self._probers:
            kwargs = {}
            if netns is not None:
                if self._socket_in is None:
                    raise RuntimeError("a site has a netns but no namespace socket factory")
                kwargs["socket_factory"] = functools.partial(self._socket_in, netns)
            self._probers[key] = make_prober(kind, **kwargs)
        return self._probers[key]

    async def close(self) -> None:
        for prober in self._probers.values():
            await prober.close()
        self._probers.clear()


@dataclass(frozen=True, slots=True)
class Ran:
    """One job's round of a slot: its summary, or what it raised."""

    job: ProbeJob
    summary: RoundSummary | None = None
    error: BaseException | None = None


async def run_rounds(pool: ProberPool, jobs: Sequence[ProbeJob]) -> list[Ran]:
    """One round of each of `jobs` (one phase slot: the same kind, namespace and options),
    started together: through the prober's `summaries_many` where it has one (ICMP: a burst
    per system call, summaries from the batch's arrays), else as concurrent rounds. One
    round's failure is not the others'."""
    if not jobs:
        return []
    first = jobs[0]
    prober = pool.get(first.kind, first.netns)
    summaries_many = getattr(prober, "summaries_many", None)
    if summaries_many is not None and len(jobs) > 1:
        try:
            done = await summaries_many([j.target for j in jobs], first.options)
        except Exception as exc:  # the slot's socket: every round in it failed alike
            return [Ran(job, error=exc) for job in jobs]
        return [Ran(job, s) for job, s in zip(jobs, done, strict=True)]
    rounds = await asyncio.gather(
        *(prober.probe(j.target, j.options) for j in jobs), return_exceptions=True
    )
    return [
        Ran(job, error=r) if isinstance(r, BaseException) else Ran(job, round_summary(r))
        for job, r in zip(jobs, rounds, strict=True)
    ]
