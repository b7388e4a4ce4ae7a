"""Which round does a received ICMP datagram belong to? (probe → **match** → sample)

Sans-I/O: the channel feeds datagrams in, the matcher resolves packets of rounds or counts the
datagram as foreign, by kind: ``truncated``, ``corrupt`` (bad checksum), ``wrong_id`` (another
prober's identifier), ``wrong_seq`` (a sequence we never sent), ``wrong_nonce`` (right id and
sequence, wrong round: spoofed or stale), ``wrong_source``, ``duplicate`` (a second reply),
``late`` (after its timeout), ``stray_error`` (an ICMP error we cannot place). A foreign
datagram is counted on the round it names when there is one, and always in `foreign`.

`classify` and `classify_quoted` are that classification, one function each, shared by the
per-round `Matcher` and the batch channel (`probes._icmp_batch`): each passes what it knows of
a sequence number as a `Sent`.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from probes import _icmp_wire as wire
from probes.base import Outcome

_REPLY = struct.Struct("!BBHHHQ")  # echo header + the round's nonce
RESOLVED = frozenset({"ok", "unreachable"})  # verdicts that give the packet its outcome


@dataclass(frozen=True, slots=True)
class Sent:
    """What a socket knows of one sequence number it sent: the nonce it went with, whether it
    still waits for its outcome (else whether that was a timeout), and while its round runs,
    where it went."""

    nonce: int
    pending: bool
    address: object = None  # the target, in the form the caller gives `source` in; None
    timed_out: bool = False  # once the round is over (only its nonce is remembered)


def classify(
    parsed: wire.Parsed,
    ident: int,
    known: Callable[[int], Sent | None],
    source: object,
    quoted: Callable[[str], object],
) -> tuple[str, int | None]:
    """The verdict on a received datagram, and the sequence number it names (None when it
    names none of ours): ``ok`` / ``unreachable`` resolve that packet, ``ignore`` is nothing,
    any other verdict is its foreign kind. `known` looks a sequence number up, `source` is
    the sender's address, `quoted` turns an error's quoted destination into that form."""
    if parsed.kind == "ignore":
        return "ignore", None
    if parsed.ident is None or parsed.seq is None:
        return parsed.kind, None
    if parsed.ident != ident:
        return "wrong_id", None
    seq = parsed.seq
    if parsed.kind not in ("reply", "error"):
        return parsed.kind, seq  # truncated or corrupt, but it names our packet
    sent = known(seq)
    if sent is None:
        return "wrong_seq", seq
    if parsed.nonce is not None and parsed.nonce != sent.nonce:
        return "wrong_nonce", seq
    if sent.address is not None:  # its round runs: the answer must come from its target
        if parsed.kind == "reply":
            if source != sent.address:
                return "wrong_source", seq
        elif parsed.quoted_dst is None or quoted(parsed.quoted_dst) != sent.address:
            return "wrong_source", seq
    if not sent.pending:
        return ("late" if sent.timed_out else "duplicate"), seq
    return ("ok" if parsed.kind == "reply" else "unreachable"), seq


def classify_quoted(
    parsed: wire.Parsed, ident: int, known: Callable[[int], Sent | None]
) -> tuple[str, int | None]:
    """The verdict on an ICMP error from a ping socket's error queue, `parsed` being the
    request it quotes (`wire.parse_request`): ``unreachable`` for a pending packet of ours,
    else ``stray_error`` (naming the packet only when it is pending)."""
    if parsed.seq is None or parsed.ident != ident:
        return "stray_error", None
    sent = known(parsed.seq)
    if sent is None or not sent.pending:
        return "stray_error", None
    if parsed.nonce is not None and parsed.nonce != sent.nonce:
        return "stray_error", parsed.seq
    return "unreachable", parsed.seq


class RoundLike(Protocol):
    """What the matcher needs of a round (`probes._icmp_round.Round`)."""

    address: str
    nonce: int
    finished: bool
    foreign: Counter[str]

    def resolve(self, index: int, outcome: Outcome, received_ns: int | None) -> None: ...


class Matcher:
    """Pending packets by sequence number, recent outcomes, foreign counts for one socket."""

    def __init__(self, family: int, ident: int, ip_header: bool, first_seq: int) -> None:
        self.family, self.ident = family, ident
        self._ip_header = ip_header  # raw IPv4 sockets deliver the IP header too
        self._verify = ip_header  # the kernel verifies ICMPv6 and ping-socket checksums
        v6 = family == socket.AF_INET6
        self._reply_type = wire.ECHO_REPLY_V6 if v6 else wire.ECHO_REPLY_V4
        self.pending: dict[int, tuple[RoundLike, int]] = {}  # seq → (round, index)
        # resolved seq → (round, outcome) while the round runs; once it is retired, one int,
        # nonce·2 + timed out: a finished round is not kept alive (nor anything the garbage
        # collector tracks) for the 65,536 sequences until its numbers come round again
        self.recent: dict[int, tuple[RoundLike, Outcome] | int] = {}
        self.foreign: Counter[str] = Counter()
        self._next_seq = first_seq & 0xFFFF

    def allocate(self) -> int:
        """A sequence number not in flight (wrapping at 16 bits)."""
        seq = self._next_seq
        if seq not in self.pending:  # the usual case, first
            self._next_seq = (seq + 1) & 0xFFFF
            if self.recent:
                self.recent.pop(seq, None)
            return seq
        for _ in range(0x10000):
            seq = self._next_seq
            self._next_seq = (seq + 1) & 0xFFFF
            if seq not in self.pending:
                self.recent.pop(seq, None)
                return seq
        raise RuntimeError("65536 ICMP echo requests in flight on one socket")

    def add(self, seq: int, rnd: RoundLike, index: int) -> None:
        self.pending[seq] = (rnd, index)

    def retire(self, rnd: RoundLike, seqs: Iterable[int]) -> None:
        """`rnd` has finished: keep only its nonce and outcomes (for `late`/`duplicate`)."""
        recent = self.recent
        for seq in seqs:
            entry = recent.get(seq)
            if entry is not None and not isinstance(entry, int) and entry[0] is rnd:
                recent[seq] = rnd.nonce << 1 | (entry[1] is Outcome.TIMEOUT)

    def expire(self, seq: int, rnd: RoundLike) -> bool:
        """Time out `seq` if it is still pending for `rnd`; True if it was."""
        entry = self.pending.get(seq)
        if entry is None or entry[0] is not rnd:
            return False
        del self.pending[seq]
        self.recent[seq] = (rnd, Outcome.TIMEOUT)
        return True

    def _resolve(self, seq: int, rnd: RoundLike, index: int, outcome: Outcome, at_ns: int) -> None:
        del self.pending[seq]
        self.recent[seq] = (rnd, outcome)
        rnd.resolve(index, outcome, at_ns)

    def on_quoted(self, request: bytes, received_ns: int) -> None:
        """A ping socket's ICMP error: `request` is our echo request as sent."""
        parsed = wire.parse_request(request, self.family)
        verdict, seq = classify_quoted(parsed, self.ident, self._known)
        if verdict == "unreachable" and seq is not None:
            rnd, index = self.pending[seq]
            self._resolve(seq, rnd, index, Outcome.UNREACHABLE, received_ns)
        else:
            self._count(verdict, None if seq is None else self._owner(seq))

    def on_datagram(self, data: bytes, source: str, received_ns: int) -> None:
        # fast path: a well-formed echo reply for a pending packet of ours
        off = (data[0] & 0x0F) * 4 if self._ip_header and data else 0
        if (
            len(data) >= off + _REPLY.size
            and data[off] == self._reply_type
            and (off >= 20 or not self._ip_header)
        ):
            _t, _c, _ck, ident, seq, nonce = _REPLY.unpack_from(data, off)
            entry = self.pending.get(seq) if ident == self.ident else None
            if (
                entry is not None
                and nonce == entry[0].nonce
                and source == entry[0].address
                and (not self._verify or wire.internet_sum(memoryview(data)[off:]) == 0xFFFF)
            ):
                del self.pending[seq]  # `_resolve`, inlined: this is the hot path
                self.recent[seq] = (entry[0], Outcome.OK)
                entry[0].resolve(entry[1], Outcome.OK, received_ns)
                return
        parsed = wire.parse(data, self.family, self._ip_header, self._verify)
        verdict, seq = classify(parsed, self.ident, self._known, source, _same)
        if verdict in RESOLVED and seq is not None:
            rnd, index = self.pending[seq]
            outcome = Outcome.OK if verdict == "ok" else Outcome.UNREACHABLE
            self._resolve(seq, rnd, index, outcome, received_ns)
        elif verdict != "ignore":
            self._count(verdict, None if seq is None else self._owner(seq))

    def _known(self, seq: int) -> Sent | None:
        entry = self.pending.get(seq)
        if entry is not None:
            return Sent(entry[0].nonce, True, entry[0].address)
        seen = self.recent.get(seq)
        if seen is None:
            return None
        if isinstance(seen, int):  # a retired round: its nonce, whether it timed out
            return Sent(seen >> 1, False, timed_out=bool(seen & 1))
        rnd, outcome = seen
        return Sent(rnd.nonce, False, rnd.address, timed_out=outcome is Outcome.TIMEOUT)

    def _owner(self, seq: int) -> RoundLike | None:
        entry = self.pending.get(seq)
        if entry is not None:
            return entry[0]
        seen = self.recent.get(seq)
        return None if seen is None or isinstance(seen, int) else seen[0]

    def _count(self, kind: str, rnd: RoundLike | None) -> None:
        self.foreign[kind] += 1
        if rnd is not None and not rnd.finished:
            rnd.foreign[kind] += 1


def _same(address: str) -> str:
    return address
