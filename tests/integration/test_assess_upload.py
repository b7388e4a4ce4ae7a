"""`netopt assess --upload` against a real daemon app on loopback, and against bad answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from netopt.assess.upload import MAX_ANSWER_BYTES, upload
from netopt.daemon.wiring import Daemon
from netopt.errors import NetoptError
from tests.daemon_app import daemon_with_app, served
from tests.integration.test_ingest import ADMIN, config_dict
from tests.unit.assess.test_analysis import lossy_direct


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    async with (
        daemon_with_app(config_dict(tmp_path), tmp_path) as (daemon, app, _),
        served(app) as url,
    ):
        yield daemon, url


async def _get(url: str, token: str | None) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_upload_is_kept_and_listed_newest_first(controller) -> None:  # type: ignore[no-untyped-def]
    daemon, url = controller
    body = lossy_direct().model_dump_json().encode()
    first = await asyncio.to_thread(upload, url, body, ADMIN)
    second = await asyncio.to_thread(upload, url + "/v1/assessments", body, ADMIN)
    assert first["site"] == "lagos" and first["verdict"] == "needed"
    assert second["id"] > first["id"]
    status, listing = await _get(url + "/v1/assessments", ADMIN)
    assert status == 200
    ids = [a["id"] for a in listing["assessments"]]
    assert ids == [second["id"], first["id"]]
    assert listing["assessments"][0]["verdicts"] == {"fra": "needed"}
    status, one = await _get(f"{url}/v1/assessments/{first['id']}", ADMIN)
    assert status == 200 and one == json.loads(body)
    assert (await _get(f"{url}/v1/assessments/999", ADMIN))[0] == 404
    # the read token is not enough, and no token is refused
    assert (await _get(url + "/v1/assessments", "reader-0123456789ab"))[0] == 401
    assert (await _get(url + "/v1/assessments", None))[0] == 401
    assert daemon.store.count("assessments") == 2


async def test_upload_refusals_are_clear(controller) -> None:  # type: ignore[no-untyped-def]
    _, url = controller
    body = lossy_direct().model_dump_json().encode()
    with pytest.raises(NetoptError, match="HTTP 401"):
        await asyncio.to_thread(upload, url, body, "wrong-token-0123456789")
    with pytest.raises(NetoptError, match="HTTP 400: not an assessment report: verdict"):
        bad = json.dumps(dict(json.loads(body), verdict="maybe")).encode()
        await asyncio.to_thread(upload, url, bad, ADMIN)


@pytest.fixture
async def rude_server() -> AsyncIterator[str]:
    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", status=502)

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"1," * MAX_ANSWER_BYTES + b"1]")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"id": 1})

    app = web.Application()
    for name, h in (("notjson", not_json), ("huge", huge), ("slow", slow)):
        app.router.add_post(f"/{name}/v1/assessments", h)
    async with served(app) as url:
        yield url


@pytest.mark.parametrize(
    ("where", "message"),
    [("notjson", "HTTP 502, answer is not JSON"), ("huge", "answer larger than"),
     ("slow", "failed: timed out")],
)  # fmt: skip
async def test_upload_survives_any_answer(rude_server, where: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NetoptError, match=message):
        await asyncio.to_thread(upload, f"{rude_server}/{where}", b"{}", ADMIN, 0.5)


def test_upload_refused_connection_and_bad_url() -> None:
    with pytest.raises(NetoptError, match="failed"):
        upload("http://127.0.0.1:9", b"{}", None, 1.0)
    with pytest.raises(NetoptError, match="expected http"):
        upload("ftp://127.0.0.1", b"{}", None)
