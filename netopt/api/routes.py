"""The route API: ... decide → RouteTable → **API** (HTTP/JSON for SIP proxies and people).

Served from the in-memory RouteTable snapshot: no database on the request path. aiohttp is
the server (see README: fastest of the asyncio options measured here). Every answer that
depends only on the table is rendered to bytes once per table (`netopt.push.answers`): a request
is a region resolution (`netopt.api.resolve`) plus a dict lookup. Queries are checked by the rules
of `netopt.api.models` (what the OpenAPI document states; `ROUTES` below declares this module's
routes for it). Errors are JSON ``{"error": "..."}``: 400 for a malformed, unknown or repeated
parameter, 401/403 for a missing or wrong token,
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
from pydantic import ValidationError

from netopt import __version__
from netopt.api import ingest
from netopt.api.auth import refusal
from netopt.api.models import (
    Error,
    Health,
    PathsAnswer,
    PopsList,
    Published,
    Readiness,
    RegionsList,
    RouteAnswer,
    RouteQuery,
    RoutesList,
    RtjsonAnswer,
    SelectorQuery,
    TracesAnswer,
    TracesQuery,
    check_query,
    route_query,
)
from netopt.api.spec import Answer, RouteSpec, document
from netopt.api.status import status_handler
from netopt.assess import api as assessments
from netopt.push.answers import Answers, Rendered, error_body, paths_json
from netopt.validation import format_validation_error

if TYPE_CHECKING:
    from netopt.api.view import DaemonView
    from netopt.config import ApiConfig

DAEMON: web.AppKey[DaemonView] = web.AppKey("daemon")
ANSWERS: web.AppKey[Answers] = web.AppKey("answers")
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
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
    try:
        asked = route_query(q)  # the rules RouteQuery documents, without building a model
        region = answers.region_of(asked)
    except ValueError as exc:
        return Rendered(400, error_body(str(exc)))
    except LookupError as exc:
        return Rendered(404, error_body(str(exc.args[0])))
    dest = asked.dest
    found = answers.route(region, dest, rtjson=asked.rtjson)
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
    try:
        q = TracesQuery.model_validate(_single(request.query))
    except (ValidationError, ValueError) as exc:
        return _error(400, _problem(exc))
    traces = request.app[DAEMON].tracer.recent(q.src, q.dst)
    answer = TracesAnswer.model_validate({"traces": [t.to_json() for t in traces]})
    return web.json_response(answer.model_dump(mode="json"))


def _single(query: Mapping[str, str]) -> dict[str, str]:
    check_query(query, TracesQuery.model_fields)
    return dict(query)


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(format_validation_error(exc)[:5])
    return str(exc)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    routed = sum(1 for e in daemon.table if e.route is not None)
    body = {"ready": routed > 0, "routes": routed, "entries": len(daemon.table)}
    headers = None if routed else {"Retry-After": "1"}
    return web.json_response(body, status=200 if routed else 503, headers=headers)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[DAEMON].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type=JSON, charset="utf-8")


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
    app[OPENAPI] = json.dumps(
        document((*ROUTES, *ingest.ROUTES, *assessments.ROUTES), reads_open=api.read_token is None)
    ).encode()
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
    app.router.add_get("/", status_handler(daemon))  # the status page (netopt.ops.status)
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


def _e(description: str) -> Answer:
    return Answer(description, Error)


_BAD_QUERY = _e("a malformed, unknown or repeated parameter, or not exactly one selector")
_NO_REGION = _e("no such region, or no region matches the selector")
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "GET",
        "/v1/route",
        "The route in force for one region",
        {
            200: Answer(
                "the route: netopt's answer (format=json) or Kamailio rtjson (format=rtjson)",
                (RouteAnswer, RtjsonAnswer),
            ),
            400: _BAD_QUERY,
            404: _e("no such region or destination, or no region matches"),
            503: _e("no route for the region yet (or, for rtjson, no PoP with a sip_uri)"),
        },
        query=RouteQuery,
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/v1/routes",
        "Every route in force",
        {200: Answer("the routes", RoutesList)},
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/v1/regions",
        "The configured regions",
        {200: Answer("the regions", RegionsList)},
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/v1/pops",
        "The configured PoPs",
        {200: Answer("the PoPs", PopsList)},
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/v1/paths",
        "A region's measured paths and candidate routes",
        {
            200: Answer("window statistics and candidates", PathsAnswer),
            400: _BAD_QUERY,
            404: _NO_REGION,
        },
        query=SelectorQuery,
    ),
    RouteSpec(
        "GET",
        "/v1/traces",
        "Recent degradation-triggered traceroutes, newest first",
        {
            200: Answer("the traces kept in memory", TracesAnswer),
            400: _e("a malformed, unknown or repeated parameter"),
        },
        query=TracesQuery,
    ),
    RouteSpec(
        "POST",
        "/v1/admin/publish",
        "Hand the current table to every publisher again",
        {
            200: Answer("how many publishers got the table", Published),
            403: _e("admin endpoints are disabled (no api.admin_token)"),
        },
        security="admin",
    ),
    RouteSpec(
        "GET",
        "/",
        "The status page: routes, verdicts, reasons and the last decisions (HTML, for people)",
        {200: Answer("a self-contained HTML page", None, "text/html")},
    ),
    RouteSpec(
        "GET",
        "/healthz",
        "Liveness",
        {200: Answer("alive", Health)},
        security="open",
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/readyz",
        "Ready once at least one route is known",
        {200: Answer("ready", Readiness), 503: Answer("no route yet", Readiness)},
        security="open",
        forwarded=False,
    ),
    RouteSpec(
        "GET",
        "/metrics",
        "Prometheus metrics",
        {200: Answer("Prometheus text exposition format", None, "text/plain")},
    ),
    RouteSpec(
        "GET",
        "/openapi.json",
        "This document",
        {200: Answer("the OpenAPI 3.1 document", None)},
        forwarded=False,
    ),
)
