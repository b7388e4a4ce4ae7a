"""Paris traceroute arithmetic: every ICMP probe of a trace carries the same checksum."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from probes import _paris as paris


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFE))
def test_icmp_checksum_is_constant_whatever_the_sequence(ident: int, seq: int, target: int) -> None:
    word = paris.icmp_compensation(ident, seq, target)
    packet = struct.pack("!BBHHH", paris.ICMP_ECHO, 0, 0, ident, seq) + word + bytes(30)
    assert paris.icmp_checksum(packet) == target


def test_probe_ids_round_trip() -> None:
    for ttl in (1, 2, 30, 255):
        for attempt in range(16):
            assert paris.split_probe_id(paris.probe_id(ttl, attempt)) == (ttl, attempt)


def test_checksum_of_known_packet() -> None:
    # echo request, id 0x1234 seq 1, no payload: 0xFFFF - (0x0800 + 0x1234 + 0x0001) = 0xE5CA
    assert paris.icmp_checksum(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1)) == 0xE5CA
