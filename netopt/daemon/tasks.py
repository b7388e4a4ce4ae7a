"""Supervised background tasks: the daemon's and the agent's task groups run every long-lived
task (pushers, tracer, store writer, plan loop, housekeeping, route API, shipper) through
`supervise`, and every scheduler run (a probe slot) through `guard`.

A task that raises (anything but `CancelledError`, and other `BaseException`s that are not
`Exception`) is logged with its name, how often it failed in a row and when it comes back,
counted through `on_failure(name)` (the daemon's `netopt_task_failures_total{task}`), and
restarted after an exponential backoff (`Backoff`: 0.5 s doubling to 30 s; a run that stayed
up `healthy_after_s` resets it). So a neighbour's fault in one task never takes the daemon
down, and a task that keeps failing sleeps instead of spinning. Cancellation propagates
untouched: shutdown is still cancelling the task group. A task that returns normally has
finished its work and is not restarted.

No netopt imports: the clock, the sleep and the counter are arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("netopt.daemon.tasks")


@dataclass(frozen=True)
class Backoff:
    min_s: float = 0.5
    max_s: float = 30.0
    healthy_after_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        """The pause before restart number `failures` (1, 2, …) of a run of failures."""
        return float(min(self.max_s, self.min_s * 2 ** min(max(failures - 1, 0), 30)))


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    on_failure: Callable[[str], None],
    *,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    fatal: Callable[[Exception], bool] = lambda _exc: False,
) -> None:
    """Run `run()` until it returns; restart it with backoff whenever it raises, unless
    `fatal(exc)` says the failure must stop the caller (it is then raised as it is)."""
    failures = 0
    while True:
        started = clock()
        try:
            await run()
            return
        except Exception as exc:  # CancelledError is a BaseException: it propagates
            if fatal(exc):
                raise
            if clock() - started >= backoff.healthy_after_s:
                failures = 0
            failures += 1
            delay = backoff.delay_s(failures)
            on_failure(name)
            log.error("task_failed task=%s failures_in_row=%d restart_in_s=%.3g error=%r",
                      name, failures, delay, exc, exc_info=exc)  # fmt: skip
        await sleep(delay)
        log.info("task_restarted task=%s", name)


async def guard(
    name: str, coro: Coroutine[Any, Any, None], on_failure: Callable[[str], None]
) -> None:
    """Await one run (a scheduler's probe slot): a failure is logged and counted, not raised;
    the scheduler's next run is the retry."""
    try:
        await coro
    except Exception as exc:
        on_failure(name)
        log.error("task_failed task=%s error=%r", name, exc, exc_info=exc)


def guarded_spawn(
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    name: str,
    on_failure: Callable[[str], None],
) -> Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]:
    """`spawn` (a task group's create_task) whose tasks never fail the group (`guard`)."""
    return lambda coro: spawn(guard(name, coro, on_failure))
