"""The operations boards (metrics → Prometheus → **dashboards**): an overview on a map, PoPs and
backbone, and the panels the health board adds (process CPU/memory, pushes).

Built with the building blocks of `netopt.dashboards.build` (same model, same schema checks). The
map reads `netopt_site_info` (set from the config: lat/lon as labels, converted to numbers by a
Grafana transformation) joined with the MOS of the routes in force.
"""

from __future__ import annotations

from netopt.dashboards.panels import (
    INSTANT,
    JOB_SEL,
    LOSS_POOR_RATIO,
    MOS_STEPS,
    RTT_POOR_S,
    TABLE_CUSTOM,
    TABLE_OPTIONS,
    Json,
    Pos,
    dashboard,
    panel,
    stat,
    target,
    thresholds,
    timeseries,
    value_map,
)

AGENT_SILENT_S = 300  # as the NetoptAgentSilent rule
ROUTE_TABLE = "max by (region, dest, kind, pop) (netopt_route_info == 1)"
# MOS of the route in force, with its entry PoP (direct routes: the destination)
MOS_BY_POP = "netopt_path_mos * on (region, dest) group_left (pop) (netopt_route_info == 1)"


def _as_site(expr: str, label: str) -> str:
    return f'label_replace({expr}, "site", "$1", "{label}", "(.*)")'


def _on_map(values: str, kind: str) -> str:
    """`values` (one per site) with the site's name and position from netopt_site_info."""
    info = f'netopt_site_info{{kind="{kind}", lat!=""}}'
    return f"max by (site, name, role, lat, lon) ({info} * on (site) group_left () {values})"


GEOMAP_OPTIONS: Json = {
    "view": {"id": "fit", "lat": 0, "lon": 20, "zoom": 2, "allLayers": True},
    "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
    "basemap": {"type": "default", "name": "Basemap"},
    "layers": [
        {"type": "markers", "name": name, "tooltip": True,
         "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
         "filterData": {"id": "byRefId", "options": ref},
         "config": {"showLegend": True, "style": {
             "size": {"fixed": size}, "symbol": {"mode": "fixed", "fixed": symbol},
             "color": {"field": "Value"}, "opacity": 0.8,
             "text": {"mode": "field", "field": "name"},
             "textConfig": {"fontSize": 12, "offsetY": -14}}}}
        for name, ref, size, symbol in (
            ("Regions", "A", 10, "img/icons/marker/circle.svg"),
            ("PoPs", "B", 12, "img/icons/marker/square.svg"),
        )
    ],
    "tooltip": {"mode": "details"},
}  # fmt: skip
TO_NUMBERS: Json = {
    "id": "convertFieldType",
    "options": {"conversions": [{"targetField": f, "destinationType": "number"}
                                for f in ("lat", "lon")], "fields": {}},
}  # fmt: skip


def geomap(title: str, desc: str, targets: list[Json], pos: Pos) -> Json:
    defaults: Json = {"unit": "none", "thresholds": MOS_STEPS, "color": {"mode": "thresholds"},
                      "decimals": 2}  # fmt: skip
    geo = panel("geomap", title, desc, targets, defaults, GEOMAP_OPTIONS, pos)
    geo["transformations"] = [TO_NUMBERS]
    return geo


def _count(title: str, desc: str, expr: str, pos: Pos, warn_at: float = 1) -> Json:
    return stat(title, desc, [target(f"({expr}) or vector(0)", "A", title, **INSTANT)], "none",
                pos, thresholds((0, "green"), (warn_at, "orange")))  # fmt: skip


def overview() -> Json:
    poor = f"netopt_path_loss_ratio > {LOSS_POOR_RATIO} or netopt_path_rtt_seconds > {RTT_POOR_S}"
    no_data = "sum by (src, dst) (rate(netopt_probe_packets_sent_total[5m])) == 0"
    silent = f"time() - netopt_agent_last_seen_timestamp_seconds > {AGENT_SILENT_S}"
    regions_mos = _as_site("min by (region) (netopt_path_mos)", "region")
    pops_mos = _as_site(f"min by (pop) ({MOS_BY_POP})", "pop")
    mos_table = "min by (region, dest) (netopt_path_mos)"
    panels = [
        geomap("Regions and PoPs by MOS", "Regions (circles): the lowest expected MOS of their "
               "routes in force; PoPs (squares): the lowest MOS of the routes entering there. "
               "Positions from the config (regions[].location, pops[].location).",
               [target(_on_map(regions_mos, "region"), "A", format="table", **INSTANT),
                target(_on_map(pops_mos, "pop"), "B", format="table", **INSTANT)],
               (0, 0, 16, 14)),
        _count("Acceleration needed", "Region × destination pairs whose direct path misses the "
               "MOS target while a backbone route does better.",
               "count(netopt_acceleration_needed == 1)", (16, 0, 4, 5)),
        _count("Poor paths", f"Paths over the planning window with loss above "
               f"{LOSS_POOR_RATIO:.1%} or median RTT above {RTT_POOR_S * 1000:.0f} ms.",
               f"count({poor})", (20, 0, 4, 5)),
        _count("Paths without data", "Known paths with no probe packet in 5 minutes (a "
               "stopped probe job or a silent agent).", f"count({no_data})", (16, 5, 4, 5)),
        _count("Agents down", f"Agents with no batch for more than {AGENT_SILENT_S} s.",
               f"count({silent})", (20, 5, 4, 5)),
        stat("Lowest MOS", "The worst expected MOS of any route in force.",
             [target("min(netopt_path_mos)", "A", "lowest MOS", **INSTANT)], "none",
             (16, 10, 8, 4), MOS_STEPS),
        panel("table", "Route table", "Every region × destination: route kind, entry PoP "
               "(netopt_route_info) and expected MOS (netopt_path_mos).",
               [target(ROUTE_TABLE, "A", format="table", **INSTANT),
                target(mos_table, "B", format="table", **INSTANT)],
               TABLE_CUSTOM, TABLE_OPTIONS, (0, 14, 24, 9)),
    ]  # fmt: skip
    panels[-1]["transformations"] = [{"id": "merge", "options": {}}]  # one row per route
    return dashboard(
        "netopt-overview",
        "netopt — overview",
        "At a glance: regions and PoPs on "
        "a map coloured by MOS, what needs attention, the route table.",
        [],
        panels,
    )


