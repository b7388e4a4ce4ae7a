"""Agents' results in: agent → `POST /v1/ingest` → **store** (durable) → window → plan.

A batch is gzip-compressed JSON ``{"agent", "batch_id", "spool_depth", "rounds": [...]}``
sent with ``Authorization: Bearer <the agent's token>``. The answer comes only after the
batch is committed to the store, so an acknowledged batch survives a crash; a batch id seen
before is acknowledged again without being stored twice (and rounds are unique per path and
start time, so an overlapping re-send cannot count twice either). Errors are JSON
``{"error": ...}``: 401 missing or wrong token, 403 unknown agent or a round from another
site, 400 malformed (naming the field), 413 too large, 503 store unwritable (retry later).

Also here: `POST /v1/admin/reload` (admin token) — validate the config file, then swap.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from netopt.api.auth import Refusal, admin_ok, agent_for
from netopt.api.batch import IngestBatch, IngestRound
from netopt.api.models import Error, Ingested, Reloaded, ReloadRejected
from netopt.api.spec import Answer, RouteSpec
from netopt.errors import StoreError
from netopt.store.model import RoundRecord
from netopt.validation import format_validation_error

if TYPE_CHECKING:
    from netopt.api.view import DaemonView
    from netopt.config import AgentAuth

log = logging.getLogger("netopt.ingest")

INGEST_DAEMON: web.AppKey[DaemonView] = web.AppKey("ingest_daemon")
_BEARER = {"WWW-Authenticate": "Bearer"}


class _Reject(Exception):
    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message = status, outcome, message


def _agent_by_token(agents: tuple[AgentAuth, ...], header: str) -> AgentAuth:
    found = agent_for(agents, header)
    if isinstance(found, Refusal):
        raise _Reject(found.status, "unauthorized", found.message)
    return found


async def _read_body(request: web.Request, max_wire: int, max_inflated: int) -> bytes:
    """The body, inflated (aiohttp gunzips as it reads), capped on the wire and inflated."""
    encoding = request.headers.get("Content-Encoding", "").lower()
    if encoding not in ("", "identity", "gzip"):
        raise _Reject(400, "invalid", f"unsupported Content-Encoding {encoding!r}; use gzip")
    if request.content_length is not None and request.content_length > max_wire:
        raise _Reject(413, "too_large", f"body larger than {max_wire} bytes")
    limit = max_inflated if encoding == "gzip" else min(max_wire, max_inflated)
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                what = "inflates past" if encoding == "gzip" else "larger than"
                raise _Reject(413, "too_large", f"body {what} {limit} bytes")
            chunks.append(chunk)
    except (ContentEncodingError, RequestPayloadError, ValueError) as exc:
        raise _Reject(400, "invalid", f"body is not valid gzip: {exc}") from None
    return b"".join(chunks)


def _parse(raw: bytes, max_rounds: int, agent: AgentAuth, known: set[str]) -> IngestBatch:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Reject(400, "invalid", f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Reject(400, "invalid", "(top level): expected a JSON object")
    if isinstance(data.get("agent"), str):  # whose batch, before whether it is well formed
        _check_agent(agent, known, data["agent"])
    rounds = data.get("rounds")
    if isinstance(rounds, list) and len(rounds) > max_rounds:
        raise _Reject(413, "too_large", f"rounds: more than {max_rounds} in one batch")
    try:
        return IngestBatch.model_validate(data)
    except ValidationError as exc:
        raise _Reject(400, "invalid", "; ".join(format_validation_error(exc)[:10])) from None


def _check_agent(agent: AgentAuth, known: set[str], named: str) -> None:
    if named not in known:
        raise _Reject(403, "forbidden", f"unknown agent {named!r}")
    if named != agent.id:
        raise _Reject(403, "forbidden", f"this token is not agent {named!r}'s")


def _authorize(agent: AgentAuth, batch: IngestBatch) -> None:
    for i, r in enumerate(batch.rounds):
        if r.src != agent.site:
            raise _Reject(
                403, "forbidden",
                f"rounds[{i}].src: agent {agent.id!r} reports for site {agent.site!r} only",
            )  # fmt: skip


async def post_ingest(request: web.Request) -> web.Response:
    daemon = request.app[INGEST_DAEMON]
    cfg, m = daemon.config, daemon.metrics
    try:
        agent = _agent_by_token(cfg.agents, request.headers.get("Authorization", ""))
        ing = cfg.ingest
        raw = await _read_body(request, ing.max_body_bytes, ing.max_inflated_bytes)
        batch = _parse(raw, ing.max_rounds_per_batch, agent, {a.id for a in cfg.agents})
        _authorize(agent, batch)
    except _Reject as rej:
        m.ingest_batches.labels(rej.outcome).inc()
        log.info("ingest_rejected status=%d reason=%r", rej.status, rej.message)
        resp = web.json_response({"error": rej.message}, status=rej.status,
                                 headers=_BEARER if rej.status == 401 else None)  # fmt: skip
        if not request.content.at_eof():
            resp.force_close()  # the rest of the body is not worth reading
        return resp
    records = [RoundRecord(**r.model_dump()) for r in batch.rounds]
    try:
        outcome = await daemon.store.write_batch(batch.batch_id, agent.id, records)
    except StoreError as exc:
        m.ingest_batches.labels("unavailable").inc()
        return web.json_response(
            {"error": f"store unavailable, retry later: {exc}"}, status=503,
            headers={"Retry-After": "1"},
        )  # fmt: skip
    daemon.account_ingested(agent.id, outcome.stored, batch.spool_depth)
    m.ingest_batches.labels("duplicate" if outcome.duplicate else "stored").inc()
    return web.json_response(
        {
            "batch_id": batch.batch_id,
            "rounds": outcome.rounds,
            "stored": len(outcome.stored),
            "duplicate": outcome.duplicate,
        }
    )


async def post_reload(request: web.Request) -> web.Response:
    daemon = request.app[INGEST_DAEMON]
    admin = daemon.config.api.admin_token
    if admin is None:
        return web.json_response({"error": "admin API disabled (no api.admin_token)"}, status=403)
    if not admin_ok(request.headers.get("Authorization", ""), admin):
        return web.json_response({"error": "missing or wrong admin token"}, status=401,
                                 headers=_BEARER)  # fmt: skip
    ok, detail = daemon.reload()
    if not ok:
        return web.json_response({"error": "config rejected; old config kept", "problems": detail},
                                 status=400)  # fmt: skip
    return web.json_response({"reloaded": True, "changes": detail})


_OWN_AUTH = {"/v1/ingest": post_ingest, "/v1/admin/reload": post_reload}
__all__ = ["ROUTES", "IngestBatch", "IngestRound", "add_routes"]
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST",
        "/v1/ingest",
        "An agent's batch of probe rounds, stored before the answer",
        {
            200: Answer("stored (or seen before: acknowledged again, stored once)", Ingested),
            400: Answer("malformed: not gzip, not JSON, or a field (named) is wrong", Error),
            403: Answer(
                "an unknown agent, another agent's batch, or a round from another site", Error
            ),
            413: Answer(
                "the body (on the wire or inflated) or its rounds are over the limits", Error
            ),
            503: Answer("the store cannot be written: retry later", Error),
        },
        security="agent",
        body=IngestBatch,
        body_description="JSON; agents send it with "
        "Content-Encoding: gzip (gzip and identity are accepted). A batch id seen before is "
        "acknowledged again without being stored twice.",
    ),
    RouteSpec(
        "POST",
        "/v1/admin/reload",
        "Re-read the config file: validate it all, then swap",
        {
            200: Answer("reloaded; what changed", Reloaded),
            400: Answer("the file was rejected and the old config kept", ReloadRejected),
            403: Answer("admin endpoints are disabled (no api.admin_token)", Error),
        },
        security="admin",
    ),
)


@web.middleware
async def _own_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """These routes check their own tokens (agents', admin): the API's read-token check,
    which would refuse an agent's token, is skipped for them."""
    own = _OWN_AUTH.get(request.path)
    if own is not None and request.method == "POST":
        return await own(request)
    return await handler(request)  # type: ignore[no-any-return]


def add_routes(app: web.Application, daemon: DaemonView) -> web.Application:
    """Add the ingest and admin routes to the API's aiohttp application (before it starts)."""
    app[INGEST_DAEMON] = daemon
    for path, handler in _OWN_AUTH.items():
        app.router.add_post(path, handler)
    app.middlewares.insert(0, _own_auth)
    return app
