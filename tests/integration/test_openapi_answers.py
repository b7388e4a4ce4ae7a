"""Real answers against the OpenAPI document, from the daemon's app and from an API worker.

A real `Daemon` (its store, tracer, reload) serves the whole app on loopback and on a unix
socket; an API worker's `FastSite` answers table reads itself and forwards the rest there,
as in production. Every request below (one per route and status that can be provoked) must
get a status the document lists for that operation, its required headers, its media type,
and a body that validates against the documented schema."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from netopt.api.batch import encode_batch
from netopt.api.openapi import openapi_document
from netopt.api.routes import ANSWERS
from netopt.config import ApiConfig
from netopt.daemon.trace import TraceRecord
from netopt.daemon.wiring import Daemon
from netopt.push.answers import Answers
from netopt.store import RoundRecord
from tests.daemon_app import app_and_worker, daemon_with_app
from tests.routes_fixture import table
from tests.unit.assess.test_analysis import lossy_direct

READ, ADMIN, AGENT = "read-0123456789abcd", "admin-0123456789abcd", "agent-0123456789abcd"
CONFIG: dict[str, Any] = {
    "regions": [
        {"id": "lagos", "country": "NG", "prefixes": ["198.18.100.0/24"], "e164": ["+234"]},
        {"id": "nairobi", "country": "KE", "prefixes": ["198.18.101.0/24"]},
    ],
    "pops": [
        {"id": "fra", "role": "core", "address": "198.18.1.1", "sip_uri": "sip:198.18.1.1:5060",
         "rtpengine_set": 1},
        {"id": "jnb", "role": "edge", "address": "198.18.2.1", "sip_uri": "sip:198.18.2.1:5060"},
        {"id": "lfw", "role": "edge", "address": "198.18.3.1"},
    ],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160}, {"a": "lfw", "b": "fra", "rtt_ms": 90}],
    "agents": [{"id": "agent-lagos", "site": "lagos", "token": AGENT}],
    "api": {"listen": "127.0.0.1:0", "read_token": READ, "admin_token": ADMIN},
    "ingest": {"max_body_bytes": 64 * 1024},
}  # fmt: skip
R, A, G = ({"Authorization": f"Bearer {t}"} for t in (READ, ADMIN, AGENT))


class Checker:
    """Validates answers against the document; remembers which (method, path, status) it saw."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc, self.seen = doc, set[tuple[str, str, int]]()

    def template(self, path: str) -> str:
        """The documented path `path` falls under (`/v1/assessments/7` → `…/{id}`)."""
        if path in self.doc["paths"]:
            return path
        for documented in self.doc["paths"]:
            pattern = re.sub(r"\\{\w+\\}", "[^/]+", re.escape(documented))
            if re.fullmatch(pattern, path):
                return str(documented)
        raise AssertionError(f"{path} is not a documented path")

    def check(self, method: str, path: str, status: int, headers: Any, body: bytes) -> None:
        path = self.template(path)
        where = (method, path, status, body[:200])
        op = self.doc["paths"][path][method.lower()]
        assert str(status) in op["responses"], where  # every status is documented
        resp = op["responses"][str(status)]
        for name, h in resp.get("headers", {}).items():
            assert not h["required"] or name in headers, (where, name)
        content = resp.get("content")
        if method == "HEAD" or content is None:
            assert body == b"", where
        else:
            media = headers["Content-Type"].split(";")[0]
            assert media in content, (where, media)
            schema = content[media].get("schema")
            if schema is not None:
                full = {**schema, "components": self.doc["components"]}
                jsonschema.validate(
                    json.loads(body), full, format_checker=jsonschema.FormatChecker()
                )
        self.seen.add((method, path, status))


async def call(session: aiohttp.ClientSession, base: str, checker: Checker, method: str,
               target: str, headers: dict[str, str] | None = None, body: bytes | None = None,
               ) -> tuple[int, bytes]:  # fmt: skip
    async with session.request(method, base + target, headers=headers, data=body) as resp:
        raw = await resp.read()
        checker.check(method, target.partition("?")[0], resp.status, resp.headers, raw)
        return resp.status, raw


def batch(agent: str = "agent-lagos", src: str = "lagos") -> bytes:
    t = int((time.time() - 5) * 1e9)
    rounds = [RoundRecord(t, src, "fra", "icmp", 5, 5, 1.0, 1.2, 1.1, 1.5, 2.0, 0.1)]
    return encode_batch(agent, f"b{time.monotonic_ns()}", rounds, 0)


class World:
    def __init__(self, daemon: Daemon, app: web.Application, worker: Answers, path: Path):
        self.daemon, self.app, self.worker, self.config_path = daemon, app, worker, path

    def set_table(self) -> None:
        self.daemon.table = table({"lagos": ["jnb", "fra", "lfw"]})
        self.app[ANSWERS].publish(self.daemon.table)
        self.worker.load(self.app[ANSWERS].snapshot())  # as the daemon ships it
        hops = ({"ttl": 1, "address": "198.18.0.1", "reached": False, "rtt_ms": [0.2, None]},
                {"ttl": 2, "address": None, "reached": False, "rtt_ms": [None, None]})  # fmt: skip
        self.daemon.tracer.traces.append(TraceRecord(1.8e9, "lagos", "fra", "198.18.1.1", "loss",
                                                     "loss 3 %", "udp", False, hops))  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, int, int]]:
    """(the world, the daemon app's port, the worker's port)."""
    config = {**CONFIG, "store": {"url": f"sqlite:///{tmp_path / 'n.db'}"}}
    async with (
        daemon_with_app(config, tmp_path) as (daemon, app, path),
        app_and_worker(app, daemon, tmp_path) as (app_port, worker_port, answers),
    ):
        yield World(daemon, app, answers, path), app_port, worker_port


