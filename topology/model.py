"""The world netopt plans over: regions (where callers are), PoPs, destinations, backbone.

Flow: config → **Topology** → plan (with measured PathStats) → decide → publish.

Pure values: frozen dataclasses, no I/O, no clock. A `Topology` validates its ids when it is
built (duplicates, unknown references, impossible numbers) and raises `ValueError` naming the
offending item, so a planner never has to second-guess its input. The backbone is offered as a
networkx graph (`backbone_graph`) for path queries; the planner builds its own weighted view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

POP_ROLES = ("edge", "relay", "core")


@dataclass(frozen=True)
class Region:
    """Where callers are. `weight` is the region's expected concurrent calls per destination
    (used against PoP capacity and in placement); 1.0 when unknown."""

    id: str
    name: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_id("region", self.id)
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"region {self.id!r}: weight must be a finite number >= 0")


@dataclass(frozen=True)
class Pop:
    """A point of presence: edge node, media relay or core. `relay_delay_ms` is the one-way
    delay a media packet spends crossing it; `capacity_calls` bounds concurrent relayed calls
    (None = unbounded)."""

    id: str
    role: str
    relay_delay_ms: float = 0.0
    capacity_calls: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        _check_id("pop", self.id)
        if self.role not in POP_ROLES:
            raise ValueError(f"pop {self.id!r}: role must be one of {', '.join(POP_ROLES)}")
        if not (math.isfinite(self.relay_delay_ms) and self.relay_delay_ms >= 0):
            raise ValueError(f"pop {self.id!r}: relay_delay_ms must be a finite number >= 0")
        if self.capacity_calls is not None and self.capacity_calls < 0:
            raise ValueError(f"pop {self.id!r}: capacity_calls must be >= 0")


@dataclass(frozen=True)
class Link:
    """An undirected backbone link between two PoPs (declared; measurements may override)."""

    a: str
    b: str
    rtt_ms: float
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def __post_init__(self) -> None:
        where = f"backbone link {self.a}-{self.b}"
        if self.a == self.b:
            raise ValueError(f"{where}: a link must join two different PoPs")
        check_path_numbers(where, self.rtt_ms, self.jitter_ms, self.loss_pct)


@dataclass(frozen=True)
class Topology:
    """Regions, PoPs, the destination PoPs where media terminates, and the backbone."""

    regions: tuple[Region, ...]
    pops: tuple[Pop, ...]
    destinations: tuple[str, ...]
    backbone: tuple[Link, ...] = ()
    _pop_by_id: dict[str, Pop] = field(init=False, repr=False, compare=False, hash=False)
    _region_by_id: dict[str, Region] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples, so the value stays immutable.
        for name in ("regions", "pops", "destinations", "backbone"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        regions = _unique("region", [r.id for r in self.regions])
        pops = _unique("pop", [p.id for p in self.pops])
        clash = sorted(set(regions) & set(pops))
        if clash:
            raise ValueError(f"id {clash[0]!r} is both a region and a pop; ids must be unique")
        _unique("destination", list(self.destinations))
        for dest in self.destinations:
            if dest not in pops:
                raise ValueError(f"destination {dest!r} is not a pop id")
        seen: set[frozenset[str]] = set()
        for link in self.backbone:
            for end in (link.a, link.b):
                if end not in pops:
                    raise ValueError(f"backbone link {link.a}-{link.b}: {end!r} is not a pop id")
            key = frozenset((link.a, link.b))
            if key in seen:
                raise ValueError(f"backbone link {link.a}-{link.b} is declared twice")
            seen.add(key)
        object.__setattr__(self, "_pop_by_id", {p.id: p for p in self.pops})
        object.__setattr__(self, "_region_by_id", {r.id: r for r in self.regions})

    def pop(self, pop_id: str) -> Pop:
        """The PoP with this id (KeyError if unknown)."""
        return self._pop_by_id[pop_id]

    def region(self, region_id: str) -> Region:
        """The region with this id (KeyError if unknown)."""
        return self._region_by_id[region_id]

    def is_pop(self, node_id: str) -> bool:
        return node_id in self._pop_by_id

    def is_region(self, node_id: str) -> bool:
        return node_id in self._region_by_id

    def backbone_graph(self) -> nx.Graph:
        """The declared backbone as an undirected networkx graph of PoP ids; edge attributes
        `rtt_ms`, `jitter_ms`, `loss_pct`; node attribute `relay_delay_ms`."""
        graph = nx.Graph()
        for pop in self.pops:
            graph.add_node(pop.id, relay_delay_ms=pop.relay_delay_ms)
        for link in self.backbone:
            graph.add_edge(
                link.a,
                link.b,
                rtt_ms=link.rtt_ms,
                jitter_ms=link.jitter_ms,
                loss_pct=link.loss_pct,
            )
        return graph


def check_path_numbers(where: str, rtt_ms: float, jitter_ms: float, loss_pct: float) -> None:
    """Raise ValueError naming `where` if RTT/jitter are not finite >= 0 or loss not in 0..100."""
    if not (math.isfinite(rtt_ms) and rtt_ms >= 0):
        raise ValueError(f"{where}: rtt_ms must be a finite number >= 0, got {rtt_ms!r}")
    if not (math.isfinite(jitter_ms) and jitter_ms >= 0):
        raise ValueError(f"{where}: jitter_ms must be a finite number >= 0, got {jitter_ms!r}")
    if not (math.isfinite(loss_pct) and 0 <= loss_pct <= 100):
        raise ValueError(f"{where}: loss_pct must be between 0 and 100, got {loss_pct!r}")


def _check_id(kind: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{kind} id must be a non-empty string, got {value!r}")


def _unique(kind: str, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {kind} id {item!r}")
        seen.add(item)
    return ids
