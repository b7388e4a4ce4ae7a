# ruff: noqa: ASYNC240  (small files in tmp_path; blocking reads are fine in a test)
"""The pusher's logic against a fake Kamailio (no sockets): coalescing, Ongoing reload,
verification, rollback, never an empty table. Files go to tmp_path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from netopt.errors import PushError
from netopt.push.config import KamailioProxy
from netopt.push.kamailio import DsLine, _parse_attrs, loaded_lines
from netopt.push.pusher import KamailioPusher, write_atomic
from netopt.push.rpc import RpcError
from tests.routes_fixture import table, world_config


class FakeKamailio:
    """Loads the dispatcher file on reload like Kamailio (skipping lines with a bad port)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded: list[DsLine] = []
        self.calls: list[str] = []
        self.refuse_reloads = 0
        self.down = False

    async def __call__(self, method: str, params: Any) -> Any:
        self.calls.append(method)
        if self.down:
            raise PushError("cannot reach")
        if method == "dispatcher.reload":
            if self.refuse_reloads:
                self.refuse_reloads -= 1
                raise RpcError(method, 500, "Ongoing reload")
            self.loaded = list(self._parse())
            return "Ok"
        if method == "dispatcher.list":
            sets: dict[int, list[Any]] = {}
            for d in self.loaded:
                sets.setdefault(d.set_id, []).append({"DEST": {
                    "URI": d.uri, "PRIORITY": d.priority,
                    "ATTRS": {"BODY": f"duid={d.duid};weight={d.weight}"}}})  # fmt: skip
            return {"RECORDS": [{"SET": {"ID": s, "TARGETS": t}} for s, t in sets.items()]}
        return "Ok"

    def _parse(self) -> list[DsLine]:
        out = []
        for line in self.path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            s, uri, flags, prio, attrs = line.split()
            if int(uri.rsplit(":", 1)[1]) > 65535:
                continue  # Kamailio: a warning, and "Ok" anyway
            a = _parse_attrs(attrs)
            out.append(DsLine(int(s), int(prio), uri, int(flags), a["duid"], int(a["weight"])))
        return out


def make(tmp_path: Path) -> tuple[KamailioPusher, FakeKamailio]:
    path = tmp_path / "dispatcher.list"
    fake = FakeKamailio(path)
    proxy = KamailioProxy(kind="kamailio", rpc_url="http://127.0.0.1:1/RPC",
                          dispatcher_file=str(path), reload_delta_s=0.01,
                          verify_interval_s=0.05)  # fmt: skip
    return KamailioPusher(proxy, world_config(), CollectorRegistry(), rpc_call=fake), fake


def count(p: KamailioPusher, outcome: str) -> float:
    return p.pushes.labels(p.proxy.id, outcome)._value.get()


async def test_ongoing_reload_is_retried_with_the_newest_table(tmp_path: Path) -> None:
    pusher, fake = make(tmp_path)
    fake.refuse_reloads = 1
    task = asyncio.create_task(pusher.run())
    try:
        pusher.publish(table({"lagos": ["jnb", "fra"]}))
        await asyncio.sleep(0)  # the task picks this one up and is refused
        pusher.publish(table({"lagos": ["lfw", "fra"]}))
        pusher.publish(table({"lagos": ["fra", "jnb"]}))  # coalesced: only this one matters
        async with asyncio.timeout(5):
            while count(pusher, "ok") < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert count(pusher, "retry") == 1
    assert [d.duid for d in fake.loaded] == ["fra", "jnb"]
    assert fake.calls.count("dispatcher.reload") == 2


async def test_skipped_line_rolls_back_to_last_good(tmp_path: Path) -> None:
    pusher, fake = make(tmp_path)
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert await pusher.push()
    good = Path(pusher.proxy.dispatcher_file).read_text()
    pusher.pops["fra"] = pusher.pops["fra"].__class__("fra", "sip:198.18.1.1:70000")
    pusher._want(table({"lagos": ["fra", "jnb"]}))
    assert not await pusher.push()
    assert count(pusher, "rolled_back") == 1 and "missing set 1" in (pusher.last_error or "")
    assert Path(pusher.proxy.dispatcher_file).read_text() == good
    assert [d.duid for d in fake.loaded] == ["jnb", "fra"]


async def test_unreachable_proxy_fails_and_keeps_the_file_good(tmp_path: Path) -> None:
    pusher, fake = make(tmp_path)
    pusher._want(table({"lagos": ["jnb"]}))
    assert await pusher.push()
    good = Path(pusher.proxy.dispatcher_file).read_text()
    fake.down = True
    pusher._want(table({"lagos": ["fra"]}))
    assert not await pusher.push()
    assert count(pusher, "failed") == 1 and pusher.loaded is None
    assert Path(pusher.proxy.dispatcher_file).read_text() == good


async def test_empty_table_is_never_pushed(tmp_path: Path) -> None:
    pusher, fake = make(tmp_path)
    task = asyncio.create_task(pusher.run())
    try:
        pusher.publish(table({}))
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    assert "dispatcher.reload" not in fake.calls
    assert not Path(pusher.proxy.dispatcher_file).exists()


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old\n")
    write_atomic(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary file left behind


WRONG_SHAPES = [
    "Ok", [1, 2], 7, {"RECORDS": "none"}, {"RECORDS": [5]}, {"RECORDS": [{"SET": []}]},
    {"RECORDS": [{"SET": {"ID": "one", "TARGETS": []}}]},
    {"RECORDS": [{"SET": {"ID": None}}]},
    {"RECORDS": [{"SET": {"ID": 1, "TARGETS": [{"DEST": {"PRIORITY": [], "URI": "x"}}]}}]},
    {"RECORDS": [{"SET": {"ID": 1, "TARGETS": [{"DEST": {"ATTRS": "duid=x"}}]}}]},
]  # fmt: skip


@pytest.mark.parametrize("result", WRONG_SHAPES)
def test_a_wrong_shaped_dispatcher_list_is_a_push_error(result: Any) -> None:
    with pytest.raises(PushError, match=r"^dispatcher\.list: not the dispatcher's answer shape"):
        loaded_lines(result)


@pytest.mark.parametrize("result", WRONG_SHAPES[:4])
async def test_a_wrong_shaped_answer_fails_the_push_and_the_check(
    tmp_path: Path, result: Any
) -> None:
    pusher, fake = make(tmp_path)
    pusher._want(table({"lagos": ["jnb"]}))
    real = fake.__call__

    async def garbled(method: str, params: Any) -> Any:
        return result if method == "dispatcher.list" else await real(method, params)

    pusher._rpc = garbled
    assert not await pusher.push()  # no earlier file: failed, not a crash
    assert count(pusher, "failed") == 1 and "answer shape" in (pusher.last_error or "")
    await pusher.check()
    assert pusher.loaded is None and "answer shape" in (pusher.last_error or "")
