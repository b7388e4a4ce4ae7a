"""What proxies are told: dispatcher.list, address file, /v1/route and rtjson answers.

Golden files in tests/golden/ — regenerate after an intended change with
``NETOPT_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_push_render.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netopt.push.answers import Answers, pop_targets
from netopt.push.config import KamailioProxy
from netopt.push.kamailio import (
    DsLine,
    differences,
    dispatcher_lines,
    loaded_lines,
    render_addresses,
    render_dispatcher,
    set_comments,
)
from tests.routes_fixture import T0_WALL, FakeDaemon, table, world_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PROXY = KamailioProxy(kind="kamailio", rpc_url="http://127.0.0.1:5071/RPC",
                      dispatcher_file="/tmp/unused")  # fmt: skip
TABLE = table({"lagos": ["jnb", "fra", "lfw"], "nairobi": ["fra", "jnb"]})


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NETOPT_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; regenerate (see module docstring)"
    assert text == path.read_text(), f"{name} differs from its golden file"


def rendered_list(t=TABLE, proxy=PROXY) -> str:  # type: ignore[no-untyped-def]
    cfg = world_config()
    lines = dispatcher_lines(t, cfg, proxy, pop_targets(cfg))
    return render_dispatcher(lines, set_comments(t, cfg, proxy))


def test_dispatcher_list_golden() -> None:
    golden("dispatcher.list", rendered_list())


def test_dispatcher_sets_rank_primary_first() -> None:
    cfg = world_config()
    lines = dispatcher_lines(TABLE, cfg, PROXY, pop_targets(cfg))
    lagos = [d for d in lines if d.set_id == 1]
    assert [d.duid for d in lagos] == ["jnb", "fra", "lfw"]
    assert [d.priority for d in lagos] == [3, 2, 1]
    assert [d.duid for d in lines if d.set_id == 2] == ["fra", "jnb"]
    moved = dispatcher_lines(table({"lagos": ["lfw", "jnb"]}), cfg, PROXY, pop_targets(cfg))
    assert [(d.set_id, d.duid, d.priority) for d in moved] == [(1, "lfw", 2), (1, "jnb", 1)]


def test_set_base_and_pops_without_sip_uri() -> None:
    cfg = world_config(sip={"fra": "sip:198.18.1.1:5080"})
    targets = pop_targets(cfg)
    targets["lfw"] = targets["lfw"].__class__("lfw")  # no sip_uri: left out
    proxy = PROXY.model_copy(update={"set_base": 10})
    lines = dispatcher_lines(TABLE, cfg, proxy, targets)
    assert {d.set_id for d in lines} == {10, 11}
    assert "lfw" not in {d.duid for d in lines}
    assert DsLine(10, 1, "sip:198.18.1.1:5080", 0, "fra", 1) in lines  # lfw left out


def test_empty_table_renders_no_lines() -> None:
    cfg = world_config()
    assert dispatcher_lines(table({}), cfg, PROXY, pop_targets(cfg)) == ()


def test_address_file_golden() -> None:
    golden("address.list", render_addresses(world_config(), PROXY))


def test_loaded_lines_round_trip_and_differences() -> None:
    cfg = world_config()
    lines = dispatcher_lines(TABLE, cfg, PROXY, pop_targets(cfg))
    answer = {"NRSETS": 2, "RECORDS": [
        {"SET": {"ID": s, "TARGETS": [
            {"DEST": {"URI": d.uri, "FLAGS": "AX", "PRIORITY": d.priority,
                      "ATTRS": {"BODY": f"duid={d.duid};weight={d.weight}", "DUID": d.duid}}}
            for d in lines if d.set_id == s]}}
        for s in (2, 1)]}  # fmt: skip
    loaded = loaded_lines(answer)
    assert differences(lines, loaded) == []
    gone = loaded[-1]
    assert differences(lines, loaded[:-1]) == [
        f"missing set {gone.set_id} uri {gone.uri} priority {gone.priority} duid {gone.duid}"
    ]
    assert differences(lines, loaded_lines({"NRSETS": 0})) != []


def test_route_answers_golden() -> None:
    daemon = FakeDaemon(world_config())
    answers = Answers(daemon.config, daemon.wall_time)
    answers.publish(TABLE)
    found = answers.route("lagos", None)
    assert found is not None and found.status == 200
    body = json.loads(found.body)
    assert body["primary"] == {"pop": "jnb", "sip_uri": "sip:198.18.2.1:5060",
                               "media_addr": None, "rtpengine_set": 2}  # fmt: skip
    assert [f["pop"] for f in body["fallbacks"]] == ["fra", "lfw"]
    assert body["decided_at"] == T0_WALL and body["kind"] == "relay"
    assert body["path"] == ["lagos", "jnb", "fra"] and body["entry_pop"] == "jnb"
    golden("route_lagos.json", json.dumps(body, indent=2) + "\n")
    rt = answers.route("lagos", "fra", rtjson=True)
    assert rt is not None and rt.status == 200
    doc = json.loads(rt.body)
    assert doc["routing"] == "serial"
    assert [r["dst_uri"] for r in doc["routes"]] == [
        "sip:198.18.2.1:5060", "sip:198.18.1.1:5060", "sip:198.18.3.1:5060"]  # fmt: skip
    golden("rtjson_lagos.json", json.dumps(doc, indent=2) + "\n")


def test_answers_swap_whole_tables() -> None:
    daemon = FakeDaemon(world_config())
    answers = Answers(daemon.config, daemon.wall_time)
    assert answers.route("lagos", None) is None
    answers.publish(TABLE)
    answers.publish(table({"nairobi": ["jnb"]}))
    assert answers.route("lagos", None) is None  # gone with the table that had it
    n = answers.route("nairobi", "fra")
    assert n is not None and json.loads(n.body)["primary"]["pop"] == "jnb"
    assert [r["region"] for r in json.loads(answers.routes.body)["routes"]] == ["nairobi"]


@pytest.mark.parametrize(
    ("query", "region"),
    [({"region": "lagos"}, "lagos"), ({"src_ip": "198.18.101.9"}, "nairobi"),
     ({"caller": "+2348031234567"}, "lagos"), ({"country": "ke"}, "nairobi")],
)  # fmt: skip
def test_region_of(query: dict[str, str], region: str) -> None:
    answers = Answers(world_config(), lambda s: s)
    assert answers.region_of(query) == region


@pytest.mark.parametrize(
    ("query", "error"),
    [({}, ValueError), ({"region": "lagos", "caller": "+234"}, ValueError),
     ({"src_ip": "999.1.1.1"}, ValueError), ({"region": "atlantis"}, LookupError),
     ({"src_ip": "192.0.2.1"}, LookupError), ({"caller": "+4930"}, LookupError)],
)  # fmt: skip
def test_region_of_errors(query: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        Answers(world_config(), lambda s: s).region_of(query)


def test_remembered_answers_are_forgotten_with_their_table() -> None:
    answers = Answers(world_config(), lambda s: s)
    answers.publish(TABLE)
    first = answers.route("lagos", None)
    assert first is not None
    answers.remember("region=lagos", first)
    assert answers.remembered("region=lagos") is first
    answers.publish(table({"lagos": ["fra"]}))
    assert answers.remembered("region=lagos") is None


def test_reconfigure_takes_new_prefixes_and_pops() -> None:
    answers = Answers(world_config(), lambda s: s)
    answers.publish(TABLE)
    assert answers.region_of({"src_ip": "198.18.101.9"}) == "nairobi"
    moved = world_config(sip={"jnb": "sip:198.18.2.9:5070"})
    moved = moved.model_copy(update={"regions": (moved.regions[0],)})  # nairobi removed
    answers.reconfigure(moved)
    answers.publish(TABLE)
    with pytest.raises(LookupError):
        answers.region_of({"src_ip": "198.18.101.9"})
    found = answers.route("lagos", None)
    assert found is not None
    assert json.loads(found.body)["primary"]["sip_uri"] == "sip:198.18.2.9:5070"
