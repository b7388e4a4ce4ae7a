"""ICMP echo probes/s on loopback: netopt's IcmpProber vs `fping -c N -p 1 -i 0 -q`, same run.

Both probe the same T loopback targets (127.0.x.y), N packets each. fping sends to every target
round-robin with no inter-packet gap (-i 0) and at most one packet per target per millisecond
(-p 1); netopt runs one round per target on one shared socket, with the same 1 ms per-target
period (pipelined), and again in flood mode (next packet as soon as the reply is in). We report
answered probes per wall-clock second and CPU time (user + system) per probe, and the ratio to
fping. `--procs 2` also runs netopt as one process per core, each with half of the targets.
Everything runs in a private network namespace (its own loopback), so other programs' ICMP on
a shared machine neither loads nor disturbs the sockets measured (`--host-netns` to skip that).

    sudo .venv/bin/python bench/probe_rate.py [--targets 100] [--count 500] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.base import ProbeOptions, Target
from probes.icmp import IcmpProber


@dataclass(frozen=True)
class Run:
    name: str
    answered: int
    sent: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.answered / self.wall_s

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_s / max(1, self.sent)


def targets(n: int) -> list[str]:
    return [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(n)]


def run_fping(addrs: list[str], count: int) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(["fping", "-c", str(count), "-p", "1", "-i", "0", "-q", *addrs],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sent = answered = 0
    for line in out.stderr.splitlines():  # "127.0.0.1 : xmt/rcv/%loss = 1000/1000/0%, ..."
        if "xmt/rcv" in line:
            xmt, rcv = line.split("=")[1].split("/")[:2]
            sent, answered = sent + int(xmt), answered + int(rcv)
    return Run("fping -p 1 -i 0", answered, sent, wall, cpu)


async def _netopt(addrs: list[str], count: int, interval_s: float, tx: bool) -> tuple[int, int]:
    prober = IcmpProber(tx_timestamps=tx)
    opts = ProbeOptions(count=count, interval_s=interval_s, timeout_s=2.0)
    try:
        await prober.probe(Target(addrs[0]), ProbeOptions(count=5, interval_s=0))  # warm up
        results = await asyncio.gather(*(prober.probe(Target(a), opts) for a in addrs))
    finally:
        await prober.close()
    return sum(r.received for r in results), sum(r.sent for r in results)


def _netopt_worker(args: tuple[list[str], int, float, bool]) -> tuple[int, int, float]:
    t0 = time.process_time()
    answered, sent = asyncio.run(_netopt(*args))
    return answered, sent, time.process_time() - t0


def run_netopt(addrs: list[str], count: int, interval_s: float, tx: bool, procs: int) -> Run:
    mode = "flood" if interval_s == 0 else f"-p {interval_s * 1000:g} ms"
    name = f"netopt {mode}{' tx-stamps' if tx else ''}{f' ×{procs} procs' if procs > 1 else ''}"
    t0 = time.perf_counter()
    if procs == 1:
        answered, sent, cpu = _netopt_worker((addrs, count, interval_s, tx))
    else:
        chunks = [(addrs[i::procs], count, interval_s, tx) for i in range(procs)]
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_netopt_worker, chunks)
        answered, sent = sum(p[0] for p in parts), sum(p[1] for p in parts)
        cpu = sum(p[2] for p in parts)
    return Run(name, answered, sent, time.perf_counter() - t0, cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--count", type=int, default=500, help="packets per target")
    ap.add_argument("--procs", type=int, default=2, help="also run netopt as N processes")
    ap.add_argument("--host-netns", action="store_true", help="do not use a private netns")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("fping") is None:
        print("needs root and fping (Debian fping)", file=sys.stderr)
        return 2
    if args.targets * args.count > 60_000:
        print("fping numbers every packet of a run with 16 bits: keep targets × count ≤ 60000",
              file=sys.stderr)  # fmt: skip
        return 2
    if not args.host_netns and os.environ.get("NETOPT_BENCH_NETNS") != "1":
        os.environ["NETOPT_BENCH_NETNS"] = "1"  # re-run this script in a new network namespace
        os.execvp("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv])
    if os.environ.get("NETOPT_BENCH_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    addrs = targets(args.targets)
    runs = [run_fping(addrs, args.count)]
    for interval, tx in ((0.001, False), (0.001, True), (0.0, False), (0.0, True)):
        runs.append(run_netopt(addrs, args.count, interval, tx, 1))
    if args.procs > 1:
        runs.append(run_netopt(addrs, args.count, 0.001, False, args.procs))
        runs.append(run_netopt(addrs, args.count, 0.001, True, args.procs))
    runs.append(run_fping(addrs, args.count))  # again: the machine is shared and noisy
    fpings = [r for r in runs if r.name.startswith("fping")]
    fping_rate = statistics.fmean(r.rate for r in fpings)
    fping_cpu = statistics.fmean(r.cpu_us for r in fpings)
    where = "host" if args.host_netns else "private"
    print(f"{args.targets} loopback targets × {args.count} echo requests, {where} netns, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(f"{'run':<36} {'answered/sent':>15} {'probes/s':>9} {'CPU µs/probe':>13} "
          f"{'rate vs fping':>14} {'CPU vs fping':>13}")  # fmt: skip
    for r in runs:
        cpu_ratio = f"{fping_cpu / r.cpu_us:>12.2f}×" if r.cpu_us > 0 else f"{'n/a':>13}"
        print(f"{r.name:<36} {f'{r.answered}/{r.sent}':>15} {r.rate:>9.0f} {r.cpu_us:>13.1f} "
              f"{r.rate / fping_rate:>13.2f}× {cpu_ratio}")  # fmt: skip
    print(
        "\nrate vs fping: against the mean of the fping runs (before and after);"
        " CPU vs fping: fping's CPU per probe / this run's, i.e. probes per core-second."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
