"""A neighbour that answers HTTP (JSON-RPC) badly, on loopback, in a thread of its own.

`BadNeighbour(mode)` listens on 127.0.0.1 (a raw asyncio server, no HTTP library, so it can
break the protocol on purpose) and answers every request the way `mode` says. Modes that
stream or stall are bounded (they stop after `STREAM_LIMIT_BYTES` or `STALL_S`), so nothing
runs on after a test. `requests` counts the requests it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct
import threading
from typing import Any

STREAM_LIMIT_BYTES = 64 << 20
STALL_S = 30.0

# the bad ways, as the issue lists them, each a way the client must turn into its own error
BAD_MODES = (
    "truncated",  # Content-Length: 100, 2 bytes sent, then close
    "bad_length",  # Content-Length: abc
    "huge",  # Content-Length: 10^9, then bytes until the client hangs up
    "huge_chunked",  # chunked, chunks without end
    "garbage",  # not HTTP at all
    "not_json",  # HTTP 200, a body that is not JSON
    "wrong_id",  # a JSON-RPC answer to another request
    "html_500",  # a web server's error page
    "reset",  # TCP reset after reading the request
    "slow",  # reads the request, never answers
    "trickle",  # answers one byte every 0.2 s
)
# valid HTTP and JSON, wrong JSON-RPC
BAD_JSONRPC = ("no_jsonrpc", "both", "bad_error", "wrong_shape", "not_object")


class BadNeighbour:
    def __init__(self, mode: str, *, result: Any = "Ok") -> None:
        self.mode = mode
        self.result = result  # what mode "ok" / "chunked_ok" answers
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC"

    def __enter__(self) -> BadNeighbour:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            handlers = asyncio.all_tasks() - {asyncio.current_task()}
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(STALL_S):
                request = await _read_request(reader)
                self.requests += 1
                await self._answer(request, reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _answer(
        self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        mode, rid = self.mode, req.get("id")
        if mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if mode == "slow":
            await reader.read()  # until the client gives up (or STALL_S)
            return
        if mode in ("huge", "huge_chunked"):
            await _stream(writer, chunked=mode == "huge_chunked")
            return
        raw = self._raw(mode, rid, req)
        if mode == "trickle":
            for i in range(len(raw)):
                writer.write(raw[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.2)
            return
        writer.write(raw)
        await writer.drain()

    def _raw(self, mode: str, rid: Any, req: dict[str, Any]) -> bytes:
        ok = {"jsonrpc": "2.0", "result": self.result, "id": rid}
        if mode == "ingest_ack":  # what the controller answers an agent's batch
            ack = {"batch_id": req.get("batch_id"), "duplicate": False, "stored": 1}
            return _http(200, json.dumps(ack).encode())
        bodies: dict[str, Any] = {
            "ok": ok, "trickle": ok, "wrong_id": {**ok, "id": (rid or 0) + 1000},
            "no_jsonrpc": {"result": self.result, "id": rid},
            "both": {**ok, "error": {"code": 1, "message": "x"}},
            "bad_error": {"jsonrpc": "2.0", "error": {"code": "E", "message": 7}, "id": rid},
            "wrong_shape": {**ok, "result": {"RECORDS": "none"}},
            "not_object": [ok],
        }  # fmt: skip
        if mode in bodies:
            return _http(200, json.dumps(bodies[mode]).encode())
        if mode == "rpc_error":  # as Kamailio: a JSON-RPC error with HTTP 500
            error = {"code": 500, "message": "Ongoing reload"}
            return _http(500, json.dumps({"jsonrpc": "2.0", "error": error, "id": rid}).encode())
        if mode == "chunked_ok":
            body = json.dumps(ok).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            return (
                head
                + b"Transfer-Encoding: chunked\r\n\r\n"
                + b"".join(
                    b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
                    for i in range(0, len(body), 7)
                )
                + b"0\r\n\r\n"
            )
        if mode == "truncated":
            return b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"'
        if mode == "bad_length":
            return b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"
        if mode == "garbage":
            return b"\x00\xff\xfeSSH-2.0-OpenSSH_9.2\r\n" + bytes(range(256))
        if mode == "not_json":
            return _http(200, b"<<<this is not JSON>>>\xff")
        if mode == "html_500":
            page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
            return _http(500, page, b"text/html")
        raise ValueError(f"unknown mode {mode!r}")


def _http(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 500: b"Internal Server Error"}[status]
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, reason, ctype, len(body))
    ) + body


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The request's JSON body (gzip undone), {} when it has none."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def _stream(writer: asyncio.StreamWriter, *, chunked: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 1000000000"
    head += framing + b"\r\n\r\n"
    writer.write(head)
    block = b"[" * 65536
    piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    sent = 0
    while sent < STREAM_LIMIT_BYTES:
        writer.write(piece)
        await writer.drain()
        sent += len(piece)
