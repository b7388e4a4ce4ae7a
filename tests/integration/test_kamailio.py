"""netopt's pushes to a real Kamailio 5.6 on loopback, and real SIPp calls following them.

Kamailio runs deploy/kamailio/kamailio.cfg as shipped (both modes); two SIPp PoPs answer
calls and name themselves; a SIPp caller from 127.0.0.1 (region lagos: 127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from netopt.api.routes import ANSWERS, make_app
from netopt.push.config import KamailioProxy
from netopt.push.kamailio import loaded_lines
from netopt.push.pusher import KamailioPusher
from tests.integration.conftest import free_port
from tests.routes_fixture import FakeDaemon, table, world_config
from tests.sip import Kamailio, Uas, calls, free_udp_tcp_port, need

pytestmark = pytest.mark.neighbour


@pytest.fixture
def pops(tmp_path: Path) -> Iterator[dict[str, Uas]]:
    need("sipp")
    started = {p: Uas(p, "127.0.0.1", free_udp_tcp_port(), tmp_path) for p in ("jnb", "fra")}
    try:
        for uas in started.values():
            uas.start()
        yield started
    finally:
        for uas in started.values():
            uas.stop()


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    k = Kamailio(tmp_path)
    try:
        yield k.start()
    finally:
        k.stop()


def pusher_for(k: Kamailio, pops: dict[str, Uas], **proxy: Any) -> KamailioPusher:
    cfg = world_config(sip={p: u.uri for p, u in pops.items()})
    p = KamailioProxy(kind="kamailio", rpc_url=k.rpc_url, dispatcher_file=str(k.ds_file),
                      address_file=str(k.addr_file), reload_delta_s=1.0,
                      verify_interval_s=0.5, **proxy)  # fmt: skip
    return KamailioPusher(p, cfg, CollectorRegistry())


def count(pusher: KamailioPusher, outcome: str) -> float:
    return pusher.pushes.labels(pusher.proxy.id, outcome)._value.get()


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state another task changes
            await asyncio.sleep(0.05)


async def place(k: Kamailio, tmp: Path, n: int = 1) -> list[str]:
    code, answered = await asyncio.to_thread(calls, f"127.0.0.1:{k.sip_port}", tmp, n)
    assert code == 0, f"sipp exit {code}; kamailio log: {k.log_path.read_text()[-1500:]}"
    return [a.pop for a in answered]


@pytest.fixture
async def running(kamailio: Kamailio, pops: dict[str, Uas]) -> AsyncIterator[KamailioPusher]:
    pusher = pusher_for(kamailio, pops)
    task = asyncio.create_task(pusher.run())
    try:
        yield pusher
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_push_verify_and_calls_follow(
    running: KamailioPusher, kamailio: Kamailio, tmp_path: Path
) -> None:
    pusher = running
    pusher.publish(table({"lagos": ["jnb", "fra"], "nairobi": ["fra"]}))
    await until(lambda: pusher.loaded is not None)
    assert [d.duid for d in pusher.loaded or () if d.set_id == 1] == ["jnb", "fra"]
    assert "1 sip:127.0.0.1" in kamailio.ds_file.read_text()
    assert await place(kamailio, tmp_path, 2) == ["jnb", "jnb"]

    # the route moves; the second reload comes within reload_delta → retried, then loaded
    before = pusher.loaded
    pusher.publish(table({"lagos": ["fra", "jnb"], "nairobi": ["fra"]}))
    await until(lambda: pusher.loaded not in (None, before))
    assert [d.duid for d in pusher.loaded or () if d.set_id == 1] == ["fra", "jnb"]
    assert await place(kamailio, tmp_path) == ["fra"]
    assert count(pusher, "ok") == 2 and count(pusher, "rolled_back") == 0


async def test_dead_pop_fails_over_inside_kamailio(
    running: KamailioPusher, kamailio: Kamailio, pops: dict[str, Uas], tmp_path: Path
) -> None:
    running.publish(table({"lagos": ["jnb", "fra"]}))
    await until(lambda: running.loaded is not None)
    pops["jnb"].stop()
    # before netopt withdraws jnb, Kamailio's failure_route already tries the fallback
    assert await place(kamailio, tmp_path) == ["fra"]


async def test_bad_line_is_rolled_back(
    kamailio: Kamailio, pops: dict[str, Uas], tmp_path: Path
) -> None:
    pusher = pusher_for(kamailio, pops)
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert await pusher.push()
    good = kamailio.ds_file.read_text()
    await asyncio.sleep(1.1)  # past reload_delta
    pusher.pops["fra"] = pusher.pops["fra"].__class__("fra", "sip:127.0.0.1:99999")
    pusher._want(table({"lagos": ["fra", "jnb"]}))
    assert not await pusher.push()  # Kamailio said Ok but skipped the bad line
    assert count(pusher, "rolled_back") == 1
    assert "differs" in (pusher.last_error or "")
    assert kamailio.ds_file.read_text() == good
    loaded = loaded_lines(kamailio.rpc("dispatcher.list")["result"])
    assert [d.duid for d in loaded] == ["jnb", "fra"]  # the last good table, whole


async def test_restart_and_drift_are_repushed(
    running: KamailioPusher, kamailio: Kamailio, tmp_path: Path
) -> None:
    pusher = running
    pusher.publish(table({"lagos": ["jnb", "fra"], "nairobi": ["fra", "jnb"]}))
    await until(lambda: pusher.loaded is not None)
    want = sorted((d.set_id, d.uri) for d in pusher.loaded or ())

    seen: list[list[tuple[int, str]]] = []

    async def watch() -> None:  # every table Kamailio ever shows is the whole table
        while True:
            try:
                answer = await asyncio.to_thread(kamailio.rpc, "dispatcher.list")
                seen.append(sorted((d.set_id, d.uri) for d in loaded_lines(answer.get("result"))))
            except OSError:
                pass
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    kamailio.stop()
    kamailio.start()
    assert await place(kamailio, tmp_path) == ["jnb"]
    # someone reloads a hand-edited list: the pusher sees the drift and pushes again
    kamailio.ds_file.write_text("1 sip:127.0.0.1:9 0 1 duid=x;weight=1\n")
    await asyncio.sleep(1.1)
    kamailio.rpc("dispatcher.reload")
    await until(lambda: count(pusher, "drift") >= 1)
    await until(lambda: pusher.loaded is not None and count(pusher, "ok") >= 2)
    watcher.cancel()
    final = loaded_lines(kamailio.rpc("dispatcher.list")["result"])
    assert sorted((d.set_id, d.uri) for d in final) == want
    assert seen and all(s == want or s == [(1, "sip:127.0.0.1:9")] for s in seen)
    assert any(s == want for s in seen)


async def test_per_call_rtjson_mode(pops: dict[str, Uas], tmp_path: Path) -> None:
    daemon = FakeDaemon(world_config(sip={p: u.uri for p, u in pops.items()}))
    runner = web.AppRunner(make_app(daemon))  # type: ignore[arg-type]
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    k = Kamailio(tmp_path, rtjson_api=f"http://127.0.0.1:{port}")
    try:
        k.start()
        # no route yet: the API answers 503 and Kamailio refuses the call (sipp fails)
        code, answered = await asyncio.to_thread(calls, f"127.0.0.1:{k.sip_port}", tmp_path)
        assert code != 0 and answered == []
        app_answers = runner.app[ANSWERS]
        app_answers.publish(table({"lagos": ["jnb", "fra"]}))
        assert await place(k, tmp_path, 2) == ["jnb", "jnb"]
        app_answers.publish(table({"lagos": ["fra", "jnb"]}))
        assert await place(k, tmp_path) == ["fra"]
        app_answers.publish(table({"lagos": ["jnb", "fra"]}))
        pops["jnb"].stop()  # rtjson's serial routing: the fallback takes the call
        assert await place(k, tmp_path) == ["fra"]
    finally:
        k.stop()
        await runner.cleanup()
