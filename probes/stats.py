"""Statistics of one round: probe → sample → **stats** → store/plan.

`round_stats(result)` turns a `ProbeResult` into a frozen `RoundStats`: RTT percentiles, RFC 3550
interarrival jitter, IPDV (RFC 5481), loss with a Wilson 95 % interval, reordering, duplicates,
loss bursts and gaps, and — for a voice stream — the share of packets later than a jitter
buffer. Pure functions over the samples; numpy where there is a vector.

Four results, four names: `round_stats` → `RoundStats` (everything, for `netopt probe`);
`round_digest` → `RoundDigest` (what the daemon stores of every round); `round_summary` →
`RoundSummary` (a digest with start time and RTTs, for a scheduled round);
`round_summaries_from_arrays` → the same for a whole ICMP batch, from its arrays.

Conventions: *lost* means TIMEOUT only — an ICMP unreachable, a refused port or a SIP non-2xx
is an outcome of its own, counted in `outcomes`, not loss (the network answered). Packets whose
send failed (ERROR) were never sent and are left out of every denominator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probes.base import Outcome, ProbeResult, Sample

_NS_PER_MS = 1e6
NUMPY_FROM = 256  # vectors at least this long go through numpy
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class RttSummary:
    """Distribution of a delay in ms (RTT or one-way)."""

    min: float
    avg: float
    p50: float
    p90: float
    p99: float
    max: float
    stddev: float

    @classmethod
    def of_ms(cls, values_ms: Sequence[float]) -> RttSummary | None:
        if not values_ms:
            return None
        mean, std = moments(values_ms)
        v = _sorted(values_ms)
        return cls(
            min(values_ms), mean, _quantile(v, 50), _quantile(v, 90), _quantile(v, 99),
            max(values_ms), std,
        )  # fmt: skip

    def to_json(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 4) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class IpdvSummary:
    """|IPDV| percentiles in ms over consecutive received sequence pairs (RFC 5481)."""

    p50: float
    p90: float
    p99: float
    max: float
    pairs: int

    def to_json(self) -> dict[str, float]:
        return {
            "p50": round(self.p50, 4),
            "p90": round(self.p90, 4),
            "p99": round(self.p99, 4),
            "max": round(self.max, 4),
            "pairs": self.pairs,
        }


@dataclass(frozen=True, slots=True)
class BurstSummary:
    """Runs of consecutive lost packets (bursts) and of delivered packets between them (gaps)."""

    count: int
    max_len: int
    mean_len: float
    mean_gap_len: float

    def to_json(self) -> dict[str, float]:
        return {
            "count": self.count,
            "max_len": self.max_len,
            "mean_len": round(self.mean_len, 3),
            "mean_gap_len": round(self.mean_gap_len, 3),
        }


@dataclass(frozen=True, slots=True)
class RoundStats:
    """Everything the store, metrics and planner need from one round."""

    target: str
    kind: str
    sent: int
    received: int
    lost: int
    loss_ratio: float
    loss_ci95: tuple[float, float]
    rtt_ms: RttSummary | None
    jitter_ms: float | None
    ipdv_ms: IpdvSummary | None
    bursts: BurstSummary
    reordered: int
    duplicates: int
    outcomes: dict[str, int] = field(default_factory=dict)
    foreign: dict[str, int] = field(default_factory=dict)
    forward_ms: RttSummary | None = None
    backward_ms: RttSummary | None = None
    late_ratio: float | None = None  # later than the jitter buffer (voice), share of sent
    statuses: dict[str, int] = field(default_factory=dict)  # protocol status codes (SIP)

    def to_json(self) -> dict[str, Any]:
        """The `netopt probe --json` keys (loss and its interval in percent)."""
        out: dict[str, Any] = {
            "target": self.target,
            "kind": self.kind,
            "sent": self.sent,
            "received": self.received,
            "loss_pct": round(100 * self.loss_ratio, 4),
            "loss_ci95_pct": [round(100 * x, 4) for x in self.loss_ci95],
            "rtt_ms": self.rtt_ms.to_json() if self.rtt_ms else None,
            "jitter_ms": None if self.jitter_ms is None else round(self.jitter_ms, 4),
            "ipdv_ms": self.ipdv_ms.to_json() if self.ipdv_ms else None,
            "bursts": self.bursts.to_json(),
            "reordered": self.reordered,
            "duplicates": self.duplicates,
            "outcomes": dict(self.outcomes),
            "foreign": dict(self.foreign),
        }
        if self.forward_ms or self.backward_ms:
            out["forward_ms"] = self.forward_ms.to_json() if self.forward_ms else None
            out["backward_ms"] = self.backward_ms.to_json() if self.backward_ms else None
        if self.late_ratio is not None:
            out["late_pct"] = round(100 * self.late_ratio, 4)
        if self.statuses:
            out["statuses"] = dict(self.statuses)
        return out


@dataclass(frozen=True, slots=True)
class RoundDigest:
    """The part of `RoundStats` a daemon stores and exports for every round (`round_digest`):
    the same fields, computed by the same code, without the rest (IPDV, bursts, intervals …)."""

    sent: int
    received: int
    rtt_ms: RttSummary | None
    jitter_ms: float | None
    outcomes: dict[str, int]


class _Split:
    """One pass over a round's samples: what `round_stats` and `round_digest` both start from."""

    __slots__ = ("by_outcome", "lost", "ok", "rtt_ms", "samples")

    def __init__(self, result: ProbeResult) -> None:
        error, ok_outcome, timeout = Outcome.ERROR, Outcome.OK, Outcome.TIMEOUT
        samples, ok, lost, by_outcome = [], [], 0, dict[Outcome, int]()
        for s in result.samples:  # one pass: the per-round cost matters at 1,000 rounds/s
            o = s.outcome
            by_outcome[o] = by_outcome.get(o, 0) + 1
            if o is not error:
                samples.append(s)
                if o is ok_outcome:
                    ok.append(s)
                elif o is timeout:
                    lost += 1
        ok.sort(key=_arrival)
        self.samples, self.ok, self.lost, self.by_outcome = samples, ok, lost, by_outcome
        self.rtt_ms = [((s.received_ns or 0) - s.sent_ns) / _NS_PER_MS for s in ok]  # arrival order

    def jitter_ms(self) -> float | None:
        return _last_jitter(self.rtt_ms) if self.rtt_ms else None

    def outcomes(self) -> dict[str, int]:
        return {o._value_: n for o, n in self.by_outcome.items()}  # samples per outcome


