"""The controller's side of `netopt assess --upload`: keep reports, list them (admin token).

report.json → `POST /v1/assessments` → **store** (durable, `assessments` table) →
`GET /v1/assessments` (newest first: id, site, created, verdict, verdicts) and
`GET /v1/assessments/{id}` (the report as uploaded). Every route needs the admin token
(`api.admin_token`; 403 when none is configured, 401 when missing or wrong). A body must be a
report that fits the schema (400 naming the field), at most MAX_BODY_BYTES (413); 503 when the
store refuses (retry later).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from netopt.api.auth import admin_refusal
from netopt.api.models import Error
from netopt.api.spec import Answer, RouteSpec
from netopt.assess.model import Report, Verdict
from netopt.errors import StoreError
from netopt.validation import format_validation_error

if TYPE_CHECKING:
    from netopt.api.view import DaemonView

ASSESS_DAEMON: web.AppKey[DaemonView] = web.AppKey("assess_daemon")
PREFIX = "/v1/assessments"
MAX_BODY_BYTES = 8 << 20
MAX_ID = 2**63 - 1  # the stores' integer ids


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
    """The admin rule of `netopt.api.auth`, whatever the read-token rule let through."""
    admin = request.app[ASSESS_DAEMON].config.api.admin_token
    refused = admin_refusal(request.headers.get("Authorization", ""), admin)
    if refused is None:
        return None
    return web.json_response(
        {"error": refused.message}, status=refused.status, headers=dict(refused.headers) or None
    )


async def post_assessment(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
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
    if (refused := _refused(request)) is not None:
        return refused
    try:
        rows = await request.app[ASSESS_DAEMON].store.assessments_async()
    except StoreError as exc:
        return _error(503, f"store unavailable, retry later: {exc}")
    items = tuple(
        Listed(**{**r, "partial": bool(r["partial"]), "verdicts": json.loads(str(r["verdicts"]))})
        for r in rows
    )
    return web.json_response(Listing(assessments=items).model_dump())


async def get_assessment(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        wanted = int(request.match_info["id"])
    except ValueError:
        wanted = -1
    if not 0 <= wanted <= MAX_ID:
        return _error(400, f"assessment id must be an integer from 0 to {MAX_ID}")
    try:
        body = await request.app[ASSESS_DAEMON].store.assessment_async(wanted)
    except StoreError as exc:
        return _error(503, f"store unavailable, retry later: {exc}")
    if body is None:
        return _error(404, f"no assessment {wanted}")
    return web.Response(body=body.encode(), content_type="application/json")


def add_routes(app: web.Application, daemon: DaemonView) -> web.Application:
    """Add the assessment routes to the API's aiohttp application (before it starts)."""
    app[ASSESS_DAEMON] = daemon
    app.router.add_post(PREFIX, post_assessment)
    app.router.add_get(PREFIX, list_assessments)
    app.router.add_get(PREFIX + "/{id}", get_assessment)
    return app


_ADMIN_OFF = Answer("admin endpoints are disabled (no api.admin_token)", Error)
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST", PREFIX, "Keep an uploaded assessment report (`netopt assess --upload`)",
        {201: Answer("kept: its id", Stored), 400: Answer("not an assessment report", Error),
         403: _ADMIN_OFF, 413: Answer(f"larger than {MAX_BODY_BYTES} bytes", Error),
         503: Answer("the store refuses writes: retry later", Error)},
        security="admin", body=Report, body_description="a report.json of `netopt assess`",
    ),
    RouteSpec(
        "GET", PREFIX, "The uploaded assessment reports, newest first",
        {200: Answer("the reports kept", Listing), 403: _ADMIN_OFF}, security="admin",
    ),
    RouteSpec(
        "GET", PREFIX + "/{id}", "One uploaded assessment report, as uploaded",
        {200: Answer("the report", Report), 400: Answer("the id is no integer in range", Error),
         403: _ADMIN_OFF, 404: Answer("no such report", Error)},
        security="admin", path_ints=("id",),
    ),
)  # fmt: skip
