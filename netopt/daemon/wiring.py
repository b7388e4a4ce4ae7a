"""Wires the daemon: schedule → probe → store/window/metrics → plan → decide → RouteTable → API.

The only module that reads the clock. Everything it starts runs as tasks of one task group on
one event loop; shutdown is cancelling that group (SIGTERM / SIGINT), after which every socket,
job and file is closed and the store is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import MappingProxyType

from netopt.api.ingest import add_routes
from netopt.api.routes import make_app, run_site
from netopt.api.workers.pool import serve_with_workers
from netopt.assess.api import add_routes as add_assessment_routes
from netopt.config import Config, load_config
from netopt.core.decide import Decider, Decision, RouteTable, TableEntry
from netopt.core.detect import DetectorConfig
from netopt.core.evidence import PathChanges, overlay, proof, round_rtts
from netopt.core.observe import Observations
from netopt.core.window import WindowStats
from netopt.daemon import series
from netopt.daemon.bursts import Bursts
from netopt.daemon.leader import make_leader
from netopt.daemon.metrics import Metrics
from netopt.daemon.probe_workers import WORKERS_START_S, ProbeWorkers
from netopt.daemon.probing import ProbeJob, ProberPool, Ran, jobs_from_config, record_of, run_rounds
from netopt.daemon.rates import ProbeRates, Reshaped
from netopt.daemon.schedule import Scheduler, job_diff
from netopt.daemon.tasks import guarded_spawn, supervise
from netopt.daemon.trace import Tracer
from netopt.errors import ConfigError, StoreError
from netopt.push.answers import Answers
from netopt.push.pusher import make_pushers
from netopt.store import DecisionRecord, RoundRecord, Store, open_store
from probes.stats import RoundSummary
from topology.planner import PathStats, plan

log = logging.getLogger("netopt")
_Task = tuple[Callable[[], Awaitable[None]], Callable[[Exception], bool]]  # run, is it fatal


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
        config_path: str | Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.wall_clock = wall_clock
        self.mono_clock = mono_clock
        self.metrics = Metrics()
        self.metrics.config_ok.set(1)
        self.metrics.store_writable.set(1)
        sc = config.store
        self.store: Store = open_store(sc, wall_clock=wall_clock, on_error=self._store_failed,
                                       on_drop=self.metrics.store_dropped.inc)  # fmt: skip
        self.window = WindowStats(config.planner.window_s)
        self.topology = config.to_topology()
        self.decider = Decider(config.to_policy())
        self.table = RouteTable(MappingProxyType({}), mono_clock())
        self.publishers: list[Callable[[RouteTable], None]] = []
        # who decides and pushes (netopt.daemon.leader): always us on SQLite
        self.leader = make_leader(config, self.metrics.leader, self._follow,
                                  wall_clock=wall_clock, mono_clock=mono_clock)  # fmt: skip
        self.pushers = make_pushers(config, self.metrics.registry, self.leader.fence)
        self.answers: Answers | None = None  # the route API's rendered answers, while serving
        self._lead_publishers = [self.leader.publish] + [p.publish for p in self.pushers]
        self.pool = ProberPool(_socket_in())
        self.tracer = Tracer(config, self.metrics.traceroutes, wall_clock, _socket_in())
        self._dirty = asyncio.Event()
        self._urgent = asyncio.Event()  # a change accepted on a path: plan without waiting
        # the first plan waits for every path's first round (or two intervals), so no region
        # is decided on half its candidates
        jobs = jobs_from_config(config)
        series.declare(self.metrics, config, wall_clock(), [(j.src, j.dst, j.kind) for j in jobs])
        self.observed = Observations(
            (r.id for r in config.regions), config.planner.kinds,
            ((j.src, j.dst) for j in jobs if j.kind in config.planner.kinds),
            warmup_s=2 * max((j.interval_s for j in jobs), default=0.0)
            + (WORKERS_START_S if config.probing.workers > 1 else 0.0), started_at=mono_clock(),
            dead_packets=DetectorConfig().dead_packets if config.planner.detect_changes else 1,
        )  # fmt: skip
        self.changes = PathChanges(r.id for r in config.regions)  # netopt.core.evidence
        self.rates = ProbeRates(config, self.metrics)  # adaptive probe rates
        self._stopping = False
        self._scheduler: Scheduler | None = None
        self._bursts: Bursts | None = None  # escalated probing (netopt.daemon.bursts)
        self._workers: ProbeWorkers | None = None  # probing.workers > 1: they probe
        self._main: asyncio.Task[None] | None = None

    async def prime(self) -> None:
        """Refill the window from the store, so a restart does not forget the last minutes
        (`run` does it first; an async read, so the loop answers meanwhile)."""
        now_wall, now_mono = self.wall_clock(), self.mono_clock()
        since = int((now_wall - self.config.planner.window_s) * 1e9)
        try:
            rounds = await self.store.rounds_async(since_wall_ns=since)
        except StoreError as exc:  # the window fills from new rounds instead
            log.error("window_prime_failed error=%s", exc)
            return
        for r in rounds:
            self._account(r, at_mono=now_mono - (now_wall - r.started_wall_ns / 1e9))
        if rounds:
            log.info("window_primed rounds=%d paths=%d", len(rounds), len(self.observed.last_round))

    def wall_time(self, mono_s: float) -> float:
        """The Unix time of a monotonic instant (for display: decided_at in the API)."""
        return self.wall_clock() - (self.mono_clock() - mono_s)

    # --- probe → store, window, metrics ---------------------------------------------------
    async def probe_slot(self, jobs: tuple[ProbeJob, ...]) -> None:
        """The rounds of one phase slot (the scheduler's run), into `take_rounds`."""
        self.take_rounds(await run_rounds(self.pool, jobs))

    def take_rounds(self, rounds: Sequence[Ran]) -> None:
        """A slot's rounds, run here or by a probe worker: each into store and window, the
        slot's packets into the metrics at once; a round that failed is logged and the others
        go on."""
        keys: list[tuple[str, str, str]] = []
        done: list[RoundSummary] = []
        for ran in rounds:
            job, measured = ran.job, ran.summary
            if measured is not None:
                record = record_of(job, measured.started_wall_ns, measured.digest)
                self.add_round(record, [rtt * 1000 for rtt in measured.rtts_s])
                keys.append((job.src, job.dst, job.kind))
                done.append(measured)
            elif isinstance(ran.error, Exception):  # ours or a neighbour's: say so, go on
                log.error("probe_failed job=%s error=%r", job.job_id, ran.error)
            elif ran.error is not None:
                raise ran.error  # cancellation and the like are not a round's failure
        if keys:
            digests = [m.digest for m in done]
            self.metrics.probes.observe(
                keys, [m.rtts_s for m in done], [d.sent for d in digests],
                [d.received for d in digests], [d.outcomes for d in digests],
                [None if d.jitter_ms is None else d.jitter_ms / 1000 for d in digests],
            )  # fmt: skip

    def add_round(self, record: RoundRecord, rtts_ms: list[float] | None = None) -> None:
        """A round measured here (with its packets' RTTs, when known): into the store
        (queued), the window, the change detector, the next plan."""
        self.store.add(record)
        self._account(record, rtts_ms=rtts_ms)

    def account_ingested(self, agent: str, stored: tuple[RoundRecord, ...], depth: int) -> None:
        """An agent's batch, already durable in the store: into the window and the next plan."""
        m = self.metrics
        m.agent_last_seen.labels(agent).set(self.wall_clock())
        m.spool_depth.labels(agent).set(depth)
        m.ingest_rounds.labels(agent).inc(len(stored))
        for r in stored:
            self._account(r)
            jitter_s = None if r.jitter_ms is None else r.jitter_ms / 1000
            m.probes.count((r.src, r.dst, r.kind), r.sent, r.received, jitter_s)

    def _account(
        self, record: RoundRecord, at_mono: float | None = None, rtts_ms: list[float] | None = None
    ) -> None:
        if self.observed.measures(record):
            self.window.add(record)
        now = self.mono_clock() if at_mono is None else at_mono
        if self.observed.add(record, now):
            self._dirty.set()
        # the detector takes every round measured here, in the order they end (overlapping
        # bursts end out of order: one that lost a packet ends at its timeout, after younger
        # ones), and of an agent's rounds the newest only (a replayed spool is old news)
        newest = self.observed.last_round.get((record.src, record.dst)) is record
        if newest or (rtts_ms is not None and at_mono is None):
            rtts = round_rtts(record.received, record.rtt_p50_ms) if rtts_ms is None else rtts_ms
            try:
                verdict = self.changes.update(record.src, record.dst, now, record.sent, rtts,
                                              per_packet=rtts_ms is not None)  # fmt: skip
            except ValueError as exc:  # a neighbour's impossible round: it plans nothing
                log.error("detect_failed src=%s dst=%s error=%s", record.src, record.dst, exc)
                return
            if verdict.state == "changed":
                self._urgent.set()
            if at_mono is None and self.rates.retime(record.src, record.dst, verdict.level):
                self._reshape(Reshaped(self.rates.jobs(), None))
            if at_mono is None and self.rates.wanted(verdict, self.table):  # not when priming
                touched = [(record.src, record.dst)]
                self._reshape(self.rates.update(now, self.changes.last, self.changes.key,
                                                self.table, touched))  # fmt: skip

    def _reshape(self, reshaped: Reshaped) -> None:
        """New steady round shapes to the scheduler, new escalations to the bursts."""
        if reshaped.jobs is not None:
            self._sync_jobs(reshaped.jobs)
        if reshaped.extra is not None:
            before = set(self._bursts.escalated) if self._bursts is not None else set()
            if self._bursts is not None:
                self._bursts.set(reshaped.extra)
            now = {job.job_id for job, _ in reshaped.extra.values()}
            if now != before:
                log.info("probe_bursts escalated=%s", ",".join(sorted(now)) or "-")

    def _store_failed(self, exc: Exception) -> None:
        self.metrics.store_errors.inc()
        self.metrics.store_writable.set(0)

    # --- stats → plan → decide → table ---------------------------------------------------
    def path_stats(self) -> list[PathStats]:
        """Window stats, with PoP→region measurements turned to region→PoP (RTT is symmetric)."""
        best: dict[tuple[str, str], PathStats] = {}
        regions = self.observed.regions
        for s in self.window.stats(int(self.wall_clock() * 1e9)):
            if s.src not in regions and s.dst in regions:
                s = dataclasses.replace(s, src=s.dst, dst=s.src)
            key = (s.src, s.dst)
            if key not in best or s.samples > best[key].samples:
                best[key] = s
        if not self.config.planner.detect_changes:
            return list(best.values())
        window_s = self.config.planner.window_s
        return overlay(best.values(), self.changes.accepted, self.mono_clock(), window_s)

    def pop_alive(self) -> dict[str, bool]:
        """Per PoP, alive or dead (see netopt.core.observe)."""
        return self.observed.pop_alive()

    def replan(self) -> RouteTable:
        stats = self.path_stats()
        for s in stats:
            self.metrics.path_loss.labels(s.src, s.dst).set(s.loss_pct / 100)
            self.metrics.path_rtt.labels(s.src, s.dst).set(s.rtt_ms / 1000)
        for src, dst in self.window.silent(int(self.wall_clock() * 1e9)):
            self.metrics.path_loss.labels(src, dst).set(1.0)  # no reply in the whole window
        p = self.config.planner
        new_plan = plan(
            self.topology, stats, target_mos=p.target_mos, margin_mos=p.margin_mos, codec=p.codec
        )
        alive = self.pop_alive()
        for pop, up in alive.items():
            self.metrics.pop_up.labels(pop).set(1 if up else 0)
        accepted = self.changes.accepted if p.detect_changes else {}
        table, decisions = self.decider.update(
            new_plan, self.mono_clock(), fresh_at=self.observed.fresh_at, pop_alive=alive,
            proven=proof(accepted),
        )  # fmt: skip
        at_wall_ns = int(self.wall_clock() * 1e9)
        self.tracer.observe(stats, decisions, self.mono_clock(), self.window.silent(at_wall_ns))
        for d in decisions:
            self.store.add_decision(_decision_record(d, at_wall_ns, stats))
            log.info(
                "decision region=%s dest=%s action=%s from=%s to=%s old_mos=%s new_mos=%s "
                "streak=%d penalty=%.0f reason=%r", d.region, d.dest, d.action,
                d.old_entry or "direct", d.new_entry or "direct", _num(d.old_mos),
                _num(d.new_mos), d.consecutive, d.penalty, d.reason,
            )  # fmt: skip
        self._publish(table)
        self.metrics.plans.inc()
        return table

    def _follow(self, table: RouteTable) -> None:
        """A follower: the leader's newest table, for the route API (never pushed from here)."""
        if not self.leader.leading():
            self._publish(table, lead=False)

    def _publish(self, table: RouteTable, *, lead: bool = True) -> None:
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
        for publish in self.publishers + (self._lead_publishers if lead else []):
            try:
                publish(table)
            except Exception as exc:  # a neighbour's fault must never stop planning
                log.error("publish_failed publisher=%r error=%r", publish, exc)

    async def plan_loop(self) -> None:
        interval = self.config.planner.min_replan_interval_s
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.observed.warming(self.mono_clock()) or not self.leader.leading():
                continue  # a follower decides nothing: it serves the leader's table
            try:
                self.replan()
            except Exception as exc:
                log.error("plan_failed error=%r", exc)
            self._urgent.clear()
            with contextlib.suppress(TimeoutError):  # a change accepted cuts the pause short
                async with asyncio.timeout(interval):
                    await self._urgent.wait()

    # --- reconfiguration -----------------------------------------------------------------
    def reload(self) -> tuple[bool, list[str]]:
        """Re-read the config file; validate all of it, then swap (SIGHUP, admin API).

        Returns (ok, problems or changes). A bad file keeps the old config, logs why and sets
        netopt_config_last_reload_successful to 0. Probe jobs are rescheduled in place.
        """
        m = self.metrics
        if self.config_path is None:
            return False, ["no config file to reload from"]
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            m.config_ok.set(0)
            m.config_reloads.labels("invalid").inc()
            log.error("config_reload_failed file=%s problems=%r (old config kept)",
                      self.config_path, exc.problems)  # fmt: skip
            return False, exc.problems
        changes = self._apply(new)
        m.config_ok.set(1)
        m.config_reloads.labels("ok").inc()
        log.info("config_reloaded file=%s %s", self.config_path, " ".join(changes))
        return True, changes

    def _apply(self, new: Config) -> list[str]:
        old, changes = self.config, []
        for key in ("store", "api", "proxies"):
            if getattr(old, key) != getattr(new, key):
                log.warning("config_needs_restart key=%s (the running value is kept)", key)
                changes.append(f"restart_needed={key}")
                new = new.model_copy(update={key: getattr(old, key)})
        self.config = new
        self.topology = new.to_topology()
        self.decider.policy = new.to_policy()
        self.tracer.reconfigure(new)
        if self.answers is not None:  # new regions, prefixes and PoPs are routable at once
            self.answers.reconfigure(new)
        for pusher in self.pushers:
            pusher.reconfigure(new)
        self.window.window_ns = int(new.planner.window_s * 1e9)
        before = self.rates.jobs()
        self.rates.reconfigure(new)
        if self._bursts is not None:
            self._bursts.set(self.rates.extra)
        jobs = self.rates.jobs()
        series.declare(self.metrics, new, self.wall_clock(), [(j.src, j.dst, j.kind) for j in jobs])
        wanted = {(j.src, j.dst) for j in jobs if j.kind in new.planner.kinds}
        self.observed.reconfigure((r.id for r in new.regions), new.planner.kinds, wanted)
        self.changes.reconfigure((r.id for r in new.regions), wanted)
        if self._scheduler is not None:
            added, removed, changed = job_diff(before, jobs)
            changes.append(f"jobs_added={added} jobs_removed={removed} jobs_changed={changed}")
            if self._workers is not None and self._workers.count != _workers(new):
                changes.append(f"probe_workers={_workers(new)}")
                self._workers.resize(_workers(new))  # 0: back on our own loop
            self._sync_jobs(jobs)
        self._dirty.set()
        return changes

    # --- the whole daemon ----------------------------------------------------------------
    async def _housekeeping(self) -> None:
        """Export the store's and scheduler's health once a second."""
        m, skipped = self.metrics, 0
        while True:
            await asyncio.sleep(1.0)
            m.store_writable.set(1 if self.store.last_error is None else 0)
            m.store_pending.set(self.store.pending)
            if self._scheduler is not None:
                m.schedule_skipped.inc(self._scheduler.skipped - skipped)
                skipped = self._scheduler.skipped

    async def _serve(self, on_listening: Callable[[str], None] | None) -> None:
        """The route API (netopt.api.routes) plus the ingest and admin routes, until cancelled."""
        answers = self.answers = Answers(self.config, self.wall_time)
        answers.publish(self.table)
        self.publishers.append(answers.publish)
        app, api = add_routes(make_app(self, answers), self), self.config.api
        add_assessment_routes(app, self)
        try:
            if api.workers > 1:  # N processes share the port; this one keeps a unix socket
                await serve_with_workers(app, answers, api, on_listening)
            else:
                await run_site(app, api, on_listening)
        finally:
            self.publishers.remove(answers.publish)
            self.answers = None

    def _background(self, on_listening: Callable[[str], None] | None) -> dict[str, _Task]:
        """The long-running tasks by the name they are counted under, each with when a failure
        is fatal: the route API's before it first listened (a bad `api.listen` stops start-up
        as it always did), never for the others."""
        listened: list[str] = []

        def listening(url: str) -> None:
            if not listened:
                listened.append(url)
                if on_listening is not None:
                    on_listening(url)

        never, before_listening = (lambda _e: False), (lambda _e: not listened)
        tasks: dict[str, _Task] = {
            "store_writer": (lambda: self.store.run(self.config.store.flush_interval_s), never),
            "plan_loop": (self.plan_loop, never),
            "housekeeping": (self._housekeeping, never),
            "tracer": (self.tracer.run, never),
            "route_api": (lambda: self._serve(listening), before_listening),
            "leader": (self.leader.run, never),
        }
        if self._bursts is not None:
            tasks["bursts"] = (self._bursts.run, never)
        for pusher in self.pushers:
            tasks[f"pusher:{pusher.proxy.id}"] = (pusher.run, never)
        return tasks

    def _sync_jobs(self, jobs: list[ProbeJob]) -> None:
        """The probe jobs onto our own scheduler, or sharded over the probe workers."""
        if self._scheduler is None:
            return
        workers = self._workers is not None and self._workers.count > 0
        self._scheduler.sync([] if workers else jobs)
        if self._workers is not None:
            self._workers.sync(jobs if workers else [])

    def _task_failed(self, name: str) -> None:
        self.metrics.task_failures.labels(name).inc()

    def request_stop(self) -> None:
        """Stop launching rounds and cancel the daemon (the signal handlers call this)."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._main is not None:
            self._main.cancel()

    async def run(self, on_listening: Callable[[str], None] | None = None) -> None:
        self._main = asyncio.current_task()
        # what start-up made (modules, config, tables) lives as long as the daemon: keep it
        # out of every garbage collection, which then only walks what rounds create
        gc.freeze()
        try:
            await self.prime()
            async with asyncio.TaskGroup() as tg:  # every task supervised (netopt.daemon.tasks)
                failed = self._task_failed
                spawn = guarded_spawn(tg.create_task, "probe_slot", failed)
                self._scheduler = Scheduler(self.probe_slot, spawn, self.wall_clock)
                self._workers = ProbeWorkers(
                    self.take_rounds, failed, self.metrics.schedule_skipped.inc, tg.create_task
                )
                self._workers.resize(_workers(self.config))
                self._scheduler.start([])
                self._sync_jobs(self.rates.jobs())
                for name in ("probe_slot", "probe_worker"):
                    self.metrics.task_failures.labels(name)
                self._bursts = Bursts(self.probe_slot, spawn, self.mono_clock)
                for name, (task, fatal) in self._background(on_listening).items():
                    self.metrics.task_failures.labels(name)
                    tg.create_task(supervise(name, task, failed, fatal=fatal))
        finally:
            self._stopping = True
            if self._scheduler is not None:
                self._scheduler.shutdown()
            await self.pool.close()
            self.leader.close()
            with contextlib.suppress(Exception):
                await self.store.flush()
            await self.store.aclose()


def _decision_record(d: Decision, at_wall_ns: int, stats: list[PathStats]) -> DecisionRecord:
    """A decision with the window stats of its region's paths (the inputs it rested on)."""
    paths = [
        {"src": s.src, "dst": s.dst, "rtt_ms": _finite(s.rtt_ms), "jitter_ms": s.jitter_ms,
         "loss_pct": s.loss_pct, "samples": s.samples}
        for s in stats if d.region in (s.src, s.dst)
    ]  # fmt: skip
    return DecisionRecord(
        at_wall_ns=at_wall_ns, region=d.region, dest=d.dest, action=d.action,
        old_entry=d.old_entry, new_entry=d.new_entry, old_mos=d.old_mos, new_mos=d.new_mos,
        consecutive=d.consecutive, penalty=d.penalty, reason=d.reason,
        inputs=json.dumps({"paths": paths}, separators=(",", ":")),
    )  # fmt: skip


def _finite(v: float) -> float | None:
    return v if v == v and abs(v) != float("inf") else None


def _route_labels(entry: TableEntry) -> tuple[str, str, str, str]:
    assert entry.route is not None
    return (entry.region, entry.dest, entry.route.kind, entry.route.entry_pop or entry.dest)


def _workers(config: Config) -> int:
    """Probe worker processes to run: none for `probing.workers: 1` (our own loop probes)."""
    return config.probing.workers if config.probing.workers > 1 else 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _socket_in() -> Callable[..., socket.socket]:
    from netopt.lab.netns import socket_in

    return socket_in


def run_until_signalled(daemon: Daemon, on_listening: Callable[[str], None] | None = None) -> int:
    """Run the daemon until SIGTERM or SIGINT (SIGHUP reloads the config); return 0."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        await daemon.run(on_listening)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    log.info("stopped")
    return 0
