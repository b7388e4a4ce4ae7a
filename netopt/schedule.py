"""Scheduling: config → **schedule** → probe → sample → store …

One APScheduler interval job per probe job (kind, source, target) on the daemon's own loop.
Start times are spread deterministically: each job's phase is a hash of its id modulo its
interval, and its runs sit on the grid ``phase + k·interval`` counted from the Unix epoch, so a
thousand targets do not fire in the same millisecond, a restart keeps every job's phase, and a
late run never shifts the ones after it (no drift). Each run launches the round as a task of
the caller's task group; a job whose previous round is still running skips that run (one
instance at a time); runs missed while the loop was busy are coalesced into one, within a
misfire grace of one interval. `sync()` swaps the job set on reload without a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import zlib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job as ApsJob
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("netopt.schedule")


class Job(Protocol):
    @property
    def job_id(self) -> str: ...

    @property
    def interval_s(self) -> float: ...


PHASE_STEP_S = 0.01  # phases on a 10 ms grid: spread enough, and 100 wakeups/s at most


def phase_s(job_id: str, interval_s: float, step_s: float = PHASE_STEP_S) -> float:
    """A job's deterministic offset inside its interval (hash of the id, on a `step_s` grid).

    The grid batches jobs into at most 1/step_s scheduler wakeups per second: APScheduler's
    per-wakeup cost is then shared by the jobs of one slot.
    """
    slots = max(1, round(interval_s / step_s))
    return round((zlib.crc32(job_id.encode()) % slots) * step_s, 6)


def first_run_s(job_id: str, interval_s: float, now_wall_s: float) -> float:
    """The first instant ≥ now on the job's grid ``phase + k·interval`` (Unix seconds)."""
    phase = phase_s(job_id, interval_s)
    k = math.ceil((now_wall_s - phase) / interval_s)
    return phase + k * interval_s


def trigger_for(job_id: str, interval_s: float, now_wall_s: float) -> IntervalTrigger:
    start = dt.datetime.fromtimestamp(first_run_s(job_id, interval_s, now_wall_s), dt.UTC)
    return IntervalTrigger(seconds=interval_s, start_date=start, timezone=dt.UTC)


class _LaunchExecutor(BaseExecutor):  # type: ignore[misc]
    """Calls the job's (synchronous) launcher at once, on the loop, with no bookkeeping.

    APScheduler's asyncio executor wraps every run in a task, inspects the function and
    dispatches completion events; at a thousand runs a second that alone costs a fifth of a
    core. Our launcher only starts the round as a task of the daemon's task group (where
    one-instance-at-a-time is enforced), so it can run inline.
    """

    def submit_job(self, job: ApsJob, run_times: list[dt.datetime]) -> None:
        job.func(*job.args, **job.kwargs)

    def _do_submit_job(self, job: ApsJob, run_times: list[dt.datetime]) -> None:
        raise NotImplementedError  # submit_job does it all


def _signature(job: Job) -> object:
    return job  # jobs are frozen dataclasses: equal jobs need no reschedule


class Scheduler:
    """The daemon's probe schedule; `run(job)` makes the coroutine of one round."""

    def __init__(
        self,
        run: Callable[[Any], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        wall_clock: Callable[[], float],
    ) -> None:
        self._run = run
        self._spawn = spawn
        self._clock = wall_clock
        self._aps = AsyncIOScheduler(timezone=dt.UTC)
        self._aps.add_executor(_LaunchExecutor(), "default")
        self._jobs: dict[str, Any] = {}
        self._running: set[str] = set()
        self._stopping = False
        self.skipped = 0  # runs skipped because the previous round was still running

    @property
    def job_ids(self) -> frozenset[str]:
        return frozenset(self._jobs)

    def _launch(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if self._stopping or job is None:
            return
        if job_id in self._running:
            self.skipped += 1
            return
        self._running.add(job_id)
        task = self._spawn(self._run(job))
        task.add_done_callback(lambda _t: self._running.discard(job_id))

    def _add(self, job: Any, now: float) -> None:
        self._jobs[job.job_id] = job
        self._aps.add_job(
            self._launch, trigger_for(job.job_id, job.interval_s, now), args=[job.job_id],
            id=job.job_id, coalesce=True, max_instances=1, replace_existing=True,
            misfire_grace_time=max(1, math.ceil(job.interval_s)),
        )  # fmt: skip

    def sync(self, jobs: Iterable[Any]) -> tuple[int, int, int]:
        """Make the schedule exactly `jobs`; returns (added, removed, changed)."""
        wanted = {j.job_id: j for j in jobs}
        now = self._clock()
        added = removed = changed = 0
        for job_id in list(self._jobs):
            if job_id not in wanted:
                del self._jobs[job_id]
                self._aps.remove_job(job_id)
                removed += 1
        for job_id, job in wanted.items():
            old = self._jobs.get(job_id)
            if old is None:
                added += 1
            elif _signature(old) != _signature(job):
                changed += 1
            else:
                continue
            self._add(job, now)
        return added, removed, changed

    def start(self, jobs: Iterable[Any]) -> None:
        self.sync(jobs)
        self._aps.start()

    def shutdown(self) -> None:
        self._stopping = True
        if self._aps.running:
            self._aps.shutdown(wait=False)
