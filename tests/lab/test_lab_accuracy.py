"""The lab's impairments are what the profile says, measured with real programs (issue #3).

Each check compares a measurement with the model's own prediction (`predicted_rtt_ms`,
`round_trip_loss`, the Gilbert–Elliott burst length) inside a 99 % interval, so a broken
stage fails and a correct one passes ~99 % of the time or better.
"""

from __future__ import annotations

import math
import socket
import statistics
import struct
import threading
import time
from typing import Any

import pytest

from netopt.lab import Lab, netns
from netopt.lab.impair import predicted_rtt_ms, round_trip_loss
from netopt.lab.profile import LinkParams
from tests.lab.conftest import STATISTICAL, LabFactory, binomial_interval, parse_ping, ping

pytestmark = pytest.mark.lab

Z99 = 2.576

WORLD = {
    "nodes": [
        {"name": "a", "role": "region"},
        {"name": "b", "role": "pop"},
        {"name": "c", "role": "pop"},
        {"name": "d", "role": "pop"},
        {"name": "e", "role": "region"},
    ],
    "links": [
        {"a": "a", "b": "b", "delay_ms": 40, "jitter_ms": 5, "loss_pct": 3},
        {"a": "a", "b": "c", "delay_ms": 10},
        {"a": "a", "b": "d", "delay_ms": 30, "jitter_ms": 3, "loss_pct": 5},
        # one-way bursty loss e → b, clean way back
        {"a": "e", "b": "b", "delay_ms": 1, "burst": {"p": 0.05, "r": 0.3}, "directed": True},
        {"a": "b", "b": "e", "delay_ms": 1, "directed": True},
        {"a": "e", "b": "c", "delay_ms": 5},
    ],
    "default_link": {"delay_ms": 2},
}


@pytest.fixture(scope="module")
def lab(lab_world: LabFactory) -> Lab:
    return lab_world(WORLD)


@STATISTICAL
def test_ping_1000_packets_match_delay_jitter_and_loss(lab: Lab) -> None:
    params = LinkParams(delay_ms=40, jitter_ms=5, loss_pct=3)
    replies = parse_ping(ping(lab, "a", "b", 1000, 0.02))
    rtts = [r.rtt_ms for r in replies]
    mean_ms, std_ms = predicted_rtt_ms(params, params)
    assert mean_ms == pytest.approx(80.0, abs=1e-6)
    assert std_ms == pytest.approx(math.sqrt(2) * 5.0, rel=1e-3)  # two independent jitters

    assert abs(statistics.fmean(rtts) - 80.0) <= 1.0
    lo, hi = binomial_interval(1000, round_trip_loss(params, params))
    assert lo <= 1000 - len(replies) <= hi, (1000 - len(replies), lo, hi)
    assert abs(statistics.stdev(rtts) - std_ms) <= 0.2 * std_ms, statistics.stdev(rtts)


def _udp_stream(lab: Lab, src: str, dst: str, count: int) -> list[int]:
    """Send `count` numbered datagrams src → dst (paced, ~10k/s); the sequence numbers received."""
    rx = netns.socket_in(lab.netns(dst), socket.AF_INET, socket.SOCK_DGRAM)
    tx = netns.socket_in(lab.netns(src), socket.AF_INET, socket.SOCK_DGRAM)
    got: list[int] = []
    with rx, tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind((lab.address(dst), 0))
        rx.setblocking(False)
        dest = rx.getsockname()

        def drain() -> None:
            while True:
                try:
                    got.append(struct.unpack("!I", rx.recv(64)[:4])[0])
                except BlockingIOError:
                    return

        for start in range(0, count, 20):
            for seq in range(start, min(count, start + 20)):
                tx.sendto(struct.pack("!I", seq), dest)
            time.sleep(0.002)
            drain()
        time.sleep(0.3)
        drain()
    return got


