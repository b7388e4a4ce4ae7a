"""STAMP (RFC 8762) session-sender prober and session-reflector (unauthenticated mode).

probe → **sample**: each test packet's RTT (kernel timestamps, see `_udp_channel`), and its
forward/backward one-way delays from the reflector's receive/transmit timestamps when the
config says the clocks are synchronised (`ProbeOptions.clock_synced`). The round trip is RFC
8762's (T4 − T1) − (T3 − T2): the reflector's holding time is not path delay. The reflector
(`netopt reflector`) is stateless (its sequence number copies the sender's), timestamps with
the kernel, and also serves plain UDP echo (`mode="echo"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable

from probes import _stamp_wire as wire
from probes._udp_channel import UdpCodec
from probes._udp_prober import UdpProber
from probes.base import ProbeOptions

STAMP_PORT = 862
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVTTL, IP_TTL = 12, 2
_TTL_CMSGS = {(socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)}


class StampProber(UdpProber):
    kind = "stamp"
    default_port = STAMP_PORT
    nonce_bits = 16  # the round's nonce is the STAMP session identifier (SSID)

    def codec(self, options: ProbeOptions) -> UdpCodec:
        return wire.StampCodec(synced=options.clock_synced)

    def payload_size(self, options: ProbeOptions) -> int:
        return max(wire.BASE_BYTES, options.size)


def reflect_one(
    data: bytes, rx_ns: int, mode: str, synced: bool = False, ttl: int = 255
) -> bytes | None:
    """The reply to one datagram, or None to drop it (a STAMP packet too short to answer)."""
    if mode == "echo":
        return data
    if len(data) < wire.BASE_BYTES:
        return None
    seq = int.from_bytes(data[:4], "big")
    return wire.reflect(data, seq, rx_ns, time.time_ns(), synced, ttl)


async def serve_reflector(
    address: str,
    port: int,
    mode: str = "stamp",
    synced: bool = False,
    ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Answer STAMP (or echo) packets on address:port until cancelled.

    Receive timestamps are the kernel's (SO_TIMESTAMPNS), so the sender can take the whole
    time this process held the packet — its wake-up included — out of the round trip
    (RFC 8762: (T4 − T1) − (T3 − T2)); the received TTL is reflected (IP_RECVTTL). This is why
    the reflector reads its socket with recvmsg on the loop rather than through asyncio-dgram,
    which gives no ancillary data.
    """
    v6 = ":" in address
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.bind((address, port))
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), _answer_all, sock, mode, synced)
        try:
            if ready is not None:
                ready(sock.getsockname()[:2])
            await loop.create_future()  # until cancelled
        finally:
            loop.remove_reader(sock.fileno())
    finally:
        sock.close()


def _answer_all(sock: socket.socket, mode: str, synced: bool) -> None:
    for _ in range(64):
        try:
            data, anc, _flags, peer = sock.recvmsg(65535, 256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. an ICMP error for an earlier reply: keep serving
            continue
        rx_ns, ttl = time.time_ns(), 255
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack_from("@qq", payload)
                rx_ns = sec * 1_000_000_000 + nsec
            elif (level, kind) in _TTL_CMSGS and len(payload) >= 4:
                ttl = int.from_bytes(payload[:4], sys.byteorder)
        reply = reflect_one(data, rx_ns, mode, synced, ttl)
        if reply is not None:
            with contextlib.suppress(OSError):  # a full send queue drops this reply
                sock.sendto(reply, peer)
