"""One HTTP/1.1 exchange with a neighbour: ... pusher → rpc → **http_client** → Kamailio
(and agent → **http_client** → the controller's /v1/ingest).

h11 does the framing (sans-I/O: it parses whatever bytes we hand it), over a socket this
module opens itself, because that socket may have to be created inside a network namespace
(`netns`, lab sites) and no HTTP library can be handed one to connect. One request per
connection (`Connection: close`).

Whatever the other side does becomes `HttpError`, with the URL and what was wrong:

- no connection, a reset, a close before the answer is complete (a truncated body);
- an answer that is not HTTP, a bad ``Content-Length`` (non-numeric, or a body cut short),
  bad chunked framing, a head over h11's 16 KiB limit;
- a body over `max_body_bytes` (a ``Content-Length`` over it is refused before reading; a
  chunked or close-delimited body is cut off as soon as it passes it);
- no complete answer within `timeout_s`: one deadline for connect, send and receive, so a
  neighbour trickling one byte a second cannot hold the caller.

The request is sent while the answer is read, so a server that answers from the head (a 413
for a body too large) and closes before reading the body is read as its answer, not as the
reset the rest of the body runs into. The status is not judged here: a 500 with an HTML body
is a `Reply`, and the caller (which knows what a good answer looks like) says what is wrong
with it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from netopt.errors import NetoptError

READ_CHUNK_BYTES = 65536


class HttpError(NetoptError):
    """An HTTP exchange with a neighbour failed (transport, framing, size or deadline)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str

    def snippet(self, n: int = 120) -> str:
        """The start of the body, safe to log (an HTML error page, garbage bytes)."""
        return repr(self.body[:n].decode("utf-8", "replace"))


SocketFactory = Callable[[int], socket.socket]


async def request(
    url: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "POST",
    timeout_s: float,
    max_body_bytes: int,
    netns: str | None = None,
) -> Reply:
    """Send one request to `url` and return the whole answer, or raise `HttpError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"{url}: not an http:// or https:// URL")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    head = [("Host", authority), ("Content-Length", str(len(body))),
            ("Connection", "close"), *headers]  # fmt: skip
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(host, port, tls, (method, target, head, body), max_body_bytes,
                                   lambda family: _socket(family, netns))  # fmt: skip
    except TimeoutError:
        raise HttpError(f"{url}: no complete answer within {timeout_s:g} s") from None
    except h11.RemoteProtocolError as exc:
        raise HttpError(f"{url}: not a valid HTTP answer: {exc}") from None
    except ssl.SSLError as exc:
        raise HttpError(f"{url}: TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise HttpError(f"{url}: {_oserror(exc)}") from None
    except _TooLarge as exc:
        raise HttpError(f"{url}: answer body over {max_body_bytes} bytes ({exc})") from None


class _TooLarge(Exception):
    pass


async def _exchange(
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    req: tuple[str, str, list[tuple[str, str]], bytes],
    max_body_bytes: int,
    make_socket: SocketFactory,
) -> Reply:
    reader, writer = await _connect(host, port, tls, make_socket)
    try:
        conn = h11.Connection(h11.CLIENT)
        method, target, head, body = req
        out = conn.send(h11.Request(method=method, target=target, headers=head))
        out += conn.send(h11.Data(data=body)) if body else b""
        out += conn.send(h11.EndOfMessage())
        # sent while the answer is read: a server may answer from the head (a 413) and close
        # before reading the body, and that answer, not the reset the body runs into, counts
        sending = asyncio.ensure_future(_send(writer, out))
        try:
            return await _receive(conn, reader, max_body_bytes)
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    finally:
        writer.close()


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()  # a failure here closes the transport: `_receive` reports it


async def _connect(
    host: str, port: int, tls: ssl.SSLContext | None, make_socket: SocketFactory
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = make_socket(family)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return await asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=host if tls else None
        )
    except BaseException:
        sock.close()
        raise


async def _receive(conn: h11.Connection, reader: asyncio.StreamReader, cap: int) -> Reply:
    status, ctype, data = 0, "", bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_CHUNK_BYTES))  # b"": the peer closed
        elif isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue and the like: the real answer follows
        elif isinstance(event, h11.Response):
            status, ctype = event.status_code, _header(event.headers, b"content-type")
            length = _header(event.headers, b"content-length")
            if length.isdigit() and int(length) > cap:
                raise _TooLarge(f"Content-Length {length}")
        elif isinstance(event, h11.Data):
            data += event.data
            if len(data) > cap:
                raise _TooLarge(f"{len(data)} bytes read so far")
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, bytes(data), ctype)
        else:  # ConnectionClosed before the answer ended
            raise h11.RemoteProtocolError("the connection closed before an answer")


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1").strip()
    return ""


def _oserror(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"cannot reach it: {exc.strerror or exc}"


def _socket(family: int, netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    from netopt.lab.netns import socket_in

    return socket_in(netns, family, socket.SOCK_STREAM)
