"""The impairment stage: a userspace process in the lab's router namespace.

Policy routing in the router sends every node-to-node packet into a TUN device; this loop
reads it, looks up its direction by (source, destination) address, asks `impair.Direction`
when it is due (or that it is lost), keeps it in a heap keyed by due time and writes it back
to the TUN when due; the kernel then routes it out of the main table to the destination's
veth. A unix socket in the lab's state dir answers ``ping``, ``status`` and ``set``.

Run as ``ip netns exec ROUTER python -m netopt.lab.stage --state-dir DIR``; it stops on
SIGTERM, or by itself when its router namespace or state dir disappears.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import fcntl
import gc
import heapq
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from netopt.lab.impair import Direction, RandomStream
from netopt.lab.profile import LinkParams, Profile

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_TIMERSLACK = 29
IDLE_WAIT_S = 0.25
HOUSEKEEP_NS = 500_000_000
READ_BATCH = 256
# select() wakes late and a pass through the stage (read, route, write) costs ~0.1 ms; releasing
# 160 µs early keeps a fixed 80 ms RTT at 80.03-80.07 ms here (it was 80.2-80.35 with no lead).
WAKE_LEAD_NS = 160_000
LATE_NS = 1_000_000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _tight_timers(policy: str) -> None:
    """Wake close to the next due time even on a busy machine.

    1 µs timer slack for select(); then either a low real-time priority (``rr``: SCHED_RR 10,
    still bounded by the kernel's RT throttling, and the loop sleeps between packets) or the
    highest nice level (``nice``). Failures are ignored: the stage still works, less exactly.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    if policy == "rr":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
            return
        except OSError:
            pass
    if policy in ("rr", "nice"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -20)


class Stage:
    """The directions table, the heap and the control protocol (the loop is `run`)."""

    def __init__(self, state: dict[str, Any], seed: int | None = None) -> None:
        profile = Profile.model_validate(state["profile"])
        self.addresses = {n["name"]: n["address"] for n in state["nodes"]}
        self.rnd = RandomStream(seed)
        self.by_pair: dict[tuple[str, str], Direction] = {}
        self.by_key: dict[bytes, Direction] = {}
        for (a, b), params in profile.directed_params().items():
            d = Direction(a, b, params)
            self.by_pair[(a, b)] = d
            key = self._packed(a) + self._packed(b)
            self.by_key[key] = d
        self.configured = {
            (a, b) for link in profile.links for (a, b) in _pairs(link.a, link.b, link.directed)
        }
        self.unmatched = 0
        self.write_errors = 0
        self.late = 0  # packets written more than LATE_NS after their due time
        self.late_max_ns = 0

    def _packed(self, node: str) -> bytes:
        return ipaddress.IPv4Address(self.addresses[node]).packed

    # --- control -----------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "status":
            return {
                "ok": True,
                "directions": self._directions(),
                "unmatched": self.unmatched,
                "late": self.late,
                "late_max_us": self.late_max_ns // 1000,
            }
        if op == "set":
            try:
                params = LinkParams.model_validate(request["params"])
                pairs = [(str(a), str(b)) for a, b in request["directions"]]
                targets = [self.by_pair[p] for p in pairs]
            except (KeyError, TypeError, ValueError) as exc:
                return {"ok": False, "error": f"bad set request: {exc}"}
            for d in targets:
                d.configure(params)
            self.configured.update(pairs)
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _directions(self) -> list[dict[str, Any]]:
        out = []
        for (a, b), d in self.by_pair.items():
            if (a, b) in self.configured or d.forwarded or d.dropped:
                row: dict[str, Any] = {"a": a, "b": b, **d.params.model_dump()}
                row.update(
                    forwarded=d.forwarded, dropped=d.dropped, configured=(a, b) in self.configured
                )
                out.append(row)
        return out

    # --- the loop ----------------------------------------------------------------------

    def run(self, tun: int, ctl: socket.socket, alive: Any) -> None:
        """Move packets until `alive()` is false (checked twice a second) or a signal stops us."""
        heap: list[tuple[int, int, bytes, Direction]] = []
        push, pop = heapq.heappush, heapq.heappop
        read, write, mono = os.read, os.write, time.monotonic_ns
        lookup, rnd = self.by_key.get, self.rnd
        wait = select.select
        rlist = [tun, ctl.fileno()]
        seq = 0
        next_check = mono() + HOUSEKEEP_NS
        while True:
            now = mono()
            while heap and heap[0][0] <= now + WAKE_LEAD_NS:
                item = pop(heap)
                if now - item[0] > LATE_NS:
                    self._note_late(now - item[0])
                try:
                    write(tun, item[2])
                    item[3].forwarded += 1
                except OSError:
                    self.write_errors += 1
            if now >= next_check:
                if not alive():
                    return
                next_check = now + HOUSEKEEP_NS
            timeout = (heap[0][0] - now - WAKE_LEAD_NS) / 1e9 if heap else IDLE_WAIT_S
            ready = wait(rlist, (), (), timeout if timeout < IDLE_WAIT_S else IDLE_WAIT_S)[0]
            if not ready:
                continue
            if ready[0] == tun:
                for _ in range(READ_BATCH):
                    try:
                        pkt = read(tun, 65535)
                    except BlockingIOError:
                        break
                    d = lookup(pkt[12:20])
                    if d is None:
                        self.unmatched += 1
                        with contextlib.suppress(OSError):
                            write(tun, pkt)
                        continue
                    due = d.admit(mono(), rnd)
                    if due >= 0:
                        seq += 1
                        push(heap, (due, seq, pkt, d))
            if ready[-1] != tun:
                self._serve_one(ctl)

    def _note_late(self, late_ns: int) -> None:
        self.late += 1
        self.late_max_ns = max(self.late_max_ns, late_ns)

    def _serve_one(self, ctl: socket.socket) -> None:
        try:
            conn, _ = ctl.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(0.2)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                if not isinstance(request, dict):
                    raise ValueError(f"a JSON {type(request).__name__}, not an object")
                reply = self.handle(request)
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")


def _pairs(a: str, b: str, directed: bool) -> list[tuple[str, str]]:
    return [(a, b)] if directed else [(a, b), (b, a)]


def _still_ours(netns_path: str, state_dir: Path) -> Any:
    """A check that our router namespace still has its name and our state dir still exists."""
    own = os.stat("/proc/self/ns/net").st_ino

    def alive() -> bool:
        try:
            return os.stat(netns_path).st_ino == own and (state_dir / "state.json").exists()
        except OSError:
            return False

    return alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netopt.lab.stage")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--tun", default="imp0")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--priority", choices=("rr", "nice", "normal"), default="rr")
    args = parser.parse_args(argv)
    state = json.loads((args.state_dir / "state.json").read_text())
    stage = Stage(state, seed=args.seed)
    _tight_timers(args.priority)
    tun = open_tun(args.tun)
    sock_path = args.state_dir / "ctl.sock"
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(str(sock_path))
    ctl.listen(8)
    ctl.setblocking(False)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    alive = _still_ours(f"/run/netns/{state['router_ns']}", args.state_dir)
    # the loop makes no reference cycles; a cyclic GC pass over ~20k queued tuples would
    # stall packets by milliseconds, so collect once now and never again
    gc.collect()
    gc.freeze()
    gc.disable()
    print(f"stage pid={os.getpid()} directions={len(stage.by_pair)} ready", flush=True)
    try:
        stage.run(tun, ctl, alive)
    finally:
        with contextlib.suppress(OSError):
            sock_path.unlink()
        os.close(tun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
