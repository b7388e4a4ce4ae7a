"""The store suite of tests/unit/test_store.py run against a real PostgreSQL 15, and what only
the PostgreSQL store does: day partitions, retention by dropping them, COPY ingest, and two
controllers writing one database (a batch handed to both is stored once)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from netopt.config import load_config
from netopt.daemon.wiring import Daemon
from netopt.errors import StoreError
from netopt.store import PostgresStore, Retention
from netopt.store.pg_schema import (
    DAY_NS,
    MIGRATE_LOCK,
    PARTITION_LOCK,
    partition_day,
    partition_name,
    partitions,
)
from tests.daemon_app import daemon_with_app, served
from tests.integration.test_ingest import (  # noqa: F401 -- the daemon's ingest, on PostgreSQL
    Client,
    config_dict,
    test_ingest_stores_once_and_feeds_the_window,
)
from tests.store_backends import Backend, PostgresBackend
from tests.unit.test_store import (  # noqa: F401 -- the shared suite, collected here again
    T0,
    rec,
    test_assessments_are_kept_and_listed_newest_first,
    test_async_reads_answer_what_the_sync_reads_answer,
    test_batches_are_stored_once_and_rounds_never_twice,
    test_decisions_are_logged_with_inputs,
    test_newer_schema_is_refused,
    test_retention_prunes_each_resolution,
    test_rollups_aggregate_minutes_and_hours,
    test_rollups_are_rebuilt_from_below_and_read_exactly_before_that,
    test_unwritable_store_keeps_rounds_and_resumes,
)

pytestmark = pytest.mark.neighbour


@pytest.fixture
def backend(pg_dsn: str) -> Backend:
    return PostgresBackend(pg_dsn)


@pytest.fixture
async def daemon_client(tmp_path: Path, pg_dsn: str) -> AsyncIterator[tuple[Daemon, Client, Path]]:
    """test_ingest's daemon, with `store.url: postgresql://…` (open_store picks the backend)."""
    config = {**config_dict(tmp_path), "store": {"url": pg_dsn}}
    async with daemon_with_app(config, tmp_path) as (daemon, app, path):
        assert isinstance(daemon.store, PostgresStore)
        async with served(app) as url, aiohttp.ClientSession() as session:
            yield daemon, Client(url, session), path


async def test_a_restarted_controller_primes_its_window_from_postgres(
    daemon_client: Any,
) -> None:
    daemon, _client, path = daemon_client
    now = time.time()
    for i in range(10):
        daemon.store.add(rec(now - 20 + i))
    await daemon.store.flush()
    again = Daemon(load_config(path), config_path=path)  # a second controller, same database
    try:
        await again.prime()
        (stats,) = again.window.stats(int(now * 1e9))
        assert (stats.src, stats.dst, stats.samples) == ("lagos", "fra", 50)  # 10 rounds × 5 sent
    finally:
        await again.store.aclose()


def _partitions(dsn: str) -> dict[int, str]:
    with psycopg.connect(dsn) as db:
        return partitions(db)


def test_partition_names_round_trip() -> None:
    day = T0 * 1_000_000_000 // DAY_NS
    assert partition_name(day) == "rounds_p20231114"
    assert partition_day(partition_name(day)) == day
    assert partition_day("rounds_default") is None


async def test_days_are_partitions_made_ahead_and_dropped_whole(pg_dsn: str) -> None:
    now = float(T0)
    ret = Retention(raw_days=1, minute_days=2, hour_days=3, batch_ids_days=1)
    store = PostgresStore(pg_dsn, retention=ret, wall_clock=lambda: now)
    today = T0 * 1_000_000_000 // DAY_NS
    assert set(_partitions(pg_dsn)) == {today, today + 1, today + 2}  # ready ahead
    for age_days in (0.1, 0.5, 1.5, 2.5, 3.5):
        store.add(rec(now - age_days * 86400))
    await store.flush()  # old days get their partitions on the way in
    days = _partitions(pg_dsn)
    assert set(days) == {today - 3, today - 2, today - 1, today, today + 1, today + 2}
    deleted = store.prune()
    assert deleted["rounds"] == 3 and store.count("rounds") == 2
    # wholly older than the cutoff (now − 1 day): dropped; the day the cutoff is in: kept
    assert set(_partitions(pg_dsn)) == {today - 1, today, today + 1, today + 2}
    store.close()


async def test_retention_counts_rows_itself_when_minutes_go_first(pg_dsn: str) -> None:
    now = float(T0)
    ret = Retention(raw_days=2, minute_days=1, hour_days=3, batch_ids_days=1)
    store = PostgresStore(pg_dsn, retention=ret, wall_clock=lambda: now)
    for i in range(7):
        store.add(rec(now - 4 * 86400 + i))
    await store.flush()
    assert store.prune()["rounds"] == 7 and store.count("rounds") == 0
    store.close()


async def test_two_controllers_store_a_batch_once(pg_dsn: str) -> None:
    """An agent failing over replays a batch to the second controller while the first may
    still be committing it: of the two writes exactly one stores it."""
    a = PostgresStore(pg_dsn, wall_clock=lambda: T0)
    b = PostgresStore(pg_dsn, wall_clock=lambda: T0)
    rounds = [rec(T0 + i, src=f"r{i % 3}") for i in range(300)]
    outcomes = []
    for n in range(20):
        batch = [r.__class__(**{**_fields(r), "started_wall_ns": r.started_wall_ns + n})
                 for r in rounds]  # fmt: skip
        ta = asyncio.create_task(a.write_batch(f"x-{n}", "agent-x", batch))
        tb = asyncio.create_task(b.write_batch(f"x-{n}", "agent-x", batch))
        await asyncio.gather(a.flush(), b.flush())
        outcomes.append(await asyncio.gather(ta, tb))
    for oa, ob in outcomes:
        assert sorted([oa.duplicate, ob.duplicate]) == [False, True]
        assert len(oa.stored) + len(ob.stored) == 300
    assert a.count("rounds") == 20 * 300 and b.count("batches") == 20
    assert sum(int(r["rounds"]) for r in a.rollup("1m")) == 20 * 300  # type: ignore[call-overload]
    assert a.refresh_rollups() + b.refresh_rollups() > 0
    assert a.refresh_rollups() == b.refresh_rollups() == 0
    assert sum(int(r["rounds"]) for r in b.rollup("1h")) == 20 * 300  # type: ignore[call-overload]
    a.close()
    b.close()


def _open_while_held(dsn: str, lock: int) -> object:
    """PostgresStore(dsn) while another session holds advisory lock `lock`: the store, or the
    StoreError it raised (a start-up still waiting after 60 s fails the test)."""
    outcome: list[object] = []

    def open_store() -> None:
        try:
            outcome.append(PostgresStore(dsn, connect_timeout_s=1.0))
        except StoreError as exc:
            outcome.append(exc)

    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock,))
        opener = threading.Thread(target=open_store, daemon=True)
        opener.start()
        opener.join(timeout=60)
        assert not opener.is_alive(), f"start-up still waiting for advisory lock {lock:#x}"
    [result] = outcome
    return result


