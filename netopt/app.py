"""Wires the daemon: schedule → probe → store/window/metrics → plan → decide → RouteTable → API.

The only module that reads the clock. Everything it starts runs as tasks of one task group on
one event loop; shutdown is cancelling that group (SIGTERM / SIGINT), after which every socket,
job and file is closed and the store is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from netopt.api import serve_api
from netopt.config import Config
from netopt.metrics import Metrics
from netopt.probing import ProbeJob, ProberPool, jobs_from_config, record_of, run_round
from netopt.routes import RouteTable, table_from_plan
from netopt.store import SqliteStore
from netopt.window import WindowStats
from topology.planner import PathStats, plan

log = logging.getLogger("netopt")


class Daemon:
    """The controller's state: config, store, metrics, window stats and the current table."""

    def __init__(self, config: Config, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.metrics = Metrics()
        self.metrics.config_ok.set(1)
        self.store = SqliteStore(config.store.sqlite_path)
        self.window = WindowStats(config.planner.window_s)
        self.topology = config.to_topology()
        self.table = RouteTable(default_dest=self._default_dest())
        self.pool = ProberPool(_socket_in())
        self._dirty = asyncio.Event()
        self._ready = asyncio.Event()
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None
        self._main: asyncio.Task[None] | None = None

    def _default_dest(self) -> dict[str, str]:
        return {r.id: self.config.destinations[0] for r in self.config.regions}

    # --- probe → store, window, metrics ---------------------------------------------------
    async def probe_job(self, job: ProbeJob) -> None:
        try:
            result, stats = await run_round(self.pool, job)
        except Exception as exc:  # our fault or a neighbour's: say so, keep probing
            log.error("probe_failed job=%s error=%r", job.job_id, exc)
            return
        record = record_of(job, result, stats)
        self.store.add(record)
        self.window.add(record)
        rtts_s = [s.rtt_ns / 1e9 for s in result.samples if s.outcome == "ok" and s.rtt_ns]
        jitter_s = None if stats.jitter_ms is None else stats.jitter_ms / 1000
        self.metrics.observe_round(
            job.src, job.dst, job.kind, rtts_s, stats.sent, stats.received,
            result.outcome_counts(), jitter_s,
        )  # fmt: skip
        self._dirty.set()

    # --- stats → plan → decide → table ---------------------------------------------------
    def path_stats(self) -> list[PathStats]:
        """Window stats, with PoP→region measurements turned to region→PoP (RTT is symmetric)."""
        regions = {r.id for r in self.config.regions}
        best: dict[tuple[str, str], PathStats] = {}
        for s in self.window.stats(int(self.wall_clock() * 1e9)):
            if s.src not in regions and s.dst in regions:
                s = PathStats(s.dst, s.src, s.rtt_ms, s.jitter_ms, s.loss_pct, s.samples)
            key = (s.src, s.dst)
            if key not in best or s.samples > best[key].samples:
                best[key] = s
        return list(best.values())

    def replan(self) -> RouteTable:
        stats = self.path_stats()
        for s in stats:
            self.metrics.path_loss.labels(s.src, s.dst).set(s.loss_pct / 100)
            self.metrics.path_rtt.labels(s.src, s.dst).set(s.rtt_ms / 1000)
        p = self.config.planner
        new_plan = plan(
            self.topology, stats, target_mos=p.target_mos, margin_mos=p.margin_mos, codec=p.codec
        )
        table = table_from_plan(new_plan, self.table, self.wall_clock(), self._default_dest())
        self._publish(table)
        self.metrics.plans.inc()
        return table

    def _publish(self, table: RouteTable) -> None:
        old = self.table
        m = self.metrics
        for entry in table:
            before = old.get(entry.region, entry.dest)
            if before is not None and before.route is not None:
                m.route_info.remove(entry.region, entry.dest, before.route.kind,
                                    before.route.entry_pop or entry.dest)  # fmt: skip
            if entry.route is None:
                continue
            pop = entry.route.entry_pop or entry.dest
            m.route_info.labels(entry.region, entry.dest, entry.route.kind, pop).set(1)
            m.route_mos.labels(entry.region, entry.dest).set(entry.route.expected.mos)
            m.acceleration.labels(entry.region, entry.dest).set(
                1 if entry.acceleration == "needed" else 0
            )
            if (
                before is not None
                and before.route is not None
                and (before.route.path != entry.route.path)
            ):
                m.route_changes.labels(entry.region).inc()
                log.info(
                    "route_change region=%s dest=%s from=%s to=%s reason=%r", entry.region,
                    entry.dest, ">".join(before.route.path), ">".join(entry.route.path),
                    entry.reason,
                )  # fmt: skip
        self.table = table
        if any(e.route is not None for e in table):
            self._ready.set()

    async def plan_loop(self) -> None:
        interval = self.config.planner.min_replan_interval_s
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.replan()
            except Exception as exc:
                log.error("plan_failed error=%r", exc)
            await asyncio.sleep(interval)

    # --- the whole daemon ----------------------------------------------------------------
    def start_scheduler(self, tg: asyncio.TaskGroup) -> AsyncIOScheduler:
        """One interval job per probe job; each run launches a round as a task of `tg`.

        Rounds are tasks of the daemon's task group (not APScheduler's), so shutdown cancels
        them like everything else; a round still running when its next start comes is skipped.
        """
        scheduler = AsyncIOScheduler()
        now = self.wall_clock()
        running: set[str] = set()

        async def launch(job: ProbeJob) -> None:
            if self._stopping or job.job_id in running:
                return
            running.add(job.job_id)
            task = tg.create_task(self.probe_job(job))
            task.add_done_callback(lambda _t: running.discard(job.job_id))

        for job in jobs_from_config(self.config):
            scheduler.add_job(
                launch, "interval", args=[job], id=job.job_id,
                seconds=job.interval_s, coalesce=True,
                misfire_grace_time=max(1, int(job.interval_s)),
                next_run_time=_datetime(now + job.start_offset_s()),
            )  # fmt: skip
        scheduler.start()
        return scheduler

    def request_stop(self) -> None:
        """Stop launching rounds and cancel the daemon (the signal handlers call this)."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._main is not None:
            self._main.cancel()

    async def run(self, on_listening: Callable[[str], None] | None = None) -> None:
        self._main = asyncio.current_task()
        try:
            async with asyncio.TaskGroup() as tg:
                self._scheduler = self.start_scheduler(tg)
                tg.create_task(self.store.run())
                tg.create_task(self.plan_loop())
                tg.create_task(serve_api(self, on_listening))
        finally:
            self._stopping = True
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
            await self.pool.close()
            with contextlib.suppress(Exception):
                await self.store.flush()
            self.store.close()


def _datetime(wall_s: float):  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.fromtimestamp(wall_s).astimezone()


def _socket_in() -> Callable[..., socket.socket]:
    from netopt.lab.netns import socket_in

    return socket_in


def run_until_signalled(daemon: Daemon, on_listening: Callable[[str], None] | None = None) -> int:
    """Run the daemon until SIGTERM or SIGINT; then shut down cleanly and return 0."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run(on_listening)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    log.info("stopped")
    return 0
