"""report.html: one self-contained page (inline CSS and SVG plots, no external assets).

Report → **render_html** (+ plots) → text. Everything the customer sees is escaped; the plots
are matplotlib's SVG, embedded as is.
"""

from __future__ import annotations

from html import escape

from netopt.assess.model import Report
from netopt.assess.plots import all_plots
from netopt.assess.render_md import POP_HEAD, ROUTE_HEAD, VERDICT_WORDS, pop_rows, route_rows

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1200px;color:#222;line-height:1.4;padding:0 1em}
h1{margin-bottom:.2em}.meta{color:#666}
.verdict{font-size:1.4em;padding:.6em 1em;border-radius:6px;margin:1em 0}
.needed{background:#fff3cd;border-left:8px solid #e0a800}
.not_needed{background:#d4edda;border-left:8px solid #28a745}
.insufficient,.unreachable,.unmeasured{background:#f8d7da;border-left:8px solid #c82333}
.partial{background:#f8d7da;padding:.4em 1em;font-weight:bold}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}.plot svg{max-width:100%;height:auto}
"""


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _mos(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Region assessment: {escape(report.site_name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Region assessment: {escape(report.site_name)} ({escape(report.site)})</h1>",
        f"<p class='meta'>Started {escape(report.started)}, {report.duration_s:.0f} s of "
        f"{report.duration_planned_s:.0f} s planned; codec {escape(report.codec)}; target MOS "
        f"{report.target_mos:g}; report made {escape(report.created)} by netopt "
        f"{escape(report.netopt_version)}.</p>",
    ]
    if report.partial:
        parts.append("<p class='partial'>Partial report: the campaign was interrupted.</p>")
    parts.append(f"<div class='verdict {report.verdict}'>Verdict: "
                 f"{escape(VERDICT_WORDS[report.verdict])}</div>")  # fmt: skip
    parts.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in report.summary) + "</ul>")
    parts.append("<h2>Recommendation per destination</h2>")
    for v in report.verdicts:
        via = f", via {v.via}" if v.via else ""
        parts.append(
            f"<h3>{escape(v.dest)}: {escape(VERDICT_WORDS[v.acceleration])}</h3>"
            f"<p>MOS before (direct): <b>{_mos(v.mos_before)}</b>; after (recommended"
            f"{escape(via)}): <b>{_mos(v.mos_after)}</b></p><ul>"
            + "".join(f"<li>{escape(r)}</li>" for r in v.reasons)
        )
        if v.suggestion is not None:
            s = v.suggestion
            parts.append(
                f"<li>New PoP modelled: <b>{escape(s.pop)}</b> (expected MOS "
                f"{_mos(s.expected_mos)}); assumed {escape(s.assumption)}.</li>"
            )
        parts.append("</ul>")
    parts.append("<h2>Thresholds</h2><ul>")
    parts += [f"<li><b>{escape(t.name)}</b>: {escape(t.meaning)} ({escape(t.source)}).</li>"
              for t in report.thresholds]  # fmt: skip
    parts.append("</ul>")
    parts.append("<h2>Per PoP (this site → PoP)</h2>" + _table(POP_HEAD, pop_rows(report)))
    parts.append("<h2>Routes</h2>" + _table(ROUTE_HEAD, route_rows(report)))
    parts.append("<h2>Plots</h2>")
    for title, svg in all_plots(report).items():
        parts.append(f"<div class='plot'><h3>{escape(title)}</h3>{svg}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
