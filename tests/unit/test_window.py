"""Window stats: order kept for late (replayed) rounds, expiry, and priming from the store."""

from __future__ import annotations

import time
from pathlib import Path

from netopt.app import Daemon
from netopt.config import parse_config
from netopt.store import RoundRecord, SqliteStore
from netopt.window import WindowStats

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
        (s,) = daemon.path_stats()
        assert (s.src, s.dst, s.samples) == ("lagos", "fra", 10)
        assert s.rtt_ms == 40.0  # median of the two rounds' medians; the old one forgotten
        assert not daemon._unmeasured  # no need to wait for a first round on a primed path
    finally:
        daemon.store.close()
