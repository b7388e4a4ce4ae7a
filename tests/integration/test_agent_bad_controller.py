"""The agent's shipper against a controller URL that answers badly (tests/bad_neighbour.py):
every bad answer is an outcome (unreachable, bad_answer), the rounds stay in the spool, and the
next good acknowledgement ships them; the shipping loop backs off and never dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from netopt.agent.run import Agent, AgentConfig
from netopt.store import RoundRecord
from tests.bad_neighbour import BAD_JSONRPC, BAD_MODES, BadNeighbour
from tests.integration.conftest import free_port, icmp_allowed

STATUS_200 = {"not_json", "wrong_id", *BAD_JSONRPC}


def agent_for(tmp_path: Path, url: str, timeout_s: float = 0.5) -> Agent:
    config = AgentConfig.model_validate({
        "id": "lagos-1", "site": "lagos",
        "controller": {"url": url, "token": "t" * 16, "timeout_s": timeout_s,
                       "min_backoff_s": 0.05, "max_backoff_s": 0.2},
        "spool": {"path": str(tmp_path / "spool.db")},
        "targets": [{"id": "fra", "address": "127.0.0.2"}],
        "probes": [{"kind": "icmp", "to": ["fra"], "interval_s": 0.5, "timeout_s": 0.2}],
    })  # fmt: skip
    return Agent(config)


def rounds(n: int) -> list[RoundRecord]:
    return [RoundRecord(i, "lagos", "fra", "icmp", 5, 5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1)
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("mode", BAD_MODES + BAD_JSONRPC)
async def test_a_bad_answer_keeps_the_rounds(tmp_path: Path, mode: str) -> None:
    with BadNeighbour(mode) as controller:
        agent = agent_for(tmp_path, f"http://127.0.0.1:{controller.port}")
        agent.spool_rounds(rounds(3))
        outcome = await agent.ship_once()
        assert outcome == ("bad_answer" if mode in STATUS_200 else "unreachable")
        assert agent.spool.depth == 3 and agent.acked_batches == []
        controller.mode = "ingest_ack"  # the controller is back
        assert await agent.ship_once() == "acked"
        assert agent.spool.depth == 0 and len(agent.acked_batches) == 1
        agent.spool.close()


async def test_the_ship_loop_backs_off_and_goes_on(tmp_path: Path) -> None:
    with BadNeighbour("garbage") as controller:
        agent = agent_for(tmp_path, f"http://127.0.0.1:{controller.port}")
        agent.spool_rounds(rounds(2))
        loop = asyncio.create_task(agent.ship_loop())
        try:
            async with asyncio.timeout(10):
                while controller.requests < 3:  # noqa: ASYNC110 - polling another thread
                    await asyncio.sleep(0.02)
                controller.mode = "not_json"
                while agent.metrics.batches.labels("lagos-1", "bad_answer")._value.get() < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                controller.mode = "ingest_ack"
                while agent.spool.depth:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert not loop.done()
        finally:
            loop.cancel()
        assert agent.metrics.batches.labels("lagos-1", "unreachable")._value.get() >= 3
        assert agent.metrics.batches.labels("lagos-1", "acked")._value.get() == 1
        agent.spool.close()


@pytest.mark.skipif(not icmp_allowed(), reason="ICMP probes need root or ping_group_range")
@pytest.mark.parametrize("task", ["ship_loop", "metrics_listener", "probe_slot"])
async def test_a_broken_agent_task_is_counted_and_restarted(tmp_path: Path, task: str) -> None:
    with BadNeighbour("ingest_ack") as controller:
        agent = agent_for(tmp_path, f"http://127.0.0.1:{controller.port}")
        agent.config = agent.config.model_copy(
            update={"metrics_listen": f"127.0.0.1:{free_port()}"}
        )
        attr = {"ship_loop": "ship_loop", "metrics_listener": "serve_metrics",
                "probe_slot": "probe_slot"}[task]  # fmt: skip
        real, runs = getattr(agent, attr), []

        async def broken(*args: object) -> None:
            runs.append(1)
            if len(runs) == 1:
                if task == "metrics_listener":  # it breaks after it has listened, as a crash
                    agent._listening = True
                raise RuntimeError(f"{task} broken on purpose")
            await real(*args)

        setattr(agent, attr, broken)
        main = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(15):
                while len(runs) < 2:
                    assert not main.done()
                    await asyncio.sleep(0.05)
            assert agent.metrics.task_failures.labels(task)._value.get() == 1
            assert not main.done()
        finally:
            main.cancel()
            with pytest.raises(asyncio.CancelledError):
                await main
