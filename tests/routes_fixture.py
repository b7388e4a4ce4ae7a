"""A small world and hand-made route tables for the route API and push tests (no probing).

`world_config()` gives a validated Config (regions lagos and nairobi, PoPs fra/jnb/lfw);
`table(...)` builds a RouteTable where each region's route enters at the given PoPs in order
(the first is the route in force, the rest its fallbacks); `FakeDaemon` is what
`netopt.api.routes.make_app` reads from a daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from netopt.config import Config, parse_config
from netopt.core.decide import RouteTable, TableEntry
from netopt.daemon.metrics import Metrics
from topology.planner import Expected, PathStats, Route

T0_MONO = 1000.0
T0_WALL = 1_800_000_000.0


def world_config(sip: Mapping[str, str] | None = None, **extra: Any) -> Config:
    sip = sip or {}
    pops = [
        {"id": "fra", "role": "core", "address": "198.18.1.1", "rtpengine_set": 1,
         "media_addr": "198.18.1.2"},
        {"id": "jnb", "role": "edge", "address": "198.18.2.1", "rtpengine_set": 2},
        {"id": "lfw", "role": "edge", "address": "198.18.3.1"},
    ]  # fmt: skip
    for p in pops:
        p["sip_uri"] = sip.get(p["id"], f"sip:{p['address']}:5060")
    data = {
        "regions": [
            {"id": "lagos", "country": "NG", "prefixes": ["198.18.100.0/24", "127.0.0.0/8"],
             "e164": ["+234"], "address": "198.18.100.1"},
            {"id": "nairobi", "country": "KE", "prefixes": ["198.18.101.0/24"],
             "e164": ["+254"], "address": "198.18.101.1"},
        ],
        "pops": pops,
        "destinations": ["fra"],
        "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160},
                     {"a": "lfw", "b": "fra", "rtt_ms": 90}],
        **extra,
    }  # fmt: skip
    return parse_config(data)


def route(region: str, pop: str, mos: float = 4.2, dest: str = "fra") -> Route:
    e = Expected(rtt_ms=100.0 + 10 * len(pop), jitter_ms=2.0, loss_pct=0.1, mos=mos)
    if pop == dest:
        return Route(region, dest, "direct", (region, dest), None, e)
    return Route(region, dest, "relay", (region, pop, dest), pop, e)


def table(
    routes: Mapping[str, list[str]], *, made_at: float = T0_MONO, stale: bool = False
) -> RouteTable:
    entries = {}
    for region, pops in routes.items():
        ranked = [route(region, p, 4.3 - 0.2 * i) for i, p in enumerate(pops)]
        entries[(region, "fra")] = TableEntry(
            region, "fra", ranked[0], made_at, "needed", "test table", stale, False,
            tuple(ranked[1:]),
        )  # fmt: skip
    return RouteTable(MappingProxyType(entries), made_at)


@dataclass
class FakeDaemon:
    """The parts of netopt.daemon.wiring.Daemon the API reads."""

    config: Config
    table: RouteTable = field(default_factory=lambda: table({}))
    publishers: list[Any] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    stats: list[PathStats] = field(default_factory=list)

    def wall_time(self, mono_s: float) -> float:
        return T0_WALL + (mono_s - T0_MONO)

    def path_stats(self) -> list[PathStats]:
        return self.stats

    def set_table(self, t: RouteTable) -> None:
        self.table = t
        for publish in self.publishers:
            publish(t)
