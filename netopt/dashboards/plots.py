"""Drawing a panel's query results with matplotlib (… → Prometheus → **preview PNG**).

One function per Grafana panel type, each roughly what Grafana shows: timeseries → lines
(threshold lines dashed), stat → big numbers coloured by thresholds and value mappings,
table → a table, geomap → sites on lat/lon coloured by value, heatmap → buckets over time,
state-timeline → bars where a state held. No data draws an explicit "No data".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from netopt.dashboards.results import Result, Window

Json = dict[str, Any]
COLOURS = {"green": "#56a64b", "red": "#e02f44", "yellow": "#f2cc0c", "orange": "#ff9830",
           "blue": "#3274d9", "dark-orange": "#fa6400"}  # fmt: skip
SCALE = {"percentunit": (100.0, "%"), "s": (1000.0, "ms"), "bytes": (1 / 2**20, "MiB")}


def _colour(name: str) -> str:
    return COLOURS.get(name, name)


def _scale(defaults: Json) -> tuple[float, str]:
    return SCALE.get(str(defaults.get("unit", "")), (1.0, ""))


def _steps(defaults: Json) -> list[tuple[float, str]]:
    steps = defaults.get("thresholds", {}).get("steps", [])
    return [(float(s["value"]), _colour(s["color"])) for s in steps]


def _colour_of(value: float, defaults: Json) -> str:
    colour = "#888888"
    for at, c in _steps(defaults):
        if value >= at:
            colour = c
    return colour


def _text_of(value: float, defaults: Json) -> tuple[str, str | None]:
    """A value mapping's text and colour for `value`, if the panel maps it."""
    for mapping in defaults.get("mappings", []):
        hit = mapping.get("options", {}).get(f"{value:g}")
        if hit:
            return str(hit["text"]), _colour(hit["color"])
    factor, unit = _scale(defaults)
    return f"{value * factor:.3g}{unit}", None


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "No data", ha="center", va="center", fontsize=16, color="#888",
            transform=ax.transAxes)  # fmt: skip
    ax.set_axis_off()


def _finite(v: float) -> bool:
    return not (math.isnan(v) or math.isinf(v))


def timeseries(ax: Axes, panel: Json, results: list[Result]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    factor, unit = _scale(defaults)
    bars = defaults.get("custom", {}).get("drawStyle") == "bars"
    drawn = 0
    for r in results:
        for s in r.series:
            times = np.array([round(t * 1000) for t in s.times_s], dtype="datetime64[ms]")
            values = [v * factor if _finite(v) else math.nan for v in s.values]
            if bars:
                ax.bar(times, values, width=0.0005, label=r.name(s))
            else:
                ax.plot(times, values, linewidth=1.2, label=r.name(s))
            drawn += 1
    if not drawn:
        return _no_data(ax)
    for at, colour in _steps(defaults)[1:]:
        ax.axhline(at * factor, color=colour, linestyle="--", linewidth=0.8)
    ax.set_ylabel(unit or str(defaults.get("unit", "")))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2 if drawn > 6 else 1)
    ax.figure.autofmt_xdate()


