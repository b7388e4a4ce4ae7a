"""Building and removing the lab's namespaces, veths, routes and stage process.

`Lab.up` (netopt.lab.api) validates the profile, then calls `build`; any failure here tears
down whatever was made before the error is raised. Layout (lab name L, node index i):

- node namespace ``L-<node>`` with ``eth0`` = 198.18.1.(i+1)/32, a route to the router's
  198.18.0.1 on eth0 and 198.18.0.0/15 via it — no default route, nothing else;
- router namespace ``L--router`` with veth ``r<i>`` (198.18.0.1/32) to each node, the TUN
  ``imp0`` and two rules: node→node traffic (from and to 198.18.1.0/24) is looked up in table
  100, which sends it into imp0; what the stage writes back (iif imp0) uses the main table.

Veths are created inside the namespaces (``ip -n``), so nothing ever appears on the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netopt.errors import LabError
from netopt.lab import netns
from netopt.lab.profile import Profile

LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")
ROUTER_ADDRESS = "198.18.0.1"
NODE_NET = "198.18.1.0/24"
TUN_NAME = "imp0"
TABLE = 100
STAGE_READY_S = 8.0

ROUTER_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}
NODE_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv4.ip_forward": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}


def node_address(index: int) -> str:
    return str(ipaddress.IPv4Address("198.18.1.1") + index)


def node_netns(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def router_netns(lab: str) -> str:
    return f"{lab}--router"  # node names never start with '-', so this never collides


@dataclass(frozen=True)
class Layout:
    """Names and addresses of one lab, derived from its name and profile."""

    name: str
    router_ns: str
    nodes: list[dict[str, str]]  # name, role, address, netns

    @classmethod
    def of(cls, name: str, profile: Profile) -> Layout:
        nodes = [
            {
                "name": n.name,
                "role": n.role,
                "address": node_address(i),
                "netns": node_netns(name, n.name),
            }
            for i, n in enumerate(profile.nodes)
        ]
        return cls(name=name, router_ns=router_netns(name), nodes=nodes)

    def namespaces(self) -> list[str]:
        return [self.router_ns] + [n["netns"] for n in self.nodes]


def _ip_batch(commands: list[str], netns_name: str | None = None) -> None:
    argv = ["ip"] + (["-n", netns_name] if netns_name else []) + ["-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        where = f" in {netns_name}" if netns_name else ""
        raise LabError(f"ip{where} failed: {done.stderr.strip() or done.stdout.strip()}")


def _router_commands(layout: Layout) -> list[str]:
    cmds = [
        "link set lo up",
        f"tuntap add dev {TUN_NAME} mode tun",
        f"link set {TUN_NAME} up txqueuelen 10000",  # room for bursts while the stage catches up
    ]
    for i, node in enumerate(layout.nodes):
        veth = f"r{i}"
        cmds += [
            f"link add {veth} type veth peer name eth0 netns {node['netns']}",
            f"addr add {ROUTER_ADDRESS}/32 dev {veth}",
            f"link set {veth} up",
            f"route add {node['address']}/32 dev {veth}",
        ]
    cmds += [
        f"route add {NODE_NET} dev {TUN_NAME} table {TABLE}",
        f"rule add pref 100 iif {TUN_NAME} lookup main",
        f"rule add pref 200 from {NODE_NET} to {NODE_NET} lookup {TABLE}",
    ]
    return cmds


def _node_commands(address: str) -> list[str]:
    return [
        "link set lo up",
        f"addr add {address}/32 dev eth0",
        "link set eth0 up",
        f"route add {ROUTER_ADDRESS}/32 dev eth0",
        f"route add {LAB_NET} via {ROUTER_ADDRESS} dev eth0",
    ]


def _configure_nodes(layout: Layout) -> None:
    """One ``ip -n NODE -batch`` per node, run side by side."""
    procs = []
    for node in layout.nodes:
        argv = ["ip", "-n", node["netns"], "-batch", "-"]
        p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((node, p))
    errors = []
    for node, p in procs:
        _, err = p.communicate("\n".join(_node_commands(node["address"])) + "\n")
        if p.returncode != 0:
            errors.append(f"{node['netns']}: {err.strip()}")
    if errors:
        raise LabError("configuring lab nodes failed: " + "; ".join(errors))


def build(layout: Layout, state_dir: Path, state: dict[str, Any]) -> int:
    """Make the namespaces, links and routes, start the stage; returns the stage PID."""
    _ip_batch([f"netns add {ns}" for ns in layout.namespaces()])
    netns.write_sysctl(layout.router_ns, ROUTER_SYSCTLS)
    for node in layout.nodes:
        netns.write_sysctl(node["netns"], NODE_SYSCTLS)
    _ip_batch(_router_commands(layout), layout.router_ns)
    _configure_nodes(layout)
    (state_dir / "state.json").write_text(json.dumps(state, indent=1))
    return start_stage(layout, state_dir)


def start_stage(layout: Layout, state_dir: Path) -> int:
    log = open(state_dir / "stage.log", "ab")  # noqa: SIM115 - handed to the child
    argv = ["ip", "netns", "exec", layout.router_ns, sys.executable, "-m", "netopt.lab.stage"]
    argv += ["--state-dir", str(state_dir), "--tun", TUN_NAME]
    argv += ["--priority", os.environ.get("NETOPT_LAB_STAGE_PRIORITY", "rr")]
    with log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + STAGE_READY_S
    sock = state_dir / "ctl.sock"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "stage.log").read_text(errors="replace")[-800:]
            raise LabError(f"impairment stage exited with status {proc.returncode}: {tail}")
        if sock.exists():
            return proc.pid
        time.sleep(0.02)
    proc.kill()
    raise LabError(f"impairment stage did not start within {STAGE_READY_S:.0f} s")


def is_stage(pid: int, state_dir: Path) -> bool:
    """Whether `pid` is the stage of the lab in `state_dir` (so we never signal a stranger)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"netopt.lab.stage" in cmdline and str(state_dir).encode() in cmdline


def stop_pid(pid: int, grace_s: float = 1.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def lab_namespaces(lab: str) -> list[str]:
    """Every existing namespace of lab `lab` (lab names have no '-', so the prefix is ours)."""
    try:
        names = os.listdir(netns.NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"{lab}-"))


def kill_namespace_processes(namespaces: list[str]) -> None:
    """Stop processes still running inside the lab's namespaces (e.g. from `lab exec`)."""
    pids: list[int] = []
    for ns in namespaces:
        done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        pids += [int(p) for p in done.stdout.split() if p.isdigit()]
    for pid in pids:
        if pid != os.getpid():
            stop_pid(pid, grace_s=0.5)


def destroy(lab: str, state_dir: Path) -> None:
    """Remove everything lab `lab` made: stage, processes, namespaces, state dir."""
    state_file = state_dir / "state.json"
    if state_file.exists():
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            pid = int(json.loads(state_file.read_text())["stage_pid"])
            if is_stage(pid, state_dir):
                stop_pid(pid)
    namespaces = lab_namespaces(lab)
    kill_namespace_processes(namespaces)
    if namespaces:
        _ip_batch([f"netns del {ns}" for ns in namespaces])
    for leftover in ("state.json", "ctl.sock", "stage.log"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / leftover).unlink()
    with contextlib.suppress(OSError):
        state_dir.rmdir()
