"""STAMP and UDP echo probers against a real `netopt reflector` process on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from probes.base import Outcome, ProbeOptions, Target, make_prober
from probes.stats import round_stats

OPTS = ProbeOptions(count=10, interval_s=0.005, timeout_s=1.0)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reflector(mode: str) -> Iterator[int]:
    port = _free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "netopt", "reflector", "--listen", f"127.0.0.1:{port}",
         "--mode", mode],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line, line
        yield port
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=5) == 0  # SIGTERM is a clean stop
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def stamp_port() -> Iterator[int]:
    yield from _reflector("stamp")


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    yield from _reflector("echo")


async def test_stamp_round_with_one_way_delays(stamp_port: int) -> None:
    prober = make_prober("stamp")
    opts = ProbeOptions(count=10, interval_s=0.005, timeout_s=1.0, clock_synced=True, dscp=46)
    result = await prober.probe(Target("127.0.0.1", stamp_port), opts)
    assert result.received == 10 and result.foreign == {}
    for s in result.samples:
        assert s.forward_ns is not None and s.backward_ns is not None and s.rtt_ns is not None
        # same host, same clock: the two legs fit inside the round trip
        assert 0 <= s.forward_ns + s.backward_ns <= s.rtt_ns
    stats = round_stats(result)
    assert stats.forward_ms is not None and stats.to_json()["forward_ms"] is not None


async def test_stamp_without_clock_sync_reports_rtt_only(stamp_port: int) -> None:
    result = await make_prober("stamp").probe(Target("127.0.0.1", stamp_port), OPTS)
    assert result.received == 10
    assert all(s.forward_ns is None for s in result.samples)


async def test_udp_echo(echo_port: int) -> None:
    prober = make_prober("udp_echo")
    results = await asyncio.gather(
        *(prober.probe(Target("127.0.0.1", echo_port), OPTS) for _ in range(3))
    )
    assert [r.received for r in results] == [10, 10, 10]


@pytest.mark.parametrize("kind", ["stamp", "udp_echo"])
async def test_closed_port_is_refused_not_lost(kind: str) -> None:
    port = _free_udp_port()  # nothing listens there now
    # paced: the kernel's global ICMP error budget (1000/s, burst 50) is shared with the machine
    opts = ProbeOptions(count=4, interval_s=0.05, timeout_s=1.0)
    result = await make_prober(kind).probe(Target("127.0.0.1", port), opts)
    assert {s.outcome for s in result.samples} == {Outcome.REFUSED}
    assert round_stats(result).loss_ratio == 0


async def test_hostile_peer_truncated_duplicate_late() -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        port = peer.getsockname()[1]
        opts = ProbeOptions(count=3, interval_s=0.25, timeout_s=0.2)
        task = asyncio.create_task(make_prober("udp_echo").probe(Target("127.0.0.1", port), opts))
        first, addr = await loop.sock_recvfrom(peer, 2048)
        peer.sendto(b"garbage", addr)  # truncated
        peer.sendto(first, addr)  # the reply to seq 0
        peer.sendto(first, addr)  # and its duplicate
        second, _ = await loop.sock_recvfrom(peer, 2048)  # seq 1: no answer in time
        third, _ = await loop.sock_recvfrom(peer, 2048)  # seq 2, 0.25 s later
        peer.sendto(second, addr)  # late: seq 1 timed out 0.05 s ago
        peer.sendto(third, addr)
        result = await task
    assert [s.outcome for s in result.samples] == [Outcome.OK, Outcome.TIMEOUT, Outcome.OK]
    assert result.foreign == {"truncated": 1, "duplicate": 1, "late": 1}


def test_cli_stamp_json(stamp_port: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "stamp", f"127.0.0.1:{stamp_port}", "-c", "5",
         "-i", "0.01", "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    assert doc["kind"] == "stamp" and doc["received"] == 5
