"""`netopt serve` with `api.workers: 2`: two processes share the API port and answer the same
table; a reload reaches both; shutdown and `kill -9` of the daemon leave no worker behind.

The table is fed by an agent's batches posted through the workers (no probes: the test needs
no ICMP permission, and the gzip body must reach the daemon intact through a worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt.api.batch import encode_batch
from netopt.store.model import RoundRecord
from tests.integration.conftest import REPO, free_port
from tests.procs import stop

ADMIN = "admin-token-0123456789"
READ = "read-token-0123456789"
AGENT = "agent-token-0123456789"
CONFIG: dict[str, Any] = {
    "regions": [{"id": "lagos", "e164": ["+234"]}],
    "pops": [
        {"id": "fra", "role": "core", "address": "127.0.0.2", "sip_uri": "sip:127.0.0.2:5060"},
        {"id": "jnb", "role": "edge", "address": "127.0.0.3", "relay_delay_ms": 0.5},
    ],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160, "jitter_ms": 1}],
    "agents": [{"id": "agent-lagos", "site": "lagos", "token": AGENT}],
}
NEW_URI = "sip:127.0.0.2:5070"


class Daemon:
    """`netopt serve` with two API workers; stopped by PID when the test ends."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "netopt.yaml"
        self.write(config)
        self.stderr_path = tmp / "serve.stderr"
        self._stderr = self.stderr_path.open("w")
        argv = [sys.executable, "-m", "netopt", "serve", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr)  # fmt: skip

    def write(self, config: dict[str, Any]) -> None:
        config = {**config, "store": {"url": f"sqlite:///{self.config_path.parent / 'n.db'}"},
                  "api": {"listen": f"127.0.0.1:{self.port}", "workers": 2,
                          "admin_token": ADMIN, "read_token": READ}}  # fmt: skip
        self.config_path.write_text(yaml.safe_dump(config))

    def ingest(self, batch_id: str) -> None:
        """An agent's batch (lagos → fra and jnb, 2 ms, no loss), posted through a worker."""
        t = int((time.time() - 1) * 1e9)
        rounds = [RoundRecord(t + i, "lagos", dst, "icmp", 10, 10, 1.0, 2.0, 2.0, 2.5, 3.0, 0.1)
                  for i, dst in enumerate(("fra", "jnb"))]  # fmt: skip
        req = urllib.request.Request(
            self.url + "/v1/ingest", data=encode_batch("agent-lagos", batch_id, rounds, 0),
            headers={"Authorization": f"Bearer {AGENT}", "Content-Encoding": "gzip"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200 and resp.headers["X-Netopt-Worker"], resp.read()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr_path.read_text()
            try:  # every worker listens (the daemon logs it), and the table has a route
                if "api_workers_listening" in self.stderr_path.read_text():
                    self.ingest(f"b{time.monotonic_ns()}")
                    if get(self.url + "/readyz")[0] == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready in {timeout_s} s: {self.stderr_path.read_text()}")

    def workers(self) -> set[int]:
        return {
            pid for pid in children(self.proc.pid) if b"netopt.api.workers.pool" in cmdline(pid)
        }

    def stop(self) -> None:
        stop(self.proc, 15)
        self._stderr.close()


def get(url: str, method: str = "GET", token: str | None = ADMIN) -> tuple[int, str, bytes]:
    """(status, X-Netopt-Worker, body); one new connection per call."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("X-Netopt-Worker", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Netopt-Worker", ""), exc.read()


def children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            found.append(int(status.parent.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(map(alive, pids)):
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def sip_uris(daemon: Daemon, n: int) -> dict[str, set[str]]:
    """The primary SIP URI each worker answered `/v1/route` with, over n connections."""
    import json

    seen: dict[str, set[str]] = {}
    for _ in range(n):
        status, worker, body = get(daemon.url + "/v1/route?caller=%2B2348031234567")
        assert status == 200, body
        route = json.loads(body)
        assert route["region"] == "lagos"
        seen.setdefault(worker, set()).add(route["primary"]["sip_uri"])
    return seen


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, CONFIG)
    try:
        yield d
    finally:
        workers = d.workers() if d.proc.poll() is None else set()
        d.stop()
        for pid in wait_gone(workers, 10):  # never leave one behind, even on failure
            os.kill(pid, signal.SIGKILL)


def test_workers_share_the_port_and_the_table(daemon: Daemon) -> None:
    daemon.wait_ready()
    workers = daemon.workers()
    assert len(workers) == 2, workers
    seen = sip_uris(daemon, 40)
    assert {int(w) for w in seen} == workers  # both answered, and only they (not the daemon)
    assert all(uris == {"sip:127.0.0.2:5060"} for uris in seen.values()), seen

    # paths that need the daemon's live state are forwarded to it from any worker
    for path in ("/metrics", "/v1/paths?region=lagos", "/v1/traces"):
        status, worker, body = get(daemon.url + path)
        assert status == 200 and int(worker) in workers, (path, body[:200])
    status, _, body = get(daemon.url + "/metrics")
    assert b"netopt_probe_packets_sent_total" in body
    status, _, body = get(daemon.url + "/v1/admin/publish", method="POST")
    assert status == 200 and b'"published"' in body
    status, _, body = get(daemon.url + "/v1/route?region=atlantis")
    assert status == 404 and b"atlantis" in body
    # the read token is checked by the workers too; other methods go to the daemon
    status, worker, body = get(daemon.url + "/v1/route?region=lagos", token=None)
    assert status == 401 and int(worker) in workers, body
    assert get(daemon.url + "/v1/route?region=lagos", token=READ)[0] == 200
    assert get(daemon.url + "/v1/route?region=lagos", method="POST")[0] == 405
    assert get(daemon.url + "/healthz", token=None)[0] == 200

    # a reload changes the answer: every worker takes the new table
    config = {**CONFIG, "pops": [{**CONFIG["pops"][0], "sip_uri": NEW_URI}, CONFIG["pops"][1]]}
    daemon.write(config)
    status, _, body = get(daemon.url + "/v1/admin/reload", method="POST")
    assert status == 200, body
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = sip_uris(daemon, 20)
        if len(seen) == 2 and all(uris == {NEW_URI} for uris in seen.values()):
            break
        time.sleep(0.3)
    assert len(seen) == 2 and all(uris == {NEW_URI} for uris in seen.values()), seen

    daemon.stop()
    assert daemon.proc.returncode == 0
    assert not wait_gone(workers, 5), "workers left behind after shutdown"


def test_workers_exit_when_the_daemon_is_killed(daemon: Daemon) -> None:
    daemon.wait_ready()
    workers = daemon.workers()
    assert len(workers) == 2
    daemon.proc.kill()
    daemon.proc.wait()
    assert not wait_gone(workers, 10), "workers outlived a kill -9 of the daemon"


def test_a_dead_worker_is_restarted(daemon: Daemon) -> None:
    daemon.wait_ready()
    first = daemon.workers()
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = daemon.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    assert len(now) == 2 and victim not in now, (now, daemon.stderr_path.read_text()[-3000:])
    seen: set[str] = set()
    while time.monotonic() < deadline and len(seen) < 2:
        seen |= set(sip_uris(daemon, 10))
    assert {int(w) for w in seen} == now  # the new worker answers, with the table
