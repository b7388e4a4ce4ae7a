"""Probe worker processes, the daemon's side: schedule → **shard** → workers → rounds → store …

With `probing.workers: N` (N > 1) the daemon does not probe on its own loop: N processes
(netopt.daemon.probe_worker) do, each the jobs whose id hashes to it (`shard.shard_of`), with
the same scheduler, probers and batches. The daemon keeps deciding: `sync(jobs)` (start-up,
every adaptive-rate change, every reload) sends each worker what changed in its shard — so
escalation works as in-process, and a reload re-shards — and each slot's rounds come back
over the worker's socketpair into `on_rounds`, the same accounting as the daemon's own rounds
(store, window, change detector, `netopt_probe_*` with their labels).

Each worker runs under `supervise` as task `probe_worker`: one that exits, is killed or sends
a frame that does not parse is stopped by PID, counted in
`netopt_task_failures_total{task="probe_worker"}` and restarted with backoff; a restarted
worker gets its whole shard at once. Cancelling (daemon shutdown, or `resize` to fewer
workers) stops the worker by PID (SIGTERM, then SIGKILL); a worker whose daemon is gone sees
its socketpair close and exits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from netopt.child import log_level, stop_process
from netopt.daemon import shard
from netopt.daemon.probing import ProbeJob, Ran
from netopt.daemon.tasks import Backoff, supervise

log = logging.getLogger("netopt.probe_workers")
TASK = "probe_worker"
WORKERS_START_S = 10.0  # added to the first plan's warm-up: workers import, then probe


class WorkerExited(Exception):
    """A probe worker process ended or broke its framing (its supervisor restarts it)."""


class ProbeWorkers:
    """Starts, feeds, restarts and stops the probe worker processes (in the daemon)."""

    def __init__(
        self,
        on_rounds: Callable[[Sequence[Ran]], None],
        on_failure: Callable[[str], None],
        on_skipped: Callable[[int], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        backoff: Backoff | None = None,
    ) -> None:
        self._on_rounds, self._on_failure, self._on_skipped = on_rounds, on_failure, on_skipped
        self._spawn, self._backoff = spawn, backoff or Backoff()
        self._jobs: dict[str, ProbeJob] = {}
        self._shards: list[dict[str, object]] = []
        self._where: dict[str, int] = {}  # job id → its shard at the current count (a cache)
        self._wake: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pids: dict[int, int] = {}  # index → pid of the running process

    @property
    def count(self) -> int:
        return len(self._tasks)

    def sync(self, jobs: Iterable[ProbeJob]) -> None:
        """Make the workers' jobs exactly `jobs`, each on its shard's worker."""
        self._jobs = {j.job_id: j for j in jobs}
        self._shards = shard.split(self._jobs.values(), max(1, self.count), self._where)
        for wake in self._wake:
            wake.set()

    def resize(self, count: int) -> None:
        """Run `count` workers (0: none); their jobs are re-sharded over the new count."""
        if count != self.count:
            self._where = {}
        while self.count > count:
            self._tasks.pop().cancel()  # stops its process by PID (`_run_once`)
            self._wake.pop()
        while self.count < count:
            index = self.count
            self._wake.append(asyncio.Event())
            run = (lambda i: lambda: self._run_once(i))(index)
            self._tasks.append(self._spawn(supervise(TASK, run, self._on_failure,
                                                     backoff=self._backoff)))  # fmt: skip
        self.sync(self._jobs.values())

    async def _run_once(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "netopt.daemon.probe_worker", "--fd", str(theirs.fileno()),
                "--index", str(index), "--log-level", log_level(), pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pids[index] = proc.pid
        log.info("probe_worker_started index=%d pid=%d", index, proc.pid)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        sender = asyncio.create_task(self._feed(index, writer))
        try:
            await self._read(reader)
            raise WorkerExited(f"probe worker {index} (pid {proc.pid}) closed its socket")
        except shard.FrameError as exc:
            raise WorkerExited(f"probe worker {index} (pid {proc.pid}): {exc}") from exc
        finally:
            sender.cancel()  # not awaited: that could swallow our own cancellation
            self.pids.pop(index, None)
            await stop_process(proc)
            writer.close()

    async def _feed(self, index: int, writer: asyncio.StreamWriter) -> None:
        """Send worker `index` what changed in its shard, whenever it changes."""
        had: dict[str, object] = {}
        wake = self._wake[index]
        wake.set()  # a (re)started worker gets its whole shard at once
        while True:
            await wake.wait()
            wake.clear()
            if index >= len(self._shards):
                continue  # being resized away
            wanted = self._shards[index]
            delta = shard.jobs_delta(had, wanted)
            if not delta:
                continue
            try:
                writer.write(shard.encode_jobs(delta))
                await writer.drain()
            except OSError:  # the worker died: its reader sees it, the supervisor restarts
                return
            had = dict(wanted)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Frames from a worker until it closes its end."""
        while True:
            try:
                header = await reader.readexactly(shard.HEADER.size)
                kind, length = shard.read_header(header)
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if kind == shard.ROUNDS:
                self._take(shard.decode_rounds(body))
            elif kind == shard.FAILED:
                self._on_failure(body.decode(errors="replace"))
            elif kind == shard.SKIPPED:
                self._on_skipped(shard.decode_skipped(body))
            else:
                raise shard.FrameError(f"a worker sent a {kind!r} frame")

    def _take(self, rounds: Sequence[tuple[str, Any]]) -> None:
        """A slot's rounds, with the daemon's jobs (a job dropped since is not accounted)."""
        ran = [Ran(self._jobs[i], s) for i, s in rounds if i in self._jobs]
        if ran:
            self._on_rounds(ran)
