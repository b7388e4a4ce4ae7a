"""netopt.api.workers.http fed bytes through a fake transport: no sockets, a fake daemon."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netopt.api.workers.http import MAX_HEAD_BYTES, SLICE, HttpConnection
from netopt.api.workers.site import FastSite, Upstream
from netopt.config import ApiConfig
from netopt.push.answers import Answers
from tests.routes_fixture import T0_WALL, table, world_config

READ = "r" * 16
ADMIN = "a" * 16


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.9", 40000) if name == "peername" else default


class FakeDaemon:
    """Answers every forwarded request with what it got; `gate` holds answers back."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, str], bytes, str]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, peer: str
    ) -> Upstream:
        self.got.append((method, target, dict(headers), body, peer))
        if self.gate is not None:
            await self.gate.wait()
        doc = json.dumps({"daemon": f"{method} {target}", "body": len(body)}).encode()
        return Upstream(200, "OK", [("Content-Type", "application/json"), ("X-From", "daemon")],
                        doc, str(len(doc)))  # fmt: skip


def make_site(api: ApiConfig | None = None, max_body: int = 4096) -> tuple[FastSite, FakeDaemon]:
    config = world_config()
    answers = Answers(config, lambda mono_s: T0_WALL + mono_s)
    answers.publish(table({"lagos": ["jnb", "fra"]}))
    daemon = FakeDaemon()
    return FastSite(answers, api or ApiConfig(), daemon, max_body), daemon


