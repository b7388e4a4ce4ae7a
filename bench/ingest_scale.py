"""bench/ingest_scale: 1,000 agents × 20 targets × one round a second, SQLite vs PostgreSQL.

For each backend in the same run, a real `netopt serve` (no probes of its own) on loopback
with `store.url` pointing at a SQLite file or at a PostgreSQL 15 cluster this bench starts
(durable: fsync and synchronous_commit on, as SQLite's synchronous=FULL; tests/pg.py). Then N
simulated agents in this process, each measuring T targets once a second: every second an
agent has T new rounds and sends everything not yet acknowledged in one gzip batch (one in
flight per agent, as the real agent does, so a slow controller gets bigger batches rather
than more requests). Bounded: `--seconds` per backend. Reports rounds/s offered and stored
(counted in the store afterwards; the bench asserts stored = acknowledged), the
acknowledgement latency p50/p99, and PostgreSQL's figures as ratios of SQLite's. A third
run, `pg-async`, is the candidate of bench/pg_async_writes.py (the same write awaited on the
loop through an AsyncConnectionPool instead of the writer thread), on a fresh database of the
same cluster, as a ratio of `postgresql` (what netopt does).

    .venv/bin/python bench/ingest_scale.py --agents 1000 --targets 20 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netopt.api.batch import encode_batch  # noqa: E402
from netopt.store import RoundRecord  # noqa: E402
from tests.integration.conftest import free_port  # noqa: E402
from tests.pg import PgCluster, pg_missing  # noqa: E402


@dataclass
class Tally:
    acked: int = 0
    offered: int = 0
    batches: int = 0
    errors: int = 0
    lat_s: list[float] = field(default_factory=list)


def token(i: int) -> str:
    return f"bench-token-{i:05d}-xxxxxxxx"


async def agent(
    s: aiohttp.ClientSession, url: str, i: int, targets: int, until: float, tally: Tally
) -> None:
    """One agent: T rounds due every second (its phase spread by its number), all unacked
    rounds in one batch, one batch in flight."""
    backlog: list[RoundRecord] = []
    body, sending = b"", 0  # the batch in flight: resent as is until acknowledged
    headers = {"Authorization": f"Bearer {token(i)}", "Content-Encoding": "gzip"}
    next_round = time.monotonic() + (i % 1000) / 1000
    n = 0
    while True:
        now = time.monotonic()
        while next_round <= now and next_round < until:
            wall_ns = time.time_ns() - int((now - next_round) * 1e9)
            backlog += [RoundRecord(wall_ns, f"r{i}", f"p{t:02d}", "icmp", 5, 5, 1.0, 1.1,
                                    1.05, 1.2, 1.5, 0.05) for t in range(targets)]  # fmt: skip
            tally.offered += targets
            next_round += 1.0
        if not sending and backlog:
            body, sending = encode_batch(f"a{i}", f"a{i}:scale:{n}", backlog, len(backlog)), 1
            backlog, n = [], n + 1
        if sending:
            t = time.perf_counter()
            try:
                async with s.post(url + "/v1/ingest", data=body, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status == 200:
                        tally.lat_s.append(time.perf_counter() - t)
                        tally.acked += int(answer["stored"])
                        tally.batches += 1
                        sending = 0
                    else:
                        tally.errors += 1
            except (aiohttp.ClientError, TimeoutError):
                tally.errors += 1
            continue
        if next_round >= until:  # the window is `seconds` long for every agent
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            return
        await asyncio.sleep(max(0.0, next_round - time.monotonic()))


SERVE = [sys.executable, "-m", "netopt", "serve"]  # what the daemon does: writes on its thread
SERVE_ASYNC = [sys.executable, str(REPO / "bench" / "pg_async_writes.py"), "serve"]  # candidate


def controller(
    tmp: Path, url: str, agents: int, targets: int, serve: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = {
        "regions": [{"id": f"r{i}", "address": "127.0.0.1"} for i in range(agents)],
        "pops": [
            {"id": f"p{t:02d}", "role": "core", "address": f"127.0.1.{t + 1}"}
            for t in range(targets)
        ],
        "destinations": ["p00"],
        "store": {"url": url},
        "api": {"listen": f"127.0.0.1:{port}"},
        "agents": [{"id": f"a{i}", "site": f"r{i}", "token": token(i)} for i in range(agents)],
        "planner": {"min_replan_interval_s": 10.0},
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    log = (tmp / "c.log").open("w")
    argv = [*serve, "--config", str(tmp / "c.yaml")]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(api + "/healthz", timeout=0.5)
            return proc, api
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit((tmp / "c.log").read_text())


async def drive(api: str, agents: int, targets: int, seconds: float) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        await asyncio.gather(*(agent(s, api, i, targets, until, tally) for i in range(agents)))
    return tally


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (and of its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds of a process and its live children (the PostgreSQL server's processes)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(stat.parent.name) == root_pid or int(fields[1]) == root_pid:
                total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            continue
    return total


def stored_rows(url: str) -> int:
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        return int(db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT COUNT(*) FROM rounds").fetchone()
        return int(row[0]) if row else 0


def run_one(
    name: str, url: str, tmp: Path, args: argparse.Namespace, server_pid: int | None = None,
    serve: list[str] = SERVE,
) -> dict[str, float]:  # fmt: skip
    proc, api = controller(tmp, url, args.agents, args.targets, serve)
    try:
        before = (cpu_s(proc.pid), resource.getrusage(resource.RUSAGE_SELF),
                  tree_cpu_s(server_pid) if server_pid else 0.0)  # fmt: skip
        t = time.monotonic()
        tally = asyncio.run(drive(api, args.agents, args.targets, args.seconds))
        elapsed = time.monotonic() - t
        ctl_s = cpu_s(proc.pid) - before[0]
        me = resource.getrusage(resource.RUSAGE_SELF)
        bench_s = me.ru_utime + me.ru_stime - before[1].ru_utime - before[1].ru_stime
        db_s = (tree_cpu_s(server_pid) - before[2]) if server_pid else 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    stored = stored_rows(url)
    # every acknowledged round is stored; more only if an ack was lost (errors > 0)
    assert stored == tally.acked or (tally.errors and stored > tally.acked), (name, stored, tally)
    lat = sorted(tally.lat_s)
    return {"offered/s": tally.offered / elapsed, "stored/s": stored / elapsed,
            "batches/s": tally.batches / elapsed, "errors": float(tally.errors),
            "rounds/batch": stored / max(1, tally.batches),
            "ack p50 ms": lat[len(lat) // 2] * 1e3,
            "ack p99 ms": lat[int(0.99 * (len(lat) - 1))] * 1e3,
            "ctl µs/round": ctl_s / stored * 1e6, "db µs/round": db_s / stored * 1e6,
            "bench µs/round": bench_s / stored * 1e6}  # fmt: skip


RUNS = ("sqlite", "postgresql", "pg-async")


def run_all(tmp: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each of `args.runs` in its order; the PostgreSQL ones on one cluster, a database each."""
    results: dict[str, dict[str, float]] = {}
    cluster = PgCluster(durable=True, settings={"max_connections": "100"})
    try:
        cluster.start()
        pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        for name in args.runs:
            if name == "sqlite":
                results[name] = run_one(name, f"sqlite:///{tmp / 's.db'}", tmp, args)
                continue
            url = cluster.create_database(name.replace("-", "_"))
            serve = SERVE_ASYNC if name == "pg-async" else SERVE
            results[name] = run_one(name, url, tmp, args, pid, serve)
    finally:
        cluster.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", default=",".join(RUNS), help=f"which, in order: {', '.join(RUNS)}")
    args = ap.parse_args()
    args.runs = args.runs.split(",")
    if unknown := set(args.runs) - set(RUNS):
        raise SystemExit(f"--runs: unknown {', '.join(sorted(unknown))} (use {', '.join(RUNS)})")
    if (why := pg_missing()) is not None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory() as d:
        results = run_all(Path(d), args)
    keys = list(next(iter(results.values())))
    print(f"{args.agents} agents × {args.targets} targets × 1 round/s, {args.seconds:g} s each, "
          f"in this order")  # fmt: skip
    print(f"{'':>12}" + "".join(f"{k:>15}" for k in keys))
    for name, r in results.items():
        print(f"{name:>12}" + "".join(f"{r[k]:>15.1f}" for k in keys))
    for label, a, b in (("pg/sqlite", "postgresql", "sqlite"),
                        ("async/thread", "pg-async", "postgresql")):  # fmt: skip
        if a in results and b in results:
            top, bottom = results[a], results[b]
            cells = (f"{top[k] / bottom[k]:>15.2f}" if bottom[k] else f"{'-':>15}" for k in keys)
            print(f"{label:>12}" + "".join(cells))


if __name__ == "__main__":
    main()
