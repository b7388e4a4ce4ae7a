"""Traceroute's scapy side (probe → **wire**): flow-stable probe packets and the raw sockets
scapy sends and sniffs on, made by the caller's socket factory so they live in its namespace.
Runs on the traceroute worker threads only (scapy blocks)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from probes import _paris as paris
from probes.base import ProbeOptions, Target

SocketFactory = Callable[[int, int, int], socket.socket]
BASE_PORT = 33434
ETH_P_IP, SOL_PACKET, PACKET_AUXDATA = 0x0800, 263, 8
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def source_for(destination: str, factory: SocketFactory) -> str:
    """The source address the kernel would pick (in the socket's namespace); sends nothing."""
    with factory(socket.AF_INET, socket.SOCK_DGRAM, 0) as s:
        s.connect((destination, BASE_PORT))
        return str(s.getsockname()[0])


def packets(
    target: Target, options: ProbeOptions, max_hops: int, factory: SocketFactory
) -> list[Any]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw

    proto = options.transport.lower()
    flow = 0x4000 | (os.getpid() & 0x3FFF)  # constant source port / ICMP id for the trace
    source = options.source or source_for(target.address, factory)
    packets = []
    for ttl in range(1, max_hops + 1):
        for attempt in range(options.count):
            pid = paris.probe_id(ttl, attempt)
            ip = IP(src=source, dst=target.address, ttl=ttl, tos=options.dscp << 2, id=pid)
            if proto == "icmp":
                body = paris.icmp_compensation(flow, pid) + bytes(30)
                packets.append(ip / ICMP(type=8, id=flow, seq=pid) / Raw(body))
            elif proto == "tcp":
                packets.append(ip / TCP(sport=flow, dport=target.port or 80, flags="S", seq=pid))
            else:
                packets.append(
                    ip / UDP(sport=flow, dport=target.port or BASE_PORT) / Raw(bytes(32))
                )
    return packets


def raw_socket(factory: SocketFactory) -> Any:
    """scapy's L3RawSocket, its two sockets made by `factory` (so they live in its netns)."""
    from scapy.supersocket import L3RawSocket

    sock: Any = L3RawSocket()
    sock.outs.close()
    sock.ins.close()
    sock.outs = factory(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.outs.setsockopt(socket.SOL_IP, socket.IP_HDRINCL, 1)
    sock.ins = factory(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.ins.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.ins.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock
