"""The store: migrations, rollups, dedupe, retention, batches, failures and recovery.

Every test taking `backend` runs here against SQLite and, imported by
tests/integration/test_store_postgres.py, against a real PostgreSQL: one suite, two stores.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from netopt.errors import StoreError
from netopt.store import DecisionRecord, Retention, RoundRecord, SqliteStore, store_stats
from netopt.store.schema import MIGRATIONS
from tests.store_backends import Backend, SqliteBackend

T0 = 1_700_000_000  # a fixed wall-clock second (2023-11-14)


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return SqliteBackend(tmp_path)


def rec(t_s: float, src: str = "lagos", dst: str = "fra", p50: float | None = 10.0) -> RoundRecord:
    return RoundRecord(
        started_wall_ns=int(t_s * 1e9), src=src, dst=dst, kind="icmp", sent=5,
        received=4 if p50 is not None else 0, rtt_min_ms=p50, rtt_avg_ms=p50, rtt_p50_ms=p50,
        rtt_p90_ms=p50, rtt_max_ms=p50 and p50 * 2, jitter_ms=p50 and 1.0,
    )  # fmt: skip


def test_skeleton_store_is_migrated_and_its_rounds_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)  # what the walking skeleton wrote, without a schema_version table
    r = rec(T0)
    db.execute(
        "INSERT INTO rounds (started_wall_ns, src, dst, kind, sent, received) VALUES (?,?,?,?,?,?)",
        (r.started_wall_ns, "lagos", "fra", "icmp", 5, 5),
    )
    db.execute(
        "INSERT INTO rounds (started_wall_ns, src, dst, kind, sent, received) VALUES (?,?,?,?,?,?)",
        (r.started_wall_ns, "lagos", "fra", "icmp", 5, 5),
    )  # a duplicate the unique index would refuse: the migration keeps one
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.version == len(MIGRATIONS)
    assert store.count("rounds") == 1
    (row,) = store.rollup("1m")
    assert row["sent"] == 5 and row["rounds"] == 1
    store.close()
    assert store_stats(path)["schema_version"] == len(MIGRATIONS)


def test_newer_schema_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.set_schema_version(99)
    with pytest.raises(StoreError, match="schema version 99"):
        backend.open()


async def test_rollups_aggregate_minutes_and_hours(backend: Backend) -> None:
    store = backend.open()
    base = 3600 * (T0 // 3600)
    for i in range(120):  # two minutes of one round per second, one path
        store.add(rec(base + i, p50=10.0 if i % 2 else 20.0))
    store.add(rec(base + 5, dst="jnb", p50=None))  # a dead round on another path
    assert await store.flush() == 121
    minutes = [r for r in store.rollup("1m") if r["dst"] == "fra"]
    assert [m["bucket_s"] for m in minutes] == [base, base + 60]
    assert all(m["rounds"] == 60 and m["sent"] == 300 for m in minutes)
    assert minutes[0]["rtt_p50_sum_ms"] / minutes[0]["rtt_p50_n"] == pytest.approx(15.0)
    assert minutes[0]["rtt_max_ms"] == 40.0 and minutes[0]["rtt_min_ms"] == 10.0
    hours = {r["dst"]: r for r in store.rollup("1h")}
    assert hours["fra"]["rounds"] == 120 and hours["fra"]["received"] == 480
    assert hours["jnb"]["received"] == 0 and hours["jnb"]["rtt_p50_n"] == 0
    store.close()


async def test_batches_are_stored_once_and_rounds_never_twice(backend: Backend) -> None:
    store = backend.open(wall_clock=lambda: T0)  # retention is from T0
    writer = asyncio.create_task(store.run(interval_s=0.05))
    rounds = [rec(T0 + i) for i in range(10)]
    first = await store.write_batch("a-1", "agent-a", rounds)
    again = await store.write_batch("a-1", "agent-a", rounds)
    overlap = await store.write_batch("a-2", "agent-a", [*rounds[5:], rec(T0 + 10)])
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert not first.duplicate and len(first.stored) == 10
    assert again.duplicate and again.stored == ()
    assert not overlap.duplicate and overlap.stored == (rec(T0 + 10),)
    assert store.count("rounds") == 11 and store.count("batches") == 2
    assert sum(r["rounds"] for r in store.rollup("1m")) == 11  # rollups count each round once
    store.close()


async def test_unwritable_store_keeps_rounds_and_resumes(backend: Backend) -> None:
    errors: list[Exception] = []
    store = backend.open(max_pending_rounds=5, on_error=errors.append)
    backend.make_read_only(store)  # the writer's file (database) turns read-only
    for i in range(8):
        store.add(rec(T0 + i))
    with pytest.raises(store.db_errors):
        await store.flush()
    assert errors and "readonly" in str(errors[0]).replace("-", "")
    assert store.pending == 5 and store.dropped_rounds == 3  # bounded: oldest dropped
    assert store.last_error is not None
    with pytest.raises(StoreError):
        task = asyncio.create_task(store.write_batch("b", "agent", [rec(T0 + 100)], 5))
        await asyncio.sleep(0)
        with pytest.raises(store.db_errors):
            await store.flush()
        await task
    backend.make_writable(store)
    assert await store.flush() == 5
    assert store.last_error is None
    assert [r.started_wall_ns for r in store.rounds()] == [int((T0 + i) * 1e9) for i in range(3, 8)]
    store.close()


async def test_retention_prunes_each_resolution(backend: Backend) -> None:
    now = float(T0)
    ret = Retention(raw_days=1, minute_days=2, hour_days=3, batch_ids_days=1)
    store = backend.open(retention=ret, wall_clock=lambda: now)
    for age_days in (0.5, 1.5, 2.5, 3.5):
        store.add(rec(now - age_days * 86400))
    await store.flush()
    deleted = store.prune()
    assert deleted["rounds"] == 3
    assert store.count("rounds") == 1
    assert store.count("rounds_1m") == 2 and store.count("rounds_1h") == 3
    store.close()


async def test_decisions_are_logged_with_inputs(backend: Backend) -> None:
    store = backend.open()
    d = DecisionRecord(int(T0 * 1e9), "lagos", "fra", "switch", None, "jnb", 3.1, 4.2, 3, 0.0,
                       "challenger better by 1.1 for 3 windows", '{"paths": []}')  # fmt: skip
    store.add_decision(d)
    store.add_decision(replace(d, action="hold_down"))
    await store.flush()
    assert [x.action for x in store.decisions()] == ["switch", "hold_down"]
    assert store.decisions()[0] == d
    assert store.count("decisions") == 2
    assert store.decisions(since_wall_ns=int(T0 * 1e9) + 1) == []
    store.close()


async def test_store_stats_counts_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.add(rec(T0))
    store.add_decision(DecisionRecord(int(T0 * 1e9), "lagos", "fra", "switch", None, "jnb",
                                      3.1, 4.2, 3, 0.0, "r", "{}"))  # fmt: skip
    await store.flush()
    stats = store_stats(tmp_path / "s.db")
    assert stats["rows"] == {"rounds": 1, "rounds_1m": 0, "rounds_1h": 0, "decisions": 1,
                             "batches": 0, "assessments": 0}  # fmt: skip
    store.close()


async def test_rollups_are_rebuilt_from_below_and_read_exactly_before_that(
    backend: Backend,
) -> None:
    store = backend.open()
    base = 3600 * (T0 // 3600)
    for i in range(0, 7200, 30):  # two hours, a round every 30 s, two paths
        store.add(rec(base + i))
        store.add(rec(base + i, dst="jnb", p50=None))
    await store.flush()
    on_the_fly, minutes = store.rollup("1h"), store.rollup("1m")
    assert store.count("rounds_1h") == store.count("rounds_1m") == 0  # not rebuilt yet
    assert len(on_the_fly) == 4 and len(minutes) == 240  # two paths, 2 hours, 120 minutes
    assert store.refresh_rollups() == 2 + 120 and store.refresh_rollups() == 0
    assert store.rollup("1h") == on_the_fly and store.count("rounds_1h") == 4
    assert store.rollup("1m") == minutes and store.count("rounds_1m") == 240
    fra = {r["bucket_s"]: r for r in on_the_fly if r["dst"] == "fra"}
    assert [fra[base]["rounds"], fra[base + 3600]["rounds"]] == [120, 120]
    assert fra[base]["received"] == 480 and fra[base]["rtt_max_ms"] == 20.0
    store.add(rec(base + 10))  # a late round into a rebuilt hour
    await store.flush()
    late = {(r["bucket_s"], r["dst"]): r for r in store.rollup("1h")}
    assert late[(base, "fra")]["rounds"] == 121  # counted before the next rebuild
    assert store.rollup("1h", since_s=base + 3600) == [
        r for r in on_the_fly if r["bucket_s"] == base + 3600
    ]
    store.prune(now_wall_s=base + 7200)  # rebuilds what is queued first
    assert store.count("rounds_1h") == 4 and store.rollup("1h") == list(late.values())
    store.close()


def test_store_stats_says_it_reads_sqlite_only() -> None:
    with pytest.raises(StoreError, match="reads a SQLite store; for PostgreSQL"):
        store_stats("postgresql://netopt@127.0.0.1:5432/netopt")


async def test_assessments_are_kept_and_listed_newest_first(backend: Backend) -> None:
    store = backend.open(wall_clock=lambda: T0)
    try:
        first = await store.add_assessment(
            "lagos", "2026-12-03T10:00:00Z", "needed", '{"fra": "needed"}', False, '{"a": 1}'
        )
        second = await store.add_assessment(
            "nairobi", "2026-12-03T11:00:00Z", "not_needed", '{"fra": "not_needed"}', True, "{}"
        )
        listed = store.assessments()
        assert [row["id"] for row in listed] == [second, first] and first != second
        assert listed[0]["site"] == "nairobi" and bool(listed[0]["partial"]) is True
        assert listed[1]["verdicts"] == '{"fra": "needed"}'
        assert listed[1]["received_wall_ns"] == int(T0 * 1e9)
        assert store.assessment(first) == '{"a": 1}'
        assert store.assessment(second + 1000) is None
        assert store.count("assessments") == 2
    finally:
        store.close()


async def test_async_reads_answer_what_the_sync_reads_answer(backend: Backend) -> None:
    """The reads the event loop awaits (`*_async`) are the same reads, through the other door
    (SQLite: a thread; PostgreSQL: the AsyncConnectionPool)."""
    store = backend.open(wall_clock=lambda: T0)
    try:
        for i in range(90):
            store.add(rec(T0 + i))
            store.add(rec(T0 + i, dst="jnb", p50=None))
        store.add_decision(DecisionRecord(int(T0 * 1e9), "lagos", "fra", "switch", None, "jnb",
                                          3.1, 4.2, 3, 0.0, "r", "{}"))  # fmt: skip
        await store.flush()
        new_id = await store.add_assessment("lagos", "2026-12-03T10:00:00Z", "needed", "{}",
                                            False, '{"a": 1}')  # fmt: skip
        since = int((T0 + 30) * 1e9)
        assert await store.rounds_async(since_wall_ns=since) == store.rounds(since_wall_ns=since)
        assert len(await store.rounds_async(dst="jnb")) == 90
        assert await store.rollup_async("1m") == store.rollup("1m") != []
        assert await store.rollup_async("1h") == store.rollup("1h") != []
        assert await store.decisions_async() == store.decisions() != []
        assert await store.assessments_async() == store.assessments() != []
        assert await store.assessment_async(new_id) == '{"a": 1}'
        assert await store.assessment_async(new_id + 1) is None
        assert await store.count_async("rounds") == 180
        many = await asyncio.gather(*(store.count_async("decisions") for _ in range(10)))
        assert many == [1] * 10  # concurrent reads on one store
        with pytest.raises(ValueError, match="unknown table"):
            await store.count_async("sqlite_master")
    finally:
        await store.aclose()


async def test_an_async_read_that_cannot_run_says_so_in_time(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", read_timeout_s=0.05)
    store._read_lock.acquire()  # another read holding the connection, for ever
    try:
        with pytest.raises(StoreError, match=r"not answered within 0\.05 s"):
            await store.rounds_async()
    finally:
        store._read_lock.release()
        await store.aclose()
