"""High availability: two `netopt serve` on one real PostgreSQL, kill -9 the leader while agents
stream (issue 15).

A recording fake Kamailio (JSON-RPC over HTTP on loopback) loads the dispatcher file on each
`dispatcher.reload`, as Kamailio does (skipping `#` lines), and records the fencing token the
file carries; it forgets its table every second (as a restarted Kamailio would), so whoever
leads keeps pushing. Two `netopt agent` processes list both controllers. The proofs: one
leader at a time (`netopt_leader`), the follower serves the leader's table, after the kill the
follower leads and pushes with a newer token; the tokens Kamailio saw never go back (no two
leaders pushed in the same window); every acknowledged batch is stored exactly once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiohttp import web

from netopt.push.pusher import token_of
from tests.integration.conftest import REPO, free_port, http_get, icmp_allowed
from tests.procs import acked_batches, stop_all

pytestmark = [
    pytest.mark.neighbour,
    pytest.mark.skipif(not icmp_allowed(), reason="ICMP probes need root or ping_group_range"),
]
LEASE_S = 1.0
N_AGENTS = 2
FORGET_S = 1.0


class RecordingKamailio:
    """dispatcher.reload / dispatcher.list like Kamailio's, recording (token, at) per reload."""

    def __init__(self, dispatcher_file: Path) -> None:
        self.file, self.port = dispatcher_file, free_port()
        self.reloads: list[tuple[int | None, float]] = []
        self.loaded: list[tuple[int, str, int, str]] = []  # set, uri, priority, attrs
        self._forgot_at = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> RecordingKamailio:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/RPC", self._rpc)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _rpc(self, request: web.Request) -> web.Response:
        req = await request.json()
        method, rid = req.get("method"), req.get("id")
        if method == "dispatcher.reload":
            text = self.file.read_text()
            self.reloads.append((token_of(text), time.monotonic()))
            self.loaded = [
                (int(s), uri, int(prio), attrs)
                for s, uri, _flags, prio, attrs in (
                    line.split()
                    for line in text.splitlines()
                    if line.strip() and not line.startswith("#")
                )
            ]
            result: Any = "Ok"
        elif method == "dispatcher.list":
            if time.monotonic() - self._forgot_at > FORGET_S:  # a restarted Kamailio
                self.loaded, self._forgot_at = [], time.monotonic()
            sets: dict[int, list[Any]] = {}
            for set_id, uri, prio, attrs in self.loaded:
                sets.setdefault(set_id, []).append(
                    {"DEST": {"URI": uri, "PRIORITY": prio, "ATTRS": {"BODY": attrs}}}
                )
            result = {"RECORDS": [{"SET": {"ID": s, "TARGETS": t}} for s, t in sets.items()]}
        else:
            result = "Ok"
        return web.json_response({"jsonrpc": "2.0", "result": result, "id": rid})


class Cluster:
    """Two controllers, N agents: subprocesses stopped by PID."""

    def __init__(self, tmp: Path, dsn: str, kamailio_port: int) -> None:
        self.tmp, self.dsn = tmp, dsn
        self.ports = [free_port(), free_port()]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self._files: list[Any] = []
        self.base: dict[str, Any] = {
            "regions": [{"id": "lagos", "address": "127.0.0.1"}]
            + [{"id": f"r{i}", "address": f"127.0.1.{i + 1}"} for i in range(N_AGENTS)],
            "pops": [
                {
                    "id": "fra",
                    "role": "core",
                    "address": "127.0.0.2",
                    "sip_uri": "sip:127.0.0.2:5060",
                },
                {
                    "id": "jnb",
                    "role": "edge",
                    "address": "127.0.0.3",
                    "relay_delay_ms": 0.5,
                    "sip_uri": "sip:127.0.0.3:5060",
                },
            ],
            "destinations": ["fra"],
            "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160, "jitter_ms": 1}],
            "probes": [
                {
                    "kind": "icmp",
                    "from": "lagos",
                    "to": ["fra", "jnb"],
                    "interval_s": 0.5,
                    "count": 2,
                    "timeout_s": 0.3,
                }
            ],
            "store": {"url": dsn, "flush_interval_s": 0.2},
            "ha": {"lease_interval_s": LEASE_S},
            "proxies": [
                {
                    "kind": "kamailio",
                    "rpc_url": f"http://127.0.0.1:{kamailio_port}/RPC",
                    "dispatcher_file": str(tmp / "dispatcher.list"),
                    "reload_delta_s": 0.1,
                    "verify_interval_s": 0.3,
                }
            ],
            "agents": [
                {"id": f"a{i}", "site": f"r{i}", "token": f"token-of-agent-{i}-xxxx"}
                for i in range(N_AGENTS)
            ],
        }

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def _popen(self, name: str, args: list[str]) -> None:
        f = (self.tmp / f"{name}.log").open("a")
        self._files.append(f)
        cmd = [sys.executable, "-m", "netopt", *args]
        self.procs[name] = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=f, text=True
        )

    def start_controller(self, i: int) -> None:
        cfg = {**self.base, "api": {"listen": f"127.0.0.1:{self.ports[i]}"}}
        path = self.tmp / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self._popen(f"c{i}", ["serve", "--config", str(path)])
        wait_for(lambda: self.leader_gauge(i) is not None, 20, f"c{i} up")

    def start_agents(self) -> None:
        for i in range(N_AGENTS):
            controllers = [
                {
                    "url": self.url(c),
                    "token": f"token-of-agent-{i}-xxxx",
                    "timeout_s": 2,
                    "batch_interval_s": 0.2,
                    "batch_max_rounds": 20,
                    "min_backoff_s": 0.2,
                    "max_backoff_s": 1.0,
                }
                for c in (0, 1)
            ]
            cfg = {
                "id": f"a{i}",
                "site": f"r{i}",
                "controllers": controllers,
                "spool": {"path": str(self.tmp / f"spool{i}.db")},
                "targets": [{"id": "fra", "address": "127.0.0.2"}],
                "probes": [
                    {"kind": "icmp", "to": ["fra"], "interval_s": 0.2, "count": 1, "timeout_s": 0.1}
                ],
            }
            path = self.tmp / f"agent{i}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            self._popen(f"agent{i}", ["agent", "--config", str(path), "--log-level", "debug"])

    def leader_gauge(self, i: int) -> float | None:
        try:
            status, text = http_get(self.url(i) + "/metrics", 0.5)
        except OSError:
            return None
        m = re.search(r"^netopt_leader (\S+)$", text, re.M) if status == 200 else None
        return None if m is None else float(m.group(1))

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> None:
        stop_all(self.procs.values())
        for f in self._files:
            f.close()

    def acked(self) -> dict[str, int]:
        """Batch id → rounds, from every agent's log of acknowledgements."""
        return acked_batches(self.tmp / f"agent{i}.log" for i in range(N_AGENTS))


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout_s} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[RecordingKamailio]:
    with RecordingKamailio(tmp_path / "dispatcher.list") as k:
        yield k


