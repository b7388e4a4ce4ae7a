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
from netopt.push.pusher import TOKEN_LINE, KamailioPusher, stamped, token_of, write_atomic
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


class Lease:
    """A fence that answers a token (or None) per call, recording each call."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers, self.calls = answers, 0

    async def __call__(self) -> int | None:
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def fenced(tmp_path: Path, answers: list[int | None]) -> tuple[KamailioPusher, FakeKamailio]:
    pusher, fake = make(tmp_path)
    pusher._fence = Lease(answers)
    return pusher, fake


async def test_a_push_carries_the_token_as_a_comment_kamailio_skips(tmp_path: Path) -> None:
    pusher, fake = fenced(tmp_path, [7])
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert await pusher.push()
    text = Path(pusher.proxy.dispatcher_file).read_text()
    assert token_of(text) == 7 and text.count(TOKEN_LINE) == 1
    assert [d.duid for d in fake.loaded] == ["jnb", "fra"]  # the comment line changed nothing


async def test_a_deposed_leader_writes_nothing_and_reloads_nothing(tmp_path: Path) -> None:
    pusher, fake = fenced(tmp_path, [None])
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert not await pusher.push()
    assert count(pusher, "fenced") == 1 and count(pusher, "ok") == 0
    assert not Path(pusher.proxy.dispatcher_file).exists() and fake.calls == []


async def test_a_lease_lost_between_write_and_reload_is_not_reloaded(tmp_path: Path) -> None:
    pusher, fake = fenced(tmp_path, [3, None])
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert not await pusher.push()
    assert count(pusher, "fenced") == 1 and "dispatcher.reload" not in fake.calls


async def test_a_newer_token_between_write_and_reload_is_refused(tmp_path: Path) -> None:
    pusher, fake = fenced(tmp_path, [3, 4])
    pusher._want(table({"lagos": ["jnb", "fra"]}))
    assert not await pusher.push()
    assert count(pusher, "fenced") == 1 and "dispatcher.reload" not in fake.calls


def test_stamping_replaces_an_old_token_and_token_0_writes_none() -> None:
    text = "# header\n1 sip:a 0 1 duid=a;weight=1\n"
    once = stamped(text, 5)
    assert token_of(once) == 5 and token_of(stamped(once, 9)) == 9
    assert stamped(once, 9).count(TOKEN_LINE) == 1
    assert stamped(once, 0) == text and token_of(text) is None
