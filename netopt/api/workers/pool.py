"""Route API worker processes: ... RouteTable → answers → **API workers** (N processes, one port).

With `api.workers: N` (N > 1) the daemon does not accept on `api.listen` itself: N worker
processes (`python -m netopt.api.workers.pool`) do, sharing the port with SO_REUSEPORT, and the
daemon serves its whole app (ingest, admin, `/metrics`, `/v1/paths`, `/v1/traces`) on a
private unix socket instead. The main process stays off the public port on purpose: its one
event loop paces probe rounds (20 ms voice packets) and plans, and a proxy hammering the API
must not delay those; the workers take the load on the other cores. (`workers: 1` keeps
today's single process.)

Any worker may get any connection, so every worker answers every path: the table-only reads
(`/v1/route`, `/v1/routes`, `/v1/regions`, `/v1/pops`, `/readyz`, `/healthz`,
`/openapi.json`) from its own copy of the daemon's rendered answers, everything else by
forwarding the request to the daemon's unix socket. Each change of the daemon's `Answers`
(a new table, a reloaded config) is shipped whole — pickled over one socketpair per worker,
coalesced so a slow worker gets only the newest — and swapped in by one synchronous step, so a
worker never serves half a table. A worker exits on SIGTERM (the daemon stops them by PID)
and when its socketpair closes (the daemon exited or was killed -9): no orphans. The daemon
restarts a worker that died. Every worker response carries `X-Netopt-Worker: <pid>`.

A worker speaks HTTP with `netopt.api.workers.http` (an asyncio protocol on httptools; answers and
token rules in `netopt.api.workers.site`), not aiohttp's server: in bench/route_api.py a worker
spends ~25–40 µs of CPU per request, kernel included, where aiohttp's server spent 80–140.
What it forwards goes through `Proxy` (aiohttp's client, one pooled unix-socket session),
bodies capped at `max(ingest.max_body_bytes, 1 MiB)` (413 past that; chunked bodies are
de-chunked and forwarded with a length).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pickle
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from netopt.api.routes import JSON
from netopt.api.workers.http import serve
from netopt.api.workers.site import FastSite, Upstream
from netopt.child import log_level, run_child, stop_process
from netopt.push.answers import Answers, TableAnswers, error_body

if TYPE_CHECKING:
    from netopt.config import ApiConfig, Config

log = logging.getLogger("netopt.api_workers")

START_TIMEOUT_S = 60.0  # a worker imports aiohttp and netopt on a busy 2-core machine
RESTART_DELAY_S = 1.0
PROXY_TIMEOUT_S = 30.0
_HEADER = struct.Struct("!II")  # frame: config length (0: unchanged), table length
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "te", "trailer", "upgrade", "host"})  # fmt: skip


# --- the daemon's side --------------------------------------------------------------------
class WorkerPool:
    """Starts, feeds, restarts and stops the worker processes (in the daemon)."""

    def __init__(self, count: int, host: str, port: int, main_socket: str) -> None:
        self.count, self.host, self.port, self.main_socket = count, host, port, main_socket
        self._latest: tuple[Config, TableAnswers] | None = None
        self._wake = [asyncio.Event() for _ in range(count)]
        self._frames: dict[int, tuple[object, bytes]] = {}  # id → (object, pickled) cache

    def ship(self, answers: Answers) -> None:
        """`Answers.on_change` hook: the newest config and table go to every worker."""
        self._latest = (answers.config, answers.snapshot())
        for wake in self._wake:
            wake.set()

    def _pickled(self, obj: object) -> bytes:
        kept = self._frames.get(id(obj))
        if kept is None or kept[0] is not obj:
            kept = (obj, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
            if len(self._frames) > 4:
                self._frames.clear()
            self._frames[id(obj)] = kept
        return kept[1]

    async def _send(self, index: int, writer: asyncio.StreamWriter) -> None:
        sent_config: Config | None = None
        wake = self._wake[index]
        wake.set()  # a (re)started worker gets the newest state at once
        while True:
            await wake.wait()
            wake.clear()
            assert self._latest is not None
            config, table = self._latest
            conf = b"" if config is sent_config else self._pickled(config)
            body = self._pickled(table)
            try:
                writer.write(_HEADER.pack(len(conf), len(body)) + conf + body)
                await writer.drain()
            except OSError:  # the worker died: its supervisor restarts it
                return
            sent_config = config

    async def supervise(self, index: int, started: asyncio.Event) -> None:
        """Run worker `index` until cancelled, restarting it when it dies."""
        while True:
            await self._run_once(index, started)
            log.error("api_worker_exited index=%d (restarting in %.0f s)", index, RESTART_DELAY_S)
            await asyncio.sleep(RESTART_DELAY_S)

    async def _run_once(self, index: int, started: asyncio.Event) -> None:
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "netopt.api.workers.pool", "--fd", str(theirs.fileno()),
                "--index", str(index), "--host", self.host, "--port", str(self.port),
                "--main-socket", self.main_socket, "--log-level", log_level(),
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        try:
            sender = asyncio.create_task(self._send(index, writer))
            try:
                await asyncio.wait_for(reader.readexactly(1), START_TIMEOUT_S)
            except (asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
                log.error("api_worker_not_started index=%d error=%r", index, exc)
            else:
                started.set()
                log.info("api_worker_listening index=%d pid=%d", index, proc.pid)
                await proc.wait()
        finally:
            sender.cancel()  # not awaited: that could swallow our own cancellation
            await stop_process(proc)
            writer.close()


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) the API port with SO_REUSEPORT: fixes port 0 to a number for the
    workers and keeps it ours while a worker restarts. Connections go to listeners only."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_with_workers(
    app: web.Application,
    answers: Answers,
    api: ApiConfig,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` on a private unix socket and the API on `api.listen` from `api.workers`
    processes, until cancelled; `on_listening` gets the base URL once every worker listens."""
    tmp = Path(tempfile.mkdtemp(prefix="netopt-api-"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    reserved = _reserve(api.host, api.port)
    try:
        main_socket = str(tmp / "main.sock")
        await web.UnixSite(runner, main_socket).start()
        port = reserved.getsockname()[1]
        pool = WorkerPool(api.workers, api.host, port, main_socket)
        pool.ship(answers)
        answers.on_change.append(pool.ship)
        try:
            async with asyncio.TaskGroup() as tg:
                started = [asyncio.Event() for _ in range(api.workers)]
                for index, event in enumerate(started):
                    tg.create_task(pool.supervise(index, event))
                async with asyncio.timeout(START_TIMEOUT_S + 5):
                    for event in started:
                        await event.wait()
                log.info("api_workers_listening workers=%d port=%d", api.workers, port)
                if on_listening is not None:
                    host = f"[{api.host}]" if ":" in api.host else api.host
                    on_listening(f"http://{host}:{port}")
        finally:
            answers.on_change.remove(pool.ship)
    finally:
        reserved.close()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# --- the worker's side --------------------------------------------------------------------
async def read_frame(reader: asyncio.StreamReader) -> tuple[Config | None, TableAnswers]:
    """One shipped state; IncompleteReadError when the daemon's end closed."""
    conf_len, body_len = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    conf = await reader.readexactly(conf_len) if conf_len else b""
    body = await reader.readexactly(body_len)
    config = pickle.loads(conf) if conf else None  # from our own parent only (socketpair)
    return config, pickle.loads(body)


def apply_frame(answers: Answers, config: Config | None, table: TableAnswers) -> None:
    """Swap in shipped state in one synchronous step: no request sees half of it."""
    if config is not None:
        answers.reconfigure(config)
    answers.load(table)


class Proxy:
    """Forwards a request the worker cannot answer to the daemon's unix socket."""

    def __init__(self, main_socket: str) -> None:
        self.main_socket = main_socket
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.main_socket), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S),
        )  # fmt: skip

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, peer: str
    ) -> Upstream:
        """The daemon's answer (502 if it gives none); `target` is origin-form, as received."""
        assert self.session is not None
        sent = CIMultiDict(headers)
        sent["X-Forwarded-For"] = peer
        try:
            async with self.session.request(
                method, URL("http://netopt" + target, encoded=True), headers=sent,
                data=body or None, allow_redirects=False,
            ) as resp:  # fmt: skip
                payload = await resp.read()
                out = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP]
                length = resp.headers.get("Content-Length")
                return Upstream(resp.status, resp.reason or "", out, payload, length)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("api_worker_proxy_failed target=%s error=%r", target[:200], exc)
            body = error_body("the daemon did not answer (api worker proxy)")
            return Upstream(502, "Bad Gateway", [("Content-Type", JSON)], body)