def round_digest(result: ProbeResult) -> RoundDigest:
    """`round_stats(result)`'s sent, received, rtt_ms, jitter_ms and outcomes (a third of its
    cost): what the daemon and the agent keep of each scheduled round."""
    split = _Split(result)
    return RoundDigest(
        len(split.samples), len(split.ok), RttSummary.of_ms(split.rtt_ms), split.jitter_ms(),
        split.outcomes(),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """What a scheduled round leaves behind: when it began, its digest, and the RTTs (s) of
    the packets answered in time, in send order (for the RTT histogram)."""

    started_wall_ns: int
    digest: RoundDigest
    rtts_s: list[float]


def round_summary(result: ProbeResult) -> RoundSummary:
    ok = Outcome.OK
    rtts_s = [s.rtt_ns / 1e9 for s in result.samples if s.outcome is ok and s.rtt_ns]
    return RoundSummary(result.started_wall_ns, round_digest(result), rtts_s)


def round_summaries_from_arrays(
    started_wall_ns: int, sent_ns: npt.NDArray[np.int64], received_ns: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int8], outcomes: Sequence[Outcome],
) -> list[RoundSummary]:  # fmt: skip
    """`round_summary` of many rounds of one length begun at one time, from arrays (a row a
    round, a column a packet; the outcome of packet j of round i is `outcomes[codes[i, j]]`),
    without building a `Sample` per packet: the same values (`RttSummary.of_ms` and the RFC 3550
    jitter over the RTTs in arrival order, as `round_digest`)."""
    n, count = codes.shape
    ok_code = outcomes.index(Outcome.OK)
    ok = codes == ok_code
    error = np.isin(codes, [c for c, o in enumerate(outcomes) if o is Outcome.ERROR])
    arrival = np.where(ok, received_ns, np.iinfo(np.int64).max)  # then sequence (stable)
    order = np.argsort(arrival, axis=1, kind="stable")
    rtt_ns = received_ns - sent_ns
    by_arrival = np.take_along_axis(rtt_ns.astype(np.float64) / _NS_PER_MS, order, axis=1)
    rtt_ms, rtt_s = by_arrival.tolist(), (rtt_ns.astype(np.float64) / 1e9).tolist()
    answered, ok_rows = ok.sum(axis=1).tolist(), ok.tolist()
    sent = (count - error.sum(axis=1)).tolist()
    names = [o._value_ for o in outcomes]
    counts = [(codes == c).sum(axis=1).tolist() for c in range(len(outcomes))]
    out = []
    for i in range(n):
        k = answered[i]
        v = rtt_ms[i][:k]
        by_outcome: dict[str, int] = {}
        for c, name in enumerate(names):
            if counts[c][i]:  # two codes may name one outcome
                by_outcome[name] = by_outcome.get(name, 0) + counts[c][i]
        d = RoundDigest(sent[i], k, RttSummary.of_ms(v), _last_jitter(v) if v else None,
                        by_outcome)  # fmt: skip
        rtts = [x for x, o in zip(rtt_s[i], ok_rows[i], strict=True) if o and x]
        out.append(RoundSummary(started_wall_ns, d, rtts))
    return out


