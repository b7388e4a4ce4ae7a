"""Where rounds and decisions are kept (probe → sample → **store** → stats → plan ...)."""

from netopt.store.model import BatchOutcome, DecisionRecord, Retention, RoundRecord
from netopt.store.sqlite import SqliteStore, store_stats

__all__ = [
    "BatchOutcome",
    "DecisionRecord",
    "Retention",
    "RoundRecord",
    "SqliteStore",
    "store_stats",
]
