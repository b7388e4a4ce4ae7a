"""Voice-stream prober: an RTP-like 20 ms stream against a STAMP or UDP-echo reflector.

probe → **sample** → stats. A round is one call-like stream: `count` packets, one every
`PACKET_MS` (50 packets/s, whatever `interval_s` says), each carrying the codec's 20 ms payload
plus an RTP header's worth of bytes, DSCP from the options (the CLI and config default to EF).
`probes.stats.round_stats(result, jitter_buffer_ms=...)` then gives RFC 3550 jitter, IPDV, loss,
bursts and late loss; the MOS is computed by netopt with `topology.quality`.
"""

from __future__ import annotations

import dataclasses

from probes import _stamp_wire as stamp_wire
from probes._udp_channel import UdpCodec
from probes._udp_prober import SocketFactory, UdpProber
from probes.base import ProbeOptions, ProbeResult, Target
from probes.stamp import STAMP_PORT
from probes.udp_echo import EchoCodec

PACKET_MS = 20
RTP_HEADER_BYTES = 12
CODEC_PAYLOAD_BYTES = {"g711": 160, "g729": 20, "g729a": 20, "opus": 80}  # per 20 ms frame
DEFAULT_CODEC = "g711"


def codec_key(name: str | None) -> str:
    key = (name or DEFAULT_CODEC).lower().replace(".", "")
    key = {"pcmu": "g711", "pcma": "g711", "g711u": "g711", "g711a": "g711"}.get(key, key)
    if key not in CODEC_PAYLOAD_BYTES:
        known = ", ".join(CODEC_PAYLOAD_BYTES)
        raise ValueError(f"unknown codec {name!r}; known: {known}")
    return key


class VoiceProber(UdpProber):
    """`reflector` is ``"stamp"`` (default, port 862) or ``"echo"``."""

    kind = "voice"
    default_port = STAMP_PORT

    def __init__(self, socket_factory: SocketFactory | None = None, reflector: str = "stamp"):
        super().__init__(socket_factory)
        if reflector not in ("stamp", "echo"):
            raise ValueError(f"reflector must be 'stamp' or 'echo', not {reflector!r}")
        self.reflector = reflector
        self.nonce_bits = 16 if reflector == "stamp" else 64

    def codec(self, options: ProbeOptions) -> UdpCodec:
        if self.reflector == "echo":
            return EchoCodec()
        return stamp_wire.StampCodec(synced=options.clock_synced)

    def payload_size(self, options: ProbeOptions) -> int:
        size = CODEC_PAYLOAD_BYTES[codec_key(options.codec)] + RTP_HEADER_BYTES
        return max(size, stamp_wire.BASE_BYTES) if self.reflector == "stamp" else size

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        stream = dataclasses.replace(options, interval_s=PACKET_MS / 1000)
        return await super().probe(target, stream)