def round_stats(result: ProbeResult, jitter_buffer_ms: float | None = None) -> RoundStats:
    """The statistics of one round; `jitter_buffer_ms` adds the late-packet share (voice)."""
    timeout = Outcome.TIMEOUT
    split = _Split(result)
    samples, ok, lost, rtt_ms = split.samples, split.ok, split.lost, split.rtt_ms
    sent = len(samples)
    forward = [s.forward_ns / _NS_PER_MS for s in ok if s.forward_ns is not None]
    backward = [s.backward_ns / _NS_PER_MS for s in ok if s.backward_ns is not None]
    if not _in_seq_order(samples):
        samples.sort(key=_seq)
    return RoundStats(
        target=result.target.label,
        kind=result.kind,
        sent=sent,
        received=len(ok),
        lost=lost,
        loss_ratio=lost / sent if sent else 1.0,
        loss_ci95=wilson_interval(lost, sent),
        rtt_ms=RttSummary.of_ms(rtt_ms),
        jitter_ms=split.jitter_ms(),
        ipdv_ms=ipdv_summary(ok),
        bursts=burst_summary([s.outcome is timeout for s in samples]),
        reordered=reordered_count([s.seq for s in ok]),
        duplicates=int(result.foreign.get("duplicate", 0)),
        outcomes=split.outcomes(),
        foreign=dict(result.foreign),
        forward_ms=RttSummary.of_ms(forward),
        backward_ms=RttSummary.of_ms(backward),
        late_ratio=None if jitter_buffer_ms is None else late_ratio(ok, sent, jitter_buffer_ms),
        statuses=_status_counts(result.samples),
    )


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles with numpy's default (linear) interpolation, bit for bit (`_quantile`)."""
    v = _sorted(values)
    return [_quantile(v, q) for q in qs]


def moments(values: Sequence[float]) -> tuple[float, float]:
    """(mean, population standard deviation): the sum and the sum of squared deviations are
    exactly rounded (`math.fsum`), so the result does not depend on the order or the path;
    numpy computes the deviations from `NUMPY_FROM` values on, the same IEEE operations."""
    n = len(values)
    mean = math.fsum(values) / n
    if n >= NUMPY_FROM:
        d = np.asarray(values, dtype=np.float64) - mean
        squares: Sequence[float] = (d * d).tolist()
    else:
        squares = [(x - mean) * (x - mean) for x in values]
    return mean, math.sqrt(math.fsum(squares) / n)


def _sorted(values: Sequence[float]) -> Sequence[float]:
    """Ascending: `sorted` for short vectors (numpy's call overhead is ~50 µs), numpy's sort
    from `NUMPY_FROM` values on (both give the same order of the same floats)."""
    if len(values) >= NUMPY_FROM:
        return np.sort(np.asarray(values, dtype=np.float64)).tolist()  # type: ignore[no-any-return]
    return sorted(values)


def _quantile(v: Sequence[float], q: float) -> float:
    """The q-th percentile of ascending `v` by numpy's 'linear' method, with numpy's exact
    arithmetic (virtual index (n−1)·q/100, and its two-sided lerp), so one definition serves
    every vector length."""
    last = len(v) - 1
    h = last * (q / 100)
    if h >= last:  # numpy takes the last value at both ends, weight h − (−1)
        lo, g = last, h + 1
        a = b = v[last]
    else:
        lo = math.floor(h)
        g = h - lo
        a, b = v[lo], v[lo + 1]
    diff = b - a
    return b - diff * (1 - g) if g >= 0.5 else a + diff * g


def _in_seq_order(samples: Sequence[Sample]) -> bool:
    return all(a.seq < b.seq for a, b in itertools.pairwise(samples))


def _last_jitter(transit: Sequence[float]) -> float:
    """RFC 3550 jitter after the last packet (transits in arrival order)."""
    j = 0.0
    for prev, cur in itertools.pairwise(transit):
        j += (abs(cur - prev) - j) / 16.0
    return j


def _status_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        if s.status is not None:
            counts[str(s.status)] = counts.get(str(s.status), 0) + 1
    return counts


def _arrival(s: Sample) -> tuple[int, int]:
    return (s.received_ns or 0, s.seq)


def _seq(s: Sample) -> int:
    return s.seq


