"""From a campaign's collected rounds to the report model: pure, no I/O, `now` as an argument.

campaign → Collected (ProbeResults per PoP and kind) → **analyse** → Report → renderers.

Per PoP and probe kind, every round is pooled into one sample sequence (sequence numbers
renumbered round after round, so loss bursts, reordering and RFC 3550 jitter run across the
whole campaign) and summarised by `probes.stats.round_stats`. The planner gets, per PoP, the
first kind of `planner.kinds` that answered (voice before STAMP, UDP echo and ICMP — as the
daemon does). The routes, verdicts and suggestions come from `netopt.assess.verdicts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from netopt.assess.model import (
    Bursts,
    Delay,
    KindStats,
    PathQuality,
    Point,
    PopResult,
    Report,
)
from netopt.assess.thresholds import THRESHOLDS, g114_words
from netopt.assess.verdicts import headline, judge
from netopt.config import Config, PopConfig
from probes.base import ProbeResult, Sample
from probes.stats import RoundStats, round_stats
from topology import quality
from topology.planner import PathStats

CODECS = ("g711", "g729a", "opus")
JITTER_BUFFER_MS = 60.0
MAX_POINTS = 600  # per PoP on the RTT-over-time plot


@dataclass(frozen=True)
class Collected:
    """What a campaign gathered. Each ProbeResult's `target.name` is the PoP id."""

    site: str
    started_wall_s: float
    duration_planned_s: float
    duration_s: float
    partial: bool
    rounds: tuple[ProbeResult, ...]
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (pop, kind) → why


def codec_name(codec: str) -> str:
    """The E-model codec for a CLI/config codec name (g729 → g729a)."""
    key = codec.lower().replace(".", "")
    key = {"g729": "g729a", "pcmu": "g711", "pcma": "g711"}.get(key, key)
    quality.codec_of(key)  # ValueError naming the known ones
    return key


def pool(results: Sequence[ProbeResult]) -> ProbeResult:
    """Rounds of one kind to one target as one round, sequence numbers made consecutive."""
    samples: list[Sample] = []
    foreign: dict[str, int] = {}
    offset = 0
    for r in sorted(results, key=lambda x: x.started_wall_ns):
        top = -1
        for s in r.samples:
            samples.append(dataclasses.replace(s, seq=offset + s.seq))
            top = max(top, s.seq)
        offset += top + 1
        for k, v in r.foreign.items():
            foreign[k] = foreign.get(k, 0) + v
    first = results[0]
    return ProbeResult(first.kind, first.target, first.started_wall_ns, tuple(samples), foreign)


def kind_stats(kind: str, results: Sequence[ProbeResult], note: str = "") -> KindStats:
    st = round_stats(pool(results), jitter_buffer_ms=JITTER_BUFFER_MS if kind == "voice" else None)
    return KindStats(
        kind=kind, rounds=len(results), sent=st.sent, received=st.received,
        answered=st.received > 0, loss_pct=round(100 * st.loss_ratio, 4),
        loss_ci95_pct=(round(100 * st.loss_ci95[0], 4), round(100 * st.loss_ci95[1], 4)),
        rtt_ms=_delay(st), jitter_ms=None if st.jitter_ms is None else round(st.jitter_ms, 4),
        bursts=Bursts(count=st.bursts.count, max_len=st.bursts.max_len,
                      mean_len=round(st.bursts.mean_len, 3)),
        reordered=st.reordered, duplicates=st.duplicates,
        late_pct=None if st.late_ratio is None else round(100 * st.late_ratio, 4),
        outcomes=dict(st.outcomes), statuses=dict(st.statuses), note=note,
    )  # fmt: skip


def _delay(st: RoundStats) -> Delay | None:
    r = st.rtt_ms
    if r is None:
        return None
    return Delay(**{k: round(getattr(r, k), 4) for k in Delay.model_fields})


