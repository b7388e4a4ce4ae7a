"""What an API worker's connections share: ... answers → API workers → **site** → http.

`FastSite` holds a worker's `Answers`, turns a table-only read (GET/HEAD of `/v1/route`,
`/v1/routes`, `/v1/regions`, `/v1/pops`, `/readyz`, `/healthz`, `/openapi.json`) into the
whole response in one bytes object (pre-built header bytes; a keep-alive GET answer is kept
per second, with its Date), applies the read-token rules of `netopt.api.auth` (the verdict
remembered per path and Authorization value, the refusal as the daemon's app renders it),
and forwards anything else through a `Forwarder` (the daemon's unix socket:
`netopt.api.workers.pool.Proxy`). Bodies and headers match the daemon's aiohttp app;
`netopt.api.workers.http` is the protocol that calls it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

import httptools
from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from netopt import __version__
from netopt.api.auth import refusal
from netopt.api.openapi import openapi_document
from netopt.api.routes import JSON, route_answer
from netopt.push.answers import Answers, Rendered, error_body

if TYPE_CHECKING:
    from netopt.config import ApiConfig

log = logging.getLogger("netopt.http_site")

WORKER_HEADER = "X-Netopt-Worker"
DROP_FORWARD = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                          b"te", b"trailer", b"upgrade", b"host", b"expect"})  # fmt: skip
KEEP, CLOSE, KEEP10 = b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n"
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True)
class Reply:
    """A whole response other than a table answer: a token refusal, /healthz, /readyz, or the
    daemon's answer to a forwarded request (hop-by-hop headers already dropped)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    length: str | None = None  # a forwarded answer's Content-Length (what HEAD announces)


Upstream = Reply  # the daemon's answer to a forwarded request


class Forwarder(Protocol):
    def __call__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, peer: str
    ) -> Awaitable[Upstream]: ...


