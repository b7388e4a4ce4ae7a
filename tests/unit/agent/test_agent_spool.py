"""The agent's spool: sequence numbers (and so batch ids) are never reused."""

from __future__ import annotations

from pathlib import Path

from netopt.agent.run import Spool
from netopt.store import RoundRecord


def rnd(i: int) -> RoundRecord:
    return RoundRecord(i, "lagos", "fra", "icmp", 5, 5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1)


def test_seq_keeps_rising_after_the_spool_empties(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.db"), max_rounds=100)
    spool.append([rnd(1), rnd(2)])
    first = [seq for seq, _ in spool.oldest(10)]
    spool.remove(first[0], first[-1])
    assert spool.depth == 0
    spool.append([rnd(3)])
    ((seq, rec),) = spool.oldest(10)
    assert seq > first[-1] and rec.started_wall_ns == 3
    spool.close()
    # and across a restart of the agent
    spool = Spool(str(tmp_path / "spool.db"), max_rounds=100)
    spool.remove(seq, seq)
    spool.append([rnd(4)])
    assert spool.oldest(1)[0][0] > seq


def test_bounded_spool_drops_the_oldest(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.db"), max_rounds=3)
    assert spool.append([rnd(i) for i in range(5)]) == 2
    assert [r.started_wall_ns for _, r in spool.oldest(10)] == [2, 3, 4]
