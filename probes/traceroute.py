"""Flow-stable (Paris) traceroute with scapy: probe → **trace** → sample.

All TTLs × `count` attempts go out in one scapy `sr()` call on a worker thread (scapy blocks;
never on the event loop), flow fields constant along the trace (see `probes._paris`), DSCP
marked. `trace()` returns every hop; `probe()` returns the destination's answers as a
`ProbeResult` so traceroute can also feed the usual stats. To trace from a lab namespace, pass
`socket_factory` (as for every prober: scapy's sockets are then made by it) or `netns` (a name
under /run/netns or a path: the worker threads enter it).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from probes import _paris as paris
from probes import _trace_scapy as scapy_io
from probes.base import Outcome, ProbeOptions, ProbeResult, ProbeSetupError, Sample, Target

SocketFactory = Callable[[int, int, int], socket.socket]
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    address: str | None  # who answered (None: nobody)
    rtts_ns: tuple[int | None, ...]  # one per attempt
    reached: bool  # the answer came from the destination


@dataclass(frozen=True, slots=True)
class Trace:
    target: Target
    protocol: str
    hops: tuple[Hop, ...]
    reached: bool
    started_wall_ns: int


class TracerouteProber:
    kind = "traceroute"

    def __init__(
        self,
        socket_factory: SocketFactory | None = None,
        netns: str | None = None,
        max_hops: int = 30,
        workers: int = 2,
    ) -> None:
        self.max_hops = max_hops
        self._factory: SocketFactory = socket_factory or socket.socket
        self._pool = ThreadPoolExecutor(workers, "traceroute", _enter_netns, (netns,))

    async def trace(self, target: Target, options: ProbeOptions) -> Trace:
        if ":" in target.address:
            raise ProbeSetupError("traceroute: IPv6 is not supported yet")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, _trace, target, options, self.max_hops, self._factory
        )

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        trace = await self.trace(target, options)
        last = next((h for h in trace.hops if h.reached), None)
        attempts = last.rtts_ns if last else (None,) * options.count
        samples = tuple(
            Sample(i, 0, rtt, Outcome.OK)
            if rtt is not None
            else Sample(i, 0, None, Outcome.TIMEOUT)
            for i, rtt in enumerate(attempts)
        )
        return ProbeResult(self.kind, target, trace.started_wall_ns, samples)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _enter_netns(netns: str | None) -> None:
    if netns is None:
        return
    path = netns if "/" in netns else f"/run/netns/{netns}"
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
    finally:
        os.close(fd)


def _trace(target: Target, options: ProbeOptions, max_hops: int, factory: SocketFactory) -> Trace:
    from scapy.config import conf
    from scapy.sendrecv import sndrcv

    conf.checkIPID = True  # match ICMP quotes to probes by IP id (the flow fields are all equal)
    started = time.time_ns()
    packets = scapy_io.packets(target, options, max_hops, factory)
    # a raw IP socket: the kernel routes (scapy's own route table is the host namespace's)
    sock = scapy_io.raw_socket(factory)
    try:
        answered: Any
        answered, _unanswered = sndrcv(sock, packets, timeout=options.timeout_s, verbose=0)
    finally:
        sock.close()
    rtts: dict[int, list[int | None]] = {t: [None] * options.count for t in range(1, max_hops + 1)}
    who: dict[int, tuple[str, bool]] = {}
    for sent, reply in answered:
        ttl, attempt = paris.split_probe_id(int(sent.id))
        if ttl in rtts and attempt < options.count:
            rtts[ttl][attempt] = int((float(reply.time) - float(sent.sent_time or 0)) * 1e9)
            who.setdefault(ttl, (str(reply.src), str(reply.src) == target.address))
    hops = []
    for ttl in range(1, max_hops + 1):
        address, reached = who.get(ttl, (None, False))
        hops.append(Hop(ttl, address, tuple(rtts[ttl]), reached))
        if reached:
            break
    return Trace(target, options.transport.lower(), tuple(hops), hops[-1].reached, started)