def path_quality(kinds: Sequence[KindStats], order: Sequence[str]) -> PathQuality | None:
    """Site → PoP numbers for the planner from the first kind in `order` that answered."""
    by_kind = {k.kind: k for k in kinds}
    for name in order:
        k = by_kind.get(name)
        if k is not None and k.answered and k.rtt_ms is not None:
            return PathQuality(kind=name, rtt_ms=k.rtt_ms.p50, jitter_ms=k.jitter_ms or 0.0,
                               loss_pct=k.loss_pct, samples=k.sent)  # fmt: skip
    return None


def series(results: Sequence[ProbeResult], started_wall_s: float) -> tuple[Point, ...]:
    """Per round of the planning kind: time since start, p50 RTT, loss (thinned to MAX_POINTS)."""
    pts = []
    for r in sorted(results, key=lambda x: x.started_wall_ns):
        st = round_stats(r)
        rtt = None if st.rtt_ms is None else round(st.rtt_ms.p50, 3)
        t = round(r.started_wall_ns / 1e9 - started_wall_s, 3)
        pts.append(Point(t_s=t, rtt_ms=rtt, loss_pct=round(100 * st.loss_ratio, 3)))
    step = max(1, -(-len(pts) // MAX_POINTS))
    return tuple(pts[::step])


def pop_result(pop: PopConfig, collected: Collected, order: Sequence[str]) -> PopResult:
    mine = [r for r in collected.rounds if r.target.name == pop.id]
    kinds_seen = list(dict.fromkeys(r.kind for r in mine))
    notes = {k: n for (p, k), n in collected.notes.items() if p == pop.id}
    kinds = tuple(
        kind_stats(k, [r for r in mine if r.kind == k], notes.get(k, "")) for k in kinds_seen
    )
    path = path_quality(kinds, order)
    mos: dict[str, float | None] = {c: None for c in CODECS}
    flags: tuple[str, ...] = ()
    one_way = None
    pts: tuple[Point, ...] = ()
    if path is not None:
        mos = {c: round(quality.mos(path.rtt_ms, path.jitter_ms, path.loss_pct, c), 3)
               for c in CODECS}  # fmt: skip
        one_way = round(path.rtt_ms / 2, 3)
        flags = (*quality.poor_flags(path.rtt_ms, path.jitter_ms, path.loss_pct),
                 *g114_words(one_way))  # fmt: skip
        pts = series([r for r in mine if r.kind == path.kind], collected.started_wall_s)
    return PopResult(
        pop=pop.id, name=pop.name or pop.id, role=pop.role, address=pop.address,
        answered=any(k.answered for k in kinds), kinds=kinds, path=path, mos=mos,
        one_way_ms=one_way, flags=flags, series=pts,
    )  # fmt: skip


def analyse(
    config: Config,
    collected: Collected,
    *,
    codec: str,
    now_wall_s: float,
    version: str,
) -> Report:
    """The report of one campaign (see the module docstring)."""
    site = config.site(collected.site)
    codec = codec_name(codec)
    order = config.planner.kinds
    pops = tuple(pop_result(p, collected, order) for p in config.pops)
    paths = [
        PathStats(site.id, p.pop, p.path.rtt_ms, p.path.jitter_ms, p.path.loss_pct,
                  p.path.samples)
        for p in pops if p.path is not None
    ]  # fmt: skip
    judged = judge(config, site.id, paths, codec)
    summary = headline(
        site.id, judged.verdicts, pops, partial=collected.partial,
        duration_s=collected.duration_s, planned_s=collected.duration_planned_s,
    )  # fmt: skip
    return Report(
        netopt_version=version, site=site.id, site_name=site.name or site.id,
        created=_iso(now_wall_s), started=_iso(collected.started_wall_s),
        duration_planned_s=round(collected.duration_planned_s, 3),
        duration_s=round(collected.duration_s, 3), partial=collected.partial, codec=codec,
        target_mos=config.planner.target_mos, margin_mos=config.planner.margin_mos,
        verdict=judged.overall, summary=summary, verdicts=judged.verdicts, pops=pops,
        routes=judged.routes, unreachable=judged.unreachable, thresholds=THRESHOLDS,
    )  # fmt: skip


def _iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
