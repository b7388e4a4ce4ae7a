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
