"""netopt.daemon.bursts: escalated probing at once, at the extra rate, overlapping, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from netopt.daemon.bursts import Bursts, burst_packets
from netopt.daemon.probing import ProbeJob
from probes.base import ProbeOptions, Target


def job(dst: str, netns: str | None = None) -> ProbeJob:
    options = ProbeOptions(count=1, interval_s=0.02, timeout_s=0.5)
    return ProbeJob("icmp", "lagos", dst, Target(f"198.18.0.{len(dst)}", name=dst), options,
                    1.0, netns)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bursts(clock: Clock, **kwargs: Any) -> Bursts:
    async def never(_jobs: tuple[ProbeJob, ...]) -> None:
        raise AssertionError("due() launches nothing")

    return Bursts(never, lambda _c: pytest.fail("due() spawns nothing"), clock, **kwargs)


@pytest.mark.parametrize(("extra", "packets"), [(24.0, 5), (5.0, 5), (2.5, 2), (0.5, 1)])
def test_a_burst_is_five_packets_or_a_second_of_a_lower_rate(extra: float, packets: int) -> None:
    assert burst_packets(extra) == packets


def test_a_new_escalation_is_due_at_once_then_at_the_extra_rate() -> None:
    clock = Clock()
    b = bursts(clock)
    b.set({"a": (job("los"), 24.0)})
    batches, soonest = b.due(clock.now)
    assert [[j.dst for j in batch] for batch in batches] == [["los"]]
    assert batches[0][0].options.count == 5  # the steady job's options, reshaped
    assert soonest == pytest.approx(clock.now + 5 / 24)  # 24 packets/s in bursts of 5
    assert b.due(clock.now + 0.1)[0] == []  # not due again before its turn
    launched = 0
    for step in range(1, 49):  # 10 s in 0.2 s steps: the rate holds, not one burst a step
        launched += len(b.due(clock.now + 0.2 * step)[0])
    assert 5 * launched == pytest.approx(24 * 9.6, abs=5)


def test_jobs_due_together_with_one_batch_key_share_a_round() -> None:
    clock = Clock()
    b = bursts(clock)
    b.set({"a": (job("los"), 24.0), "b": (job("jnb"), 24.0), "c": (job("fra", "ns1"), 24.0)})
    batches, _ = b.due(clock.now)
    assert sorted(sorted(j.dst for j in batch) for batch in batches) == [["fra"], ["jnb", "los"]]


def test_set_keeps_the_turn_of_a_path_already_escalated_and_drops_the_rest() -> None:
    clock = Clock()
    b = bursts(clock)
    b.set({"a": (job("los"), 24.0), "b": (job("jnb"), 24.0)})
    b.due(clock.now)
    clock.now += 0.05
    b.set({"a": (job("los"), 24.0)})  # jnb relaxed; los keeps its turn (not due again at once)
    assert b.escalated == {"icmp:lagos->los": 24.0}
    assert b.due(clock.now)[0] == []
    b.set({"a": (job("los"), 0.0)})  # a zero extra rate is no escalation
    assert b.escalated == {}


async def test_bursts_overlap_up_to_the_bound_and_the_loop_wakes_on_a_new_escalation() -> None:
    release = asyncio.Event()
    started: list[tuple[str, ...]] = []
    tasks: list[asyncio.Task[None]] = []

    async def run(jobs: tuple[ProbeJob, ...]) -> None:
        started.append(tuple(j.dst for j in jobs))
        await release.wait()  # every burst stays in flight until released

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        tasks.append(asyncio.create_task(coro))
        return tasks[-1]

    loop = asyncio.get_running_loop()
    b = Bursts(run, spawn, loop.time, max_in_flight=3)
    runner = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.05)
        assert started == []  # nothing escalated: the loop sleeps
        b.set({"a": (job("los"), 50.0)})  # bursts of 5 every 0.1 s
        await asyncio.sleep(0.01)
        assert started == [("los",)], "a new escalation starts at once"
        await asyncio.sleep(0.5)
        assert len(started) == 3 and b.skipped >= 1  # 3 in flight at most, the rest skipped
        release.set()
        await asyncio.sleep(0.15)
        assert len(started) >= 4  # in-flight bursts landed: the next ones start again
        assert b.launched == len(started)
    finally:
        runner.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(runner, *tasks, return_exceptions=True)
