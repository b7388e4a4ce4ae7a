"""The route API: ... decide → RouteTable → **API** (HTTP/JSON for SIP proxies and people).

Served from the in-memory RouteTable snapshot: no database on the request path. aiohttp is
the server (see README: fastest of the asyncio options measured here). Every answer that
depends only on the table is rendered to bytes once per table (`netopt.push.answers`): a request
is a region resolution (`netopt.api.resolve`) plus a dict lookup. Errors are JSON
``{"error": "..."}``: 400 for a malformed parameter, 401/403 for a missing or wrong token,
404 for an unknown region, address or destination, 503 (with Retry-After) before a route
is known.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST

from netopt import __version__
from netopt.api.auth import refusal
from netopt.api.openapi import openapi_document
from netopt.push.answers import Answers, Rendered, error_body, paths_json

if TYPE_CHECKING:
    from netopt.api.view import DaemonView
    from netopt.config import ApiConfig

DAEMON: web.AppKey[DaemonView] = web.AppKey("daemon")
ANSWERS: web.AppKey[Answers] = web.AppKey("answers")
JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=error_body(message), status=status, content_type=JSON,
                        headers=headers)  # fmt: skip


def _rendered(r: Rendered) -> web.Response:
    headers = {"Retry-After": "1"} if r.status == 503 else None
    return web.Response(body=r.body, status=r.status, content_type=JSON, headers=headers)


def auth_middleware(read_token: str | None, admin_token: str | None) -> Middleware:
    """Reads are open unless `read_token` is set; admin endpoints always need `admin_token`."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        refused = refusal(request.path, given, read_token, admin_token)
        if refused is not None:
            return _error(refused.status, refused.message, dict(refused.headers) or None)
        return await handler(request)

    return auth


async def get_route(request: web.Request) -> web.Response:
    """`/v1/route`: an answer per distinct query string, remembered until the next table."""
    answers = request.app[ANSWERS]
    query = request.query_string
    found = answers.remembered(query)
    if found is None:
        found = answers.remember(query, route_answer(answers, request.query))
    return _rendered(found)


def route_answer(answers: Answers, q: Mapping[str, str]) -> Rendered:
    fmt = q.get("format", "json")
    if fmt not in ("json", "rtjson"):
        return Rendered(400, error_body(f"format must be 'json' or 'rtjson', not {fmt!r}"))
    try:
        region = answers.region_of(q)
    except ValueError as exc:
        return Rendered(400, error_body(str(exc)))
    except LookupError as exc:
        return Rendered(404, error_body(str(exc.args[0])))
    dest = q.get("dest")
    found = answers.route(region, dest, rtjson=fmt == "rtjson")
    if found is None:
        if dest is not None and dest not in answers.destinations:
            return Rendered(404, error_body(f"unknown destination {dest!r}"))
        return Rendered(503, error_body(f"no route for region {region!r} yet: no measurements"))
    return found


async def get_routes(request: web.Request) -> web.Response:
    return _rendered(request.app[ANSWERS].routes)


async def get_regions(request: web.Request) -> web.Response:
    return _rendered(request.app[ANSWERS].regions)


async def get_pops(request: web.Request) -> web.Response:
    return _rendered(request.app[ANSWERS].pops)


async def get_paths(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    answers = request.app[ANSWERS]
    try:
        region = answers.region_of(request.query)
    except ValueError as exc:
        return _error(400, str(exc))
    except LookupError as exc:
        return _error(404, str(exc.args[0]))
    body = paths_json(region, daemon.path_stats(), daemon.table, answers.region_ids)
    return web.json_response(body)


async def get_traces(request: web.Request) -> web.Response:
    """`/v1/traces?src=&dst=`: degradation-triggered traceroutes kept in memory, newest first."""
    q = request.query
    traces = request.app[DAEMON].tracer.recent(q.get("src"), q.get("dst"))
    return web.json_response({"traces": [t.to_json() for t in traces]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    routed = sum(1 for e in daemon.table if e.route is not None)
    body = {"ready": routed > 0, "routes": routed, "entries": len(daemon.table)}
    return web.json_response(body, status=200 if routed else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[DAEMON].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi_document()), content_type=JSON)


async def admin_publish(request: web.Request) -> web.Response:
    """Hand the current table to every publisher again (e.g. after fixing a proxy)."""
    daemon = request.app[DAEMON]
    if daemon.config.api.admin_token is None:  # the middleware checks the token when set
        return _error(403, "admin endpoints are disabled (set api.admin_token)")
    for publish in daemon.publishers:
        publish(daemon.table)
    return web.json_response({"published": len(daemon.publishers), "entries": len(daemon.table)})


def make_app(daemon: DaemonView, answers: Answers | None = None) -> web.Application:
    api = daemon.config.api
    guarded = api.read_token is not None or api.admin_token is not None
    # open reads and no admin token: no middleware on the hot path (admin answers 403 itself)
    middlewares = [auth_middleware(api.read_token, api.admin_token)] if guarded else []
    app = web.Application(middlewares=middlewares)
    if answers is None:
        answers = Answers(daemon.config, daemon.wall_time)
        answers.publish(daemon.table)
    app[DAEMON] = daemon
    app[ANSWERS] = answers
    app.router.add_get("/v1/route", get_route)
    app.router.add_get("/v1/routes", get_routes)
    app.router.add_get("/v1/regions", get_regions)
    app.router.add_get("/v1/pops", get_pops)
    app.router.add_get("/v1/paths", get_paths)
    app.router.add_get("/v1/traces", get_traces)
    app.router.add_post("/v1/admin/publish", admin_publish)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app


async def run_site(
    app: web.Application, api: ApiConfig, on_listening: Callable[[str], None] | None = None
) -> None:
    """Serve `app` on `api.listen` until cancelled; `on_listening` gets the base URL once bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, api.host, api.port, reuse_address=True)
        await site.start()
        host = f"[{api.host}]" if ":" in api.host else api.host
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else api.port
        if on_listening is not None:
            on_listening(f"http://{host}:{port}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
