"""A RouteTable as JSON, for the table the leader shares with its followers through the
database (… decide → RouteTable → **shared table** → followers' route API).

Pure. Monotonic instants (`made_at`, `decided_at`) mean nothing in another process, so they
travel as Unix seconds: `encode` adds the writer's `wall_minus_mono_s`, `decode` subtracts the
reader's. A body that is not a table this module wrote raises ValueError naming what is wrong.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from netopt.core.decide import RouteTable, TableEntry
from topology.routes import Expected, Route


def _route(r: Route) -> dict[str, Any]:
    e = r.expected
    expected = [e.rtt_ms, e.jitter_ms, e.loss_pct, e.mos, e.samples, e.sent_total, e.lost_total]
    return {"region": r.region, "dest": r.dest, "kind": r.kind, "path": list(r.path),
            "entry_pop": r.entry_pop, "expected": expected}  # fmt: skip


def _unroute(d: dict[str, Any]) -> Route:
    x = d["expected"]
    expected = Expected(float(x[0]), float(x[1]), float(x[2]), float(x[3]), int(x[4]),
                        int(x[5]), int(x[6]))  # fmt: skip
    return Route(str(d["region"]), str(d["dest"]), str(d["kind"]),
                 tuple(str(p) for p in d["path"]), d["entry_pop"], expected)  # fmt: skip


def encode(table: RouteTable, wall_minus_mono_s: float) -> str:
    entries = [
        {"region": e.region, "dest": e.dest, "route": None if e.route is None else _route(e.route),
         "decided_at_wall_s": e.decided_at + wall_minus_mono_s, "acceleration": e.acceleration,
         "reason": e.reason, "stale": e.stale, "is_default": e.is_default,
         "fallbacks": [_route(f) for f in e.fallbacks]}
        for e in table
    ]  # fmt: skip
    body = {"made_at_wall_s": table.made_at + wall_minus_mono_s, "entries": entries}
    return json.dumps(body, separators=(",", ":"))  # Infinity: an unmeasured path


def decode(text: str, wall_minus_mono_s: float) -> RouteTable:
    """The table `encode` wrote, its instants on this process's monotonic clock."""
    try:
        body = json.loads(text)
        entries: dict[tuple[str, str], TableEntry] = {}
        for d in body["entries"]:
            route = None if d["route"] is None else _unroute(d["route"])
            entry = TableEntry(
                str(d["region"]), str(d["dest"]), route,
                float(d["decided_at_wall_s"]) - wall_minus_mono_s, str(d["acceleration"]),
                str(d["reason"]), bool(d["stale"]), bool(d["is_default"]),
                tuple(_unroute(f) for f in d["fallbacks"]),
            )  # fmt: skip
            entries[(entry.region, entry.dest)] = entry
        made_at = float(body["made_at_wall_s"]) - wall_minus_mono_s
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a shared route table: {type(exc).__name__}: {exc}") from None
    return RouteTable(MappingProxyType(entries), made_at)