def connect(site: FastSite) -> tuple[HttpConnection, FakeTransport]:
    conn, transport = HttpConnection(site), FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def responses(data: bytes, heads: frozenset[int] = frozenset()) -> list[tuple[int, dict, bytes]]:
    """Split a byte stream into (status, headers with lower-case names, body); the n-th
    response (0-based) in `heads` answered a HEAD and has no body."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, head
        status_line, *lines = head.decode().split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(": ")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value
        n = 0 if len(out) in heads else int(headers.get("content-length", 0))
        out.append((int(status_line.split()[1]), headers, data[:n]))
        data = data[n:]
    return out


def request(target: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_pipelined_requests_split_anywhere_answered_in_order() -> None:
    site, _ = make_site()
    data = request("/v1/route?region=lagos") + request("/healthz") + request("/v1/pops")
    whole = None
    for step in (len(data), 7, 1):
        conn, t = connect(site)
        for i in range(0, len(data), step):
            conn.data_received(data[i : i + step])
        got = responses(bytes(t.out))
        assert [s for s, _, _ in got] == [200, 200, 200] and not t.closed
        assert json.loads(got[0][2])["region"] == "lagos"
        assert json.loads(got[1][2])["status"] == "ok"
        assert "pops" in json.loads(got[2][2])
        assert all(h["x-netopt-worker"] == site.pid for _, h, _ in got)
        assert all(h["content-type"].startswith("application/json") for _, h, _ in got)
        bodies = [b for _, _, b in got]
        assert whole is None or bodies == whole
        whole = bodies


async def test_head_has_the_length_but_no_body() -> None:
    site, _ = make_site()
    conn, t = connect(site)
    conn.data_received(request("/v1/route?region=lagos", method="HEAD") + request("/readyz"))
    (s1, h1, b1), (s2, _, b2) = responses(bytes(t.out), heads=frozenset({0}))
    assert s1 == 200 and b1 == b""
    assert int(h1["content-length"]) == len(site.route(b"region=lagos").body)
    assert s2 == 200 and json.loads(b2)["ready"] is True


@pytest.mark.parametrize(
    ("version", "header", "closes", "connection"),
    [
        ("1.1", None, False, None),
        ("1.1", "Connection: close", True, "close"),
        ("1.0", None, True, "close"),
        ("1.0", "Connection: keep-alive", False, "keep-alive"),
    ],
)
async def test_keep_alive_and_close(
    version: str, header: str | None, closes: bool, connection: str | None
) -> None:
    site, _ = make_site()
    conn, t = connect(site)
    first = request("/healthz", *([header] if header else []), version=version)
    conn.data_received(first + request("/v1/regions"))  # the second is ignored after a close
    got = responses(bytes(t.out))
    assert len(got) == (1 if closes else 2) and t.closed == closes
    assert got[0][1].get("connection") == connection


async def test_503_says_when_to_retry_and_errors_match_route_answer() -> None:
    site, _ = make_site()
    conn, t = connect(site)
    conn.data_received(request("/v1/route?region=nairobi") + request("/v1/route?region=x")
                       + request("/v1/route?src_ip=300.1.1.1"))  # fmt: skip
    (s1, h1, b1), (s2, h2, b2), (s3, _, b3) = responses(bytes(t.out))
    assert s1 == 503 and h1["retry-after"] == "1" and b"no route" in b1
    assert s2 == 404 and "retry-after" not in h2 and b"'x'" in b2
    assert s3 == 400 and b"not an IP" in b3


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET /v1/route HTTP/9.9\r\n\r\n", 400),
        (b"GET /\x00 HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n" + b"a" * 4097, 413),
    ],
)
async def test_bad_requests_get_an_answer_and_a_close(data: bytes, status: int) -> None:
    site, daemon = make_site()
    for step in (len(data), 1000):
        conn, t = connect(site)
        for i in range(0, len(data), step):
            conn.data_received(data[i : i + step])
        await settle()
        got = responses(bytes(t.out))
        assert [s for s, _, _ in got] == [status] and t.closed, (data[:60], step, got)
        assert got[0][1]["x-netopt-worker"] == site.pid and "error" in json.loads(got[0][2])
    assert not daemon.got


async def test_a_slow_head_past_the_limit_is_refused() -> None:
    site, _ = make_site()
    conn, t = connect(site)
    conn.data_received(b"GET /v1/route?region=lagos HTTP/1.1\r\n")
    for _ in range(MAX_HEAD_BYTES // 8 + 4096):  # one byte-ish at a time, never a full line
        if t.closed:
            break
        conn.data_received(b"X-A: bbb")
    assert t.closed and responses(bytes(t.out))[0][0] == 431


async def test_forwarded_requests_keep_their_place_in_the_pipeline() -> None:
    site, daemon = make_site()
    daemon.gate = asyncio.Event()
    conn, t = connect(site)
    post = (b"POST /v1/ingest?x=1 HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            b"Authorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")  # fmt: skip
    conn.data_received(request("/healthz") + post + request("/metrics") + request("/v1/pops"))
    await settle()
    assert len(responses(bytes(t.out))) == 1  # the rest waits for the daemon's answer
    daemon.gate.set()
    await settle()
    got = responses(bytes(t.out))
    assert [json.loads(b).get("daemon") for _, _, b in got] == [
        None, "POST /v1/ingest?x=1", "GET /metrics", None]  # fmt: skip
    assert got[1][1]["x-from"] == "daemon" and got[1][1]["x-netopt-worker"] == site.pid
    _, _, headers, body, peer = daemon.got[0]
    assert body == b"abcde" and peer == "127.0.0.9"  # de-chunked
    assert headers["Content-Encoding"] == "gzip" and headers["Authorization"] == "Bearer tok"
    assert not {"Host", "Transfer-Encoding"} & set(headers)
    assert not t.closed


async def test_head_of_a_forwarded_path_announces_the_daemons_length() -> None:
    site, _ = make_site()
    conn, t = connect(site)
    conn.data_received(request("/metrics", method="HEAD") + request("/metrics"))
    await settle()
    (s1, h1, b1), (s2, _, b2) = responses(bytes(t.out), heads=frozenset({0}))
    assert s1 == s2 == 200 and b1 == b"" and b2.startswith(b'{"daemon": "GET')
    announced = len(b'{"daemon": "HEAD /metrics", "body": 0}')  # the fake's HEAD length
    assert int(h1["content-length"]) == announced


async def test_absolute_form_and_expect_continue() -> None:
    site, daemon = make_site()
    conn, t = connect(site)
    conn.data_received(b"POST http://netopt.example/v1/ingest?a=b HTTP/1.1\r\n"
                       b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n")  # fmt: skip
    assert bytes(t.out) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.data_received(b"xyz")
    await settle()
    assert daemon.got[0][:2] == ("POST", "/v1/ingest?a=b") and daemon.got[0][3] == b"xyz"
    assert "Expect" not in daemon.got[0][2]


async def test_a_connection_that_does_not_read_stops_being_read() -> None:
    site, daemon = make_site()
    daemon.gate = asyncio.Event()
    conn, t = connect(site)
    n = SLICE // len(request("/healthz")) * 2
    data = request("/metrics") + request("/healthz") * n
    conn.data_received(data)
    assert not t.reading and conn.backlog  # one slice was parsed, the rest waits
    assert len(conn.queue) <= SLICE // len(request("/healthz")) + 1
    daemon.gate.set()
    await settle()
    assert t.reading and not conn.backlog
    assert len(responses(bytes(t.out))) == n + 1
    conn.pause_writing()  # the socket's send buffer is full: parse nothing more
    conn.data_received(request("/healthz"))
    assert not t.reading and len(responses(bytes(t.out))) == n + 1
    conn.resume_writing()
    assert t.reading and len(responses(bytes(t.out))) == n + 2


async def test_a_half_closed_client_gets_its_answers_then_a_close() -> None:
    site, daemon = make_site()
    daemon.gate = asyncio.Event()
    conn, t = connect(site)
    conn.data_received(request("/metrics") + request("/healthz"))
    assert conn.eof_received() is True  # keep the transport open to answer
    await settle()
    assert not t.out and not t.closed
    daemon.gate.set()
    await settle()
    assert [s for s, _, _ in responses(bytes(t.out))] == [200, 200] and t.closed


async def test_read_token_rules_are_the_daemons() -> None:
    site, daemon = make_site(ApiConfig(read_token=READ, admin_token=ADMIN))
    cases = [(None, "/v1/route?region=lagos", 401), (f"Bearer {'x' * 16}", "/v1/routes", 401),
             (f"Bearer {READ}", "/v1/route?region=lagos", 200),
             (f"Bearer {ADMIN}", "/v1/regions", 200), (None, "/healthz", 200),
             (None, "/readyz", 200), (None, "/openapi.json", 401)]  # fmt: skip
    for auth, target, status in cases * 2:  # the second time from remembered verdicts
        conn, t = connect(site)
        conn.data_received(request(target, *([f"Authorization: {auth}"] if auth else [])))
        ((got, headers, body),) = responses(bytes(t.out))
        assert got == status, (auth, target)
        if status == 401:
            assert headers["www-authenticate"] == "Bearer" and b"token" in body
            assert headers["x-netopt-worker"] == site.pid
    assert not daemon.got


async def test_idle_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    site, _ = make_site()
    conn, t = connect(site)
    conn._idle_check()  # the first check after connecting sees activity: keep
    assert not t.closed
    conn._idle_check()
    assert t.closed


_PIECES = [b"GET ", b"HEAD ", b"POST ", b"/v1/route?region=lagos", b"/healthz", b"/metrics",
           b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", b"Host: x\r\n", b"Content-Length: 3\r\n",
           b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"\r\n", b"3\r\nabc\r\n",
           b"0\r\n\r\n", b"abc", b"%", b"\x00", b"\xff", b":", b" "]  # fmt: skip


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(_PIECES)), max_size=30),
    st.integers(min_value=1, max_value=64),
)
def test_random_bytes_never_raise(pieces: list[bytes], step: int) -> None:
    data = b"".join(pieces)

    async def go() -> None:
        site, _ = make_site()
        conn, t = connect(site)
        for i in range(0, len(data), step):
            conn.data_received(data[i : i + step])
        await settle()
        keep = conn.eof_received()
        await settle()
        if not keep:
            t.close()
        conn.connection_lost(None)
        out = bytes(t.out)
        assert not out or out.startswith(b"HTTP/1.1 ")
        assert b"HTTP/1.1 500 " not in out  # no fault of ours caught on the way
        assert t.closed or not keep

    _run(go())
