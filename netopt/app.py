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
from types import MappingProxyType

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from netopt.api import serve_api
from netopt.config import Config
from netopt.decide import Decider, RouteTable, TableEntry
from netopt.metrics import Metrics
from netopt.probing import ProbeJob, ProberPool, jobs_from_config, record_of, run_round
from netopt.push.pusher import make_pushers
from netopt.store import RoundRecord, SqliteStore
from netopt.window import WindowStats
from topology.planner import PathStats, plan

log = logging.getLogger("netopt")


class Daemon:
    """The controller's state: config, store, metrics, window stats, decider, current table.

    Clocks are arguments: `wall_clock` (Unix seconds, for storage and display) and
    `mono_clock` (monotonic seconds, for every interval and decision).
    """

    def __init__(
        self,
        config: Config,
        *,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.mono_clock = mono_clock
        self.metrics = Metrics()
        self.metrics.config_ok.set(1)
        self.store = SqliteStore(config.store.sqlite_path)
        self.window = WindowStats(config.planner.window_s)
        self.topology = config.to_topology()
        self.decider = Decider(config.to_policy())
        self.table = RouteTable(MappingProxyType({}), mono_clock())
        self.publishers: list[Callable[[RouteTable], None]] = []
        self.pushers = make_pushers(config, self.metrics.registry)
        self.publishers += [p.publish for p in self.pushers]
        self.pool = ProberPool(_socket_in())
        self._regions = frozenset(r.id for r in config.regions)
        self._fresh_at: dict[str, float] = {}
        self._last_round: dict[tuple[str, str], RoundRecord] = {}
        self._dirty = asyncio.Event()
        # the first plan waits for every path's first round (or two intervals), so no region
        # is decided on half its candidates
        jobs = jobs_from_config(config)
        self._unmeasured = {(j.src, j.dst) for j in jobs}
        self._warmup_s = 2 * max((j.interval_s for j in jobs), default=0.0)
        self._started = mono_clock()
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None
        self._main: asyncio.Task[None] | None = None

    def wall_time(self, mono_s: float) -> float:
        """The Unix time of a monotonic instant (for display: decided_at in the API)."""
        return self.wall_clock() - (self.mono_clock() - mono_s)

    # --- probe → store, window, metrics ---------------------------------------------------
    async def probe_job(self, job: ProbeJob) -> None:
        try:
            result, stats = await run_round(self.pool, job)
        except Exception as exc:  # our fault or a neighbour's: say so, keep probing
            log.error("probe_failed job=%s error=%r", job.job_id, exc)
            return
        self.add_round(record_of(job, result, stats))
        rtts_s = [s.rtt_ns / 1e9 for s in result.samples if s.outcome == "ok" and s.rtt_ns]
        jitter_s = None if stats.jitter_ms is None else stats.jitter_ms / 1000
        self.metrics.observe_round(
            job.src, job.dst, job.kind, rtts_s, stats.sent, stats.received,
            result.outcome_counts(), jitter_s,
        )  # fmt: skip

    def add_round(self, record: RoundRecord) -> None:
        """A round measured here or by an agent: into the store, the window, the next plan."""
        self.store.add(record)
        self.window.add(record)
        self._last_round[(record.src, record.dst)] = record
        self._unmeasured.discard((record.src, record.dst))
        now = self.mono_clock()
        for site in (record.src, record.dst):
            if site in self._regions:
                self._fresh_at[site] = now
        self._dirty.set()

    # --- stats → plan → decide → table ---------------------------------------------------
    def path_stats(self) -> list[PathStats]:
        """Window stats, with PoP→region measurements turned to region→PoP (RTT is symmetric)."""
        best: dict[tuple[str, str], PathStats] = {}
        for s in self.window.stats(int(self.wall_clock() * 1e9)):
            if s.src not in self._regions and s.dst in self._regions:
                s = PathStats(s.dst, s.src, s.rtt_ms, s.jitter_ms, s.loss_pct, s.samples)
            key = (s.src, s.dst)
            if key not in best or s.samples > best[key].samples:
                best[key] = s
        return list(best.values())

    def pop_alive(self) -> dict[str, bool]:
        """A PoP is dead when the latest round of every path towards it got no answer."""
        alive: dict[str, bool] = {}
        for (src, dst), rec in self._last_round.items():
            pop = dst if dst not in self._regions else src
            alive[pop] = alive.get(pop, False) or rec.received > 0
        return alive

    def replan(self) -> RouteTable:
        stats = self.path_stats()
        for s in stats:
            self.metrics.path_loss.labels(s.src, s.dst).set(s.loss_pct / 100)
            self.metrics.path_rtt.labels(s.src, s.dst).set(s.rtt_ms / 1000)
        p = self.config.planner
        new_plan = plan(
            self.topology, stats, target_mos=p.target_mos, margin_mos=p.margin_mos, codec=p.codec
        )
        table, decisions = self.decider.update(
            new_plan, self.mono_clock(), fresh_at=self._fresh_at, pop_alive=self.pop_alive()
        )
        for d in decisions:
            log.info(
                "decision region=%s dest=%s action=%s from=%s to=%s old_mos=%s new_mos=%s "
                "streak=%d penalty=%.0f reason=%r", d.region, d.dest, d.action,
                d.old_entry or "direct", d.new_entry or "direct", _num(d.old_mos),
                _num(d.new_mos), d.consecutive, d.penalty, d.reason,
            )  # fmt: skip
        self._publish(table)
        self.metrics.plans.inc()
        return table

    def _publish(self, table: RouteTable) -> None:
        old, m = self.table, self.metrics
        for entry in table:
            before = old.get(entry.region, entry.dest)
            if before is not None and before.route is not None:
                with contextlib.suppress(KeyError):
                    m.route_info.remove(*_route_labels(before))
            if entry.route is None:
                continue
            m.route_info.labels(*_route_labels(entry)).set(1)
            m.route_mos.labels(entry.region, entry.dest).set(entry.route.expected.mos)
            needed = 1 if entry.acceleration == "needed" else 0
            m.acceleration.labels(entry.region, entry.dest).set(needed)
            moved = before is not None and before.route is not None
            if moved and before.route.path != entry.route.path:  # type: ignore[union-attr]
                m.route_changes.labels(entry.region).inc()
        self.table = table
        for publish in self.publishers:
            try:
                publish(table)
            except Exception as exc:  # a neighbour's fault must never stop planning
                log.error("publish_failed publisher=%r error=%r", publish, exc)

    async def plan_loop(self) -> None:
        interval = self.config.planner.min_replan_interval_s
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            warming = self.mono_clock() - self._started < self._warmup_s
            if self._unmeasured and warming:
                continue
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
                for pusher in self.pushers:
                    tg.create_task(pusher.run())
        finally:
            self._stopping = True
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
            await self.pool.close()
            with contextlib.suppress(Exception):
                await self.store.flush()
            self.store.close()


def _route_labels(entry: TableEntry) -> tuple[str, str, str, str]:
    assert entry.route is not None
    return (entry.region, entry.dest, entry.route.kind, entry.route.entry_pop or entry.dest)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


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
