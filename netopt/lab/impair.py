"""The impairment of one direction of a lab link: when a packet is due, or that it is lost.

Pure logic (no sockets, no clock): the stage (`netopt.lab.stage`) passes the arrival time and
draws random numbers from a `RandomStream`; tests pass their own. See `netopt.lab.profile` for
the model (clamped-normal jitter, order preservation, Bernoulli / Gilbert–Elliott loss) and
`predicted_rtt_ms` for what a round trip across two such directions should look like.
"""

from __future__ import annotations

import math

import numpy as np

from netopt.lab.profile import LinkParams

NS_PER_MS = 1_000_000


class RandomStream:
    """Uniforms and standard normals drawn from numpy in blocks (one list index per draw)."""

    def __init__(self, seed: int | None = None, block: int = 8192) -> None:
        self._rng = np.random.default_rng(seed)
        self._block = block
        self._u: list[float] = []
        self._z: list[float] = []
        self._ui = 0
        self._zi = 0

    def uniform(self) -> float:
        if self._ui >= len(self._u):
            self._u = self._rng.random(self._block).tolist()
            self._ui = 0
        self._ui += 1
        return self._u[self._ui - 1]

    def normal(self) -> float:
        if self._zi >= len(self._z):
            self._z = self._rng.standard_normal(self._block).tolist()
            self._zi = 0
        self._zi += 1
        return self._z[self._zi - 1]


class Direction:
    """State of one direction (src → dst): parameters, Gilbert–Elliott state, counters."""

    __slots__ = (
        "bad",
        "burst_p",
        "burst_r",
        "delay_ns",
        "dropped",
        "dst",
        "forwarded",
        "jitter_ns",
        "last_due_ns",
        "loss",
        "params",
        "reorder",
        "src",
    )

    def __init__(self, src: str, dst: str, params: LinkParams) -> None:
        self.src = src
        self.dst = dst
        self.forwarded = 0
        self.dropped = 0
        self.last_due_ns = 0
        self.bad = False
        self.configure(params)

    def configure(self, params: LinkParams) -> None:
        """Change the parameters live; counters and the order guarantee carry over."""
        self.params = params
        self.delay_ns = round(params.delay_ms * NS_PER_MS)
        self.jitter_ns = params.jitter_ms * NS_PER_MS
        self.loss = params.loss_pct / 100.0
        self.burst_p = params.burst.p if params.burst else -1.0
        self.burst_r = params.burst.r if params.burst else 0.0
        self.reorder = params.reorder
        if params.burst is None:
            self.bad = False

    def admit(self, now_ns: int, rnd: RandomStream) -> int:
        """The due time of a packet arriving at `now_ns`, or -1 if it is lost."""
        if self.burst_p >= 0.0:
            if self.bad:
                if rnd.uniform() < self.burst_r:
                    self.bad = False
            elif rnd.uniform() < self.burst_p:
                self.bad = True
            if self.bad:
                self.dropped += 1
                return -1
        if self.loss > 0.0 and rnd.uniform() < self.loss:
            self.dropped += 1
            return -1
        due = now_ns + self.delay_ns
        if self.jitter_ns > 0.0:
            due += int(self.jitter_ns * rnd.normal())
            if due < now_ns:
                due = now_ns
        if not self.reorder:
            if due < self.last_due_ns:
                due = self.last_due_ns
            self.last_due_ns = due
        return due


def _clamped_normal_moments(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and variance of max(0, X) for X ~ N(mu, sigma²)."""
    if sigma <= 0.0:
        m = max(0.0, mu)
        return m, 0.0
    a = mu / sigma
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
    mean = mu * cdf + sigma * pdf
    second = (mu * mu + sigma * sigma) * cdf + mu * sigma * pdf
    return mean, max(0.0, second - mean * mean)


def predicted_rtt_ms(
    out: LinkParams, back: LinkParams, overhead_ms: float = 0.0
) -> tuple[float, float]:
    """Mean and standard deviation of a round trip out and back, as the model defines it.

    Each direction adds its own independent max(0, delay + N(0, jitter²)); the two add, so
    means add and variances add. Order preservation raises a packet's delay only when it
    would overtake the one ahead, which at probe spacings ≫ jitter is negligible (ignored).
    """
    m1, v1 = _clamped_normal_moments(out.delay_ms, out.jitter_ms)
    m2, v2 = _clamped_normal_moments(back.delay_ms, back.jitter_ms)
    return m1 + m2 + overhead_ms, math.sqrt(v1 + v2)


def round_trip_loss(out: LinkParams, back: LinkParams) -> float:
    """Probability that a request or its reply is lost (stationary, independent directions)."""

    def one_way(p: LinkParams) -> float:
        good = p.loss_pct / 100.0
        if p.burst is None:
            return good
        bad_share = p.burst.p / (p.burst.p + p.burst.r)
        return bad_share + (1.0 - bad_share) * good

    return 1.0 - (1.0 - one_way(out)) * (1.0 - one_way(back))
