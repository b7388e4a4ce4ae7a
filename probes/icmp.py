"""ICMP echo prober: one round of N echo requests to one target → `ProbeResult`.

probe → **sample** → store. Many rounds (targets) run at once on one socket per (family,
source, DSCP): a raw socket as root, an ICMP datagram socket where `ping_group_range` allows it.
RTT = kernel receive timestamp − send time, both CLOCK_REALTIME ns. `interval_s = 0` sends the
next packet as soon as the previous one is answered (ping's flood); otherwise packets leave on a
fixed schedule while earlier ones are still in flight.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from probes import _icmp_wire as wire
from probes import _mmsg
from probes._icmp_batch import Batch, BatchChannel
from probes._icmp_channel import Channel
from probes._round import Round
from probes.base import ProbeOptions, ProbeResult, ProbeSetupError, Target
from probes.stats import RoundSummary, round_summary

ICMP_FILTER = 1  # <linux/icmp.h>, level SOL_RAW: a bitmask of ICMP types to *block*
ICMP6_FILTER = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6: 256-bit mask, set bit = block
SOL_RAW = 255
_PASS_V4 = (wire.ECHO_REPLY_V4, *wire.ERROR_TYPES_V4)
_PASS_V6 = (wire.ECHO_REPLY_V6, *wire.ERROR_TYPES_V6)
SocketFactory = Callable[[int, int, int], socket.socket]
_C = TypeVar("_C", Channel, BatchChannel)
_R = TypeVar("_R")
MAX_BATCH_PACKETS = 8192  # per batch: its sequence numbers stay a small share of the 65,536
HOW_TO_GRANT = (
    "ICMP probes need a raw socket (run as root, or grant CAP_NET_RAW: "
    "`setcap cap_net_raw+ep $(readlink -f $(which python3))`) or unprivileged ICMP sockets "
    "for your group: `sysctl -w net.ipv4.ping_group_range='{gid} {gid}'` "
    "(persist it in /etc/sysctl.d/)"
)


class IcmpProber:
    """ICMP echo rounds, pipelined on shared sockets. `socket_factory(family, type, proto)`
    lets the caller create the sockets elsewhere (e.g. inside a lab network namespace)."""

    kind = "icmp"

    def __init__(
        self, socket_factory: SocketFactory | None = None, tx_timestamps: bool = True
    ) -> None:
        self._factory: SocketFactory = socket_factory or socket.socket
        self._tx_timestamps = tx_timestamps
        self._channels: dict[tuple[int, str | None, int], Channel] = {}
        self._batch_channels: dict[tuple[int, str | None, int], BatchChannel] = {}

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult:
        address, family, sockaddr = _parse_address(target.address)
        channel = self._channel(family, options.source, options.dscp)
        nonce = _nonces.take()
        body, body_sum = wire.payload_and_sum(nonce, options.size)
        rnd = Round(address, sockaddr, nonce, options, body, body_sum, channel.pacer)
        started_wall_ns = time.time_ns()
        try:
            rnd.start(channel)
            await rnd.done
        finally:
            rnd.finish()
            channel.retire(rnd)
        return ProbeResult(self.kind, target, started_wall_ns, rnd.samples(), dict(rnd.foreign))

    async def probe_many(
        self, targets: Sequence[Target], options: ProbeOptions
    ) -> list[ProbeResult]:
        """One round to each of `targets`, in target order: packet i of every target in one
        system call (`probes._icmp_batch`). Flood mode (`interval_s` 0) and a libc without
        sendmmsg take `probe` per target."""
        if not self._batched(targets, options):
            return list(await asyncio.gather(*(self.probe(t, options) for t in targets)))
        return await self._batches(targets, options, lambda b: b.results(self.kind))

    async def summaries_many(
        self, targets: Sequence[Target], options: ProbeOptions
    ) -> list[RoundSummary]:
        """What `probe_many` measures, as each round's `probes.stats.round_summary`, computed
        from the batch's arrays without a `Sample` per packet: the scheduler's way to run a slot."""
        if not self._batched(targets, options):
            results = await asyncio.gather(*(self.probe(t, options) for t in targets))
            return [round_summary(r) for r in results]
        return await self._batches(targets, options, Batch.round_summaries)

    @staticmethod
    def _batched(targets: Sequence[Target], options: ProbeOptions) -> bool:
        return options.interval_s > 0 and _mmsg.available() and len(targets) >= 2

    async def _batches(
        self, targets: Sequence[Target], options: ProbeOptions, take: Callable[[Batch], list[_R]]
    ) -> list[_R]:
        """Run `targets` as batches (one per family, at most MAX_BATCH_PACKETS packets each),
        all at once; `take` turns each finished batch into per-target items, in target order."""
        by_family: dict[int, list[int]] = {}
        for i, t in enumerate(targets):
            by_family.setdefault(_parse_address(t.address)[1], []).append(i)
        batches = []
        per_batch = max(1, MAX_BATCH_PACKETS // max(1, options.count))
        try:
            for family, all_indices in by_family.items():
                channel = self._batch_channel(family, options.source, options.dscp)
                for at in range(0, len(all_indices), per_batch):
                    indices = all_indices[at : at + per_batch]
                    batch = Batch(channel, [targets[i] for i in indices], options, _nonces.take())
                    batches.append((batch, indices))
                    batch.start()
            for batch, _indices in batches:
                await batch.done
        finally:
            for batch, _indices in batches:
                batch.cancel()
        out: list[_R | None] = [None] * len(targets)
        for batch, indices in batches:
            for i, item in zip(indices, take(batch), strict=True):
                out[i] = item
        return [item for item in out if item is not None]

    def foreign_totals(self) -> dict[str, int]:
        """Every reply that did not belong, by kind, over the prober's lifetime."""
        totals: dict[str, int] = {}
        channels: list[Channel | BatchChannel] = [*self._channels.values()]
        for channel in [*channels, *self._batch_channels.values()]:
            for kind, n in channel.foreign.items():
                totals[kind] = totals.get(kind, 0) + n
        return totals

    async def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for batch_channel in self._batch_channels.values():
            batch_channel.close()
        self._batch_channels.clear()

    def _channel(self, family: int, source: str | None, dscp: int) -> Channel:
        return self._get(self._channels, Channel, family, source, dscp)

    def _batch_channel(self, family: int, source: str | None, dscp: int) -> BatchChannel:
        return self._get(self._batch_channels, BatchChannel, family, source, dscp)

    def _get(
        self, channels: dict[tuple[int, str | None, int], _C], make: Callable[..., _C],
        family: int, source: str | None, dscp: int,
    ) -> _C:  # fmt: skip
        """The channel for (family, source, DSCP) on this loop, opened on first use."""
        loop = asyncio.get_running_loop()
        key = (family, source, dscp)
        channel = channels.get(key)
        if channel is not None and channel.loop is not loop:
            channel.close()
            channel = None
        if channel is None:
            sock, raw = self._open(family)
            try:
                _configure(sock, family, raw, source, dscp)
            except OSError:
                sock.close()
                raise
            channel = channels[key] = make(sock, raw, loop, self._tx_timestamps)
        return channel

    def _open(self, family: int) -> tuple[socket.socket, bool]:
        proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
        try:
            return self._factory(family, socket.SOCK_RAW, proto), True
        except PermissionError:
            pass
        try:
            return self._factory(family, socket.SOCK_DGRAM, proto), False
        except PermissionError as exc:
            raise ProbeSetupError(HOW_TO_GRANT.format(gid=os.getgid())) from exc


