"""Panel previews without Grafana (metrics → Prometheus → dashboards → **PNG**).

`netopt dashboards preview --prometheus URL --out DIR` runs every panel's queries against a
Prometheus over its HTTP API (`/api/v1/query_range`, `/api/v1/query` for instant targets),
with Grafana's variables filled as Grafana would for the range (template variables: All), and
draws one PNG per panel with matplotlib (`netopt.dashboards.plots`). The HTTP side is a thin shell:
every failure of Prometheus (refused, timeout, HTTP error, garbage, a query error) is a
`NetoptError` naming the URL and the query.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netopt.dashboards.results import Result, Series, Window
from netopt.errors import NetoptError

Json = dict[str, Any]
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    m = _DURATION.match(text)
    if not m:
        raise NetoptError(f"--range: {text!r} is not a duration like 15m, 90s, 2h")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def fill(expr: str, window: Window) -> str:
    """Grafana's variables for the window; every template variable means All (`.*`)."""
    for name, value in window.grafana_vars().items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", expr)  # not label_replace's $1


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"not a sample value: {v!r}") from None


def parse_answer(body: Any) -> tuple[Series, ...]:
    """Prometheus' JSON (vector or matrix) to series; ValueError on anything else."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ValueError(f"query failed: {error or 'not a Prometheus answer'}")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise ValueError("no data.result in the answer")
    kind, out = data.get("resultType"), []
    if kind not in ("matrix", "vector"):
        raise ValueError(f"unsupported resultType {kind!r}")
    for item in data["result"]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise ValueError(f"unexpected result item: {str(item)[:200]}")
        labels = {str(k): str(v) for k, v in item["metric"].items() if k != "__name__"}
        points = item.get("values") if kind == "matrix" else [item.get("value")]
        if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2
                                                   for p in points):  # fmt: skip
            raise ValueError(f"unexpected samples: {str(points)[:200]}")
        out.append(Series(labels, tuple(_number(t) for t, _ in points),
                          tuple(_number(v) for _, v in points)))  # fmt: skip
    return tuple(out)


class Prometheus:
    """The HTTP API of one Prometheus (urllib, a timeout on every request)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                text = resp.read(64 << 20)
        except urllib.error.HTTPError as exc:
            text = exc.read(1 << 16)
            try:  # Prometheus answers 400/422 with a JSON error: keep its message
                return json.loads(text)
            except ValueError:
                raise NetoptError(f"Prometheus {self.base}: HTTP {exc.code} for {path}") from None
        except (OSError, ValueError) as exc:
            raise NetoptError(f"Prometheus {self.base} unreachable: {exc}") from None
        try:
            return json.loads(text)
        except ValueError:
            raise NetoptError(f"Prometheus {self.base}{path}: the answer is not JSON") from None

    def run(self, target: Json, window: Window) -> Result:
        expr = fill(str(target["expr"]), window)
        instant = bool(target.get("instant"))
        if instant:
            body = self.get("/api/v1/query", {"query": expr, "time": f"{window.end_s:.3f}"})
        else:
            start = window.end_s - window.range_s
            body = self.get("/api/v1/query_range", {
                "query": expr, "start": f"{start:.3f}", "end": f"{window.end_s:.3f}",
                "step": f"{window.step_s}s"})  # fmt: skip
        try:
            series = parse_answer(body)
        except ValueError as exc:
            raise NetoptError(f"Prometheus {self.base}: {expr}: {exc}") from None
        return Result(str(target.get("refId", "A")), str(target.get("legendFormat", "")),
                      instant, series)  # fmt: skip


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "panel"


@dataclass(frozen=True)
class Preview:
    """One panel's PNG, and whether Prometheus had nothing for any of its queries (the panel
    then says "No data": true of the data, or a scrape or rule that is missing); NaN is none."""

    path: Path
    empty: bool


def preview_all(prom: Prometheus, dashboards: dict[str, Json], out: Path,
                window: Window) -> list[Preview]:  # fmt: skip
    """One PNG per panel: OUT/<dashboard uid>/<panel id>-<title>.png."""
    from netopt.dashboards.plots import draw

    written = []
    for dash in dashboards.values():
        folder = out / str(dash["uid"])
        folder.mkdir(parents=True, exist_ok=True)
        for panel in dash["panels"]:
            results = [prom.run(t, window) for t in panel.get("targets", [])]
            path = folder / f"{panel['id']:02d}-{slug(panel['title'])}.png"
            draw(panel, results, window, path)
            empty = not any(v == v for r in results for s in r.series for v in s.values)
            written.append(Preview(path, empty))
    return written


def run_preview(args: argparse.Namespace) -> int:
    from netopt.dashboards.build import build_all

    window = Window(end_s=time.time(), range_s=parse_duration_s(args.range))
    dashboards = {name: json.loads(text) for name, text in build_all().items()}
    try:
        written = preview_all(Prometheus(args.prometheus), dashboards, args.out, window)
    except OSError as exc:  # the output directory: missing rights, full disk, …
        raise NetoptError(f"dashboards preview: cannot write to {args.out}: {exc}") from None
    print(f"{len(written)} panel previews in {args.out}")
    empty = [str(p.path.relative_to(args.out)) for p in written if p.empty]
    if empty:
        print(f"no data for {len(empty)} (Prometheus answered no series): {', '.join(empty)}")
    return 0


def register(dsub: Any) -> None:
    p = dsub.add_parser("preview", help="render every panel from a Prometheus to PNG files")
    p.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    p.add_argument("--range", default="15m", help="time range shown (default 15m)")
    p.set_defaults(func=run_preview)
