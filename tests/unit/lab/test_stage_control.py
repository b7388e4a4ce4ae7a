"""The stage's control protocol (set / status) on its directions table, without a TUN."""

from __future__ import annotations

from typing import Any

from netopt.lab.api import summarize
from netopt.lab.build import Layout
from netopt.lab.profile import Profile
from netopt.lab.stage import Stage

PROFILE = Profile.model_validate(
    {
        "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop"},
                  {"name": "c", "role": "pop"}],
        "links": [{"a": "a", "b": "b", "delay_ms": 10},
                  {"a": "b", "b": "c", "delay_ms": 3, "directed": True}],
        "default_link": {"delay_ms": 1},
    }
)  # fmt: skip


def _stage() -> tuple[Stage, dict[str, Any]]:
    layout = Layout.of("t", PROFILE)
    state = {"router_ns": layout.router_ns, "nodes": layout.nodes,
             "profile": PROFILE.model_dump(mode="json")}  # fmt: skip
    return Stage(state, seed=1), state


def test_layout_names_and_addresses() -> None:
    layout = Layout.of("t", PROFILE)
    assert layout.router_ns == "t--router"
    assert [n["netns"] for n in layout.nodes] == ["t-a", "t-b", "t-c"]
    assert [n["address"] for n in layout.nodes] == ["198.18.1.1", "198.18.1.2", "198.18.1.3"]


def test_packets_are_looked_up_by_address_pair() -> None:
    stage, _ = _stage()
    header = bytes(12) + bytes([198, 18, 1, 1]) + bytes([198, 18, 1, 2])
    d = stage.by_key[header[12:20]]
    assert (d.src, d.dst, d.params.delay_ms) == ("a", "b", 10)


def test_set_changes_only_the_named_directions() -> None:
    stage, _ = _stage()
    reply = stage.handle({"op": "set", "params": {"delay_ms": 50, "loss_pct": 2},
                          "directions": [["a", "c"], ["c", "a"]]})  # fmt: skip
    assert reply == {"ok": True}
    assert stage.by_pair[("a", "c")].params.delay_ms == 50
    assert stage.by_pair[("c", "a")].loss == 0.02
    assert stage.by_pair[("a", "b")].params.delay_ms == 10


def test_bad_requests_are_refused_not_fatal() -> None:
    stage, _ = _stage()
    assert not stage.handle({"op": "set", "params": {"delay_ms": -1}, "directions": []})["ok"]
    bad_pair = {"op": "set", "params": {}, "directions": [["a", "zz"]]}
    assert not stage.handle(bad_pair)["ok"]
    assert not stage.handle({"op": "explode"})["ok"]
    assert stage.handle({"op": "ping"})["ok"]


def test_status_summarizes_links_with_counters() -> None:
    stage, state = _stage()
    stage.by_pair[("a", "b")].forwarded = 4
    stage.by_pair[("b", "a")].forwarded = 3
    stage.by_pair[("c", "a")].dropped = 2  # a default pair that carried traffic
    reply = stage.handle({"op": "status"})
    status = summarize(state, PROFILE, reply["directions"])
    links = {(x["a"], x["b"]): x for x in status["links"]}
    assert links[("a", "b")]["forwarded"] == 7 and not links[("a", "b")]["directed"]
    assert links[("b", "c")]["directed"] and links[("b", "c")]["delay_ms"] == 3
    assert links[("c", "a")]["default"] and links[("c", "a")]["dropped"] == 2
    assert [n["name"] for n in status["nodes"]] == ["a", "b", "c"]
