"""Versioned schema migrations for the SQLite store (… → **store** → stats).

`schema_version` holds one row: the number of migrations applied. Each migration is a
function taking the connection; `migrate()` runs the missing ones in order, each in its own
transaction, so a store written by an older netopt is brought forward on open and a newer
store is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from netopt.errors import StoreError

ROUND_COLUMNS = (
    "started_wall_ns", "src", "dst", "kind", "sent", "received", "rtt_min_ms", "rtt_avg_ms",
    "rtt_p50_ms", "rtt_p90_ms", "rtt_max_ms", "jitter_ms",
)  # fmt: skip


def _v1_rounds(db: sqlite3.Connection) -> None:
    """Raw rounds (the walking skeleton's table; adopted as is when it already exists)."""
    cols = ", ".join(
        f"{c} {'TEXT' if c in ('src', 'dst', 'kind') else 'REAL'}" for c in ROUND_COLUMNS
    )
    db.execute(f"CREATE TABLE IF NOT EXISTS rounds (id INTEGER PRIMARY KEY, {cols})")
    db.execute("CREATE INDEX IF NOT EXISTS rounds_path_time ON rounds (src, dst, started_wall_ns)")


def _rollup_table(name: str) -> str:
    return f"""
    CREATE TABLE {name} (
        bucket_s INTEGER NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, kind TEXT NOT NULL,
        rounds INTEGER NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
        rtt_min_ms REAL, rtt_max_ms REAL, rtt_p50_sum_ms REAL NOT NULL DEFAULT 0,
        rtt_p50_n INTEGER NOT NULL DEFAULT 0, jitter_sum_ms REAL NOT NULL DEFAULT 0,
        jitter_n INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (src, dst, kind, bucket_s)
    ) WITHOUT ROWID"""


def _rollup_trigger(name: str, seconds: int) -> str:
    bucket = f"(CAST(NEW.started_wall_ns / 1000000000 AS INTEGER) / {seconds}) * {seconds}"
    return f"""
    CREATE TRIGGER {name}_on_round AFTER INSERT ON rounds BEGIN
      INSERT INTO {name} (bucket_s, src, dst, kind, rounds, sent, received, rtt_min_ms,
                          rtt_max_ms, rtt_p50_sum_ms, rtt_p50_n, jitter_sum_ms, jitter_n)
      VALUES ({bucket}, NEW.src, NEW.dst, NEW.kind, 1, NEW.sent, NEW.received, NEW.rtt_min_ms,
              NEW.rtt_max_ms, COALESCE(NEW.rtt_p50_ms, 0), NEW.rtt_p50_ms IS NOT NULL,
              COALESCE(NEW.jitter_ms, 0), NEW.jitter_ms IS NOT NULL)
      ON CONFLICT (src, dst, kind, bucket_s) DO UPDATE SET
        rounds = rounds + 1, sent = sent + excluded.sent,
        received = received + excluded.received,
        rtt_min_ms = MIN(COALESCE(rtt_min_ms, excluded.rtt_min_ms), excluded.rtt_min_ms),
        rtt_max_ms = MAX(COALESCE(rtt_max_ms, excluded.rtt_max_ms), excluded.rtt_max_ms),
        rtt_p50_sum_ms = rtt_p50_sum_ms + excluded.rtt_p50_sum_ms,
        rtt_p50_n = rtt_p50_n + excluded.rtt_p50_n,
        jitter_sum_ms = jitter_sum_ms + excluded.jitter_sum_ms,
        jitter_n = jitter_n + excluded.jitter_n;
    END"""


def _v2_rollups_decisions_batches(db: sqlite3.Connection) -> None:
    """1-minute and 1-hour aggregates kept by triggers; the decision log; ingested batch ids.

    A unique (src, dst, kind, start) index makes a round stored twice impossible (an agent
    re-sending rounds after a lost acknowledgement), and the rollup triggers only fire on rows
    actually inserted, so aggregates never count a round twice either.
    """
    db.execute(
        "DELETE FROM rounds WHERE id NOT IN "
        "(SELECT MIN(id) FROM rounds GROUP BY src, dst, kind, started_wall_ns)"
    )
    db.execute("CREATE UNIQUE INDEX rounds_unique ON rounds (src, dst, kind, started_wall_ns)")
    db.execute("CREATE INDEX rounds_time ON rounds (started_wall_ns)")
    for name, seconds in (("rounds_1m", 60), ("rounds_1h", 3600)):
        db.execute(_rollup_table(name))
        db.execute(f"CREATE INDEX {name}_time ON {name} (bucket_s)")
        db.execute(_rollup_trigger(name, seconds))
        db.execute(
            f"INSERT INTO {name} (bucket_s, src, dst, kind, rounds, sent, received, rtt_min_ms,"
            " rtt_max_ms, rtt_p50_sum_ms, rtt_p50_n, jitter_sum_ms, jitter_n) "
            f"SELECT (CAST(started_wall_ns / 1000000000 AS INTEGER) / {seconds}) * {seconds} AS b,"
            " src, dst, kind, COUNT(*), SUM(sent), SUM(received), MIN(rtt_min_ms),"
            " MAX(rtt_max_ms), TOTAL(rtt_p50_ms), COUNT(rtt_p50_ms), TOTAL(jitter_ms),"
            " COUNT(jitter_ms) FROM rounds GROUP BY b, src, dst, kind"
        )
    db.execute(
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY, at_wall_ns INTEGER NOT NULL, region TEXT NOT NULL,
            dest TEXT NOT NULL, action TEXT NOT NULL, old_entry TEXT, new_entry TEXT,
            old_mos REAL, new_mos REAL, consecutive INTEGER NOT NULL, penalty REAL NOT NULL,
            reason TEXT NOT NULL, inputs TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX decisions_time ON decisions (at_wall_ns)")
    db.execute(
        """CREATE TABLE batches (
            batch_id TEXT PRIMARY KEY, agent TEXT NOT NULL, received_wall_ns INTEGER NOT NULL,
            rounds INTEGER NOT NULL, stored INTEGER NOT NULL)"""
    )
    db.execute("CREATE INDEX batches_time ON batches (received_wall_ns)")


def _v3_hours_from_minutes(db: sqlite3.Connection) -> None:
    """The hourly rollup is rebuilt from the minute rollup instead of kept by a second trigger
    on every round (that trigger was ~40 % of a round's insert cost). A write queues the hours
    it touched in `rollup_dirty`, in its own transaction; the writer rebuilds those hours from
    `rounds_1m` every minute and before pruning, and a read of the hourly rollup aggregates the
    queued hours from `rounds_1m` on the fly — so what it returns is exact at any moment."""
    db.execute("DROP TRIGGER IF EXISTS rounds_1h_on_round")
    db.execute("CREATE TABLE rollup_dirty (bucket_s INTEGER PRIMARY KEY)")


def _v4_minutes_from_rounds(db: sqlite3.Connection) -> None:
    """The minute rollup is rebuilt from the raw rounds like the hourly one from minutes, so
    inserting a round fires no trigger at all (the last one was half of its insert cost):
    writes queue the minutes they touched in `rollup_dirty_1m` beside the hours."""
    db.execute("DROP TRIGGER IF EXISTS rounds_1m_on_round")
    db.execute("CREATE TABLE rollup_dirty_1m (bucket_s INTEGER PRIMARY KEY)")


def _v5_assessments(db: sqlite3.Connection) -> None:
    """Reports uploaded by `netopt assess --upload` (the body is the report.json as sent)."""
    db.execute(
        """CREATE TABLE assessments (
            id INTEGER PRIMARY KEY, received_wall_ns INTEGER NOT NULL, site TEXT NOT NULL,
            created TEXT NOT NULL, verdict TEXT NOT NULL, verdicts TEXT NOT NULL,
            partial INTEGER NOT NULL, body TEXT NOT NULL)"""
    )


ROLLUP_COLUMNS = (
    "bucket_s, src, dst, kind, rounds, sent, received, rtt_min_ms, rtt_max_ms, rtt_p50_sum_ms, "
    "rtt_p50_n, jitter_sum_ms, jitter_n"
)
# rollup rows, bucket first: append WHERE … GROUP BY bucket, src, dst, kind
MINUTES_FROM_ROUNDS = (
    "SELECT (CAST(started_wall_ns / 1000000000 AS INTEGER) / 60) * 60 AS bucket, src, dst, "
    "kind, COUNT(*), SUM(sent), SUM(received), MIN(rtt_min_ms), MAX(rtt_max_ms), "
    "TOTAL(rtt_p50_ms), COUNT(rtt_p50_ms), TOTAL(jitter_ms), COUNT(jitter_ms) FROM rounds"
)
HOURS_FROM_MINUTES = (
    "SELECT (bucket_s / 3600) * 3600 AS bucket, src, dst, kind, SUM(rounds), SUM(sent), "
    "SUM(received), MIN(rtt_min_ms), MAX(rtt_max_ms), TOTAL(rtt_p50_sum_ms), SUM(rtt_p50_n), "
    "TOTAL(jitter_sum_ms), SUM(jitter_n)"
)  # append FROM (the minutes) WHERE … GROUP BY

MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_rounds,
    _v2_rollups_decisions_batches,
    _v3_hours_from_minutes,
    _v4_minutes_from_rounds,
    _v5_assessments,
)


def schema_version(db: sqlite3.Connection) -> int:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Apply the missing migrations in order; returns the version the store is now at."""
    version = schema_version(db)
    if version > len(MIGRATIONS):
        raise StoreError(
            f"store {path} has schema version {version}, newer than this netopt knows "
            f"({len(MIGRATIONS)}); upgrade netopt or use another store"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with db:  # one transaction per migration: a failed step leaves the previous version
            db.execute("BEGIN")
            step(db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    return len(MIGRATIONS)
