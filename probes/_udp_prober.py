"""What every UDP prober shares (probe → **round** → sample): open, mark and connect one socket
per round, run the round on a `UdpChannel`, return the samples. udp_echo, stamp and voice differ
only in their codec and defaults."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Callable

from probes._round import Round
from probes._udp_channel import UdpChannel, UdpCodec
from probes.base import ProbeOptions, ProbeResult, ProbeSetupError, Target

SocketFactory = Callable[[int, int, int], socket.socket]


class UdpProber:
    """A UDP request/reply prober; subclasses set `kind`, `default_port` and `codec`."""

    kind = "udp"
    default_port = 7
    nonce_bits = 64

    def __init__(self, socket_factory: SocketFactory | None = None) -> None:
        self._factory: SocketFactory = socket_factory or socket.socket

    def codec(self, options: ProbeOptions) -> UdpCodec:
        raise NotImplementedError

    def payload_size(self, options: ProbeOptions) -> int:
        return options.size

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        family, address = _family(target.address, self.kind)
        port = target.port or self.default_port
        sock = self._open(family, address, port, options)
        channel = UdpChannel(sock, self.codec(options), self.payload_size(options),
                             one_way=options.clock_synced)  # fmt: skip
        nonce = (int.from_bytes(os.urandom(8), "big") >> (64 - self.nonce_bits)) or 1
        rnd = Round(address, (address, port), nonce, options)
        started_wall_ns = time.time_ns()
        try:
            rnd.start(channel)
            await rnd.done
        finally:
            rnd.finish()
            channel.close()
        return ProbeResult(self.kind, target, started_wall_ns, rnd.samples(), dict(rnd.foreign))

    async def close(self) -> None:
        return None

    def _open(self, family: int, address: str, port: int, options: ProbeOptions) -> socket.socket:
        sock = self._factory(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, options.dscp << 2)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, options.dscp << 2)
            if options.source:
                sock.bind((options.source, 0))
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            raise ProbeSetupError(f"{self.kind}: cannot use {address}:{port}: {exc}") from exc
        return sock


def _family(text: str, kind: str) -> tuple[int, str]:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ProbeSetupError(f"{kind} target {text!r} is not an IP address") from exc
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), str(ip)
