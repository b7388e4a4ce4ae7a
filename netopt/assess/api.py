"""The controller's side of `netopt assess --upload`: keep reports, list them (admin token).

report.json → `POST /v1/assessments` → **store** (durable, `assessments` table) →
`GET /v1/assessments` (newest first: id, site, created, verdict, verdicts) and
`GET /v1/assessments/{id}` (the report as uploaded). Every route needs the admin token
(`api.admin_token`; 403 when none is configured, 401 when missing or wrong). A body must be a
report that fits the schema (400 naming the field), at most MAX_BODY_BYTES (413); 503 when the
store refuses (retry later).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from netopt.assess.model import Report, Verdict
from netopt.errors import StoreError
from netopt.validation import format_validation_error

if TYPE_CHECKING:
    from netopt.api.view import DaemonView

ASSESS_DAEMON: web.AppKey[DaemonView] = web.AppKey("assess_daemon")
PREFIX = "/v1/assessments"
MAX_BODY_BYTES = 8 << 20


class Stored(BaseModel):
    """The answer to an upload."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int
    site: str
    verdict: Verdict


class Listed(BaseModel):
    """One row of `GET /v1/assessments`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int
    site: str
    created: str
    received_wall_ns: int
    partial: bool
    verdict: Verdict
    verdicts: dict[str, Verdict]  # destination → verdict


class Listing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    assessments: tuple[Listed, ...]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refused(request: web.Request) -> web.Response | None:
    admin = request.app[ASSESS_DAEMON].config.api.admin_token
    if admin is None:
        return _error(403, "admin API disabled (no api.admin_token)")
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, b"Bearer " + admin.encode()):
        return _error(401, "missing or wrong admin token")
    return None


async def post_assessment(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"report larger than {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"report larger than {MAX_BODY_BYTES} bytes")
    try:
        report = Report.model_validate_json(raw)
    except ValidationError as exc:
        return _error(400, "not an assessment report: " + "; ".join(format_validation_error(exc)))
    verdicts = json.dumps({v.dest: v.acceleration for v in report.verdicts})
    store = request.app[ASSESS_DAEMON].store
    try:
        new_id = await store.add_assessment(
            report.site, report.created, report.verdict, verdicts, report.partial,
            report.model_dump_json(),
        )  # fmt: skip
    except StoreError as exc:
        return _error(503, f"store unavailable, retry later: {exc}")
    answer = Stored(id=new_id, site=report.site, verdict=report.verdict)
    return web.json_response(answer.model_dump(), status=201)


async def list_assessments(request: web.Request) -> web.Response:
    rows = request.app[ASSESS_DAEMON].store.assessments()
    items = tuple(
        Listed(**{**r, "partial": bool(r["partial"]), "verdicts": json.loads(str(r["verdicts"]))})
        for r in rows
    )
    return web.json_response(Listing(assessments=items).model_dump())


async def get_assessment(request: web.Request) -> web.Response:
    try:
        wanted = int(request.match_info["id"])
    except ValueError:
        return _error(400, "assessment id must be an integer")
    body = request.app[ASSESS_DAEMON].store.assessment(wanted)
    if body is None:
        return _error(404, f"no assessment {wanted}")
    return web.Response(body=body.encode(), content_type="application/json")


@web.middleware
async def _admin_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """These routes need the admin token, whatever the API's read-token rule says."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        refused = _refused(request)
        if refused is not None:
            return refused
        if request.match_info.http_exception is not None:  # e.g. 405 for a PUT
            exc = request.match_info.http_exception
            return _error(exc.status, exc.reason)
        return await request.match_info.handler(request)
    return await handler(request)  # type: ignore[no-any-return]


def add_routes(app: web.Application, daemon: DaemonView) -> web.Application:
    """Add the assessment routes to the API's aiohttp application (before it starts)."""
    app[ASSESS_DAEMON] = daemon
    app.router.add_post(PREFIX, post_assessment)
    app.router.add_get(PREFIX, list_assessments)
    app.router.add_get(PREFIX + "/{id}", get_assessment)
    app.middlewares.insert(0, _admin_only)
    return app