@dataclass(frozen=True)
class Forwarded:
    """A request for the daemon, waiting its turn on its connection."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    mode: bytes  # the Connection header line of the answer (KEEP, CLOSE, KEEP10)


class FastSite:
    """What every connection of a worker shares: answers, token rules, rendered bytes."""

    def __init__(self, answers: Answers, api: ApiConfig, forward: Forwarder, max_body: int):
        self.answers, self.forward_to, self.max_body = answers, forward, max_body
        self.pid = str(os.getpid())
        guarded = api.read_token is not None or api.admin_token is not None
        self.guard = (api.read_token, api.admin_token) if guarded else None
        self._verdicts: dict[tuple[bytes, bytes | None], Reply | None] = {}
        # as the daemon's app renders them (aiohttp's json_response / text: charset, spaces)
        doc = openapi_document(reads_open=api.read_token is None)
        self._openapi = _json_reply(200, json.dumps(doc).encode())
        self._health = _json_reply(200, json.dumps({"status": "ok", "version": __version__}))
        self.local: dict[bytes, Callable[[bytes], Rendered | Reply]] = {
            b"/v1/route": self.route, b"/v1/routes": lambda q: answers.routes,
            b"/v1/regions": lambda q: answers.regions, b"/v1/pops": lambda q: answers.pops,
            b"/readyz": self.readyz, b"/healthz": lambda q: self._health,
            b"/openapi.json": lambda q: self._openapi,
        }  # fmt: skip
        self._json_head = {status: _json_head(status, self.pid) for status in (200, 400, 404, 503)}
        self._wire: dict[Rendered, bytes] = {}  # keep-alive GET answers, this second
        self._date_s = 0
        self._date = b""

    # --- local answers ----------------------------------------------------------------------
    def route(self, query: bytes) -> Rendered:
        """`/v1/route`, as `netopt.api.routes.get_route`: one dict lookup per query seen before."""
        answers, key = self.answers, query.decode("latin-1")
        found = answers.remembered(key)
        if found is None:
            found = answers.remember(key, route_answer(answers, parse_query(query)))
        return found

    def readyz(self, query: bytes) -> Reply:
        """Ready when this worker's copy of the table has a route."""
        a = self.answers
        body = {"ready": a.routed > 0, "routes": a.routed, "entries": a.entries}
        return _json_reply(200 if a.routed else 503, json.dumps(body))

    def answer(
        self, path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Rendered | Reply | None:
        """The local answer to GET/HEAD `path`, a token refusal, or None (forward it)."""
        local = self.local.get(path)
        if local is None:
            return None
        if self.guard is not None:
            given = next((v for n, v in headers if n.lower() == b"authorization"), None)
            refused = self.verdict(path, given)
            if refused is not None:
                return refused
        return local(query)

    def verdict(self, path: bytes, authorization: bytes | None) -> Reply | None:
        """The token rules' answer for this path and token: None lets the request through."""
        key = (path, authorization)
        if key in self._verdicts:
            return self._verdicts[key]
        assert self.guard is not None
        given = "" if authorization is None else authorization.decode("latin-1")
        no = refusal(path.decode(), given, *self.guard)
        refused = None
        if no is not None:  # rendered as the daemon's app does (aiohttp's headers, in order)
            resp = web.Response(body=error_body(no.message), status=no.status, content_type=JSON,
                                headers=dict(no.headers) or None)  # fmt: skip
            assert isinstance(resp.body, bytes)
            refused = Reply(resp.status, resp.reason, list(resp.headers.items()), resp.body)
        if authorization is None or len(authorization) <= 512:  # bounded: 1024 × ~0.5 KiB
            if len(self._verdicts) >= 1024:
                self._verdicts.clear()
            self._verdicts[key] = refused
        return refused

    # --- bytes on the wire ------------------------------------------------------------------
    def date(self) -> bytes:
        now = int(time.time())  # wall clock: the Date header, not an interval
        if now != self._date_s:
            self._date_s, self._date = now, b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
            self._wire.clear()
        return self._date

    def wire(self, r: Rendered | Reply, mode: bytes, head: bool) -> bytes:
        """The whole response for a local answer (or a token refusal) in one bytes object."""
        if not isinstance(r, Rendered):
            return self.wire_any(r.status, r.reason, r.headers, r.body, mode, head)
        if mode is KEEP and not head:
            date = self.date()
            found = self._wire.get(r)
            if found is None:
                found = self._render(r, mode, head, date)
                if len(self._wire) >= 4096:
                    self._wire.clear()
                self._wire[r] = found
            return found
        return self._render(r, mode, head, self.date())

    def _render(self, r: Rendered, mode: bytes, head: bool, date: bytes) -> bytes:
        start = self._json_head.get(r.status)
        if start is None:
            return self.wire_any(r.status, _reason(r.status), [("Content-Type", JSON)], r.body,
                                 mode, head)  # fmt: skip
        length = b"Content-Length: %d\r\n" % len(r.body)
        return b"".join((start, length, date, mode, b"\r\n", b"" if head else r.body))

    def wire_any(
        self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
        mode: bytes, head: bool, length: str | None = None,
    ) -> bytes:  # fmt: skip
        """Any response: `headers` plus ours (worker, Retry-After on 503, length, Date)."""
        lines = [f"HTTP/1.1 {status} {reason}"]
        names = set()
        for name, value in headers:
            lower = name.lower()
            if lower in ("content-length", "connection", WORKER_HEADER.lower()):
                continue
            names.add(lower)
            lines.append(f"{name}: {value}")
        lines.append(f"{WORKER_HEADER}: {self.pid}")
        if status == 503 and "retry-after" not in names:
            lines.append("Retry-After: 1")
        if status not in _NO_BODY and status >= 200:
            lines.append(f"Content-Length: {length if head and length else len(body)}")
        out = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n"
        if "date" not in names:
            out += self.date()
        with_body = not head and status not in _NO_BODY
        return out + mode + b"\r\n" + (body if with_body else b"")

    def error(self, status: int, message: str, mode: bytes = CLOSE) -> bytes:
        return self.wire_any(status, _reason(status), [("Content-Type", JSON)],
                             error_body(message), mode, False)  # fmt: skip

    async def forward(self, request: Forwarded, peer: str) -> bytes:
        """The daemon's answer to `request`, as bytes for the client; never raises."""
        head = request.method == b"HEAD"
        try:
            headers = [(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                       for n, v in request.headers if n.lower() not in DROP_FORWARD]  # fmt: skip
            up = await self.forward_to(request.method.decode(), _origin(request.target).decode(
                "utf-8", "surrogateescape"), headers, request.body, peer)  # fmt: skip
        except ValueError as exc:  # a target or header aiohttp's client refuses to send
            return self.error(400, f"bad request: {exc}", request.mode)
        except Exception:
            log.exception("api_worker_forward_failed")
            return self.error(502, "the daemon did not answer (api worker proxy)", request.mode)
        return self.wire_any(up.status, up.reason, up.headers, up.body, request.mode, head,
                             up.length)  # fmt: skip


def _json_reply(status: int, body: str | bytes) -> Reply:
    encoded = body.encode() if isinstance(body, str) else body
    return Reply(status, _reason(status), [("Content-Type", f"{JSON}; charset=utf-8")], encoded)


def _json_head(status: int, pid: str) -> bytes:
    retry = "Retry-After: 1\r\n" if status == 503 else ""
    return (f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: {JSON}\r\n"
            f"{WORKER_HEADER}: {pid}\r\n{retry}").encode()  # fmt: skip


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def parse_query(query: bytes) -> MultiDictProxy[str]:
    """The query as aiohttp's request parser decodes it (so answers match the daemon's)."""
    text = query.decode("utf-8", "surrogateescape")
    text, _, fragment = text.partition("#")
    return URL.build(path="/", query_string=text, fragment=fragment, encoded=True).query


def _origin(target: bytes) -> bytes:
    """An absolute-form target as origin-form (path?query); ValueError if neither."""
    if target.startswith(b"/"):
        return target
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise ValueError("the request target is neither a path nor an absolute URL") from None
    if url.schema not in (b"http", b"https") or not url.path:
        raise ValueError("the request target is neither a path nor an absolute URL")
    return url.path + (b"?" + url.query if url.query is not None else b"")