async def test_the_served_document_is_the_generated_one(world: tuple[World, int, int]) -> None:
    _, app_port, worker_port = world
    want = openapi_document(reads_open=False)
    async with aiohttp.ClientSession() as session:
        for port in (app_port, worker_port):
            async with session.get(f"http://127.0.0.1:{port}/openapi.json", headers=R) as resp:
                assert resp.status == 200 and await resp.json() == want


async def run_everything(session: aiohttp.ClientSession, base: str, w: World, c: Checker) -> None:
    for method in ("GET", "HEAD"):
        for target in ("/readyz", "/v1/route?region=lagos"):  # no table yet: 503
            assert (await call(session, base, c, method, target, R))[0] == 503
    w.set_table()
    get = {
        "/v1/route?region=lagos": 200, "/v1/route?src_ip=198.18.100.9&format=rtjson": 200,
        "/v1/route?caller=%2B2348030000000&dest=fra": 200, "/v1/route?country=ng": 200,
        "/v1/route?region=nairobi": 503, "/v1/route?region=atlantis": 404,
        "/v1/route?region=lagos&dest=ams": 404, "/v1/route?src_ip=192.0.2.1": 404,
        "/v1/route": 400, "/v1/route?region=lagos&country=NG": 400, "/v1/route?src_ip=1.2.3": 400,
        "/v1/route?region=lagos&x=1": 400, "/v1/route?region=lagos&format=xml": 400,
        "/v1/routes": 200, "/v1/regions": 200, "/v1/pops": 200, "/v1/paths?region=lagos": 200,
        "/v1/paths?region=lagos&region=lagos": 400, "/v1/paths?country=KE": 200,
        "/v1/paths?region=nowhere": 404, "/v1/traces": 200, "/v1/traces?src=lagos&dst=fra": 200,
        "/v1/traces?src=%20": 400, "/v1/traces?what=1": 400, "/healthz": 200, "/readyz": 200,
        "/metrics": 200, "/openapi.json": 200, "/": 200,
    }  # fmt: skip
    for method in ("GET", "HEAD"):
        for target, status in get.items():
            got, body = await call(session, base, c, method, target, R)
            assert got == status, (method, target, body[:200])
        assert (await call(session, base, c, method, "/v1/routes"))[0] == 401
    post = [
        ("/v1/ingest", G, batch(), 200), ("/v1/ingest", None, batch(), 401),
        ("/v1/ingest", R, batch(), 401), ("/v1/ingest", G, batch("ghost"), 403),
        ("/v1/ingest", G, batch(src="fra"), 403), ("/v1/ingest", G, b"\x1f\x8bnope", 400),
        ("/v1/ingest", G, gzip.compress(b"[1]"), 400), ("/v1/ingest", G, b"x" * 70_000, 413),
        ("/v1/admin/publish", A, None, 200), ("/v1/admin/publish", R, None, 401),
        ("/v1/admin/reload", A, None, 200), ("/v1/admin/reload", None, None, 401),
    ]  # fmt: skip
    report = lossy_direct().model_dump_json().encode()
    post += [
        ("/v1/assessments", A, report, 201), ("/v1/assessments", R, report, 401),
        ("/v1/assessments", A, b'{"site": 1}', 400),
        ("/v1/assessments", A, b"x" * ((8 << 20) + 1), 413),
    ]  # fmt: skip
    for target, auth, body, status in post:
        headers = {**(auth or {}), "Content-Encoding": "gzip"} if target == "/v1/ingest" else auth
        got, answer = await call(session, base, c, "POST", target, headers, body)
        assert got == status, (target, answer[:200])
    for method in ("GET", "HEAD"):
        for target, auth, status in [
            ("/v1/assessments", A, 200), ("/v1/assessments", R, 401),
            ("/v1/assessments/1", A, 200), ("/v1/assessments/99999", A, 404),
            ("/v1/assessments/one", A, 400), ("/v1/assessments/99999999999999999999", A, 400),
        ]:  # fmt: skip
            got, answer = await call(session, base, c, method, target, auth)
            assert got == status, (method, target, answer[:200])
    good = w.config_path.read_text()
    w.config_path.write_text(good.replace("destinations:", "destinations: [ams]\nx:"))
    assert (await call(session, base, c, "POST", "/v1/admin/reload", A))[0] == 400
    w.config_path.write_text(good)
    closed = w.daemon.config.model_copy(update={"api": ApiConfig(read_token=READ)})
    w.daemon.config, kept = closed, w.daemon.config
    for target in ("/v1/admin/reload", "/v1/admin/publish"):
        assert (await call(session, base, c, "POST", target, A))[0] == 403
    w.daemon.config = kept


@pytest.mark.parametrize("who", ["daemon", "worker"])
async def test_real_answers_match_the_document(world: tuple[World, int, int], who: str) -> None:
    w, app_port, worker_port = world
    checker = Checker(openapi_document(reads_open=False))
    base = f"http://127.0.0.1:{app_port if who == 'daemon' else worker_port}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        await run_everything(session, base, w, checker)
    statuses = {(p, s) for m, p, s in checker.seen}
    for path, status in [("/v1/route", 503), ("/v1/ingest", 413), ("/v1/admin/reload", 403),
                         ("/v1/traces", 200), ("/readyz", 503), ("/v1/paths", 404)]:  # fmt: skip
        assert (path, status) in statuses
    documented = {(p, m.upper()) for p, ops in checker.doc["paths"].items() for m in ops}
    assert documented == {(p, m) for m, p, _ in checker.seen}  # every operation was asked
