"""The JSON-RPC client against a neighbour that answers badly (tests/bad_neighbour.py, loopback):
every bad answer is a `PushError` naming the URL and what was wrong, within the deadline."""

from __future__ import annotations

import asyncio

import pytest

from netopt.errors import PushError
from netopt.push import rpc
from netopt.push.http_client import HttpError, request
from tests.bad_neighbour import BAD_JSONRPC, BAD_MODES, BadNeighbour

EXPECTED = {
    "truncated": "not a valid HTTP answer",
    "bad_length": "not a valid HTTP answer",
    "huge": "over 4194304 bytes (Content-Length 1000000000)",
    "huge_chunked": "over 4194304 bytes",
    "garbage": "not a valid HTTP answer",
    "not_json": "HTTP 200, not JSON",
    "wrong_id": "answered id",
    "html_500": "HTTP 500, not JSON: '<html>",
    "reset": "connection reset",
    "slow": "no complete answer within 0.5 s",
    "trickle": "no complete answer within 0.5 s",
    "no_jsonrpc": 'no "jsonrpc": "2.0"',
    "both": "neither or both",
    "bad_error": "a malformed error (code 'E', message 7)",
    "not_object": "a JSON list",
}


@pytest.mark.parametrize("mode", BAD_MODES + tuple(m for m in BAD_JSONRPC if m != "wrong_shape"))
async def test_every_bad_answer_is_a_push_error(mode: str) -> None:
    with BadNeighbour(mode) as k, pytest.raises(PushError) as caught:
        await rpc.call(k.url, "dispatcher.reload", timeout_s=0.5)
    message = str(caught.value)
    assert message.startswith("dispatcher.reload: ") and k.url in message
    assert EXPECTED[mode] in message, message
    assert type(caught.value) is PushError  # not an RpcError: no error of the proxy's own


@pytest.mark.parametrize("mode", ["ok", "chunked_ok"])
async def test_good_answers_plain_and_chunked(mode: str) -> None:
    result = {"RECORDS": [{"SET": {"ID": 1, "TARGETS": []}}]}
    with BadNeighbour(mode, result=result) as k:
        assert await rpc.call(k.url, "dispatcher.list", timeout_s=2) == result


async def test_a_proxy_error_keeps_its_code() -> None:
    with BadNeighbour("rpc_error") as k, pytest.raises(rpc.RpcError) as caught:
        await rpc.call(k.url, "dispatcher.reload", timeout_s=2)
    assert (caught.value.code, caught.value.message) == (500, "Ongoing reload")


async def test_a_body_under_the_cap_is_read_and_one_over_it_refused() -> None:
    with BadNeighbour("ok", result="x" * 5000) as k:
        assert (await rpc.call(k.url, "m", timeout_s=2, max_body_bytes=6000)) == "x" * 5000
        with pytest.raises(PushError, match="over 4000 bytes"):
            await rpc.call(k.url, "m", timeout_s=2, max_body_bytes=4000)


async def test_nobody_listening() -> None:
    with BadNeighbour("ok") as k:
        url = k.url
    with pytest.raises(HttpError, match="connection refused"):
        await request(url, b"{}", timeout_s=1, max_body_bytes=100)


async def test_an_answer_sent_before_the_body_was_read_is_still_read() -> None:
    """A server that refuses a large body from its head (a 413) and closes without reading
    it: the client reports the 413, not the reset its unsent body runs into."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()  # unread body in the kernel's buffer: the close sends a reset

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        for _ in range(3):
            reply = await request(f"http://127.0.0.1:{port}/v1/ingest", b"x" * (8 << 20),
                                  timeout_s=5, max_body_bytes=1000)  # fmt: skip
            assert (reply.status, reply.body) == (413, b"{}")
