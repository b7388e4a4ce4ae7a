"""The building blocks of every netopt dashboard (metrics → Prometheus → **dashboards**):
the Grafana 11 panel and dashboard model as plain dicts, the PromQL helpers, the quality
thresholds and the template variables, shared by `build` (regions, paths, health) and `boards`
(overview, PoPs and backbone)."""

from __future__ import annotations

from typing import Any

DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
MOS_TARGET = 3.6
LOSS_POOR_RATIO = 0.012  # DESIGN "poor path": loss > 1.2 %
RTT_POOR_S = 0.320
JITTER_POOR_S = 0.012

Json = dict[str, Any]

# --- PromQL ----------------------------------------------------------------------------------

PATH_SEL = 'src=~"$src", dst=~"$dst", kind=~"$kind"'
REGION_SEL = 'region=~"$region"'
JOB_SEL = 'job=~"$job"'


def rtt_quantile(q: float, sel: str = PATH_SEL, window: str = "$__rate_interval") -> str:
    return (
        f"histogram_quantile({q}, sum by (src, dst, le) "
        f"(rate(netopt_probe_rtt_seconds_bucket{{{sel}}}[{window}])))"
    )


def loss_ratio(sel: str = PATH_SEL, window: str = "$__rate_interval") -> str:
    """1 - received/sent over the window, per path (NaN while nothing was sent)."""
    return (
        f"1 - sum by (src, dst) (rate(netopt_probe_packets_received_total{{{sel}}}[{window}]))"
        f" / sum by (src, dst) (rate(netopt_probe_packets_sent_total{{{sel}}}[{window}]))"
    )


# --- building blocks -------------------------------------------------------------------------


def target(expr: str, ref: str, legend: str = "", **extra: Any) -> Json:
    t: Json = {"datasource": DS, "editorMode": "code", "expr": expr, "refId": ref, "range": True}
    if legend:
        t["legendFormat"] = legend
    t.update(extra)
    return t


def thresholds(*steps: tuple[float, str]) -> Json:
    """Absolute steps; the base step is 0 (netopt metrics are ≥ 0; the schema wants a number)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


Pos = tuple[int, int, int, int]  # x, y, w, h on Grafana's 24-column grid
LEGEND: Json = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP: Json = {"mode": "multi", "sort": "desc"}
TABLE_OPTIONS: Json = {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"}
TABLE_CUSTOM: Json = {"custom": {"align": "auto", "inspect": False}}


def panel(kind: str, title: str, desc: str, targets: list[Json], defaults: Json, options: Json,
           pos: Pos) -> Json:  # fmt: skip
    x, y, w, h = pos
    return {
        "type": kind, "title": title, "description": desc, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
    }  # fmt: skip


def timeseries(title: str, desc: str, targets: list[Json], unit: str, pos: Pos, *,
               steps: Json | None = None, draw: str = "line") -> Json:  # fmt: skip
    custom: Json = {"drawStyle": draw, "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                    "spanNulls": False}  # fmt: skip
    defaults: Json = {"unit": unit, "custom": custom}
    if steps is not None:
        defaults["thresholds"] = steps
        custom["thresholdsStyle"] = {"mode": "line"}
    options = {"legend": LEGEND, "tooltip": TOOLTIP}
    return panel("timeseries", title, desc, targets, defaults, options, pos)


def stat(title: str, desc: str, targets: list[Json], unit: str, pos: Pos, steps: Json,
         mappings: list[Json] | None = None) -> Json:  # fmt: skip
    defaults: Json = {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"}}
    if mappings:
        defaults["mappings"] = mappings
    options = {
        "graphMode": "area", "colorMode": "background", "justifyMode": "auto",
        "textMode": "value_and_name", "wideLayout": True, "showPercentChange": False,
        "percentChangeColorMode": "standard", "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    }  # fmt: skip
    return panel("stat", title, desc, targets, defaults, options, pos)


def value_map(pairs: dict[str, tuple[str, str]]) -> list[Json]:
    """Value → (display text, colour)."""
    options = {k: {"text": text, "color": color, "index": i}
               for i, (k, (text, color)) in enumerate(pairs.items())}  # fmt: skip
    return [{"type": "value", "options": options}]


def query_var(name: str, label: str, query: str) -> Json:
    return {
        "type": "query", "name": name, "label": label, "datasource": DS, "query": query,
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"text": "All", "value": "$__all"}, "options": [],
    }  # fmt: skip


DATASOURCE_VAR: Json = {
    "type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
    "current": {"text": "Prometheus", "value": "netopt-prometheus"}, "options": [],
}  # fmt: skip
ROUTE_CHANGE_ANNOTATION: Json = {
    "name": "Route changes", "datasource": DS, "enable": True, "hide": False,
    "iconColor": "orange", "expr": "changes(netopt_route_changes_total[1m]) > 0",
}  # fmt: skip


def dashboard(uid: str, title: str, desc: str, variables: list[Json], panels: list[Json]) -> Json:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid, "title": title, "description": desc, "tags": ["netopt"], "timezone": "utc",
        "editable": True, "graphTooltip": 1, "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s", "schemaVersion": SCHEMA_VERSION, "version": 1,
        "fiscalYearStartMonth": 0, "liveNow": False, "links": [],
        "templating": {"list": [DATASOURCE_VAR, *variables]},
        "annotations": {"list": [ROUTE_CHANGE_ANNOTATION]}, "panels": panels,
    }  # fmt: skip


# --- the dashboards --------------------------------------------------------------------------

MOS_STEPS = thresholds((0, "red"), (MOS_TARGET, "yellow"), (4.0, "green"))
INSTANT: Json = {"instant": True, "range": False}
