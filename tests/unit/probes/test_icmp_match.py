"""ICMP wire format and reply matching, without sockets: every hostile reply is counted."""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from probes import _icmp_wire as wire
from probes._icmp_match import Matcher
from probes.base import Outcome

V4 = socket.AF_INET
V6 = socket.AF_INET6
IDENT = 0x4242
NONCE = 0x1122334455667788


@dataclass
class FakeRound:
    address: str = "127.0.0.2"
    nonce: int = NONCE
    finished: bool = False
    foreign: Counter[str] = field(default_factory=Counter)
    resolved: list[tuple[int, Outcome, int | None]] = field(default_factory=list)

    def resolve(self, index: int, outcome: Outcome, received_ns: int | None) -> None:
        self.resolved.append((index, outcome, received_ns))


def ip4(payload: bytes, src: str = "127.0.0.2", dst: str = "127.0.0.1") -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return header + payload


def reply4(ident: int, seq: int, nonce: int = NONCE, size: int = 56) -> bytes:
    """An echo reply with a valid checksum."""
    req = wire.echo_request(V4, ident, seq, wire.payload(nonce, size))
    body = bytearray(req)
    body[0], body[2:4] = wire.ECHO_REPLY_V4, b"\0\0"
    struct.pack_into("=H", body, 2, ~wire.internet_sum(body) & 0xFFFF)
    return bytes(body)


def matcher_with(seq: int, rnd: FakeRound, family: int = V4) -> Matcher:
    m = Matcher(family, IDENT, ip_header=family == V4, first_seq=seq)
    assert m.allocate() == seq
    m.add(seq, rnd, 0)
    return m


def test_fast_request_equals_reference_and_kernel_checksum_holds() -> None:
    body = wire.payload(NONCE, 56)
    for ident, seq in [(0, 0), (IDENT, 7), (0xFFFF, 0xFFFF), (0x1234, 0xFEDC)]:
        ref = wire.echo_request(V4, ident, seq, body)
        assert wire.echo_request_fast(V4, ident, seq, body, wire.body_sum(body)) == ref
        assert wire.internet_sum(ref) == 0xFFFF  # what the kernel checks
    odd = wire.payload(NONCE, 57)
    assert wire.internet_sum(wire.echo_request(V4, 1, 2, odd)) == 0xFFFF


@given(st.integers(0, 2**64 - 1), st.integers(0, 300))
def test_payload_and_its_sum_equal_the_reference(nonce: int, size: int) -> None:
    body = wire.payload(nonce, size)
    assert wire.payload_and_sum(nonce, size) == (body, wire.body_sum(body))


def test_valid_reply_resolves_ok_with_the_kernel_time() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 123)
    assert rnd.resolved == [(0, Outcome.OK, 123)]
    assert not m.foreign and not m.pending


def test_hostile_replies_are_counted_by_kind_and_never_resolve() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    corrupt = bytearray(reply4(IDENT, 10))
    corrupt[-1] ^= 0xFF
    m.on_datagram(ip4(bytes(corrupt)), "127.0.0.2", 1)
    m.on_datagram(ip4(reply4(IDENT, 10)[:12]), "127.0.0.2", 1)  # cut inside the nonce
    m.on_datagram(ip4(reply4(IDENT, 10)[:5]), "127.0.0.2", 1)  # cut inside the header
    m.on_datagram(ip4(reply4(IDENT, 10, nonce=NONCE + 1)), "127.0.0.2", 1)
    m.on_datagram(ip4(reply4(IDENT + 1, 10)), "127.0.0.2", 1)
    m.on_datagram(ip4(reply4(IDENT, 11)), "127.0.0.2", 1)
    m.on_datagram(ip4(reply4(IDENT, 10), src="127.0.0.9"), "127.0.0.9", 1)
    m.on_datagram(b"", "127.0.0.2", 1)
    assert rnd.resolved == []
    assert m.foreign == {"corrupt": 1, "truncated": 3, "wrong_nonce": 1, "wrong_id": 1,
                         "wrong_seq": 1, "wrong_source": 1}  # fmt: skip
    # attributed to the round only where id + seq named it
    assert rnd.foreign == {"corrupt": 1, "truncated": 1, "wrong_nonce": 1, "wrong_source": 1}


