"""SIP OPTIONS prober over UDP or TCP (`ProbeOptions.transport`): probe → **sample**.

RTT is to the first *final* response (1xx are skipped); the status code is kept on the sample;
a 2xx is OK and any other final response is BAD_STATUS — the server answered, so not loss.
Responses are matched by Call-ID (nonce + sequence); others are counted as foreign. One socket
(one TCP connection) per round; times are user-space CLOCK_REALTIME ns.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import time
from collections import Counter
from collections.abc import Callable

from probes import _sip_wire as wire
from probes.base import Outcome, ProbeOptions, ProbeResult, ProbeSetupError, Sample, Target

SocketFactory = Callable[[int, int, int], socket.socket]
SIP_PORT = 5060


class SipOptionsProber:
    kind = "sip_options"

    def __init__(self, socket_factory: SocketFactory | None = None) -> None:
        self._factory: SocketFactory = socket_factory or socket.socket

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        tcp = options.transport.lower() == "tcp"
        try:
            ip = ipaddress.ip_address(target.address)
        except ValueError as exc:
            raise ProbeSetupError(f"sip_options target {target.address!r}: not an IP") from exc
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        addr = (str(ip), target.port or SIP_PORT)
        uri = f"[{ip}]:{addr[1]}" if ip.version == 6 else f"{ip}:{addr[1]}"
        started_wall_ns = time.time_ns()
        sock = self._factory(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM, 0)
        session = _Session(sock, tcp, uri, options)
        try:
            samples = await session.run(addr)
        finally:
            session.sock.close()
        return ProbeResult(self.kind, target, started_wall_ns, samples, dict(session.foreign))

    async def close(self) -> None:
        return None


class _Session:
    def __init__(self, sock: socket.socket, tcp: bool, uri: str, options: ProbeOptions) -> None:
        self.sock, self.tcp, self.uri, self.options = sock, tcp, uri, options
        self.nonce = os.urandom(6).hex()
        self.foreign: Counter[str] = Counter()
        self.buffer = b""
        self.loop = asyncio.get_running_loop()

    async def run(self, addr: tuple[str, int]) -> tuple[Sample, ...]:
        opts = self.options
        self.sock.setblocking(False)
        if opts.source:
            self.sock.bind((opts.source, 0))
        level = socket.IPPROTO_IPV6 if self.sock.family == socket.AF_INET6 else socket.IPPROTO_IP
        opt = socket.IPV6_TCLASS if level == socket.IPPROTO_IPV6 else socket.IP_TOS
        self.sock.setsockopt(level, opt, opts.dscp << 2)
        connect_ns = time.time_ns()
        try:
            async with asyncio.timeout(opts.timeout_s):
                await self.loop.sock_connect(self.sock, addr)
        except (TimeoutError, OSError) as exc:
            outcome = Outcome.TIMEOUT if isinstance(exc, TimeoutError) else _failed(exc)
            return tuple(Sample(i, connect_ns, None, outcome) for i in range(opts.count))
        start, samples = self.loop.time(), []
        for i in range(opts.count):
            await asyncio.sleep(max(0.0, start + i * opts.interval_s - self.loop.time()))
            samples.append(await self._ask(i))
        return tuple(samples)

    async def _ask(self, seq: int) -> Sample:
        call_id = f"{self.nonce}-{seq}@netopt"
        local = self.sock.getsockname()[:2]
        request = wire.options_request(self.uri, "TCP" if self.tcp else "UDP", local,
                                       call_id, f"z9hG4bK{self.nonce}{seq}", seq + 1)  # fmt: skip
        sent_ns = time.time_ns()
        try:
            async with asyncio.timeout(self.options.timeout_s):
                await self.loop.sock_sendall(self.sock, request)
                while True:
                    response = await self._next_response()
                    if response.call_id != call_id:
                        ours = response.call_id.startswith(self.nonce)
                        self.foreign["late" if ours else "wrong_call_id"] += 1
                    elif response.status >= 200:
                        ok = 200 <= response.status < 300
                        outcome = Outcome.OK if ok else Outcome.BAD_STATUS
                        return Sample(seq, sent_ns, time.time_ns(), outcome, status=response.status)
        except TimeoutError:
            return Sample(seq, sent_ns, None, Outcome.TIMEOUT)
        except OSError as exc:
            outcome = _failed(exc)
            received = None if outcome is Outcome.ERROR else time.time_ns()
            return Sample(seq, sent_ns, received, outcome)

    async def _next_response(self) -> wire.SipResponse:
        """The next SIP response from the peer; garbage is counted and skipped."""
        while True:
            if self.tcp:
                parsed = wire.parse_response(self.buffer)
                if isinstance(parsed, wire.SipResponse):
                    self.buffer = self.buffer[parsed.length :]
                    return parsed
                if parsed != "incomplete":  # the stream is unusable from here on
                    self.foreign[parsed] += 1
                    raise ConnectionResetError("SIP stream out of sync")
                chunk = await self.loop.sock_recv(self.sock, 65536)
                if not chunk:
                    raise ConnectionResetError("SIP peer closed the connection")
                self.buffer += chunk
            else:
                parsed = wire.parse_response(await self.loop.sock_recv(self.sock, 65536))
                if isinstance(parsed, wire.SipResponse):
                    return parsed
                self.foreign["truncated" if parsed == "incomplete" else parsed] += 1


def _failed(exc: BaseException) -> Outcome:
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return Outcome.UNREACHABLE
    return Outcome.ERROR
