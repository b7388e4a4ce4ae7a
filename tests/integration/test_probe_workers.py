"""`netopt serve` with `probing.workers: 2`: the probe jobs run in two worker processes, each its
shard; their rounds reach /v1/paths, the store and the metrics as in-process rounds do; a
worker killed -9 is restarted (and counted) and its paths are probed again; a reload re-shards
over a new worker count; shutdown and `kill -9` of the daemon leave no worker behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt.config import parse_config
from netopt.daemon.probe_workers import ProbeWorkers
from netopt.daemon.probing import Ran, jobs_from_config
from netopt.daemon.shard import shard_of
from tests.integration.conftest import http_get, icmp_allowed
from tests.integration.test_serve import samples

pytestmark = pytest.mark.skipif(
    not icmp_allowed(), reason="ICMP probes need root or net.ipv4.ping_group_range"
)

PATHS = 8
CONFIG: dict[str, Any] = {
    "regions": [{"id": "lagos", "address": "127.0.0.1", "e164": ["+234"]}],
    "pops": [
        {"id": f"p{i}", "role": "core" if i == 0 else "edge", "address": f"127.0.2.{i + 1}"}
        for i in range(PATHS)
    ],
    "destinations": ["p0"],
    "probes": [
        {
            "kind": "icmp",
            "from": "lagos",
            "to": [f"p{i}" for i in range(PATHS)],
            "interval_s": 0.5,
            "count": 2,
            "timeout_s": 0.3,
            "packet_interval_s": 0.01,
        },
    ],
    "probing": {"workers": 2},
}


def shards(workers: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for i in range(PATHS):
        out.setdefault(shard_of(f"icmp:lagos->p{i}", workers), set()).add(f"p{i}")
    return out


def started(stderr: Path) -> dict[int, list[int]]:
    """Worker index → the pids it ran as, in order (the daemon logs each start)."""
    out: dict[int, list[int]] = {}
    for m in re.finditer(r"probe_worker_started index=(\d+) pid=(\d+)", stderr.read_text()):
        out.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    return out


def wait_for(what: str, check: Callable[[], Any], stderr: Path, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout_s} s: {stderr.read_text()[-4000:]}")


def rounds_since(db: Path, since_ns: int) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT dst, COUNT(*) FROM rounds WHERE src = 'lagos' AND started_wall_ns >= ? "
            "AND received = sent GROUP BY dst", (since_ns,),
        ).fetchall()  # fmt: skip
    return dict(rows)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_two_workers_probe_their_shards_and_come_back(serve: Any, tmp_path: Path) -> None:
    assert set(shards(2)) == {0, 1}, "the test's paths must fall on both workers"
    daemon = serve(CONFIG)
    daemon.wait_ready(30)
    err, db = daemon.stderr_path, tmp_path / "netopt.db"
    pids = wait_for("two workers", lambda: (p := started(err)) and len(p) == 2 and p, err)
    everyone = {f"p{i}" for i in range(PATHS)}
    wait_for("rounds from every path", lambda: set(rounds_since(db, 0)) == everyone, err)

    # /v1/paths: every path of both shards measured, with samples and a loopback RTT
    status, body = http_get(daemon.url + "/v1/paths?region=lagos")
    assert status == 200, body
    measured = {p["dst"]: p for p in body["paths"]}
    assert set(measured) == everyone
    assert all(p["samples"] > 0 and p["rtt_ms"] < 50 for p in measured.values()), measured
    # the netopt_probe_* series with their labels, fed from the workers' rounds
    _, text = http_get(daemon.url + "/metrics")
    got = samples(text)
    for dst in everyone:
        labels = frozenset({("src", "lagos"), ("dst", dst), ("kind", "icmp")})
        assert got[("netopt_probe_packets_sent_total", labels)] > 0
        assert got[("netopt_probe_rtt_seconds_count", labels)] > 0
    failures = frozenset({("task", "probe_worker")})
    assert got[("netopt_task_failures_total", failures)] == 0

    # kill -9 worker 0: restarted with a new pid, counted, and its shard probed again
    victim = pids[0][0]
    os.kill(victim, signal.SIGKILL)
    killed_ns = time.time_ns()
    new = wait_for("worker 0 restarted", lambda: len(started(err).get(0, [])) == 2, err)
    assert new and started(err)[0][1] != victim and started(err)[1] == pids[1]
    restarted_ns = time.time_ns()
    wait_for("worker 0's paths probed again",
             lambda: shards(2)[0] <= set(rounds_since(db, restarted_ns)), err)  # fmt: skip
    wait_for("worker 1's paths probed on",  # it never stopped
             lambda: shards(2)[1] <= set(rounds_since(db, killed_ns)), err)  # fmt: skip
    _, text = http_get(daemon.url + "/metrics")
    assert samples(text)[("netopt_task_failures_total", failures)] >= 1

    # reload with three workers: re-sharded, every path still probed
    config = yaml.safe_load(daemon.config_path.read_text())
    config["probing"] = {"workers": 3}
    daemon.config_path.write_text(yaml.safe_dump(config))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for("a third worker", lambda: 2 in started(err), err)
    resharded = time.time_ns()
    wait_for("every path after the re-shard",
             lambda: set(rounds_since(db, resharded)) == everyone, err)  # fmt: skip

    # shutdown stops every worker by PID
    running = [p[-1] for p in started(err).values()]
    assert all(alive(p) for p in running)
    assert daemon.stop() == 0
    assert not [p for p in running if alive(p)], err.read_text()[-2000:]


def test_workers_exit_when_the_daemon_is_killed(serve: Any, tmp_path: Path) -> None:
    daemon = serve(CONFIG)
    daemon.wait_ready(30)
    err = daemon.stderr_path
    pids = wait_for("two workers", lambda: (p := started(err)) and len(p) == 2 and p, err)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    workers = [p[0] for p in pids.values()]
    wait_for("workers gone", lambda: not any(alive(p) for p in workers), err, timeout_s=15)


async def test_workers_follow_the_daemons_round_shapes() -> None:
    """What the adaptive rates decide (a job's round shape: its packet count) reaches the
    worker that runs it: rounds of 1 packet, then of 3 once the daemon re-syncs the job."""
    config = {**CONFIG, "probes": [{**CONFIG["probes"][0], "count": 1}]}
    jobs = jobs_from_config(parse_config(config))
    got: list[Ran] = []
    failures: list[str] = []
    async with asyncio.TaskGroup() as tg:
        workers = ProbeWorkers(got.extend, failures.append, lambda _n: None, tg.create_task)
        workers.resize(2)
        workers.sync(jobs)

        async def rounds_of(count: int, paths: set[str]) -> None:
            async with asyncio.timeout(30):
                for _ in iter(int, 1):  # until every path had a round of `count` packets
                    sent = {r.job.dst for r in got if r.summary and r.summary.digest.sent == count}
                    if sent == paths:
                        return
                    await asyncio.sleep(0.1)

        everyone = {j.dst for j in jobs}
        await rounds_of(1, everyone)
        shaped = [dataclasses.replace(j, options=dataclasses.replace(j.options, count=3))
                  for j in jobs]  # fmt: skip
        workers.sync(shaped)  # as Daemon._sync_jobs after ProbeRates.update
        got.clear()
        await rounds_of(3, everyone)
        assert {r.job for r in got} <= set(shaped) | set(jobs)
        pids = list(workers.pids.values())
        assert len(pids) == 2
        workers.resize(0)  # cancels both supervisors: each stops its process by PID
    assert not failures and not [p for p in pids if alive(p)]
