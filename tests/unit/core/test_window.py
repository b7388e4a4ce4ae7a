"""Window stats: order kept for late (replayed) rounds, expiry, and priming from the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netopt.config import parse_config
from netopt.core.window import WindowStats
from netopt.daemon.wiring import Daemon
from netopt.store import RoundRecord, SqliteStore

NOW = 1_700_000_000.0


def rec(t_s: float, dst: str = "fra", p50: float = 10.0) -> RoundRecord:
    return RoundRecord(int(t_s * 1e9), "lagos", dst, "icmp", 5, 5, p50, p50, p50, p50, p50, 1.0)


def test_late_rounds_are_kept_in_order_and_expire() -> None:
    w = WindowStats(60)
    for t in (NOW - 10, NOW - 5, NOW - 90, NOW - 7):  # an old round replayed by an agent
        w.add(rec(t))
    (s,) = w.stats(int(NOW * 1e9))
    assert s.samples == 15  # the 90 s old round is out of the window, the others in
    assert w.last_seen_ns("lagos", "fra") == int((NOW - 5) * 1e9)


async def test_a_restarted_daemon_primes_its_window_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    now = time.time()
    store = SqliteStore(db)
    store.add(rec(now - 20, p50=30.0))
    store.add(rec(now - 10, p50=50.0))
    store.add(rec(now - 500, p50=900.0))  # outside the 60 s window
    await store.flush()
    store.close()
    cfg = parse_config({
        "regions": [{"id": "lagos", "address": "127.0.0.1"}],
        "pops": [{"id": "fra", "role": "core", "address": "127.0.0.2"}],
        "destinations": ["fra"],
        "probes": [{"kind": "icmp", "from": "lagos", "to": ["fra"], "timeout_s": 0.5}],
        "store": {"url": f"sqlite:///{db}"},
    })  # fmt: skip
    daemon = Daemon(cfg, wall_clock=lambda: now)
    try:
        assert daemon.path_stats() == []  # building a daemon reads nothing: run() primes
        await daemon.prime()
        (s,) = daemon.path_stats()
        assert (s.src, s.dst, s.samples) == ("lagos", "fra", 10)
        assert s.rtt_ms == 40.0  # median of the two rounds' medians; the old one forgotten
        assert not daemon.observed.unmeasured  # no need to wait for a first round on a primed path
    finally:
        await daemon.store.aclose()


def test_a_path_silent_for_the_whole_window_is_left_out_and_named() -> None:
    w = WindowStats(10)
    lost = RoundRecord(int((NOW - 2) * 1e9), "lagos", "los", "icmp", 5, 0, *[None] * 5, None)
    w.add(lost)
    w.add(rec(NOW - 3))
    stats = w.stats(int(NOW * 1e9))  # used to raise: a PathStats with an infinite RTT
    assert [(s.src, s.dst) for s in stats] == [("lagos", "fra")]
    assert w.silent(int(NOW * 1e9)) == [("lagos", "los")]
    w.add(rec(NOW - 1, dst="los"))  # one answer is enough to plan with again
    assert {s.dst for s in w.stats(int(NOW * 1e9))} == {"fra", "los"}
    assert w.silent(int(NOW * 1e9)) == []


def test_samples_count_every_packet_sent_in_the_window() -> None:
    w = WindowStats(10)
    for t in (NOW - 9, NOW - 5, NOW - 1):
        w.add(RoundRecord(int(t * 1e9), "lagos", "fra", "icmp", 5, 4, 10, 10, 10, 10, 10, 1.0))
    (s,) = w.stats(int(NOW * 1e9))
    assert s.samples == 15 and s.loss_pct == pytest.approx(20.0)


def test_running_totals_outlive_the_window_and_count_each_packet_once() -> None:
    w = WindowStats(10)
    w.add(RoundRecord(int((NOW - 30) * 1e9), "lagos", "fra", "icmp", 5, 3, 10, 10, 10, 10, 10, 1.0))
    for t in (NOW - 5, NOW - 1):
        w.add(RoundRecord(int(t * 1e9), "lagos", "fra", "icmp", 5, 4, 10, 10, 10, 10, 10, 1.0))
    for _ in range(3):  # however often the stats are read
        (s,) = w.stats(int(NOW * 1e9))
    assert (s.samples, s.sent_total, s.lost_total) == (10, 15, 4)


def test_a_path_that_answered_before_and_now_is_silent_shows_total_loss() -> None:
    w = WindowStats(10)
    w.add(rec(NOW - 30, dst="los", p50=42.0))  # answered, long ago
    for t in (NOW - 6, NOW - 2):
        w.add(RoundRecord(int(t * 1e9), "lagos", "los", "icmp", 5, 0, *[None] * 5, None))
    (s,) = w.stats(int(NOW * 1e9))
    assert (s.rtt_ms, s.loss_pct, s.samples, s.sent_total, s.lost_total) == (
        42.0,
        100.0,
        10,
        15,
        10,
    )
    assert w.silent(int(NOW * 1e9)) == [("lagos", "los")]
