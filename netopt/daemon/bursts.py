"""Escalated probing: budget (packets/s above the steady rate) → **bursts** → probe → sinks.

The steady rate of an adaptive path is the scheduler's (netopt.daemon.schedule: one round of
one packet a second on the job's grid). What an escalation adds on top runs here, so that it
starts at once and its evidence comes back fast:

- every escalated job gets a short round ("burst") of `BURST_PACKETS` packets (fewer when
  its extra rate is low), `packet_interval_s` apart, under the job's own timeout, then the
  next when `packets / extra_pps` seconds have passed — 24 extra packets/s are a 5-packet
  burst every 0.21 s;
- bursts of one job may overlap (each round has its own nonce and sequence numbers), so a
  burst reports 80 ms + its RTT after it starts, or at its timeout when a packet was lost,
  where one 23-packet round a second reported only at its end, and only from the next second
  on; at most `max_in_flight` bursts of a job run at once (a skipped one is counted);
- a path newly escalated is probed at once (the loop is woken), not at its next turn;
- the bursts due together that may share a round (the same kind, namespace and options) run
  as one batch (`run` is the daemon's `probe_slot`, which stores, windows and detects them
  exactly as it does the scheduler's rounds).

`Bursts.set(extra)` replaces what is escalated; `run()` is the supervised task. The clock is
an argument; `due(now)` (which jobs to launch at `now`, and when to look again) is pure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from netopt.daemon.probing import ProbeJob

BURST_PACKETS = 5
IDLE_S = 3600.0  # how long the loop sleeps with nothing escalated (a `set` wakes it)


@dataclasses.dataclass
class _Path:
    job: ProbeJob  # shaped: `count` is the burst's packets
    extra_pps: float
    next_s: float
    in_flight: int = 0


def burst_packets(extra_pps: float) -> int:
    """Packets per burst for `extra_pps`: `BURST_PACKETS`, or as many as a second of the extra
    rate holds when it is lower (at least 1)."""
    return max(1, min(BURST_PACKETS, math.floor(extra_pps)))


class Bursts:
    """The escalated jobs and their next burst; launches them on the daemon's task group."""

    def __init__(
        self,
        run: Callable[[tuple[ProbeJob, ...]], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = 4,
    ) -> None:
        self._run, self._spawn, self._clock = run, spawn, clock
        self.max_in_flight = max_in_flight
        self._paths: dict[str, _Path] = {}
        self._wake = asyncio.Event()
        self.launched = 0  # bursts started
        self.skipped = 0  # bursts not started: `max_in_flight` of the job were still running

    @property
    def escalated(self) -> dict[str, float]:
        """job id → extra packets/s in force."""
        return {i: p.extra_pps for i, p in self._paths.items()}

    def set(self, extra: Mapping[str, tuple[ProbeJob, float]]) -> None:
        """Escalate exactly these jobs (any key → (job, extra packets/s above steady)); a job
        new to the set is due at once, one already in it keeps its turn."""
        now = self._clock()
        paths: dict[str, _Path] = {}
        for job, pps in extra.values():
            job_id = job.job_id
            if pps <= 0:
                continue
            count = burst_packets(pps)
            shaped = dataclasses.replace(job, options=dataclasses.replace(job.options, count=count))
            old = self._paths.get(job_id)
            if old is None:
                paths[job_id] = _Path(shaped, pps, now)
            else:  # keep its turn, its bursts in flight; a new rate counts from the last burst
                last = old.next_s - old.job.options.count / old.extra_pps
                paths[job_id] = _Path(shaped, pps, min(old.next_s, last + count / pps),
                                      old.in_flight)  # fmt: skip
        self._paths = paths
        self._wake.set()

    def due(self, now: float) -> tuple[list[tuple[ProbeJob, ...]], float]:
        """The batches to launch at `now` (their turns advanced) and the next instant to look."""
        groups: dict[object, list[ProbeJob]] = {}
        for path in sorted(self._paths.values(), key=lambda p: p.job.job_id):
            if path.next_s > now:
                continue
            path.next_s = max(path.next_s + path.job.options.count / path.extra_pps, now)
            if path.in_flight >= self.max_in_flight:
                self.skipped += 1
                continue
            groups.setdefault(path.job.batch_key, []).append(path.job)
        soonest = min((p.next_s for p in self._paths.values()), default=now + IDLE_S)
        return [tuple(jobs) for jobs in groups.values()], soonest

    def _launch(self, jobs: tuple[ProbeJob, ...]) -> None:
        ids = [j.job_id for j in jobs]
        for job_id in ids:
            self._paths[job_id].in_flight += 1
        task = self._spawn(self._run(jobs))
        self.launched += 1

        def landed(_task: asyncio.Task[None]) -> None:
            for job_id in ids:
                path = self._paths.get(job_id)
                if path is not None and path.in_flight > 0:
                    path.in_flight -= 1

        task.add_done_callback(landed)

    async def run(self) -> None:
        """Launch every burst when it is due, until cancelled."""
        while True:
            self._wake.clear()
            batches, soonest = self.due(self._clock())
            for jobs in batches:
                self._launch(jobs)
            wait_s = max(0.0, soonest - self._clock())
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
