"""The leader lease and its fencing tokens on a real PostgreSQL (netopt/store/lease.py): one
holder at a time, a holder whose session dies loses it, each holding gets a newer token, and a
push stamped with an older token is refused."""

from __future__ import annotations

import time

import psycopg
import pytest

from netopt.store import PostgresStore
from netopt.store.lease import Fence, LeaderLease, current_generation

pytestmark = pytest.mark.neighbour
T0_NS = 1_700_000_000 * 10**9


@pytest.fixture
def pg_dsn(pg_dsn: str) -> str:
    PostgresStore(pg_dsn).close()  # the store's migrations create the leadership table
    return pg_dsn


def test_one_holder_at_a_time_and_a_new_token_each_time(pg_dsn: str) -> None:
    a, b = LeaderLease(pg_dsn, "ctl-a"), LeaderLease(pg_dsn, "ctl-b")
    try:
        first = a.try_acquire(T0_NS)
        assert first is not None and first.generation == 1 and first.holder == "ctl-a"
        assert b.try_acquire(T0_NS) is None  # held: the other cannot take it
        assert a.try_acquire(T0_NS + 1) == first  # renewing keeps the same token
        assert a.still_held() and not b.still_held()
        a.release()
        assert not a.still_held()
        second = b.try_acquire(T0_NS + 2)
        assert second is not None and second.generation == 2 and second.holder == "ctl-b"
        assert a.try_acquire(T0_NS + 3) is None
        with psycopg.connect(pg_dsn) as db:
            assert current_generation(db) == 2
    finally:
        a.close()
        b.close()


def test_a_dead_holder_loses_the_lease_and_its_late_push_is_refused(
    pg_dsn: str, pg_cluster: object
) -> None:
    a, b = LeaderLease(pg_dsn, "ctl-a"), LeaderLease(pg_dsn, "ctl-b")
    proxy = Fence()  # what a proxy keeps: the newest token it has accepted
    try:
        old = a.try_acquire(T0_NS)
        assert old is not None and proxy.admit(old.generation)
        pid = a._db.info.backend_pid
        with psycopg.connect(pg_cluster.dsn, autocommit=True) as admin:  # type: ignore[attr-defined]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # as a kill -9 would
        new = None
        for _ in range(50):  # the server releases the lock once the backend is gone
            if (new := b.try_acquire(T0_NS + 1)) is not None:
                break
            time.sleep(0.05)
        assert new is not None and new.generation == old.generation + 1
        assert not a.still_held() and a.held is None  # the deposed leader can tell
        assert proxy.admit(new.generation)
        assert not proxy.admit(old.generation)  # the deposed leader's late push: refused
        assert proxy.admit(new.generation)  # the leader's next push: fine
    finally:
        a.close()
        b.close()


def test_fence_admits_newer_and_equal_tokens_only() -> None:
    fence = Fence()
    assert [fence.admit(g) for g in (1, 1, 3, 2, 3, 4)] == [True, True, True, False, True, True]
    assert fence.newest == 4
