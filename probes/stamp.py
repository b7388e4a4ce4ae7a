"""STAMP (RFC 8762) session-sender prober and session-reflector (unauthenticated mode).

probe → **sample**: each test packet's RTT (kernel timestamps, see `_udp_channel`), and its
forward/backward one-way delays from the reflector's receive/transmit timestamps when the
config says the clocks are synchronised (`ProbeOptions.clock_synced`). The reflector
(`netopt reflector`) runs on asyncio-dgram, stateless (its sequence number copies the
sender's), and also serves plain UDP echo (`mode="echo"`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncio_dgram

from probes import _stamp_wire as wire
from probes._udp_channel import UdpCodec
from probes._udp_prober import UdpProber
from probes.base import ProbeOptions

STAMP_PORT = 862


class StampProber(UdpProber):
    kind = "stamp"
    default_port = STAMP_PORT
    nonce_bits = 16  # the round's nonce is the STAMP session identifier (SSID)

    def codec(self, options: ProbeOptions) -> UdpCodec:
        return wire.StampCodec(synced=options.clock_synced)

    def payload_size(self, options: ProbeOptions) -> int:
        return max(wire.BASE_BYTES, options.size)


def reflect_one(data: bytes, rx_ns: int, mode: str, synced: bool = False) -> bytes | None:
    """The reply to one datagram, or None to drop it (a STAMP packet too short to answer)."""
    if mode == "echo":
        return data
    if len(data) < wire.BASE_BYTES:
        return None
    seq = int.from_bytes(data[:4], "big")
    return wire.reflect(data, seq, rx_ns, time.time_ns(), synced, ttl=255)


async def serve_reflector(
    address: str,
    port: int,
    mode: str = "stamp",
    synced: bool = False,
    ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Answer STAMP (or echo) packets on address:port until cancelled.

    The Session-Sender TTL field is sent as 255: asyncio-dgram does not expose the received
    packet's TTL.
    """
    stream = await asyncio_dgram.bind((address, port))
    try:
        if ready is not None:
            ready(stream.sockname)
        while True:
            data, peer = await stream.recv()
            reply = reflect_one(data, time.time_ns(), mode, synced)
            if reply is not None:
                await stream.send(reply, peer)
    except asyncio.CancelledError:
        raise
    finally:
        stream.close()
