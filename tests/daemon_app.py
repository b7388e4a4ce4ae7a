"""A daemon and its HTTP faces in process, for integration tests: `daemon_with_app` (a Daemon
from a config dict, its store writer running, its aiohttp app with every route the daemon
wires), `served` (that app on loopback) and `app_and_worker` (the app with an API worker's
server in front of it: table reads from the worker's own answers, the rest forwarded over the
daemon's unix socket, as `api.workers` runs them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from netopt.api.ingest import add_routes
from netopt.api.routes import ANSWERS, make_app
from netopt.api.workers.http import serve
from netopt.api.workers.pool import Proxy
from netopt.api.workers.site import FastSite
from netopt.assess.api import add_routes as add_assessment_routes
from netopt.config import load_config
from netopt.daemon.wiring import Daemon
from netopt.push.answers import Answers


@contextlib.asynccontextmanager
async def daemon_with_app(config: dict[str, Any], tmp: Path) -> AsyncIterator[
    tuple[Daemon, web.Application, Path]
]:  # fmt: skip
    """(the daemon, its app, its config file); the store's writer runs meanwhile."""
    path = tmp / "netopt.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = Daemon(load_config(path), config_path=path)
    writer = asyncio.create_task(daemon.store.run(0.05))
    app = add_assessment_routes(add_routes(make_app(daemon), daemon), daemon)
    try:
        yield daemon, app, path
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await daemon.store.aclose()


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port; its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def app_and_worker(app: web.Application, daemon: Any, tmp: Path) -> AsyncIterator[
    tuple[int, int, Answers]
]:  # fmt: skip
    """(the app's port, the worker's port, the worker's answers); everything closed after."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    await web.UnixSite(runner, str(tmp / "main.sock")).start()
    answers = Answers(daemon.config, daemon.wall_time)
    answers.load(app[ANSWERS].snapshot())
    proxy = Proxy(str(tmp / "main.sock"))
    await proxy.start()
    site = FastSite(answers, daemon.config.api, proxy.forward, 1 << 20)
    server = await serve(site, "127.0.0.1", 0)
    try:
        app_port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield app_port, server.sockets[0].getsockname()[1], answers
    finally:
        await server.close(1.0)
        await proxy.close()
        await runner.cleanup()
