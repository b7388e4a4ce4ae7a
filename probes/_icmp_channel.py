"""One ICMP socket shared by every round in flight (probe → **socket** → sample).

The channel owns a raw or datagram ICMP socket and reads it in a loop reader (no task switch
per packet). Times are CLOCK_REALTIME ns on both sides: the send time is the kernel's software
TX timestamp (SO_TIMESTAMPING, read back from the error queue) when `tx_timestamps` is on, else
`time.time_ns()` right before `sendto` (kept as the fallback); the receive time is the kernel
receive timestamp (SO_TIMESTAMPNS). Replies are matched to a pending packet by identifier,
sequence and the round's nonce; anything else is counted by kind — on the round it belongs to
when it can be attributed, and always in `foreign` (the channel's lifetime totals).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import time
from collections import Counter

from probes import _icmp_wire as wire
from probes._icmp_match import Matcher
from probes._round import Pacer, Round

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
# SOF_TIMESTAMPING_TX_SOFTWARE | _SOFTWARE (linux/net_tstamp.h). The stamped packet comes back
# whole, so it is matched by its own identifier and sequence (OPT_ID's send counter would
# desynchronise if the kernel counted a send that then failed).
TX_FLAGS = (1 << 1) | (1 << 4)
_TX_KEYS_MAX = 0x10000
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6, SO_EE_ORIGIN_TIMESTAMPING = 2, 3, 4
_RECVERR = {(socket.IPPROTO_IP, 11), (socket.IPPROTO_IPV6, 25)}  # IP_RECVERR, IPV6_RECVERR
_TIMESPEC = struct.Struct("@qq")
_TIMESPEC_UNPACK = _TIMESPEC.unpack_from
_SOL_SOCKET = socket.SOL_SOCKET
_EXT_ERR = struct.Struct("=IBBBBII")  # sock_extended_err
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_RECV_BATCH = 8192  # drain (nearly) all: replies pile up fast while rounds send in bursts
_RCVBUF = 4 << 20


class Channel:
    """One ICMP socket; `send` a packet of a round, replies resolve it via the loop reader."""

    def __init__(
        self, sock: socket.socket, raw: bool, loop: asyncio.AbstractEventLoop, tx_stamps: bool
    ) -> None:
        self.sock, self.family, self.raw, self.loop = sock, sock.family, raw, loop
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self.tx_stamps = tx_stamps and enable_tx_stamps(sock)
        if not raw:  # ICMP errors for a ping socket arrive on its error queue
            v6 = self.family == socket.AF_INET6
            sock.setsockopt(*((socket.IPPROTO_IPV6, 25) if v6 else (socket.IPPROTO_IP, 11)), 1)
        # a ping socket's identifier is its bound local port (the kernel rewrites it)
        self.ident = int.from_bytes(os.urandom(2), "big") if raw else sock.getsockname()[1]
        if raw:
            attach_filter(sock, wire.bpf_program(self.family, self.ident))
        first_seq = int.from_bytes(os.urandom(2), "big")
        self.matcher = Matcher(
            self.family, self.ident, raw and self.family == socket.AF_INET, first_seq
        )
        self._bufsize = 2048  # grows with the largest payload sent (a 64 KiB buffer costs ~1 µs)
        self.pacer = Pacer(loop)  # one send-schedule timer for all rounds on this socket
        self._tx_keys: dict[int, tuple[Round, int]] = {}  # seq → (round, index) awaiting a stamp
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def foreign(self) -> Counter[str]:
        return self.matcher.foreign

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.matcher.pending.clear()
        self.sock.close()

    def send(self, rnd: Round, index: int) -> int | None:
        """Send packet `index` of `rnd`; its sequence number, or None if the send failed."""
        if len(rnd.body) > self._bufsize - 128:  # room for IP + ICMP headers (and then some)
            self._bufsize = len(rnd.body) + 128
        matcher = self.matcher
        seq = matcher.allocate()
        packet = wire.echo_request_fast(self.family, self.ident, seq, rnd.body, rnd.body_sum)
        sent_ns = time.time_ns()
        try:
            self.sock.sendto(packet, rnd.sockaddr)
        except OSError:
            rnd.sent_ns[index] = sent_ns
            return None
        rnd.sent_ns[index] = sent_ns
        entry = (rnd, index)
        matcher.pending[seq] = entry  # `Matcher.add`, inlined: this is the hot path
        if self.tx_stamps:
            if len(self._tx_keys) >= _TX_KEYS_MAX:  # stamps that never came: forget the oldest
                del self._tx_keys[next(iter(self._tx_keys))]
            self._tx_keys[seq] = entry
        return seq

    def expire(self, seq: int, rnd: Round) -> bool:
        return self.matcher.expire(seq, rnd)

    def retire(self, rnd: Round) -> None:
        """`rnd` is finished: the matcher forgets it (keeps its nonce per sequence)."""
        self.matcher.retire(rnd, rnd.seqs)

    def _on_readable(self) -> None:
        if self._tx_keys or not self.raw:
            self._drain_error_queue()
        recvmsg, bufsize = self.sock.recvmsg, self._bufsize
        for _ in range(_RECV_BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(bufsize, 128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on a ping socket; the next read goes on
                continue
            self.matcher.on_datagram(data, addr[0], _kernel_time_ns(ancdata))

    def _drain_error_queue(self) -> None:
        """TX timestamps (matched by the looped packet's id and sequence) and, on ping sockets,
        ICMP errors quoting one of our requests (IP_RECVERR)."""
        recvmsg, errqueue, sol_socket = self.sock.recvmsg, socket.MSG_ERRQUEUE, socket.SOL_SOCKET
        timespec, ext_err_size = _TIMESPEC.unpack_from, _EXT_ERR.size
        for _ in range(_RECV_BATCH):  # one message per packet sent: locals, no tuple per field
            try:
                data, ancdata, _flags, _addr = recvmsg(2048, 512, errqueue)
            except OSError:  # BlockingIOError: drained
                return
            stamp_ns, origin = None, None
            for level, kind, payload in ancdata:
                if kind == SO_TIMESTAMPING and level == sol_socket and len(payload) >= 16:
                    sec, nsec = timespec(payload)
                    stamp_ns = sec * 1_000_000_000 + nsec
                elif (level, kind) in _RECVERR and len(payload) >= ext_err_size:
                    origin = payload[4]  # sock_extended_err.ee_origin (after the u32 errno)
            if origin == SO_EE_ORIGIN_TIMESTAMPING and stamp_ns is not None:
                self._on_tx_stamp(data, stamp_ns)
            elif origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                self.matcher.on_quoted(data, _kernel_time_ns(ancdata))

    def _on_tx_stamp(self, looped: bytes, stamp_ns: int) -> None:
        found = wire.looped_request(looped, self.family)
        if found is None or found[0] != self.ident:
            return
        entry = self._tx_keys.pop(found[1], None)
        if entry is not None and not entry[0].finished:
            entry[0].sent_ns[entry[1]] = stamp_ns


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel copies the program, so the buffer may go right after."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    with contextlib.suppress(OSError):  # without it, foreign packets are parsed and counted
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def enable_tx_stamps(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_FLAGS)
    except OSError:
        return False
    return True


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in ancdata:  # once per reply: module constants, no int() calls
        if kind == SO_TIMESTAMPNS and level == _SOL_SOCKET and len(payload) >= 16:
            sec, nsec = _TIMESPEC_UNPACK(payload)
            return sec * 1_000_000_000 + nsec  # type: ignore[no-any-return]
    return time.time_ns()  # no kernel timestamp (should not happen): same clock, user space
