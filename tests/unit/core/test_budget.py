"""netopt.core.budget: escalation where a route is in doubt, relaxation, a budget never
exceeded, floors that do not fit said so, determinism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netopt.core.budget import (
    EMPTY,
    Allocation,
    BudgetPolicy,
    PathRole,
    Signal,
    allocate,
    budget_problem,
)
from netopt.core.detect import Level, Verdict

# Two regions, each on a route through one PoP with the other PoP as candidate.
ROLES = [
    PathRole("lagos", "los", "lagos", True),
    PathRole("lagos", "jnb", "lagos", False),
    PathRole("nairobi", "jnb", "nairobi", True),
    PathRole("nairobi", "los", "nairobi", False),
]
POLICY = BudgetPolicy(steady_pps=1.0, escalated_pps=25.0, relax_s=5.0, budget_pps=100.0)


def test_steady_everywhere_without_doubt() -> None:
    a = allocate(ROLES, {}, now=0.0, policy=POLICY)
    assert dict(a.rates_pps) == {(r.src, r.dst): 1.0 for r in ROLES}
    assert not a.reasons and a.total_pps == 4.0 and a.floors_fit


def test_a_jump_on_the_route_escalates_that_path_until_confirmed_or_not() -> None:
    a = allocate(ROLES, {("lagos", "los"): Signal(0.55, "jump")}, now=0.0, policy=POLICY)
    assert a.rates_pps[("lagos", "los")] == 25.0
    assert dict(a.reasons) == {("lagos", "los"): "jump"}  # not yet its region: a lone spike
    assert not a.regions
    assert a.paths[("lagos", "los")].until_s == POLICY.confirm_s  # a burst or two, not relax_s
    later = allocate(ROLES, {}, now=POLICY.confirm_s, policy=POLICY, previous=a)
    assert not later.reasons


def test_an_alarm_on_the_route_escalates_the_region_and_its_candidates() -> None:
    a = allocate(ROLES, {("lagos", "los"): Signal(1.0, "alarm")}, now=0.0, policy=POLICY)
    assert a.rates_pps[("lagos", "los")] == 25.0 and a.rates_pps[("lagos", "jnb")] == 25.0
    assert dict(a.reasons) == {("lagos", "los"): "alarm", ("lagos", "jnb"): "candidate"}
    assert a.rates_pps[("nairobi", "jnb")] == 1.0 and a.rates_pps[("nairobi", "los")] == 1.0
    assert set(a.regions) == {"lagos"}


@pytest.mark.parametrize("trigger", ["loss", "jump", "alarm", None])
def test_a_signal_off_the_route_escalates_nothing(trigger: str | None) -> None:
    """An off-route path getting worse changes no route; getting better is the windows' to
    prove: its own signals cost nothing until its region is in doubt."""
    signal = Signal(0.9, trigger)  # type: ignore[arg-type]
    a = allocate(ROLES, {("nairobi", "los"): signal}, now=0.0, policy=POLICY)
    assert not a.reasons and not a.regions


def test_the_path_that_signalled_is_served_before_its_region_s_candidates() -> None:
    policy = BudgetPolicy(steady_pps=1.0, escalated_pps=25.0, budget_pps=28.0)
    a = allocate(ROLES, {("lagos", "los"): Signal(1.0, "alarm")}, now=0.0, policy=policy)
    # 4 steady, 24 left at equal doubt: the route's path, not its candidate (name order)
    assert a.rates_pps[("lagos", "los")] == 25.0 and a.rates_pps[("lagos", "jnb")] == 1.0


def test_a_region_named_in_doubt_escalates_its_paths() -> None:
    a = allocate(ROLES, {}, now=0.0, policy=POLICY, regions_in_doubt={"nairobi": 0.4})
    assert dict(a.reasons) == {("nairobi", "jnb"): "doubt", ("nairobi", "los"): "candidate"}


def test_doubt_without_a_trigger_escalates_past_the_threshold_only() -> None:
    low = allocate(ROLES, {("lagos", "los"): Signal(0.4)}, now=0.0, policy=POLICY)
    high = allocate(ROLES, {("lagos", "los"): Signal(0.6)}, now=0.0, policy=POLICY)
    assert not low.reasons and high.reasons[("lagos", "los")] == "doubt"


def test_escalation_holds_for_relax_s_extended_only_by_more_doubt() -> None:
    lagos = ("lagos", "los")
    a = allocate(ROLES, {lagos: Signal(0.3, "loss")}, now=10.0, policy=POLICY)
    b = allocate(ROLES, {}, now=14.9, policy=POLICY, previous=a)
    assert b.reasons[lagos] == "loss"
    # the same doubt again (another spike, another expected loss) does not extend it ...
    c = allocate(ROLES, {lagos: Signal(0.3, "loss")}, now=14.0, policy=POLICY, previous=a)
    d = allocate(ROLES, {}, now=15.0, policy=POLICY, previous=c)
    assert not d.reasons and set(d.rates_pps.values()) == {1.0}
    # ... more doubt, or an alarm, does
    e = allocate(ROLES, {lagos: Signal(0.4, "loss")}, now=14.0, policy=POLICY, previous=a)
    assert allocate(ROLES, {}, now=18.9, policy=POLICY, previous=e).reasons[lagos] == "loss"
    f = allocate(ROLES, {lagos: Signal(0.1, "alarm")}, now=14.0, policy=POLICY, previous=e)
    g = allocate(ROLES, {}, now=18.9, policy=POLICY, previous=f)
    assert g.reasons[lagos] == "alarm" and g.paths[lagos].doubt == 1.0
    assert not allocate(ROLES, {}, now=19.0, policy=POLICY, previous=g).reasons


def test_a_region_the_caller_names_stays_escalated_while_named() -> None:
    a = allocate(ROLES, {}, now=0.0, policy=POLICY, regions_in_doubt={"lagos": 0.5})
    for now in (4.0, 8.0, 12.0):
        a = allocate(ROLES, {}, now=now, policy=POLICY, regions_in_doubt={"lagos": 0.5}, previous=a)
    assert a.reasons[("lagos", "los")] == "doubt"
    assert not allocate(ROLES, {}, now=17.0, policy=POLICY, previous=a).reasons


def test_scarce_budget_goes_to_the_most_doubtful_region_first() -> None:
    policy = BudgetPolicy(steady_pps=1.0, escalated_pps=25.0, budget_pps=40.0)
    signals = {("lagos", "los"): Signal(0.4, "jump"), ("nairobi", "jnb"): Signal(1.0, "alarm")}
    a = allocate(ROLES, signals, now=0.0, policy=policy)
    # 4 steady, 36 left: nairobi's two paths want 24 each → the first gets 24, the second 12
    assert a.rates_pps[("nairobi", "jnb")] == 25.0
    assert a.rates_pps[("nairobi", "los")] == 13.0
    assert a.rates_pps[("lagos", "los")] == 1.0 and a.rates_pps[("lagos", "jnb")] == 1.0
    assert a.total_pps == pytest.approx(40.0)
    assert set(a.starved) == {("nairobi", "los"), ("lagos", "los")}  # a jump: not its region


def test_steady_rates_are_cut_to_fit_then_the_floor_then_said_so() -> None:
    policy = BudgetPolicy(steady_pps=1.0, floor_pps=0.5, budget_pps=3.0)
    a = allocate(ROLES, {}, now=0.0, policy=policy)
    assert a.floors_fit and set(a.rates_pps.values()) == {0.75}
    tight = BudgetPolicy(steady_pps=1.0, floor_pps=1.0, budget_pps=3.0)
    b = allocate(ROLES, {("lagos", "los"): Signal(1.0, "alarm")}, now=0.0, policy=tight)
    assert not b.floors_fit and b.total_pps <= 3.0 and not b.reasons
    message = budget_problem(4, tight)
    assert message is not None and "3 packets/s" in message and "4 paths" in message
    assert budget_problem(3, tight) is None


def test_the_default_budget_is_two_per_path_but_at_least_the_minimum() -> None:
    policy = BudgetPolicy()
    assert policy.site_budget_pps(10) == 50.0
    assert policy.site_budget_pps(1000) == 2000.0
    assert BudgetPolicy(budget_pps=7.0).site_budget_pps(1000) == 7.0


def test_bad_policies_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="floor_pps <= steady_pps"):
        BudgetPolicy(steady_pps=0.1, floor_pps=0.5)
    with pytest.raises(ValueError, match="budget_pps"):
        BudgetPolicy(budget_pps=0.0)


def test_signal_of_a_verdict() -> None:
    level = Level(40.0, 1.0, 0.003, 600)
    changed = Verdict(0.0, "changed", "loss", 1.0, level, False, 1)
    assert Signal.of(changed) == Signal(1.0, "alarm")
    assert Signal.of(Verdict(0.0, "suspect", "rtt_up", 0.6, level, True, 0)).trigger == "jump"
    assert Signal.of(Verdict(0.0, "steady", "loss", 0.1, level, False, 1)).trigger == "loss"
    assert Signal.of(Verdict(0.0, "steady", None, 0.0, level, False, 0)).trigger is None


# -- properties -----------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
ROLE = st.builds(PathRole, NAMES, NAMES, st.sampled_from(["r1", "r2", "r3"]), st.booleans())
SIGNAL = st.builds(Signal, st.floats(0.0, 1.0), st.sampled_from([None, "alarm", "jump", "loss"]))
POLICIES = st.builds(
    BudgetPolicy,
    steady_pps=st.floats(0.5, 3.0),
    escalated_pps=st.floats(3.0, 60.0),
    floor_pps=st.floats(0.01, 0.5),
    relax_s=st.floats(0.0, 30.0),
    budget_pps=st.one_of(st.none(), st.floats(0.05, 200.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    roles=st.lists(ROLE, max_size=12),
    signals=st.dictionaries(st.tuples(NAMES, NAMES), SIGNAL, max_size=8),
    doubtful=st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), st.floats(0.0, 1.0)),
    policy=POLICIES,
    steps=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=4),
)
def test_the_budget_is_never_exceeded_and_rates_are_positive(
    roles: list[PathRole],
    signals: dict[tuple[str, str], Signal],
    doubtful: dict[str, float],
    policy: BudgetPolicy,
    steps: list[float],
) -> None:
    previous: Allocation = EMPTY
    now = 0.0
    for dt in steps:
        now += dt
        a = allocate(roles, signals, now, policy, doubtful, previous)
        assert set(a.rates_pps) == {(r.src, r.dst) for r in roles}
        assert a.total_pps <= a.budget_pps * (1 + 1e-9)
        assert all(rate > 0 for rate in a.rates_pps.values())
        assert all(
            rate <= max(policy.escalated_pps, a.steady_pps) + 1e-9 for rate in a.rates_pps.values()
        )
        assert set(a.reasons) <= set(a.rates_pps)
        previous = a
    hold = max(policy.relax_s, policy.confirm_s)
    relaxed = allocate(roles, {}, now + hold + 1e-6, policy, None, previous)
    assert not relaxed.reasons
    assert all(rate == relaxed.steady_pps for rate in relaxed.rates_pps.values())


@settings(max_examples=100, deadline=None)
@given(
    roles=st.lists(ROLE, max_size=10),
    signals=st.dictionaries(st.tuples(NAMES, NAMES), SIGNAL, max_size=6),
    policy=POLICIES,
)
def test_the_allocation_does_not_depend_on_the_order_of_paths(
    roles: list[PathRole], signals: dict[tuple[str, str], Signal], policy: BudgetPolicy
) -> None:
    a = allocate(roles, signals, 1.0, policy)
    b = allocate(list(reversed(roles)), dict(reversed(list(signals.items()))), 1.0, policy)
    assert dict(a.rates_pps) == dict(b.rates_pps) and dict(a.reasons) == dict(b.reasons)


def test_a_path_still_learning_its_baseline_bursts_on_the_route_or_not() -> None:
    learning = {("nairobi", "los"): Signal(0.0, "learning")}  # off the route
    a = allocate(ROLES, learning, now=0.0, policy=POLICY)
    assert dict(a.reasons) == {("nairobi", "los"): "learning"} and not a.regions
    assert a.paths[("nairobi", "los")].until_s == POLICY.confirm_s
    assert not allocate(ROLES, {}, now=POLICY.confirm_s, policy=POLICY, previous=a).reasons
