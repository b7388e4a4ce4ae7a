"""Synthetic probe series for the change-detection tests and bench/detect.py (seeded).

A path's RTT is a base plus lognormal queueing (median 2 ms, σ_log 0.5) and, on a spiky path,
a share of Pareto(1.5) spikes of 10 ms and more (a heavy tail: their mean is 30 ms, their
variance infinite); packets are lost independently (Bernoulli).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netopt.core.detect import ChangeDetector, Verdict


def rtts_ms(
    rng: np.random.Generator, n: int, base_ms: float = 40.0, spike_share: float = 0.0
) -> np.ndarray:
    queue = rng.lognormal(np.log(2.0), 0.5, n)
    spikes = rng.random(n) < spike_share
    queue[spikes] += (rng.pareto(1.5, int(spikes.sum())) + 1.0) * 10.0
    return base_ms + queue


def lost(rng: np.random.Generator, n: int, loss_ratio: float) -> np.ndarray:
    return rng.random(n) < loss_ratio


def feed(
    detector: ChangeDetector, rtt: np.ndarray, gone: np.ndarray, per_round: int = 1, t0: int = 0
) -> Iterator[tuple[int, Verdict]]:
    """Feed packets in rounds of `per_round`; yield (index of the round's last packet, verdict)."""
    for i in range(0, len(rtt), per_round):
        sl = slice(i, i + per_round)
        back = [float(r) for r, g in zip(rtt[sl], gone[sl], strict=True) if not g]
        yield (
            t0 + min(i + per_round, len(rtt)) - 1,
            detector.update(float(t0 + i), len(rtt[sl]), back),
        )


def first_change(
    detector: ChangeDetector, rtt: np.ndarray, gone: np.ndarray, per_round: int = 1
) -> tuple[int, Verdict] | None:
    """Packets fed until the first accepted change (1-based), and its verdict."""
    for i, v in feed(detector, rtt, gone, per_round):
        if v.state == "changed":
            return i + 1, v
    return None


def warmed(detector: ChangeDetector, rng: np.random.Generator, n: int = 600, **kw: float) -> None:
    """Feed `n` stationary packets (base 40 ms, 0.3 % loss unless given) so the baseline is set."""
    loss = kw.pop("loss_ratio", 0.003)
    for _ in feed(detector, rtts_ms(rng, n, **kw), lost(rng, n, loss)):
        pass
