"""Versioned schema and time partitions of the PostgreSQL store (… → **store** → stats).

The same tables as the SQLite store (schema.py), in PostgreSQL types: raw `rounds` is
range-partitioned by `started_wall_ns`, one partition per UTC day (`rounds_pYYYYMMDD`),
created ahead of time and by the writer for any day it meets; retention drops whole days.
Text columns collate "C", so every ORDER BY matches SQLite's byte order whatever the
cluster's locale. `migrate()` holds an advisory lock, so controllers opening one database at
once apply each migration once.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable

import psycopg

from netopt.errors import StoreError
from netopt.store.schema import ROUND_COLUMNS

DAY_NS = 86_400 * 1_000_000_000
MIGRATE_LOCK = 0x6E65_746F_7074_0001  # "netopt" + 1: pg_advisory_xact_lock key
PARTITION_LOCK = 0x6E65_746F_7074_0002
_TEXT = 'TEXT COLLATE "C" NOT NULL'

_ROUND_TYPES = {"started_wall_ns": "BIGINT NOT NULL", "src": _TEXT, "dst": _TEXT, "kind": _TEXT,
                "sent": "INTEGER NOT NULL", "received": "INTEGER NOT NULL"}  # fmt: skip


def _rollup(name: str) -> str:
    return f"""CREATE TABLE {name} (
        bucket_s BIGINT NOT NULL, src {_TEXT}, dst {_TEXT}, kind {_TEXT},
        rounds BIGINT NOT NULL, sent BIGINT NOT NULL, received BIGINT NOT NULL,
        rtt_min_ms DOUBLE PRECISION, rtt_max_ms DOUBLE PRECISION,
        rtt_p50_sum_ms DOUBLE PRECISION NOT NULL DEFAULT 0, rtt_p50_n BIGINT NOT NULL DEFAULT 0,
        jitter_sum_ms DOUBLE PRECISION NOT NULL DEFAULT 0, jitter_n BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (src, dst, kind, bucket_s))"""


_V1 = (
    "CREATE TABLE rounds ("
    + ", ".join(f"{c} {_ROUND_TYPES.get(c, 'DOUBLE PRECISION')}" for c in ROUND_COLUMNS)
    + ") PARTITION BY RANGE (started_wall_ns)",
    "CREATE UNIQUE INDEX rounds_unique ON rounds (src, dst, kind, started_wall_ns)",
    "CREATE INDEX rounds_time ON rounds (started_wall_ns)",
    _rollup("rounds_1m"),
    "CREATE INDEX rounds_1m_time ON rounds_1m (bucket_s)",
    _rollup("rounds_1h"),
    "CREATE INDEX rounds_1h_time ON rounds_1h (bucket_s)",
    "CREATE TABLE rollup_dirty_1m (bucket_s BIGINT PRIMARY KEY)",
    "CREATE TABLE rollup_dirty (bucket_s BIGINT PRIMARY KEY)",
    f"""CREATE TABLE decisions (
        id BIGSERIAL PRIMARY KEY, at_wall_ns BIGINT NOT NULL, region {_TEXT}, dest {_TEXT},
        action {_TEXT}, old_entry TEXT, new_entry TEXT, old_mos DOUBLE PRECISION,
        new_mos DOUBLE PRECISION, consecutive INTEGER NOT NULL, penalty DOUBLE PRECISION NOT NULL,
        reason TEXT NOT NULL, inputs TEXT NOT NULL)""",
    "CREATE INDEX decisions_time ON decisions (at_wall_ns)",
    f"""CREATE TABLE batches (
        batch_id {_TEXT} PRIMARY KEY, agent {_TEXT}, received_wall_ns BIGINT NOT NULL,
        rounds INTEGER NOT NULL, stored INTEGER NOT NULL)""",
    "CREATE INDEX batches_time ON batches (received_wall_ns)",
)

# the leader lease's fencing tokens (lease.py): one generation per lease name
_V2 = (
    """CREATE TABLE leadership (
        name TEXT PRIMARY KEY, generation BIGINT NOT NULL, holder TEXT NOT NULL,
        acquired_wall_ns BIGINT NOT NULL)""",
)

# reports uploaded by `netopt assess --upload` (the body is the report.json as sent)
_V3 = (
    """CREATE TABLE assessments (
        id BIGSERIAL PRIMARY KEY, received_wall_ns BIGINT NOT NULL, site TEXT NOT NULL,
        created TEXT NOT NULL, verdict TEXT NOT NULL, verdicts TEXT NOT NULL,
        partial INTEGER NOT NULL, body TEXT NOT NULL)""",
)

# the newest route table the leader decided (netopt.daemon.leader), for its followers' route
# API: one row per lease name, written only with a generation at least the stored one
_V4 = (
    """CREATE TABLE route_tables (
        name TEXT PRIMARY KEY, generation BIGINT NOT NULL, at_wall_ns BIGINT NOT NULL,
        body TEXT NOT NULL)""",
)

# each migration: the statements of one transaction
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)

# the staging table a write COPYs into (one per connection, emptied at every commit)
STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS netopt_incoming (ord INTEGER NOT NULL, "
    + ", ".join(f"{c} {_ROUND_TYPES.get(c, 'DOUBLE PRECISION')}" for c in ROUND_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


def bound_lock_waits(db: psycopg.Connection[tuple[object, ...]], wait_s: float) -> None:
    """This session waits at most `wait_s` for any lock (PostgreSQL's `lock_timeout`)."""
    db.execute(f"SET lock_timeout = {max(1, round(wait_s * 1000))}")


def migrate(db: psycopg.Connection[tuple[object, ...]], where: str, lock_wait_s: float) -> int:
    """Apply the missing migrations in order; returns the version the store is now at.
    The caller bounds every lock wait (`lock_timeout` = `lock_wait_s`, see `bound_lock_waits`):
    another controller stuck mid-migration is a StoreError saying so, not a start-up that
    never ends."""
    with db.transaction():
        try:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        except psycopg.errors.LockNotAvailable:
            raise StoreError(
                f"store {where}: the migration lock is held longer than {lock_wait_s:g} s "
                "(another controller migrating this database, or stuck doing so)"
            ) from None
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0])  # type: ignore[call-overload]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store {where} has schema version {version}, newer than this netopt knows "
                f"({len(MIGRATIONS)}); upgrade netopt or use another store"
            )
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            with db.transaction():  # a savepoint: a failed step leaves the previous version
                for sql in statements:
                    db.execute(sql)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return len(MIGRATIONS)


def partition_name(day: int) -> str:
    """`rounds_pYYYYMMDD` for day number `day` (days since 1970-01-01, UTC)."""
    return "rounds_p" + time.strftime("%Y%m%d", time.gmtime(day * 86_400))


def partition_day(name: str) -> int | None:
    """The day number a partition's name stands for (None: not one of ours)."""
    try:
        t = time.strptime(name.removeprefix("rounds_p"), "%Y%m%d")
    except ValueError:
        return None
    return calendar.timegm(t) // 86_400


def create_partitions(db: psycopg.Connection[tuple[object, ...]], days: Iterable[int]) -> None:
    """Create the day partitions missing among `days`, in a transaction of their own (the
    parent is locked briefly); an advisory lock serialises controllers doing it at once."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for day in sorted(set(days)):
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF rounds "
                f"FOR VALUES FROM ({day * DAY_NS}) TO ({(day + 1) * DAY_NS})"
            )


def partitions(db: psycopg.Connection[tuple[object, ...]]) -> dict[int, str]:
    """The day partitions of `rounds`: day number → table name."""
    rows = db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'rounds'::regclass"
    ).fetchall()
    found = {partition_day(str(name)): str(name) for (name,) in rows}
    return {day: name for day, name in found.items() if day is not None}
