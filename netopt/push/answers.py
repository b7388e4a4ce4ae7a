"""The route API's answers, rendered once per table: ... RouteTable → **answers** → API.

The table changes about once a second; proxies ask thousands of times a second. So every
answer that depends only on the table (one per region × destination, plus one per region for
"its first destination", in JSON and in Kamailio's rtjson shape, and the `/v1/routes` list) is
rendered to bytes when a table is published, and a request is a resolution plus a dict lookup
— or, for a query string already answered under this table, one dict lookup (`remember`).
`Answers.publish` builds the new dicts aside and swaps them in with one assignment each, so a
request never sees half a table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netopt.api.models import (
    PathsAnswer,
    PopsList,
    RegionsList,
    RouteAnswer,
    RouteRequest,
    RtjsonAnswer,
    Target,
    selector_query,
)
from netopt.api.resolve import Resolver
from netopt.config import Config
from netopt.core.decide import RouteTable, TableEntry
from netopt.push.ranking import PopTarget, pop_of, ranked_routes
from topology.planner import PathStats, Route

MAX_REMEMBERED = 65536  # distinct query strings remembered per table (callers, addresses)


@dataclass(frozen=True)
class Rendered:
    status: int
    body: bytes


@dataclass(frozen=True)
class TableAnswers:
    """One table's rendered answers, whole (what `netopt.api.workers.pool` ships to its workers)."""

    as_json: Mapping[tuple[str, str | None], Rendered]
    as_rtjson: Mapping[tuple[str, str | None], Rendered]
    routes: Rendered
    routed: int  # entries with a route (for /readyz)
    entries: int


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def error_body(message: str) -> bytes:
    return dumps({"error": message})


