"""ICMP echo rounds to many targets at once, a burst per system call (probe → **batch**).

The scheduler starts the rounds of one phase slot together (`IcmpProber.probe_many`): the
same count, spacing and size to every target of the slot. A `Batch` sends packet i of every
target in one `sendmmsg` call, and the channel reads every reply, TX timestamp and ICMP error
that is waiting in one `recvmmsg` call and matches them with array operations — no Python per
packet on the usual path. Times are the kernel's, as in `probes._icmp_channel`: the send time
is the software TX timestamp from the error queue (the time right before the call is the
fallback), the receive time the packet's SO_TIMESTAMPNS.

Matching is by identifier (the channel's), sequence number and the batch's nonce, and the
reply must come from the target the packet went to (on raw IPv4 sockets its checksum must
hold too). Each sequence number remembers the batch and position it was sent for, so a reply
is placed with one array lookup. Everything that is not a clean reply of a pending packet
takes the slow path, one datagram at a time, classified by the per-round matcher's own
functions (`probes._icmp_match.classify`, `classify_quoted`): ``truncated``, ``corrupt``,
``wrong_id``, ``wrong_seq``, ``wrong_nonce``, ``wrong_source``, ``duplicate``, ``late``,
``stray_error``; an ICMP error quoting one of our requests makes that packet UNREACHABLE.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from probes import _icmp_wire as wire
from probes import _mmsg
from probes._icmp_channel import (
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_ICMP6,
    SO_EE_ORIGIN_TIMESTAMPING,
    SO_TIMESTAMPING,
    SO_TIMESTAMPNS,
    attach_filter,
    enable_tx_stamps,
)
from probes._icmp_match import RESOLVED, Sent, classify, classify_quoted
from probes._round import Pacer
from probes.base import Outcome, ProbeOptions, ProbeResult, Sample, Target
from probes.stats import RoundSummary, round_summaries_from_arrays

# sends, timeouts and reads on a 20 ms wall-clock grid (the scheduler's phases are on it): the
# loop wakes at most 50 times a second for every batch together (a wakeup from idle costs
# ~70–230 µs of CPU on the VMs measured)
TICK_S = 0.02
PENDING, OK, UNREACHABLE, FAILED, TIMEOUT = 0, 1, 2, 3, 4  # a packet's state, int8
_OUTCOMES = (Outcome.TIMEOUT, Outcome.OK, Outcome.UNREACHABLE, Outcome.ERROR, Outcome.TIMEOUT)
_SEQS = 0x10000
_RX_SLOTS = 256  # datagrams per recvmmsg call
_RCVBUF = 4 << 20
_RECVERR_LEVELS = (socket.IPPROTO_IP, socket.IPPROTO_IPV6)
_RECVERR_TYPES = (11, 25)  # IP_RECVERR, IPV6_RECVERR
_CMSGHDR = struct.Struct("@Qii")  # cmsg_len (size_t), cmsg_level, cmsg_type
_TIMESPEC = struct.Struct("@qq")
_Ints = npt.NDArray[np.int64]
_REPLY = np.dtype([("type", "u1"), ("code", "u1"), ("checksum", ">u2"), ("ident", ">u2"),
                   ("seq", ">u2"), ("nonce", ">u8")])  # fmt: skip


class Batch:
    """One round to each of `targets` (same options): packet i of every target leaves in one
    call, `interval_s` after packet i−1; each packet times out `timeout_s` after it left.
    Packet i of target t is position t·count + i; `seqs[position]` is its sequence number,
    under which the channel keeps its times and state while the batch runs."""

    def __init__(
        self, channel: BatchChannel, targets: Sequence[Target], opts: ProbeOptions, nonce: int
    ) -> None:
        self.channel, self.targets, self.opts, self.nonce = channel, targets, opts, nonce
        n, count = len(targets), opts.count
        self.n, self.count = n, count
        self.addresses = [channel.address_key(t.address) for t in targets]
        self.foreign: dict[int, Counter[str]] = {}  # target index → kinds, when any
        self.remaining = n * count  # packets without an outcome yet
        self.bursts_sent = 0
        self.finished = False
        self.loop = channel.loop
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._base = 0.0  # loop time of the grid instant the batch started for
        # the send vector this batch holds (and its key in the channel's cache)
        self.vector: tuple[tuple[tuple[bytes, ...], int, int], _mmsg.SendVector] | None = None
        # (sent, received, state) per position, copied out when the batch ends
        self.outcome: tuple[_Ints, _Ints, npt.NDArray[np.int8]] | None = None
        self.slot, self.seqs = channel.register(self)
        self.started_wall_ns = 0

    def start(self) -> None:
        """Send packet 0 of every target on the tick grid — now, when the tick has just
        passed, else at the next one — and book the rest on the grid after it."""
        self.started_wall_ns = time.time_ns()
        if self.n == 0 or self.count == 0:
            self._finish()
            return
        wall = self.started_wall_ns / 1e9
        # on the loop's clock, the grid instant the batch starts at: every batch's sends,
        # timeouts and reads fall on the same ticks, so the loop wakes once per tick for all
        # (a slot's run can start late behind the previous slot's results)
        late = wall - math.floor(wall / TICK_S) * TICK_S
        now = self.loop.time()
        pacer = self.channel.pacer
        if late <= TICK_S / 4:
            self._base = now - late
            self._burst(0)
        else:
            self._base = now + (TICK_S - late)
            self.started_wall_ns += int((TICK_S - late) * 1e9)
            pacer.at(self._base, functools.partial(self._burst, 0))
        for i in range(1, self.count):
            pacer.at(self._base + i * self.opts.interval_s, functools.partial(self._burst, i))

    def _burst(self, i: int) -> None:
        if self.finished:
            return
        seqs = self.seqs[i :: self.count]  # packet i of every target
        self.channel.send_burst(self, i, seqs)
        self.bursts_sent = i + 1
        due = self._base + i * self.opts.interval_s
        now = self.loop.time()
        # each packet times out timeout_s after it left (from now if it left a tick late)
        deadline = (now if now > due + TICK_S else due) + self.opts.timeout_s
        self.channel.pacer.at(deadline, functools.partial(self._expire, seqs))
        self.settled(0)

    def _expire(self, seqs: npt.NDArray[np.intp]) -> None:
        if self.finished:
            return
        status = self.channel.status
        if (status[seqs] == PENDING).any():
            self.channel.drain()  # a reply or stamp already queued is not a timeout
            pending = seqs[status[seqs] == PENDING]
            status[pending] = TIMEOUT
            self.remaining -= len(pending)
        self.settled(0)

    def settled(self, n: int) -> None:
        """`n` more packets have their outcome; the batch ends when all have."""
        self.remaining -= n
        if self.remaining == 0 and self.bursts_sent == self.count:
            self._finish()

    def count_foreign(self, kind: str, position: int | None) -> None:
        if position is not None and not self.finished:
            self.foreign.setdefault(position // self.count, Counter())[kind] += 1

    def _finish(self) -> None:
        if self.finished:
            return
        ch = self.channel
        if ch.tx_stamps and (~ch.stamped[self.seqs] & (ch.status[self.seqs] != FAILED)).any():
            ch.drain()  # TX stamps of the last burst still queued
        self.finished = True  # callbacks still booked on the pacer see it and do nothing
        seqs = self.seqs
        self.outcome = (ch.sent[seqs], ch.received[seqs], ch.status[seqs])  # copies
        ch.retire(self)
        if not self.done.done():
            self.done.set_result(None)

    def cancel(self) -> None:
        """Stop early (the caller was cancelled): timers off, sequence numbers released."""
        if not self.finished:
            self.finished = True
            self.channel.retire(self)

    def results(self, kind: str) -> list[ProbeResult]:
        assert self.outcome is not None, "results of a batch that did not finish"
        sent, received, state = (a.tolist() for a in self.outcome)
        count, started, timeout = self.count, self.started_wall_ns, Outcome.TIMEOUT
        out = []
        for t, target in enumerate(self.targets):
            samples = []
            p = t * count
            for i in range(count):
                s = state[p + i]
                if s in (OK, UNREACHABLE):
                    samples.append(Sample(i, sent[p + i], received[p + i], _OUTCOMES[s]))
                elif s == FAILED:
                    samples.append(Sample(i, sent[p + i], None, Outcome.ERROR))
                else:
                    samples.append(Sample(i, sent[p + i], None, timeout))
            foreign = dict(self.foreign[t]) if t in self.foreign else {}
            out.append(ProbeResult(kind, target, started, tuple(samples), foreign))
        return out

    def round_summaries(self) -> list[RoundSummary]:
        """`probes.stats.round_summary` of every target's round, straight from the arrays."""
        assert self.outcome is not None, "round summaries of a batch that did not finish"
        shape = (self.n, self.count)
        sent, received, state = self.outcome
        return round_summaries_from_arrays(
            self.started_wall_ns, sent.reshape(shape), received.reshape(shape),
            state.reshape(shape), _OUTCOMES,
        )  # fmt: skip


