"""A UDP round's socket: send test packets, match replies (probe → **socket** → sample).

One connected UDP socket per round, so the kernel only hands us datagrams from the target and
reports ICMP errors (port unreachable → REFUSED, host/net unreachable → UNREACHABLE) on the
socket's error queue with the offending payload, which names the packet. Times as for ICMP:
software TX timestamps (SO_TIMESTAMPING) for sends, SO_TIMESTAMPNS for receives, one clock.
The wire format is a `UdpCodec` (udp_echo, STAMP); stats never see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from probes._round import Round
from probes.base import Outcome

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
TX_FLAGS = (1 << 1) | (1 << 4)  # SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
_RECVERR = {(socket.IPPROTO_IP, 11), (socket.IPPROTO_IPV6, 25)}
_TIMESPEC = struct.Struct("@qq")
_EXT_ERR = struct.Struct("=IBBBBII")
ORIGIN_ICMP, ORIGIN_ICMP6, ORIGIN_TIMESTAMPING = 2, 3, 4
_BATCH = 64


@dataclass(frozen=True, slots=True)
class UdpReply:
    """A decoded reply: which packet, and the reflector's receive/transmit times if it gave them."""

    seq: int
    nonce: int
    reflector_rx_ns: int | None = None
    reflector_tx_ns: int | None = None


class UdpCodec(Protocol):
    """Encodes test packets and decodes replies; a str from `decode` names a foreign kind."""

    def encode(self, seq: int, nonce: int, sent_ns: int, size: int) -> bytes: ...

    def decode(self, data: bytes) -> UdpReply | str: ...

    def request_seq(self, payload: bytes) -> int | None: ...


class UdpChannel:
    """The socket of one round; sequence number = packet index."""

    def __init__(self, sock: socket.socket, codec: UdpCodec, size: int, one_way: bool) -> None:
        self.sock, self.codec, self.size, self.one_way = sock, codec, size, one_way
        self.loop = asyncio.get_running_loop()
        self.foreign: Counter[str] = Counter()
        self._round: Round | None = None
        self._seen: set[int] = set()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        v6 = sock.family == socket.AF_INET6
        sock.setsockopt(*((socket.IPPROTO_IPV6, 25) if v6 else (socket.IPPROTO_IP, 11)), 1)
        with contextlib.suppress(OSError):  # without TX stamps, send times stay user-space
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_FLAGS)
        self.loop.add_reader(sock.fileno(), self._on_readable)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def send(self, rnd: Round, index: int) -> int | None:
        self._round = rnd
        sent_ns = time.time_ns()
        rnd.sent_ns[index] = sent_ns
        try:
            self.sock.send(self.codec.encode(index, rnd.nonce, sent_ns, self.size))
        except OSError:
            return None
        return index

    def expire(self, seq: int, rnd: Round) -> bool:
        return rnd.outcomes[seq] is None

    def _on_readable(self) -> None:
        self._drain_error_queue()
        for _ in range(_BATCH):
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65535, 128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an error already taken from the error queue
                continue
            self._on_reply(data, _time_ns(anc, SO_TIMESTAMPNS) or time.time_ns())

    def _on_reply(self, data: bytes, received_ns: int) -> None:
        rnd = self._round
        reply = self.codec.decode(data)
        if isinstance(reply, str) or rnd is None:
            self._count(reply if isinstance(reply, str) else "unexpected", rnd)
            return
        if reply.nonce != rnd.nonce:
            self._count("wrong_nonce", rnd)
        elif not 0 <= reply.seq < rnd.count or rnd.sent_ns[reply.seq] is None:
            self._count("wrong_seq", rnd)
        elif reply.seq in self._seen:
            self._count("duplicate", rnd)
        elif rnd.outcomes[reply.seq] is not None:
            self._seen.add(reply.seq)
            self._count("late", rnd)
        else:
            self._seen.add(reply.seq)
            sent = rnd.sent_ns[reply.seq] or 0
            t2, t3 = reply.reflector_rx_ns, reply.reflector_tx_ns
            if self.one_way and t2 is not None and t3 is not None:
                rnd.one_way_ns[reply.seq] = (t2 - sent, received_ns - t3)
            if t2 is not None and t3 is not None and 0 <= t3 - t2 < received_ns - sent:
                received_ns -= t3 - t2  # RFC 8762 round trip: without the reflector's hold
            rnd.resolve(reply.seq, Outcome.OK, received_ns)

    def _drain_error_queue(self) -> None:
        for _ in range(_BATCH):
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            err = next((_EXT_ERR.unpack_from(p) for lvl, k, p in anc
                        if (lvl, k) in _RECVERR and len(p) >= _EXT_ERR.size), None)  # fmt: skip
            if err is None or self._round is None:
                continue
            stamp_ns = _time_ns(anc, SO_TIMESTAMPING)
            if err[1] == ORIGIN_TIMESTAMPING and stamp_ns is not None:
                self._on_tx_stamp(data, stamp_ns)
            elif err[1] in (ORIGIN_ICMP, ORIGIN_ICMP6):
                seq = self.codec.request_seq(data)
                rnd = self._round
                if seq is None or not 0 <= seq < rnd.count or rnd.outcomes[seq] is not None:
                    self._count("stray_error", rnd)
                    continue
                refused = err[0] == errno.ECONNREFUSED
                outcome = Outcome.REFUSED if refused else Outcome.UNREACHABLE
                rnd.resolve(seq, outcome, _time_ns(anc, SO_TIMESTAMPNS) or time.time_ns())

    def _on_tx_stamp(self, looped: bytes, stamp_ns: int) -> None:
        rnd = self._round
        payload = _udp_payload(looped)
        seq = self.codec.request_seq(payload) if payload is not None else None
        if rnd is not None and seq is not None and 0 <= seq < rnd.count and not rnd.finished:
            user_ns = rnd.sent_ns[seq]
            if user_ns is not None and 0 <= stamp_ns - user_ns < 100_000_000:  # same send
                rnd.sent_ns[seq] = stamp_ns

    def _count(self, kind: str, rnd: Round | None) -> None:
        self.foreign[kind] += 1
        if rnd is not None and not rnd.finished:
            rnd.foreign[kind] += 1


def _udp_payload(looped: bytes) -> bytes | None:
    """The UDP payload of a packet looped back with its TX timestamp (link header included)."""
    for off in (14, 0, 16):
        n = len(looped) - off
        if n < 28:
            continue
        version, ihl = looped[off] >> 4, (looped[off] & 0x0F) * 4
        v4 = version == 4 and looped[off + 9] == 17
        if v4 and int.from_bytes(looped[off + 2 : off + 4], "big") == n:
            return looped[off + ihl + 8 :]
        v6 = version == 6 and n >= 48 and looped[off + 6] == 17
        if v6 and int.from_bytes(looped[off + 4 : off + 6], "big") == n - 40:
            return looped[off + 48 :]
    return None


def _time_ns(anc: list[tuple[int, int, bytes]], kind: int) -> int | None:
    """The first timespec of the SOL_SOCKET control message `kind`, in ns (None if absent)."""
    for level, k, payload in anc:
        if level == socket.SOL_SOCKET and k == kind and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return int(sec) * 1_000_000_000 + int(nsec)
    return None
