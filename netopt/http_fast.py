"""The API workers' HTTP/1.1 server: ... answers → API workers → **http_fast** (the wire).

An `asyncio.Protocol` on `httptools` (llhttp, C) that answers the table-only reads (GET/HEAD
of `/v1/route`, `/v1/routes`, `/v1/regions`, `/v1/pops`, `/readyz`, `/healthz`,
`/openapi.json`) from a worker's `Answers` with pre-built header bytes — one `write` of one
bytes object per response — and hands every other request to a `Proxy` (the daemon's unix
socket, see `netopt.api_workers`). aiohttp's server cost ~60–80 µs of CPU per request here;
this path is a parse, a dict lookup and a write.

HTTP: keep-alive (1.1 default, 1.0 with `Connection: keep-alive`), `Connection: close`,
pipelining (answers leave in request order, also behind a forwarded request), chunked request
bodies (de-chunked by the parser, forwarded with a length), `Expect: 100-continue`. Limits:
a request head over MAX_HEAD_BYTES or MAX_HEADERS → 431, a body over `max_body` → 413, a
malformed request → 400 (all JSON, then close); origin-form and absolute-form targets only
(`*` and CONNECT → 400). At most MAX_QUEUED answers wait per connection: past that, or while
the socket's send buffer is full, the connection stops reading (input is fed to the parser
in SLICE-byte steps, so what is buffered stays bounded). Idle connections close after
IDLE_TIMEOUT_S to 2×IDLE_TIMEOUT_S. Read tokens: `netopt.api.auth_middleware` decides, as in
the daemon (its verdict is remembered per path and Authorization value).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol, cast

import httptools
from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from netopt import __version__
from netopt.api import JSON, auth_middleware, route_answer
from netopt.openapi import openapi_document
from netopt.push.answers import Answers, Rendered, error_body

if TYPE_CHECKING:
    from netopt.config import ApiConfig

log = logging.getLogger("netopt.http_fast")

MAX_HEAD_BYTES = 32 * 1024  # request line + headers (aiohttp: 8190 per line)
MAX_HEADERS = 100
SLICE = 16 * 1024  # bytes fed to the parser at a time (checked against the limits between)
MAX_QUEUED = 32  # answers waiting behind a forwarded one before the connection stops reading
IDLE_TIMEOUT_S = 60.0
WORKER_HEADER = "X-Netopt-Worker"
DROP_FORWARD = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                          b"te", b"trailer", b"upgrade", b"host", b"expect"})  # fmt: skip
_KEEP, _CLOSE, _KEEP10 = b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True)
class Upstream:
    """The daemon's answer to a forwarded request (hop-by-hop headers already dropped)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    length: str | None = None  # the daemon's Content-Length (what a HEAD answer announces)


@dataclass(frozen=True)
class Reply:
    """A whole response other than a table answer (a token refusal, /healthz, /readyz)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


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
    mode: bytes  # the Connection header line of the answer (_KEEP, _CLOSE, _KEEP10)


class _Reject(Exception):
    """Raised in a parser callback: answer `status` with `message`, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Ignore(Exception):
    """Raised in a parser callback: the connection is closing, parse nothing more."""


