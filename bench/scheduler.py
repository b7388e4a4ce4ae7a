"""bench/scheduler: N targets at one round per second (5 ICMP packets each), all-in.

Runs the controller's real probe path — `netopt.daemon.schedule.Scheduler` (APScheduler on the
loop, one job per 100 ms phase slot) → `Daemon.probe_slot` (the ICMP prober's batches, round
digests, metrics, store queue, window) with the store's writer thread — against N loopback
addresses (127.1.0.0/16), for a bounded time, and reports process CPU per round and the
start-time jitter (a slot run's start − its grid time). Peer, same run: fping sending the
same 5 packets to the same N targets once, CPU per round. The CPU is split into user and
kernel time and into the loop thread and the store's writer thread; `--count 1` (one packet a
round) against the default 5 separates the per-packet cost from the per-round overhead.

    .venv/bin/python bench/scheduler.py --targets 1000 10000 --seconds 15
    .venv/bin/python bench/scheduler.py --targets 1000 --count 1 --no-peer
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netopt.config import parse_config
from netopt.daemon.probing import ProbeJob
from netopt.daemon.schedule import Scheduler, phase_s
from netopt.daemon.wiring import Daemon


def address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def config(n: int, db: str, count: int = 5) -> dict[str, object]:
    return {
        "regions": [{"id": "src", "address": "127.0.0.1"}],
        "pops": [{"id": f"p{i}", "role": "edge", "address": address(i)} for i in range(n)],
        "destinations": ["p0"],
        "probes": [
            {
                "kind": "icmp",
                "from": "src",
                "to": [f"p{i}" for i in range(n)],
                "interval_s": 1.0,
                "count": count,
                "packet_interval_s": 0.02,
                "timeout_s": 0.3,
            }
        ],
        "store": {"url": f"sqlite:///{db}"},
    }


def _thread_cpu_s() -> dict[str, tuple[float, float]]:
    """Per thread of this process: (user, system) CPU seconds, from /proc."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[tid] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


async def run_netopt(n: int, seconds: float, db: str, count: int = 5) -> dict[str, float]:
    daemon = Daemon(parse_config(config(n, db, count)))
    starts: list[float] = []
    rounds = 0

    async def probe(jobs: tuple[ProbeJob, ...]) -> None:
        nonlocal rounds
        # a slot's jobs share a phase: one start time per slot run (the bench's own cost)
        job = jobs[0]
        grid = phase_s(job.job_id, job.interval_s)
        starts.append(((time.time() - grid) % job.interval_s) * 1000)  # ms after the grid
        await daemon.probe_slot(jobs)
        rounds += len(jobs)

    from netopt.daemon.probing import jobs_from_config

    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(daemon.store.run(0.5))
        sched = Scheduler(probe, tg.create_task, time.time)
        sched.start(jobs_from_config(daemon.config))
        await asyncio.sleep(1.5)  # warm-up: probers open, first rounds out
        gc.freeze()  # as the daemon does once it runs: start-up objects out of every GC
        r0, c0, t0, s0 = rounds, time.process_time(), time.monotonic(), len(starts)
        ru0, th0 = resource.getrusage(resource.RUSAGE_SELF), _thread_cpu_s()
        await asyncio.sleep(seconds)
        r1, c1, t1 = rounds, time.process_time(), time.monotonic()
        ru1, th1 = resource.getrusage(resource.RUSAGE_SELF), _thread_cpu_s()
        sched.shutdown()
        await asyncio.sleep(0.5)
        writer.cancel()
    await daemon.pool.close()
    daemon.store.close()
    jit = sorted(starts[s0:])
    done = r1 - r0
    loop_tid = str(threading.get_native_id())
    others = [
        (th1[t][0] - u, th1[t][1] - s) for t, (u, s) in th0.items() if t in th1 and t != loop_tid
    ]
    return {
        "user_us": (ru1.ru_utime - ru0.ru_utime) / max(1, done) * 1e6,
        "sys_us": (ru1.ru_stime - ru0.ru_stime) / max(1, done) * 1e6,
        "writer_us": sum(u + s for u, s in others) / max(1, done) * 1e6,
        "rounds_per_s": done / (t1 - t0),
        "cpu_per_round_us": (c1 - c0) / max(1, done) * 1e6,
        "core_share": (c1 - c0) / (t1 - t0),
        "jitter_p50_ms": statistics.median(jit),
        "jitter_p99_ms": jit[int(0.99 * (len(jit) - 1))],
        "skipped": sched.skipped,
    }


