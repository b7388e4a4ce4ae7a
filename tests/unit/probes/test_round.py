"""The round engine without sockets: schedule, flood, timeouts, and one pacer timer at most."""

from __future__ import annotations

import asyncio
from typing import Any

from probes._round import Pacer, Round
from probes.base import Outcome, ProbeOptions


class FakeChannel:
    """Answers every packet on the next loop turn, except the indexes in `silent`."""

    def __init__(self, silent: set[int] | None = None) -> None:
        self.silent = silent or set()
        self.sent: list[int] = []
        self.loop = asyncio.get_running_loop()

    def send(self, rnd: Round, index: int) -> int | None:
        rnd.sent_ns[index] = 1000 * index
        self.sent.append(index)
        if index not in self.silent:
            self.loop.call_soon(rnd.resolve, index, Outcome.OK, 1000 * index + 7)
        return index

    def expire(self, seq: int, rnd: Round) -> bool:
        return rnd.outcomes[seq] is None


async def test_scheduled_round_with_a_timeout() -> None:
    channel = FakeChannel(silent={2})
    rnd = Round("x", ("x", 0), 1, ProbeOptions(count=4, interval_s=0.001, timeout_s=0.05))
    rnd.start(channel)
    await rnd.done
    rnd.finish()
    assert [s.outcome for s in rnd.samples()] == [Outcome.OK, Outcome.OK, Outcome.TIMEOUT,
                                                  Outcome.OK]  # fmt: skip
    assert [s.rtt_ns for s in rnd.samples()] == [7, 7, None, 7]


async def test_flood_sends_the_next_packet_when_the_previous_is_answered() -> None:
    channel = FakeChannel()
    rnd = Round("x", ("x", 0), 1, ProbeOptions(count=50, interval_s=0, timeout_s=1))
    rnd.start(channel)
    await rnd.done
    assert channel.sent == list(range(50))
    assert all(s.outcome is Outcome.OK for s in rnd.samples())


async def test_a_failed_send_is_error_and_not_in_flight() -> None:
    class Failing(FakeChannel):
        def send(self, rnd: Round, index: int) -> int | None:
            return None if index == 1 else super().send(rnd, index)

    rnd = Round("x", ("x", 0), 1, ProbeOptions(count=3, interval_s=0, timeout_s=1))
    rnd.start(Failing())
    await rnd.done
    assert [s.outcome for s in rnd.samples()] == [Outcome.OK, Outcome.ERROR, Outcome.OK]


async def test_pacer_keeps_at_most_one_timer_armed() -> None:
    loop = asyncio.get_running_loop()
    armed: list[asyncio.TimerHandle] = []
    real_call_at = loop.call_at

    def call_at(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = real_call_at(when, callback, *args)
        armed.append(handle)
        return handle

    pacer = Pacer(loop)
    pacer.loop = type("L", (), {"call_at": staticmethod(call_at), "time": loop.time})()
    channel = FakeChannel()
    opts = ProbeOptions(count=20, interval_s=0.001, timeout_s=1)
    rounds = [Round("x", ("x", 0), 1, opts, pacer=pacer) for _ in range(30)]
    for rnd in rounds:
        rnd.start(channel)
    peak = 0
    while not all(r.done.done() for r in rounds):
        live = [h for h in armed if not h.cancelled() and h.when() >= loop.time()]
        peak = max(peak, len(live))
        await asyncio.sleep(0.0005)
    assert len(channel.sent) == 600
    assert peak <= 1, peak  # orphaned timers would multiply the send bursts
