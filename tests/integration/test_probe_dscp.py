"""DSCP marking and source-address choice reach the wire (seen by the receiving side)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from probes.base import ProbeOptions, Target, make_prober

EF = 46
IP_RECVTOS, IP_TOS_CMSG = 13, 1


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw socket to watch requests needs root")
async def test_icmp_requests_carry_the_dscp() -> None:
    target = "127.0.0.77"
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as watch:
        watch.setblocking(False)
        prober = make_prober("icmp")
        try:
            await prober.probe(Target(target), ProbeOptions(count=3, interval_s=0.01, dscp=EF))
        finally:
            await prober.close()
        seen = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(seen) < 3:
            try:
                data = watch.recv(2048)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            ihl = (data[0] & 0x0F) * 4
            if socket.inet_ntoa(data[16:20]) == target and data[ihl] == 8:  # our requests
                seen.append(data[1] >> 2)
    assert seen == [EF, EF, EF]


async def test_udp_probes_carry_the_dscp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
        peer.setblocking(False)
        port = peer.getsockname()[1]
        opts = ProbeOptions(count=2, interval_s=0.01, timeout_s=0.2, dscp=34)  # AF41
        await make_prober("udp_echo").probe(Target("127.0.0.1", port), opts)
        marks = []
        while True:
            try:
                _data, anc, _flags, _addr = peer.recvmsg(2048, 64)
            except BlockingIOError:
                break
            marks += [p[0] >> 2 for lvl, kind, p in anc
                      if lvl == socket.IPPROTO_IP and kind == IP_TOS_CMSG]  # fmt: skip
    assert marks == [34, 34]


@pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP sockets need root")
async def test_icmp_from_a_chosen_source_address() -> None:
    prober = make_prober("icmp")
    try:
        opts = ProbeOptions(count=3, interval_s=0.01, source="127.0.0.5")
        result = await prober.probe(Target("127.0.0.1"), opts)
    finally:
        await prober.close()
    assert result.received == 3


async def test_udp_from_a_chosen_source_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        opts = ProbeOptions(count=1, interval_s=0.01, timeout_s=0.1, source="127.0.0.6")
        await make_prober("udp_echo").probe(Target("127.0.0.1", peer.getsockname()[1]), opts)
        _data, addr = peer.recvfrom(2048)
    assert addr[0] == "127.0.0.6"