async def run_schedule_only(n: int, seconds: float) -> dict[str, float]:
    """The scheduler alone: N jobs at 1/s whose round is an empty coroutine."""
    runs = 0

    @dataclass(frozen=True)
    class Job:
        job_id: str
        interval_s: float = 1.0
        batch_key: str = "icmp"  # every job may share its slot's run, as the daemon's do

    async def nothing(jobs: tuple[Job, ...]) -> None:
        nonlocal runs
        runs += len(jobs)

    async with asyncio.TaskGroup() as tg:
        sched = Scheduler(nothing, tg.create_task, time.time)
        sched.start([Job(f"icmp:src->p{i}") for i in range(n)])
        await asyncio.sleep(1.5)
        r0, c0, t0 = runs, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        r1, c1, t1 = runs, time.process_time(), time.monotonic()
        sched.shutdown()
    return {"runs_per_s": (r1 - r0) / (t1 - t0), "cpu_per_run_us": (c1 - c0) / (r1 - r0) * 1e6,
            "core_share": (c1 - c0) / (t1 - t0)}  # fmt: skip


def run_fping(n: int) -> float:
    """fping's CPU seconds for one round of 5 packets to each target (same addresses)."""
    targets = "\n".join(address(i) for i in range(n)) + "\n"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["fping", "-q", "-C", "5", "-p", "20", "-i", "0", "-t", "300"],
                   input=targets.encode(), capture_output=True, timeout=120)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--count", type=int, default=5, help="packets per round")
    ap.add_argument("--no-peer", action="store_true", help="skip fping and the scheduler alone")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (raw ICMP sockets)")
    import logging

    logging.basicConfig(level=logging.ERROR)  # an overloaded loop makes APScheduler chatty
    print(f"{'targets':>8} {'rounds/s':>9} {'cpu/round':>10} {'core':>6} {'jit p50':>8} "
          f"{'jit p99':>8} {'skipped':>7} {'fping cpu/round':>16} {'ratio':>6}")  # fmt: skip
    for n in args.targets:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "b.db")
            r = asyncio.run(run_netopt(n, args.seconds, db, args.count))
        fping_us = float("nan") if args.no_peer else run_fping(n) / n * 1e6
        if not args.no_peer:
            sched_only = asyncio.run(run_schedule_only(n, min(args.seconds, 10.0)))
            print(f"{n:>8} scheduler alone: {sched_only['runs_per_s']:.0f} runs/s, "
                  f"{sched_only['cpu_per_run_us']:.0f}us CPU per run, "
                  f"{sched_only['core_share']:.1%} of a core", flush=True)  # fmt: skip
        print(f"{n:>8} {args.count} packets/round, load average {load:.2f} -> "
              f"{os.getloadavg()[0]:.2f}; CPU per round: user {r['user_us']:.0f}us, "
              f"kernel {r['sys_us']:.0f}us; of which the store writer thread "
              f"{r['writer_us']:.0f}us", flush=True)  # fmt: skip
        print(f"{n:>8} {r['rounds_per_s']:>9.0f} {r['cpu_per_round_us']:>8.0f}us "
              f"{r['core_share']:>6.1%} {r['jitter_p50_ms']:>6.1f}ms {r['jitter_p99_ms']:>6.1f}ms "
              f"{r['skipped']:>7} {fping_us:>14.0f}us {r['cpu_per_round_us'] / fping_us:>6.1f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
