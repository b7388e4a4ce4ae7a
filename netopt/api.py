"""The route API: ... decide → RouteTable → **API** (HTTP/JSON for SIP proxies and people).

Served from the in-memory RouteTable snapshot: no database on the request path. aiohttp is
the server (see README: fastest of the asyncio options measured here). Errors are JSON:
``{"error": "..."}`` with 400 for a malformed parameter and 404 for an unknown region.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from netopt import __version__
from netopt.decide import TableEntry
from netopt.openapi import openapi_document
from topology.planner import Route

if TYPE_CHECKING:
    from netopt.app import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def route_json(route: Route) -> dict[str, Any]:
    e = route.expected
    return {
        "kind": route.kind,
        "path": list(route.path),
        "entry_pop": route.entry_pop,
        "expected": {
            "rtt_ms": round(e.rtt_ms, 3),
            "jitter_ms": round(e.jitter_ms, 3),
            "loss_pct": round(e.loss_pct, 4),
            "mos": round(e.mos, 3),
        },
    }


def entry_json(entry: TableEntry, decided_at_wall_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"region": entry.region, "dest": entry.dest}
    if entry.route is not None:
        out |= route_json(entry.route)
    else:
        out |= {"kind": None, "path": [], "entry_pop": None, "expected": None}
    out |= {
        "acceleration": entry.acceleration,
        "reason": entry.reason,
        "decided_at": round(decided_at_wall_s, 3),
        "stale": entry.stale,
        "default": entry.is_default,
        "fallbacks": [route_json(r) for r in entry.fallbacks],
    }
    return out


async def get_route(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    region = request.query.get("region")
    dest = request.query.get("dest")
    if not region:
        return _error(400, "missing query parameter 'region'")
    if region not in daemon.config.region_ids:
        return _error(404, f"unknown region {region!r}")
    if dest is not None and dest not in daemon.config.destinations:
        return _error(404, f"unknown destination {dest!r}")
    entry = daemon.table.get(region, dest)
    if entry is None or entry.route is None:
        why = entry.reason if entry is not None else "no measurements yet"
        return web.json_response(
            {"error": f"no route for region {region!r} yet: {why}"},
            status=503,
            headers={"Retry-After": "1"},
        )
    return web.json_response(entry_json(entry, daemon.wall_time(entry.decided_at)))


async def get_routes(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    routes = [entry_json(e, daemon.wall_time(e.decided_at)) for e in daemon.table]
    return web.json_response({"routes": routes})


async def get_regions(request: web.Request) -> web.Response:
    cfg = request.app[DAEMON].config
    return web.json_response(
        {"regions": [r.model_dump(mode="json", exclude_none=True) for r in cfg.regions]}
    )


async def get_pops(request: web.Request) -> web.Response:
    cfg = request.app[DAEMON].config
    return web.json_response(
        {"pops": [p.model_dump(mode="json", exclude_none=True) for p in cfg.pops]}
    )


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
    return web.Response(text=json.dumps(openapi_document()), content_type="application/json")


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application()
    app[DAEMON] = daemon
    app.router.add_get("/v1/route", get_route)
    app.router.add_get("/v1/routes", get_routes)
    app.router.add_get("/v1/regions", get_regions)
    app.router.add_get("/v1/pops", get_pops)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app


async def serve_api(daemon: Daemon, on_listening: Callable[[str], None] | None = None) -> None:
    """Serve until cancelled; `on_listening` gets the base URL once the port is bound."""
    import asyncio

    runner = web.AppRunner(make_app(daemon), access_log=None)
    await runner.setup()
    try:
        api = daemon.config.api
        site = web.TCPSite(runner, api.host, api.port, reuse_address=True)
        await site.start()
        host = f"[{api.host}]" if ":" in api.host else api.host
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else api.port
        if on_listening is not None:
            on_listening(f"http://{host}:{port}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
