"""The daemon's aiohttp app on loopback with an API worker's server in front of it, in process:
the worker answers table reads from its own copy of the answers and forwards the rest over the
daemon's unix socket, as `api.workers` runs them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from netopt.api.routes import ANSWERS
from netopt.api.workers.http import serve
from netopt.api.workers.pool import Proxy
from netopt.api.workers.site import FastSite
from netopt.push.answers import Answers


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
        server.close()
        await site.close(1.0)
        await proxy.close()
        await runner.cleanup()
