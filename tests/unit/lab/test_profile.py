"""Lab world profiles: what is accepted, and one clear line per problem for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from netopt.errors import ConfigError
from netopt.lab.profile import MAX_NODES, LinkParams, load_profile, parse_profile

REPO = Path(__file__).resolve().parents[3]


def _nodes(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "role": "region"} for n in names]


GOOD = {
    "nodes": [{"name": "lagos", "role": "region"}, {"name": "fra", "role": "pop"},
              {"name": "jnb", "role": "pop", "pop_role": "edge"}],
    "links": [
        {"a": "lagos", "b": "fra", "delay_ms": 60, "jitter_ms": 5, "loss_pct": 2},
        {"a": "lagos", "b": "jnb", "delay_ms": 25, "jitter_ms": 2, "loss_pct": 0.2,
         "burst": {"p": 0.01, "r": 0.3}},
        {"a": "fra", "b": "jnb", "delay_ms": 80, "directed": True},
    ],
    "default_link": {"delay_ms": 100, "jitter_ms": 10, "loss_pct": 1},
}  # fmt: skip


def _problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_profile(data, "world.yaml")
    assert info.value.source == "world.yaml"
    return info.value.problems


def test_issue_example_is_accepted_and_expands_per_direction() -> None:
    profile = parse_profile(GOOD, "world.yaml")
    params = profile.directed_params()
    assert len(params) == 6
    assert params[("lagos", "fra")] == params[("fra", "lagos")]
    assert params[("lagos", "fra")].delay_ms == 60
    assert params[("fra", "jnb")].delay_ms == 80
    assert params[("jnb", "fra")] == LinkParams(delay_ms=100, jitter_ms=10, loss_pct=1)
    assert params[("jnb", "lagos")].burst is not None


BAD = [
    ({**GOOD, "links": [{"a": "lagos", "b": "paris"}]}, ["links[0].b: unknown node 'paris'"]),
    ({**GOOD, "links": [{"a": "lagos", "b": "fra", "delay_ms": -1}]},
     ["links[0].delay_ms: Input should be greater than or equal to 0"]),
    ({**GOOD, "links": [{"a": "lagos", "b": "fra", "loss_pct": 100.5}]},
     ["links[0].loss_pct: Input should be less than or equal to 100"]),
    ({"nodes": _nodes("a", "b", "a")}, ["nodes[2].name: duplicate node name 'a'"]),
    ({"nodes": _nodes(*(f"n{i}" for i in range(MAX_NODES + 1)))},
     [f"nodes: {MAX_NODES + 1} nodes, at most {MAX_NODES} are allowed"]),
    ({**GOOD, "links": [{"a": "fra", "b": "fra"}]},
     ["links[0]: a link needs two different nodes, got 'fra' twice"]),
    ({**GOOD, "links": [{"a": "fra", "b": "jnb"}, {"a": "jnb", "b": "fra", "directed": True}]},
     ["links[1]: jnb → fra is already set by links[0]"]),
    ({**GOOD, "colour": "blue"}, ["colour: unknown key"]),
    ({"nodes": [{"name": "x", "role": "region", "pop_role": "core"}]},
     ["nodes[0]: pop_role is only allowed on nodes with role: pop"]),
    ({"nodes": [{"name": "Lagos", "role": "region"}]},
     ["nodes[0].name: String should match pattern '^[a-z][a-z0-9-]{0,23}$'"]),
    ({"nodes": [{"name": "x", "role": "router"}]},
     ["nodes[0].role: Input should be 'region' or 'pop'"]),
    ({**GOOD, "links": [{"a": "lagos", "b": "fra", "burst": {"p": 0.1, "r": 0}}]},
     ["links[0].burst.r: Input should be greater than 0"]),
    ({"nodes": []}, ["nodes: List should have at least 1 item after validation, not 0"]),
    ({"links": []}, ["nodes: required key missing"]),
    (["not", "a", "mapping"], ["(top level): expected a mapping of keys"]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), BAD)
def test_bad_profiles_name_each_problem(data: object, expected: list[str]) -> None:
    assert _problems(data) == expected


def test_several_problems_are_all_reported() -> None:
    data = {**GOOD, "nodes": _nodes("lagos", "lagos", "fra")}
    data["links"] = [{"a": "lagos", "b": "x"}, {"a": "y", "b": "fra"}]
    assert _problems(data) == [
        "nodes[1].name: duplicate node name 'lagos'",
        "links[0].b: unknown node 'x'",
        "links[1].a: unknown node 'y'",
    ]


def test_profile_is_frozen() -> None:
    profile = parse_profile(GOOD, "world.yaml")
    with pytest.raises(ValueError):
        profile.nodes[0].name = "other"


def test_shipped_world_loads_with_the_required_places() -> None:
    profile = load_profile(REPO / "deploy" / "lab" / "world.yaml")
    names = {n.name for n in profile.nodes}
    regions = {"lagos", "nairobi", "johannesburg", "cairo", "dubai", "moscow", "saopaulo"}
    assert regions <= names
    assert {"fra", "hkg", "jnb", "los"} <= names
    assert profile.node("fra").pop_role == "core"
    assert all(profile.node(r).role == "region" for r in regions)
    # every pair is listed explicitly, so the default link never carries traffic
    n = len(profile.nodes)
    assert len(profile.links) == n * (n - 1) // 2


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "nope.yaml")
