"""The batch channel's receive path (probes._icmp_batch) against the per-round Matcher: the
same datagrams, hostile or not, give the same outcomes and the same foreign counts. No
sockets: the channel gets a fake socket and loop, datagrams are written into its receive
buffers as recvmmsg would."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from probes import _icmp_wire as wire
from probes._icmp_batch import OK, PENDING, TIMEOUT, UNREACHABLE, Batch, BatchChannel
from probes._icmp_match import Matcher
from probes.base import Outcome, ProbeOptions, Target
from tests.unit.probes.test_icmp_match import IDENT, NONCE, V4, FakeRound, ip4, reply4

TARGET = "127.0.0.2"
FIRST_SEQ = 10  # packets 10, 11, 12 of one round: 11 times out, 12 is answered at once


class FakeSocket:
    family = socket.AF_INET

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("0.0.0.0", IDENT)

    def close(self) -> None:
        pass


class FakeLoop:
    def __init__(self, real: asyncio.AbstractEventLoop) -> None:
        self.real = real

    def add_reader(self, fd: int, callback: object) -> None:
        pass

    def remove_reader(self, fd: int) -> bool:
        return True

    def create_future(self) -> asyncio.Future[None]:
        return self.real.create_future()

    def time(self) -> float:
        return 0.0


def feed(channel: BatchChannel, data: bytes, source: str) -> None:
    """One datagram from `source`, as recvmmsg leaves it in the channel's buffers."""
    rx = channel._rx
    rx.data[0, : len(data)] = np.frombuffer(data, np.uint8)
    rx.hdr["len"][0] = len(data)
    rx.names[0, 4:8] = np.frombuffer(socket.inet_aton(source), np.uint8)
    rx.control[0] = 0  # no kernel timestamp: the channel takes the time now
    channel._on_datagrams(1)


@contextmanager
def both() -> Iterator[tuple[Matcher, FakeRound, BatchChannel, Batch]]:
    """A Matcher and a BatchChannel in the same state: one round of three packets to TARGET,
    the second timed out, the third answered."""
    real = asyncio.new_event_loop()
    try:
        rnd = FakeRound(address=TARGET)
        m = Matcher(V4, IDENT, ip_header=True, first_seq=FIRST_SEQ)
        for i in range(3):
            m.add(m.allocate(), rnd, i)
        assert m.expire(FIRST_SEQ + 1, rnd)
        channel = BatchChannel(FakeSocket(), True, FakeLoop(real), False)  # type: ignore[arg-type]
        channel.ident, channel._next_seq = IDENT, FIRST_SEQ
        batch = Batch(channel, [Target(TARGET)], ProbeOptions(count=3), NONCE)
        assert batch.seqs.tolist() == [FIRST_SEQ, FIRST_SEQ + 1, FIRST_SEQ + 2]
        channel.status[FIRST_SEQ + 1] = TIMEOUT
        answered = ip4(reply4(IDENT, FIRST_SEQ + 2), src=TARGET)
        m.on_datagram(answered, TARGET, 1)
        feed(channel, answered, TARGET)
        yield m, rnd, channel, batch
    finally:
        real.close()


def outcomes(channel: BatchChannel) -> list[Outcome | None]:
    names = {OK: Outcome.OK, UNREACHABLE: Outcome.UNREACHABLE, PENDING: None}
    return [names.get(int(s), Outcome.TIMEOUT) for s in channel.status[FIRST_SEQ : FIRST_SEQ + 3]]


def resolved(m: Matcher, rnd: FakeRound) -> list[Outcome | None]:
    got: list[Outcome | None] = [None, Outcome.TIMEOUT, None]
    for index, outcome, _at in rnd.resolved:
        got[index] = outcome
    return got


def assert_same(m: Matcher, rnd: FakeRound, channel: BatchChannel, batch: Batch) -> None:
    assert outcomes(channel) == resolved(m, rnd)
    assert channel.foreign == m.foreign
    assert batch.foreign.get(0, Counter()) == rnd.foreign


def error4(seq: int, quoted_dst: str, nonce: int = NONCE) -> bytes:
    """Destination unreachable quoting our echo request `seq` sent to `quoted_dst`."""
    request = wire.echo_request(V4, IDENT, seq, wire.payload(nonce, 56))
    return struct.pack("!BBHI", 3, 1, 0, 0) + ip4(request, src="127.0.0.1", dst=quoted_dst)


