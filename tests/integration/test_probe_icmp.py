"""ICMP prober on loopback: real sockets, kernel timestamps, many rounds on one socket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

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


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def unreachable_router() -> Iterator[str]:
    """Namespace `src` behind a router that answers 198.18.251.0/24 with ICMP unreachable."""
    tag = f"nopt-ic{os.getpid() % 100000}"
    src, rtr = f"{tag}-s", f"{tag}-r"
    try:
        for ns in (src, rtr):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "ics0", "netns", src, "type", "veth", "peer", "icr0", "netns", rtr)
        _ip("-n", src, "addr", "add", "198.18.252.1/30", "dev", "ics0")
        _ip("-n", rtr, "addr", "add", "198.18.252.2/30", "dev", "icr0")
        _ip("-n", src, "link", "set", "ics0", "up")
        _ip("-n", rtr, "link", "set", "icr0", "up")
        _ip("-n", src, "route", "add", "default", "via", "198.18.252.2")
        _ip("-n", rtr, "route", "add", "unreachable", "198.18.251.0/24")
        # forward, and answer every packet (the default rate limit allows ~1 error/s per peer)
        subprocess.run(["ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv4.icmp_ratelimit=0"], check=True)  # fmt: skip
        subprocess.run(["ip", "netns", "exec", src, "sysctl", "-qw",
                        "net.ipv4.ping_group_range=0 2147483647"], check=True)  # fmt: skip
        yield src
    finally:
        for ns in (src, rtr):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "ping-socket"])
async def test_icmp_unreachable_is_an_outcome_not_loss(unreachable_router: str, raw: bool) -> None:
    from netopt.lab.netns import socket_in

    def factory(family: int, type_: int, proto: int) -> socket.socket:
        if type_ == socket.SOCK_RAW and not raw:
            raise PermissionError(1, "Operation not permitted")
        return socket_in(unreachable_router, family, type_, proto)

    prober = IcmpProber(socket_factory=factory)
    opts = ProbeOptions(count=3, interval_s=0.05, timeout_s=1.0)
    try:
        unreachable = await prober.probe(Target("198.18.251.9"), opts)
        router = await prober.probe(Target("198.18.252.2"), opts)
    finally:
        await prober.close()
    assert [s.outcome for s in unreachable.samples] == [Outcome.UNREACHABLE] * 3
    assert all(s.rtt_ns is not None and s.rtt_ns > 0 for s in unreachable.samples)
    assert router.received == 3  # the same socket still works for a reachable target


def test_without_privilege_the_cli_says_how_to_grant_it() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop privileges")
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "netopt", "probe", "icmp", "127.0.0.1", "-c", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "netopt:" not in done.stderr:
        pytest.skip(f"the checkout is not usable by an unprivileged user: {done.stderr[-200:]}")
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    if lo <= 65534 <= hi:
        pytest.skip("ping sockets are allowed for nobody here")
    assert done.returncode == 1
    assert "CAP_NET_RAW" in done.stderr and "ping_group_range" in done.stderr
    assert "Traceback" not in done.stderr
