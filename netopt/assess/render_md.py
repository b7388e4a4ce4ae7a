"""report.md: the assessment as Markdown, for a ticket or an e-mail.

Report → **render_md** → text. Pure; the same rows as the HTML (`pop_rows`, `route_rows`).
"""

from __future__ import annotations

from netopt.assess.model import PopResult, Report

VERDICT_WORDS = {
    "needed": "acceleration needed",
    "not_needed": "acceleration not needed",
    "insufficient": "insufficient: no existing route reaches the target",
    "unmeasured": "unmeasured: no PoP answered",
    "unreachable": "unreachable: no measured path reaches the destination",
}
POP_HEAD = ("PoP", "role", "probe", "RTT p50/p90/p99 ms", "jitter ms", "loss % (95 % CI)",
            "bursts", "reordered", "MOS g711/g729a/opus", "flags")  # fmt: skip
ROUTE_HEAD = ("dest", "route", "RTT ms", "jitter ms", "loss %", "MOS", "verdict")


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def pop_rows(report: Report) -> list[tuple[str, ...]]:
    return [pop_row(p) for p in report.pops]


def pop_row(p: PopResult) -> tuple[str, ...]:
    if p.path is None:
        silent = ", ".join(f"{k.kind} {k.sent} sent" for k in p.kinds) or "not probed"
        return (p.pop, p.role, "no answer", "–", "–", "100", "–", "–", "–", silent)
    k = next(k for k in p.kinds if k.kind == p.path.kind)
    r = k.rtt_ms
    rtt = "–" if r is None else f"{r.p50:.1f}/{r.p90:.1f}/{r.p99:.1f}"
    ci = f"{k.loss_pct:.2f} ({k.loss_ci95_pct[0]:.2f}–{k.loss_ci95_pct[1]:.2f})"
    mos = "/".join(_f(p.mos.get(c), ".2f") for c in ("g711", "g729a", "opus"))
    bursts = f"{k.bursts.count} (max {k.bursts.max_len})"
    return (p.pop, p.role, f"{k.kind} ×{k.sent}", rtt, _f(k.jitter_ms, ".2f"), ci, bursts,
            str(k.reordered), mos, "; ".join(p.flags) or "none")  # fmt: skip


def route_rows(report: Report) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in report.routes:
        for i, leg in enumerate((r, *r.alternatives)):
            x = leg.expected
            if x is None:
                rows.append((r.dest, "–", "–", "–", "–", "–", r.acceleration))
                continue
            rows.append((r.dest, " → ".join(leg.path), _f(x.rtt_ms, ".0f"), _f(x.jitter_ms),
                         _f(x.loss_pct, ".2f"), _f(x.mos, ".2f"),
                         r.acceleration if i == 0 else "alternative"))  # fmt: skip
    return rows


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def render_md(report: Report) -> str:
    title = f"# Region assessment: {report.site_name} ({report.site})"
    status = "PARTIAL — interrupted" if report.partial else "complete"
    lines = [
        title, "",
        f"**Verdict: {VERDICT_WORDS[report.verdict]}.**", "",
        *[f"- {s}" for s in report.summary], "",
        f"Campaign: started {report.started}, {report.duration_s:.0f} s of "
        f"{report.duration_planned_s:.0f} s planned ({status}); codec {report.codec}; "
        f"target MOS {report.target_mos:g}, margin {report.margin_mos:g}. "
        f"Report made {report.created} by netopt {report.netopt_version}.", "",
        "## Recommendation per destination", "",
    ]  # fmt: skip
    for v in report.verdicts:
        lines.append(f"### {v.dest}: {VERDICT_WORDS[v.acceleration]}")
        lines.append("")
        lines.append(f"MOS before (direct): {_f(v.mos_before, '.2f')}; "
                     f"after (recommended{', via ' + v.via if v.via else ''}): "
                     f"{_f(v.mos_after, '.2f')}.")  # fmt: skip
        lines += ["", *[f"- {r}" for r in v.reasons]]
        if v.suggestion is not None:
            s = v.suggestion
            lines.append(f"- New PoP modelled: **{s.pop}** (expected MOS "
                         f"{_f(s.expected_mos, '.2f')}); assumed {s.assumption}.")  # fmt: skip
        lines.append("")
    lines += ["## Thresholds", ""]
    lines += [f"- **{t.name}**: {t.meaning} ({t.source})." for t in report.thresholds]
    lines.append("")
    lines += ["## Per PoP (this site → PoP)", "", *_table(POP_HEAD, pop_rows(report)), ""]
    lines += ["## Routes", "", *_table(ROUTE_HEAD, route_rows(report)), ""]
    return "\n".join(lines)
