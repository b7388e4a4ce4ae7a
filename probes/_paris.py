"""Flow-stable (Paris traceroute) probe headers: probe → **wire**.

Load balancers hash the 5-tuple and, for ICMP, the first four bytes of the ICMP header (type,
code, checksum). Paris traceroute keeps all of those constant along a trace and tells its probes
apart by fields the hash ignores: the IP identification for UDP, the TCP sequence number, and
for ICMP the echo sequence — whose change in the checksum is cancelled by a two-byte word in the
payload. Pure arithmetic, no scapy.
"""

from __future__ import annotations

import struct

ICMP_ECHO = 8
ICMP_CHECKSUM_TARGET = 0x5A5A  # any constant: every probe of a trace carries this checksum


def ones_add(a: int, b: int) -> int:
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


def icmp_compensation(ident: int, seq: int, checksum: int = ICMP_CHECKSUM_TARGET) -> bytes:
    """A 2-byte payload word making the echo request's checksum equal `checksum`.

    The checksum is ~(sum of words); with a header (type 8, code 0), `ident`, `seq` and this
    one payload word w, we need sum = ~checksum, so w = ~checksum − (0x0800 + ident + seq)
    in ones-complement arithmetic.
    """
    want = ~checksum & 0xFFFF
    header = ones_add(ones_add(ICMP_ECHO << 8, ident), seq)
    word = ones_add(want, ~header & 0xFFFF)
    word = (word & 0xFFFF) + (word >> 16)
    return struct.pack("!H", word & 0xFFFF)


def icmp_checksum(packet: bytes) -> int:
    """RFC 1071 checksum of `packet` (its checksum field zeroed by the caller)."""
    if len(packet) % 2:
        packet += b"\0"
    total: int = sum(struct.unpack(f"!{len(packet) // 2}H", packet))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def probe_id(ttl: int, attempt: int) -> int:
    """The per-probe identifier (IP id / ICMP seq / TCP seq low bits) of attempt at ttl."""
    return (ttl << 4) | (attempt & 0x0F)


def split_probe_id(value: int) -> tuple[int, int]:
    return (value >> 4) & 0xFFF, value & 0x0F
