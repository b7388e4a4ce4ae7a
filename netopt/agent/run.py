"""`netopt agent`: probes where the controller cannot, ships results home.

config → schedule → probe → round → **spool** (the agent's own SQLite) → `POST /v1/ingest`.
Every round goes to the spool first; one shipper sends the oldest rounds as a gzip JSON batch
with a stable id (spool id + sequence range) and deletes them only once the controller has
acknowledged (which it does after its own commit). While the controller is unreachable the
spool grows, bounded: past `spool.max_rounds` the oldest rounds are dropped, logged and
counted (netopt_spool_dropped_total). Replay is in order, one batch at a time.

Several controllers (`controllers:`, high availability on one PostgreSQL): the shipper sends
to one at a time; a connection failure, a timeout or a 5xx moves it to the next, with the same
batch (same id) and the rest of the spool after it in order. An acknowledged batch has left
the spool, so it is never sent again anywhere; a batch a controller stored but could not
acknowledge is re-sent under its id, and the shared store keeps it once (the batch id is
claimed in the same transaction as the rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

from aiohttp import web
from pydantic import Field, field_validator, model_validator

from netopt.api.batch import encode_batch
from netopt.config import ApiConfig, Id, ProbeConfig, _ip, _Model
from netopt.daemon.metrics import AgentMetrics
from netopt.daemon.probing import ProbeJob, ProberPool, _options, record_of, run_rounds
from netopt.daemon.schedule import Scheduler
from netopt.daemon.tasks import guarded_spawn, supervise
from netopt.errors import ConfigError, ShipError
from netopt.push.http_client import HttpError, Reply, request
from netopt.store.model import RoundRecord
from netopt.store.schema import ROUND_COLUMNS
from netopt.validation import load_model
from probes.base import Target

log = logging.getLogger("netopt.agent")
ANSWER_MAX_BYTES = 64 << 10  # the controller's acknowledgement is ~100 bytes of JSON


# --- config -------------------------------------------------------------------------------
class ControllerConfig(_Model):
    url: str = Field(pattern=r"^https?://[^/\s]+/?$")  # base URL, e.g. http://127.0.0.1:8080
    token: str = Field(min_length=16, repr=False)
    timeout_s: float = Field(default=10.0, gt=0)
    batch_max_rounds: int = Field(default=500, ge=1, le=10_000)
    batch_interval_s: float = Field(default=1.0, ge=0)
    min_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)


class SpoolConfig(_Model):
    path: str = "netopt-agent-spool.db"
    max_rounds: int = Field(default=1_000_000, ge=10)


class AgentTarget(_Model):
    id: Id
    address: str

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _ip(v)


class AgentProbe(ProbeConfig):
    from_: Id | None = Field(default=None, alias="from")  # type: ignore[assignment]


class AgentConfig(_Model):
    id: Id  # this agent, as the controller's `agents:` list names it
    site: Id  # the site every round starts from
    netns: str | None = None
    controller: ControllerConfig | None = None  # one controller (the short form)
    controllers: tuple[ControllerConfig, ...] = ()  # several, tried in order on failure
    spool: SpoolConfig = SpoolConfig()
    targets: tuple[AgentTarget, ...] = Field(min_length=1)
    probes: tuple[AgentProbe, ...] = Field(min_length=1)
    metrics_listen: str | None = None  # HOST:PORT for /metrics; None: no listener

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        return None if v is None else ApiConfig(listen=v).listen

    @property
    def endpoints(self) -> tuple[ControllerConfig, ...]:
        """The controllers to ship to, in the order they are tried."""
        return (self.controller,) if self.controller is not None else self.controllers

    @model_validator(mode="after")
    def _refs(self) -> AgentConfig:
        ids = [t.id for t in self.targets]
        problems = [f"targets[{i}].id: duplicate {t!r}" for i, t in enumerate(ids) if t in ids[:i]]
        if (self.controller is None) == (not self.controllers):
            problems.append("controller: give either `controller:` (one) or `controllers:` "
                            "(a non-empty list), not both and not neither")  # fmt: skip
        urls = [c.url.rstrip("/") for c in self.controllers]
        problems += [f"controllers[{i}].url: duplicate {u!r}"
                     for i, u in enumerate(urls) if u in urls[:i]]  # fmt: skip
        for i, p in enumerate(self.probes):
            if p.from_ not in (None, self.site):
                problems.append(f"probes[{i}].from: an agent probes from its site {self.site!r}")
            for j, t in enumerate(p.to):
                if t not in ids:
                    problems.append(f"probes[{i}].to[{j}]: unknown target {t!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def jobs(self) -> list[ProbeJob]:
        address = {t.id: t.address for t in self.targets}
        return [
            ProbeJob(kind=p.kind, src=self.site, dst=t,
                     target=Target(address=address[t], port=p.port, name=t),
                     options=_options(p), interval_s=p.interval_s, netns=self.netns)
            for p in self.probes for t in p.to
        ]  # fmt: skip


def load_agent_config(path: str | Path) -> AgentConfig:
    try:
        return load_model(AgentConfig, path)
    except ConfigError as exc:
        lines: list[str] = []
        for line in exc.problems:
            head, _, rest = line.partition(": ")
            lines += rest.split("; ") if head == "(top level)" and ": " in rest else [line]
        raise ConfigError(exc.source, lines) from None


# --- the spool ----------------------------------------------------------------------------
class Spool:
    """Rounds waiting to be acknowledged, oldest first, in the agent's own SQLite file."""

    def __init__(self, path: str, max_rounds: int) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(ROUND_COLUMNS)
        # AUTOINCREMENT: a seq is never handed out twice, even after the spool empties, so a
        # batch id (agent:spool:first-last) never repeats and is never taken for a re-send
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, {cols})"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('spool_id', ?)", (uuid.uuid4().hex[:12],)
        )
        self.spool_id = str(
            self._db.execute("SELECT value FROM meta WHERE key='spool_id'").fetchone()[0]
        )
        self.max_rounds = max_rounds
        self.depth = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def append(self, records: list[RoundRecord]) -> int:
        """Add rounds; returns how many of the oldest were dropped to stay within bounds."""
        marks = ", ".join("?" * len(ROUND_COLUMNS))
        db = self._db
        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO spool ({', '.join(ROUND_COLUMNS)}) VALUES ({marks})",
            [astuple(r) for r in records],
        )
        excess = self.depth + len(records) - self.max_rounds
        if excess > 0:
            db.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)",
                (excess,),
            )
        db.execute("COMMIT")
        self.depth += len(records) - max(0, excess)
        return max(0, excess)

    def oldest(self, n: int) -> list[tuple[int, RoundRecord]]:
        rows = self._db.execute(
            f"SELECT seq, {', '.join(ROUND_COLUMNS)} FROM spool ORDER BY seq LIMIT ?", (n,)
        ).fetchall()
        return [(int(r[0]), RoundRecord(*r[1:])) for r in rows]

    def remove(self, first_seq: int, last_seq: int) -> None:
        cur = self._db.execute("DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))
        self.depth -= cur.rowcount

    def close(self) -> None:
        self._db.close()


# --- the agent ----------------------------------------------------------------------------
class Agent:
    def __init__(self, config: AgentConfig, wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.metrics = AgentMetrics()
        self.spool = Spool(config.spool.path, config.spool.max_rounds)
        self.metrics.spool_depth.labels(config.id).set(self.spool.depth)
        self.pool = ProberPool(_socket_in() if config.netns else None)
        self._new = asyncio.Event()
        self.current = 0  # the index in config.endpoints of the controller shipped to
        self._batch_size = config.endpoints[0].batch_max_rounds
        self.acked_batches: list[str] = []  # batch ids acknowledged (for tests and logs)
        self._listening = False  # the metrics listener has been up

    async def probe_slot(self, jobs: tuple[ProbeJob, ...]) -> None:
        """One phase slot's rounds (the scheduler's run), spooled together."""
        records = []
        for ran in await run_rounds(self.pool, jobs):
            job, measured = ran.job, ran.summary
            if measured is None:
                if not isinstance(ran.error, Exception):
                    raise ran.error or RuntimeError("a round with neither summary nor error")
                log.error("probe_failed job=%s error=%r", job.job_id, ran.error)
                continue  # keep probing whatever one round did
            stats = measured.digest
            self.metrics.sent.labels(job.src, job.dst, job.kind).inc(stats.sent)
            self.metrics.received.labels(job.src, job.dst, job.kind).inc(stats.received)
            records.append(record_of(job, measured.started_wall_ns, stats))
        if records:
            self.spool_rounds(records)

    def spool_rounds(self, records: list[RoundRecord]) -> None:
        dropped = self.spool.append(records)
        if dropped:
            self.metrics.spool_dropped.labels(self.config.id).inc(dropped)
            log.warning("spool_full dropped_oldest=%d max_rounds=%d", dropped,
                        self.spool.max_rounds)  # fmt: skip
        self.metrics.spool_depth.labels(self.config.id).set(self.spool.depth)
        self._new.set()

    async def ship_once(self) -> str:
        """Send the oldest batch; returns the outcome (empty, acked, duplicate, rejected, …).

        Rounds leave the spool only on an acknowledgement that names this batch; whatever
        else the controller (or anything at its URL) answers is an outcome, never a crash."""
        rows = self.spool.oldest(self._batch_size)
        if not rows:
            return "empty"
        c, first, last = self.config.endpoints[self.current], rows[0][0], rows[-1][0]
        batch_id = f"{self.config.id}:{self.spool.spool_id}:{first}-{last}"
        body = encode_batch(self.config.id, batch_id, [r for _, r in rows], self.spool.depth)
        headers = [("Authorization", f"Bearer {c.token}"), ("Content-Encoding", "gzip"),
                   ("Content-Type", "application/json")]  # fmt: skip
        try:
            url = c.url.rstrip("/") + "/v1/ingest"
            reply = await request(url, body, headers, timeout_s=c.timeout_s,
                                  max_body_bytes=ANSWER_MAX_BYTES)  # fmt: skip
        except HttpError as exc:
            log.debug("controller_unreachable error=%s", exc)
            return "unreachable"
        status, text = reply.status, reply.snippet(300)
        if status == 200:
            try:
                duplicate = acknowledged(reply, batch_id)
            except ShipError as exc:
                log.error("controller_bad_answer batch=%s error=%s", batch_id, exc)
                return "bad_answer"  # kept in the spool, sent again after a backoff
            self.spool.remove(first, last)
            self.acked_batches.append(batch_id)
            log.debug("batch_acked batch=%s rounds=%d", batch_id, len(rows))
            self._batch_size = c.batch_max_rounds
            self.metrics.spool_depth.labels(self.config.id).set(self.spool.depth)
            return "duplicate" if duplicate else "acked"
        if status == 413 and len(rows) > 1:
            self._batch_size = max(1, len(rows) // 2)
            return "split"
        if status in (400, 413):  # this batch can never be accepted: drop it, say so
            self.spool.remove(first, last)
            log.error("batch_rejected batch=%s status=%d rounds=%d error=%s", batch_id, status,
                      len(rows), text)  # fmt: skip
            return "rejected"
        log.error("controller_refused status=%d error=%s", status, text)
        return "refused" if status in (401, 403) else "unreachable"

    def fail_over(self) -> bool:
        """Move to the next controller; True when that starts the list over (a backoff due)."""
        n = len(self.config.endpoints)
        self.current = (self.current + 1) % n
        if n > 1:
            log.warning("controller_failover to=%s", self.config.endpoints[self.current].url)
        return self.current == 0

    async def ship_loop(self) -> None:
        failures = 0
        while True:
            c = self.config.endpoints[self.current]
            outcome = await self.ship_once()
            self.metrics.batches.labels(self.config.id, outcome).inc()
            if outcome in ("acked", "duplicate", "split", "rejected"):
                if failures:
                    log.info("controller_back after_failures=%d spool_depth=%d", failures,
                             self.spool.depth)  # fmt: skip
                failures = 0
                if self.spool.depth >= self._batch_size:
                    continue  # replaying a backlog: no pause between batches
                await asyncio.sleep(c.batch_interval_s)
            elif outcome == "empty":
                self._new.clear()
                await self._new.wait()
                await asyncio.sleep(c.batch_interval_s)
            else:
                failures += 1
                if outcome == "unreachable" and not self.fail_over():
                    continue  # the next controller at once; a backoff once all have failed
                rounds = max(1, failures // len(self.config.endpoints))
                delay = min(c.max_backoff_s, c.min_backoff_s * 2 ** min(rounds - 1, 16))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def serve_metrics(self) -> None:
        assert self.config.metrics_listen is not None
        listen = ApiConfig(listen=self.config.metrics_listen)

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=self.metrics.exposition(),
                                headers={"Content-Type": "text/plain; version=0.0.4"})  # fmt: skip

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, listen.host, listen.port, reuse_address=True).start()
            self._listening = True
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    def _task_failed(self, name: str) -> None:
        self.metrics.task_failures.labels(name).inc()

    async def run(self) -> None:
        scheduler: Scheduler | None = None
        try:
            async with asyncio.TaskGroup() as tg:  # every task supervised (netopt.daemon.tasks)
                failed = self._task_failed
                spawn = guarded_spawn(tg.create_task, "probe_slot", failed)
                scheduler = Scheduler(self.probe_slot, spawn, self.wall_clock)
                scheduler.start(self.config.jobs())
                for name in ("probe_slot", "ship_loop", "metrics_listener"):
                    self.metrics.task_failures.labels(name)
                tg.create_task(supervise("ship_loop", self.ship_loop, failed))
                if self.config.metrics_listen is not None:  # a bad listen stops start-up
                    tg.create_task(supervise("metrics_listener", self.serve_metrics, failed,
                                             fatal=lambda _e: not self._listening))  # fmt: skip
        finally:
            if scheduler is not None:
                scheduler.shutdown()
            await self.pool.close()
            self.spool.close()


def acknowledged(reply: Reply, batch_id: str) -> bool:
    """Whether the controller's 200 answer acknowledges `batch_id` as a duplicate; `ShipError`
    when it is not an acknowledgement of that batch (garbage, another batch, a wrong shape)."""
    try:
        answer = json.loads(reply.body)
    except ValueError:
        raise ShipError(f"HTTP 200 but not JSON: {reply.snippet()}") from None
    if not isinstance(answer, dict) or answer.get("batch_id") != batch_id:
        got = answer.get("batch_id") if isinstance(answer, dict) else type(answer).__name__
        raise ShipError(f"HTTP 200 but not an acknowledgement of this batch (got {got!r})")
    duplicate = answer.get("duplicate", False)
    if not isinstance(duplicate, bool):
        raise ShipError(f"HTTP 200 with a non-boolean duplicate {duplicate!r}")
    return duplicate


def _socket_in() -> Callable[..., socket.socket]:
    from netopt.lab.netns import socket_in

    return socket_in


def run_agent(config: AgentConfig) -> int:
    """Run until SIGTERM / SIGINT; the spool keeps whatever was not yet acknowledged."""
    agent = Agent(config)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        log.info("agent_started id=%s site=%s controller=%s jobs=%d spool_depth=%d",
                 config.id, config.site, ",".join(c.url for c in config.endpoints),
                 len(config.jobs()),
                 agent.spool.depth)  # fmt: skip
        await agent.run()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    log.info("agent_stopped")
    return 0