def pops() -> Json:
    pop_sites = _as_site('netopt_site_info{kind="pop"}', "site")
    towards = 'label_replace(netopt_site_info{kind="pop"}, "dst", "$1", "site", "(.*)")'

    def best(metric: str) -> str:
        return f"min by (dst) ({metric} * on (dst) group_left () {towards})"

    panels = [
        stat("PoP up", "netopt_pop_up: the latest probe rounds towards the PoP got answers (and "
             "its SIP OPTIONS a 2xx, where probed).",
             [target("netopt_pop_up", "A", "{{pop}}", **INSTANT)], "none", (0, 0, 12, 5),
             thresholds((0, "red"), (1, "green")),
             value_map({"0": ("DOWN", "red"), "1": ("UP", "green")})),
        stat("Routes per PoP", "Region × destination routes in force entering at each PoP "
             "(direct routes count at their destination).",
             [target(f"count by (pop) ({ROUTE_TABLE})", "A", "{{pop}}", **INSTANT)], "none",
             (12, 0, 12, 5), thresholds((0, "blue"))),
        timeseries("Load per PoP", "Routes in force entering at each PoP over time.",
                   [target(f"count by (pop) ({ROUTE_TABLE})", "A", "{{pop}}")], "short",
                   (0, 5, 12, 8)),
        timeseries("Lowest MOS via PoP", "The worst expected MOS of the routes entering there.",
                   [target(f"min by (pop) ({MOS_BY_POP})", "A", "{{pop}}")], "none",
                   (12, 5, 12, 8), steps=MOS_STEPS),
        timeseries("Best RTT towards PoP", "The lowest median RTT of any measured path to the "
                   "PoP over the planning window.",
                   [target(best("netopt_path_rtt_seconds"), "A", "{{dst}}")], "s",
                   (0, 13, 12, 8), steps=thresholds((0, "green"), (RTT_POOR_S, "red"))),
        timeseries("Best loss towards PoP", "The lowest loss of any measured path to the PoP "
                   "over the planning window.",
                   [target(best("netopt_path_loss_ratio"), "A", "{{dst}}")], "percentunit",
                   (12, 13, 12, 8), steps=thresholds((0, "green"), (LOSS_POOR_RATIO, "red"))),
        panel("table", "Backbone links", "Configured backbone links between PoPs and their RTT "
               "(netopt_backbone_rtt_seconds, from the config's backbone section).",
               [target("netopt_backbone_rtt_seconds", "A", format="table", **INSTANT)],
               {**TABLE_CUSTOM, "unit": "s"}, TABLE_OPTIONS, (0, 21, 8, 8)),
        panel("table", "PoPs", "Configured PoPs (netopt_site_info): role and position.",
               [target(f"max by (site, name, role, lat, lon) ({pop_sites})", "A",
                       format="table", **INSTANT)], TABLE_CUSTOM, TABLE_OPTIONS, (8, 21, 8, 8)),
        push_outcomes((16, 21, 8, 8)),
    ]  # fmt: skip
    return dashboard("netopt-pops", "netopt — PoPs and backbone", "Per PoP: up or down, the "
                     "routes it carries, the best path towards it; the backbone; pushes to the "
                     "SIP proxies.", [], panels)  # fmt: skip


def push_outcomes(pos: Pos, sel: str = "") -> Json:
    selector = f"{{{sel}}}" if sel else ""
    expr = f"sum by (proxy, outcome) (rate(netopt_push_total{selector}[$__rate_interval]))"
    return timeseries("Pushes per proxy", "Route-table pushes to each SIP proxy by outcome "
                      "(netopt_push_total).", [target(expr, "A", "{{proxy}} {{outcome}}")],
                      "ops", pos)  # fmt: skip


def health_extra(y: int) -> list[Json]:
    """Process CPU and memory of the daemon (prometheus_client's ProcessCollector), pushes."""
    cpu = f"rate(process_cpu_seconds_total{{{JOB_SEL}}}[$__rate_interval])"
    return [
        timeseries("CPU", "Share of one core the daemon's process uses.",
                   [target(cpu, "A", "{{instance}}")], "percentunit", (0, y, 8, 8)),
        timeseries("Memory", "Resident memory of the daemon's process.",
                   [target(f"process_resident_memory_bytes{{{JOB_SEL}}}", "A", "{{instance}}")],
                   "bytes", (8, y, 8, 8)),
        push_outcomes((16, y, 8, 8), JOB_SEL),
    ]  # fmt: skip


BUILDERS = {"netopt-overview": overview, "netopt-pops": pops}
