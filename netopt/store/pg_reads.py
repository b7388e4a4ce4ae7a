"""What the PostgreSQL store reads, once for both of its pools (store → **reads** → stats,
status page, assessments).

Each read is a `Query`: its SQL, its arguments and how its rows become the answer. postgres.py
runs one on the sync pool (`run`, for scripts, tests and the writer thread) or on the
AsyncConnectionPool the daemon's event loop reads through (`run_async`), so the two never
disagree. The rollup SQL pieces live here because the rebuild in postgres.py shares them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from netopt.store.model import DecisionRecord, RoundRecord
from netopt.store.schema import ROLLUP_COLUMNS, ROUND_COLUMNS
from netopt.store.sqlite import _DECISION_COLUMNS, TABLES

COLS = ", ".join(ROUND_COLUMNS)
GROUP = " GROUP BY bucket, src, dst, kind"
_MINUTE_OF = "(started_wall_ns / 1000000000) / 60 * 60"
MINUTES_SELECT = (
    f"SELECT {_MINUTE_OF} AS bucket, src, dst, kind, COUNT(*), SUM(sent), SUM(received), "
    "MIN(rtt_min_ms), MAX(rtt_max_ms), COALESCE(SUM(rtt_p50_ms), 0), COUNT(rtt_p50_ms), "
    "COALESCE(SUM(jitter_ms), 0), COUNT(jitter_ms)"
)
HOURS_SELECT = (
    "SELECT bucket_s / 3600 * 3600 AS bucket, src, dst, kind, SUM(rounds)::BIGINT, "
    "SUM(sent)::BIGINT, SUM(received)::BIGINT, MIN(rtt_min_ms), MAX(rtt_max_ms), "
    "COALESCE(SUM(rtt_p50_sum_ms), 0), SUM(rtt_p50_n)::BIGINT, COALESCE(SUM(jitter_sum_ms), 0), "
    "SUM(jitter_n)::BIGINT"
)
# the raw rounds of some minute buckets, found by index range (never by scanning every round)
IN_MINUTES = (
    " FROM rounds r JOIN {buckets} ON r.started_wall_ns >= d.b * 1000000000 "
    "AND r.started_wall_ns < (d.b + 60) * 1000000000"
)
# what a rollup says now: its rebuilt rows, and the queued buckets summed from what is below
_MINUTES = (
    f"SELECT {ROLLUP_COLUMNS} FROM rounds_1m "
    "WHERE bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty_1m) "
    f"UNION ALL {MINUTES_SELECT}"
    + IN_MINUTES.format(buckets="(SELECT bucket_s AS b FROM rollup_dirty_1m) d")
    + GROUP
)
_ROLLUP = {
    "1m": f"SELECT * FROM ({_MINUTES}) m WHERE bucket_s >= %s ORDER BY 1, 2, 3, 4",
    "1h": f"SELECT {ROLLUP_COLUMNS} FROM rounds_1h WHERE bucket_s >= %s "
    "AND bucket_s NOT IN (SELECT bucket_s FROM rollup_dirty) "
    f"UNION ALL SELECT * FROM ({HOURS_SELECT} FROM ({_MINUTES}) m "
    "WHERE bucket_s / 3600 * 3600 IN (SELECT bucket_s FROM rollup_dirty)" + GROUP + ") h "
    "WHERE bucket >= %s ORDER BY 1, 2, 3, 4",
}

_Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Query:
    """One read: SQL, its arguments, and `shape(column names, rows)` → the answer."""

    sql: str
    args: tuple[object, ...]
    shape: Callable[[list[str], _Rows], Any]


def _dicts(names: list[str], rows: _Rows) -> list[dict[str, object]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


def rounds(src: str | None, dst: str | None, since_wall_ns: int) -> Query:
    where, args = ["started_wall_ns >= %s"], [since_wall_ns]
    for column, value in (("src", src), ("dst", dst)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)  # type: ignore[arg-type]
    sql = f"SELECT {COLS} FROM rounds WHERE {' AND '.join(where)} ORDER BY started_wall_ns"
    return Query(sql, tuple(args), lambda _n, rows: [RoundRecord(*row) for row in rows])


def rollup(resolution: str, since_s: int) -> Query:
    """Aggregates per path and bucket ('1m' or '1h'), oldest first."""
    if resolution not in _ROLLUP:
        raise ValueError(f"rollup resolution {resolution!r}: use '1m' or '1h'")
    return Query(_ROLLUP[resolution], (since_s,) * (2 if resolution == "1h" else 1), _dicts)


def decisions(since_wall_ns: int) -> Query:
    sql = (f"SELECT {', '.join(_DECISION_COLUMNS)} FROM decisions WHERE at_wall_ns >= %s "
           "ORDER BY id")  # fmt: skip
    return Query(sql, (since_wall_ns,), lambda _n, rows: [DecisionRecord(*row) for row in rows])


def assessments(limit: int) -> Query:
    """Uploaded reports, newest first: id, site, created, verdict, verdicts (JSON text)."""
    sql = ("SELECT id, received_wall_ns, site, created, verdict, verdicts, partial "
           "FROM assessments ORDER BY id DESC LIMIT %s")  # fmt: skip
    return Query(sql, (limit,), _dicts)


def assessment(assessment_id: int) -> Query:
    """The report.json text of one uploaded report, or None."""
    return Query("SELECT body FROM assessments WHERE id = %s", (assessment_id,),
                 lambda _n, rows: str(rows[0][0]) if rows else None)  # fmt: skip


def count(table: str) -> Query:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return Query(f"SELECT COUNT(*) FROM {table}", (),
                 lambda _n, rows: int(rows[0][0]) if rows else 0)  # fmt: skip


def run(db: psycopg.Connection[Any], q: Query) -> Any:
    cur = db.execute(q.sql, q.args)
    return q.shape(_names(cur.description), cur.fetchall())


async def run_async(db: psycopg.AsyncConnection[Any], q: Query) -> Any:
    cur = await db.execute(q.sql, q.args)
    return q.shape(_names(cur.description), await cur.fetchall())


def _names(description: Sequence[Any] | None) -> list[str]:
    return [d.name for d in description or ()]