def test_duplicate_and_late() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 5)
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 6)
    assert m.allocate() == 11
    m.add(11, rnd, 1)
    assert m.expire(11, rnd)
    m.on_datagram(ip4(reply4(IDENT, 11)), "127.0.0.2", 7)
    assert rnd.resolved == [(0, Outcome.OK, 5)]
    assert rnd.foreign == {"duplicate": 1, "late": 1}


def test_finished_round_is_not_charged() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 5)
    rnd.finished = True
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 6)
    assert m.foreign == {"duplicate": 1} and not rnd.foreign


def test_a_retired_round_is_forgotten_but_late_and_duplicate_still_counted() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 5)
    assert m.allocate() == 11
    m.add(11, rnd, 1)
    assert m.expire(11, rnd)
    rnd.finished = True
    m.retire(rnd, [10, 11])
    assert all(isinstance(entry, int) for entry in m.recent.values())  # not kept alive
    m.on_datagram(ip4(reply4(IDENT, 10)), "127.0.0.2", 6)
    m.on_datagram(ip4(reply4(IDENT, 11)), "127.0.0.2", 7)
    m.on_datagram(ip4(reply4(IDENT, 11, nonce=NONCE + 1)), "127.0.0.2", 8)
    assert m.foreign == {"duplicate": 1, "late": 1, "wrong_nonce": 1} and not rnd.foreign
    assert rnd.resolved == [(0, Outcome.OK, 5)]


def test_unreachable_quoting_our_request() -> None:
    rnd = FakeRound()
    m = matcher_with(10, rnd)
    quoted = ip4(wire.echo_request(V4, IDENT, 10, wire.payload(NONCE, 56)),
                 src="127.0.0.1", dst="127.0.0.2")  # fmt: skip
    error = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    m.on_datagram(ip4(error, src="127.0.0.3"), "127.0.0.3", 9)
    assert rnd.resolved == [(0, Outcome.UNREACHABLE, 9)]


def test_ping_socket_error_queue_quote() -> None:
    rnd = FakeRound()
    m = Matcher(V4, IDENT, ip_header=False, first_seq=3)
    m.add(m.allocate(), rnd, 0)
    m.on_quoted(wire.echo_request(V4, IDENT, 3, wire.payload(NONCE, 56)), 4)
    m.on_quoted(b"\x08", 4)
    assert rnd.resolved == [(0, Outcome.UNREACHABLE, 4)]
    assert m.foreign == {"stray_error": 1}


def test_ipv6_reply_without_ip_header() -> None:
    rnd = FakeRound(address="::1")
    m = matcher_with(5, rnd, V6)
    reply = bytearray(wire.echo_request(V6, IDENT, 5, wire.payload(NONCE, 56)))
    reply[0] = wire.ECHO_REPLY_V6
    m.on_datagram(bytes(reply), "::1", 3)
    assert rnd.resolved == [(0, Outcome.OK, 3)]


def test_sequence_allocation_skips_numbers_in_flight() -> None:
    m = Matcher(V4, IDENT, ip_header=True, first_seq=0xFFFF)
    m.add(m.allocate(), FakeRound(), 0)  # 0xFFFF
    m.add(0, FakeRound(), 1)
    assert m.allocate() == 1  # wrapped past 0xFFFF, skipped 0


def _looped_request_reference(data: bytes, family: int) -> tuple[int, int] | None:
    """The first implementation (slices and int.from_bytes), kept as the reference."""
    for off in (14, 0, 16):
        if family == V6:
            if len(data) < off + 48 or data[off] >> 4 != 6 or data[off + 6] != 58:
                continue
            if int.from_bytes(data[off + 4 : off + 6], "big") != len(data) - off - 40:
                continue
            icmp, want = off + 40, wire.ECHO_REQUEST_V6
        else:
            if len(data) < off + 28 or data[off] >> 4 != 4:
                continue
            if int.from_bytes(data[off + 2 : off + 4], "big") != len(data) - off:
                continue
            icmp, want = off + (data[off] & 0x0F) * 4, wire.ECHO_REQUEST_V4
        if len(data) >= icmp + wire._HEADER.size and data[icmp] == want:
            _t, _c, _ck, ident, seq = wire._HEADER.unpack_from(data, icmp)
            return ident, seq
    return None


