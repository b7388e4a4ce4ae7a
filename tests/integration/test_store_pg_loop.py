"""A stalled PostgreSQL read never stalls the daemon's event loop (issue #15: the store is
"async, a pool").

The read is stalled for real: another session holds an ACCESS EXCLUSIVE lock on `decisions`,
so the status page's read waits inside the server. While it waits, /healthz answers and a
timer on the loop ticks; once the lock goes, the page is served with what the read found.
The same with the whole server paused (SIGSTOP to the postmaster and its children, SIGCONT
after): the read's socket gets no answer at all, and the loop still answers.
A read past `read_timeout_s` is refused in words (503 for the assessments list), and the
status page still shows the route table.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from netopt.store import DecisionRecord, PostgresStore
from tests.daemon_app import daemon_with_app, served
from tests.integration.test_ingest import ADMIN, config_dict

pytestmark = pytest.mark.neighbour
READER = {"Authorization": "Bearer reader-0123456789ab"}


@pytest.fixture
async def daemon_client(tmp_path: Path, pg_dsn: str) -> AsyncIterator[tuple[Any, Any]]:
    """(the daemon on PostgreSQL, a session and the base URL of its served app)."""
    config = {**config_dict(tmp_path), "store": {"url": pg_dsn}}
    async with (
        daemon_with_app(config, tmp_path) as (daemon, app, _path),
        served(app) as url,
        aiohttp.ClientSession(base_url=url) as session,
    ):
        yield daemon, session


@asynccontextmanager
async def locked(dsn: str, tables: str = "decisions") -> AsyncIterator[None]:
    """`tables` locked by another session until the block ends: every read of them waits."""
    async with await psycopg.AsyncConnection.connect(dsn) as locker:
        await locker.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
        try:
            yield
        finally:
            await locker.rollback()


async def wait_for_a_stalled_read(dsn: str, timeout_s: float = 20.0) -> None:
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
           "AND query LIKE '%FROM decisions%'")  # fmt: skip
    deadline = time.monotonic() + timeout_s
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        while time.monotonic() < deadline:
            row = await (await db.execute(sql)).fetchone()
            if row and row[0] > 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"no read of decisions waited on the lock within {timeout_s} s")


async def test_a_stalled_read_leaves_the_loop_answering(daemon_client: Any, pg_dsn: str) -> None:
    daemon, http = daemon_client
    assert isinstance(daemon.store, PostgresStore)
    decision = DecisionRecord(time.time_ns(), "lagos", "fra", "switch", None, "fra", None, 4.2,
                              1, 0.0, "first plan", "{}")  # fmt: skip
    daemon.store.add_decision(decision)
    await daemon.store.flush()
    ticks = [0]

    async def status_page() -> tuple[int, str]:
        async with http.get("/", headers=READER) as resp:
            return resp.status, await resp.text()

    async def timer() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticking = asyncio.create_task(timer())
    try:
        async with locked(pg_dsn):
            page = asyncio.create_task(status_page())
            await wait_for_a_stalled_read(pg_dsn)
            before = ticks[0]
            for _ in range(3):
                async with http.get("/healthz") as resp:
                    assert resp.status == 200
            await asyncio.sleep(0.1)
            assert ticks[0] > before  # the loop kept running its timers
            assert not page.done()  # and the read is still waiting in the server
        status, text = await asyncio.wait_for(page, 20)
        assert status == 200 and "first plan" in text  # the read, once let go, found the row
    finally:
        ticking.cancel()


async def test_a_read_past_its_timeout_is_refused_in_words(daemon_client: Any, pg_dsn: str) -> None:
    daemon, http = daemon_client
    daemon.store.read_timeout_s = 0.5
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with locked(pg_dsn, "decisions, assessments"):
        async with http.get("/", headers=READER) as resp:
            assert resp.status == 200  # the route table, without the decisions it cannot read
            assert "Route table" in await resp.text()
        async with http.get("/v1/assessments", headers=admin) as resp:
            assert resp.status == 503
            answer = await resp.json()
            assert "store unavailable, retry later" in answer["error"]
            assert "not answered within 0.5 s" in answer["error"]
    async with http.get("/v1/assessments", headers=admin) as resp:
        assert resp.status == 200  # the pool lost nothing to the cancelled reads


def server_pids(cluster: Any) -> list[int]:
    """The postmaster (from postmaster.pid) and every process it forked."""
    root = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


@contextmanager
def paused(cluster: Any) -> Iterator[None]:
    pids = server_pids(cluster)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_a_paused_server_leaves_the_loop_answering(
    daemon_client: Any, pg_cluster: Any
) -> None:
    _daemon, http = daemon_client
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.get("/v1/assessments", headers=admin) as resp:
        assert resp.status == 200  # the read pool is open and has a connection

    async def listing() -> int:
        async with http.get("/v1/assessments", headers=admin) as resp:
            return resp.status

    with paused(pg_cluster):
        pending = asyncio.create_task(listing())
        for _ in range(3):
            async with http.get("/healthz") as resp:
                assert resp.status == 200
        await asyncio.sleep(0.2)
        assert not pending.done()  # the read waits for a server that does not answer
    assert await asyncio.wait_for(pending, 20) == 200  # and gets its answer once resumed