class FastSite:
    """What every connection of a worker shares: answers, token rules, rendered bytes."""

    def __init__(self, answers: Answers, api: ApiConfig, forward: Forwarder, max_body: int):
        self.answers, self.forward_to, self.max_body = answers, forward, max_body
        self.pid = str(os.getpid())
        guarded = api.read_token is not None or api.admin_token is not None
        self.guard = auth_middleware(api.read_token, api.admin_token) if guarded else None
        self._verdicts: dict[tuple[bytes, bytes | None], Reply | None] = {}
        # as the daemon's app renders them (aiohttp's json_response / text: charset, spaces)
        self._openapi = _json_reply(200, json.dumps(openapi_document()).encode())
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
        self.connections: set[HttpConnection] = set()

    # --- local answers ----------------------------------------------------------------------
    def route(self, query: bytes) -> Rendered:
        """`/v1/route`, as `netopt.api.get_route`: one dict lookup for a query seen before."""
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
        """`auth_middleware`'s answer for this path and token: None lets the request through."""
        key = (path, authorization)
        if key in self._verdicts:
            return self._verdicts[key]
        assert self.guard is not None
        asked = _Asked(path.decode(), authorization)
        step = cast(Coroutine[None, None, web.StreamResponse],
                    self.guard(asked, _passed))  # type: ignore[arg-type]  # fmt: skip
        try:
            step.send(None)
        except StopIteration as done:
            resp = done.value
        else:  # pragma: no cover - the middleware awaits nothing but the handler
            step.close()
            raise RuntimeError("auth_middleware suspended")
        refused = None
        if resp is not _PASSED:
            assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
            refused = Reply(resp.status, resp.reason, list(resp.headers.items()), resp.body)
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
        if mode is _KEEP and not head:
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

    def error(self, status: int, message: str, mode: bytes = _CLOSE) -> bytes:
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
            return self.error(400, f"bad request: {exc}", _CLOSE)
        except Exception:
            log.exception("api_worker_forward_failed")
            return self.error(502, "the daemon did not answer (api worker proxy)", request.mode)
        return self.wire_any(up.status, up.reason, up.headers, up.body, request.mode, head,
                             up.length)  # fmt: skip

    async def close(self, timeout_s: float) -> None:
        """Let forwarded requests finish for up to `timeout_s`, then close every connection."""
        busy = [c.flusher for c in self.connections if c.flusher is not None]
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


@dataclass(frozen=True)
class _Asked:
    """What `auth_middleware` reads of a request: its path and Authorization header."""

    path: str
    authorization: bytes | None

    @property
    def headers(self) -> dict[str, str]:
        given = self.authorization
        return {} if given is None else {"Authorization": given.decode("latin-1")}


_PASSED = web.Response(status=299)


