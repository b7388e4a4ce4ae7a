"""Scheduling: config → **schedule** → probe → sample → store …

Every probe job (kind, source, target) has a deterministic phase inside its interval: a hash
of its id on a 100 ms grid. Its rounds sit on the grid ``phase + k·interval`` counted from the
Unix epoch, so a thousand targets do not fire in the same millisecond, a restart keeps every
job's phase, and a late run never shifts the ones after it (no drift).

The jobs that share a phase slot and can share a round (the same kind, namespace and probe
options: `Job.batch_key`) are one APScheduler interval job on the daemon's loop, whose run
launches their rounds together as one task (`run(jobs)`): at 1,000 targets a second that is
10 scheduler runs and tasks a second instead of 1,000, and the ICMP prober sends packet i of
every round in the slot in one system call. A slot whose previous run is still going skips
that run (one instance at a time, for each of its jobs); runs missed while the loop was busy
are coalesced into one, within a misfire grace of one interval. `sync()` swaps the job set on
reload without a restart: a job joins or leaves its slot, and a slot's APScheduler job comes
and goes with its first and last member.
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


SlotKey = tuple[float, float, object]  # (interval, phase, batch key)


def slot_key(job: Any) -> SlotKey:
    """Which slot job runs `job`: its interval, its phase, and what may share a round with it
    (`job.batch_key`; a job without one runs alone)."""
    return (
        job.interval_s,
        phase_s(job.job_id, job.interval_s),
        getattr(job, "batch_key", ("alone", job.job_id)),
    )


# phases on a 100 ms grid: 10 slots a second spread the rounds enough (a slot of 1,000 targets
# at 1/s sends 100 packets at once, ~10 kB), each slot's fixed cost — a scheduler run, a task,
# the batch's set-up and system calls — is shared by many rounds, and with 20 ms between a
# round's packets every slot's sends fall on the same 20 ms ticks (bench/scheduler: about half
# the CPU per round of a 10 ms grid with 10 ms ticks)
PHASE_STEP_S = 0.1


def phase_s(job_id: str, interval_s: float, step_s: float = PHASE_STEP_S) -> float:
    """A job's deterministic offset inside its interval (hash of the id, on a `step_s` grid).

    The grid batches jobs into at most 1/step_s scheduler wakeups per second: APScheduler's
    per-wakeup cost is then shared by the jobs of one slot.
    """
    slots = max(1, round(interval_s / step_s))
    return round((zlib.crc32(job_id.encode()) % slots) * step_s, 6)


def first_run_s(job_id: str, interval_s: float, now_wall_s: float) -> float:
    """The first instant ≥ now on the job's grid ``phase + k·interval`` (Unix seconds)."""
    return _on_grid(phase_s(job_id, interval_s), interval_s, now_wall_s)


def _on_grid(phase: float, interval_s: float, now_wall_s: float) -> float:
    return phase + math.ceil((now_wall_s - phase) / interval_s) * interval_s


def trigger_for(job_id: str, interval_s: float, now_wall_s: float) -> IntervalTrigger:
    """The APScheduler trigger of `job_id`'s grid (its slot's)."""
    return grid_trigger(phase_s(job_id, interval_s), interval_s, now_wall_s)


def grid_trigger(phase: float, interval_s: float, now_wall_s: float) -> IntervalTrigger:
    start = dt.datetime.fromtimestamp(_on_grid(phase, interval_s, now_wall_s), dt.UTC)
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


def job_diff(old: Iterable[Any], new: Iterable[Any]) -> tuple[int, int, int]:
    """(added, removed, changed) from job set `old` to `new` (by job id)."""
    had, wanted = {j.job_id: j for j in old}, {j.job_id: j for j in new}
    added = sum(1 for i in wanted if i not in had)
    removed = sum(1 for i in had if i not in wanted)
    changed = sum(1 for i, j in wanted.items() if i in had and _signature(had[i]) != _signature(j))
    return added, removed, changed


class Scheduler:
    """The daemon's probe schedule; `run(jobs)` makes the coroutine of one slot's rounds."""

    def __init__(
        self,
        run: Callable[[tuple[Any, ...]], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        wall_clock: Callable[[], float],
    ) -> None:
        self._run = run
        self._spawn = spawn
        self._clock = wall_clock
        self._aps = AsyncIOScheduler(timezone=dt.UTC)
        self._aps.add_executor(_LaunchExecutor(), "default")
        self._jobs: dict[str, Any] = {}
        self._slots: dict[SlotKey, tuple[Any, ...]] = {}  # slot → its jobs, in id order
        self._aps_ids: dict[SlotKey, str] = {}
        self._running: set[SlotKey] = set()
        self._stopping = False
        self._next_id = 0
        self.skipped = 0  # rounds skipped because their slot's previous run was still going

    @property
    def job_ids(self) -> frozenset[str]:
        return frozenset(self._jobs)

    @property
    def slots(self) -> int:
        """How many APScheduler jobs the probe jobs run as."""
        return len(self._slots)

    def _launch(self, key: SlotKey) -> None:
        """An APScheduler run of `key`'s slot: its rounds start as one task."""
        jobs = self._slots.get(key)
        if self._stopping or not jobs:
            return
        if key in self._running:
            self.skipped += len(jobs)
            return
        self._running.add(key)
        task = self._spawn(self._run(jobs))
        task.add_done_callback(lambda _t: self._running.discard(key))

    def _add_slot(self, key: SlotKey, now: float) -> None:
        interval_s, phase = key[0], key[1]
        self._next_id += 1
        aps_id = self._aps_ids[key] = f"slot-{self._next_id}@{phase:g}/{interval_s:g}s"
        self._aps.add_job(
            self._launch, grid_trigger(phase, interval_s, now), args=[key], id=aps_id,
            coalesce=True, max_instances=1, replace_existing=True,
            misfire_grace_time=max(1, math.ceil(interval_s)),
        )  # fmt: skip

    def sync(self, jobs: Iterable[Any]) -> tuple[int, int, int]:
        """Make the schedule exactly `jobs`; returns (added, removed, changed)."""
        wanted = {j.job_id: j for j in jobs}
        added, removed, changed = job_diff(self._jobs.values(), wanted.values())
        self._jobs = wanted
        slots: dict[SlotKey, list[Any]] = {}
        for job_id in sorted(wanted):
            job = wanted[job_id]
            slots.setdefault(slot_key(job), []).append(job)
        for key in [k for k in self._slots if k not in slots]:
            del self._slots[key]
            self._aps.remove_job(self._aps_ids.pop(key))
        now = self._clock()
        for key, members in slots.items():
            if key not in self._slots:
                self._add_slot(key, now)
            self._slots[key] = tuple(members)
        return added, removed, changed

    def start(self, jobs: Iterable[Any]) -> None:
        self.sync(jobs)
        self._aps.start()

    def shutdown(self) -> None:
        self._stopping = True
        if self._aps.running:
            self._aps.shutdown(wait=False)