def _ip6(payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), 58, 64) + bytes(32) + payload


@given(
    st.binary(max_size=120),
    st.sampled_from([V4, V6]),
    st.sampled_from([0, 14, 16]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3),
)
def test_looped_request_equals_the_reference(
    tail: bytes, family: int, off: int, flips: list[tuple[int, int]]
) -> None:
    req4 = wire.echo_request(V4, IDENT, 77, wire.payload(NONCE, 20))
    req6 = wire.echo_request(V6, IDENT, 78, wire.payload(NONCE, 20))
    for packet in (tail, ip4(req4), _ip6(req6)):
        data = bytearray(bytes(off) + packet)
        for i, byte in flips:  # damage a few bytes: every branch of the parser
            if i < len(data):
                data[i] = byte
        for d in (bytes(data), bytes(off) + packet):
            assert wire.looped_request(d, family) == _looped_request_reference(d, family)


def test_looped_request_finds_id_and_seq_behind_link_headers() -> None:
    req = wire.echo_request(V4, IDENT, 77, wire.payload(NONCE, 56))
    assert wire.looped_request(b"\0" * 14 + ip4(req), V4) == (IDENT, 77)
    assert wire.looped_request(ip4(req), V4) == (IDENT, 77)
    assert wire.looped_request(b"\0" * 14, V4) is None


@given(st.binary(max_size=200), st.sampled_from([V4, V6]), st.booleans(), st.booleans())
def test_parse_never_raises(data: bytes, family: int, ip_header: bool, verify: bool) -> None:
    parsed = wire.parse(data, family, ip_header, verify)
    assert parsed.kind in {"reply", "error", "ignore", "truncated", "corrupt"}
    wire.parse_request(data, family)
    wire.looped_request(data, family)


@given(st.binary(min_size=0, max_size=120), st.integers(0, 0xFFFF))
def test_matcher_never_raises_and_never_resolves_garbage(tail: bytes, seq: int) -> None:
    rnd = FakeRound()
    m = matcher_with(seq, rnd)
    # a reply-shaped packet for our id+seq with arbitrary payload: OK only with our nonce
    packet = struct.pack("!BBHHH", 0, 0, 0, IDENT, seq) + tail
    m.on_datagram(ip4(packet), "127.0.0.2", 1)
    m.on_datagram(tail, "127.0.0.2", 1)
    m.on_quoted(tail, 1)
    assert all(outcome is not Outcome.OK for _i, outcome, _t in rnd.resolved)


def _run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A tiny classic-BPF interpreter for the instructions the ICMP filter uses."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0xB1:
            x = 4 * (packet[k] & 0x0F)
        elif code in (0x30, 0x50):
            off = k + (x if code == 0x50 else 0)
            if off >= len(packet):
                return 0
            a = packet[off]
        elif code in (0x28, 0x48):
            off = k + (x if code == 0x48 else 0)
            if off + 2 > len(packet):
                return 0
            a = int.from_bytes(packet[off : off + 2], "big")
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF code {code:#x}")


def test_kernel_filter_keeps_our_replies_and_errors_only() -> None:
    v4 = wire.bpf_program(V4, IDENT)
    assert _run_bpf(v4, ip4(reply4(IDENT, 1))) > 0
    assert _run_bpf(v4, ip4(reply4(IDENT + 1, 1))) == 0  # another program's ping
    assert _run_bpf(v4, ip4(wire.echo_request(V4, IDENT, 1, b"x" * 8))) == 0  # a request
    error = struct.pack("!BBHI", 3, 1, 0, 0) + ip4(wire.echo_request(V4, IDENT, 1, b"x" * 8))
    assert _run_bpf(v4, ip4(error)) > 0
    v6 = wire.bpf_program(V6, IDENT)
    reply = bytearray(wire.echo_request(V6, IDENT, 5, wire.payload(NONCE, 8)))
    reply[0] = wire.ECHO_REPLY_V6
    assert _run_bpf(v6, bytes(reply)) > 0
    reply[4:6] = (IDENT + 1).to_bytes(2, "big")
    assert _run_bpf(v6, bytes(reply)) == 0
    assert _run_bpf(v6, bytes([1, 0, 0, 0])) > 0  # destination unreachable
