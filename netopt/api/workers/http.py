"""The API workers' HTTP/1.1 server: ... answers → API workers → site → **http** (the wire).

An `asyncio.Protocol` on `httptools` (llhttp, C): each request parsed is answered by the
worker's `FastSite` (`netopt.api.workers.site`: the table-only reads, from the worker's
`Answers`, as one bytes object with pre-built headers) or queued for the daemon
(`FastSite.forward`, the daemon's unix socket). aiohttp's server cost ~60–80 µs of CPU per
request here; this path costs ~4 µs of Python per request on top of the event loop and the
socket calls.

HTTP: keep-alive (1.1 default, 1.0 with `Connection: keep-alive`), `Connection: close`,
pipelining (answers leave in request order, also behind a forwarded request), chunked request
bodies (de-chunked by the parser, forwarded with a length), `Expect: 100-continue`. Limits:
a request head over MAX_HEAD_BYTES or MAX_HEADERS → 431, a body over `max_body` → 413, a
malformed request → 400 (all JSON, then close); origin-form and absolute-form targets only
(`*` and CONNECT → 400). At most MAX_QUEUED answers wait per connection: past that, or while
the socket's send buffer is full, the connection stops reading (input is fed to the parser
in SLICE-byte steps, so what is buffered stays bounded). Idle connections close after
IDLE_TIMEOUT_S to 2×IDLE_TIMEOUT_S. A client that half-closes gets its answers, then a close.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque

import httptools

from netopt.api.workers.site import CLOSE, KEEP, KEEP10, FastSite, Forwarded

log = logging.getLogger("netopt.http_fast")

MAX_HEAD_BYTES = 32 * 1024  # request line + headers (aiohttp: 8190 per line)
MAX_HEADERS = 100
SLICE = 16 * 1024  # bytes fed to the parser at a time (checked against the limits between)
MAX_QUEUED = 32  # answers waiting behind a forwarded one before the connection stops reading
IDLE_TIMEOUT_S = 60.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Reject(Exception):
    """Raised in a parser callback: answer `status` with `message`, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Ignore(Exception):
    """Raised in a parser callback: the connection is closing, parse nothing more."""


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, answer in order, forward what is not ours."""

    def __init__(self, site: FastSite, connections: set[HttpConnection] | None = None) -> None:
        self.site = site
        # the server's set (it closes them); a connection made without a server keeps its own
        self.connections: set[HttpConnection] = set() if connections is None else connections
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
        self.mode = KEEP

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = transport  # type: ignore[assignment]
        peer = t.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.connections.add(self)
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
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
        if self.eof and not (self.backlog or self.queue or self.dead):
            self._respond(b"", close=True)  # the client is done sending and has its answers
            return
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
            self.mode = CLOSE
        else:
            self.mode = KEEP10 if p.get_http_version() == "1.0" else KEEP
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
        close = mode is CLOSE
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


class HttpServer:
    """The listening socket and every connection it accepted: the server owns them, and
    `close` ends them all (the site only answers)."""

    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()
        self.listener: asyncio.Server | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self.listener is None else tuple(self.listener.sockets)

    async def close(self, timeout_s: float) -> None:
        """Stop listening; let forwarded requests finish for up to `timeout_s`, then close
        every connection."""
        if self.listener is not None:
            self.listener.close()
        busy = [c.flusher for c in self.connections if c.flusher is not None]
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


async def serve(site: FastSite, host: str, port: int) -> HttpServer:
    """Listen on host:port (SO_REUSEPORT: the other workers listen there too)."""
    server = HttpServer()
    loop = asyncio.get_running_loop()
    server.listener = await loop.create_server(
        lambda: HttpConnection(site, server.connections), host, port,
        reuse_address=True, reuse_port=True, backlog=1024,
    )  # fmt: skip
    return server
