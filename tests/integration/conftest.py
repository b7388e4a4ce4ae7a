"""Shared helpers for loopback integration tests: free ports, a running `netopt serve`."""

from __future__ import annotations

import json
import os
import socket
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

from tests.procs import stop

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    """GET a URL; returns (status, parsed JSON or text). Never raises on HTTP errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = body.decode()
    return status, json.loads(text) if "json" in ctype else text


def icmp_allowed() -> bool:
    if os.geteuid() == 0:
        return True
    lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    return any(lo <= g <= hi for g in os.getgroups())


class Served:
    """A `netopt serve` subprocess; stopped by PID when the test ends."""

    def __init__(self, config: dict[str, Any], tmp: Path) -> None:
        self.port = free_port()
        api = {**config.get("api", {}), "listen": f"127.0.0.1:{self.port}"}  # tokens kept
        config = {**config, "api": api,
                  "store": {"url": f"sqlite:///{tmp / 'netopt.db'}"}}  # fmt: skip
        self.config_path = tmp / "netopt.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = tmp / "serve.stderr"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netopt", "serve", "--config", str(self.config_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"netopt serve exited: {self.stderr_path.read_text()}")
            try:
                status, body = http_get(self.url + "/readyz", 0.5)
            except OSError:
                status, body = 0, None
            if status == 200:
                return body  # type: ignore[no-any-return]
            time.sleep(0.2)
        raise AssertionError(f"not ready in {timeout_s} s: {self.stderr_path.read_text()}")

    def stop(self) -> int:
        stop(self.proc, 10)
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def start(config: dict[str, Any]) -> Served:
        s = Served(config, tmp_path)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def artefacts_dir(name: str) -> Path:
    """Where a test keeps what a person may want to look at (screenshots, panel previews):
    $NETOPT_TEST_ARTEFACTS or test-artefacts/ in the checkout (git-ignored), then `name`."""
    root = Path(os.environ.get("NETOPT_TEST_ARTEFACTS", REPO / "test-artefacts"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL 15 on loopback for the session (tests/pg.py), stopped by PID."""
    from tests.pg import PgCluster, pg_missing

    if (why := pg_missing()) is not None:
        pytest.skip(why)
    cluster = PgCluster(durable=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: Any) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_cluster.create_database(name)
    pg_cluster.drop_database(name)
