"""`netopt lab world`: a profile from the real RTT matrix; the shipped world is regenerated."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from netopt.errors import ConfigError
from netopt.lab import world
from netopt.lab.profile import parse_profile
from netopt.validation import load_yaml
from tests.shared_data import shared_path

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "deploy" / "lab" / "world.yaml"


def _built_with() -> tuple[list[str], list[str]]:
    line = next(x for x in SHIPPED.read_text().splitlines() if x.startswith("# Built with:"))
    parts = line.split()
    return parts[4].split(","), parts[6].split(",")


def test_shipped_world_is_what_the_builder_makes() -> None:
    matrix = shared_path("data/wonderproxy_rtt_matrix_217cities.csv")
    shared_path("data/ripe_atlas_country_rtt_stat.csv.gz")
    regions, pops = _built_with()
    assert world.build_profile_text(matrix, regions, pops) == SHIPPED.read_text()


def test_delays_are_half_the_matrix_rtt() -> None:
    matrix_path = shared_path("data/wonderproxy_rtt_matrix_217cities.csv")
    with open(matrix_path, newline="") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("Frankfurt")
    row = next(r for r in rows if r[0] == "Cairo")
    rtt = float(row[col])
    profile = parse_profile(load_yaml(SHIPPED), "world")
    link = profile.link_for("cairo", "fra")
    assert link is not None and link.delay_ms == pytest.approx(rtt / 2, abs=0.01)
    same_city = profile.link_for("lagos", "los")
    assert same_city is not None and same_city.delay_ms == world.SAME_CITY_DELAY_MS
    backbone = profile.link_for("fra", "hkg")
    assert backbone is not None and backbone.loss_pct == 0


def test_access_rule_and_fallback() -> None:
    var = {"KE": (0.12, 98), "ZA": (0.17, 102), "GH": (0.08, 98), "NG": (0.004, 0), "DE": (0.4, 1)}
    ke = world.access_for("KE", var)
    assert (ke.jitter_ms, ke.loss_pct) == (2.4, 0.24)
    ng = world.access_for("NG", var)  # too few pairs: African median of KE, ZA, GH = 0.12
    assert (ng.jitter_ms, ng.loss_pct) == (2.4, 0.24) and "African" in ng.source
    assert world.access_for("XX", {"A": (1.0, 50)}).jitter_ms == 12.0  # clipped


def test_unknown_city_is_refused() -> None:
    matrix = shared_path("data/wonderproxy_rtt_matrix_217cities.csv")
    with pytest.raises(ConfigError, match="city not in the matrix: Atlantis"):
        world.build_profile_text(matrix, ["Lagos"], ["Atlantis"])
    with pytest.raises(ConfigError, match="unknown country"):
        world.build_profile_text(matrix, ["Helsinki"], ["Frankfurt"])


def test_place_syntax() -> None:
    (pop,) = world.parse_places(["fra=Frankfurt:core"], pops=True)
    assert (pop.node, pop.city, pop.pop_role) == ("fra", "Frankfurt", "core")
    (region,) = world.parse_places(["Helsinki@FI"], pops=False)
    assert (region.node, region.country) == ("helsinki", "FI")


def test_transit_rides_long_paths_only() -> None:
    acc = world.Access(2.4, 0.24, "", transit_factor=4.29)
    assert acc.long_jitter_ms == pytest.approx(2.4 * (1 + 3.29**2) ** 0.5, abs=0.01)
    assert acc.long_loss_pct == pytest.approx(100 * (1 - 0.9976 * 0.97), abs=0.01)  # capped 3 %
    access = {"lagos": acc}
    matrix = {"Lagos": {"Frankfurt": 114.4}, "Frankfurt": {"Lagos": 114.4}}
    lagos, los = world.Place("lagos", "Lagos", "NG"), world.Place("los", "Lagos", None, "edge")
    fra = world.Place("fra", "Frankfurt", None, "core")
    local = world._link(lagos, los, matrix, access)
    far = world._link(lagos, fra, matrix, access)
    backbone = world._link(los, fra, matrix, access)
    assert (local["jitter_ms"], local["loss_pct"]) == (2.4, 0.24)  # the last mile only
    assert far["loss_pct"] > 3 > 1.2 and far["jitter_ms"] > 8  # plus transit
    assert (backbone["jitter_ms"], backbone["loss_pct"]) == (world.BACKBONE_JITTER_MS, 0.0)
    # no transit where domestic and international paths spread alike (T = 1)
    flat = world.Access(3.5, 0.35, "", transit_factor=1.0)
    assert (flat.long_jitter_ms, flat.long_loss_pct) == (3.5, 0.35)


def test_transit_factor_fallback() -> None:
    factors = {"KE": (4.29, 98), "ZA": (2.0, 102), "DE": (0.77, 119), "AE": (10.0, 103)}
    assert world.transit_for("KE", factors)[0] == 4.29
    assert world.transit_for("DE", factors)[0] == 1.0  # clipped up
    assert world.transit_for("AE", factors)[0] == world.MAX_TRANSIT_FACTOR  # clipped down
    t, why = world.transit_for("NG", factors)  # no intra-country row: African median
    assert t == pytest.approx(3.15) and "African" in why
