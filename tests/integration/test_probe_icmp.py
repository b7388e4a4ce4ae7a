"""ICMP prober on loopback: real sockets, kernel timestamps, many rounds on one socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

import pytest

from probes.base import Outcome, ProbeOptions, ProbeSetupError, Target, make_prober
from probes.icmp import IcmpProber

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP sockets need root")
FAST = ProbeOptions(count=5, interval_s=0.01, timeout_s=1.0)


async def test_loopback_round_has_kernel_timed_rtts() -> None:
    prober = make_prober("icmp")
    try:
        result = await prober.probe(Target("127.0.0.1"), FAST)
    finally:
        await prober.close()
    assert [s.outcome for s in result.samples] == [Outcome.OK] * 5
    assert all(0 < (s.rtt_ns or 0) < 100_000_000 for s in result.samples)
    assert result.foreign == {}


async def test_ipv6_loopback() -> None:
    prober = IcmpProber()
    try:
        result = await prober.probe(Target("::1"), FAST)
    finally:
        await prober.close()
    assert result.received == 5


async def test_many_targets_pipelined_on_one_socket() -> None:
    prober = IcmpProber()
    opts = ProbeOptions(count=50, interval_s=0, timeout_s=1.0, dscp=46)
    try:
        results = await asyncio.gather(
            *(prober.probe(Target(f"127.0.0.{i}"), opts) for i in range(1, 21))
        )
        assert len(prober._channels) == 1
    finally:
        await prober.close()
    assert sum(r.received for r in results) == 20 * 50
    assert all(r.foreign == {} for r in results)


async def test_socket_factory_is_used() -> None:
    calls: list[tuple[int, int, int]] = []

    def factory(family: int, type_: int, proto: int) -> socket.socket:
        calls.append((family, type_, proto))
        return socket.socket(family, type_, proto)

    prober = IcmpProber(socket_factory=factory)
    try:
        assert (await prober.probe(Target("127.0.0.1"), FAST)).received == 5
    finally:
        await prober.close()
    assert calls == [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)]


def _ping_group_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    return lo, hi


async def test_datagram_socket_when_raw_is_refused() -> None:
    def no_raw(family: int, type_: int, proto: int) -> socket.socket:
        if type_ == socket.SOCK_RAW:
            raise PermissionError(1, "Operation not permitted")
        return socket.socket(family, type_, proto)

    lo, hi = _ping_group_range()
    prober = IcmpProber(socket_factory=no_raw)
    try:
        if not lo <= os.getgid() <= hi:
            with pytest.raises(ProbeSetupError, match="ping_group_range"):
                await prober.probe(Target("127.0.0.1"), FAST)
            return
        assert (await prober.probe(Target("127.0.0.1"), FAST)).received == 5
    finally:
        await prober.close()


def test_cli_json_summary() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "icmp", "127.0.0.1", "-c", "10", "-i", "0.01",
         "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    assert doc["target"] == "127.0.0.1" and doc["sent"] == 10 and doc["received"] == 10
    assert doc["loss_pct"] == 0
    assert set(doc["rtt_ms"]) == {"min", "avg", "p50", "p90", "p99", "max", "stddev"}
    assert doc["rtt_ms"]["min"] > 0 and doc["jitter_ms"] is not None


def test_cli_text_summary() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "icmp", "127.0.0.1", "-c", "3", "-i", "0.01"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "3 packets transmitted, 3 received, 0% packet loss" in out
    assert "rtt min/avg/max/stddev" in out
