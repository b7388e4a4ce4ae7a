"""How sure a window's comparison is: the gain left once loss sampling noise is held against it.

Flow: window stats (PathStats.samples) → planner (Expected.samples) → **uncertainty** →
netopt.core.decide (a challenger must win beyond the sampling noise, not by chance).

Why loss: in a window, RTT is a median of round medians and jitter a mean of round jitters,
both steady to about a millisecond after a few rounds, which moves MOS by a few hundredths.
Loss is a count of rare events: 150 packets at 2 % loss lose 3 ± 1.7, and the E-model falls
about 0.1 MOS per percent of loss there, so two identical paths differ by 0.2–0.4 MOS by chance.

`sure_gain` asks how much of a challenger's MOS gain survives when the two routes' loss
figures are moved against the challenger by `z` standard errors of their difference — the
two-proportion test's standard error at the pooled loss, SE = √(p̄(1 − p̄)(1/n_c + 1/n_i)) — the
challenger's loss raised and the incumbent's lowered in proportion to 1/n, every other term as
measured. So a gain that rests on delay or jitter (steady) counts in full, and a gain that rests
on a loss difference counts only for the part beyond what chance explains. When neither route
has lost a packet there is no loss difference to doubt and the gain stands (the next windows
would show a hidden loss). `samples` ≤ 0 means "unknown" (offline paths.csv without a count):
that route's loss is taken as exact.
"""

from __future__ import annotations

import math

from topology import quality
from topology.routes import Expected

Evidence = tuple[float, int]  # (loss_pct, packets) a loss figure rests on


def loss_shifts_pct(challenger: Evidence, incumbent: Evidence, z: float) -> tuple[float, float]:
    """Percentage points to add to the challenger's loss and to take off the incumbent's:
    z · SE of the loss difference at the pooled loss, split in proportion to each side's 1/n.
    A side with 0 packets is unknown and taken as exact."""
    (p_c, n_c), (p_i, n_i) = challenger, incumbent
    inv_c = 1.0 / n_c if n_c > 0 else 0.0
    inv_i = 1.0 / n_i if n_i > 0 else 0.0
    if z <= 0 or inv_c + inv_i == 0:
        return 0.0, 0.0
    known = [(p, n) for p, n in ((p_c, n_c), (p_i, n_i)) if n > 0]
    if not all(math.isfinite(p) for p, _ in known):
        return 0.0, 0.0
    pooled = sum(p * n for p, n in known) / sum(n for _, n in known) / 100.0
    pooled = min(max(pooled, 0.0), 1.0)
    shift = 100.0 * z * math.sqrt(pooled * (1.0 - pooled) * (inv_c + inv_i))
    return shift * inv_c / (inv_c + inv_i), shift * inv_i / (inv_c + inv_i)


def sure_gain(
    challenger: Expected,
    incumbent: Expected,
    z: float,
    codec: str = "g711",
    evidence: tuple[Evidence | None, Evidence | None] = (None, None),
) -> float:
    """The challenger's MOS gain over the incumbent with their loss difference discounted by
    `z` standard errors (see module): the E-model at the challenger's loss raised and the
    incumbent's lowered, every other term as in the current window. `evidence` (per side,
    optional) is a loss figure resting on more packets than the window's — the decider pools
    what arrived since a challenge began; default: the window's own (loss_pct, samples)."""
    ev_c = evidence[0] or (challenger.loss_pct, challenger.samples)
    ev_i = evidence[1] or (incumbent.loss_pct, incumbent.samples)
    up, down = loss_shifts_pct(ev_c, ev_i, z)
    if up == down == 0 and ev_c[0] == challenger.loss_pct and ev_i[0] == incumbent.loss_pct:
        return challenger.mos - incumbent.mos
    return (
        challenger.mos
        - incumbent.mos
        + _mos_change(challenger, ev_c[0] + up, codec)
        - _mos_change(incumbent, ev_i[0] - down, codec)
    )


def gain_at_equal_loss(challenger: Expected, incumbent: Expected, codec: str = "g711") -> float:
    """The challenger's MOS gain with both routes given their pooled loss (weighted by
    packets; a plain mean when counts are unknown): what delay and jitter alone are worth."""
    n_c, n_i = max(challenger.samples, 0), max(incumbent.samples, 0)
    w_c, w_i = (n_c, n_i) if n_c + n_i > 0 else (1, 1)
    pooled = (challenger.loss_pct * w_c + incumbent.loss_pct * w_i) / (w_c + w_i)
    if not math.isfinite(pooled):
        return challenger.mos - incumbent.mos
    return (
        challenger.mos
        - incumbent.mos
        + _mos_change(challenger, pooled, codec)
        - _mos_change(incumbent, pooled, codec)
    )


def _mos_change(e: Expected, loss_pct: float, codec: str) -> float:
    """E-model MOS at `loss_pct` (kept within [0, 100] %) minus MOS at the window's loss."""
    moved = min(max(loss_pct, 0.0), 100.0)
    if moved == e.loss_pct or not (math.isfinite(e.rtt_ms) and math.isfinite(e.loss_pct)):
        return 0.0
    at = quality.path_mos(e.rtt_ms, e.jitter_ms, [e.loss_pct, moved], codec).tolist()
    return float(at[1] - at[0])


__all__ = ["Evidence", "gain_at_equal_loss", "loss_shifts_pct", "sure_gain"]
