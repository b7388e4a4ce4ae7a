"""bench/ingest: rounds (and samples) per second a `netopt serve` stores from N agents.

Starts a real controller (`netopt serve`, no probes of its own) on loopback, then N simulated
agents in this process, each sending gzip batches of R rounds back to back (one in flight per
agent, as the real agent does) for a bounded time. Reports stored rounds/s (counted in the
controller's SQLite afterwards), samples/s (5 packets per round), and the acknowledgement
latency p50/p99 (the controller answers only after its commit). Peer, same run: the same rows
inserted straight into SQLite (WAL, synchronous=FULL, one transaction per batch) by one
thread: the ceiling the HTTP + validation path is measured against.

    .venv/bin/python bench/ingest.py --agents 1 4 16 --batch 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import astuple
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netopt.api.batch import encode_batch  # noqa: E402
from netopt.store import RoundRecord  # noqa: E402
from netopt.store.schema import ROUND_COLUMNS, migrate  # noqa: E402
from tests.integration.conftest import free_port  # noqa: E402

PACKETS = 5


def rounds_for(agent: int, start: int, n: int) -> list[RoundRecord]:
    t0 = int((time.time() - 30) * 1e9)
    return [RoundRecord(t0 + (start + k) * 1000, f"r{agent}", "fra", "icmp", PACKETS, PACKETS,
                        1.0, 1.1, 1.05, 1.2, 1.5, 0.05) for k in range(n)]  # fmt: skip


async def agent(url: str, i: int, batch: int, until: float, lat: list[float]) -> int:
    sent, n = 0, 0
    headers = {"Authorization": f"Bearer bench-token-{i:04d}-xxxxxxxx", "Content-Encoding": "gzip"}
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < until:
            body = encode_batch(f"a{i}", f"a{i}:bench:{n}", rounds_for(i, sent, batch), 0)
            t = time.perf_counter()
            async with s.post(url + "/v1/ingest", data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            lat.append(time.perf_counter() - t)
            sent += batch
            n += 1
    return sent


def controller(tmp: Path, agents: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port, db = free_port(), tmp / "c.db"
    cfg = {
        "regions": [{"id": f"r{i}", "address": "127.0.0.1"} for i in range(agents)],
        "pops": [{"id": "fra", "role": "core", "address": "127.0.0.2"}],
        "destinations": ["fra"],
        "store": {"url": f"sqlite:///{db}"},
        "api": {"listen": f"127.0.0.1:{port}"},
        "agents": [
            {"id": f"a{i}", "site": f"r{i}", "token": f"bench-token-{i:04d}-xxxxxxxx"}
            for i in range(agents)
        ],
        "planner": {"min_replan_interval_s": 1.0},
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "netopt", "serve", "--config",
                             str(tmp / "c.yaml")], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "c.log").open("w"))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import urllib.request

            urllib.request.urlopen(url + "/healthz", timeout=0.5)
            return proc, url, db
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit((tmp / "c.log").read_text())


def direct_sqlite(tmp: Path, batch: int, total: int) -> float:
    """Rows/s for the same rows straight into SQLite, one transaction per batch."""
    db = sqlite3.connect(tmp / "direct.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    migrate(db, "direct")
    sql = (f"INSERT OR IGNORE INTO rounds ({', '.join(ROUND_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(ROUND_COLUMNS))})")  # fmt: skip
    t = time.perf_counter()
    for start in range(0, total, batch):
        db.execute("BEGIN")
        db.executemany(sql, [astuple(r) for r in rounds_for(0, start, batch)])
        db.execute("COMMIT")
    return total / (time.perf_counter() - t)


async def drive(url: str, agents: int, batch: int, seconds: float) -> tuple[int, list[float]]:
    lat: list[float] = []
    until = time.monotonic() + seconds
    sent = await asyncio.gather(*(agent(url, i, batch, until, lat) for i in range(agents)))
    return sum(sent), lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"{'agents':>6} {'rounds/s':>9} {'samples/s':>10} {'ack p50':>8} {'ack p99':>8} "
          f"{'sqlite direct rows/s':>21} {'ratio':>6}")  # fmt: skip
    for n in args.agents:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            proc, url, db = controller(tmp, n)
            try:
                t = time.monotonic()
                sent, lat = asyncio.run(drive(url, n, args.batch, args.seconds))
                elapsed = time.monotonic() - t
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
            stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
            assert stored == sent, (stored, sent)
            lat.sort()
            rate = stored / elapsed
            direct = direct_sqlite(tmp, args.batch, min(stored, 200_000))
            print(f"{n:>6} {rate:>9.0f} {rate * PACKETS:>10.0f} {lat[len(lat) // 2] * 1e3:>6.1f}ms "
                  f"{lat[int(0.99 * (len(lat) - 1))] * 1e3:>6.1f}ms {direct:>21.0f} "
                  f"{rate / direct:>6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
