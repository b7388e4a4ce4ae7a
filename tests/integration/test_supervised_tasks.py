"""Each of the daemon's background tasks, broken for real (its run raises once), in an
in-process `Daemon` on loopback: the failure is counted in netopt_task_failures_total{task},
the daemon stays up, the task runs again, and shutdown (cancellation) still works."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netopt.config import parse_config
from netopt.daemon.wiring import Daemon
from tests.integration.conftest import free_port, icmp_allowed
from tests.integration.test_serve import CONFIG

pytestmark = pytest.mark.skipif(
    not icmp_allowed(), reason="ICMP probes need root or net.ipv4.ping_group_range"
)
TASKS = ["store_writer", "plan_loop", "housekeeping", "tracer", "pusher:core", "probe_slot",
         "route_api"]  # fmt: skip


def daemon_for(tmp_path: Path) -> Daemon:
    proxy = {"kind": "kamailio", "id": "core", "rpc_url": f"http://127.0.0.1:{free_port()}/RPC",
             "dispatcher_file": str(tmp_path / "dispatcher.list"), "timeout_s": 0.3}  # fmt: skip
    data = {**CONFIG, "proxies": [proxy], "api": {"listen": f"127.0.0.1:{free_port()}"},
            "store": {"url": f"sqlite:///{tmp_path / 'netopt.db'}"}}  # fmt: skip
    return Daemon(parse_config(data))


def where(daemon: Daemon, task: str) -> tuple[Any, str]:
    """The object and attribute whose coroutine function runs `task`."""
    return {
        "store_writer": (daemon.store, "run"), "plan_loop": (daemon, "plan_loop"),
        "housekeeping": (daemon, "_housekeeping"), "tracer": (daemon.tracer, "run"),
        "pusher:core": (daemon.pushers[0], "run"), "probe_slot": (daemon, "probe_slot"),
        "route_api": (daemon, "_serve"),
    }[task]  # fmt: skip


def break_once(obj: Any, attr: str, runs: list[str]) -> None:
    real: Callable[..., Awaitable[None]] = getattr(obj, attr)

    async def broken(*args: Any) -> None:
        runs.append(attr)
        if len(runs) == 1:
            if attr == "_serve":  # the route API breaks once it has listened (as a crash would)
                await _listen_then_cancel(real, *args)
            raise RuntimeError(f"{attr} broken on purpose")
        await real(*args)

    setattr(obj, attr, broken)


async def _listen_then_cancel(real: Callable[..., Awaitable[None]], on_listening: Any) -> None:
    up = asyncio.Event()

    def listening(url: str) -> None:
        on_listening(url)
        up.set()

    inner = asyncio.ensure_future(real(listening))
    await up.wait()
    inner.cancel()
    await asyncio.gather(inner, return_exceptions=True)


def failures(daemon: Daemon, task: str) -> float:
    return float(daemon.metrics.task_failures.labels(task)._value.get())


@pytest.mark.parametrize("task", TASKS)
async def test_a_broken_task_is_counted_restarted_and_the_daemon_stays_up(
    tmp_path: Path, task: str
) -> None:
    daemon = daemon_for(tmp_path)
    runs: list[str] = []
    break_once(*where(daemon, task), runs)
    urls: list[str] = []
    main = asyncio.create_task(daemon.run(urls.append))
    try:
        async with asyncio.timeout(20):
            while len(runs) < 2 or failures(daemon, task) < 1:
                assert not main.done(), main
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the restarted task runs on
        assert not main.done()
        assert failures(daemon, task) == 1
        text = daemon.metrics.exposition().decode()
        for name in TASKS:  # every supervised task's series exists from start-up
            assert f'netopt_task_failures_total{{task="{name}"}}' in text
        assert len(urls) == 1  # listening is announced once, also after a restart
        async with aiohttp.ClientSession() as session, session.get(urls[0] + "/healthz") as r:
            assert r.status == 200  # the route API answers (again, for route_api)
    finally:
        daemon.request_stop()
        with pytest.raises(asyncio.CancelledError):
            await main


async def test_a_route_api_that_cannot_listen_stops_start_up(tmp_path: Path) -> None:
    daemon = daemon_for(tmp_path)

    async def cannot_bind(_on_listening: Any) -> None:
        raise OSError(98, "Address already in use")

    daemon._serve = cannot_bind  # type: ignore[method-assign]
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(daemon.run(), 10)
    assert caught.group_contains(OSError)
    assert failures(daemon, "route_api") == 0
