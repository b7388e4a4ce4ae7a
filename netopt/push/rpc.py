"""JSON-RPC 2.0 over HTTP to a proxy: ... pusher → **rpc** → Kamailio jsonrpcs (xhttp).

A deliberately small HTTP/1.1 client (one POST per connection, Content-Length framed) on
asyncio streams, because the socket may have to be created inside a network namespace
(`netns`, lab sites) and aiohttp cannot be handed one. Every call has a timeout. Transport
failures and JSON-RPC errors raise `PushError`; `RpcError` keeps the proxy's code and message
(e.g. Kamailio's "Ongoing reload").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from netopt.errors import PushError

_ids = itertools.count(1)


class RpcError(PushError):
    """The proxy answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{method}: error {code}: {message}")


async def call(
    url: str,
    method: str,
    params: list[Any] | None = None,
    *,
    timeout_s: float = 2.0,
    netns: str | None = None,
) -> Any:
    """Call `method` and return its `result`."""
    body = {"jsonrpc": "2.0", "method": method, "id": next(_ids)}
    if params:
        body["params"] = params
    try:
        async with asyncio.timeout(timeout_s):
            status, text = await _post(url, json.dumps(body).encode(), netns)
    except TimeoutError:
        raise PushError(f"{method}: no answer from {url} in {timeout_s:g} s") from None
    except OSError as exc:
        raise PushError(f"{method}: cannot reach {url}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        raise PushError(f"{method}: HTTP {status}, not JSON: {text[:120]!r}") from None
    if isinstance(answer, dict) and answer.get("error"):
        err = answer["error"]
        raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")))
    if status != 200 or not isinstance(answer, dict) or "result" not in answer:
        raise PushError(f"{method}: HTTP {status}: {text[:120]!r}")
    return answer["result"]


async def _post(url: str, payload: bytes, netns: str | None) -> tuple[int, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _socket(family, netns)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        path = parts.path or "/"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise PushError(f"not an HTTP answer from {url}: {status_line[:80]!r}")
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        data = await (reader.readexactly(length) if length is not None else reader.read())
        return int(fields[1]), data.decode("utf-8", "replace")
    finally:
        writer.close()


def _socket(family: int, netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    from netopt.lab.netns import socket_in

    return socket_in(netns, family, socket.SOCK_STREAM)
