"""`netopt assess compare A.json B.json`: before and after on the same site, side by side.

report.json × 2 → **compare** → text. Pure; `load_report` is the one reader of report files
(bad JSON or a report that does not fit the schema is a NetoptError naming the file).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from netopt.assess.model import Report
from netopt.errors import NetoptError
from netopt.validation import format_validation_error


def load_report(path: str | Path) -> Report:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise NetoptError(f"{path}: cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NetoptError(f"{path}: not JSON: {exc}") from None
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc))
        raise NetoptError(f"{path}: not an assessment report: {problems}") from None


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _delta(a: float | None, b: float | None, fmt: str) -> str:
    if a is None or b is None:
        return f"{_num(a, fmt)} → {_num(b, fmt)}"
    return f"{a:{fmt}} → {b:{fmt}} ({b - a:+{fmt}})"


def compare(before: Report, after: Report) -> str:
    """Verdicts, MOS and per-PoP numbers of two reports of the same site."""
    if before.site != after.site:
        raise NetoptError(
            f"reports are for different sites ({before.site!r} and {after.site!r}); "
            "compare runs of the same site"
        )
    lines = [
        f"site {before.site}: {before.started} ({before.duration_s:.0f} s"
        f"{', partial' if before.partial else ''}) → {after.started} ({after.duration_s:.0f} s"
        f"{', partial' if after.partial else ''})",
        f"verdict: {before.verdict} → {after.verdict}",
    ]
    old = {v.dest: v for v in before.verdicts}
    for v in after.verdicts:
        o = old.get(v.dest)
        if o is None:
            lines.append(f"  {v.dest}: (not in the first report) → {v.acceleration}")
            continue
        lines.append(f"  {v.dest}: {o.acceleration} via {o.via or 'direct'} → {v.acceleration} "
                     f"via {v.via or 'direct'}; MOS recommended "
                     f"{_delta(o.mos_after, v.mos_after, '.2f')}")  # fmt: skip
    lines.append("per PoP (site → PoP):")
    pops = {p.pop: p for p in before.pops}
    for p in after.pops:
        q = pops.get(p.pop)
        a, b = (q.path if q else None), p.path
        parts = [
            f"{label} {_delta(getattr(a, f, None), getattr(b, f, None), fmt)} {unit}"
            for label, f, fmt, unit in (("RTT", "rtt_ms", ".1f", "ms"),
                                        ("jitter", "jitter_ms", ".1f", "ms"),
                                        ("loss", "loss_pct", ".2f", "%"))
        ]  # fmt: skip
        lines.append(f"  {p.pop}: " + ", ".join(parts))
    return "\n".join(lines)