def _num(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def expected_json(route: Route) -> dict[str, float | None]:
    e = route.expected
    return {"mos": _num(e.mos, 3), "rtt_ms": _num(e.rtt_ms, 3),
            "jitter_ms": _num(e.jitter_ms, 3), "loss_pct": _num(e.loss_pct, 4)}  # fmt: skip


def target_json(target: PopTarget) -> dict[str, Any]:
    return {"pop": target.pop, "sip_uri": target.sip_uri, "media_addr": target.media_addr,
            "rtpengine_set": target.rtpengine_set}  # fmt: skip


def route_json(route: Route, pops: Mapping[str, PopTarget]) -> dict[str, Any]:
    """A `Fallback` (its target and the route through it)."""
    pop = pop_of(route)
    return {**target_json(pops.get(pop, PopTarget(pop))), "kind": route.kind,
            "path": list(route.path), "entry_pop": route.entry_pop,
            "expected": expected_json(route)}  # fmt: skip


def entry_answer(
    entry: TableEntry, pops: Mapping[str, PopTarget], decided_at_wall_s: float
) -> RouteAnswer:
    """The `/v1/route` answer for one table entry (the route must be set), validated in one
    pass from plain values (several times faster than building the nested models one by one)."""
    assert entry.route is not None
    ranked = ranked_routes(entry)
    primary = route_json(ranked[0], pops)
    return RouteAnswer.model_validate({
        "region": entry.region, "dest": entry.dest, "kind": primary["kind"],
        "path": primary["path"], "entry_pop": primary["entry_pop"],
        "primary": {k: primary[k] for k in Target.model_fields},
        "fallbacks": [route_json(r, pops) for r in ranked[1:]], "expected": primary["expected"],
        "acceleration": entry.acceleration, "reason": entry.reason,
        "decided_at": round(decided_at_wall_s, 3), "stale": entry.stale,
        "default": entry.is_default,
    })  # fmt: skip


def entry_json(
    entry: TableEntry, pops: Mapping[str, PopTarget], decided_at_wall_s: float
) -> dict[str, Any]:
    return entry_answer(entry, pops, decided_at_wall_s).model_dump(mode="json")


def rtjson(entry: TableEntry, pops: Mapping[str, PopTarget]) -> dict[str, Any] | None:
    """Kamailio rtjson (serial routing: primary, then each fallback); None if no SIP URI.

    Only `dst_uri` is set per route, so the request URI is kept and the call is sent through
    the PoP. Extra keys (ignored by rtjson) carry the PoPs and rtpengine sets in the same
    order, for a config that selects media relays with `set_rtpengine_set`.
    """
    targets = [pops[p] for p in map(pop_of, ranked_routes(entry)) if p in pops]
    targets = [t for t in targets if t.sip_uri]
    if not targets:
        return None
    return RtjsonAnswer.model_validate({
        "version": "1.0", "routing": "serial", "routes": [{"dst_uri": t.sip_uri} for t in targets],
        "region": entry.region, "dest": entry.dest, "pops": [t.pop for t in targets],
        "rtpengine_sets": [t.rtpengine_set for t in targets], "stale": entry.stale,
    }).model_dump(mode="json")  # fmt: skip


def pop_targets(config: Config) -> dict[str, PopTarget]:
    return {p.id: PopTarget(p.id, p.sip_uri, p.media_addr, p.rtpengine_set) for p in config.pops}


class Answers:
    """Per-table rendered answers plus the config-derived resolver (one per config)."""

    def __init__(self, config: Config, wall_time: Callable[[float], float]) -> None:
        self._wall_time = wall_time
        self._json: Mapping[tuple[str, str | None], Rendered] = {}
        self._rtjson: Mapping[tuple[str, str | None], Rendered] = {}
        self._by_query: dict[str, Rendered] = {}
        self.routes = Rendered(200, dumps({"routes": []}))
        self.routed = self.entries = 0
        self.on_change: list[Callable[[Answers], None]] = []  # after each reconfigure/publish
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config (regions, prefixes, PoPs); the next `publish` uses it."""
        self.config = config
        self.resolver = Resolver.build(config.regions)
        self.region_ids = config.region_ids
        self.destinations = frozenset(config.destinations)
        self.pop_targets = pop_targets(config)
        regions = RegionsList(regions=list(config.regions))
        pops = PopsList(pops=list(config.pops))
        self.regions = Rendered(200, dumps(regions.model_dump(mode="json", exclude_none=True)))
        self.pops = Rendered(200, dumps(pops.model_dump(mode="json", exclude_none=True)))
        self._by_query = {}
        for changed in self.on_change:
            changed(self)

    def publish(self, table: RouteTable) -> None:
        """Render every answer of `table` (a daemon publisher: called with each new table)."""
        as_json: dict[tuple[str, str | None], Rendered] = {}
        as_rtjson: dict[tuple[str, str | None], Rendered] = {}
        listed = []
        for entry in table:
            keys: Iterable[tuple[str, str | None]] = [(entry.region, entry.dest)]
            if (entry.region, None) not in as_json:
                keys = [(entry.region, entry.dest), (entry.region, None)]
            j, r, answer = self._render(entry)
            for key in keys:
                as_json[key], as_rtjson[key] = j, r
            if answer is not None:
                listed.append(answer)
        routes = dumps({"routes": listed})  # RoutesList: each item a dumped RouteAnswer
        self.load(TableAnswers(as_json, as_rtjson, Rendered(200, routes), len(listed),
                               len(table)))  # fmt: skip
        for changed in self.on_change:
            changed(self)

    def snapshot(self) -> TableAnswers:
        """The current table's answers, whole."""
        return TableAnswers(self._json, self._rtjson, self.routes, self.routed, self.entries)

    def load(self, table: TableAnswers) -> None:
        """Swap in a table's answers (rendered here by `publish`, or shipped from the daemon)."""
        self._json, self._rtjson = table.as_json, table.as_rtjson  # never changed in place
        self.routes, self.routed, self.entries = table.routes, table.routed, table.entries
        self._by_query = {}  # answers of the old table are forgotten with it

    def remembered(self, query_string: str) -> Rendered | None:
        """The answer already given to this exact query string under the current table."""
        return self._by_query.get(query_string)

    def remember(self, query_string: str, answer: Rendered) -> Rendered:
        """Keep `answer` for `query_string` until the next table (at most MAX_REMEMBERED)."""
        if len(self._by_query) >= MAX_REMEMBERED:
            self._by_query = {}
        self._by_query[query_string] = answer
        return answer

    def _render(self, entry: TableEntry) -> tuple[Rendered, Rendered, dict[str, Any] | None]:
        if entry.route is None:
            gone = Rendered(503, error_body(f"no route for region {entry.region!r} yet: "
                                            f"{entry.reason}"))  # fmt: skip
            return gone, gone, None
        answer = entry_answer(entry, self.pop_targets, self._wall_time(entry.decided_at))
        doc = rtjson(entry, self.pop_targets)
        if doc is None:
            why = f"no PoP on the routes of region {entry.region!r} has a sip_uri"
            rt = Rendered(503, error_body(why))
        else:
            rt = Rendered(200, dumps(doc))
        body = answer.model_dump(mode="json")
        return Rendered(200, dumps(body)), rt, body

    def route(self, region: str, dest: str | None, *, rtjson: bool = False) -> Rendered | None:
        return (self._rtjson if rtjson else self._json).get((region, dest))

    def region_of(self, query: Mapping[str, str] | RouteRequest) -> str:
        """The region a query (or a checked `RouteRequest`) names: ValueError → 400 (see
        `netopt.api.models.selector_query`), LookupError → 404."""
        asked = query if isinstance(query, RouteRequest) else selector_query(query)
        selector, value = asked.selector, asked.value
        if selector == "region":
            if value not in self.region_ids:
                raise LookupError(f"unknown region {value!r}")
            return value
        r = self.resolver
        found = {"src_ip": r.by_ip, "caller": r.by_e164, "country": r.by_country}[selector](value)
        if found is None:
            raise LookupError(f"no region matches {selector}={value!r}")
        return found


def paths_json(
    region: str, stats: Iterable[PathStats], table: RouteTable, region_ids: frozenset[str]
) -> dict[str, Any]:
    """`/v1/paths`: the region's measured paths (window stats) and its candidate routes."""
    paths = [
        {"src": s.src, "dst": s.dst, "rtt_ms": _num(s.rtt_ms, 3),
         "jitter_ms": _num(s.jitter_ms, 3), "loss_pct": _num(s.loss_pct, 4),
         "samples": s.samples}
        for s in stats if s.src == region
    ]  # fmt: skip
    candidates = [
        {"dest": e.dest, "routes": [{"kind": r.kind, "path": list(r.path),
                                     "expected": expected_json(r)} for r in ranked_routes(e)]}
        for e in table if e.region == region
    ]  # fmt: skip
    answer = PathsAnswer.model_validate(
        {"region": region, "paths": paths, "candidates": candidates}
    )
    return answer.model_dump(mode="json")
