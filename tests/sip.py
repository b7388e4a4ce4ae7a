"""Real SIP neighbours for tests: Kamailio (deploy/kamailio/kamailio.cfg) and SIPp PoPs/callers.

Each process is started by the test, optionally inside a network namespace (`netns`), and
stopped by its PID (SIGTERM, then SIGKILL) — also when the test fails.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.procs import stop

REPO = Path(__file__).resolve().parents[1]
KAMAILIO_CFG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
UAS_XML = REPO / "tests" / "sipp" / "uas.xml"
UAC_XML = REPO / "tests" / "sipp" / "uac.xml"


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"needs `{program}` (Debian kamailio / sip-tester; see the Makefile)")
    return path


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass
class Kamailio:
    """A Kamailio with netopt's config; `rpc(method)` talks JSON-RPC over HTTP."""

    workdir: Path
    sip_host: str = "127.0.0.1"
    sip_port: int = 0
    rpc_port: int = 0
    rtjson_api: str | None = None  # per-call mode: the route API's base URL
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        need("kamailio")
        self.sip_port = self.sip_port or free_udp_tcp_port()
        self.rpc_port = self.rpc_port or free_udp_tcp_port()
        self.ds_file = self.workdir / "dispatcher.list"
        self.addr_file = self.workdir / "address.list"
        self.log_path = self.workdir / f"kamailio-{self.sip_port}.log"
        for f in (self.ds_file, self.addr_file):
            if not f.exists():
                f.write_text("")

    @property
    def rpc_url(self) -> str:
        return f"http://{self.sip_host}:{self.rpc_port}/RPC"

    def argv(self) -> list[str]:
        run = self.workdir / f"run-{self.sip_port}"
        run.mkdir(exist_ok=True)
        defs = [
            f"SIP_LISTEN=udp:{self.sip_host}:{self.sip_port}",
            f"RPC_LISTEN=tcp:{self.sip_host}:{self.rpc_port}",
            f'DS_FILE="{self.ds_file}"',
            f'ADDR_FILE="{self.addr_file}"',
        ]
        if self.rtjson_api:
            defs += ["NETOPT_RTJSON", f'NETOPT_API="{self.rtjson_api}"']
        argv = [need("kamailio"), "-f", str(KAMAILIO_CFG), "-DD", "-E", "-m", "64", "-M", "8"]
        argv += ["-Y", str(run)]
        for d in defs:
            argv += ["-A", d]
        return _prefix(self.netns) + argv

    def start(self, timeout_s: float = 10.0) -> Kamailio:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kamailio exited: {self.log_path.read_text()[-2000:]}")
            try:
                self.rpc("core.version")
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"kamailio RPC not up in {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def rpc(self, method: str) -> Any:
        """Only for a Kamailio on the host's loopback (the pusher handles namespaces)."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode()
        req = urllib.request.Request(self.rpc_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.loads(resp.read())


@dataclass
class Uas:
    """A SIPp PoP answering every call with ``X-Netopt-Pop: <pop>``."""

    pop: str
    host: str
    port: int
    workdir: Path
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Uas:
        argv = [need("sipp"), "-sf", str(UAS_XML), "-i", self.host, "-p", str(self.port),
                "-key", "pop", self.pop, "-nostdin"]  # fmt: skip
        out = (self.workdir / f"uas-{self.pop}.out").open("ab")
        self.proc = subprocess.Popen(_prefix(self.netns) + argv, stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL)  # fmt: skip
        out.close()
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise AssertionError(f"sipp UAS {self.pop} exited")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"


@dataclass(frozen=True)
class Answered:
    at_unix_s: float
    pop: str
    call_id: str


def calls(
    proxy: str,
    workdir: Path,
    n: int = 1,
    *,
    rate_per_s: float = 10.0,
    host: str = "127.0.0.1",
    netns: str | None = None,
    timeout_s: float = 20.0,
) -> tuple[int, list[Answered]]:
    """Place `n` calls through `proxy` (host:port); (sipp exit code, who answered each)."""
    log = workdir / f"uac-{time.monotonic_ns()}.log"
    argv = [need("sipp"), "-sf", str(UAC_XML), "-i", host, "-p", str(free_udp_tcp_port()),
            "-m", str(n), "-r", f"{rate_per_s:g}", "-trace_logs", "-log_file", str(log),
            "-nostdin", "-timeout", f"{timeout_s:g}s", "-timeout_error",
            "-s", "netopt", proxy]  # fmt: skip
    done = subprocess.run(_prefix(netns) + argv, capture_output=True, timeout=timeout_s + 10)
    return done.returncode, parse_answered(log)


def parse_answered(log: Path) -> list[Answered]:
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0] == "answered":
                sec, usec = float(parts[1]), float(parts[2])
                out.append(Answered(sec + usec / 1e6, parts[3], parts[4]))
    return out
