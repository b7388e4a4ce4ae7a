"""What a route serves, and the OpenAPI 3.1 document of routes: route specs + **models** → spec.

Each route module declares what it serves as a tuple of `RouteSpec` (`netopt.api.routes.ROUTES`,
`netopt.api.ingest.ROUTES`): method, path, summary, the query model, the body model, the answer
model per status code and the token it needs. `document` turns specs into the document, with
the models' JSON schemas (`netopt.api.models`, the same models the handlers and
`netopt.push.answers` use) as components, so the document cannot drift from the code. Common
answers are added here: 401 (with WWW-Authenticate) wherever a token is needed, Retry-After on
every 503, and 502 on the routes the API workers forward to the daemon. Every GET is also
served as HEAD. The served document (every route module's specs) is `netopt.api.openapi`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from netopt import __version__
from netopt.api.models import Error

REF = "#/components/schemas/{model}"
Security = Literal["open", "read", "admin", "agent"]


@dataclass(frozen=True)
class Answer:
    """One documented answer: a JSON model (a tuple: one of them), another media type (`model`
    None), or no body (`media_type` None)."""

    description: str
    model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None
    media_type: str | None = "application/json"

    @property
    def models(self) -> tuple[type[BaseModel], ...]:
        m = self.model
        return () if m is None else m if isinstance(m, tuple) else (m,)


@dataclass(frozen=True)
class RouteSpec:
    """What one route takes and answers (the single source of the document)."""

    method: Literal["GET", "POST"]
    path: str
    summary: str
    answers: Mapping[int, Answer]
    security: Security = "read"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_description: str = ""
    description: str = ""
    forwarded: bool = True  # API workers forward it to the daemon (and may answer 502)
    tags: tuple[str, ...] = field(default=())
    path_ints: tuple[str, ...] = ()  # `{name}` segments of `path`: non-negative integers


SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "readToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`api.read_token`: every endpoint but /healthz, /readyz and the admin and "
        "ingest endpoints (`api.admin_token` is accepted too). Without `api.read_token` in the "
        "config the read endpoints are open (and this document says so).",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`api.admin_token`: POST /v1/admin/publish and /v1/admin/reload, "
        "and /v1/assessments. "
        "Without it in the config they answer 403.",
    },
    "agentToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "an agent's `agents[].token`: POST /v1/ingest, for batches of that agent "
        "(whose rounds must all start at its site).",
    },
}
_SECURITY = {"read": ["readToken", "adminToken"], "admin": ["adminToken"], "agent": ["agentToken"]}
_RETRY_AFTER = {
    "description": "seconds to wait before asking again",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
_WWW_AUTHENTICATE = {
    "description": "the scheme to authenticate with",
    "required": True,
    "schema": {"const": "Bearer"},
}
UNAUTHORIZED = Answer("missing or wrong bearer token", Error)
BAD_GATEWAY = Answer("API workers only: the daemon did not answer", Error)


def document(routes: Iterable[RouteSpec], *, reads_open: bool = False) -> dict[str, Any]:
    """The document for `routes`; `reads_open`: no read token."""
    specs = tuple(routes)
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        ops = paths.setdefault(spec.path, {})
        ops[spec.method.lower()] = _operation(spec, reads_open, head=False)
        if spec.method == "GET":
            ops["head"] = _operation(spec, reads_open, head=True)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "netopt route API",
            "version": __version__,
            "description": "Routes per region for SIP proxies, agents' results in, admin. "
            "Generated from the models in netopt.api.models (see README, Route API).",
        },
        "paths": paths,
        "components": {"schemas": _schemas(specs), "securitySchemes": SECURITY_SCHEMES},
    }


def _answers(spec: RouteSpec, reads_open: bool) -> dict[int, Answer]:
    answers = dict(spec.answers)
    if spec.security != "open" and not (spec.security == "read" and reads_open):
        answers.setdefault(401, UNAUTHORIZED)
    if spec.forwarded:
        answers.setdefault(502, BAD_GATEWAY)
    return dict(sorted(answers.items()))


def _operation(spec: RouteSpec, reads_open: bool, *, head: bool) -> dict[str, Any]:
    method = "HEAD" if head else spec.method
    op: dict[str, Any] = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", spec.path).rstrip("_"),
        "summary": spec.summary + (" (headers only)" if head else ""),
    }
    if spec.description:
        op["description"] = spec.description
    if spec.tags:
        op["tags"] = list(spec.tags)
    params = [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        }
        for n in spec.path_ints
    ]
    if spec.query is not None:
        params += query_parameters(spec.query)
    if params:
        op["parameters"] = params
    if spec.body is not None and not head:
        op["requestBody"] = {
            "required": True,
            "description": spec.body_description,
            "content": {"application/json": {"schema": {"$ref": _ref(spec.body)}}},
        }
    if spec.security == "open" or (spec.security == "read" and reads_open):
        op["security"] = []
    else:
        op["security"] = [{name: []} for name in _SECURITY[spec.security]]
    op["responses"] = {
        str(status): _response(status, answer, head)
        for status, answer in _answers(spec, reads_open).items()
    }
    return op


def _response(status: int, answer: Answer, head: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    headers = {}
    if status == 503:
        headers["Retry-After"] = _RETRY_AFTER
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    if headers:
        out["headers"] = headers
    if answer.media_type is not None and not head:
        media: dict[str, Any] = {}
        refs = [{"$ref": _ref(m)} for m in answer.models]
        if refs:
            media["schema"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
        out["content"] = {answer.media_type: media}
    return out


def _ref(model: type[BaseModel]) -> str:
    return REF.format(model=model.__name__)


def _schemas(specs: Iterable[RouteSpec]) -> dict[str, Any]:
    """The components: every body and answer model, with what they refer to."""
    models: dict[type[BaseModel], Literal["validation", "serialization"]] = {Error: "serialization"}
    for spec in specs:
        if spec.body is not None:
            models[spec.body] = "validation"
        for answer in spec.answers.values():
            models.update({m: "serialization" for m in answer.models})
    _, top = models_json_schema(list(models.items()), ref_template=REF)
    return dict(sorted(top.get("$defs", {}).items()))


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model as OpenAPI parameters; its `one_of` fields as one exploded object
    parameter `selector` whose schema allows exactly one of them (`?region=lagos`)."""
    schema = model.model_json_schema(ref_template=REF)
    props = {name: _plain(p) for name, p in schema.get("properties", {}).items()}
    required = set(schema.get("required", ()))
    one_of: tuple[str, ...] = getattr(model, "one_of", ())
    params = []
    if one_of:
        branches = [
            {"type": "object", "properties": {n: props[n]}, "required": [n],
             "additionalProperties": False}
            for n in one_of
        ]  # fmt: skip
        params.append({
            "name": "selector", "in": "query", "required": True, "style": "form",
            "explode": True, "schema": {"oneOf": branches},
            "description": "which region: exactly one of " + ", ".join(one_of)
            + " (sent as that parameter, e.g. ?region=lagos; none or several: 400)",
        })  # fmt: skip
    for name, prop in props.items():
        if name in one_of:
            continue
        description = prop.pop("description", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    """A query field's schema without pydantic's null branch, title and null default."""
    out = {k: v for k, v in prop.items() if k not in ("title",)}
    if out.get("default", 0) is None:
        del out["default"]
    branches = [b for b in out.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in out and len(branches) == 1:
        del out["anyOf"]
        out = {**branches[0], **out}
    elif "anyOf" in out:
        out["anyOf"] = branches
    out.setdefault("type", "string")
    return out
