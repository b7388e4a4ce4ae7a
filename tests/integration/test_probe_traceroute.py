"""Traceroute on loopback and across a two-hop chain of private network namespaces
(198.18.x addresses, created and removed by the test): hops, flow stability, DSCP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from probes.base import Outcome, ProbeOptions, Target
from probes.traceroute import TracerouteProber

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scapy raw sockets and netns need root")


@pytest.mark.parametrize("transport", ["udp", "icmp", "tcp"])
async def test_loopback_is_one_hop(transport: str) -> None:
    prober = TracerouteProber(max_hops=4)
    opts = ProbeOptions(count=2, timeout_s=1.0, transport=transport)
    try:
        trace = await prober.trace(Target("127.0.0.1"), opts)
        result = await prober.probe(Target("127.0.0.1"), opts)
    finally:
        await prober.close()
    assert trace.reached and [h.address for h in trace.hops] == ["127.0.0.1"]
    assert all(r is not None and r > 0 for r in trace.hops[0].rtts_ns)
    assert [s.outcome for s in result.samples] == [Outcome.OK, Outcome.OK]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def chain() -> Iterator[str]:
    """src ── router ── dst, in three namespaces; yields the source namespace's name."""
    tag = f"nopt-tr{os.getpid() % 100000}"
    src, rtr, dst = f"{tag}-s", f"{tag}-r", f"{tag}-d"
    try:
        for ns in (src, rtr, dst):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "trs0", "netns", src, "type", "veth", "peer", "trr0", "netns", rtr)
        _ip("link", "add", "trd0", "netns", dst, "type", "veth", "peer", "trr1", "netns", rtr)
        for ns, dev, addr in (
            (src, "trs0", "198.18.250.1/30"),
            (rtr, "trr0", "198.18.250.2/30"),
            (rtr, "trr1", "198.18.250.5/30"),
            (dst, "trd0", "198.18.250.6/30"),
        ):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", src, "route", "add", "default", "via", "198.18.250.2")
        _ip("-n", dst, "route", "add", "default", "via", "198.18.250.5")
        subprocess.run(["ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)  # fmt: skip
        yield src
    finally:
        for ns in (src, rtr, dst):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("transport", ["udp", "icmp", "tcp"])
@pytest.mark.parametrize("how", ["netns", "socket_factory"])
async def test_two_hops_through_a_router(chain: str, transport: str, how: str) -> None:
    from netopt.lab.netns import socket_in

    if how == "netns":
        prober = TracerouteProber(netns=chain, max_hops=5)
    else:
        prober = TracerouteProber(
            socket_factory=lambda f, t, p: socket_in(chain, f, t, p), max_hops=5
        )
    opts = ProbeOptions(count=3, timeout_s=1.0, transport=transport, dscp=46)
    try:
        trace = await prober.trace(Target("198.18.250.6"), opts)
    finally:
        await prober.close()
    assert [h.address for h in trace.hops] == ["198.18.250.2", "198.18.250.6"]
    assert trace.reached and not trace.hops[0].reached
    assert all(r is not None for h in trace.hops for r in h.rtts_ns)
