"""The workers' HTTP server (netopt.api.workers.http) against the daemon's aiohttp app
(netopt.api.routes), same table, same raw request bytes over loopback: same status, body bytes
and content type.

Arranged as in production: the app also listens on a unix socket and the fast server
forwards what it does not answer itself there (`netopt.api.workers.pool.Proxy`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netopt.api.routes import ANSWERS, make_app
from netopt.api.workers.http import serve
from netopt.api.workers.pool import Proxy
from netopt.api.workers.site import FastSite
from netopt.config import ApiConfig
from netopt.push.answers import Answers
from tests.daemon_app import app_and_worker
from tests.routes_fixture import FakeDaemon, table, world_config
from tests.unit.api.workers.test_http_fast import responses

READ = "r" * 16
ADMIN = "a" * 16

TARGETS = [
    "/v1/route?region=lagos", "/v1/route?src_ip=198.18.100.20", "/v1/route?src_ip=127.0.0.1",
    "/v1/route?caller=%2B2348030000000", "/v1/route?caller=+2348030000000",
    "/v1/route?region=lagos&region=nairobi", "/v1/route?region=lagos;dest=fra",
    "/v1/route?region=la%67os", "/v1/route?region=lagos&format=rtjson",
    "/v1/route?src_ip=198.18.101.7&format=rtjson", "/v1/route?region=lagos&format=",
    "/v1/route?", "/v1/route", "/v1/route?region", "/v1/route?region=lagos#frag",
    "/v1/route?region=%ZZ", "/v1/route?region=l%C3%A4gos", "/v1/route?region=%FF",
    "/v1/route?country=NG", "/v1/route?country=ng", "/v1/route?region=nairobi",
    "/v1/route?dest=fra&region=lagos", "/v1/route?region=lagos&dest=ams",
    "/v1/route?&&region=lagos&&", "/v1/route?region=lag%00os", "/v1/route?region=lagos&x=%",
    "/v1/route?region=lagos&src_ip=", "/v1/route?src_ip=%3A%3A1",
    "/v1/routes", "/v1/regions", "/v1/pops", "/healthz", "/readyz", "/openapi.json",
    "/v1/paths?region=lagos", "/v1/paths?region=nowhere", "/v1/traces", "/v1/nothing",
    "/v1/%72oute?region=lagos", "//v1/route?region=lagos", "/v1/route/?region=lagos",
    "/v1/routes?x=1", "/healthz?verbose",
]  # fmt: skip


async def exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def req(method: str, target: str, auth: str | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: x", "Connection: close"]
    if auth is not None:
        lines.append(f"Authorization: Bearer {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@pytest.fixture(params=["open", "tokens"])
async def servers(request: Any, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """(aiohttp app port, fast server port), one table, tokens on in the second run."""
    daemon = FakeDaemon(world_config())
    if request.param == "tokens":
        api = ApiConfig(read_token=READ, admin_token=ADMIN)
        daemon.config = daemon.config.model_copy(update={"api": api})
    app = make_app(daemon)  # type: ignore[arg-type]
    daemon.publishers.append(app[ANSWERS].publish)
    daemon.set_table(table({"lagos": ["jnb", "fra"]}))
    async with app_and_worker(app, daemon, tmp_path) as (app_port, fast_port, _):
        yield app_port, fast_port


@pytest.mark.parametrize("auth", [None, READ, ADMIN, "x" * 16])
async def test_same_answers_as_the_daemons_app(servers: tuple[int, int], auth: str | None):
    app_port, fast_port = servers
    for method in ("GET", "HEAD", "POST", "DELETE"):
        for target in TARGETS:
            raw = req(method, target, auth)
            heads = frozenset({0}) if method == "HEAD" else frozenset()
            ((want_status, want_h, want_body),) = responses(await exchange(app_port, raw), heads)
            ((status, headers, body),) = responses(await exchange(fast_port, raw), heads)
            where = (method, target, auth)
            assert status == want_status, (where, body[:300], want_body[:300])
            if want_status == 400 and want_h["content-type"].startswith("text/plain"):
                continue  # refused by aiohttp's parser (in text); ours refuses in JSON
            assert headers.get("content-type") == want_h.get("content-type"), where
            assert headers["x-netopt-worker"], where
            if status == 503:
                assert headers["retry-after"] == "1", where
            if target.startswith("/metrics"):
                continue  # counters move between the two requests
            assert body == want_body, where
            if method == "HEAD":
                assert headers.get("content-length") == want_h.get("content-length"), where


async def test_ingest_sized_post_reaches_the_daemon(servers: tuple[int, int]) -> None:
    """A body the daemon refuses (no such agent) gets the daemon's own answer, not ours."""
    app_port, fast_port = servers
    body = b"\x1f\x8b" + bytes(range(256)) * 40
    raw = (b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip"
           b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body  # fmt: skip
    ((want, _, want_body),) = responses(await exchange(app_port, raw))
    ((got, _, got_body),) = responses(await exchange(fast_port, raw))
    assert (got, got_body) == (want, want_body)


async def test_a_half_sent_request_does_not_hold_up_others(servers: tuple[int, int]) -> None:
    _, fast_port = servers
    _, slow = await asyncio.open_connection("127.0.0.1", fast_port)
    slow.write(b"GET /v1/route?region=lagos HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and no more
    await slow.drain()
    try:
        for _ in range(3):
            ((status, headers, _),) = responses(await exchange(fast_port, req("GET", "/healthz")))
            assert status == 200 and headers["x-netopt-worker"]
    finally:
        slow.close()


async def test_a_silent_daemon_gets_502_from_the_worker(tmp_path: Path) -> None:
    answers = Answers(world_config(), lambda mono_s: mono_s)
    proxy = Proxy(str(tmp_path / "nobody.sock"))  # nothing listens there
    await proxy.start()
    site = FastSite(answers, ApiConfig(), proxy.forward, 1 << 20)
    server = await serve(site, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        ((status, headers, body),) = responses(await exchange(port, req("GET", "/metrics")))
        assert status == 502 and headers["x-netopt-worker"] and b"daemon" in body
        ((status, headers, _),) = responses(await exchange(port, req("GET", "/v1/route?x")))
        assert status == 400  # the table-only reads do not need the daemon
        ((status, headers, _),) = responses(await exchange(port, req("GET", "/readyz")))
        assert status == 503 and headers["retry-after"] == "1"
    finally:
        await server.close(1.0)
        await proxy.close()
