"""ICMP/ICMPv6 echo bytes: build requests and parse whatever comes back (probe → **wire**).

Pure functions, no sockets. The parser never raises on hostile input: anything it cannot read
is reported as a `Parsed` whose `kind` says why (e.g. ``"truncated"``), so the caller can count
it. Checksums are summed over native-order 16-bit words, so they are packed native-order
(``'=H'``); summing native words and packing big-endian makes the kernel drop the request.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

ECHO_REQUEST_V4, ECHO_REPLY_V4 = 8, 0
ECHO_REQUEST_V6, ECHO_REPLY_V6 = 128, 129
ERROR_TYPES_V4 = frozenset({3, 11})  # destination unreachable, time exceeded
ERROR_TYPES_V6 = frozenset({1, 3})  # destination unreachable, time exceeded
NONCE_BYTES = 8
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_NONCE = struct.Struct("!Q")


def internet_sum(data: bytes | bytearray | memoryview) -> int:
    """Ones-complement sum of `data` as native-order 16-bit words, folded to 16 bits."""
    view = memoryview(data)
    if len(view) % 2:
        view = memoryview(bytes(view) + b"\0")
    total = sum(view.cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def payload(nonce: int, size: int) -> bytes:
    """The echo payload: the round's nonce, then a fixed pattern up to `size` bytes."""
    return _NONCE.pack(nonce) + _pattern(size)[0]


def payload_and_sum(nonce: int, size: int) -> tuple[bytes, int]:
    """`payload(nonce, size)` and its `body_sum`, once per round: the nonce's four words plus
    the fixed pattern's (cached) word sum — the nonce is 8 bytes, so the pattern's words keep
    their alignment — folded as `body_sum` folds."""
    pattern, pattern_total = _pattern(size)
    total = (
        (nonce >> 48) + ((nonce >> 32) & 0xFFFF) + ((nonce >> 16) & 0xFFFF) + (nonce & 0xFFFF)
        + pattern_total
    )  # fmt: skip
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return _NONCE.pack(nonce) + pattern, total


def _pattern(size: int) -> tuple[bytes, int]:
    """The fixed pattern after the nonce and its unfolded big-endian word sum, by size."""
    pad = max(size, NONCE_BYTES) - NONCE_BYTES
    cached = _PATTERNS.get(pad)
    if cached is None:
        pattern = bytes(i & 0xFF for i in range(pad))
        padded = pattern + b"\0" if pad % 2 else pattern
        cached = (pattern, sum(struct.unpack(f"!{len(padded) // 2}H", padded)))
        if len(_PATTERNS) < 64:  # a handful of sizes in practice: keep them
            _PATTERNS[pad] = cached
    return cached


_PATTERNS: dict[int, tuple[bytes, int]] = {}  # pad length → (pattern, word sum), once per size


def echo_request(family: int, ident: int, seq: int, body: bytes) -> bytes:
    """One echo request. For IPv6 the kernel fills the checksum (it needs the pseudo-header)."""
    if family == socket.AF_INET6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + body
    header = bytearray(_HEADER.pack(ECHO_REQUEST_V4, 0, 0, ident, seq))
    struct.pack_into("=H", header, 2, ~internet_sum(bytes(header) + body) & 0xFFFF)
    return bytes(header) + body


