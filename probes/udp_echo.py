"""Plain UDP echo prober (RFC 862 servers, `netopt reflector --mode echo`): probe → **sample**.

The payload carries a magic, the round's nonce, the sequence number and the send time; the
echo returns it unchanged, so a reply names its packet and round.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from probes._udp_channel import UdpCodec, UdpReply
from probes._udp_prober import UdpProber
from probes.base import ProbeOptions

MAGIC = b"NOPT"
_BODY = struct.Struct("!4sQIQ")  # magic, nonce, seq, sent ns


@dataclass(frozen=True, slots=True)
class EchoCodec:
    def encode(self, seq: int, nonce: int, sent_ns: int, size: int) -> bytes:
        body = _BODY.pack(MAGIC, nonce, seq & 0xFFFFFFFF, sent_ns)
        return body + bytes(max(0, size - _BODY.size))

    def decode(self, data: bytes) -> UdpReply | str:
        if len(data) < _BODY.size:
            return "truncated"
        magic, nonce, seq, _sent = _BODY.unpack_from(data)
        return UdpReply(seq, nonce) if magic == MAGIC else "foreign_payload"

    def request_seq(self, payload: bytes) -> int | None:
        reply = self.decode(payload)
        return None if isinstance(reply, str) else reply.seq


class UdpEchoProber(UdpProber):
    kind = "udp_echo"
    default_port = 7

    def codec(self, options: ProbeOptions) -> UdpCodec:
        return EchoCodec()
