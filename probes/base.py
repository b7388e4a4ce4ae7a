"""The values every prober shares: probe → **sample** → store → stats → plan → decide → publish.

A prober sends one *round* of packets to one `Target` and returns a `ProbeResult` holding one
`Sample` per packet. A lossy network is data: every packet ends as an `Outcome`, never an
exception. Exceptions are kept for our faults (`ProbeSetupError`: a missing capability).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, cast


class ProbeSetupError(Exception):
    """The prober cannot run here (missing privilege, bad address family); says how to fix it."""


class Outcome(enum.StrEnum):
    """How one probe packet ended."""

    OK = "ok"  # a valid reply came back in time
    TIMEOUT = "timeout"  # nothing valid came back before the timeout
    UNREACHABLE = "unreachable"  # ICMP destination/host/net unreachable for this packet
    REFUSED = "refused"  # port unreachable / TCP RST / connection refused
    BAD_STATUS = "bad_status"  # an answer that says no (SIP non-2xx)
    ERROR = "error"  # the send itself failed (e.g. no route from this host)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a round goes: an IP address, a port for UDP/TCP/SIP kinds, a name for labels."""

    address: str
    port: int | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Sample:
    """One packet: send/receive times in ns, both on one clock — CLOCK_REALTIME, because
    that is the clock of the kernel's packet timestamps (a clock step mid-round would distort
    that round's RTTs; use the times for differences only).

    `received_ns` is None unless the outcome carries a time (OK, UNREACHABLE, REFUSED,
    BAD_STATUS). Optional one-way times come from reflectors that timestamp (STAMP); there
    `received_ns` is the reply's arrival minus the reflector's holding time (T3 − T2), so that
    `rtt_ns` is RFC 8762's round trip.
    """

    seq: int
    sent_ns: int
    received_ns: int | None
    outcome: Outcome
    forward_ns: int | None = None
    backward_ns: int | None = None
    status: int | None = None  # protocol status code where there is one (SIP)

    @property
    def rtt_ns(self) -> int | None:
        if self.received_ns is None:
            return None
        return self.received_ns - self.sent_ns


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """How to send one round."""

    count: int = 5
    interval_s: float = 1.0
    timeout_s: float = 1.0
    dscp: int = 0
    size: int = 56  # payload bytes
    source: str | None = None
    codec: str | None = None  # voice: payload size and packetisation come from the codec
    transport: str = "udp"  # sip_options: udp | tcp; traceroute: udp | icmp | tcp
    clock_synced: bool = False  # stamp/voice: trust the reflector's clock for one-way delays


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One round of packets to one target.

    `started_wall_ns` is the wall-clock time the round began (for storage and display);
    sample times are for differences only. `foreign` counts replies that did not belong to
    this round, by kind (e.g. ``{"wrong_nonce": 2, "truncated": 1}``).
    """

    kind: str
    target: Target
    started_wall_ns: int
    samples: tuple[Sample, ...]
    foreign: Mapping[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return sum(1 for s in self.samples if s.outcome is not Outcome.ERROR)

    @property
    def received(self) -> int:
        return sum(1 for s in self.samples if s.outcome is Outcome.OK)


class Prober(Protocol):
    """A prober: one kind of probe. Sends one round to one target; owns its sockets."""

    kind: str

    async def probe(self, target: Target, options: ProbeOptions) -> ProbeResult: ...

    async def close(self) -> None: ...


# The one map of probe kinds: kind → "module:Class". Config validation reads its keys; dispatch
# imports the class lazily through `make_prober` (no registration by import side effect).
PROBERS: Mapping[str, str] = MappingProxyType(
    {
        "icmp": "probes.icmp:IcmpProber",
        "stamp": "probes.stamp:StampProber",
        "udp_echo": "probes.udp_echo:UdpEchoProber",
        "voice": "probes.voice:VoiceProber",
        "tcp_connect": "probes.tcp_connect:TcpConnectProber",
        "sip_options": "probes.sip_options:SipOptionsProber",
        "traceroute": "probes.traceroute:TracerouteProber",
    }
)
KINDS: tuple[str, ...] = tuple(PROBERS)


def prober_class(kind: str) -> type[Any]:
    """The class implementing `kind`, imported on first use. Unknown kind → KeyError."""
    module_name, _, class_name = PROBERS[kind].partition(":")
    return cast(type[Any], getattr(importlib.import_module(module_name), class_name))


def make_prober(kind: str, **kwargs: Any) -> Prober:
    """A new prober of `kind` built with `kwargs` (e.g. ``socket_factory=`` for a lab netns)."""
    return cast(Prober, prober_class(kind)(**kwargs))