def body_sum(body: bytes) -> int:
    """Ones-complement sum of the payload as big-endian words (once per round, fast path)."""
    padded = body + b"\0" if len(body) % 2 else body
    total: int = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def echo_request_fast(family: int, ident: int, seq: int, body: bytes, sum_be: int) -> bytes:
    """`echo_request` with the payload's big-endian sum precomputed: RFC 1071 in network order,
    packed network order (the same bytes as the native-order route)."""
    if family == socket.AF_INET6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + body
    total = (ECHO_REQUEST_V4 << 8) + ident + seq + sum_be
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return _HEADER.pack(ECHO_REQUEST_V4, 0, ~total & 0xFFFF, ident, seq) + body


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one received datagram says.

    `kind` is ``"reply"`` (an echo reply), ``"error"`` (unreachable/time exceeded quoting one of
    our requests), ``"ignore"`` (other ICMP types, e.g. our own requests seen on loopback), or
    a foreign kind: ``"truncated"``, ``"corrupt"``. `ident`/`seq` are set whenever the bytes
    reached them, so a foreign reply can still be attributed to the round that sent it.
    """

    kind: str
    ident: int | None = None
    seq: int | None = None
    nonce: int | None = None
    quoted_dst: str | None = None  # for errors: the destination of the quoted request


def _strip_ipv4(data: bytes) -> bytes | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    return data[ihl:] if 20 <= ihl <= len(data) else None


def _nonce(body: bytes) -> int | None:
    return _NONCE.unpack_from(body)[0] if len(body) >= NONCE_BYTES else None


def parse(data: bytes, family: int, ip_header: bool, verify_checksum: bool) -> Parsed:
    """Classify one datagram read from an ICMP socket (raw IPv4 sockets include the IP header)."""
    icmp = _strip_ipv4(data) if ip_header else data
    if icmp is None or len(icmp) < _HEADER.size:
        return Parsed("truncated")
    kind_type, _code, _cksum, ident, seq = _HEADER.unpack_from(icmp)
    v6 = family == socket.AF_INET6
    if kind_type == (ECHO_REPLY_V6 if v6 else ECHO_REPLY_V4):
        body = icmp[_HEADER.size :]
        if len(body) < NONCE_BYTES:
            return Parsed("truncated", ident, seq)
        if verify_checksum and internet_sum(icmp) != 0xFFFF:
            return Parsed("corrupt", ident, seq)
        return Parsed("reply", ident, seq, _nonce(body))
    if kind_type in (ERROR_TYPES_V6 if v6 else ERROR_TYPES_V4):
        return _parse_error(icmp[_HEADER.size :], v6)
    return Parsed("ignore")


def _parse_error(quoted: bytes, v6: bool) -> Parsed:
    """An ICMP error quotes the offending IP header and at least 8 bytes of our request."""
    if v6:
        if len(quoted) < 40 + _HEADER.size:
            return Parsed("truncated")
        dst = str(ipaddress.IPv6Address(quoted[24:40]))
        inner, want = quoted[40:], ECHO_REQUEST_V6
    else:
        inner_or_none = _strip_ipv4(quoted)
        if inner_or_none is None or len(inner_or_none) < _HEADER.size:
            return Parsed("truncated")
        dst = socket.inet_ntoa(quoted[16:20])
        inner, want = inner_or_none, ECHO_REQUEST_V4
    kind_type, _code, _cksum, ident, seq = _HEADER.unpack_from(inner)
    if kind_type != want:
        return Parsed("ignore")
    return Parsed("error", ident, seq, _nonce(inner[_HEADER.size :]), dst)


def parse_request(data: bytes, family: int) -> Parsed:
    """One of our echo requests as quoted back by the kernel (a ping socket's error queue)."""
    if len(data) < _HEADER.size:
        return Parsed("truncated")
    kind_type, _code, _cksum, ident, seq = _HEADER.unpack_from(data)
    if kind_type != (ECHO_REQUEST_V6 if family == socket.AF_INET6 else ECHO_REQUEST_V4):
        return Parsed("ignore")
    return Parsed("error", ident, seq, _nonce(data[_HEADER.size :]))


def looped_request(data: bytes, family: int) -> tuple[int, int] | None:
    """(identifier, sequence) of our echo request as looped back with a TX timestamp.

    The error queue returns the packet with every header, link layer included: try the usual
    link header lengths (Ethernet 14, none 0, Linux cooked 16) and keep the one whose IP length
    field accounts for exactly the rest of the bytes. (Once per packet sent: byte arithmetic,
    no slices.)
    """
    n = len(data)
    v6 = family == socket.AF_INET6
    for off in (14, 0, 16):
        if v6:
            if n < off + 48 or data[off] >> 4 != 6 or data[off + 6] != 58:
                continue
            if (data[off + 4] << 8 | data[off + 5]) != n - off - 40:
                continue
            icmp, want = off + 40, ECHO_REQUEST_V6
        else:
            if n < off + 28 or data[off] >> 4 != 4:
                continue
            if (data[off + 2] << 8 | data[off + 3]) != n - off:
                continue
            icmp, want = off + (data[off] & 0x0F) * 4, ECHO_REQUEST_V4
        if n >= icmp + _HEADER.size and data[icmp] == want:
            ident, seq = _ID_SEQ.unpack_from(data, icmp + 4)
            return ident, seq
    return None


_ID_SEQ = struct.Struct("!HH")


def bpf_program(family: int, ident: int) -> list[tuple[int, int, int, int]]:
    """A classic BPF filter for a raw ICMP socket: our echo replies (by identifier) and ICMP
    errors pass; everything else — other programs' pings — is dropped in the kernel, as a ping
    socket would (so on raw sockets `wrong_id` is only seen without the filter).
    Instructions are (code, jt, jf, k); raw IPv4 sockets see the IP header, IPv6 ones do not."""
    if family == socket.AF_INET6:
        return [
            (0x30, 0, 0, 0),  # ldb [0]            ICMPv6 type
            (0x15, 0, 2, ECHO_REPLY_V6),  # jeq reply → 2, else → 4
            (0x28, 0, 0, 4),  # ldh [4]            identifier
            (0x15, 2, 3, ident),  # jeq ident → accept, else → drop
            (0x15, 1, 0, 1),  # destination unreachable → accept
            (0x15, 0, 1, 3),  # time exceeded → accept, else → drop
            (0x06, 0, 0, 0xFFFF),  # accept
            (0x06, 0, 0, 0),  # drop
        ]
    return [
        (0xB1, 0, 0, 0),  # ldx 4*([0]&0xf)    X = IP header length
        (0x50, 0, 0, 0),  # ldb [x+0]          ICMP type
        (0x15, 0, 2, ECHO_REPLY_V4),  # jeq reply → 3, else → 5
        (0x48, 0, 0, 4),  # ldh [x+4]          identifier
        (0x15, 2, 3, ident),  # jeq ident → accept, else → drop
        (0x15, 1, 0, 3),  # destination unreachable → accept
        (0x15, 0, 1, 11),  # time exceeded → accept, else → drop
        (0x06, 0, 0, 0xFFFF),  # accept
        (0x06, 0, 0, 0),  # drop
    ]
