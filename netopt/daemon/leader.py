"""The lease task: which controller decides and pushes (… decide → **publish**).

With a SQLite store there is one controller: `SoleLeader` always leads (token 0, nothing
fenced). With PostgreSQL, `PgLeader` runs as a supervised task: every `ha.lease_interval_s` it
renews the lease (netopt.store.lease: advisory lock + generation), feeds the outcome to the pure
rule (netopt.core.leader) and sets `netopt_leader`. The leader writes its route table to the
database after each change (`publish`); a follower reads the newest one at each renewal and
hands it to `on_table` (its route API answers from it). The push path calls `fence()` right
before each reload: the generation to stamp, or None when the lease is no longer ours.

All database work runs in a thread, one call at a time, on the lease's own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable

import psycopg
from prometheus_client import Gauge

from netopt.config import Config
from netopt.core import leader as rule
from netopt.core.decide import RouteTable
from netopt.core.table_codec import decode, encode
from netopt.errors import StoreError
from netopt.store.lease import LeaderLease

log = logging.getLogger("netopt.leader")
Clock = Callable[[], float]


class SoleLeader:
    """One controller on SQLite: always the leader, nothing to fence."""

    def __init__(self, gauge: Gauge) -> None:
        gauge.set(1)

    def leading(self) -> bool:
        return True

    async def fence(self) -> int | None:
        return 0

    def publish(self, table: RouteTable) -> None:
        pass

    async def run(self) -> None:
        return None

    def close(self) -> None:
        pass


class PgLeader:
    """One controller's side of the PostgreSQL lease (see the module docstring)."""

    def __init__(
        self, config: Config, gauge: Gauge, on_table: Callable[[RouteTable], None], *,
        wall_clock: Clock = time.time, mono_clock: Clock = time.monotonic,
    ) -> None:  # fmt: skip
        self.url, self.ha = config.store.url, config.ha
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{config.api.listen}"
        self.gauge, self.on_table = gauge, on_table
        self.wall_clock, self.mono_clock = wall_clock, mono_clock
        self.state = rule.LeaderState()
        self._lease: LeaderLease | None = None
        self._lock = asyncio.Lock()  # one database call at a time on the lease's connection
        self._pending: RouteTable | None = None
        self._wake = asyncio.Event()
        self._seen_table: tuple[int, int] | None = None  # (generation, at) last taken
        self._was_leader = False
        gauge.set(0)

    def leading(self) -> bool:
        return rule.is_leader(self.state, self.mono_clock(), self.ha.lease_interval_s)

    def publish(self, table: RouteTable) -> None:
        """The leader's new table: shared at once (written by the task, not here)."""
        self._pending = table
        self._wake.set()

    async def fence(self) -> int | None:
        """The token to stamp on a push about to be made, or None: refuse it (fenced)."""
        if not self.leading():
            return None
        token = self.state.held or 0
        try:
            async with asyncio.timeout(self.ha.lease_interval_s), self._lock:
                held, newest = await asyncio.to_thread(self._check)
        except TimeoutError:
            log.warning("fence_check_timeout (push refused)")
            return None
        except (psycopg.Error, StoreError) as exc:  # the session is gone: so is the lease
            self.state = rule.renew_failed(self.state)
            self._gauge()
            log.warning("fence_check_failed error=%r (push refused, not leading)", exc)
            return None
        if not held:
            self.state = rule.renew_failed(self.state)
        elif newest > self.state.newest_seen:
            self.state = dataclasses.replace(self.state, newest_seen=newest)
        self._gauge()
        return token if rule.may_push(token, newest, held) else None

    def _check(self) -> tuple[bool, int]:
        lease = self._lease
        if lease is None:
            return False, 0
        return lease.still_held(), lease.newest()

    async def run(self) -> None:
        # twice per interval: a renewal a little late never lets a healthy lease lapse
        interval, next_tick = self.ha.lease_interval_s / 2, 0.0
        while True:
            wait = max(0.0, next_tick - self.mono_clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            if self.mono_clock() >= next_tick:
                next_tick = self.mono_clock() + interval
                await self.tick()
            elif self._pending is not None and self.leading():
                await self._share()

    async def tick(self) -> None:
        """Renew (or try to take) the lease; then share our table or take the leader's."""
        now = self.mono_clock()
        try:
            async with self._lock:
                held, newest = await asyncio.to_thread(self._renew, int(self.wall_clock() * 1e9))
            self.state = rule.renewed(self.state, held, newest, now)
        except (psycopg.Error, StoreError, OSError) as exc:
            self.state = rule.renew_failed(self.state)
            log.warning("lease_renew_failed error=%r (not leading)", exc)
            await asyncio.to_thread(self._drop)
        self._gauge()
        if self.leading():
            await self._share()
        else:
            await self._follow()

    def _renew(self, now_wall_ns: int) -> tuple[int | None, int]:
        if self._lease is not None and self._lease.broken:
            self._drop()  # its session died (and its lock with it): try again on a new one
        if self._lease is None:
            self._lease = LeaderLease(self.url, self.holder, self.ha.name,
                                      connect_timeout_s=self.ha.lease_interval_s)  # fmt: skip
        got = self._lease.try_acquire(now_wall_ns)
        return (None if got is None else got.generation), self._lease.newest()

    def _drop(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                lease.close()

    def _gauge(self) -> None:
        leading = self.leading()
        self.gauge.set(1 if leading else 0)
        if leading != self._was_leader:
            self._was_leader = leading
            log.warning("leadership %s generation=%s holder=%s",
                        "taken" if leading else "lost", self.state.held, self.holder)  # fmt: skip
            if not leading:
                self._pending = None  # a deposed leader's table is not shared

    async def _share(self) -> None:
        table, self._pending = self._pending, None
        token = self.state.held
        if table is None or token is None:
            return
        body = encode(table, self.wall_clock() - self.mono_clock())
        at_ns = int(self.wall_clock() * 1e9)
        try:
            async with self._lock:
                lease = self._lease
                if lease is not None:
                    await asyncio.to_thread(lease.share_table, token, at_ns, body)
        except (psycopg.Error, StoreError) as exc:
            self._pending = self._pending or table  # shared at the next tick
            log.warning("table_share_failed error=%r", exc)

    async def _follow(self) -> None:
        try:
            async with self._lock:
                lease = self._lease
                row = None if lease is None else await asyncio.to_thread(lease.shared_table)
        except (psycopg.Error, StoreError) as exc:
            log.warning("table_poll_failed error=%r", exc)
            return
        if row is None or (row[0], row[1]) == self._seen_table:
            return
        try:
            table = decode(row[2], self.wall_clock() - self.mono_clock())
        except ValueError as exc:
            log.error("table_poll_bad generation=%d error=%s", row[0], exc)
            return
        self._seen_table = (row[0], row[1])
        self.on_table(table)

    def close(self) -> None:
        self._drop()


def make_leader(
    config: Config, gauge: Gauge, on_table: Callable[[RouteTable], None], *,
    wall_clock: Clock = time.time, mono_clock: Clock = time.monotonic,
) -> SoleLeader | PgLeader:  # fmt: skip
    """PgLeader for a PostgreSQL store, SoleLeader for SQLite."""
    if config.store.url.startswith(("postgresql://", "postgres://")):
        return PgLeader(config, gauge, on_table, wall_clock=wall_clock, mono_clock=mono_clock)
    return SoleLeader(gauge)
