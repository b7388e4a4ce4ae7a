"""Sequential change detection per path: when the evidence that a path changed suffices.

probe → round (sent, RTTs of the packets that came back) → **detect** → the accepted level
feeds the planner and decider; the doubt feeds `netopt.core.budget` (probe harder where a
decision is in doubt). Pure: no I/O, no clock; `now` is an argument and is only stamped on
the verdict.

Per path, `ChangeDetector.update(now, sent, rtts_ms)` runs three CUSUMs on a robust baseline:

- **Baseline.** RTT: the median of the last `reference_packets` accepted RTTs, and a scale
  σ̂ = max(1.4826·MAD, (q99 − median)/2.326, `scale_floor_ms`): the MAD for the body, the
  99th percentile so that heavy tails widen it, the floor because RTT changes of a few ms do
  not matter for voice routing. Loss: a Beta(`prior_lost`, `prior_received`) prior updated by
  every accepted packet (counts faded to `loss_memory_packets`).
- **RTT up / down.** z = (rtt − median)/σ̂, clipped to ±`clip`, S⁺ = max(0, S⁺ + z − k) and
  S⁻ = max(0, S⁻ − z − k); h from Siegmund's approximation (`netopt.core.cusum`). The clip is
  k + 1.1·h/m: a single packet, however late, cannot raise an alarm (a spike) but m in a row
  beyond the clip do. m is 2 on a path whose reference shows few packets beyond that clip
  (a jump of many σ̂ is accepted on its second packet), more on a spiky one: the fewest m for
  which m spikes in a row are rarer than the false-alarm rate allows (`_tail_rule`).
- **Loss.** S_L = max(0, S_L + LLR), the log-likelihood ratio of p1 = max(4·p0, p0 + 2 %)
  against the baseline p0 per packet; h = ln(ARL0) (Wald/Lorden).
- **Dead.** Whole rounds lost, `dead_packets` packets in a row: a change at once.

The false-alarm rate is the parameter: one false alarm per path every `false_alarm_every_h`
hours at `steady_pps`, shared by the three CUSUMs. An alarm accepts the change: the samples
since the alarming CUSUM last left zero (the change-point estimate) become the new baseline,
and their median RTT, jitter and loss are the accepted level the decider should use. An RTT
alarm restarts the loss too, from the packets since its change point under a prior at the old
loss (`_restart_loss`); `level()` then follows the new regime with every packet.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from netopt.core.cusum import arl0_packets, bernoulli_llr, gaussian_threshold, wald_threshold

State = Literal["learning", "steady", "suspect", "changed"]
Statistic = Literal["rtt_up", "rtt_down", "loss", "dead", "alive"]
_MAD_TO_SIGMA = 1.4826
_Z99 = 2.326
_TAIL_MIN_PACKETS = 100  # reference packets before its 99th percentile widens the scale


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's numbers; only the false-alarm rate and the steady rate are policy."""

    false_alarm_every_h: float = 24.0
    steady_pps: float = 1.0
    k: float = 2.0  # reference value in units of σ̂: tuned to a 4 σ̂ shift
    scale_floor_ms: float = 3.0
    reference_packets: int = 600
    min_reference: int = 8
    prior_lost: float = 1.0
    prior_received: float = 299.0  # prior mean loss 0.33 %, worth 300 packets
    loss_memory_packets: int = 7200
    min_p0: float = 1e-4
    spike_prior: float = 5e-4  # prior share of packets beyond the clip (see _tail_rule)
    dead_packets: int = 4
    suspect_doubt: float = 0.25
    change_prior_packets: float = 50.0  # weight of the old loss after an RTT change (see below)
    loss_learning_packets: int = 300  # real packets the loss baseline needs before it alarms
    loss_baseline_z: float = 1.0  # standard errors of p0 the loss CUSUM adds to it (see below)

    def __post_init__(self) -> None:
        positive = ("false_alarm_every_h", "steady_pps", "k", "scale_floor_ms", "prior_lost",
                    "change_prior_packets")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"detector {name} must be > 0, got {getattr(self, name)}")
        if self.min_reference < 3 or self.reference_packets < self.min_reference:
            raise ValueError("detector needs reference_packets >= min_reference >= 3")
        if self.prior_received <= 0 or self.loss_memory_packets < 1 or self.dead_packets < 1:
            raise ValueError("detector prior_received, loss_memory_packets, dead_packets > 0")
        if self.loss_learning_packets < 0 or self.loss_baseline_z < 0:
            raise ValueError("detector loss_learning_packets and loss_baseline_z must be >= 0")
        if not 0 < self.min_p0 < 0.5 or not 0 < self.suspect_doubt < 1:
            raise ValueError("detector min_p0 in (0, 0.5) and suspect_doubt in (0, 1)")
        if not 0 < self.spike_prior < 0.5:
            raise ValueError("detector spike_prior must be in (0, 0.5)")

    @property
    def arl0_per_statistic(self) -> float:
        """In-control ARL (packets) of each of the three CUSUMs."""
        return arl0_packets(self.false_alarm_every_h, self.steady_pps, statistics=3)

    @property
    def rtt_threshold(self) -> float:
        return gaussian_threshold(self.arl0_per_statistic, self.k)

    @property
    def loss_threshold(self) -> float:
        return wald_threshold(self.arl0_per_statistic)


