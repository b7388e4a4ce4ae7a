"""The pure model: topology, E-model quality, the route planner and placement what-ifs.

Flow: config → Topology; window stats (PathStats) → plan() → Plan → netopt.core.decide.
No I/O, no clock, never imports `netopt` or `probes`.
"""

from topology.model import Link, Pop, Region, Topology
from topology.planner import Expected, PathStats, Plan, RegionPlan, Route, Skipped, plan

__all__ = [
    "Expected",
    "Link",
    "PathStats",
    "Plan",
    "Pop",
    "Region",
    "RegionPlan",
    "Route",
    "Skipped",
    "Topology",
    "plan",
]
