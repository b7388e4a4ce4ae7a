"""The shared route table: what the leader writes, a follower reads back the same."""

from __future__ import annotations

import dataclasses

import pytest

from netopt.core.table_codec import decode, encode
from tests.routes_fixture import table


def test_a_table_round_trips_with_its_instants_on_the_readers_clock() -> None:
    t = table({"lagos": ["jnb", "fra"], "nairobi": ["fra"]}, made_at=50.0)
    back = decode(encode(t, wall_minus_mono_s=1_000.0), wall_minus_mono_s=900.0)
    assert back.made_at == pytest.approx(150.0)
    assert set(back.entries) == set(t.entries)
    for key, e in t.entries.items():
        b = back.entries[key]
        assert b.decided_at == pytest.approx(e.decided_at + 100.0)
        assert dataclasses.replace(b, decided_at=e.decided_at) == e


def test_an_unmeasured_route_survives() -> None:
    t = table({"lagos": ["jnb"]})
    entry = next(iter(t))
    assert entry.route is not None
    inf = dataclasses.replace(entry.route.expected, rtt_ms=float("inf"))
    route = dataclasses.replace(entry.route, expected=inf)
    t2 = dataclasses.replace(t, entries={("lagos", "fra"): dataclasses.replace(entry, route=route)})
    back = decode(encode(t2, 0.0), 0.0)
    got = back.get("lagos")
    assert got is not None and got.route is not None and got.route.expected.rtt_ms == float("inf")


@pytest.mark.parametrize("body", ["", "[]", '{"entries": [{}], "made_at_wall_s": 1}', "{"])
def test_a_bad_body_is_a_clear_error(body: str) -> None:
    with pytest.raises(ValueError, match="not a shared route table"):
        decode(body, 0.0)
