"""An agent with several controllers (high availability): a controller that fails (5xx, reset,
timeout) hands the shipper to the next with the same batch; the spool replays in order;
an acknowledged batch is never sent again (tests/bad_neighbour.py plays the controllers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from netopt.agent.run import Agent, AgentConfig
from netopt.store import RoundRecord
from tests.bad_neighbour import BadNeighbour


def agent_for(tmp_path: Path, ports: list[int], batch: int = 2) -> Agent:
    controllers = [
        {"url": f"http://127.0.0.1:{p}", "token": "t" * 16, "timeout_s": 0.5,
         "min_backoff_s": 0.05, "max_backoff_s": 0.2, "batch_max_rounds": batch,
         "batch_interval_s": 0}
        for p in ports
    ]  # fmt: skip
    config = AgentConfig.model_validate({
        "id": "lagos-1", "site": "lagos", "controllers": controllers,
        "spool": {"path": str(tmp_path / "spool.db")},
        "targets": [{"id": "fra", "address": "127.0.0.2"}],
        "probes": [{"kind": "icmp", "to": ["fra"], "interval_s": 0.5, "timeout_s": 0.2}],
    })  # fmt: skip
    return Agent(config)


def rounds(first: int, n: int) -> list[RoundRecord]:
    return [RoundRecord(i, "lagos", "fra", "icmp", 5, 5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1)
            for i in range(first, first + n)]  # fmt: skip


def seqs(batch_ids: list[str]) -> list[int]:
    out: list[int] = []
    for b in batch_ids:
        first, last = b.rsplit(":", 1)[1].split("-")
        out += range(int(first), int(last) + 1)
    return out


@pytest.mark.parametrize("bad", ["html_500", "reset", "slow"])
async def test_a_failing_controller_hands_the_same_batch_to_the_next(
    tmp_path: Path, bad: str
) -> None:
    with BadNeighbour(bad) as one, BadNeighbour("ingest_ack") as two:
        agent = agent_for(tmp_path, [one.port, two.port])
        agent.spool_rounds(rounds(0, 3))
        assert await agent.ship_once() == "unreachable" and agent.spool.depth == 3
        assert not agent.fail_over() and agent.current == 1
        assert await agent.ship_once() == "acked"
        assert agent.acked_batches == [f"lagos-1:{agent.spool.spool_id}:1-2"]  # the same batch
        agent.spool.close()


async def test_the_loop_fails_over_back_and_forth_and_replays_in_order(tmp_path: Path) -> None:
    with BadNeighbour("ingest_ack") as one, BadNeighbour("ingest_ack") as two:
        agent = agent_for(tmp_path, [one.port, two.port])
        loop = asyncio.create_task(agent.ship_loop())
        try:
            async with asyncio.timeout(20):
                agent.spool_rounds(rounds(0, 4))
                while agent.spool.depth:  # noqa: ASYNC110 - the shipper runs beside
                    await asyncio.sleep(0.02)
                one.mode = "html_500"  # the first one goes bad: all to the second
                agent.spool_rounds(rounds(10, 6))
                while agent.spool.depth or agent.current != 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                served_by_one = one.requests
                two.mode, one.mode = "reset", "ingest_ack"  # and now the other way round
                agent.spool_rounds(rounds(20, 6))
                while agent.spool.depth or agent.current != 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop
        assert one.requests > served_by_one and two.requests >= 4
        acked = seqs(agent.acked_batches)
        assert acked == list(range(1, 17))  # every round once, in spool order, never re-sent
        assert len(set(agent.acked_batches)) == len(agent.acked_batches)
        agent.spool.close()
