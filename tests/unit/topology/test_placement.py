"""What-if placement: the greedy pick lifts the most call weight above target."""

from __future__ import annotations

from topology.model import Link, Pop, Region, Topology
from topology.placement import CandidateSite, place
from topology.planner import PathStats

WORLD = Topology(
    (Region("lagos", weight=5), Region("accra", weight=2), Region("lima", weight=1)),
    (Pop("fra", "core"),),
    ("fra",),
    (),
)
# every region is poor direct (lossy); nothing to relay through yet
PATHS = [
    PathStats("lagos", "fra", 180, 5, 5),
    PathStats("accra", "fra", 190, 5, 5),
    PathStats("lima", "fra", 250, 5, 5),
]
LOS = CandidateSite(
    "los",
    (PathStats("lagos", "los", 10), PathStats("accra", "los", 30)),
    (Link("los", "fra", 90, 1, 0.01),),
)
SCL = CandidateSite("scl", (PathStats("lima", "scl", 40),), (Link("scl", "fra", 230, 1, 0.01),))
NOWHERE = CandidateSite("nowhere", (), (Link("nowhere", "fra", 10),))


def test_greedy_picks_the_site_lifting_most_weight_first() -> None:
    steps = place(WORLD, PATHS, [SCL, NOWHERE, LOS], k=3)
    assert [s.site for s in steps] == ["los", "scl"]  # "nowhere" lifts nothing: stop
    assert steps[0].lifted == (("accra", "fra"), ("lagos", "fra"))
    assert steps[0].lifted_weight == 7
    assert steps[1].lifted == (("lima", "fra"),) and steps[1].weight_above_target == 8
    assert steps[1].total_weight == 8


def test_no_candidate_no_step() -> None:
    assert place(WORLD, PATHS, [NOWHERE], k=2) == ()
