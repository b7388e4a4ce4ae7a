"""The leadership rule with a fake clock: who leads, when a leader must stop pushing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netopt.core.leader import LeaderState, is_leader, may_push, renew_failed, renewed

INTERVAL_S = 2.0


def test_a_fresh_controller_does_not_lead() -> None:
    assert not is_leader(LeaderState(), 0.0, INTERVAL_S)


def test_a_held_lease_leads_until_one_interval_without_renewal() -> None:
    s = renewed(LeaderState(), held=3, newest=3, now_s=100.0)
    assert is_leader(s, 100.0, INTERVAL_S) and is_leader(s, 102.0, INTERVAL_S)
    assert not is_leader(s, 102.01, INTERVAL_S)  # a renewal that hangs deposes it in time
    s = renewed(s, held=3, newest=3, now_s=102.0)
    assert is_leader(s, 103.9, INTERVAL_S)


def test_a_failed_renewal_deposes_at_once() -> None:
    s = renewed(LeaderState(), held=3, newest=3, now_s=100.0)
    assert not is_leader(renew_failed(s), 100.1, INTERVAL_S)


def test_a_newer_generation_deposes_even_while_the_lock_seems_held() -> None:
    s = renewed(LeaderState(), held=3, newest=3, now_s=100.0)
    s = renewed(s, held=3, newest=4, now_s=101.0)
    assert not is_leader(s, 101.0, INTERVAL_S)
    # and a lost lease is not led on: the newest generation is remembered
    s = renewed(s, held=None, newest=2, now_s=102.0)
    assert s.newest_seen == 4 and not is_leader(s, 102.0, INTERVAL_S)


def test_a_lost_lease_keeps_its_last_renewal_time_but_not_the_lead() -> None:
    s = renewed(LeaderState(), held=5, newest=5, now_s=10.0)
    s = renewed(s, held=None, newest=5, now_s=11.0)
    assert s.held is None and s.renewed_at_s == 10.0 and not is_leader(s, 11.0, INTERVAL_S)


def test_may_push_only_with_the_newest_token_and_the_lock() -> None:
    assert may_push(4, 4, True)
    assert not may_push(4, 5, True)  # a newer leader exists
    assert not may_push(4, 4, False)  # our session lost the lock
    assert not may_push(0, 0, True)  # no token: never led


@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 50)), st.integers(0, 50)),
                max_size=30))  # fmt: skip
def test_newest_seen_never_goes_back_and_a_leader_holds_the_newest(
    steps: list[tuple[int | None, int]],
) -> None:
    s, now = LeaderState(), 0.0
    for held, newest in steps:
        before = s.newest_seen
        s = renewed(s, held, newest, now)
        assert s.newest_seen >= before
        if is_leader(s, now, INTERVAL_S):
            assert s.held is not None and s.held >= s.newest_seen
        now += 1.0
