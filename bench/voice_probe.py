"""The voice probe's jitter, IPDV, loss and bursts vs the lab's configured truth.

A lab region `a` streams 20 ms voice packets (G.711 sizes, DSCP EF) to a `netopt reflector`
(STAMP) running in each PoP, for `--duration` seconds per path:
  b: 40 ms ± 5 ms and 3 % loss each way (normal jitter, Bernoulli loss)
  c: fixed 40 ms, no loss
  d: 10 ms, Gilbert–Elliott bursts on the way out (p = 0.02, r = 0.25), clean way back
Truth for a round trip of two independent N(d, σ²) legs: consecutive transit differences are
N(0, 4σ²), so RFC 3550 jitter tends to E|D| = 2σ·√(2/π) and |IPDV| percentiles are 2σ·z.
Loss truth is the lab model's round-trip loss; the burst truth is 1/r packets.

    sudo .venv/bin/python bench/voice_probe.py [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netopt.lab import Lab, netns
from netopt.lab.impair import round_trip_loss
from netopt.lab.profile import Burst, LinkParams
from probes.base import ProbeOptions, ProbeResult, Target
from probes.stats import rfc3550_jitter, round_stats
from probes.voice import VoiceProber

PORT = 8620
WORLD = {
    "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop"},
              {"name": "c", "role": "pop"}, {"name": "d", "role": "pop"}],
    "links": [{"a": "a", "b": "b", "delay_ms": 40, "jitter_ms": 5, "loss_pct": 3},
              {"a": "a", "b": "c", "delay_ms": 40},
              {"a": "a", "b": "d", "delay_ms": 10, "burst": {"p": 0.02, "r": 0.25},
               "directed": True},
              {"a": "d", "b": "a", "delay_ms": 10, "directed": True}],
    "default_link": {"delay_ms": 1},
}  # fmt: skip
JITTERY = LinkParams(delay_ms=40, jitter_ms=5, loss_pct=3)
TRUTH = {
    "b": (JITTERY, JITTERY),
    "c": (LinkParams(delay_ms=40), LinkParams(delay_ms=40)),
    "d": (LinkParams(delay_ms=10, burst=Burst(p=0.02, r=0.25)), LinkParams(delay_ms=10)),
}  # fmt: skip
Z = {"p50": 0.6745, "p90": 1.6449, "p99": 2.5758}


async def stream(lab: Lab, dst: str, duration_s: float) -> ProbeResult:
    def factory(family: int, type_: int, proto: int) -> socket.socket:
        return netns.socket_in(lab.netns("a"), family, type_, proto)

    prober = VoiceProber(socket_factory=factory)
    opts = ProbeOptions(count=int(duration_s * 50), timeout_s=1.0, codec="g711", dscp=46)
    return await prober.probe(Target(lab.address(dst), PORT), opts)


def report(dst: str, result: ProbeResult) -> None:
    stats = round_stats(result, jitter_buffer_ms=60)
    out, back = TRUTH[dst]
    sigma = math.hypot(out.jitter_ms, back.jitter_ms)  # σ of one RTT
    p = round_trip_loss(out, back)
    n = stats.sent
    # Bernoulli band, widened for a Gilbert–Elliott chain by (1 + ρ)/(1 − ρ), ρ = 1 − p − r
    rho = 1 - out.burst.p - out.burst.r if out.burst is not None else 0.0
    half = 2.576 * math.sqrt(p * (1 - p) / n * (1 + rho) / (1 - rho)) if n else 0.0
    print(f"a → {dst}: {n} packets, {stats.received} answered")
    print(f"  loss      {100 * stats.loss_ratio:6.2f} %   truth {100 * p:6.2f} % "
          f"(99 % band ±{100 * half:.2f})")  # fmt: skip
    jitter_truth = 2 * sigma / math.sqrt(math.pi)  # E|D|, D ~ N(0, 2σ²), σ of one RTT
    ok = sorted((x for x in result.samples if x.received_ns), key=lambda x: x.received_ns or 0)
    series = rfc3550_jitter([x.sent_ns for x in ok], [x.received_ns for x in ok]) / 1e6
    print(f"  jitter    {stats.jitter_ms or 0:6.3f} ms  truth {jitter_truth:6.3f} ms (RFC 3550, "
          f"last value; mean over the stream {float(series.mean()):.3f} ms)")  # fmt: skip
    if stats.ipdv_ms is not None:
        for key, z in Z.items():
            truth = math.sqrt(2) * sigma * z
            print(f"  |IPDV| {key} {getattr(stats.ipdv_ms, key):6.3f} ms  truth {truth:6.3f} ms")
    if stats.rtt_ms is not None:
        print(
            f"  RTT p50   {stats.rtt_ms.p50:6.3f} ms  truth {out.delay_ms + back.delay_ms:6.3f} ms"
        )
    if out.burst is not None:
        print(f"  bursts    {stats.bursts.count} bursts, mean {stats.bursts.mean_len:.2f} packets; "
              f"truth mean {1 / out.burst.r:.2f}")  # fmt: skip
    print(f"  late (>60 ms jitter buffer) {100 * (stats.late_ratio or 0):.2f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (lab namespaces)", file=sys.stderr)
        return 2
    with Lab.up(WORLD, name=f"bvp{os.getpid() % 100000}") as lab:
        reflectors = [
            lab.popen(pop, [sys.executable, "-m", "netopt", "reflector", "--listen",
                            f"{lab.address(pop)}:{PORT}"], stdout=subprocess.PIPE, text=True)
            for pop in ("b", "c", "d")
        ]  # fmt: skip
        try:
            for proc in reflectors:
                assert proc.stdout is not None and "listening" in proc.stdout.readline()
            for dst in ("b", "c", "d"):
                report(dst, asyncio.run(stream(lab, dst, args.duration)))
        finally:
            for proc in reflectors:
                proc.terminate()
                proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
