"""`netopt dashboards push` against a recording stand-in for Grafana's HTTP API on loopback:
the exact calls of a first and a second push (idempotent by uid), a folder found by title,
and every kind of failure (HTTP error, garbage, timeout, refused) as a clean error exit."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from netopt import cli
from netopt.dashboards import build as dashboards
from netopt.dashboards.grafana import run_push
from netopt.errors import NetoptError
from tests.integration.conftest import free_port

Call = tuple[str, str, Any]  # method, path, JSON body (None for a GET)


class Grafana:
    """Folders and dashboards as Grafana answers them; `fail` makes the dashboard save answer
    `(status, body, content type)` instead, `delay_s` answers late."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.auth: set[str] = set()
        self.folders: dict[str, str] = {}  # uid → title
        self.versions: dict[str, int] = {}
        self.fail: tuple[int, str, str] | None = None
        self.delay_s = 0.0
        self.app = web.Application()
        self.app.router.add_get("/api/folders/{uid}", self.get_folder)
        self.app.router.add_get("/api/folders", self.list_folders)
        self.app.router.add_post("/api/folders", self.create_folder)
        self.app.router.add_post("/api/dashboards/db", self.save)

    async def _record(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        self.calls.append((request.method, request.path, body))
        self.auth.add(request.headers.get("Authorization", ""))
        return body

    async def get_folder(self, request: web.Request) -> web.Response:
        await self._record(request)
        uid = request.match_info["uid"]
        if uid not in self.folders:
            return web.json_response({"message": "folder not found"}, status=404)
        return web.json_response({"uid": uid, "title": self.folders[uid]})

    async def list_folders(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response([{"uid": u, "title": t} for u, t in self.folders.items()])

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        self.folders[body["uid"]] = body["title"]
        return web.json_response({"uid": body["uid"], "title": body["title"]})

    async def save(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            status, text, ctype = self.fail
            return web.Response(status=status, text=text, content_type=ctype)
        uid = body["dashboard"]["uid"]
        self.versions[uid] = self.versions.get(uid, 0) + 1
        return web.json_response({"status": "success", "uid": uid, "version": self.versions[uid]})


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[Grafana, str]]:
    fake = Grafana()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def built() -> dict[str, Any]:
    return {json.loads(t)["uid"]: json.loads(t) for t in dashboards.build_all().values()}


async def push(url: str, *extra: str) -> int:
    argv = ["dashboards", "push", "--url", url, "--token", "s3cret", *extra]
    return await asyncio.to_thread(cli.main, argv)


async def test_first_and_second_push_make_exactly_these_calls(
    grafana: tuple[Grafana, str], capsys: Any
) -> None:
    fake, url = grafana
    assert await push(url) == 0, capsys.readouterr().err
    saves = [("POST", "/api/dashboards/db")] * len(built())
    first = [("GET", "/api/folders/netopt"), ("GET", "/api/folders"), ("POST", "/api/folders"),
             *saves]  # fmt: skip
    assert [(m, p) for m, p, _ in fake.calls] == first
    assert fake.calls[2][2] == {"title": "netopt", "uid": "netopt"}
    bodies = [b for _, p, b in fake.calls if p == "/api/dashboards/db"]
    assert [b["dashboard"] for b in bodies] == list(built().values())
    assert all(b["overwrite"] is True and b["folderUid"] == "netopt" for b in bodies)
    fake.calls.clear()
    assert await push(url) == 0  # the folder exists now: found by uid, the dashboards overwritten
    assert [(m, p) for m, p, _ in fake.calls] == [("GET", "/api/folders/netopt"), *saves]
    assert fake.folders == {"netopt": "netopt"} and set(fake.versions.values()) == {2}
    assert fake.auth == {"Bearer s3cret"}
    assert "netopt-overview.json: success version 2" in capsys.readouterr().out


async def test_a_folder_made_by_hand_is_found_by_title(grafana: tuple[Grafana, str]) -> None:
    fake, url = grafana
    fake.folders["abc123"] = "Network ops"
    assert await push(url, "--folder", "Network ops") == 0
    assert ("POST", "/api/folders") not in [(m, p) for m, p, _ in fake.calls]
    assert {b["folderUid"] for _, p, b in fake.calls if p == "/api/dashboards/db"} == {"abc123"}
    fake.calls.clear()
    assert await push(url, "--folder", "Voice ops") == 0  # no such folder: created
    created = [b for m, p, b in fake.calls if (m, p) == ("POST", "/api/folders")]
    assert created == [{"title": "Voice ops", "uid": "Voice-ops"}]


@pytest.mark.parametrize(("answer", "expected"), [
    ((500, '{"message": "database is locked"}', "application/json"), "HTTP 500"),
    ((401, '{"message": "invalid API key"}', "application/json"), "HTTP 401"),
    ((502, "<html>bad gateway</html>", "text/html"), "HTTP 502"),
    ((200, "<html>a login page</html>", "text/html"), "not a Grafana answer"),
    ((200, "[1, 2]", "application/json"), "not a Grafana answer"),
    ((200, "{not json", "application/json"), "JSONDecodeError"),
])  # fmt: skip
async def test_grafana_failures_are_clean_errors(
    grafana: tuple[Grafana, str], capsys: Any, answer: tuple[int, str, str], expected: str
) -> None:
    fake, url = grafana
    fake.folders["netopt"] = "netopt"
    fake.fail = answer
    assert await push(url) == 1
    err = capsys.readouterr().err
    assert expected in err and url in err and "Traceback" not in err, err


async def test_a_slow_or_absent_grafana_is_a_clean_error(grafana: tuple[Grafana, str]) -> None:
    fake, url = grafana
    fake.folders["netopt"] = "netopt"
    fake.delay_s = 2.0
    with pytest.raises(NetoptError, match=r"no answer|Timeout"):
        await asyncio.to_thread(run_push, url, "t", "netopt", dashboards.build_all(), 0.5)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NetoptError, match=re.escape(f"dashboards push to {closed}: ")):
        await asyncio.to_thread(run_push, closed, "t", "netopt", dashboards.build_all(), 2.0)
