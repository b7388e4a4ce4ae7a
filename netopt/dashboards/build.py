"""Grafana dashboards as code (metrics → Prometheus → **dashboards** → Grafana).

Builds the netopt dashboards as plain dicts in the Grafana 11 dashboard model and writes them
as JSON into `dashboards/` (committed); `netopt dashboards check` fails when the committed JSON
is stale. Every query is PromQL over the metrics `netopt.daemon.metrics.Metrics` exports: loss is
derived from the sent/received counters, RTT percentiles from the histogram. Grafana's own
variables (`$__rate_interval`, `$__range`) and the template variables (`$datasource`, `$src`,
`$dst`, `$kind`, `$region`, `$job`) are left for Grafana to substitute.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netopt.dashboards.boards import BUILDERS as BOARDS
from netopt.dashboards.boards import health_extra
from netopt.dashboards.panels import (
    INSTANT,
    JITTER_POOR_S,
    JOB_SEL,
    LEGEND,
    LOSS_POOR_RATIO,
    MOS_STEPS,
    MOS_TARGET,
    PATH_SEL,
    REGION_SEL,
    RTT_POOR_S,
    TABLE_CUSTOM,
    TABLE_OPTIONS,
    TOOLTIP,
    Json,
    dashboard,
    loss_ratio,
    panel,
    query_var,
    rtt_quantile,
    stat,
    target,
    thresholds,
    timeseries,
    value_map,
)

OUT_DIR = Path(__file__).resolve().parents[2] / "dashboards"


def regions() -> Json:
    route = f"max by (region, dest, kind, pop) (netopt_route_info{{{REGION_SEL}}} == 1)"
    changes = f"sum by (region) (increase(netopt_route_changes_total{{{REGION_SEL}}}"
    mos = target(f"netopt_path_mos{{{REGION_SEL}}}", "A", "{{region}} → {{dest}}")
    per_region = "{{region}} → {{dest}}"
    timeline_options = {
        "showValue": "never", "rowHeight": 0.9, "mergeValues": True, "alignValue": "left",
        "legend": {**LEGEND, "showLegend": False}, "tooltip": TOOLTIP,
    }  # fmt: skip
    panels = [
        stat("Expected MOS", f"E-model MOS of the route in force, per region and destination "
             f"(red below the {MOS_TARGET} target).", [mos], "none", (0, 0, 12, 6), MOS_STEPS),
        stat("Acceleration needed", "1 where the region needs acceleration: the direct path "
             "misses the MOS target and a backbone route does better.",
             [target(f"netopt_acceleration_needed{{{REGION_SEL}}}", "A", per_region)], "none",
             (12, 0, 6, 6), thresholds((0, "green"), (1, "orange")),
             value_map({"0": ("direct is fine", "green"), "1": ("needed", "orange")})),
        stat("Route changes in range", "How often each region's route changed in the time range.",
             [target(f"{changes}[$__range]))", "A", "{{region}}", **INSTANT)], "none",
             (18, 0, 6, 6), thresholds((0, "green"), (3, "yellow"), (10, "red"))),
        panel("table", "Route in force", "The route each region's media takes now "
               "(netopt_route_info): kind direct/backbone/relay and the entry PoP.",
               [target(route, "A", format="table", **INSTANT)], TABLE_CUSTOM, TABLE_OPTIONS,
               (0, 6, 12, 8)),
        panel("state-timeline", "Route per region", "Which route was in force when: one row per "
               "region → destination via kind and PoP.",
               [target(route, "A", "{{region}} → {{dest}} via {{kind}} {{pop}}")],
               {"custom": {"fillOpacity": 70, "lineWidth": 0}, "color": {"mode": "palette-classic"},
                "mappings": value_map({"1": ("in force", "green")})}, timeline_options,
               (12, 6, 12, 8)),
        timeseries("Expected MOS over time", f"Target {MOS_TARGET}.", [mos], "none",
                   (0, 14, 12, 8), steps=MOS_STEPS),
        timeseries("Route changes", "Route changes per region per interval.",
                   [target(f"{changes}[$__rate_interval]))", "A", "{{region}}")], "none",
                   (12, 14, 12, 8), draw="bars"),
    ]  # fmt: skip
    variables = [query_var("region", "Region", "label_values(netopt_route_info, region)")]
    return dashboard("netopt-regions", "netopt — regions & routes", "Per region: the route in "
                     "force, its expected MOS, whether it needs acceleration, every route change.",
                     variables, panels)  # fmt: skip


HEATMAP_OPTIONS: Json = {
    "calculate": False, "cellGap": 1, "showValue": "never",
    "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
              "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": False},
    "yAxis": {"unit": "s", "axisPlacement": "left"}, "rowsFrame": {"layout": "auto"},
    "legend": {"show": True}, "tooltip": {"mode": "single", "yHistogram": False},
    "exemplars": {"color": "rgba(255,0,255,0.7)"},
}  # fmt: skip


def paths() -> Json:
    win = 'src=~"$src", dst=~"$dst"'
    per_path = "{{src}} → {{dst}}"
    per_kind = "{{src}} → {{dst}} {{kind}}"
    buckets = f"sum by (le) (rate(netopt_probe_rtt_seconds_bucket{{{PATH_SEL}}}[$__rate_interval]))"
    outcomes = (
        f"sum by (outcome) (rate(netopt_probe_outcomes_total{{{PATH_SEL}}}[$__rate_interval]))"
    )
    panels = [
        timeseries("RTT percentiles", "p50/p90/p99 from the netopt_probe_rtt_seconds histogram "
                   f"(poor above {RTT_POOR_S * 1000:.0f} ms).",
                   [target(rtt_quantile(q), ref, f"p{round(q * 100)} {per_path}")
                    for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))],
                   "s", (0, 0, 12, 9), steps=thresholds((0, "green"), (RTT_POOR_S, "red"))),
        timeseries("Loss", "1 − received/sent from the probe counters (poor above 1.2 %).",
                   [target(loss_ratio(), "A", per_path)], "percentunit", (12, 0, 12, 9),
                   steps=thresholds((0, "green"), (LOSS_POOR_RATIO, "red"))),
        timeseries("Jitter", "RFC 3550 interarrival jitter of the last round (poor above 12 ms).",
                   [target(f"netopt_path_jitter_seconds{{{PATH_SEL}}}", "A", per_kind)],
                   "s", (0, 9, 12, 8), steps=thresholds((0, "green"), (JITTER_POOR_S, "red"))),
        panel("heatmap", "RTT distribution", "Histogram buckets of netopt_probe_rtt_seconds.",
               [target(buckets, "A", "{{le}}", format="heatmap")],
               {"custom": {"scaleDistribution": {"type": "linear"}}}, HEATMAP_OPTIONS,
               (12, 9, 12, 8)),
        timeseries("Probe outcomes", "Packets per second by how they ended (ok, timeout, "
                   "unreachable, …).", [target(outcomes, "A", "{{outcome}}")], "pps",
                   (0, 17, 12, 8)),
        timeseries("Planner's window", "What the planner sees: median RTT and loss over the "
                   "planning window.",
                   [target(f"netopt_path_rtt_seconds{{{win}}}", "A", f"rtt {per_path}"),
                    target(f"netopt_path_loss_ratio{{{win}}}", "B", f"loss {per_path}")],
                   "s", (12, 17, 12, 8)),
        timeseries("Probe rate", "Packets/s each path is probed at "
                   "(netopt_probe_rate_packets_per_second): a fixed group's count/interval; "
                   "an adaptive path 1 steady, about 25 more while it bursts.",
                   [target(f"netopt_probe_rate_packets_per_second{{{win}}}", "A", per_path)],
                   "pps", (0, 25, 12, 8)),
        timeseries("Escalations", "Why paths burst: escalations per minute by reason "
                   "(netopt_probe_escalations_total: alarm, jump, loss, doubt, learning, "
                   "candidate).",
                   [target(f"sum by (reason) (increase(netopt_probe_escalations_total{{{win}}}"
                           "[1m]))", "A", "{{reason}}")],
                   "short", (12, 25, 12, 8)),
        panel("table", "Paths now", "p90 RTT and loss over the last 5 minutes per path.",
               [target(rtt_quantile(0.9, window="5m"), "A", format="table", **INSTANT),
                target(loss_ratio(window="5m"), "B", format="table", **INSTANT)],
               TABLE_CUSTOM, TABLE_OPTIONS, (0, 33, 24, 8)),
    ]  # fmt: skip
    sent = "netopt_probe_packets_sent_total"
    variables = [
        query_var("src", "Source", f"label_values({sent}, src)"),
        query_var("dst", "Destination", f'label_values({sent}{{src=~"$src"}}, dst)'),
        query_var("kind", "Probe", f"label_values({sent}, kind)"),
    ]
    return dashboard("netopt-paths", "netopt — paths", "RTT percentiles, loss and jitter per "
                     "measured path (src → dst).", variables, panels)  # fmt: skip


def health() -> Json:
    def rate(metric: str, by: str = "") -> str:
        return f"sum{by}(rate({metric}{{{JOB_SEL}}}[$__rate_interval]))"

    def instant(expr: str, legend: str) -> Json:
        return target(expr.replace("JOB", JOB_SEL), "A", legend, **INSTANT)

    red_green = thresholds((0, "red"), (1, "green"))
    ok_failed = value_map({"0": ("FAILED", "red"), "1": ("OK", "green")})
    silent = f"time() - max by (agent) (netopt_agent_last_seen_timestamp_seconds{{{JOB_SEL}}})"
    panels = [
        stat("Scrape up", "Prometheus reached the daemon's /metrics.",
             [instant("up{JOB}", "{{instance}}")], "none", (0, 0, 5, 5), red_green,
             value_map({"0": ("DOWN", "red"), "1": ("UP", "green")})),
        stat("Config reload", "netopt_config_last_reload_successful: did the last load succeed?",
             [instant("netopt_config_last_reload_successful{JOB}", "{{instance}}")], "none",
             (5, 0, 5, 5), red_green, ok_failed),
        stat("Store writable", "0 while the store refuses writes (rounds wait in memory).",
             [instant("min(netopt_store_writable{JOB})", "store")], "none", (10, 0, 4, 5),
             red_green, ok_failed),
        stat("Store write errors in range", "Failed store writes (each is retried).",
             [instant("sum(increase(netopt_store_write_errors_total{JOB}[$__range]))", "errors")],
             "none", (14, 0, 5, 5), thresholds((0, "green"), (1, "red"))),
        stat("Plans per second", "How often the planner runs.",
             [target(rate("netopt_plans_total"), "A", "plans/s")], "ops", (19, 0, 5, 5),
             thresholds((0, "red"), (0.001, "green"))),
        timeseries("Plans and store errors", "Plans/s and store write errors/s.",
                   [target(rate("netopt_plans_total"), "A", "plans/s"),
                    target(rate("netopt_store_write_errors_total"), "B", "store write errors/s")],
                   "ops", (0, 5, 12, 8)),
        timeseries("Probe packets", "Probe packets sent and answered per second, all paths "
                   "(the daemon's own probes and its agents').",
                   [target(rate("netopt_probe_packets_sent_total"), "A", "sent"),
                    target(rate("netopt_probe_packets_received_total"), "B", "received")],
                   "pps", (12, 5, 12, 8)),
        timeseries("Store queue", "Rounds waiting for the store writer, and rounds dropped "
                   "because the store stayed unwritable past its queue bound.",
                   [target(f"sum(netopt_store_pending_rounds{{{JOB_SEL}}})", "A", "pending"),
                    target(rate("netopt_store_dropped_rounds_total"), "B", "dropped/s")],
                   "short", (0, 13, 12, 8)),
        timeseries("Config reloads and skipped runs", "Reloads by outcome (ok, invalid); probe "
                   "runs skipped because the previous round was still running.",
                   [target(rate("netopt_config_reloads_total", " by (outcome) "), "A",
                           "reload {{outcome}}"),
                    target(rate("netopt_schedule_skipped_runs_total"), "B", "skipped runs")],
                   "ops", (12, 13, 12, 8)),
        panel("table", "Agents", "Seconds since each agent's last batch arrived.",
               [target(silent, "A", format="table", **INSTANT)], {**TABLE_CUSTOM, "unit": "s"},
               TABLE_OPTIONS, (0, 21, 8, 8)),
        timeseries("Agent spool depth", "Rounds waiting in each agent's spool (as last reported).",
                   [target(f"max by (agent) (netopt_spool_depth{{{JOB_SEL}}})", "A", "{{agent}}")],
                   "short", (8, 21, 8, 8)),
        timeseries("Ingest", "Agent batches by outcome and rounds stored per agent.",
                   [target(rate("netopt_ingest_batches_total", " by (outcome) "), "A",
                           "batches {{outcome}}"),
                    target(rate("netopt_ingest_rounds_total", " by (agent) "), "B",
                           "rounds {{agent}}")], "ops", (16, 21, 8, 8)),
    ]  # fmt: skip
    panels += health_extra(29)
    variables = [query_var("job", "Job", "label_values(netopt_plans_total, job)")]
    desc = "Is the daemon scraped, planning, writing its store, running a valid config, hearing "
    desc += "from its agents?"
    return dashboard("netopt-health", "netopt — daemon health", desc, variables, panels)


BUILDERS = {"netopt-regions": regions, "netopt-paths": paths, "netopt-health": health}


def builders() -> dict[str, Any]:
    """Every dashboard: these three and the operations boards (`netopt.dashboards.boards`)."""
    return {**BOARDS, **BUILDERS}


def build_all() -> dict[str, str]:
    """File name → JSON text, exactly as committed."""
    return {
        f"{name}.json": json.dumps(fn(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, fn in builders().items()
    }


def iter_exprs(dash: Json) -> Iterator[str]:
    """Every PromQL expression in a dashboard: panel targets and annotations."""
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            yield t["expr"]
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            yield a["expr"]


def stale(directory: Path) -> list[str]:
    """One line per dashboard that is missing or differs, with a short diff summary."""
    problems = []
    for name, text in build_all().items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        old = path.read_text(encoding="utf-8").splitlines()
        diff = [
            d
            for d in difflib.unified_diff(old, text.splitlines(), n=0, lineterm="")
            if d[:1] in "+-" and d[:3] not in ("+++", "---")
        ]
        if diff:
            head = "; ".join(d.strip() for d in diff[:3])
            problems.append(f"{path}: {len(diff)} changed lines ({head[:200]})")
    return problems