class BatchChannel:
    """One ICMP socket for batches: sequence table, send vectors, receive buffers."""

    def __init__(
        self, sock: socket.socket, raw: bool, loop: asyncio.AbstractEventLoop, tx_stamps: bool
    ) -> None:
        self.sock, self.family, self.raw, self.loop = sock, sock.family, raw, loop
        self.fd = sock.fileno()
        self.v6 = self.family == socket.AF_INET6
        self.ip_header = raw and not self.v6  # raw IPv4 sockets deliver the IP header
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self.tx_stamps = tx_stamps and enable_tx_stamps(sock)
        if not raw:  # ICMP errors for a ping socket arrive on its error queue
            level = (socket.IPPROTO_IPV6, 25) if self.v6 else (socket.IPPROTO_IP, 11)
            sock.setsockopt(*level, 1)
        self.ident = int.from_bytes(os.urandom(2), "big") if raw else sock.getsockname()[1]
        if raw:
            attach_filter(sock, wire.bpf_program(self.family, self.ident))
        self.reply_type = wire.ECHO_REPLY_V6 if self.v6 else wire.ECHO_REPLY_V4
        self.request_type = wire.ECHO_REQUEST_V6 if self.v6 else wire.ECHO_REQUEST_V4
        self.addr_words = 2 if self.v6 else 1  # a source address as uint64 words
        # per sequence number: the batch slot it is pending for (−1: none), its position, the
        # nonce and target address it was sent with, and whether it timed out
        self.owner = np.full(_SEQS, -1, np.int32)
        self.position = np.zeros(_SEQS, np.int64)
        self.nonce = np.zeros(_SEQS, np.uint64)
        self.expect = np.zeros((_SEQS, self.addr_words), np.uint64)
        # per sequence number, what happened to the packet: state, times, TX stamp read
        self.status = np.zeros(_SEQS, np.int8)
        self.sent = np.zeros(_SEQS, np.int64)
        self.received = np.zeros(_SEQS, np.int64)
        self.stamped = np.zeros(_SEQS, bool)
        self.batches: list[Batch | None] = []
        self._free: list[int] = []
        self._next_seq = int.from_bytes(os.urandom(2), "big")
        self.foreign: Counter[str] = Counter()
        self._rx_size = 512
        self._rx = _mmsg.RecvBuffers(_RX_SLOTS, self._rx_size, 64)
        self._eq = _mmsg.RecvBuffers(_RX_SLOTS, self._rx_size, 256)
        self._vectors: dict[tuple[tuple[bytes, ...], int, int], list[_mmsg.SendVector]] = {}
        self.pacer = Pacer(loop)  # every batch's sends and timeouts: one loop timer
        self.closed = False
        loop.add_reader(self.fd, self._on_readable)
        self._watching = True

    def close(self) -> None:
        self.closed = True
        self.loop.remove_reader(self.fd)
        for b in self.batches:
            if b is not None:
                b.cancel()
        self.sock.close()

    # --- addresses -------------------------------------------------------------------------
    def address_key(self, address: str) -> bytes:
        """The target's address as the kernel writes a sender's: 4 or 16 bytes, padded to
        whole uint64 words."""
        packed = socket.inet_pton(self.family, address)
        return packed + bytes(8 * self.addr_words - len(packed))

    # --- sequence numbers --------------------------------------------------------------------
    def register(self, batch: Batch) -> tuple[int, npt.NDArray[np.int64]]:
        """A slot for `batch` and a block of sequence numbers not in flight, one per packet."""
        size = batch.n * batch.count
        if size > _SEQS // 2:
            raise ValueError(f"{size} ICMP echo requests in one batch (at most {_SEQS // 2})")
        start = self._next_seq
        for _ in range(_SEQS // max(1, size) + 1):
            seqs = (start + np.arange(size, dtype=np.int64)) & 0xFFFF
            busy = np.flatnonzero(self.owner[seqs] >= 0)
            if not len(busy):
                break
            start = int(seqs[busy[-1]]) + 1
        else:
            raise RuntimeError("the ICMP socket has no free block of sequence numbers")
        self._next_seq = (start + size) & 0xFFFF
        slot = self._free.pop() if self._free else len(self.batches)
        if slot == len(self.batches):
            self.batches.append(batch)
        else:
            self.batches[slot] = batch
        self.owner[seqs] = slot
        self.position[seqs] = np.arange(size, dtype=np.int64)
        self.nonce[seqs] = batch.nonce
        self.status[seqs] = PENDING
        self.sent[seqs] = 0
        self.received[seqs] = 0
        self.stamped[seqs] = False
        words = np.frombuffer(b"".join(batch.addresses), np.uint64).reshape(-1, self.addr_words)
        self.expect[seqs] = np.repeat(words, batch.count, axis=0)
        return slot, seqs

    def retire(self, batch: Batch) -> None:
        """`batch` is over: its numbers stay known (nonce, state) for late and duplicate
        replies, but belong to no batch."""
        self.owner[batch.seqs] = -1
        self.batches[batch.slot] = None
        self._free.append(batch.slot)
        self._release_vector(batch)

    # --- sending -------------------------------------------------------------------------
    def _vector(self, batch: Batch) -> _mmsg.SendVector:
        """Every packet of `batch`, built at once: row i·n + t is packet i to target t."""
        n, count = batch.n, batch.count
        size = 8 + max(batch.opts.size, wire.NONCE_BYTES)  # ICMP header + payload
        key = (tuple(batch.addresses), size, count)
        free = self._vectors.get(key)
        if free:
            vec = free.pop()
        else:
            names = b"".join(_mmsg.sockaddr(self.family, t.address) for t in batch.targets)
            vec = _mmsg.SendVector(n * count, size, len(names) // n)
            per_target = np.frombuffer(names, np.uint8).reshape(n, -1)
            vec.names[:, : per_target.shape[1]] = np.tile(per_target, (count, 1))
            vec.packets[:, 0] = self.request_type
            vec.packets[:, 4] = self.ident >> 8
            vec.packets[:, 5] = self.ident & 0xFF
            if len(self._vectors) > 4096:  # target sets that no longer come: forget them
                self._vectors.clear()
        body, body_sum = wire.payload_and_sum(batch.nonce, batch.opts.size)
        packets = vec.packets
        packets[:, 8:] = np.frombuffer(body, np.uint8)
        seqs = batch.seqs.reshape(n, count).T.ravel()  # in row order
        packets[:, 6] = seqs >> 8
        packets[:, 7] = seqs & 0xFF
        if not self.v6:  # RFC 1071 in network order (the kernel fills ICMPv6's)
            total = (wire.ECHO_REQUEST_V4 << 8) + self.ident + seqs + body_sum
            total = (total & 0xFFFF) + (total >> 16)
            total = (total & 0xFFFF) + (total >> 16)
            check = ~total & 0xFFFF
            packets[:, 2] = check >> 8
            packets[:, 3] = check & 0xFF
        batch.vector = (key, vec)
        if len(body) + 128 > self._rx_size:
            self._grow_rx(len(body) + 128)
        return vec

    def _release_vector(self, batch: Batch) -> None:
        if batch.vector is not None:
            key, vec = batch.vector
            self._vectors.setdefault(key, []).append(vec)
            batch.vector = None

    def _grow_rx(self, size: int) -> None:
        self._rx_size = size
        self._rx = _mmsg.RecvBuffers(_RX_SLOTS, size, 64)
        self._eq = _mmsg.RecvBuffers(_RX_SLOTS, size, 256)

    def send_burst(self, batch: Batch, i: int, seqs: npt.NDArray[np.intp]) -> None:
        """Packet `i` of every target of `batch` (sequence numbers `seqs`), in one call."""
        vec = self._vector(batch) if batch.vector is None else batch.vector[1]
        self.sent[seqs] = time.time_ns()  # until the kernel's TX stamp comes
        row, first, stop = i * batch.n, i * batch.n, (i + 1) * batch.n
        while row < stop:
            sent = vec.send(self.fd, row, stop)
            if sent < 0:  # this datagram was refused (no route, …): it never left
                self.status[seqs[row - first]] = FAILED
                batch.settled(1)
                row += 1
            else:
                row += sent

    # --- receiving -------------------------------------------------------------------------
    def _on_readable(self) -> None:
        """Something is queued: read it all at the next tick, with whatever else comes by then
        (one pass over many replies instead of one per reply; the times are the kernel's)."""
        self.loop.remove_reader(self.fd)
        self._watching = False
        wall = time.time()
        tick = math.ceil(wall / TICK_S + 1e-9) * TICK_S
        self.pacer.at(self.loop.time() + (tick - wall), self._on_tick)

    def _on_tick(self) -> None:
        if self.closed:  # booked before close(): the fd is gone (or already someone else's)
            return
        self.drain()
        if not self._watching and not self.closed:
            self.loop.add_reader(self.fd, self._on_readable)
            self._watching = True

    def drain(self) -> None:
        """Read and match everything queued on the socket: TX stamps and errors, then replies."""
        if self.tx_stamps or not self.raw:
            while (n := self._eq.recv(self.fd, socket.MSG_ERRQUEUE)) > 0:
                self._on_error_queue(n)
                if n < _RX_SLOTS:
                    break
        while (n := self._rx.recv(self.fd)) > 0:
            self._on_datagrams(n)
            if n < _RX_SLOTS:
                break

    def _on_datagrams(self, n: int) -> None:
        rx = self._rx
        data, lengths = rx.data[:n], rx.lengths[:n]
        at_ns = _rx_times(rx, n)
        off = 20 if self.ip_header else 0
        head = np.ascontiguousarray(data[:, off : off + 16]).view(_REPLY)[:, 0]
        seq = head["seq"].astype(np.intp)
        owner = self.owner[seq]
        fast = (head["type"] == self.reply_type) & (head["ident"] == self.ident)
        fast &= (owner >= 0) & (head["nonce"] == self.nonce[seq]) & (lengths >= off + 16)
        if self.ip_header:
            fast &= data[:, 0] == 0x45  # IPv4 without options: the header is 20 bytes
        if self.v6:
            source6 = np.ascontiguousarray(rx.names[:n, 8:24]).view(np.uint64)
            fast &= (source6 == self.expect[seq]).all(axis=1)
        else:
            source4 = np.ascontiguousarray(rx.names[:n, 4:8]).view(np.uint32)[:, 0]
            fast &= source4 == self.expect[seq, 0]
        if self.ip_header:
            fast &= _checksum_ok(data, lengths, off)
        if fast.all():
            self._resolve_fast(seq, owner, at_ns, OK)
            return
        if fast.any():
            self._resolve_fast(seq[fast], owner[fast], at_ns[fast], OK)
        for r in np.flatnonzero(~fast).tolist():
            self._slow_datagram(bytes(data[r, : lengths[r]]), rx.names[r], int(at_ns[r]))

    def _resolve_fast(
        self, seq: npt.NDArray[np.intp], owner: npt.NDArray[np.int32],
        at_ns: npt.NDArray[np.int64], state: int,
    ) -> None:  # fmt: skip
        """Replies that passed every check: the first answer of a pending packet resolves it;
        any other is late or a duplicate."""
        if len(seq) > 1:
            ordered = np.sort(seq)
            if (ordered[1:] == ordered[:-1]).any():  # the same packet twice in one read
                seq, first = np.unique(seq, return_index=True)
                for _ in range(len(at_ns) - len(seq)):
                    self._count("duplicate", self.batches[int(owner[0])], None)
                owner, at_ns = owner[first], at_ns[first]
        status = self.status
        pending = status[seq] == PENDING
        if not pending.all():
            for s in seq[~pending].tolist():
                batch, position = self._owner_of(s)
                self._count("late" if status[s] == TIMEOUT else "duplicate", batch, position)
            seq, owner, at_ns = seq[pending], owner[pending], at_ns[pending]
            if not len(seq):
                return
        status[seq] = state
        self.received[seq] = at_ns
        self._settled(owner)

    def _settled(self, owner: npt.NDArray[np.int32]) -> None:
        """One more packet settled per entry of `owner` (batch slots)."""
        if owner.min() == owner.max():
            batch = self.batches[int(owner[0])]
            assert batch is not None
            batch.settled(len(owner))
            return
        counts = np.bincount(owner)
        for slot in np.flatnonzero(counts).tolist():
            batch = self.batches[slot]
            assert batch is not None
            batch.settled(int(counts[slot]))

    def _on_error_queue(self, n: int) -> None:
        """TX timestamps (the looped packet's identifier and sequence) and, on ping sockets,
        ICMP errors quoting one of our requests."""
        eq = self._eq
        data, lengths = eq.data[:n], eq.lengths[:n].astype(np.int64)
        # the usual TX stamp, as the kernel lays it out on this socket: SCM_TIMESTAMPNS (32
        # bytes), SCM_TIMESTAMPING (64: the software stamp first), IP(V6)_RECVERR whose
        # sock_extended_err says ee_origin = SO_EE_ORIGIN_TIMESTAMPING
        ctrl = eq.control[:n]
        c32, c64 = ctrl.view(np.int32), ctrl.view(np.int64)
        ok = (c32[:, 10] == socket.SOL_SOCKET) & (c32[:, 11] == SO_TIMESTAMPING)
        ok &= (ctrl[:, 116] == SO_EE_ORIGIN_TIMESTAMPING) & (eq.hdr["controllen"][:n] >= 144)
        stamp_ns = c64[:, 6] * 1_000_000_000 + c64[:, 7]
        link = 14  # the looped packet carries its link header (Ethernet on lo and veth)
        if self.v6:
            icmp = link + 40
            ok &= (data[:, link] >> 4 == 6) & (data[:, link + 6] == 58)
            plen = data[:, link + 4].astype(np.int64) << 8 | data[:, link + 5]
            ok &= plen == lengths - icmp
        else:
            icmp = link + 20
            ok &= data[:, link] == 0x45
            ok &= (data[:, link + 2].astype(np.int64) << 8 | data[:, link + 3]) == lengths - link
        ok &= data[:, icmp] == self.request_type
        ident = data[:, icmp + 4].astype(np.int64) << 8 | data[:, icmp + 5]
        seq = data[:, icmp + 6].astype(np.int64) << 8 | data[:, icmp + 7]
        ok &= (ident == self.ident) & (lengths >= icmp + 8)
        owner = self.owner[seq]
        mine = ok & (owner >= 0)
        self._stamp(seq[mine], stamp_ns[mine])
        if not ok.all():
            for r in np.flatnonzero(~ok).tolist():
                used = int(eq.hdr["controllen"][r])
                self._slow_error_queue(bytes(data[r, : lengths[r]]), ctrl[r, :used].tobytes())

    def _slow_error_queue(self, data: bytes, control: bytes) -> None:
        """One error-queue message laid out otherwise (another link header, an ICMP error)."""
        stamp_ns = rx_ns = origin = None
        for level, kind, body in _control_messages(control):
            if level == socket.SOL_SOCKET and len(body) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(body)
                if kind == SO_TIMESTAMPING:
                    stamp_ns = sec * 1_000_000_000 + nsec
                elif kind == SO_TIMESTAMPNS:
                    rx_ns = sec * 1_000_000_000 + nsec
            elif level in _RECVERR_LEVELS and kind in _RECVERR_TYPES and len(body) >= 5:
                origin = body[4]  # sock_extended_err.ee_origin, after the u32 errno
        if origin == SO_EE_ORIGIN_TIMESTAMPING and stamp_ns is not None:
            looped = wire.looped_request(data, self.family)
            if looped is not None and looped[0] == self.ident and self.owner[looped[1]] >= 0:
                self._stamp(np.array([looped[1]]), np.array([stamp_ns]))
        elif origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            self._slow_quoted(data, rx_ns or time.time_ns())

    def _stamp(self, seq: npt.NDArray[np.intp], at_ns: npt.NDArray[np.int64]) -> None:
        self.sent[seq] = at_ns
        self.stamped[seq] = True

    # --- the slow path: one datagram, every case ------------------------------------------------
    def _count(self, kind: str, batch: Batch | None, position: int | None) -> None:
        self.foreign[kind] += 1
        if batch is not None:
            batch.count_foreign(kind, position)

    def _owner_of(self, seq: int) -> tuple[Batch | None, int | None]:
        slot = int(self.owner[seq])
        return (None, None) if slot < 0 else (self.batches[slot], int(self.position[seq]))

    def _slow_datagram(self, data: bytes, name: npt.NDArray[np.uint8], at_ns: int) -> None:
        parsed = wire.parse(data, self.family, self.ip_header, self.ip_header)
        source = bytes(name[8:24] if self.v6 else name[4:8])
        verdict, seq = classify(parsed, self.ident, self._known, source, self._packed)
        if verdict in RESOLVED and seq is not None:
            batch = self.batches[int(self.owner[seq])]
            assert batch is not None
            self._resolve_one(seq, batch, OK if verdict == "ok" else UNREACHABLE, at_ns)
        elif verdict != "ignore":
            batch, position = self._owner_of(seq) if seq is not None else (None, None)
            self._count(verdict, batch, position)

    def _slow_quoted(self, request: bytes, at_ns: int) -> None:
        parsed = wire.parse_request(request, self.family)
        verdict, seq = classify_quoted(parsed, self.ident, self._known)
        if verdict == "unreachable" and seq is not None:
            batch = self.batches[int(self.owner[seq])]
            assert batch is not None
            self._resolve_one(seq, batch, UNREACHABLE, at_ns)
        else:
            batch, position = self._owner_of(seq) if seq is not None else (None, None)
            self._count(verdict, batch, position)

    def _known(self, seq: int) -> Sent | None:
        """What the sequence table says of `seq` (as `probes._icmp_match.classify` asks)."""
        status, slot = int(self.status[seq]), int(self.owner[seq])
        batch = self.batches[slot] if slot >= 0 else None
        if batch is None:
            nonce = int(self.nonce[seq])  # 0: never sent on this socket
            return Sent(nonce, False, timed_out=status == TIMEOUT) if nonce else None
        where = batch.addresses[int(self.position[seq]) // batch.count][: 16 if self.v6 else 4]
        return Sent(batch.nonce, status == PENDING, where, timed_out=status == TIMEOUT)

    def _packed(self, address: str) -> bytes:
        return socket.inet_pton(self.family, address)

    def _resolve_one(self, seq: int, batch: Batch, state: int, at_ns: int) -> None:
        self.status[seq] = state
        self.received[seq] = at_ns
        batch.settled(1)


def _control_messages(control: bytes) -> list[tuple[int, int, bytes]]:
    """(level, type, data) of each control message in `control` (struct cmsghdr, 8-aligned)."""
    out, at = [], 0
    while at + 16 <= len(control):
        length, level, kind = _CMSGHDR.unpack_from(control, at)
        if length < 16 or at + length > len(control):
            break
        out.append((level, kind, control[at + 16 : at + length]))
        at += (length + 7) & ~7
    return out


def _rx_times(rx: _mmsg.RecvBuffers, n: int) -> npt.NDArray[np.int64]:
    """Each datagram's SO_TIMESTAMPNS (its only control message on this socket); the time now
    where the kernel gave none."""
    ctrl = rx.control[:n]
    c64, c32 = ctrl.view(np.int64), ctrl.view(np.int32)
    has = (c32[:, 2] == socket.SOL_SOCKET) & (c32[:, 3] == SO_TIMESTAMPNS)
    has &= rx.hdr["controllen"][:n] >= 32
    ns = c64[:, 2] * 1_000_000_000 + c64[:, 3]
    if has.all():
        return ns
    return np.where(has, ns, time.time_ns())


def _checksum_ok(
    data: npt.NDArray[np.uint8], lengths: npt.NDArray[np.uint32], off: int
) -> npt.NDArray[np.bool_]:
    """RFC 1071 over each datagram's ICMP part (raw IPv4 sockets: the kernel does not check)."""
    if lengths.min() == lengths.max():  # the usual read: replies of one size
        return _sums_ok(data[:, off : int(lengths[0])])
    ok = np.zeros(len(data), bool)
    for length in np.unique(lengths).tolist():
        rows = lengths == length
        ok[rows] = _sums_ok(data[rows, off:length])
    return ok


def _sums_ok(icmp: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    if icmp.shape[1] % 2:
        icmp = np.concatenate([icmp, np.zeros((icmp.shape[0], 1), np.uint8)], axis=1)
    words = np.ascontiguousarray(icmp).view(">u2").sum(axis=1, dtype=np.uint64)
    while (words >> 16).any():
        words = (words & 0xFFFF) + (words >> 16)
    return words == 0xFFFF  # type: ignore[no-any-return]
