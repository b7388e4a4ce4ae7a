"""The probe schedule: deterministic spread, no drift over a simulated day, reload sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass

import pytest

from netopt.daemon.schedule import Scheduler, first_run_s, phase_s, slot_key, trigger_for

DAY_S = 86_400
T0 = 1_700_000_123.456


def _ts(d: dt.datetime) -> float:
    return d.timestamp()


def test_phases_spread_a_thousand_jobs_over_the_interval() -> None:
    phases = [phase_s(f"icmp:site->t{i}", 1.0) for i in range(1000)]
    assert all(0 <= p < 1 for p in phases)
    assert phases == [phase_s(f"icmp:site->t{i}", 1.0) for i in range(1000)]  # deterministic
    per_100ms = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert min(per_100ms) > 60 and max(per_100ms) < 140  # ~100 each, none piled up
    assert len(set(phases)) == 10  # every 100 ms slot used


@pytest.mark.parametrize("interval_s", [1.0, 2.5, 30.0])
def test_first_run_is_on_the_grid_and_not_in_the_past(interval_s: float) -> None:
    for now in (T0, T0 + 0.001, T0 + interval_s * 7.3):
        t = first_run_s("icmp:a->b", interval_s, now)
        assert now <= t < now + interval_s
        k = (t - phase_s("icmp:a->b", interval_s)) / interval_s
        assert k == pytest.approx(round(k), abs=1e-6)


@pytest.mark.parametrize("interval_s", [1.0, 5.0])
def test_no_drift_over_a_simulated_day_with_late_runs_and_stalls(interval_s: float) -> None:
    """Drive APScheduler's trigger the way its scheduler does, with a fake clock.

    Every run is processed late by up to 300 ms, and twice the loop stalls for 10 s (runs
    missed then are coalesced into one). The fire times must stay on the grid all day.
    """
    rng = random.Random(7)
    job_id = "icmp:lagos->fra"
    trigger = trigger_for(job_id, interval_s, T0)
    phase = phase_s(job_id, interval_s)
    fire = trigger.get_next_fire_time(None, dt.datetime.fromtimestamp(T0, dt.UTC))
    assert fire is not None
    fires = []
    stalls = {int(DAY_S / interval_s / 3), int(2 * DAY_S / interval_s / 3)}
    while _ts(fire) < T0 + DAY_S:
        fires.append(_ts(fire))
        late_s = rng.uniform(0, 0.3) + (10.0 if len(fires) in stalls else 0.0)
        now = dt.datetime.fromtimestamp(_ts(fire) + late_s, dt.UTC)
        # what APScheduler's _process_jobs does with coalesce=True
        runs = [fire]
        nxt = trigger.get_next_fire_time(fire, now)
        while nxt is not None and nxt <= now:
            runs.append(nxt)
            nxt = trigger.get_next_fire_time(nxt, now)
        assert nxt is not None
        fire = nxt
    offsets = [((t - phase) / interval_s) for t in fires]
    assert all(abs(k - round(k)) < 1e-6 for k in offsets)  # on the grid: no drift at all
    missed = 2 * (int(10.0 / interval_s))  # the two stalls swallowed these runs
    assert DAY_S / interval_s - missed - 2 <= len(fires) <= DAY_S / interval_s
    assert fires[-1] > T0 + DAY_S - interval_s - 11


@dataclass(frozen=True)
class FakeJob:
    job_id: str
    interval_s: float = 0.05


async def test_scheduler_runs_one_instance_and_syncs_jobs() -> None:
    runs: dict[str, int] = {}
    release = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def run(jobs: tuple[FakeJob, ...]) -> None:
        for job in jobs:
            runs[job.job_id] = runs.get(job.job_id, 0) + 1
        if any(job.job_id == "slow" for job in jobs):
            await release.wait()

    def spawn(coro):  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    import time

    sched = Scheduler(run, spawn, time.time)
    sched.start([FakeJob("slow"), FakeJob("fast")])
    await asyncio.sleep(0.4)
    assert runs["slow"] == 1 and sched.skipped >= 3  # never two rounds of one job at once
    assert runs["fast"] >= 3
    assert sched.sync([FakeJob("fast"), FakeJob("new")]) == (1, 1, 0)
    assert sched.sync([FakeJob("fast", 0.1), FakeJob("new")]) == (0, 0, 1)
    before = runs["slow"]
    release.set()
    await asyncio.sleep(0.3)
    assert runs["slow"] == before and runs.get("new", 0) >= 2
    assert sched.job_ids == {"fast", "new"}
    sched.shutdown()
    await asyncio.gather(*tasks)


@dataclass(frozen=True)
class BatchJob:
    job_id: str
    batch_key: str
    interval_s: float = 1.0


def test_jobs_of_one_phase_slot_and_batch_key_share_one_scheduler_job() -> None:
    """A thousand jobs at 1/s on a 100 ms grid are 10 APScheduler jobs, not 1,000; jobs that
    may not share a round (another batch key) get their own slot job at the same phase."""
    import time

    async def nothing(jobs: tuple[BatchJob, ...]) -> None:
        return None

    sched = Scheduler(nothing, asyncio.ensure_future, time.time)
    jobs = [BatchJob(f"icmp:src->p{i}", "icmp") for i in range(1000)]
    assert sched.sync(jobs) == (1000, 0, 0)
    assert sched.slots == len({slot_key(j) for j in jobs}) == 10
    other = [BatchJob(j.job_id.replace("icmp", "udp"), "udp") for j in jobs[:10]]
    sched.sync([*jobs, *other])
    assert sched.slots == 10 + len({slot_key(j) for j in other})
    assert sched.sync(jobs[:1]) == (0, 1009, 0)
    assert sched.slots == 1 and sched.job_ids == {jobs[0].job_id}
    sched.shutdown()


async def test_a_slot_runs_its_jobs_together_and_skips_while_busy() -> None:
    import time

    batches: list[tuple[str, ...]] = []
    release = asyncio.Event()

    async def run(jobs: tuple[BatchJob, ...]) -> None:
        batches.append(tuple(j.job_id for j in jobs))
        await release.wait()

    # three jobs at a 100 ms interval: one 100 ms slot, phase 0
    ids = [i for i in (f"j{n}" for n in range(200)) if phase_s(i, 0.1) == 0.0][:3]
    sched = Scheduler(run, asyncio.ensure_future, time.time)
    sched.start([BatchJob(i, "k", 0.1) for i in ids])
    await asyncio.sleep(0.45)
    assert batches == [tuple(sorted(ids))]  # one run for all three, then skipped while busy
    assert sched.skipped >= 3 and sched.skipped % 3 == 0
    release.set()
    await asyncio.sleep(0.25)
    assert len(batches) >= 2
    sched.shutdown()
