"""The report's plots, drawn with matplotlib and returned as inline SVG text (no files, no assets).

Report → **plots** → render_html. Agg backend, one figure at a time, closed after use; the SVG's
fonts are paths (`svg.fonttype = none` would need the viewer's fonts), so it opens anywhere.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netopt.assess.model import Report

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@contextmanager
def _figure(width_in: float = 8.0, height_in: float = 3.2) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=96)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    return text[text.index("<svg") :]


def rtt_over_time(report: Report) -> str:
    with _figure() as (fig, ax):
        for i, p in enumerate(report.pops):
            pts = [(x.t_s, x.rtt_ms) for x in p.series if x.rtt_ms is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", lw=1, label=p.pop,
                        color=COLOURS[i % len(COLOURS)])  # fmt: skip
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("RTT p50 per round (ms)")
        ax.set_title("RTT over time per PoP")
        _legend(ax)
        return _svg(fig)


def rtt_cdf(report: Report) -> str:
    with _figure() as (fig, ax):
        for i, p in enumerate(report.pops):
            values = sorted(x.rtt_ms for x in p.series if x.rtt_ms is not None)
            if values:
                ys = [(k + 1) / len(values) for k in range(len(values))]
                ax.step(values, ys, where="post", label=p.pop, color=COLOURS[i % len(COLOURS)])
        ax.set_xlabel("RTT p50 per round (ms)")
        ax.set_ylabel("share of rounds")
        ax.set_title("RTT CDF per PoP")
        _legend(ax)
        return _svg(fig)


def loss_jitter(report: Report) -> str:
    with _figure() as (fig, ax):
        names = [p.pop for p in report.pops]
        loss = [p.path.loss_pct if p.path else 0.0 for p in report.pops]
        jitter = [p.path.jitter_ms if p.path else 0.0 for p in report.pops]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], loss, width=0.4, label="loss %", color=COLOURS[1])
        ax2 = ax.twinx()
        ax2.bar([x + 0.2 for x in xs], jitter, width=0.4, label="jitter ms", color=COLOURS[0])
        ax.axhline(1.2, color=COLOURS[1], ls="--", lw=1)
        ax2.axhline(12.0, color=COLOURS[0], ls=":", lw=1)
        ax.set_xticks(list(xs), names)
        ax.set_ylabel("loss % (dashed: 1.2 % poor)")
        ax2.set_ylabel("jitter ms (dotted: 12 ms poor)")
        ax.set_title("Loss and jitter per PoP (site → PoP)")
        return _svg(fig)


def mos_by_route(report: Report) -> str:
    with _figure(8.0, 0.6 + 0.5 * max(1, _n_routes(report))) as (fig, ax):
        labels, values, colours = [], [], []
        for r in report.routes:
            for i, leg in enumerate((r, *r.alternatives)):
                if leg.expected is None or leg.expected.mos is None:
                    continue
                labels.append(f"{r.dest}: {' → '.join(leg.path)}")
                values.append(leg.expected.mos)
                colours.append(COLOURS[2] if i == 0 else "#999999")
        ax.barh(labels[::-1], values[::-1], color=colours[::-1])
        ax.axvline(report.target_mos, color="black", ls="--", lw=1)
        ax.set_xlim(1, 4.5)
        ax.set_xlabel(f"expected MOS, {report.codec} (dashed: target {report.target_mos:g})")
        ax.set_title("MOS by route (green: recommended)")
        return _svg(fig)


def _n_routes(report: Report) -> int:
    return sum(1 + len(r.alternatives) for r in report.routes)


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def all_plots(report: Report) -> dict[str, str]:
    return {
        "RTT over time": rtt_over_time(report),
        "RTT CDF": rtt_cdf(report),
        "Loss and jitter": loss_jitter(report),
        "MOS by route": mos_by_route(report),
    }
