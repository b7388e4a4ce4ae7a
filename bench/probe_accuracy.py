"""netopt ICMP RTT and loss vs iputils ping and fping, from the same lab node in the same run.

Builds a lab (netopt.lab) with a region `a` and two PoPs: `b` behind 40 ms ± 5 ms / 3 % loss
(each direction, the lab profile's semantics) and `c` behind a fixed 40 ms. From `a`, netopt
(IcmpProber on a socket created in a's namespace), `ping -i 0.01` and `fping -C N -p 10` probe
the same PoP concurrently. Reported: each tool's median RTT and its difference to netopt (with
the standard error of that difference), and netopt's loss count against the 99 % binomial
interval of the lab's true round-trip loss. Then again with ~10k packets/s of other UDP traffic
crossing the lab. Goals (issue #4): |median difference| ≤ 0.1 ms (≤ 0.2 ms under load).

    sudo .venv/bin/python bench/probe_accuracy.py [--count 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netopt.lab import Lab, netns
from netopt.lab.impair import round_trip_loss
from netopt.lab.profile import LinkParams
from probes.base import ProbeOptions, Target
from probes.icmp import IcmpProber

JITTERY = LinkParams(delay_ms=40, jitter_ms=5, loss_pct=3)
WORLD = {
    "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop"},
              {"name": "c", "role": "pop"}, {"name": "d", "role": "pop"}],
    "links": [{"a": "a", "b": "b", "delay_ms": 40, "jitter_ms": 5, "loss_pct": 3},
              {"a": "a", "b": "c", "delay_ms": 40}],
    "default_link": {"delay_ms": 1},
}  # fmt: skip
INTERVAL_S = 0.01


def run_ping(lab: Lab, dst: str, count: int, out: dict[str, list[float]]) -> None:
    done = lab.exec("a", ["ping", "-n", "-c", str(count), "-i",
                          str(INTERVAL_S), "-W", "2", lab.address(dst)],
                    capture_output=True, text=True, timeout=count * INTERVAL_S + 30)  # fmt: skip
    seen: set[str] = set()
    rtts = []
    for m in re.finditer(r"icmp_seq=(\d+) .*time=([\d.]+) ms", done.stdout):
        if m[1] not in seen:
            seen.add(m[1])
            rtts.append(float(m[2]))
    out["ping"] = rtts


def run_fping(lab: Lab, dst: str, count: int, out: dict[str, list[float]]) -> None:
    done = lab.exec("a", ["fping", "-C", str(count), "-p", str(int(INTERVAL_S * 1000)), "-q",
                          "-t", "2000", lab.address(dst)],
                    capture_output=True, text=True, timeout=count * INTERVAL_S + 30)  # fmt: skip
    fields = done.stderr.split(":", 1)[1].split() if ":" in done.stderr else []
    out["fping"] = [float(x) for x in fields if x != "-"]


async def run_netopt(lab: Lab, dst: str, count: int) -> tuple[list[float], int]:
    def factory(family: int, type_: int, proto: int) -> socket.socket:
        return netns.socket_in(lab.netns("a"), family, type_, proto)

    prober = IcmpProber(socket_factory=factory)
    try:
        opts = ProbeOptions(count=count, interval_s=INTERVAL_S, timeout_s=2.0)
        result = await prober.probe(Target(lab.address(dst)), opts)
    finally:
        await prober.close()
    rtts = [s.rtt_ns / 1e6 for s in result.samples if s.rtt_ns is not None]
    return rtts, result.sent - result.received


def background(lab: Lab, stop: threading.Event, pps: int) -> int:
    """Paced UDP from d to b through the stage until `stop` (bounded by the caller)."""
    tx = netns.socket_in(lab.netns("d"), socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    with tx:
        dest = (lab.address("b"), 9)
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * pps)
            while sent < due:
                with contextlib.suppress(OSError):  # a full queue: that packet is skipped
                    tx.sendto(b"x" * 64, dest)
                sent += 1
            time.sleep(0.001)
    return sent


def median_se(values: list[float]) -> float:
    """Asymptotic standard error of a sample median, from the sample's IQR (normal-ish)."""
    q = statistics.quantiles(values, n=4)
    sigma = (q[2] - q[0]) / 1.349
    return 1.2533 * sigma / math.sqrt(len(values))


def binomial_99(n: int, p: float) -> tuple[int, int]:
    def pmf(k: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + k * math.log(p) + (n - k) * math.log1p(-p))  # fmt: skip

    cdf, lo = 0.0, 0
    for k in range(n + 1):
        if cdf + pmf(k) > 0.005:
            lo = k
            break
        cdf += pmf(k)
    cdf, hi = 0.0, n
    for k in range(n, -1, -1):
        if cdf + pmf(k) > 0.005:
            hi = k
            break
        cdf += pmf(k)
    return lo, hi


def scenario(lab: Lab, dst: str, count: int, load_pps: int) -> None:
    out: dict[str, list[float]] = {}
    stop = threading.Event()
    sent_bg: list[int] = []
    bg = threading.Thread(target=lambda: sent_bg.append(background(lab, stop, load_pps)))
    if load_pps:
        bg.start()
        time.sleep(0.5)
    threads = [threading.Thread(target=run_ping, args=(lab, dst, count, out)),
               threading.Thread(target=run_fping, args=(lab, dst, count, out))]  # fmt: skip
    for t in threads:
        t.start()
    started = time.monotonic()
    netopt_rtts, netopt_lost = asyncio.run(run_netopt(lab, dst, count))
    for t in threads:
        t.join()
    if load_pps:
        stop.set()
        bg.join()
        rate = sent_bg[0] / (time.monotonic() - started + 0.5)
        print(f"  background: {sent_bg[0]} UDP packets d → b, ~{rate:.0f}/s")
    mine = statistics.median(netopt_rtts)
    print(f"  {'tool':<8} {'replies':>8} {'median ms':>10} {'Δ vs netopt':>12} {'±SE':>7}")
    print(f"  {'netopt':<8} {len(netopt_rtts):>8} {mine:>10.3f}")
    for tool in ("ping", "fping"):
        rtts = out.get(tool, [])
        if not rtts:
            print(f"  {tool:<8} no replies parsed")
            continue
        med = statistics.median(rtts)
        se = math.hypot(median_se(rtts), median_se(netopt_rtts))
        print(f"  {tool:<8} {len(rtts):>8} {med:>10.3f} {mine - med:>+12.3f} {se:>7.3f}")
    if dst == "b":
        p = round_trip_loss(JITTERY, JITTERY)
        lo, hi = binomial_99(count, p)
        verdict = "inside" if lo <= netopt_lost <= hi else "OUTSIDE"
        print(f"  netopt lost {netopt_lost}/{count}; truth {100 * p:.2f} % → 99 % interval "
              f"[{lo}, {hi}]: {verdict}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--load-pps", type=int, default=10_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (lab namespaces)", file=sys.stderr)
        return 2
    with Lab.up(WORLD, name=f"bpa{os.getpid() % 100000}") as lab:
        for dst, label in (("c", "fixed 40 ms each way"), ("b", "40 ± 5 ms, 3 % loss each way")):
            print(f"a → {dst} ({label}), {args.count} probes at {INTERVAL_S * 1000:g} ms:")
            scenario(lab, dst, args.count, 0)
        print(f"a → c (fixed 40 ms) with ~{args.load_pps} packets/s of other traffic:")
        scenario(lab, "c", args.count, args.load_pps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