def test_start_up_waits_for_a_lock_no_longer_than_its_deadline(pg_dsn: str) -> None:
    """Another controller stuck while migrating the store (its migration lock held), or while
    making day partitions, makes start-up fail after `connect_timeout_s` with an error saying
    so, not wait forever; once the locks are free the store opens."""
    error = _open_while_held(pg_dsn, MIGRATE_LOCK)
    assert isinstance(error, StoreError), error
    assert "migration lock" in str(error) and "another controller" in str(error), error
    PostgresStore(pg_dsn, connect_timeout_s=1.0).close()  # migrated; today's partitions made
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("DROP TABLE " + partition_name(int(time.time()) // 86_400 + 1))
    error = _open_while_held(pg_dsn, PARTITION_LOCK)  # tomorrow's is missing again
    assert isinstance(error, StoreError) and "lock timeout" in str(error), error
    store = PostgresStore(pg_dsn, connect_timeout_s=1.0)
    assert store.version > 0 and int(time.time()) // 86_400 + 1 in set(_partitions(pg_dsn))
    store.close()


async def test_a_database_that_goes_away_keeps_rounds_until_it_is_back(
    pg_dsn: str, pg_cluster: object
) -> None:
    errors: list[Exception] = []
    store = PostgresStore(pg_dsn, on_error=errors.append, wall_clock=lambda: T0)
    store.add(rec(T0))
    await store.flush()
    dbname = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (dbname,))  # fmt: skip
        for i in range(1, 4):
            store.add(rec(T0 + i))
        with pytest.raises(psycopg.Error):
            await store.flush()
        assert errors and store.last_error is not None and store.pending == 3
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    deadline = time.monotonic() + 20
    while True:
        try:
            assert await store.flush() == 3
            break
        except psycopg.Error:
            assert time.monotonic() < deadline, "store did not come back"
            await asyncio.sleep(0.2)
    assert store.last_error is None and store.count("rounds") == 4
    store.close()


def _fields(r: object) -> dict[str, object]:
    return {k: getattr(r, k) for k in r.__slots__}  # type: ignore[attr-defined]


def _norm(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """Rollup rows comparable across backends: floats to 9 digits (sums in another order),
    sorted by bucket and path (SQLite leaves the order of kinds within a path open)."""
    out = [tuple(round(v, 9) if isinstance(v, float) else v for v in r.values()) for r in rows]
    return sorted(out, key=lambda t: tuple(str(x) for x in t[:4]))


async def test_both_backends_return_the_same_values(tmp_path: Path, pg_dsn: str) -> None:
    import random

    from netopt.store import SqliteStore

    rng = random.Random(15)
    base = 3600 * (T0 // 3600)
    local, batches = [], []
    for i in range(600):
        p50 = None if rng.random() < 0.1 else rng.uniform(1, 300)
        r = rec(base + rng.randrange(0, 3 * 3600), src=rng.choice(["lagos", "abuja", "kano"]),
                dst=rng.choice(["fra", "jnb"]), p50=p50)  # fmt: skip
        r = r.__class__(**{**_fields(r), "kind": rng.choice(["icmp", "voice"])})
        (local if i % 3 else batches).append(r)
    stores = [SqliteStore(tmp_path / "s.db", wall_clock=lambda: T0 + 86400),
              PostgresStore(pg_dsn, wall_clock=lambda: T0 + 86400)]  # fmt: skip
    seen = []
    for store in stores:
        writer = asyncio.create_task(store.run(interval_s=0.05))
        for r in local:
            store.add(r)
        outcomes = [await store.write_batch(f"b{k}", "agent", batches[k : k + 50])
                    for k in range(0, len(batches), 25)]  # overlapping batches  # fmt: skip
        outcomes.append(await store.write_batch("b0", "agent", batches[:50]))  # a re-send
        await store.flush()
        before = (_norm(store.rollup("1m")), _norm(store.rollup("1h", since_s=base + 3600)))
        store.refresh_rollups()
        after = (_norm(store.rollup("1m")), _norm(store.rollup("1h", since_s=base + 3600)))
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert before == after  # exact before the rebuild, on both
        key = lambda r: (r.started_wall_ns, r.src, r.dst, r.kind)  # noqa: E731
        seen.append((sorted(store.rounds(), key=key), before,
                     [(o.duplicate, len(o.stored)) for o in outcomes],
                     {t: store.count(t) for t in ("rounds", "rounds_1m", "rounds_1h", "batches")},
                     store.prune(now_wall_s=base + 2 * 86400)))  # fmt: skip
        store.close()
    assert seen[0] == seen[1]
    assert seen[0][2][-1] == (True, 0) and seen[0][3]["rounds"] > 0
    assert len(seen[0][1][0]) > 100 and len(seen[0][1][1]) > 10  # minutes, hours read