def stat(ax: Axes, panel: Json, results: list[Result]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    cells = [(r.name(s), s.values[-1]) for r in results for s in r.series if s.values]
    if not cells:
        return _no_data(ax)
    ax.set_axis_off()
    cols = min(len(cells), 4)
    rows = math.ceil(len(cells) / cols)
    for i, (name, value) in enumerate(cells):
        x, y = (i % cols) / cols, 1 - (i // cols + 1) / rows
        text, mapped = _text_of(value, defaults) if _finite(value) else ("NaN", None)
        colour = mapped or (_colour_of(value, defaults) if _finite(value) else "#888")
        ax.add_patch(Rectangle((x + 0.01, y + 0.02), 1 / cols - 0.02, 1 / rows - 0.04,
                                   color=colour, transform=ax.transAxes))  # fmt: skip
        cx, cy = x + 0.5 / cols, y + 0.5 / rows
        ax.text(cx, cy + 0.08 / rows, text, ha="center", va="center", color="white",
                fontsize=min(28, 60 / cols), weight="bold", transform=ax.transAxes)  # fmt: skip
        ax.text(cx, cy - 0.25 / rows, name, ha="center", va="center", color="white",
                fontsize=8, transform=ax.transAxes)  # fmt: skip


def merged_rows(results: list[Result]) -> tuple[list[str], list[list[str]]]:
    """Instant results as one table, joined on the labels every query has (Grafana's merge):
    label columns, then a value column per query."""
    series = [(r, s) for r in results for s in r.series if s.values]
    refs = [r.ref for r in results if r.series]
    common = set.intersection(*(set(s.labels) for _, s in series)) if series else set()
    names = sorted({k for _, s in series for k in s.labels})
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for r, s in series:
        key = tuple(s.labels.get(n, "") for n in sorted(common))
        row = rows.setdefault(key, {})
        row.update(s.labels)
        row[r.ref] = s.values[-1]
    header = [*names, *refs]
    body = [[str(row.get(n, "")) for n in names]
            + [f"{row[ref]:.4g}" if ref in row else "" for ref in refs]
            for row in rows.values()]  # fmt: skip
    return header, body


def table(ax: Axes, panel: Json, results: list[Result]) -> None:
    header, body = merged_rows(results)
    if not body:
        return _no_data(ax)
    ax.set_axis_off()
    unit = str(panel["fieldConfig"]["defaults"].get("unit", ""))  # values in base units
    refs = [r.ref for r in results if r.series]
    if len(refs) == 1:
        header[-1] = f"Value{f' ({unit})' if unit else ''}"
    t = ax.table(cellText=body[:30], colLabels=header, loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.3)


def geomap(ax: Axes, panel: Json, results: list[Result]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    markers = {"A": "o", "B": "s"}
    drawn = 0
    for r in results:
        for s in r.series:
            try:
                lat, lon = float(s.labels["lat"]), float(s.labels["lon"])
            except (KeyError, ValueError):
                continue
            value = s.values[-1]
            ax.scatter([lon], [lat], s=160, marker=markers.get(r.ref, "o"), edgecolor="black",
                       color=_colour_of(value, defaults), zorder=3)  # fmt: skip
            ax.annotate(f"{s.labels.get('name', '?')} {value:.2f}", (lon, lat), fontsize=8,
                        xytext=(6, 6), textcoords="offset points")  # fmt: skip
            drawn += 1
    if not drawn:
        return _no_data(ax)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(alpha=0.3)
    ax.margins(0.25)
    ax.set_aspect("equal", adjustable="datalim")


def heatmap(ax: Axes, panel: Json, results: list[Result]) -> None:
    series = [s for r in results for s in r.series if s.values and "le" in s.labels]
    if not series:
        return _no_data(ax)
    series.sort(key=lambda s: float(s.labels["le"]))
    times = sorted({t for s in series for t in s.times_s})
    grid = [[math.nan] * len(times) for _ in series]
    index = {t: i for i, t in enumerate(times)}
    for row, s in enumerate(series):
        for t, v in zip(s.times_s, s.values, strict=True):
            grid[row][index[t]] = v
    for row in range(len(series) - 1, 0, -1):  # cumulative `le` buckets → per bucket
        grid[row] = [hi - lo for hi, lo in zip(grid[row], grid[row - 1], strict=True)]
    days = [t / 86400 for t in times]  # matplotlib dates: days since 1970
    ax.imshow(grid, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest",
              extent=(days[0], days[-1], -0.5, len(series) - 0.5))  # fmt: skip
    ax.xaxis_date()
    ax.set_yticks(range(len(series)), [s.labels["le"] for s in series], fontsize=6)
    ax.set_ylabel("le (s)")


def state_timeline(ax: Axes, panel: Json, results: list[Result]) -> None:
    rows = [(r.name(s), s) for r in results for s in r.series if s.values]
    if not rows:
        return _no_data(ax)
    for y, (_, s) in enumerate(rows):
        width = s.times_s[1] - s.times_s[0] if len(s.times_s) > 1 else 1.0
        spans = [(t / 86400, width / 86400)  # matplotlib dates: days since 1970
                 for t, v in zip(s.times_s, s.values, strict=True) if v == 1]  # fmt: skip
        ax.broken_barh(spans, (y - 0.4, 0.8), color=COLOURS["green"])
    ax.xaxis_date()
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)


def _unknown(ax: Axes, panel: Json, results: list[Result]) -> None:
    _no_data(ax)


DRAW: dict[str, Callable[[Axes, Json, list[Result]], None]] = {
    "timeseries": timeseries, "stat": stat, "table": table, "geomap": geomap,
    "heatmap": heatmap, "state-timeline": state_timeline,
}  # fmt: skip


def draw(panel: Json, results: list[Result], window: Window, path: Path) -> None:
    """One panel into one PNG, sized from its grid position."""
    w, h = panel["gridPos"]["w"], panel["gridPos"]["h"]
    fig, ax = plt.subplots(figsize=(max(4.0, w * 0.5), max(2.5, h * 0.45)), dpi=100)
    try:
        DRAW.get(panel["type"], _unknown)(ax, panel, results)
        end = datetime.fromtimestamp(window.end_s, UTC).strftime("%H:%M:%S UTC")
        ax.set_title(f"{panel['title']}  (last {window.range_s} s to {end})", fontsize=10)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
