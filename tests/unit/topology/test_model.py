"""Topology validation: every bad id or number is a ValueError naming the item."""

from __future__ import annotations

import pytest

from topology.model import Link, Pop, Region, Topology


def world(**overrides: object) -> Topology:
    parts: dict[str, object] = {
        "regions": (Region("lagos", "Lagos"),),
        "pops": (Pop("fra", "core"), Pop("jnb", "edge", relay_delay_ms=0.5)),
        "destinations": ("fra",),
        "backbone": (Link("jnb", "fra", 160, 1, 0.01),),
    }
    parts.update(overrides)
    return Topology(**parts)  # type: ignore[arg-type]


def test_valid_world_builds_and_answers_lookups() -> None:
    t = world()
    assert t.pop("jnb").relay_delay_ms == 0.5
    assert t.region("lagos").name == "Lagos"
    assert t.is_pop("fra") and not t.is_pop("lagos") and t.is_region("lagos")
    g = t.backbone_graph()
    assert g.has_edge("fra", "jnb") and g["fra"]["jnb"]["rtt_ms"] == 160


def test_lists_are_stored_as_tuples_and_world_is_hashable() -> None:
    t = world(regions=[Region("lagos")])
    assert isinstance(t.regions, tuple)
    assert hash(t) == hash(world(regions=[Region("lagos")]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regions": (Region("a"), Region("a"))}, "duplicate region id 'a'"),
        ({"pops": (Pop("fra", "core"), Pop("fra", "edge"))}, "duplicate pop id 'fra'"),
        ({"regions": (Region("fra"),)}, "'fra' is both a region and a pop"),
        ({"destinations": ("nowhere",)}, "destination 'nowhere' is not a pop id"),
        ({"destinations": ("fra", "fra")}, "duplicate destination id 'fra'"),
        ({"backbone": (Link("jnb", "xx", 1),)}, "'xx' is not a pop id"),
        ({"backbone": (Link("jnb", "fra", 1), Link("fra", "jnb", 2))}, "declared twice"),
    ],
)
def test_bad_references_name_the_item(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        world(**overrides)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Pop("x", "router"), "role must be one of"),
        (lambda: Pop("x", "edge", relay_delay_ms=-1), "relay_delay_ms"),
        (lambda: Pop("x", "edge", capacity_calls=-5), "capacity_calls"),
        (lambda: Region(""), "non-empty"),
        (lambda: Region("r", weight=float("nan")), "weight"),
        (lambda: Link("a", "a", 1), "two different PoPs"),
        (lambda: Link("a", "b", -1), "rtt_ms"),
        (lambda: Link("a", "b", float("nan")), "rtt_ms"),
        (lambda: Link("a", "b", 1, loss_pct=101), "loss_pct"),
        (lambda: Link("a", "b", 1, jitter_ms=-0.1), "jitter_ms"),
    ],
)
def test_bad_values_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
