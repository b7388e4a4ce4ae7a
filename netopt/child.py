"""Worker processes of the daemon (route API workers, probe workers): the parent names its log
level to them and stops them by PID; `run_child` is a child's main body."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from netopt.logs import setup_logging

STOP_TIMEOUT_S = 5.0


def log_level() -> str:
    """The root logger's level, as a worker process's `--log-level` takes it."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()


def run_child(level: str, work: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """A worker process's body (route API and probe workers alike): log at the daemon's level,
    leave SIGINT and SIGHUP to the daemon (Ctrl-C, a reload sent to the process group: the
    daemon stops us by PID), run `work()` until it ends or SIGTERM cancels it; exit status 0."""
    setup_logging(level)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await work()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(run())
    return 0


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM by PID, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
