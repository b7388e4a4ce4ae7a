"""The daemon's status page at `/` (decide → RouteTable → API → **a page for people**).

A pure renderer: the route table, the last decisions and a few facts in, one self-contained
HTML document (bytes) out — no script, no external stylesheet, font or image, every value
escaped. For operators who have no Grafana yet and for `make demo`; read-only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

from netopt import __version__
from netopt.core.decide import RouteTable, TableEntry
from netopt.errors import StoreError
from netopt.store import DecisionRecord

if TYPE_CHECKING:
    from netopt.api.view import DaemonView

log = logging.getLogger("netopt.api")

MOS_TARGET = 3.6
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:60%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eee}.num{text-align:right;font-variant-numeric:tabular-nums}
.good{background:#d9f2d9}.warn{background:#fff0c2}.bad{background:#f8d0d0}
.muted{color:#777}nav a{margin-right:1em}
"""


@dataclass(frozen=True)
class StatusFacts:
    """What the page says about the daemon besides the table."""

    version: str
    now_wall_s: float
    regions: int
    pops: int
    plans: int


def _when(wall_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_s))


def _mos_class(mos: float | None) -> str:
    if mos is None:
        return "muted"
    return "good" if mos >= 4.0 else "warn" if mos >= MOS_TARGET else "bad"


def _cell(text: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(text))}</td>"


# topology.routes.ACCELERATIONS → (what the page says, cell class)
VERDICTS = {
    "not_needed": ("direct is fine", "good"), "needed": ("acceleration needed", "warn"),
    "insufficient": ("no route meets the target", "bad"),
    "unmeasured": ("unmeasured", "muted"), "unreachable": ("unreachable", "bad"),
}  # fmt: skip


def _verdict(e: TableEntry) -> tuple[str, str]:
    if e.route is None:
        return "no route yet", "muted"
    if e.stale:
        return "stale data", "warn"
    return VERDICTS.get(e.acceleration, (e.acceleration.replace("_", " "), "muted"))


def route_rows(table: RouteTable, wall_of: Callable[[float], float]) -> list[str]:
    rows = []
    for e in sorted(table, key=lambda e: (e.region, e.dest)):
        verdict, vcls = _verdict(e)
        r = e.route
        mos = None if r is None else r.expected.mos
        cells = [
            _cell(e.region), _cell(e.dest), _cell("—" if r is None else r.kind),
            _cell("—" if r is None else (r.entry_pop or "—")),
            _cell("—" if r is None else " → ".join(r.path)),
            _cell("—" if mos is None else f"{mos:.2f}", f"num {_mos_class(mos)}"),
            _cell(verdict, vcls), _cell(e.reason), _cell(_when(wall_of(e.decided_at))),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def decision_rows(decisions: Sequence[DecisionRecord]) -> list[str]:
    def mos(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    rows = []
    for d in sorted(decisions, key=lambda d: d.at_wall_ns, reverse=True):
        cells = [
            _cell(_when(d.at_wall_ns / 1e9)), _cell(d.region), _cell(d.dest), _cell(d.action),
            _cell(f"{d.old_entry or 'direct'} → {d.new_entry or 'direct'}"),
            _cell(f"{mos(d.old_mos)} → {mos(d.new_mos)}", "num"), _cell(d.reason),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _table(headers: Sequence[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_status(table: RouteTable, decisions: Sequence[DecisionRecord], facts: StatusFacts,
                  wall_of: Callable[[float], float]) -> bytes:  # fmt: skip
    """The whole page; `wall_of` turns a monotonic instant (decided_at) into Unix seconds."""
    routed = sum(1 for e in table if e.route is not None)
    routes = _table(
        ("Region", "Destination", "Kind", "Entry PoP", "Path", "MOS", "Verdict", "Reason",
         "Decided"), route_rows(table, wall_of), "No route yet: waiting for measurements.",
    )  # fmt: skip
    recent = _table(("When", "Region", "Destination", "Action", "Entry", "MOS", "Reason"),
                    decision_rows(decisions), "No decision yet.")  # fmt: skip
    summary = (
        f"{facts.regions} regions, {facts.pops} PoPs; {routed} of {len(table)} routes known; "
        f"{facts.plans} plans; as of {_when(facts.now_wall_s)}"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>netopt status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head><body>
<h1>netopt status</h1><p class="muted">version {escape(facts.version)} · {escape(summary)}</p>
<nav><a href="/metrics">/metrics</a><a href="/v1/routes">/v1/routes</a>
<a href="/v1/regions">/v1/regions</a><a href="/v1/pops">/v1/pops</a>
<a href="/openapi.json">/openapi.json</a><a href="/readyz">/readyz</a></nav>
<h2>Route table</h2>{routes}
<h2>Last decisions</h2>{recent}
</body></html>
"""
    return page.encode("utf-8")


RECENT_S = 3600.0  # the last decisions shown: of the last hour, at most LAST_DECISIONS
LAST_DECISIONS = 20


def status_handler(daemon: DaemonView) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET `/` for `make_app` (the one line there); the daemon's live table and store."""

    async def status(request: web.Request) -> web.Response:
        now = daemon.wall_clock()
        try:
            decisions = await daemon.store.decisions_async(int((now - RECENT_S) * 1e9))
        except StoreError as exc:  # the live table is still worth showing
            log.warning("status_decisions_unavailable error=%s", exc)
            decisions = []
        facts = StatusFacts(
            version=__version__, now_wall_s=now, regions=len(daemon.config.regions),
            pops=len(daemon.config.pops), plans=int(daemon.metrics.plans._value.get()),
        )  # fmt: skip
        body = render_status(daemon.table, decisions[-LAST_DECISIONS:], facts, daemon.wall_time)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    return status
