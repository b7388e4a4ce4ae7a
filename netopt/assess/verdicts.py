"""Routes, verdicts and suggestions for the assessed site: the planner on the campaign's paths.

analysis (site → PoP PathStats) → **judge** → route objects (as `netopt plan --json`), one
plain-language verdict per destination with MOS before (direct) and after (recommended), and,
where no existing PoP reaches the target, what `topology.placement` says a local edge node at
the site would do. Pure: no I/O, no clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from netopt.assess.model import DestVerdict, PopResult, RouteEntry, Suggestion, Verdict
from netopt.assess.thresholds import g114_words, target_words
from netopt.cli.plan import to_json
from netopt.config import Config
from topology import quality
from topology.model import Link
from topology.placement import CandidateSite, place
from topology.planner import PathStats, RegionPlan, plan

LOCAL_RTT_MS = 2.0  # assumed site → local edge node round trip (same metro)
HEADLINE_ORDER: tuple[Verdict, ...] = (
    "insufficient", "needed", "unreachable", "unmeasured", "not_needed",
)  # fmt: skip


@dataclass(frozen=True)
class Judged:
    overall: Verdict
    verdicts: tuple[DestVerdict, ...]
    routes: tuple[RouteEntry, ...]
    unreachable: tuple[dict[str, str], ...]


def judge(config: Config, site: str, paths: Sequence[PathStats], codec: str) -> Judged:
    topology = config.to_topology()
    pc = config.planner
    result = plan(topology, paths, target_mos=pc.target_mos, margin_mos=pc.margin_mos,
                  codec=codec)  # fmt: skip
    entries = [e for e in result if e.region == site]
    rendered = to_json(entries, result)
    routes = tuple(RouteEntry.model_validate(r) for r in rendered["routes"])
    verdicts = []
    for e in entries:
        v = dest_verdict(e, pc.target_mos)
        if e.acceleration == "insufficient":
            v = v.model_copy(update={"suggestion": suggest(config, site, paths, codec, e.dest)})
        verdicts.append(v)
    present = {v.acceleration for v in verdicts}
    overall: Verdict = next((h for h in HEADLINE_ORDER if h in present), "unmeasured")
    return Judged(overall, tuple(verdicts), routes, tuple(rendered["unreachable"]))


def dest_verdict(e: RegionPlan, target_mos: float) -> DestVerdict:
    """The verdict for one destination with its reasons, in words."""
    direct, best = e.direct, e.best
    before = None if direct is None else round(direct.expected.mos, 3)
    relayed = best is not None and best.kind == "relay" and e.acceleration != "not_needed"
    after = round(best.expected.mos, 3) if best is not None and relayed else before
    reasons = [e.reason]
    if direct is not None:
        x = direct.expected
        crossed = quality.poor_flags(x.rtt_ms, x.jitter_ms, x.loss_pct) + g114_words(x.rtt_ms / 2)
        if crossed:
            reasons.append(f"the direct path crosses: {'; '.join(crossed)}")
        else:
            reasons.append("the direct path is within the poor-call and G.114 thresholds")
        reasons.append(f"direct MOS {x.mos:.2f} against the {target_words(target_mos)}")
    if relayed and best is not None:
        x = best.expected
        reasons.append(
            f"via {best.entry_pop} ({' → '.join(best.path)}): RTT {x.rtt_ms:.0f} ms, "
            f"jitter {x.jitter_ms:.1f} ms, loss {x.loss_pct:.2f} %, MOS {x.mos:.2f}"
        )
    return DestVerdict(
        dest=e.dest, acceleration=e.acceleration,  # type: ignore[arg-type]
        via=best.entry_pop if relayed and best is not None else None,
        mos_before=before, mos_after=after, reasons=tuple(reasons),
    )  # fmt: skip


def suggest(
    config: Config, site: str, paths: Sequence[PathStats], codec: str, dest: str
) -> Suggestion | None:
    """What a new edge node local to the site would do, by `topology.placement`.

    Assumed (and said so in the report): the site reaches it in LOCAL_RTT_MS with the cleanest
    last mile measured (least loss and jitter over all PoPs), and it joins each destination by
    a private line as long as the measured direct RTT to that destination, with the median
    jitter and loss of the configured backbone."""
    topology = config.to_topology()
    measured = [p for p in paths if p.src == site]
    if not measured:
        return None
    pop_id = f"{site}-edge"
    if topology.is_pop(pop_id) or topology.is_region(pop_id):
        return None
    jitter = min(p.jitter_ms for p in measured)
    loss = min(p.loss_pct for p in measured)
    bb = topology.backbone
    bb_jitter = statistics.median(b.jitter_ms for b in bb) if bb else 0.2
    bb_loss = statistics.median(b.loss_pct for b in bb) if bb else 0.0
    by_dst = {p.dst: p.rtt_ms for p in measured}
    links = tuple(
        Link(pop_id, d, max(by_dst[d] - LOCAL_RTT_MS, 0.0), bb_jitter, bb_loss)
        for d in topology.destinations if d in by_dst
    )  # fmt: skip
    if not links:
        return None
    access = (PathStats(site, pop_id, LOCAL_RTT_MS, jitter, loss, 0),)
    pc = config.planner
    steps = place(topology, measured, [CandidateSite(pop_id, access, links)], k=1,
                  target_mos=pc.target_mos, codec=codec)  # fmt: skip
    lifted = tuple(d for step in steps for r, d in step.lifted if r == site)
    assumption = (
        f"a new edge node in the site's metro: {LOCAL_RTT_MS:g} ms away with the cleanest last "
        f"mile measured (jitter {jitter:.1f} ms, loss {loss:.2f} %), joined to each destination "
        f"by a private line as long as the direct path (jitter {bb_jitter:.1f} ms, "
        f"loss {bb_loss:.2f} %)"
    )
    new = quality.mos(
        LOCAL_RTT_MS + next((lk.rtt_ms for lk in links if lk.b == dest), float("nan")),
        (jitter**2 + bb_jitter**2) ** 0.5,
        float(quality.compose_loss_pct(loss, bb_loss)),
        codec,
    )
    expected = None if new != new else round(new, 3)
    if dest not in lifted:
        assumption += "; even so it would not reach the target MOS"
    return Suggestion(pop=pop_id, lifted=lifted, expected_mos=expected, assumption=assumption)


def headline(
    site: str,
    verdicts: Sequence[DestVerdict],
    pops: Sequence[PopResult],
    *,
    partial: bool,
    duration_s: float,
    planned_s: float,
) -> tuple[str, ...]:
    """The few lines a customer reads first."""
    lines = []
    for v in verdicts:
        mos = _mos_words(v)
        if v.acceleration == "needed":
            lines.append(f"{site} → {v.dest}: acceleration needed — via {v.via}{mos}.")
        elif v.acceleration == "not_needed":
            lines.append(f"{site} → {v.dest}: acceleration not needed — go direct{mos}.")
        elif v.acceleration == "insufficient":
            s = v.suggestion
            extra = f"; a new PoP {s.pop} would give MOS {s.expected_mos}" if s else ""
            lines.append(f"{site} → {v.dest}: no route reaches the target{mos}{extra}.")
        else:
            lines.append(f"{site} → {v.dest}: {v.acceleration.replace('_', ' ')}.")
    silent = [p.pop for p in pops if not p.answered]
    if silent:
        lines.append(f"No answer from: {', '.join(silent)} (reported, not used).")
    if partial:
        lines.append(f"Partial run: stopped after {duration_s:.0f} s of {planned_s:.0f} s planned.")
    return tuple(lines)


def _mos_words(v: DestVerdict) -> str:
    if v.mos_before is None or v.mos_after is None:
        return ""
    if v.mos_before == v.mos_after:
        return f" (MOS {v.mos_before:.2f})"
    return f" (MOS {v.mos_before:.2f} → {v.mos_after:.2f})"
