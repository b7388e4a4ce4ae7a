"""`netopt lab` up / status / exec / set / down, cleanup of stale labs, and containment."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netopt.errors import ConfigError
from netopt.lab import Lab, netns
from netopt.lab.api import run_dir
from netopt.lab.build import lab_namespaces
from tests.lab.conftest import LabFactory, lab_skip_reason, teardown_test_lab, unique_lab_name

pytestmark = pytest.mark.lab

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
SMALL = {
    "nodes": [
        {"name": "lagos", "role": "region"},
        {"name": "fra", "role": "pop", "pop_role": "core"},
        {"name": "jnb", "role": "pop"},
    ],
    "links": [{"a": "lagos", "b": "fra", "delay_ms": 3, "jitter_ms": 0.5, "loss_pct": 1}],
    "default_link": {"delay_ms": 1},
}


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


@pytest.fixture(scope="module")
def host_links_before() -> set[str]:
    if lab_skip_reason():
        pytest.skip(lab_skip_reason() or "")
    return _host_links()


@pytest.fixture(scope="module")
def lab(lab_world: LabFactory, host_links_before: set[str]) -> Lab:
    return lab_world(SMALL)


def _cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "netopt.cli", "lab", "--name", lab.name, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_status_json_lists_nodes_and_links(lab: Lab) -> None:
    ping = lab.exec(
        "lagos",
        ["ping", "-c", "3", "-i", "0.01", "-q", lab.address("fra")],
        check=False,
        capture_output=True,
        text=True,
    )
    received = int(re.search(r"(\d+) received", ping.stdout).group(1))  # type: ignore[union-attr]
    done = _cli(lab, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    nodes = {n["name"]: n for n in status["nodes"]}
    assert set(nodes) == {"lagos", "fra", "jnb"}
    assert nodes["fra"]["role"] == "pop"
    assert all(ipaddress.ip_address(n["address"]) in LAB_NET for n in nodes.values())
    link = next(x for x in status["links"] if {x["a"], x["b"]} == {"lagos", "fra"})
    assert (link["delay_ms"], link["jitter_ms"], link["loss_pct"]) == (3, 0.5, 1)
    # every request crossed the stage (forwarded or dropped), and so did the reply to every
    # request that got through: at least one per reply ping received (the link loses 1 %)
    assert link["forwarded"] + link["dropped"] >= 3 + received
    for key in ("a", "b", "delay_ms", "jitter_ms", "loss_pct", "forwarded", "dropped"):
        assert key in link


def test_exec_passes_exit_status_through(lab: Lab) -> None:
    assert _cli(lab, "exec", "jnb", "--", "sh", "-c", "exit 7").returncode == 7
    done = _cli(lab, "exec", "jnb", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert lab.address("jnb") in done.stdout


def test_cli_set_changes_the_link(lab: Lab) -> None:
    done = _cli(lab, "set", "lagos", "jnb", "delay_ms=7", "loss_pct=0")
    assert done.returncode == 0, done.stderr
    link = next(x for x in lab.status()["links"] if {x["a"], x["b"]} == {"lagos", "jnb"})
    assert link["delay_ms"] == 7
    bad = _cli(lab, "set", "lagos", "jnb", "loss_pct=120")
    assert bad.returncode == 2 and "loss_pct" in bad.stderr
    assert _cli(lab, "set", "lagos", "nowhere", "delay_ms=1").returncode == 1


def test_nodes_only_have_lab_addresses_and_no_default_route(lab: Lab) -> None:
    for node in [*lab.nodes, None]:
        ns = lab.netns(node) if node else lab.state["router_ns"]
        addrs = subprocess.run(
            ["ip", "-n", ns, "-4", "-o", "addr"], capture_output=True, text=True
        ).stdout
        for line in addrs.splitlines():
            iface = ipaddress.ip_interface(line.split()[3])
            assert iface.ip.is_loopback or iface.ip in LAB_NET, line
        for table in ("main", "all"):
            routes = subprocess.run(
                ["ip", "-n", ns, "-4", "route", "show", "table", table],
                capture_output=True,
                text=True,
            ).stdout
            assert "default" not in routes, (ns, routes)


def test_nothing_appears_in_the_host_namespace(lab: Lab, host_links_before: set[str]) -> None:
    assert _host_links() == host_links_before


def test_socket_in_lives_in_the_node_namespace(lab: Lab) -> None:
    with (
        netns.socket_in(lab.netns("lagos"), socket.AF_INET, socket.SOCK_DGRAM) as rx,
        netns.socket_in(lab.netns("fra"), socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((lab.address("lagos"), 0))  # only possible inside lagos's namespace
        rx.settimeout(2.0)
        tx.bind((lab.address("fra"), 0))
        for _ in range(20):  # the link loses 1 %: send a few
            tx.sendto(b"hello", rx.getsockname())
        data, peer = rx.recvfrom(64)
    assert data == b"hello" and peer[0] == lab.address("fra")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host, pytest.raises(OSError):
        host.bind((lab.address("lagos"), 0))  # not an address of the host


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (OSError, IndexError):
        return False
    return not state.startswith("Z")


def test_up_cleans_a_stale_lab_and_down_removes_everything() -> None:
    if lab_skip_reason():
        pytest.skip(lab_skip_reason() or "")
    name = unique_lab_name(__name__, 9)
    try:
        first = Lab.up(SMALL, name=name)
        old_pid = first.state["stage_pid"]
        os.kill(old_pid, signal.SIGKILL)  # a crashed run: namespaces left, stage gone
        time.sleep(0.1)
        assert lab_namespaces(name)
        second = Lab.up(SMALL, name=name)
        assert second.state["stage_pid"] != old_pid and _pid_alive(second.state["stage_pid"])
        assert Lab.up(SMALL, name=name).state["stage_pid"] == second.state["stage_pid"]
        sleeper = second.popen("jnb", ["sleep", "60"])
        second.down()
        assert lab_namespaces(name) == []
        assert not _pid_alive(second.state["stage_pid"])
        assert sleeper.wait(timeout=5) is not None  # processes inside the nodes are stopped
        assert not second.state_dir.exists()
    finally:
        teardown_test_lab(name)


def test_stage_stops_when_its_namespace_is_deleted() -> None:
    if lab_skip_reason():
        pytest.skip(lab_skip_reason() or "")
    name = unique_lab_name(__name__, 8)
    try:
        lab = Lab.up(SMALL, name=name)
        pid = lab.state["stage_pid"]
        subprocess.run(["ip", "netns", "del", lab.state["router_ns"]], check=True)
        deadline = time.monotonic() + 3.0
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(pid)
    finally:
        teardown_test_lab(name)


def test_bad_profile_builds_nothing() -> None:
    if lab_skip_reason():
        pytest.skip(lab_skip_reason() or "")
    name = unique_lab_name(__name__, 7)
    bad = {**SMALL, "links": [{"a": "lagos", "b": "nowhere", "delay_ms": -1}]}
    with pytest.raises(ConfigError):
        Lab.up(bad, name=name)
    assert lab_namespaces(name) == []
    assert not (run_dir() / name).exists()
