"""One ICMP socket shared by every round in flight (probe → **socket** → sample).

The channel owns a raw or datagram ICMP socket, sends echo requests with a send time taken on
CLOCK_REALTIME right before `sendto`, and reads replies in a loop reader with their kernel
receive timestamps (SO_TIMESTAMPNS, also CLOCK_REALTIME), so an RTT is kernel-rx minus send on
one clock. Replies are matched to a pending packet by identifier, sequence and the round's
nonce; anything else is counted by kind, on the round it belongs to when it can be attributed
and always in `foreign` (the channel's lifetime totals).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from probes import _icmp_wire as wire
from probes.base import Outcome

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_RECV_BATCH = 64  # datagrams drained per wake-up before yielding to the loop
SocketFactory = Callable[[int, int, int], socket.socket]


class Round:
    """The packets of one round: what was sent, what came back, what did not belong."""

    def __init__(self, address: str, nonce: int, count: int) -> None:
        self.address = address
        self.nonce = nonce
        self.sent_ns: list[int | None] = [None] * count
        self.received_ns: list[int | None] = [None] * count
        self.outcomes: list[Outcome | None] = [None] * count
        self.foreign: Counter[str] = Counter()
        self.unresolved = 0
        self.finished = False
        self._waiter: asyncio.Future[None] | None = None

    def resolve(self, index: int, outcome: Outcome, received_ns: int | None) -> None:
        self.outcomes[index] = outcome
        self.received_ns[index] = received_ns
        self.unresolved -= 1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def changed(self) -> None:
        """Wait until some packet of this round resolves."""
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter


@dataclass(slots=True)
class _Pending:
    round: Round
    index: int
    timer: asyncio.TimerHandle | None


class Channel:
    """One ICMP socket; `send` a packet of a round, replies resolve it via the loop reader."""

    def __init__(self, sock: socket.socket, raw: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.family = sock.family
        self.raw = raw
        self.loop = loop
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if raw:
            self.ident = int.from_bytes(os.urandom(2), "big")
        else:  # the kernel rewrites the identifier of a ping socket to its (bound) local port
            self.ident = sock.getsockname()[1]
        self._ip_header = raw and self.family == socket.AF_INET
        self._verify = self._ip_header  # kernel verifies ICMPv6 and ping-socket checksums
        self.pending: dict[int, _Pending] = {}
        self.recent: dict[int, tuple[Round, Outcome]] = {}  # resolved seq → (round, outcome)
        self.foreign: Counter[str] = Counter()
        self._next_seq = int.from_bytes(os.urandom(2), "big")
        loop.add_reader(sock.fileno(), self._on_readable)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        for p in self.pending.values():
            if p.timer is not None:
                p.timer.cancel()
        self.pending.clear()
        self.sock.close()

    def send(
        self, rnd: Round, index: int, body: bytes, sockaddr: tuple[object, ...], timeout_s: float
    ) -> None:
        """Send packet `index` of `rnd`; a failed send resolves it as ERROR at once."""
        seq = self._allocate_seq()
        packet = wire.echo_request(self.family, self.ident, seq, body)
        rnd.unresolved += 1
        sent_ns = time.time_ns()
        try:
            self.sock.sendto(packet, sockaddr)
        except OSError:
            rnd.sent_ns[index] = sent_ns
            rnd.resolve(index, Outcome.ERROR, None)
            return
        rnd.sent_ns[index] = sent_ns
        timer = self.loop.call_later(timeout_s, self._expire, seq)
        self.pending[seq] = _Pending(rnd, index, timer)

    def _allocate_seq(self) -> int:
        for _ in range(0x10000):
            seq = self._next_seq
            self._next_seq = (seq + 1) & 0xFFFF
            if seq not in self.pending:
                self.recent.pop(seq, None)
                return seq
        raise RuntimeError("65536 ICMP echo requests in flight on one socket")

    def _expire(self, seq: int) -> None:
        p = self.pending.pop(seq, None)
        if p is not None:
            self.recent[seq] = (p.round, Outcome.TIMEOUT)
            p.round.resolve(p.index, Outcome.TIMEOUT, None)

    def _on_readable(self) -> None:
        for _ in range(_RECV_BATCH):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on a ping socket; the next read goes on
                continue
            received_ns = _kernel_time_ns(ancdata)
            self._handle(data, addr[0], received_ns)

    def _handle(self, data: bytes, source: str, received_ns: int) -> None:
        parsed = wire.parse(data, self.family, self._ip_header, self._verify)
        if parsed.kind == "ignore":
            return
        if parsed.ident is None or parsed.seq is None:
            self._count(parsed.kind, None)
            return
        if parsed.ident != self.ident:
            self._count("wrong_id", None)
            return
        if parsed.kind in ("reply", "error"):
            self._match(parsed, source, received_ns)
        else:
            self._count(parsed.kind, self._owner(parsed.seq))

    def _match(self, parsed: wire.Parsed, source: str, received_ns: int) -> None:
        seq = parsed.seq
        assert seq is not None
        p = self.pending.get(seq)
        if p is None:
            self._match_resolved(parsed, seq)
            return
        rnd = p.round
        if parsed.nonce is not None and parsed.nonce != rnd.nonce:
            self._count("wrong_nonce", rnd)
            return
        if parsed.kind == "reply":
            if parsed.nonce is None or source != rnd.address:
                self._count("wrong_source" if parsed.nonce is not None else "truncated", rnd)
                return
            outcome = Outcome.OK
        elif parsed.quoted_dst != rnd.address:
            self._count("wrong_source", rnd)
            return
        else:
            outcome = Outcome.UNREACHABLE
        del self.pending[seq]
        if p.timer is not None:
            p.timer.cancel()
        self.recent[seq] = (rnd, outcome)
        rnd.resolve(p.index, outcome, received_ns)

    def _match_resolved(self, parsed: wire.Parsed, seq: int) -> None:
        seen = self.recent.get(seq)
        if seen is None:
            self._count("wrong_seq", None)
            return
        rnd, outcome = seen
        if parsed.nonce is not None and parsed.nonce != rnd.nonce:
            self._count("wrong_nonce", rnd)
        elif outcome is Outcome.TIMEOUT:
            self._count("late", rnd)
        else:
            self._count("duplicate", rnd)

    def _owner(self, seq: int) -> Round | None:
        p = self.pending.get(seq)
        if p is not None:
            return p.round
        seen = self.recent.get(seq)
        return seen[0] if seen is not None else None

    def _count(self, kind: str, rnd: Round | None) -> None:
        self.foreign[kind] += 1
        if rnd is not None and not rnd.finished:
            rnd.foreign[kind] += 1


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return int(sec) * 1_000_000_000 + int(nsec)
    return time.time_ns()  # no kernel timestamp (should not happen): same clock, user space
