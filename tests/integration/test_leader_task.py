"""The daemon's lease task on a real PostgreSQL (netopt/daemon/leader.py), with a fake
monotonic clock: one leader, a follower that takes the leader's shared table, a leader whose
session dies is fenced at once, a renewal older than one interval deposes, and a deposed
leader's table never overwrites a newer generation's."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from prometheus_client import CollectorRegistry, Gauge

from netopt.config import HaConfig, StoreConfig
from netopt.core.decide import RouteTable
from netopt.daemon.leader import PgLeader
from netopt.store import PostgresStore
from tests.routes_fixture import table, world_config

pytestmark = pytest.mark.neighbour
LEASE_S = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair(pg_dsn: str) -> Iterator[tuple[PgLeader, PgLeader, list[RouteTable], Clock]]:
    PostgresStore(pg_dsn).close()  # migrations: leadership, route_tables
    config = world_config().model_copy(
        update={"store": StoreConfig(url=pg_dsn), "ha": HaConfig(lease_interval_s=LEASE_S)}
    )
    clock, taken = Clock(), []

    def leader(name: str, on_table: object) -> PgLeader:
        gauge = Gauge("netopt_leader", "", registry=CollectorRegistry())
        lead = PgLeader(config, gauge, on_table, mono_clock=clock)  # type: ignore[arg-type]
        lead.holder = name
        return lead

    a, b = leader("a", lambda _t: None), leader("b", taken.append)
    try:
        yield a, b, taken, clock
    finally:
        a.close()
        b.close()


def gauge(lead: PgLeader) -> float:
    return lead.gauge._value.get()  # type: ignore[attr-defined,no-any-return]


async def test_one_leader_and_a_follower_serving_its_table(
    pair: tuple[PgLeader, PgLeader, list[RouteTable], Clock],
) -> None:
    a, b, taken, _clock = pair
    await a.tick()
    await b.tick()
    assert a.leading() and gauge(a) == 1 and not b.leading() and gauge(b) == 0
    assert await a.fence() == 1 and await b.fence() is None
    t = table({"lagos": ["jnb", "fra"]})
    a.publish(t)
    await a.tick()  # shares the pending table
    await b.tick()
    assert len(taken) == 1 and set(taken[0].entries) == set(t.entries)
    got, want = taken[0].get("lagos"), t.get("lagos")
    assert got is not None and want is not None and got.route == want.route
    await b.tick()
    assert len(taken) == 1  # the same row is not taken twice


async def test_a_dead_session_is_fenced_and_the_follower_takes_over(
    pair: tuple[PgLeader, PgLeader, list[RouteTable], Clock], pg_cluster: object
) -> None:
    a, b, _taken, _clock = pair
    await a.tick()
    await b.tick()
    assert a._lease is not None
    pid = a._lease._db.info.backend_pid
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # as a kill -9 would
    assert await a.fence() is None and not a.leading()  # before its next renewal
    for _ in range(50):
        await b.tick()
        if b.leading():
            break
    assert b.leading() and await b.fence() == 2
    await a.tick()  # reconnects: the lease is b's now
    assert not a.leading() and a.state.newest_seen == 2 and gauge(a) == 0
    # a late table from the deposed generation does not overwrite the new leader's
    assert b._lease is not None and a._lease is not None
    assert b._lease.share_table(2, 10, '{"made_at_wall_s": 0, "entries": []}')
    assert not a._lease.share_table(1, 20, '{"made_at_wall_s": 0, "entries": []}')
    assert a._lease.shared_table() == (2, 10, '{"made_at_wall_s": 0, "entries": []}')


async def test_a_renewal_older_than_one_interval_deposes(
    pair: tuple[PgLeader, PgLeader, list[RouteTable], Clock],
) -> None:
    a, _b, _taken, clock = pair
    await a.tick()
    assert a.leading()
    clock.now += LEASE_S + 0.01  # the renewal hangs, or the task is starved
    assert not a.leading() and await a.fence() is None
    await a.tick()
    assert a.leading() and await a.fence() == 1  # renewed: the same holding, the same token