def rfc3550_jitter(sent: npt.ArrayLike, received: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """RFC 3550 §6.4.1 interarrival jitter after each packet, in the units given.

    Packets in arrival order; transit = received − sent; J += (|D| − J) / 16. The first
    packet has J = 0.
    """
    transit = np.asarray(received, dtype=np.float64) - np.asarray(sent, dtype=np.float64)
    out = np.zeros(transit.size, dtype=np.float64)
    if transit.size == 0:
        return out
    d = np.abs(np.diff(transit)).tolist()
    j = 0.0
    for i, di in enumerate(d, start=1):
        j += (di - j) / 16.0
        out[i] = j
    return out


def ipdv_summary(ok: Sequence[Sample]) -> IpdvSummary | None:
    """|IPDV| of consecutive sequence numbers that both arrived (RFC 5481 §1.1)."""
    by_seq = ok if _in_seq_order(ok) else sorted(ok, key=_seq)
    v = [
        abs(((b.received_ns or 0) - b.sent_ns) - ((a.received_ns or 0) - a.sent_ns)) / _NS_PER_MS
        for a, b in itertools.pairwise(by_seq)
        if b.seq == a.seq + 1
    ]
    if not v:
        return None
    s = _sorted(v)
    return IpdvSummary(_quantile(s, 50), _quantile(s, 90), _quantile(s, 99), max(v), len(v))


def wilson_interval(failures: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return (0.0, 1.0)
    p = failures / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if failures <= 0 else max(0.0, centre - half)
    hi = 1.0 if failures >= trials else min(1.0, centre + half)
    return (lo, hi)


def burst_summary(lost_in_seq_order: Sequence[bool]) -> BurstSummary:
    """Lengths of loss bursts and of the delivered runs (gaps) between and around them."""
    bursts: list[int] = []
    gaps: list[int] = []
    run, run_lost = 0, False
    for is_lost in lost_in_seq_order:
        if run and is_lost != run_lost:
            (bursts if run_lost else gaps).append(run)
            run = 0
        run, run_lost = run + 1, is_lost
    if run:
        (bursts if run_lost else gaps).append(run)
    return BurstSummary(
        count=len(bursts),
        max_len=max(bursts, default=0),
        mean_len=sum(bursts) / len(bursts) if bursts else 0.0,
        mean_gap_len=sum(gaps) / len(gaps) if gaps else 0.0,
    )


def reordered_count(seqs_in_arrival_order: Sequence[int]) -> int:
    """Packets that arrived after a higher sequence number had (RFC 4737 reordered singletons)."""
    highest, count = -1, 0
    for seq in seqs_in_arrival_order:
        if seq < highest:
            count += 1
        else:
            highest = seq
    return count


def late_ratio(ok: Sequence[Sample], sent: int, jitter_buffer_ms: float) -> float:
    """Share of sent packets that arrived but later than the buffer allows.

    A packet's delay is its forward one-way delay when the reflector gave one, else its RTT;
    it is late when it exceeds the round's smallest delay by more than the buffer depth (a
    fixed playout buffer anchored at the fastest packet).
    """
    if not ok or sent <= 0:
        return 0.0
    delays = np.array(
        [s.forward_ns if s.forward_ns is not None else (s.rtt_ns or 0) for s in ok],
        dtype=np.float64,
    )
    late = np.count_nonzero(delays - delays.min() > jitter_buffer_ms * _NS_PER_MS)
    return int(late) / sent


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """The loss fields of an RTCP receiver report block (RFC 3550 §6.4.1, appendix A.3)."""

    extended_highest_seq: int
    cumulative_lost: int
    fraction_lost: int  # lost / expected in 1/256 units, 0 when nothing (or less) was lost


def receiver_report(seqs_in_arrival_order: Sequence[int]) -> ReceiverReport:
    """Extended highest sequence (16-bit wrap counted in cycles), cumulative and fraction lost
    for one reporting interval starting at the first packet received."""
    if not seqs_in_arrival_order:
        return ReceiverReport(0, 0, 0)
    base = highest = seqs_in_arrival_order[0] & 0xFFFF
    cycles = 0
    for raw in seqs_in_arrival_order[1:]:
        seq = raw & 0xFFFF
        delta = (seq - highest) & 0xFFFF
        if 0 < delta < 0x8000:  # in order (possibly after a gap); a wrap adds a cycle
            if seq < highest:
                cycles += 0x10000
            highest = seq
    extended = cycles + highest
    expected = extended - base + 1
    lost = expected - len(seqs_in_arrival_order)
    fraction = (lost << 8) // expected if lost > 0 else 0
    return ReceiverReport(extended, lost, fraction)