@pytest.fixture
def cluster(tmp_path: Path, pg_dsn: str, kamailio: RecordingKamailio) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_dsn, kamailio.port)
    try:
        yield c
    finally:
        c.stop_all()


def test_kill_9_the_leader_while_agents_stream(
    cluster: Cluster, kamailio: RecordingKamailio
) -> None:
    cluster.start_controller(0)
    wait_for(lambda: cluster.leader_gauge(0) == 1, 10, "the first controller leads")
    cluster.start_controller(1)
    assert cluster.leader_gauge(1) == 0
    cluster.start_agents()
    wait_for(lambda: len({b.split(":")[0] for b in cluster.acked()}) == N_AGENTS, 30,
             "every agent acknowledged")  # fmt: skip
    wait_for(lambda: len(kamailio.reloads) >= 2, 20, "the leader pushes")
    first = kamailio.reloads[0][0]
    assert first is not None and first >= 1
    # the follower answers from the leader's table, read from the database
    wait_for(lambda: http_get(cluster.url(1) + "/v1/route?region=lagos")[0] == 200, 10,
             "the follower serves the shared table")  # fmt: skip
    assert http_get(cluster.url(1) + "/v1/route?region=lagos")[1]["path"][0] == "lagos"
    assert cluster.leader_gauge(1) == 0 and cluster.leader_gauge(0) == 1

    acked_before = len(cluster.acked())
    killed_at = time.monotonic()
    cluster.kill("c0")  # mid-stream
    wait_for(lambda: cluster.leader_gauge(1) == 1, 10 * LEASE_S, "the follower leads")
    took_s = time.monotonic() - killed_at
    assert took_s < 2 * LEASE_S + 1.0, f"took over in {took_s:.1f} s"  # + polling slack
    wait_for(lambda: any((t or 0) > first for t, _ in kamailio.reloads), 10,
             "the new leader pushes")  # fmt: skip
    wait_for(lambda: len(cluster.acked()) > acked_before + 2 * N_AGENTS, 20,
             "agents ship to the new leader")  # fmt: skip
    reloads_at_stop = len(kamailio.reloads)
    time.sleep(2 * FORGET_S)
    assert len(kamailio.reloads) > reloads_at_stop  # pushes continue
    cluster.stop_all()

    tokens = [t for t, _ in kamailio.reloads]
    assert None not in tokens, "a push without a fencing token"
    assert tokens == sorted(tokens), f"a token went back: {tokens}"  # never interleaved
    assert len(set(tokens)) == 2, f"one token per leader: {sorted(set(tokens))}"
    per_token = [tokens.count(t) for t in sorted(set(tokens))]
    print(f"takeover_s={took_s:.2f} pushes_per_token={per_token} acked={len(cluster.acked())}")
    check_batches(cluster)


def check_batches(cluster: Cluster) -> None:
    acked = cluster.acked()
    with psycopg.connect(cluster.dsn) as db:
        stored = dict(db.execute("SELECT batch_id, rounds FROM batches").fetchall())
        missing = set(acked) - set(stored)
        assert acked and not missing, f"{len(missing)} acknowledged batches not stored"
        assert all(stored[b] == n for b, n in acked.items())
        sites = [f"r{i}" for i in range(N_AGENTS)]
        n_rounds = db.execute(
            "SELECT COUNT(*) FROM rounds WHERE src = ANY(%s)", (sites,)
        ).fetchone()
        n_stored = db.execute("SELECT SUM(stored) FROM batches").fetchone()
        assert n_rounds is not None and n_stored is not None
        assert n_rounds[0] == n_stored[0]  # every agent round stored once
        dup = db.execute(
            "SELECT COUNT(*) FROM (SELECT src, dst, kind, started_wall_ns FROM rounds "
            "GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1) d"
        ).fetchone()
        assert dup is not None and dup[0] == 0
