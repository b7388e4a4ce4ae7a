"""The RouteTable, the frozen snapshot every face reads: decide → **RouteTable** → API, push.

Replaced whole, never edited in place; readers hold a reference and never see it change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from topology.planner import Plan, Route


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """The route in force for one region and destination, with why and since when."""

    region: str
    dest: str
    route: Route | None  # None: nothing usable is known (see reason)
    acceleration: str  # needed | not_needed | insufficient | unmeasured
    reason: str
    decided_at_wall_s: float  # when this route was chosen (Unix seconds)
    stale: bool = False
    fallbacks: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteTable:
    entries: Mapping[tuple[str, str], RouteEntry] = field(default_factory=dict)
    built_at_wall_s: float = 0.0
    default_dest: Mapping[str, str] = field(default_factory=dict)  # region → its first dest

    def get(self, region: str, dest: str | None = None) -> RouteEntry | None:
        if dest is None:
            dest = self.default_dest.get(region)
            if dest is None:
                return None
        return self.entries.get((region, dest))

    def __iter__(self) -> Iterator[RouteEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def table_from_plan(
    plan: Plan, previous: RouteTable, now_wall_s: float, default_dest: Mapping[str, str]
) -> RouteTable:
    """The plan's best route for every region, keeping `decided_at` where nothing changed.

    No hysteresis: this is the plan as it stands (what `netopt plan` shows); the daemon puts
    `netopt.decide` between the plan and the table.
    """
    entries: dict[tuple[str, str], RouteEntry] = {}
    for rp in plan.entries:
        best = rp.best
        before = previous.get(rp.region, rp.dest)
        same = (
            before is not None
            and before.route is not None
            and best is not None
            and (before.route.path == best.path)
        )
        decided = before.decided_at_wall_s if same and before is not None else now_wall_s
        entries[(rp.region, rp.dest)] = RouteEntry(
            region=rp.region,
            dest=rp.dest,
            route=best,
            acceleration=rp.acceleration,
            reason=rp.reason,
            decided_at_wall_s=decided,
            fallbacks=tuple(rp.routes[1:]),
        )
    return RouteTable(entries=entries, built_at_wall_s=now_wall_s, default_dest=default_dest)
