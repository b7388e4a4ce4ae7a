"""The supervisor (netopt.daemon.tasks) with fake failing coroutines, a fake sleep and a fake clock:
failures are counted and restarted with backoff, cancellation propagates, a task that keeps
failing sleeps between tries instead of spinning."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from netopt.daemon.tasks import Backoff, guard, guarded_spawn, supervise


class Fake:
    """A fake monotonic clock, a sleep that advances it, and a failure counter."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.failed: list[str] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would

    def on_failure(self, name: str) -> None:
        self.failed.append(name)


def failing(
    times: int, fake: Fake, run_s: float = 0.0
) -> tuple[list[int], Callable[[], Awaitable[None]]]:
    runs: list[int] = []

    async def run() -> None:
        runs.append(len(runs))
        fake.now += run_s
        if len(runs) <= times:
            raise RuntimeError(f"boom {len(runs)}")

    return runs, run


def test_backoff_doubles_to_its_ceiling() -> None:
    b = Backoff(min_s=0.5, max_s=30)
    assert [b.delay_s(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.delay_s(10_000) == 30


async def test_a_failure_is_counted_and_restarted_with_backoff() -> None:
    fake = Fake()
    runs, run = failing(3, fake)
    await supervise("pusher:core", run, fake.on_failure, sleep=fake.sleep, clock=fake.clock)
    assert len(runs) == 4  # three failures, then a run that returns
    assert fake.failed == ["pusher:core"] * 3
    assert fake.sleeps == [0.5, 1.0, 2.0]


async def test_a_healthy_run_resets_the_backoff() -> None:
    fake = Fake()
    _, run = failing(3, fake, run_s=100.0)  # each run stays up 100 s before it fails
    b = Backoff(min_s=0.5, max_s=30, healthy_after_s=60)
    await supervise("t", run, fake.on_failure, backoff=b, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [0.5, 0.5, 0.5]


async def test_a_task_that_keeps_failing_sleeps_between_tries() -> None:
    fake = Fake()
    runs, run = failing(1000, fake)
    task = asyncio.create_task(
        supervise("tracer", run, fake.on_failure, sleep=fake.sleep, clock=fake.clock)
    )
    while len(runs) < 50:  # noqa: ASYNC110 - polling what the supervisor does
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fake.sleeps) >= len(runs) - 1  # never a restart without its pause
    assert sum(fake.sleeps) > 30 * 40  # past the ceiling: 30 s between tries, not 0
    assert max(fake.sleeps) == 30


async def test_cancellation_propagates_and_is_not_a_failure() -> None:
    fake = Fake()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("plan_loop", forever, fake.on_failure))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.failed == [] and fake.sleeps == []


async def test_cancelled_while_backing_off() -> None:
    fake = Fake()
    runs, run = failing(1, fake)
    task = asyncio.create_task(supervise("t", run, fake.on_failure))  # real sleep: 0.5 s
    while not fake.failed:  # noqa: ASYNC110 - polling what the supervisor does
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 1


async def test_a_fatal_failure_is_raised() -> None:
    fake = Fake()
    runs, run = failing(5, fake)
    with pytest.raises(RuntimeError, match="boom 1"):
        await supervise("route_api", run, fake.on_failure, fatal=lambda e: True)
    assert fake.failed == [] and len(runs) == 1


async def test_a_base_exception_that_is_not_an_error_propagates() -> None:
    fake = Fake()

    async def exits() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await supervise("t", exits, fake.on_failure, sleep=fake.sleep)
    assert fake.failed == []


async def test_guard_counts_a_failed_run_and_keeps_the_group() -> None:
    fake = Fake()

    async def bad_slot() -> None:
        raise ValueError("a round's bug")

    async def good_slot() -> None:
        return None

    async with asyncio.TaskGroup() as tg:
        spawn = guarded_spawn(tg.create_task, "probe_slot", fake.on_failure)
        spawn(bad_slot())
        spawn(good_slot())
        spawn(bad_slot())
    assert fake.failed == ["probe_slot", "probe_slot"]
    await guard("probe_slot", good_slot(), fake.on_failure)
    assert len(fake.failed) == 2