@functools.lru_cache(maxsize=65536)
def _parse_address(text: str) -> tuple[str, int, tuple[object, ...]]:
    """(normalised address, family, sockaddr); cached: the same targets come every second."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ProbeSetupError(f"icmp target {text!r} is not an IP address") from exc
    if ip.version == 6:
        return str(ip), socket.AF_INET6, (str(ip), 0, 0, 0)
    return str(ip), socket.AF_INET, (str(ip), 0)


class _Nonces:
    """Round nonces from the OS's random source, read 512 at a time (one getrandom call per
    512 rounds instead of one per round)."""

    BATCH = 512

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._buf = b""
        self._at = 0

    def take(self) -> int:
        at = self._at
        if at >= len(self._buf):
            self._buf, at = os.urandom(8 * self.BATCH), 0
        self._at = at + 8
        return int.from_bytes(self._buf[at : at + 8], "big")


_nonces = _Nonces()
os.register_at_fork(after_in_child=_nonces.reset)  # a forked prober draws its own nonces


def _configure(sock: socket.socket, family: int, raw: bool, source: str | None, dscp: int) -> None:
    """DSCP, the kernel-side type filter (raw sockets see every ICMP packet), source address."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        if raw:
            blocked = bytearray(b"\xff" * 32)
            for t in _PASS_V6:
                blocked[t >> 3] &= ~(1 << (t & 7)) & 0xFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, bytes(blocked))
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        if raw:
            mask = 0xFFFFFFFF & ~sum(1 << t for t in _PASS_V4)
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", mask))
    if source is not None or not raw:  # a ping socket needs a bound port: it is the identifier
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