def test_a_clean_reply_and_the_hostile_ones_match_the_matcher() -> None:
    with both() as (m, rnd, channel, batch):
        corrupt = bytearray(ip4(reply4(IDENT, FIRST_SEQ), src=TARGET))
        corrupt[-1] ^= 0xFF
        datagrams = [
            (bytes(corrupt), TARGET),
            (ip4(reply4(IDENT, FIRST_SEQ, nonce=NONCE + 1), src=TARGET), TARGET),
            (ip4(reply4(IDENT + 1, FIRST_SEQ), src=TARGET), TARGET),
            (ip4(reply4(IDENT, 99), src=TARGET), TARGET),
            (ip4(reply4(IDENT, FIRST_SEQ), src="127.0.0.9"), "127.0.0.9"),
            (ip4(reply4(IDENT, FIRST_SEQ + 1), src=TARGET), TARGET),  # late
            (ip4(reply4(IDENT, FIRST_SEQ + 2), src=TARGET), TARGET),  # duplicate
            (ip4(reply4(IDENT, FIRST_SEQ), src=TARGET), TARGET),  # the answer
        ]
        for data, source in datagrams:
            m.on_datagram(data, source, 5)
            feed(channel, data, source)
            assert_same(m, rnd, channel, batch)
        assert outcomes(channel) == [Outcome.OK, Outcome.TIMEOUT, Outcome.OK]
        assert channel.foreign == {"corrupt": 1, "wrong_nonce": 1, "wrong_id": 1,
                                   "wrong_seq": 1, "wrong_source": 1, "late": 1,
                                   "duplicate": 1}  # fmt: skip


def test_an_error_quoting_our_request_makes_it_unreachable_in_both() -> None:
    with both() as (m, rnd, channel, batch):
        for data in (error4(FIRST_SEQ, "127.0.0.9"), error4(FIRST_SEQ, TARGET)):
            m.on_datagram(ip4(data, src="127.0.0.3"), "127.0.0.3", 5)
            feed(channel, ip4(data, src="127.0.0.3"), "127.0.0.3")
            assert_same(m, rnd, channel, batch)
        assert outcomes(channel)[0] is Outcome.UNREACHABLE
        assert channel.foreign == {"wrong_source": 1}


def test_ping_socket_errors_classified_alike() -> None:
    with both() as (m, rnd, channel, batch):
        for seq, nonce in [(FIRST_SEQ, NONCE + 1), (FIRST_SEQ + 2, NONCE), (77, NONCE),
                           (FIRST_SEQ, NONCE)]:  # fmt: skip
            request = wire.echo_request(V4, IDENT, seq, wire.payload(nonce, 56))
            m.on_quoted(request, 5)
            channel._slow_quoted(request, 5)
            assert_same(m, rnd, channel, batch)
        assert outcomes(channel)[0] is Outcome.UNREACHABLE
        assert channel.foreign == {"stray_error": 3}


seqs = st.sampled_from([FIRST_SEQ, FIRST_SEQ + 1, FIRST_SEQ + 2, 99])
sources = st.sampled_from([TARGET, "127.0.0.9"])
replies = st.builds(
    lambda ident, seq, nonce, size, src: (ip4(reply4(ident, seq, nonce, size), src=src), src),
    st.sampled_from([IDENT, IDENT + 1]), seqs, st.sampled_from([NONCE, NONCE + 1]),
    st.integers(8, 120), sources,
)  # fmt: skip
errors = st.builds(
    lambda seq, dst, nonce: (ip4(error4(seq, dst, nonce), src="127.0.0.3"), "127.0.0.3"),
    seqs, sources, st.sampled_from([NONCE, NONCE + 1]),
)  # fmt: skip
noise = st.tuples(st.binary(max_size=100).map(ip4), sources)
flips = st.lists(st.tuples(st.integers(0, 160), st.integers(0, 255)), max_size=3)


def damaged(
    datagram: tuple[bytes, str], damage: list[tuple[int, int]], cut: int
) -> tuple[bytes, str]:
    data = bytearray(datagram[0][: max(0, len(datagram[0]) - cut)])
    for i, byte in damage:
        if i < len(data):
            data[i] = byte
    return bytes(data), datagram[1]


@given(st.lists(st.tuples(st.one_of(replies, errors, noise), flips, st.integers(0, 40)),
                max_size=6))  # fmt: skip
def test_batch_path_never_raises_and_agrees_with_the_matcher(
    sent: list[tuple[tuple[bytes, str], list[tuple[int, int]], int]],
) -> None:
    """Replies, errors and noise, damaged anywhere and cut short: the batch channel neither
    raises nor resolves what the Matcher would not, and counts every foreign kind alike."""
    with both() as (m, rnd, channel, batch):
        for datagram, damage, cut in sent:
            data, source = damaged(datagram, damage, cut)
            m.on_datagram(data, source, 5)
            feed(channel, data, source)
            assert_same(m, rnd, channel, batch)