def loss_alternative(p0: float) -> float:
    """The loss rate the loss CUSUM is tuned to detect against a baseline p0."""
    return min(max(4.0 * p0, p0 + 0.02), 0.99)


@dataclass(frozen=True)
class Level:
    """The accepted state of a path: what the decider should plan with."""

    rtt_ms: float | None
    jitter_ms: float | None
    loss_ratio: float
    packets: int  # packets behind the loss figure


@dataclass(frozen=True)
class Verdict:
    """The detector's answer to one update."""

    at_s: float
    state: State
    statistic: Statistic | None  # the alarming statistic, or the most doubtful one
    doubt: float  # the fraction of its threshold the most doubtful statistic reached, in [0, 1]
    level: Level  # the accepted level (the new one when state is "changed")
    jump: bool  # a packet of this update beyond the clip (many σ̂ from the baseline)
    lost: int  # packets of this update that did not come back
    lost_run: int = 0  # packets lost in a row up to the end of this update


class ChangeDetector:
    """One path's CUSUMs and baseline (mutable, like `Decider`; every answer is a `Verdict`)."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = cfg = config or DetectorConfig()
        self.h_rtt = cfg.rtt_threshold
        self.h_loss = cfg.loss_threshold
        self.clip = _clip(cfg.k, self.h_rtt, 2)
        self.jump_packets = 2  # packets beyond the clip that make an alarm (see _tail_rule)
        self._ref: deque[float] = deque(maxlen=cfg.reference_packets)
        self._held: list[float] = []  # RTTs not yet in the reference: a CUSUM is above zero
        self._n_up = self._n_dn = 0  # how many of the held RTTs since S⁺ / S⁻ left zero
        self._lost_up = self._lost_dn = 0  # packets lost since S⁺ / S⁻ left zero
        self._s_up = self._s_dn = self._s_loss = 0.0
        self._center = self._scale = self._jitter = math.nan
        self._stale = 0  # reference appends since the last centre/scale computation
        self._lost_ref, self._recv_ref = cfg.prior_lost, cfg.prior_received
        self._prior = cfg.prior_lost + cfg.prior_received  # pseudo-packets in the loss counts
        self._prior_lost = cfg.prior_lost  # of which lost
        self._learning_loss = True  # the loss baseline rests mostly on its prior (see below)
        self._centre_p0: float | None = (
            None  # the prior's centre while learning after an RTT change
        )
        self._lost_p = self._recv_p = 0  # packets since S_L left zero
        self._dead_run = 0
        self._dead = False
        self._before_dead: tuple[float, float, float, float, bool, float | None] | None = None

    @property
    def doubt(self) -> float:
        return min(1.0, max(self._s_up / self.h_rtt, self._s_dn / self.h_rtt, self._loss_doubt()))

    def _loss_doubt(self) -> float:
        return self._s_loss / self.h_loss

    def level(self) -> Level:
        """The current regime: the reference's median RTT and jitter, and the loss of every
        packet since the last change (the baseline and the packets held by the loss CUSUM)."""
        if self._dead:
            return Level(_num(self._center), _num(self._jitter), 1.0, self._dead_run)
        lost = self._lost_ref + self._lost_p
        total = lost + self._recv_ref + self._recv_p
        packets = max(0, round(total - self._prior))
        return Level(_num(self._center), _num(self._jitter), lost / total, packets)

    def update(self, now: float, sent: int, rtts_ms: Sequence[float]) -> Verdict:
        """Feed one round (or one packet): `sent` packets, the RTTs of those that came back."""
        received = len(rtts_ms)
        if sent < received or sent < 0:
            raise ValueError(f"a round cannot return {received} of {sent} packets")
        bad = [r for r in rtts_ms if not (math.isfinite(r) and r >= 0)]
        if bad:  # checked before anything changes: a bad round leaves no trace
            raise ValueError(f"an RTT must be a finite number of ms >= 0, got {bad[0]}")
        if sent == 0:
            return self._verdict(now, None, False, 0)
        lost = sent - received
        dead = self._dead_update(sent, received)
        if dead == "dead" or self._dead:
            return self._verdict(now, dead, False, lost)
        jump, rtt_alarm, consumed = self._rtt_update(rtts_ms)
        self._lost_up = self._lost_up + lost if self._s_up > 0 else 0
        self._lost_dn = self._lost_dn + lost if self._s_dn > 0 else 0
        loss_alarm = self._loss_update(received - consumed, lost)
        return self._verdict(now, dead or rtt_alarm or loss_alarm, jump, lost)

    # -- dead / alive ------------------------------------------------------------------

    def _dead_update(self, sent: int, received: int) -> Statistic | None:
        if received:
            self._dead_run = 0
            if self._dead:  # back from the dead: a change at once, the old loss baseline
                self._dead = False
                self._restore_loss()
                return "alive"
            return None
        self._dead_run += sent
        if not self._dead and self._dead_run >= self.config.dead_packets:
            self._dead = True
            self._before_dead = (self._lost_ref, self._recv_ref, self._prior, self._prior_lost,
                                 self._learning_loss, self._centre_p0)  # fmt: skip
            self._s_up = self._s_dn = self._s_loss = 0.0
            self._n_up = self._n_dn = self._lost_up = self._lost_dn = 0
            return "dead"
        return None

    # -- RTT ---------------------------------------------------------------------------

    def _rtt_update(self, rtts_ms: Sequence[float]) -> tuple[bool, Statistic | None, int]:
        """The round's RTTs through both CUSUMs; also how many of them an alarm counted as
        post-change packets of the restarted loss estimate (the rest go to `_loss_update`)."""
        jump = False
        alarm: Statistic | None = None
        consumed = 0
        for i, rtt in enumerate(rtts_ms):
            if not math.isfinite(self._scale):  # learning: no scale yet
                self._add_reference(rtt)
                continue
            z = (rtt - self._center) / self._scale
            jump = jump or abs(z) >= self.clip
            z = min(max(z, -self.clip), self.clip)
            self._s_up = max(0.0, self._s_up + z - self.config.k)
            self._s_dn = max(0.0, self._s_dn - z - self.config.k)
            self._hold(rtt)
            if self._s_up >= self.h_rtt or self._s_dn >= self.h_rtt:
                alarm = "rtt_up" if self._s_up >= self.h_rtt else "rtt_down"
                up = alarm == "rtt_up"
                since = self._n_up if up else self._n_dn
                lost = self._lost_up if up else self._lost_dn
                self._accept_rtt(since)
                self._restart_loss(lost, max(1, since))
                consumed = i + 1
        return jump, alarm, consumed

    def _hold(self, rtt: float) -> None:
        self._held.append(rtt)
        self._n_up = self._n_up + 1 if self._s_up > 0 else 0
        self._n_dn = self._n_dn + 1 if self._s_dn > 0 else 0
        self._lost_up = self._lost_up if self._s_up > 0 else 0
        self._lost_dn = self._lost_dn if self._s_dn > 0 else 0
        if self._s_up == 0 and self._s_dn == 0:
            self._flush(len(self._held))
        elif len(self._held) > self.config.reference_packets:  # a long slow drift: adapt
            self._flush(max(1, len(self._held) - max(self._n_up, self._n_dn)))

    def _flush(self, count: int) -> None:
        for rtt in self._held[:count]:
            self._add_reference(rtt)
        del self._held[:count]

    def _accept_rtt(self, since: int) -> None:
        """The change point is `since` RTTs back: they are the new reference."""
        post = self._held[-since:] if since else self._held[-1:]
        self._ref.clear()
        self._held.clear()
        self._s_up = self._s_dn = 0.0
        self._n_up = self._n_dn = self._lost_up = self._lost_dn = 0
        for rtt in post:
            self._ref.append(rtt)
        self._refresh()

    def _add_reference(self, rtt: float) -> None:
        self._ref.append(rtt)
        self._stale += 1
        if len(self._ref) <= self.config.min_reference or self._stale >= 8:
            self._refresh()

    def _refresh(self) -> None:
        """Centre, scale and jitter from the reference; a short post-change reference keeps
        the scale (and spike rule) and the jitter it had before the change: two or three
        packets do not tell the jitter (their |ΔRTT| may be 0, or one spike), and the planner
        reads a jitter of 10 ms as 2.5 % late loss."""
        ref = np.fromiter(self._ref, dtype=float)
        self._stale = 0
        self._center = float(np.median(ref))
        if len(ref) >= self.config.min_reference:
            mad = float(np.median(np.abs(ref - self._center)))
            # the 99th percentile means something only with enough packets: in a short
            # reference it is its largest, and one outlier (a level shift in the first seconds)
            # would widen the scale for as long as it stays in the reference
            tail = 0.0
            if len(ref) >= _TAIL_MIN_PACKETS:
                tail = (float(np.quantile(ref, 0.99)) - self._center) / _Z99
            self._scale = max(_MAD_TO_SIGMA * mad, tail, self.config.scale_floor_ms)
            m, clip = self._tail_rule((ref - self._center) / self._scale)
            if m >= self.jump_packets or len(ref) * 2 >= self.config.reference_packets:
                self.jump_packets, self.clip = m, clip  # a short reference may not relax it
        if len(ref) >= self.config.min_reference or (len(ref) > 1 and math.isnan(self._jitter)):
            self._jitter = float(np.mean(np.abs(np.diff(ref))))

    def _tail_rule(self, z: np.ndarray) -> tuple[int, float]:
        """How many packets beyond the clip an alarm takes: the fewest m (from 2) for which m
        reference packets in a row beyond the clip are rarer than one per ARL0: 2·q^m ≤
        1/ARL0 (the 2 for the alarm back to the old level that a false alarm brings; spikes
        apart do not combine: a contribution of at most 0.55·h decays by k ≥ h/2 a packet),
        the share q beyond it estimated as (count + 0.1)/(n + 0.1/`spike_prior`), a prior of
        one spike in 1/`spike_prior` packets worth 0.1 spike, so a short reference is neither
        trusted to be clean nor condemned as spiky. A path with spikes needs three packets
        where a clean one needs two."""
        log_arl0 = math.log(2.0 * self.config.arl0_per_statistic)
        k, h = self.config.k, self.h_rtt
        for m in range(2, 8):
            c = _clip(k, h, m)
            spikes = float(np.count_nonzero(np.abs(z) >= c))
            q = (spikes + 0.1) / (len(z) + 0.1 / self.config.spike_prior)
            if m * math.log(1.0 / q) >= log_arl0:
                return m, c
        return 8, _clip(k, h, 8)

    # -- loss --------------------------------------------------------------------------

    def _p0(self) -> float:
        p = self._lost_ref / (self._lost_ref + self._recv_ref)
        return min(max(p, self.config.min_p0), 0.5)

    def _p0_tested(self) -> float:
        """The baseline the loss CUSUM tests against: p0 plus `loss_baseline_z` standard
        errors of it, so that a baseline learnt from a few hundred packets (a 2 % path's 300
        packets hold 6 ± 2.4 losses) does not make the path's own loss an alarm; with a long
        baseline (thousands of packets) it is about p0. The price: a young baseline detects a
        loss change later (0.3 % learnt from 600 packets is tested as 0.52 %)."""
        n = self._lost_ref + self._recv_ref
        p = self._p0()
        return min(p + self.config.loss_baseline_z * math.sqrt(p * (1 - p) / n), 0.5)

    def _loss_update(self, received: int, lost: int) -> Statistic | None:
        """Receptions first, then losses (their order within a round is not known). While the
        baseline rests on fewer than `loss_learning_packets` real packets (after start-up and
        after each change) it only learns: a 2 % path must not alarm against the prior's
        0.33 %, nor a post-change estimate against the prior it started from."""
        if self._learning_loss:
            self._merge_loss(received, lost)
            if self._lost_ref + self._recv_ref - self._prior >= self.config.loss_learning_packets:
                self._end_learning()
            return None
        p0 = self._p0_tested()
        if_lost, if_received = bernoulli_llr(p0, loss_alternative(p0))
        self._s_loss = max(0.0, self._s_loss + received * if_received)
        if self._s_loss == 0.0:
            self._merge_loss(received, 0)
        else:
            self._recv_p += received
        self._s_loss += lost * if_lost
        self._lost_p += lost
        if self._s_loss >= self.h_loss:
            self._reset_loss(self._lost_p, self._recv_p)
            return "loss"
        return None

    def _merge_loss(self, received: int, lost: int) -> None:
        self._lost_ref += self._lost_p + lost
        self._recv_ref += self._recv_p + received
        self._lost_p = self._recv_p = 0
        total = self._lost_ref + self._recv_ref
        memory = self.config.loss_memory_packets + self._prior
        if total > memory:
            self._lost_ref *= memory / total
            self._recv_ref *= memory / total
            self._prior *= memory / total
            self._prior_lost *= memory / total

    def _end_learning(self) -> None:
        """Enough real packets: the baseline becomes theirs under a Jeffreys prior. The prior
        that carried the level so far (0.33 % worth 300 packets at start-up, the old loss
        after an RTT change) would otherwise hold a 2 % path's baseline near 1 % for
        thousands of packets, and its loss CUSUM would alarm on the path's own loss."""
        lost = self._lost_ref - self._prior_lost
        received = self._recv_ref - (self._prior - self._prior_lost)
        self._lost_ref, self._recv_ref = lost + 0.5, received + 0.5
        self._prior, self._prior_lost = 1.0, 0.5
        self._learning_loss, self._centre_p0 = False, None

    def _restart_loss(self, lost: int, received: int) -> None:
        """An RTT change is a new regime: the loss baseline restarts from the packets since
        the change point under a prior centred on the old loss p0 worth `change_prior_packets`,
        and the loss CUSUM from zero on it. 50: on a 2 % path one loss in the first 5 packets
        reads 3.6 %, under the 3.7 % at which a 0.2 MOS margin is beaten (at 250 ms); four in
        25 read 6.7 %. A second RTT change while the first one's loss is still learning (a
        false alarm and the alarm back) centres its prior on the same old p0, not on the
        young estimate."""
        if self._centre_p0 is None or not self._learning_loss:
            self._centre_p0 = self._p0()
        w, p0 = self.config.change_prior_packets, self._centre_p0
        self._lost_ref, self._recv_ref, self._prior = w * p0 + lost, w * (1 - p0) + received, w
        self._prior_lost, self._learning_loss = w * p0, True
        self._lost_p = self._recv_p = 0
        self._s_loss = 0.0

    def _restore_loss(self) -> None:
        """A PoP back from the dead is taken to be back as it was: the loss baseline of before
        the outage (the outage's own packets never entered it; those lost before it was called
        dead are dropped with the loss CUSUM), watched by the loss CUSUM from zero. Learning it
        afresh from a weak prior would read a lone loss in its first minutes as the path's
        baseline (50 % after no packets), and a PoP that dies again soon after would need
        more packets to be found dead."""
        if self._before_dead is None:
            self._reset_loss(0, 0)
            return
        (self._lost_ref, self._recv_ref, self._prior, self._prior_lost, self._learning_loss,
         self._centre_p0) = self._before_dead  # fmt: skip
        self._before_dead = None
        self._lost_p = self._recv_p = 0
        self._s_loss = 0.0

    def _reset_loss(self, lost: int, received: int) -> None:
        """A new loss baseline from the post-change packets under a weak (Jeffreys) prior."""
        self._lost_ref, self._recv_ref, self._prior = lost + 0.5, received + 0.5, 1.0
        self._prior_lost, self._learning_loss, self._centre_p0 = 0.5, True, None
        self._lost_p = self._recv_p = 0
        self._s_loss = 0.0

    # -- verdict -----------------------------------------------------------------------

    def _verdict(self, now: float, alarm: Statistic | None, jump: bool, lost: int) -> Verdict:
        level = self.level()
        if alarm is not None:
            return Verdict(now, "changed", alarm, 1.0, level, jump, lost, self._dead_run)
        if not math.isfinite(self._scale):
            doubt = self._loss_doubt()
            return Verdict(now, "learning", None, doubt, level, jump, lost, self._dead_run)
        doubts: dict[Statistic, float] = {
            "rtt_up": self._s_up / self.h_rtt,
            "rtt_down": self._s_dn / self.h_rtt,
            "loss": self._loss_doubt(),
        }
        statistic = max(doubts, key=lambda s: doubts[s])
        doubt = min(1.0, doubts[statistic])
        suspect = doubt >= self.config.suspect_doubt or jump
        state: State = "suspect" if suspect else "steady"
        named = statistic if doubt > 0 else None
        return Verdict(now, state, named, doubt, level, jump, lost, self._dead_run)


def _clip(k: float, h: float, m: int) -> float:
    """The clip at which m packets beyond it, from S = 0, just cross h."""
    return k + 1.1 * h / m


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
