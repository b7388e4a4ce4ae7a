"""The route API over real HTTP on loopback (aiohttp server, hand-made tables, no probing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from netopt.api.routes import ANSWERS, make_app
from netopt.config import ApiConfig
from tests.routes_fixture import FakeDaemon, table, world_config
from topology.planner import PathStats

READ = "r" * 16
ADMIN = "a" * 16


async def client_for(daemon: FakeDaemon) -> TestClient[Any, Any]:
    app = make_app(daemon)  # type: ignore[arg-type]
    daemon.publishers.append(app[ANSWERS].publish)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeDaemon, TestClient[Any, Any]]]:
    daemon = FakeDaemon(world_config())
    client = await client_for(daemon)
    try:
        yield daemon, client
    finally:
        await client.close()


async def get(client: TestClient[Any, Any], url: str, **kw: Any) -> tuple[int, Any]:
    resp = await client.get(url, **kw)
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


async def test_route_by_every_selector(api: tuple[FakeDaemon, Any]) -> None:
    daemon, client = api
    status, body = await get(client, "/v1/route?region=lagos")
    assert status == 503 and "no route" in body["error"]
    daemon.set_table(table({"lagos": ["jnb", "fra"], "nairobi": ["lfw", "fra"]}))
    for query in ("region=lagos", "src_ip=198.18.100.20", "caller=%2B2348030000000",
                  "country=NG", "src_ip=127.0.0.1&dest=fra"):  # fmt: skip
        status, body = await get(client, f"/v1/route?{query}")
        assert status == 200, (query, body)
        assert body["region"] == "lagos" and body["primary"]["pop"] == "jnb"
        assert body["fallbacks"][0]["pop"] == "fra"
        assert set(body["expected"]) == {"mos", "rtt_ms", "jitter_ms", "loss_pct"}
        assert body["stale"] is False and body["acceleration"] == "needed"
    status, body = await get(client, "/v1/route?src_ip=198.18.101.7&format=rtjson")
    assert status == 200 and body["routing"] == "serial"
    assert [r["dst_uri"] for r in body["routes"]] == ["sip:198.18.3.1:5060", "sip:198.18.1.1:5060"]


@pytest.mark.parametrize(
    ("query", "status", "word"),
    [
        ("", 400, "exactly one"),
        ("region=lagos&src_ip=1.2.3.4", 400, "exactly one"),
        ("src_ip=300.1.1.1", 400, "not an IP"),
        ("caller=abc", 400, "E.164"),
        ("country=NGA", 400, "country"),
        ("region=lagos&format=xml", 400, "format"),
        ("region=atlantis", 404, "atlantis"),
        ("src_ip=192.0.2.1", 404, "no region"),
        ("caller=%2B4930123", 404, "no region"),
        ("region=lagos&dest=ams", 404, "ams"),
    ],
)
async def test_errors(api: tuple[FakeDaemon, Any], query: str, status: int, word: str) -> None:
    daemon, client = api
    daemon.set_table(table({"lagos": ["jnb"]}))
    got, body = await get(client, f"/v1/route?{query}")
    assert got == status and word in body["error"]


async def test_lists_paths_and_health(api: tuple[FakeDaemon, Any]) -> None:
    daemon, client = api
    daemon.stats = [PathStats("lagos", "jnb", 80.0, 2.0, 0.5, 10),
                    PathStats("nairobi", "fra", 120.0, 1.0, 0.0, 10)]  # fmt: skip
    daemon.set_table(table({"lagos": ["jnb", "fra"], "nairobi": ["fra"]}))
    status, body = await get(client, "/v1/routes")
    assert status == 200 and [r["region"] for r in body["routes"]] == ["lagos", "nairobi"]
    status, body = await get(client, "/v1/regions")
    assert [r["id"] for r in body["regions"]] == ["lagos", "nairobi"]
    status, body = await get(client, "/v1/pops")
    assert {p["id"] for p in body["pops"]} == {"fra", "jnb", "lfw"}
    status, body = await get(client, "/v1/paths?region=lagos")
    assert status == 200 and [(p["src"], p["dst"]) for p in body["paths"]] == [("lagos", "jnb")]
    assert body["candidates"][0]["routes"][0]["path"] == ["lagos", "jnb", "fra"]
    assert (await get(client, "/v1/paths?region=nowhere"))[0] == 404
    assert (await get(client, "/healthz"))[0] == 200
    status, body = await get(client, "/readyz")
    assert status == 200 and body["routes"] == 2
    status, doc = await get(client, "/openapi.json")
    for path in ("/v1/route", "/v1/routes", "/v1/paths", "/v1/regions", "/v1/pops"):
        assert path in doc["paths"]


async def test_tokens() -> None:
    daemon = FakeDaemon(world_config())
    daemon.config = daemon.config.model_copy(
        update={"api": ApiConfig(read_token=READ, admin_token=ADMIN)}
    )
    seen: list[object] = []
    daemon.publishers.append(seen.append)
    client = await client_for(daemon)
    try:
        daemon.set_table(table({"lagos": ["jnb"]}))
        assert (await get(client, "/v1/route?region=lagos"))[0] == 401
        bad = {"Authorization": "Bearer " + "x" * 16}
        assert (await get(client, "/v1/route?region=lagos", headers=bad))[0] == 401
        ok = {"Authorization": f"Bearer {READ}"}
        assert (await get(client, "/v1/route?region=lagos", headers=ok))[0] == 200
        assert (await get(client, "/healthz"))[0] == 200  # probes stay open
        resp = await client.post("/v1/admin/publish", headers=ok)
        assert resp.status == 401  # the read token is not an admin token
        before = len(seen)
        resp = await client.post("/v1/admin/publish", headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status == 200 and len(seen) == before + 1
    finally:
        await client.close()


async def test_admin_disabled_without_token(api: tuple[FakeDaemon, Any]) -> None:
    _, client = api
    resp = await client.post("/v1/admin/publish")
    assert resp.status == 403 and "admin_token" in (await resp.json())["error"]


def test_app_builds_without_a_table() -> None:
    app = make_app(FakeDaemon(world_config()))  # type: ignore[arg-type]
    assert isinstance(app, web.Application) and app[ANSWERS].route("lagos", None) is None
