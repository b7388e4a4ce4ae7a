"""Route API throughput and latency: netopt vs nginx serving the same JSON, same run.

    .venv/bin/python bench/route_api.py [--workers 2] [--duration 5] [--connections 50]

netopt: `netopt.api.make_app` (the daemon's own app, auth middleware and all) over a table of
200 regions with 3 PoPs each, answering ``/v1/route?src_ip=…`` (longest-prefix match over
400 prefixes of several lengths, then the pre-rendered answer) in `--workers` processes
sharing the port with SO_REUSEPORT. nginx (Debian nginx-light, same worker count): the
same answer bytes as a static file. wrk (Debian) drives both: saturation (2 threads,
`--connections`) and a paced run at ~2,000 requests/s (wrk Lua `delay`) for p99.
Only 127.0.0.1 is used; every process started here is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_REGIONS = 200


def bench_config():  # type: ignore[no-untyped-def]
    from netopt.config import parse_config

    pops = [
        {
            "id": f"p{i}",
            "role": "edge",
            "address": f"198.18.200.{i + 1}",
            "sip_uri": f"sip:198.18.200.{i + 1}:5060",
            "rtpengine_set": i,
        }
        for i in range(3)
    ]
    regions = [{"id": f"r{i}", "prefixes": [f"198.{18 + (i >> 8) % 2}.{i % 256}.0/24",
                                            f"10.{i}.0.0/16"],
                "e164": [f"+{200 + i}"]} for i in range(N_REGIONS)]  # fmt: skip
    return parse_config({"regions": regions, "pops": pops, "destinations": ["p0"]})


def bench_table():  # type: ignore[no-untyped-def]
    from netopt.decide import RouteTable, TableEntry
    from topology.planner import Expected, Route

    entries = {}
    for i in range(N_REGIONS):
        r = f"r{i}"
        routes = [Route(r, "p0", "relay", (r, f"p{k}", "p0"), f"p{k}",
                        Expected(80.0 + k, 2.0, 0.1, 4.3 - 0.1 * k)) for k in (1, 2)]  # fmt: skip
        routes.append(Route(r, "p0", "direct", (r, "p0"), None, Expected(150, 3, 0.5, 4.0)))
        entries[(r, "p0")] = TableEntry(r, "p0", routes[0], 0.0, "needed", "bench", False,
                                        False, tuple(routes[1:]))  # fmt: skip
    return RouteTable(MappingProxyType(entries), 0.0)


def serve_worker(port: int) -> None:
    """One API process (run as a child: `route_api.py --serve PORT`)."""
    from aiohttp import web

    from netopt.api import make_app
    from netopt.metrics import Metrics

    class Daemon:
        config = bench_config()
        table = bench_table()
        publishers: ClassVar[list[object]] = []
        metrics = Metrics()

        def wall_time(self, mono_s: float) -> float:
            return 1.8e9 + mono_s

    async def main() -> None:
        runner = web.AppRunner(make_app(Daemon()), access_log=None)  # type: ignore[arg-type]
        await runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        await web.SockSite(runner, sock).start()
        ready = os.environ.get("ROUTE_API_READY_DIR")
        if ready:
            Path(ready, str(os.getpid())).touch()  # noqa: ASYNC240 - once, at start
        await asyncio.Event().wait()

    asyncio.run(main())


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
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    if args.serve:
        serve_worker(args.serve)
        return 0
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"needs `{tool}` (Debian: wrk, nginx-light)")
            return 2
    query = "/v1/route?src_ip=10.123.45.67"  # region r123 via its /16
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run as nobody
        (tmp / "ready").mkdir()
        try:
            port = free_port()
            for _ in range(args.workers):
                env = {**os.environ, "PYTHONPATH": str(REPO),
                       "ROUTE_API_READY_DIR": str(tmp / "ready")}  # fmt: skip
                argv = [sys.executable, __file__, "--serve", str(port)]
                procs.append(subprocess.Popen(argv, env=env))
            deadline = time.monotonic() + 30
            while len(list((tmp / "ready").iterdir())) < args.workers:  # every worker bound
                if time.monotonic() > deadline:
                    raise RuntimeError("API workers did not start")
                time.sleep(0.1)
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}{query}") as resp:
                body = resp.read()
            assert b'"region":"r123"' in body, body[:200]
            nport = free_port()
            procs.append(start_nginx(tmp, nport, body, args.workers))
            wait_port(nport)
            pace = tmp / "pace.lua"
            pace.write_text("function delay() return 5 end\n")  # 10 conns x 200/s = ~2000/s
            results = {}
            for name, url in (("netopt", f"http://127.0.0.1:{port}{query}"),
                              ("nginx", f"http://127.0.0.1:{nport}/v1/route")):  # fmt: skip
                wrk(url, 1, args.connections)  # warm-up
                sat = wrk(url, args.duration, args.connections)
                paced = wrk(url, args.duration, 10, pace)
                results[name] = (sat, paced)
        finally:
            for p in procs:
                stop(p)
    print(f"route API, {args.workers} worker(s) each, wrk -t2 -c{args.connections} "
          f"-d{args.duration}s, {len(body)} B answer")  # fmt: skip
    print(f"{'':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} | paced {'req/s':>7} {'p99 ms':>7}")
    for name, (sat, paced) in results.items():
        print(f"{name:8} {sat['rps']:9.0f} {sat['p50_ms']:8.2f} {sat['p99_ms']:8.2f} | "
              f"      {paced['rps']:7.0f} {paced['p99_ms']:7.2f}"
              + (f"  (non-2xx: {sat['non2xx']})" if sat["non2xx"] else ""))  # fmt: skip
    ratio = results["netopt"][0]["rps"] / results["nginx"][0]["rps"]
    print(
        f"ratio netopt/nginx: {ratio:.2f}x (goal >= 0.5x); "
        f"p99 at ~2000 req/s: {results['netopt'][1]['p99_ms']:.2f} ms (goal <= 5 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