async def _passed(request: object) -> web.Response:
    return _PASSED


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


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, answer in order, forward what is not ours."""

    def __init__(self, site: FastSite) -> None:
        self.site = site
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.queue: deque[tuple[bytes | Forwarded, bool]] = deque()  # (answer, close after)
        self.flusher: asyncio.Task[None] | None = None
        self.backlog = b""  # input not yet fed while the connection is stalled
        self.dead = False  # answered with close: the rest of the input is ignored
        self.write_paused = self.read_paused = self.eof = False
        self.in_body = False
        self.head_bytes = 0
        self.active = True
        self.idle: asyncio.TimerHandle | None = None
        # the message being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytearray | None = None
        self.method = b""
        self.mode = _KEEP

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = transport  # type: ignore[assignment]
        peer = t.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.site.connections.add(self)
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.connections.discard(self)
        self.dead = True
        self.queue.clear()
        if self.flusher is not None:
            self.flusher.cancel()
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        self.active = True
        if not self.dead:
            self._feed(data)

    def eof_received(self) -> bool:
        if self.queue or self.backlog:
            self.eof = True  # answer what was asked, then close (see _flush)
            return True
        return False

    def pause_writing(self) -> None:
        self.write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._unstall()

    # --- input ------------------------------------------------------------------------------
    def _stalled(self) -> bool:
        return self.write_paused or len(self.queue) >= MAX_QUEUED

    def _reading(self) -> None:
        """Read while the connection is not stalled (and not closing)."""
        assert self.transport is not None
        want = not self._stalled() and not self.dead
        if want == self.read_paused and not self.transport.is_closing():
            self.read_paused = not want
            (self.transport.resume_reading if want else self.transport.pause_reading)()

    def _unstall(self) -> None:
        if self._stalled() or self.dead:
            return
        data, self.backlog = self.backlog, b""
        if data:
            self._feed(data)
        self._reading()

    def _feed(self, data: bytes) -> None:
        for start in range(0, len(data), SLICE):
            if self.dead:
                return
            if self._stalled():
                self.backlog = data[start:]
                self._reading()
                return
            chunk = data if len(data) <= SLICE else data[start : start + SLICE]
            if not self.in_body:
                self.head_bytes += len(chunk)
                if self.head_bytes > MAX_HEAD_BYTES:
                    self._fail(431, f"request head over {MAX_HEAD_BYTES} bytes")
                    return
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade:  # the request was answered; no upgrades here
                self._respond(b"", close=True)
            except httptools.HttpParserCallbackError as exc:
                self._callback_failed(exc.__context__)
            except httptools.HttpParserError as exc:
                self._fail(400, f"bad request: {exc}")
        if self._stalled():
            self._reading()

    def _callback_failed(self, cause: BaseException | None) -> None:
        if isinstance(cause, _Reject):
            self._fail(cause.status, str(cause))
        elif not isinstance(cause, _Ignore):
            log.error("api_worker_http_error", exc_info=cause)
            self._fail(500, "internal error in the api worker")

    def _fail(self, status: int, message: str) -> None:
        if not self.dead:
            self._respond(self.site.error(status, message), close=True)

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.dead:
            raise _Ignore
        self.url, self.headers, self.body = b"", [], None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(self.headers) > MAX_HEADERS:
            raise _Reject(431, f"more than {MAX_HEADERS} header fields")

    def on_headers_complete(self) -> None:
        self.in_body, self.head_bytes = True, 0
        p = self.parser
        self.method = p.get_method()
        if not p.should_keep_alive():
            self.mode = _CLOSE
        else:
            self.mode = _KEEP10 if p.get_http_version() == "1.0" else _KEEP
        if self.method not in (b"GET", b"HEAD"):
            self._check_length()

    def _check_length(self) -> None:
        """Refuse an announced body over max_body before it comes; say 100 Continue if asked."""
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length" and value.strip().isdigit():
                if int(value) > self.site.max_body:
                    raise _Reject(413, f"request body over {self.site.max_body} bytes")
            elif (
                lower == b"expect"
                and value.strip().lower() == b"100-continue"
                and not (self.queue or self.transport is None)
            ):
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.body is None:
            self.body = bytearray()
        if len(self.body) + len(body) > self.site.max_body:
            raise _Reject(413, f"request body over {self.site.max_body} bytes")
        self.body += body

    def on_message_complete(self) -> None:
        self.in_body = False
        if self.dead:
            return
        method, url, mode = self.method, self.url, self.mode
        close = mode is _CLOSE
        if method == b"GET" or method == b"HEAD":
            path, _, query = url.partition(b"?")
            found = self.site.answer(path, query, self.headers)
            if found is not None:
                self._respond(self.site.wire(found, mode, method == b"HEAD"), close)
                return
        if not url.startswith(b"/") and (url == b"*" or method == b"CONNECT"):
            self._fail(400, "bad request: only origin-form and absolute-form targets")
            return
        body = bytes(self.body) if self.body is not None else b""
        self.queue.append((Forwarded(method, url, self.headers, body, mode), close))
        if close:
            self.dead = True
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush())

    # --- output -----------------------------------------------------------------------------
    def _respond(self, data: bytes, close: bool) -> None:
        """Send `data` now, or after the answers queued before it."""
        assert self.transport is not None
        if close:
            self.dead = True
        if self.queue:
            self.queue.append((data, close))
            return
        if data:
            self.transport.write(data)
        if close:
            self.transport.close()

    async def _flush(self) -> None:
        """Send the queued answers in order, forwarding each request for the daemon in turn."""
        t = self.transport
        assert t is not None
        try:
            while self.queue:
                item, close = self.queue[0]
                data = item if isinstance(item, bytes) else await self.site.forward(item, self.peer)
                self.queue.popleft()
                if t.is_closing():
                    return
                if data:
                    t.write(data)
                if close:
                    t.close()
                    return
                self._unstall()
            if self.eof and not self.backlog:
                t.close()
        finally:
            self.flusher = None

    def _idle_check(self) -> None:
        if self.active or self.queue or self.flusher is not None:
            self.active = False
            self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S, self._idle_check)
        elif self.transport is not None:
            self.transport.close()


async def serve(site: FastSite, host: str, port: int) -> asyncio.Server:
    """Listen on host:port (SO_REUSEPORT: the other workers listen there too)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(site), host, port,
                                    reuse_address=True, reuse_port=True, backlog=1024)  # fmt: skip