def _burst_lengths(received: list[int], count: int) -> list[int]:
    lost = [True] * count
    for seq in received:
        lost[seq] = False
    bursts, run = [], 0
    for is_lost in lost:
        if is_lost:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    if run:
        bursts.append(run)
    return bursts


@STATISTICAL
def test_burst_lengths_follow_gilbert_elliott(lab: Lab) -> None:
    count, r = 6000, 0.3
    before = _direction(lab, "e", "b")
    received = _udp_stream(lab, "e", "b", count)
    after = _direction(lab, "e", "b")
    assert len(set(received)) == len(received)
    # every missing datagram was dropped by the loss model, not lost elsewhere
    assert after["dropped"] - before["dropped"] == count - len(received)
    bursts = _burst_lengths(received, count)
    assert len(bursts) > 100, len(bursts)
    mean_len = 1.0 / r  # geometric: a bad state lasts 1/r packets on average
    half_width = Z99 * math.sqrt((1.0 - r) / r**2 / len(bursts))
    assert abs(statistics.fmean(bursts) - mean_len) <= half_width, statistics.fmean(bursts)


def _direction(lab: Lab, a: str, b: str) -> dict[str, Any]:
    for row in lab._control({"op": "status"})["directions"]:
        if (row["a"], row["b"]) == (a, b):
            return dict(row)
    return {"forwarded": 0, "dropped": 0}


def _set_delay_latency_s(lab: Lab) -> float:
    """Ping e → c at 10 ms spacing, change the delay 5 → 60 ms, return when it took effect.

    A reply with an RTT well above the old 10 ms crossed the stage after the change; that
    crossing was at most (send time + old one-way delay), an upper bound on the latency.
    """
    lab.set_link("e", "c", delay_ms=5)
    out: list[str] = []
    runner = threading.Thread(
        target=lambda: out.append(ping(lab, "e", "c", 150, 0.01, "-D")), daemon=True
    )
    runner.start()
    time.sleep(0.6)
    t_set = time.time()
    lab.set_link("e", "c", delay_ms=60)
    runner.join(timeout=30)
    replies = parse_ping(out[0])
    changed = [p for p in replies if p.rtt_ms > 30.0 and p.received_unix_s is not None]
    assert changed, "the new delay never showed"
    first = min(changed, key=lambda p: p.seq)
    assert first.received_unix_s is not None
    sent = first.received_unix_s - first.rtt_ms / 1000.0
    late = [p for p in replies if p.seq > first.seq + 2]
    assert late and all(p.rtt_ms > 115.0 for p in late)  # both directions now at 60 ms
    return sent + 0.005 - t_set


@STATISTICAL
def test_set_takes_effect_within_100_ms(lab: Lab) -> None:
    latency = _set_delay_latency_s(lab)
    if latency > 0.1:  # one retry: a busy 2-core machine can stall ping itself
        latency = _set_delay_latency_s(lab)
    assert latency <= 0.1, f"lab set took effect after {latency * 1000:.0f} ms"


@STATISTICAL
def test_two_links_carry_independent_impairments(lab: Lab) -> None:
    outputs: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda t=t: outputs.__setitem__(t, ping(lab, "a", t, 300, 0.01)))
        for t in ("c", "d")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    clean = [p.rtt_ms for p in parse_ping(outputs["c"])]
    lossy = [p.rtt_ms for p in parse_ping(outputs["d"])]
    assert len(clean) == 300  # no loss leaks onto the clean link
    assert abs(statistics.fmean(clean) - 20.0) <= 1.0
    assert statistics.stdev(clean) < 1.0  # nor jitter
    d_params = LinkParams(delay_ms=30, jitter_ms=3, loss_pct=5)
    mean_ms, std_ms = predicted_rtt_ms(d_params, d_params)
    assert abs(statistics.fmean(lossy) - mean_ms) <= 1.0
    assert abs(statistics.stdev(lossy) - std_ms) <= 0.25 * std_ms
    lo, hi = binomial_interval(300, round_trip_loss(d_params, d_params))
    assert lo <= 300 - len(lossy) <= hi
