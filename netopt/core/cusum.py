"""CUSUM thresholds from a false-alarm rate: the arithmetic behind `netopt.core.detect`.

probe → sample → **detect** (thresholds) → budget / decide. Pure functions of numbers.

The operator sets a false-alarm rate ("one false alarm per path every N hours at the steady
probe rate"); it becomes an in-control average run length ARL0 in packets, split over the
detector's statistics (RTT up, RTT down, loss) so that their false alarms together keep the
rate. Each statistic's threshold h follows from its share:

- RTT (Gaussian CUSUM on RTT in units of the robust scale, reference value k): Siegmund's
  approximation (Siegmund 1985, *Sequential Analysis*, eq. 2.56) of the average run length of
  S_n = max(0, S_{n-1} + x_n − k) with x ~ N(μ, 1), Δ = μ − k, b = h + 1.166:

      ARL(μ) ≈ (exp(−2Δb) + 2Δb − 1) / (2Δ²)          (Δ ≠ 0),      b² otherwise

  so ARL0 = ARL(0) = (exp(2kb) − 2kb − 1) / (2k²), solved for h by bisection.
- Loss (Bernoulli CUSUM, the log-likelihood ratio of p1 against p0 per packet): Wald's bound,
  Lorden's form for CUSUM: ARL0 ≥ exp(h), so h = ln(ARL0) keeps at least the asked ARL0. The
  expected detection delay at a true loss p is h / E_p[LLR] (Wald's identity; the overshoot at
  the crossing adds up to one lost packet's LLR).
"""

from __future__ import annotations

import math

SIEGMUND_CORRECTION = 1.166  # ρ·2 for the Gaussian case (Siegmund 1985): b = h + 1.166


def arl0_packets(false_alarm_every_h: float, steady_pps: float, statistics: int = 1) -> float:
    """The in-control run length (packets) each of `statistics` CUSUMs must reach so that, at
    `steady_pps`, all of them together raise one false alarm every `false_alarm_every_h`."""
    if false_alarm_every_h <= 0 or steady_pps <= 0 or statistics < 1:
        raise ValueError("false_alarm_every_h and steady_pps must be > 0, statistics >= 1")
    return false_alarm_every_h * 3600.0 * steady_pps * statistics


def siegmund_arl(mean: float, k: float, h: float) -> float:
    """Siegmund's approximation of a Gaussian CUSUM's average run length (packets) when the
    standardised observations have mean `mean` (0 in control), reference `k`, threshold `h`."""
    delta = mean - k
    b = h + SIEGMUND_CORRECTION
    if abs(delta) < 1e-9:
        return b * b
    x = 2.0 * delta * b
    if x < -700:  # exp overflows; the ARL is astronomically long
        return math.inf
    return (math.exp(-x) + x - 1.0) / (2.0 * delta * delta)


def gaussian_threshold(arl0: float, k: float) -> float:
    """The threshold h at which `siegmund_arl(0, k, h)` equals `arl0` (bisection, 1e-9)."""
    if arl0 <= 1 or k <= 0:
        raise ValueError("arl0 must be > 1 packet and k > 0")
    lo, hi = 0.0, 1.0
    while siegmund_arl(0.0, k, hi) < arl0:
        hi *= 2.0
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2.0
        if siegmund_arl(0.0, k, mid) < arl0:
            lo = mid
        else:
            hi = mid
    return hi


def wald_threshold(arl0: float) -> float:
    """Threshold of a likelihood-ratio CUSUM with in-control ARL of at least `arl0`."""
    if arl0 <= 1:
        raise ValueError("arl0 must be > 1 packet")
    return math.log(arl0)


def bernoulli_llr(p0: float, p1: float) -> tuple[float, float]:
    """Per-packet log-likelihood ratio of loss rate p1 against p0: (if lost, if received)."""
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
    return math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))


def loss_drift(p: float, p0: float, p1: float) -> float:
    """Expected LLR per packet when the true loss rate is p (negative in control)."""
    if_lost, if_received = bernoulli_llr(p0, p1)
    return p * if_lost + (1.0 - p) * if_received


def expected_loss_delay_packets(p: float, p0: float, p1: float, h: float) -> float:
    """Wald's expected packets to cross h from 0 at true loss p, h / E_p[LLR] (the overshoot
    at the crossing adds at most one lost packet's LLR / E_p[LLR]); infinite when the drift is
    not positive."""
    drift = loss_drift(p, p0, p1)
    return h / drift if drift > 0 else math.inf
