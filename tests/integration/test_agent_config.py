"""`netopt agent --check` and `netopt db stats`: the CLI faces of agents and the store.

A table of invalid agent configs, each with the message it must produce (no sockets: the
commands only read files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt.cli import main

GOOD: dict[str, Any] = {
    "id": "lagos-1",
    "site": "lagos",
    "controller": {"url": "http://127.0.0.1:8080", "token": "t" * 20},
    "targets": [{"id": "fra", "address": "127.0.0.2"}],
    "probes": [{"kind": "icmp", "to": ["fra"], "interval_s": 1, "timeout_s": 0.5}],
}

BAD = [
    ({"targets": [{"id": "fra", "address": "fra.example"}]},
     "targets[0].address: not an IP address"),
    ({"probes": [{"kind": "icmp", "to": ["jnb"], "timeout_s": 0.5}]},
     "probes[0].to[0]: unknown target 'jnb'"),
    ({"probes": [{"kind": "icmp", "from": "abuja", "to": ["fra"], "timeout_s": 0.5}]},
     "probes[0].from: an agent probes from its site 'lagos'"),
    ({"probes": [{"kind": "warp", "to": ["fra"], "timeout_s": 0.5}]},
     "probes[0].kind: unknown probe kind 'warp'"),
    ({"controller": {"url": "http://127.0.0.1:8080", "token": "short"}},
     "controller.token: String should have at least 16 characters"),
    ({"controller": {"url": "ftp://x", "token": "t" * 20}}, "controller.url:"),
    ({"spool": {"max_rounds": 1}}, "spool.max_rounds:"),
    ({"colour": "blue"}, "colour: unknown key"),
]  # fmt: skip


def write(tmp: Path, data: dict[str, Any]) -> str:
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_good_agent_config_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--config", write(tmp_path, GOOD), "--check"]) == 0
    assert "ok (agent lagos-1 at site lagos, 1 probe jobs)" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_agent_configs_name_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    assert main(["agent", "--config", write(tmp_path, {**GOOD, **change}), "--check"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "t" * 20 not in err  # the token never appears in messages


def test_db_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netopt.store import SqliteStore

    SqliteStore(tmp_path / "s.db").close()
    assert main(["db", "stats", "--db", str(tmp_path / "s.db"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["schema_version"] == 5 and stats["rows"]["rounds"] == 0
    assert main(["db", "stats", "--db", str(tmp_path / "nothing.db")]) == 1
    assert "no store at" in capsys.readouterr().err


def test_full_spool_drops_the_oldest_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from netopt.agent.run import Agent, AgentConfig
    from netopt.store import RoundRecord

    cfg = AgentConfig.model_validate(
        {**GOOD, "spool": {"path": str(tmp_path / "spool.db"), "max_rounds": 10}}
    )
    agent = Agent(cfg)
    rounds = [RoundRecord(i, "lagos", "fra", "icmp", 5, 5, *[1.0] * 5, 0.1) for i in range(25)]
    for i in range(0, 25, 5):
        agent.spool_rounds(rounds[i : i + 5])
    kept = agent.spool.oldest(100)
    assert [r.started_wall_ns for _, r in kept] == list(range(15, 25))  # the newest 10
    assert [seq for seq, _ in kept] == sorted(seq for seq, _ in kept)
    text = agent.metrics.exposition().decode()
    assert 'netopt_spool_dropped_total{agent="lagos-1"} 15.0' in text
    assert 'netopt_spool_depth{agent="lagos-1"} 10.0' in text
    assert "spool_full dropped_oldest=5" in caplog.text
    agent.spool.close()
    reopened = Agent(cfg)  # the spool survives a restart, with its id (batch ids stay unique)
    assert reopened.spool.depth == 10 and reopened.spool.spool_id == agent.spool.spool_id
    reopened.spool.close()
