"""bench/probe_scale: N loopback paths at one round a second, `probing.workers` 1 against 2.

The controller's probe path as in bench/scheduler.py — the daemon's `Scheduler` → `probe_slot`
in one process (workers 1), or `ProbeWorkers` → N `netopt.daemon.probe_worker` processes whose
rounds come back over their socketpairs into `Daemon.take_rounds` (workers 2) — then store
queue + writer thread, window, change detector and metrics in the daemon; no planner, route API
or pushers (10,000 PoPs would be a planning benchmark). Targets: N addresses in 127.1.0.0/16,
ICMP, 1 or 5 packets a round 20 ms apart, timeout 300 ms, one round a second each.

Reported per run: rounds/s accounted by the daemon, CPU per round (the daemon's process plus its
workers', user + kernel; the workers' share apart), how much of the machine that is, late
rounds (started ≥ 100 ms — one phase step — after their grid instant; and rounds that never
ran: expected − done, with the scheduler's skipped count), answered share of packets. Peer,
same run: fping on the same targets for the same seconds at the same packet rate
(`fping -C S -p 1000 -i 0 -t 300`: a packet to every target each second; for 5 packets a
round `-C 5S -p 200`: the same packets per second, spread over the second rather than 20 ms
apart), its CPU per round and the rounds it answered per second.

    .venv/bin/python bench/probe_scale.py --targets 10000 --count 1 5 --workers 1 2 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scheduler import address, config
from netopt.config import parse_config
from netopt.daemon import shard
from netopt.daemon.probe_workers import ProbeWorkers
from netopt.daemon.probing import Ran, jobs_from_config
from netopt.daemon.schedule import Scheduler, phase_s
from netopt.daemon.wiring import Daemon
from probes.stats import RoundDigest, RoundSummary, RttSummary

LATE_MS = 100.0
WARMUP_S = float(
    os.environ.get("PROBE_SCALE_WARMUP_S", "6")
)  # workers import numpy and netopt, open their sockets, send their first rounds


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tally:
    """What the daemon accounted: rounds, their lateness after the grid, packets."""

    def __init__(self, daemon: Daemon, phases: dict[str, float]) -> None:
        self.rounds, self.late, self.sent, self.received = 0, 0, 0, 0
        self.lateness_ms: list[float] = []
        self._take, self._phases = daemon.take_rounds, phases

    def take(self, rounds: Sequence[Ran]) -> None:
        for r in rounds:
            if r.summary is None:
                continue
            late = ((r.summary.started_wall_ns / 1e9 - self._phases[r.job.job_id]) % 1.0) * 1000
            self.lateness_ms.append(late)
            self.late += late >= LATE_MS
            self.rounds += 1
            self.sent += r.summary.digest.sent
            self.received += r.summary.digest.received
        self._take(rounds)


async def run_netopt(n: int, seconds: float, db: str, count: int, workers: int) -> dict[str, float]:
    daemon = Daemon(parse_config(config(n, db, count)))
    jobs = jobs_from_config(daemon.config)
    tally = Tally(daemon, {j.job_id: phase_s(j.job_id, j.interval_s) for j in jobs})
    daemon.take_rounds = tally.take  # type: ignore[method-assign]
    skipped, failed = [0], list[str]()
    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(daemon.store.run(0.5))
        if workers > 1:

            def skip(k: int) -> None:
                skipped[0] += k

            pool = ProbeWorkers(tally.take, failed.append, skip, tg.create_task)
            pool.resize(workers)
            pool.sync(jobs)
        else:
            sched = Scheduler(daemon.probe_slot, tg.create_task, time.time)
            sched.start(jobs)
        await asyncio.sleep(WARMUP_S)
        gc.freeze()
        pids = list(pool.pids.values()) if workers > 1 else []
        before = (tally.rounds, tally.late, tally.sent, tally.received, len(tally.lateness_ms))
        s0 = skipped[0] if workers > 1 else sched.skipped
        c0, w0, t0 = time.process_time(), sum(map(_proc_cpu_s, pids)), time.monotonic()
        await asyncio.sleep(seconds)
        c1, w1, t1 = time.process_time(), sum(map(_proc_cpu_s, pids)), time.monotonic()
        after = (tally.rounds, tally.late, tally.sent, tally.received)
        s1 = skipped[0] if workers > 1 else sched.skipped
        if workers > 1:
            pool.resize(0)
        else:
            sched.shutdown()
        await asyncio.sleep(0.5)
        writer.cancel()
    await daemon.pool.close()
    daemon.store.close()
    done, late, sent, received = (a - b for a, b in zip(after, before, strict=False))
    lat = sorted(tally.lateness_ms[before[4] :])
    wall = t1 - t0
    cpu = (c1 - c0) + (w1 - w0)
    return {
        "rounds_per_s": done / wall,
        "cpu_per_round_us": cpu / max(1, done) * 1e6,
        "workers_cpu_share": (w1 - w0) / max(cpu, 1e-9),
        "cores": cpu / wall,
        "late": late,
        "missing": max(0.0, n * wall - done),
        "skipped": s1 - s0,
        "late_p50_ms": lat[len(lat) // 2] if lat else float("nan"),
        "late_p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "answered": received / max(1, sent),
        "failures": len(failed),
    }


# fping 5.1 runs out of sequence numbers after 65,535 packets in one process ("not enough
# sequence numbers available", whatever the rate: measured here at 5,000 and 1,000
# packets/s), so the peer is several fping processes side by side, each with at most this
# many packets in the run.
FPING_MAX_PACKETS = 60_000


def run_fping(n: int, seconds: int, count: int) -> dict[str, float]:
    """fping on the same targets at the same packets per second for `seconds`."""
    procs = max(1, math.ceil(n * count * seconds / FPING_MAX_PACKETS))
    chunks = [[address(i) for i in range(k, n, procs)] for k in range(procs)]
    period_ms = 1000 // count
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    running = [
        subprocess.Popen(
            [
                "fping",
                "-q",
                "-C",
                str(seconds * count),
                "-p",
                str(period_ms),
                "-i",
                "0",
                "-t",
                "300",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in chunks
    ]
    outs = [p.communicate(("\n".join(c) + "\n").encode(), timeout=seconds * 3 + 60)[1]
            for p, c in zip(running, chunks, strict=True)]  # fmt: skip
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    answered = sum(
        1 for err in outs for line in err.decode().splitlines() if " : " in line
        for v in line.split(" : ", 1)[1].split() if v != "-"
    )  # fmt: skip
    rounds = n * seconds
    for p, err in zip(running, outs, strict=True):
        if p.returncode not in (0, 1):  # 1: some target did not answer
            print(f"fping exited {p.returncode}: {err.decode()[-300:]!r}", flush=True)
    # its last round starts at (seconds - 1/count) s: done within `seconds` = kept the pace
    return {
        "rounds_per_s": rounds / max(wall, seconds),
        "cpu_per_round_us": cpu / rounds * 1e6,
        "cores": cpu / wall,
        "answered": answered / (rounds * count),
        "wall_s": wall,
        "procs": procs,
    }


def daemon_side(n: int, count: int, rounds_per_path: int = 60) -> dict[str, float]:
    """The daemon's share without probing, on synthetic rounds of `count` packets (steady RTTs
    with 1 % noise): decoding a worker's frames + `take_rounds`, and of that the change
    detector alone (`PathChanges.update`), CPU per round over the last half of the rounds (the
    detector's reference then holds hundreds of RTTs, as on a path that has run for minutes)."""
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(parse_config(config(n, str(Path(tmp) / "b.db"), count)))
        jobs = jobs_from_config(daemon.config)
        by_id = {j.job_id: j for j in jobs}
        spent, detector = 0.0, 0.0
        update = daemon.changes.update

        def timed(*args: Any) -> Any:
            nonlocal detector
            t = time.process_time()
            try:
                return update(*args)
            finally:
                detector += time.process_time() - t

        daemon.changes.update = timed  # type: ignore[method-assign]
        base_ns = time.time_ns()
        for k in range(rounds_per_path):
            rtts = [[1.0 + rng.random() * 0.01 for _ in range(count)] for _ in jobs]
            body = shard.encode_rounds([
                (j.job_id, RoundSummary(base_ns + k * 10**9,
                                        RoundDigest(count, count, RttSummary(*(r[:1] * 7)), 0.0,
                                                    {"ok": count}), [v / 1000 for v in r]))
                for j, r in zip(jobs, rtts, strict=True)
            ])[shard.HEADER.size :]  # fmt: skip
            if k == rounds_per_path // 2:
                spent, detector = 0.0, 0.0
            t0 = time.process_time()
            daemon.take_rounds([Ran(by_id[i], s) for i, s in shard.decode_rounds(body)])
            spent += time.process_time() - t0
        daemon.store.close()
    done = n * (rounds_per_path - rounds_per_path // 2)
    return {"daemon_us": spent / done * 1e6, "detector_us": detector / done * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--count", type=int, nargs="+", default=[1, 5], help="packets per round")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (raw ICMP sockets)")
    logging.basicConfig(level=logging.ERROR)  # an overloaded loop makes APScheduler chatty
    n = args.targets
    print(f"{n} targets, {os.cpu_count()} cores, {args.seconds} s a run", flush=True)
    print(f"{'run':>16} {'rounds/s':>9} {'cpu/round':>10} {'cores':>6} {'workers':>8} "
          f"{'late':>7} {'missing':>8} {'skipped':>8} {'late p50':>9} {'p99':>8} "
          f"{'answered':>8} {'load':>5}", flush=True)  # fmt: skip
    for count in args.count:
        results = {}
        for workers in args.workers:
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as tmp:
                r = asyncio.run(run_netopt(n, args.seconds, str(Path(tmp) / "b.db"), count,
                                           workers))  # fmt: skip
            results[workers] = r
            print(
                f"{f'netopt w{workers} c{count}':>16} {r['rounds_per_s']:>9.0f} "
                f"{r['cpu_per_round_us']:>8.0f}us {r['cores']:>6.2f} "
                f"{r['workers_cpu_share']:>8.0%} {r['late']:>7.0f} {r['missing']:>8.0f} "
                f"{r['skipped']:>8.0f} {r['late_p50_ms']:>7.1f}ms {r['late_p99_ms']:>6.1f}ms "
                f"{r['answered']:>8.2%} {load:>5.2f}"
                + (f" failures={r['failures']:.0f}" if r["failures"] else ""),
                flush=True,
            )
        load = os.getloadavg()[0]
        f = run_fping(n, args.seconds, count)
        print(
            f"{f'fping c{count}':>16} {f['rounds_per_s']:>9.0f} {f['cpu_per_round_us']:>8.0f}us "
            f"{f['cores']:>6.2f} {'':>8} {'':>7} {'':>8} {'':>8} {'':>9} {'':>8} "
            f"{f['answered']:>8.2%} {load:>5.2f}  ({f['procs']} procs, wall {f['wall_s']:.1f} s)",
            flush=True,
        )
        for workers, r in results.items():
            print(f"  c{count} w{workers}: rounds/s {r['rounds_per_s'] / n:.2f} of the "
                  f"offered, CPU per round {r['cpu_per_round_us'] / f['cpu_per_round_us']:.1f}x "
                  f"fping's", flush=True)  # fmt: skip
        if 1 in results and len(results) > 1:
            for workers, r in results.items():
                if workers != 1:
                    base = results[1]
                    print(f"  c{count} w{workers}/w1: rounds/s "
                          f"{r['rounds_per_s'] / base['rounds_per_s']:.2f}x, CPU per round "
                          f"{r['cpu_per_round_us'] / base['cpu_per_round_us']:.2f}x",
                          flush=True)  # fmt: skip
        side = daemon_side(min(n, 2000), count)
        print(f"  c{count} daemon side, no probing ({min(n, 2000)} paths, steady detector): "
              f"{side['daemon_us']:.0f}us a round of which the change detector "
              f"{side['detector_us']:.0f}us -> one daemon core accounts at most "
              f"{1e6 / side['daemon_us']:.0f} rounds/s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
