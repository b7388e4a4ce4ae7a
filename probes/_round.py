"""One round in flight: its send schedule, its timeouts, its samples (probe → **round**).

Shared by the ICMP and the UDP probers (icmp, udp_echo, stamp, voice): a *channel* sends packet
`index` and later calls `resolve`; the round decides when to send and when a packet times out.

Everything runs as loop callbacks, not as a task per packet: packets leave on a fixed schedule
(`interval_s > 0`, several in flight) or, in flood mode (`interval_s == 0`), the next one leaves
from the reply callback of the previous one. Timeouts are one deque per round (deadlines are
monotonic within a round) swept by a single timer, not a timer per packet.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol

from probes.base import Outcome, ProbeOptions, Sample


class Channel(Protocol):
    """What a round needs of its socket side."""

    def send(self, rnd: Round, index: int) -> int | None: ...

    def expire(self, seq: int, rnd: Round) -> bool: ...


class Pacer:
    """One loop timer for the send schedules of many rounds (a C-level heap of due times
    instead of a loop TimerHandle per packet per round)."""

    MAX_PER_FIRE = 256

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._order = 0
        self._firing = False

    def at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, self._order, callback))
        self._order += 1
        if self._firing:
            return  # `_fire` arms the timer once when it is done
        if self._handle is None or when < self._handle.when():
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """Run what is due, at most `MAX_PER_FIRE` callbacks, then give the loop back (so the
        socket reader drains replies between bursts of sends)."""
        self._handle, self._firing = None, True
        heap, now = self._heap, self.loop.time()
        try:
            for _ in range(self.MAX_PER_FIRE):
                if not heap or heap[0][0] > now:
                    break
                heapq.heappop(heap)[2]()
        finally:
            self._firing = False
            if heap:
                self._handle = self.loop.call_at(heap[0][0], self._fire)


class Round:
    """The packets of one round to one address: what was sent, what came back, what did not
    belong. `done` completes when every packet has an outcome."""

    __slots__ = (
        "_channel",
        "_deadlines",
        "_loop",
        "_next",
        "_pacer",
        "_sweep",
        "_t0",
        "_tick_cb",
        "_unresolved",
        "address",
        "body",
        "body_sum",
        "count",
        "done",
        "finished",
        "foreign",
        "interval_s",
        "nonce",
        "one_way_ns",
        "outcomes",
        "received_ns",
        "sent_ns",
        "seqs",
        "sockaddr",
        "timeout_s",
    )  # one per round, a thousand a second: no instance dict

    def __init__(
        self,
        address: str,
        sockaddr: tuple[object, ...],
        nonce: int,
        opts: ProbeOptions,
        body: bytes = b"",
        body_sum: int = 0,
        pacer: Pacer | None = None,
    ) -> None:
        self.address, self.sockaddr, self.nonce = address, sockaddr, nonce
        self.body, self.body_sum = body, body_sum  # the payload, for channels that reuse it
        self.count, self.interval_s, self.timeout_s = opts.count, opts.interval_s, opts.timeout_s
        self.sent_ns: list[int | None] = [None] * self.count
        self.received_ns: list[int | None] = [None] * self.count
        self.outcomes: list[Outcome | None] = [None] * self.count
        self.one_way_ns: dict[int, tuple[int | None, int | None]] = {}  # index → (fwd, back)
        self.foreign: Counter[str] = Counter()
        self.seqs: list[int] = []  # the channel's sequence numbers of the packets sent
        self.finished = False
        self._next = 0
        self._unresolved = 0
        self._deadlines: deque[tuple[float, int, int]] = deque()  # (deadline, seq, index)
        self._sweep: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._pacer = pacer if pacer is not None else Pacer(self._loop)
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._channel: Channel | None = None

    def start(self, channel: Channel) -> None:
        self._channel = channel
        self._t0 = self._loop.time()
        self._tick_cb = self._tick  # one bound method for the round, not one per packet
        if self.count == 0:
            self.done.set_result(None)
        elif self.interval_s > 0:
            self._tick()
        else:
            self._pump()

    def resolve(self, index: int, outcome: Outcome, received_ns: int | None) -> None:
        """A reply (or an ICMP error) for packet `index`; called by the channel."""
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        self.received_ns[index] = received_ns
        self._unresolved -= 1
        if self.interval_s <= 0:
            self._pump()
        if self._unresolved == 0 and self._next >= self.count and not self.done.done():
            self.done.set_result(None)

    def samples(self) -> tuple[Sample, ...]:
        out = []
        one_way, received, outcomes = self.one_way_ns, self.received_ns, self.outcomes
        for i, sent in enumerate(self.sent_ns):
            outcome = outcomes[i]
            if sent is None or outcome is Outcome.ERROR:
                out.append(Sample(i, sent or 0, None, Outcome.ERROR))
            elif one_way and i in one_way:
                fwd, back = one_way[i]
                out.append(Sample(i, sent, received[i], outcome or Outcome.TIMEOUT, fwd, back))
            else:
                out.append(Sample(i, sent, received[i], outcome or Outcome.TIMEOUT))
        return tuple(out)

    def finish(self) -> None:
        """Stop: cancel timers and forget packets still pending (also on cancellation)."""
        self.finished = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._channel is not None:
            for _deadline, seq, index in self._deadlines:
                if self.outcomes[index] is None:
                    self._channel.expire(seq, self)

    def _tick(self) -> None:
        """Send the next packet and book the one after on the fixed schedule (when the loop
        was late, the following ticks are due at once and catch up, one per pacer turn)."""
        if self.finished:
            return
        self._send_one()
        if self._next < self.count:
            self._pacer.at(self._t0 + self._next * self.interval_s, self._tick_cb)

    def _pump(self) -> None:
        while self._next < self.count and self._unresolved == 0 and not self.finished:
            self._send_one()

    def _send_one(self) -> None:
        assert self._channel is not None
        index = self._next
        self._next += 1
        seq = self._channel.send(self, index)
        if seq is None:
            self.outcomes[index] = Outcome.ERROR
            self._check_done()
            return
        self._unresolved += 1
        self.seqs.append(seq)
        deadline = self._loop.time() + self.timeout_s
        self._deadlines.append((deadline, seq, index))
        if self._sweep is None:
            self._sweep = self._loop.call_at(deadline, self._expire_due)

    def _expire_due(self) -> None:
        assert self._channel is not None
        self._sweep = None
        now, queue = self._loop.time(), self._deadlines
        while queue and (queue[0][0] <= now or self.outcomes[queue[0][2]] is not None):
            _deadline, seq, index = queue.popleft()
            if self.outcomes[index] is None and self._channel.expire(seq, self):
                self.outcomes[index] = Outcome.TIMEOUT
                self._unresolved -= 1
        if queue:
            self._sweep = self._loop.call_at(queue[0][0], self._expire_due)
        self._after_resolution()

    def _after_resolution(self) -> None:
        if self.interval_s <= 0:
            self._pump()
        self._check_done()

    def _check_done(self) -> None:
        if self._next >= self.count and self._unresolved == 0 and not self.done.done():
            self.done.set_result(None)
