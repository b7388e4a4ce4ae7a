"""TCP connect prober: the time a three-way handshake takes (probe → **sample**).

Each packet of the round is one connection attempt: the send time just before `connect`, the
receive time when it completes (user-space CLOCK_REALTIME ns on both sides; a handshake is a
kernel round trip plus two syscalls). A refused connection (RST) is REFUSED, an unreachable
host UNREACHABLE, no answer in `timeout_s` TIMEOUT — outcomes, not exceptions.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections.abc import Callable

from probes.base import Outcome, ProbeOptions, ProbeResult, ProbeSetupError, Sample, Target

SocketFactory = Callable[[int, int, int], socket.socket]
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


class TcpConnectProber:
    kind = "tcp_connect"

    def __init__(self, socket_factory: SocketFactory | None = None) -> None:
        self._factory: SocketFactory = socket_factory or socket.socket

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        if target.port is None:
            raise ProbeSetupError(f"tcp_connect needs a port: {target.address}:PORT")
        try:
            ip = ipaddress.ip_address(target.address)
        except ValueError as exc:
            raise ProbeSetupError(f"tcp_connect target {target.address!r}: not an IP") from exc
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        loop = asyncio.get_running_loop()
        started_wall_ns, start = time.time_ns(), loop.time()
        samples = []
        for i in range(options.count):
            await asyncio.sleep(max(0.0, start + i * options.interval_s - loop.time()))
            samples.append(await self._attempt(i, family, (str(ip), target.port), options))
        return ProbeResult(self.kind, target, started_wall_ns, tuple(samples))

    async def _attempt(
        self, seq: int, family: int, addr: tuple[str, int], options: ProbeOptions
    ) -> Sample:
        sock = self._factory(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            level, opt = (
                (socket.IPPROTO_IPV6, socket.IPV6_TCLASS)
                if family == socket.AF_INET6
                else (socket.IPPROTO_IP, socket.IP_TOS)
            )
            sock.setsockopt(level, opt, options.dscp << 2)
            if options.source:
                sock.bind((options.source, 0))
            sent_ns = time.time_ns()
            try:
                async with asyncio.timeout(options.timeout_s):
                    await asyncio.get_running_loop().sock_connect(sock, addr)
            except TimeoutError:
                return Sample(seq, sent_ns, None, Outcome.TIMEOUT)
            except ConnectionRefusedError:
                return Sample(seq, sent_ns, time.time_ns(), Outcome.REFUSED)
            except OSError as exc:
                outcome = Outcome.UNREACHABLE if exc.errno in _UNREACHABLE else Outcome.ERROR
                return Sample(
                    seq,
                    sent_ns,
                    time.time_ns() if outcome is Outcome.UNREACHABLE else None,
                    outcome,
                )
            return Sample(seq, sent_ns, time.time_ns(), Outcome.OK)
        finally:
            sock.close()

    async def close(self) -> None:
        return None
