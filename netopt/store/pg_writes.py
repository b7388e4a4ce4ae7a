"""One write of the PostgreSQL store, its SQL and its pure steps (probe → sample → **store**).

postgres.py runs it in one transaction on the writer thread's connection: claim the batch
ids (`CLAIM`: of two controllers handed one batch exactly one gets it), COPY the rounds into
the connection's staging table (`COPY_IN`), move the new ones into `rounds` (`MOVE_IN`, which
returns them), queue their rollup buckets (`dirty`), give each fresh batch its new rounds
(`split`), record how many (`STORED`) and COPY the decisions. bench/pg_async_writes.py runs
the very same steps on a psycopg AsyncConnection, to measure the one against the other.
"""

from __future__ import annotations

from netopt.store.model import BatchOutcome, RoundRecord
from netopt.store.pg_reads import COLS
from netopt.store.pg_schema import DAY_NS
from netopt.store.sqlite import _DECISION_COLUMNS
from netopt.store.writer import Batch

Key = tuple[str, str, str, int]  # what identifies a round: src, dst, kind, started_wall_ns
CLAIM = (
    "INSERT INTO batches (batch_id, agent, received_wall_ns, rounds, stored) "
    "SELECT * FROM unnest(%s::TEXT[], %s::TEXT[], %s::BIGINT[], %s::INTEGER[], "
    "%s::INTEGER[]) ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id"
)
COPY_IN = f"COPY netopt_incoming (ord, {COLS}) FROM STDIN"
MOVE_IN = (
    f"INSERT INTO rounds ({COLS}) SELECT {COLS} FROM netopt_incoming ORDER BY ord "
    "ON CONFLICT DO NOTHING RETURNING src, dst, kind, started_wall_ns"
)
STORED = (
    "UPDATE batches AS b SET stored = v.n FROM unnest(%s::TEXT[], %s::INTEGER[]) AS v(id, n) "
    "WHERE b.batch_id = v.id"
)
COPY_DECISIONS = f"COPY decisions ({', '.join(_DECISION_COLUMNS)}) FROM STDIN"


def first_of_each(batches: list[Batch]) -> dict[str, Batch]:
    """Each batch id's first batch (a batch twice in one write: the second is a duplicate)."""
    first: dict[str, Batch] = {}
    for b in batches:
        first.setdefault(b.batch_id, b)
    return first


def days_of(rounds: list[RoundRecord], first: dict[str, Batch]) -> set[int]:
    records = [*rounds, *(r for b in first.values() for r in b.records)]
    return {r.started_wall_ns // DAY_NS for r in records}


def dirty(new: set[Key]) -> list[tuple[str, tuple[list[int]]]]:
    """The statements queueing the rollup buckets the new rounds fall in."""
    minutes = sorted({k[3] // 1_000_000_000 // 60 * 60 for k in new})
    hours = sorted({m // 3600 * 3600 for m in minutes})
    sql = "INSERT INTO {} (bucket_s) SELECT unnest(%s::BIGINT[]) ON CONFLICT DO NOTHING"
    return [(sql.format("rollup_dirty_1m"), (minutes,)), (sql.format("rollup_dirty"), (hours,))]


def split(
    rounds: list[RoundRecord], fresh: list[Batch], new: set[Key]
) -> dict[str, tuple[RoundRecord, ...]]:
    """Each fresh batch's new rounds (a round in two places of one write counts where it came
    first, as in SQLite: the local rounds first, then the batches in order)."""
    claimed: set[Key] = set()

    def take(r: RoundRecord) -> bool:
        key = (r.src, r.dst, r.kind, r.started_wall_ns)
        if key in new and key not in claimed:
            claimed.add(key)
            return True
        return False

    for r in rounds:
        take(r)
    return {b.batch_id: tuple(r for r in b.records if take(r)) for b in fresh}


def stored_args(
    fresh: list[Batch], stored: dict[str, tuple[RoundRecord, ...]]
) -> tuple[list[str], list[int]]:
    return [b.batch_id for b in fresh], [len(stored[b.batch_id]) for b in fresh]


def outcomes(
    batches: list[Batch], first: dict[str, Batch], new: set[str],
    stored: dict[str, tuple[RoundRecord, ...]],
) -> list[BatchOutcome]:  # fmt: skip
    return [
        BatchOutcome(b.batch_id, len(b.records), stored[b.batch_id], False)
        if first[b.batch_id] is b and b.batch_id in new
        else BatchOutcome(b.batch_id, len(b.records), (), True)
        for b in batches
    ]
