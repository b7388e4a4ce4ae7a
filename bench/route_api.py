"""Route API throughput and latency: `netopt serve` vs nginx serving the same JSON, same run.

    .venv/bin/python bench/route_api.py [--workers 2] [--duration 5] [--connections 50]

netopt: a real `netopt serve` (`api.workers: --workers`; 1 = the daemon's own process, N > 1
= N worker processes sharing the port with SO_REUSEPORT, see `netopt.api.workers.pool`) with 200
regions and 3 PoPs, probing every region → PoP path with ICMP on loopback (one packet per
path every 10 s) and planning as usual, answering ``/v1/route?src_ip=…`` (longest-prefix
match over 400 prefixes of several lengths, then the pre-rendered answer). nginx (Debian
nginx-light, same worker count): the same answer bytes as a static file. wrk (Debian) drives
both: saturation (2 threads, `--connections`) and a paced run at ~2,000 requests/s (wrk Lua
`delay`) for p99. "server CPU us/req": user + system CPU of the processes that serve (the
API workers, or the daemon with 1 worker; nginx's workers) over the saturation run, divided by
the requests served. Only 127.0.0.0/8 is used; every process started here is stopped by PID.
Needs root or net.ipv4.ping_group_range for the daemon's ICMP probes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

N_REGIONS = 200
QUERY = "/v1/route?src_ip=10.123.45.67"  # region r123 via its /16


def bench_config(port: int, workers: int, tmp: Path) -> dict:  # type: ignore[type-arg]
    pops = [
        {
            "id": f"p{i}",
            "role": "core" if i == 0 else "edge",
            "address": f"127.0.0.{i + 2}",
            "sip_uri": f"sip:127.0.0.{i + 2}:5060",
            "rtpengine_set": i,
        }
        for i in range(3)
    ]
    regions = [{"id": f"r{i}", "prefixes": [f"198.{18 + (i >> 8) % 2}.{i % 256}.0/24",
                                            f"10.{i}.0.0/16"],
                "e164": [f"+{200 + i}"]} for i in range(N_REGIONS)]  # fmt: skip
    probes = [{"kind": "icmp", "from": r["id"], "to": ["p0", "p1", "p2"], "interval_s": 10,
               "count": 1, "timeout_s": 1} for r in regions]  # fmt: skip
    return {
        "regions": regions, "pops": pops, "destinations": ["p0"], "probes": probes,
        "backbone": [{"a": "p1", "b": "p0", "rtt_ms": 20}, {"a": "p2", "b": "p0", "rtt_ms": 30}],
        "api": {"listen": f"127.0.0.1:{port}", "workers": workers},
        "store": {"url": f"sqlite:///{tmp / 'netopt.db'}"},
    }  # fmt: skip


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("X-Netopt-Worker", "main"), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", exc.read()
    except OSError:
        return 0, "", b""


def start_netopt(tmp: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """`netopt serve`; returns once r123 is routed and every API process has answered."""
    import yaml

    conf = tmp / "netopt.yaml"
    conf.write_text(yaml.safe_dump(bench_config(port, workers, tmp)))
    argv = [sys.executable, "-m", "netopt", "serve", "--config", str(conf)]
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log)
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        status, worker, _ = get(f"http://127.0.0.1:{port}{QUERY}")
        if status == 200:
            seen.add(worker)
            if len(seen) >= workers:
                return proc
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"netopt serve not routing in time: {(tmp / 'serve.log').read_text()}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def servers_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone: a restarted worker's CPU is lost
            total += cpu_s(pid)
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(url: str, duration_s: int, connections: int, script: Path | None = None) -> dict:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    lat = {m[1]: _ms(m[2]) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non2xx": int(errors[1]) if errors else 0}  # fmt: skip


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def start_nginx(tmp: Path, port: int, body: bytes, workers: int) -> subprocess.Popen[bytes]:
    (tmp / "www" / "v1").mkdir(parents=True)
    (tmp / "www" / "v1" / "route").write_bytes(body)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/json;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {tmp}/www;
        location = /v1/route {{ try_files /v1/route =404; }}
    }}
}}
""")
    return subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"needs `{tool}` (Debian: wrk, nginx-light)")
            return 2
    procs: list[subprocess.Popen[bytes]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run as nobody
        try:
            port = free_port()
            daemon = start_netopt(tmp, port, args.workers)
            procs.append(daemon)
            _, _, body = get(f"http://127.0.0.1:{port}{QUERY}")
            assert json.loads(body)["region"] == "r123", body[:200]
            nport = free_port()
            nginx = start_nginx(tmp, nport, body, args.workers)
            procs.append(nginx)
            wait_port(nport)
            # the processes that serve: the API workers (or the daemon), nginx's workers
            workers = [
                p
                for p in children(daemon.pid)
                if b"netopt.api.workers.pool" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
            serving = {"netopt": workers or [daemon.pid], "nginx": children(nginx.pid)}
            pace = tmp / "pace.lua"
            pace.write_text("function delay() return 5 end\n")  # 10 conns x 200/s = ~2000/s
            results = {}
            for name, url in (("netopt", f"http://127.0.0.1:{port}{QUERY}"),
                              ("nginx", f"http://127.0.0.1:{nport}/v1/route")):  # fmt: skip
                wrk(url, 1, args.connections)  # warm-up
                cpu0 = cpu_s(daemon.pid)
                served0 = servers_cpu_s(serving[name])
                sat = wrk(url, args.duration, args.connections)
                served_us = (servers_cpu_s(serving[name]) - served0) / (
                    sat["rps"] * args.duration) * 1e6  # fmt: skip
                paced = wrk(url, args.duration, 10, pace)
                results[name] = (sat, paced, cpu_s(daemon.pid) - cpu0, served_us)
        finally:
            for p in procs:
                stop(p)
    load_after = os.getloadavg()
    print(f"route API, {args.workers} worker(s) each, wrk -t2 -c{args.connections} "
          f"-d{args.duration}s, {len(body)} B answer; load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f}")  # fmt: skip
    print(f"{'':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} | paced {'req/s':>7} {'p99 ms':>7}"
          " | daemon main CPU s | server CPU us/req")  # fmt: skip
    for name, (sat, paced, cpu, served_us) in results.items():
        print(f"{name:8} {sat['rps']:9.0f} {sat['p50_ms']:8.2f} {sat['p99_ms']:8.2f} | "
              f"      {paced['rps']:7.0f} {paced['p99_ms']:7.2f} | {cpu:17.1f} | {served_us:.0f}"
              + (f"  (non-2xx: {sat['non2xx']})" if sat["non2xx"] else ""))  # fmt: skip
    ratio = results["netopt"][0]["rps"] / results["nginx"][0]["rps"]
    print(
        f"ratio netopt/nginx: {ratio:.2f}x (goal >= 0.5x); "
        f"p99 at ~2000 req/s: {results['netopt'][1]['p99_ms']:.2f} ms (goal <= 5 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
