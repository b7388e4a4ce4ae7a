"""Which PoPs a region's calls go to, in order: ... RouteTable → **ranking** → API / push.

One place turns a `TableEntry` into the ordered PoPs a proxy should try: the primary (the
route's entry PoP, or the destination itself for a direct route) and then the fallbacks'
PoPs, without repeats. The route API (per-call answers, rtjson) and the Kamailio push
(dispatcher sets) both read it, so pulled and pushed routes always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netopt.core.decide import TableEntry
from topology.planner import Route


@dataclass(frozen=True)
class PopTarget:
    """Where a proxy sends a call to use one PoP: its SIP URI and media relay."""

    pop: str
    sip_uri: str | None = None
    media_addr: str | None = None
    rtpengine_set: int | None = None


def pop_of(route: Route) -> str:
    """The PoP a route's calls are handed to: the entry PoP, or the destination when direct."""
    return route.entry_pop if route.entry_pop is not None else route.dest


def ranked_routes(entry: TableEntry) -> tuple[Route, ...]:
    """The entry's route then its fallbacks, one per PoP (the first route to a PoP wins)."""
    out: list[Route] = []
    seen: set[str] = set()
    for route in (entry.route, *entry.fallbacks):
        if route is None:
            continue
        pop = pop_of(route)
        if pop not in seen:
            seen.add(pop)
            out.append(route)
    return tuple(out)


def ranked_targets(entry: TableEntry, pops: Mapping[str, PopTarget]) -> tuple[PopTarget, ...]:
    """The PoPs to try in order; a PoP missing from `pops` is skipped."""
    return tuple(pops[p] for p in (pop_of(r) for r in ranked_routes(entry)) if p in pops)