async def worker_main(fd: int, index: int, host: str, port: int, main_socket: str) -> None:
    """Wait for the first shipped state, listen, then follow the daemon until it goes."""
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    config, table = await read_frame(reader)
    assert config is not None, "the first frame carries the config"
    answers = Answers(config, lambda mono_s: mono_s)  # never renders: tables come shipped
    answers.load(table)
    proxy = Proxy(main_socket)
    await proxy.start()
    max_body = max(config.ingest.max_body_bytes, 1 << 20)  # the daemon applies its own cap
    # bodies are forwarded as they came (an agent's gzip batch stays gzip for the daemon)
    site = FastSite(answers, config.api, proxy.forward, max_body)
    server = await serve(site, host, port)
    try:
        writer.write(b"R")
        await writer.drain()
        while True:
            apply_frame(answers, *await read_frame(reader))
    except asyncio.IncompleteReadError:
        log.info("api_worker_stopping index=%d reason=pipe_closed (daemon gone)", index)
    finally:
        await server.close(1.0)
        await proxy.close()
        writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A route API worker process (started by netopt)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--main-socket", required=True)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    return run_child(
        args.log_level,
        lambda: worker_main(args.fd, args.index, args.host, args.port, args.main_socket),
    )


if __name__ == "__main__":
    sys.exit(main())
