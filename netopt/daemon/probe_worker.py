"""A probe worker process: its shard of the schedule → **probe** → rounds to the daemon.

`python -m netopt.daemon.probe_worker --fd N --index I`, started by the daemon
(netopt.daemon.probe_workers) with one end of a socketpair. It runs the daemon's own code for
its shard of the probe jobs — `Scheduler` (the same phase slots on the same wall-clock grid),
`ProberPool` (sockets created inside a site's network namespace, as in-process) and
`run_rounds` — and sends each slot's rounds back (`R` frames, netopt.daemon.shard); the daemon
feeds them to its store, window, change detector and metrics exactly as its own rounds.

Its jobs come from the daemon (`J` frames, whenever the shard's set or a job's round shape
changes: adaptive rates are decided by the daemon). A failed slot is logged here and counted
there (`F`), skipped rounds reported once a second (`S`). It exits when the socketpair closes
(the daemon exited or was killed -9: no orphans) and on SIGTERM (the daemon stops it by PID).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any

from netopt.child import run_child
from netopt.daemon import shard
from netopt.daemon.probing import ProbeJob, ProberPool, run_rounds
from netopt.daemon.schedule import Scheduler
from netopt.daemon.tasks import guarded_spawn

log = logging.getLogger("netopt.probe_worker")
SEND_TIMEOUT_S = 30.0  # the daemon reads every frame at once; 30 s without is a fault
REPORT_INTERVAL_S = 1.0


class Worker:
    """One worker's scheduler, probers and its side of the socketpair."""

    def __init__(self, index: int, writer: asyncio.StreamWriter, pool: ProberPool) -> None:
        self.index, self.writer, self.pool = index, writer, pool
        self.jobs: dict[str, ProbeJob] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        spawn = guarded_spawn(self._spawn, "probe_slot", self._failed)
        self.scheduler = Scheduler(self.slot, spawn, time.time)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await self.writer.drain()

    def _failed(self, task: str) -> None:
        self.writer.write(shard.encode_failed(task))

    async def slot(self, jobs: tuple[ProbeJob, ...]) -> None:
        """One slot's rounds, as `Daemon.probe_slot` runs them, sent back in one frame."""
        done = []
        for ran in await run_rounds(self.pool, jobs):
            if ran.summary is not None:
                done.append((ran.job.job_id, ran.summary))
            elif isinstance(ran.error, Exception):  # ours or a neighbour's: say so, go on
                log.error("probe_failed job=%s error=%r", ran.job.job_id, ran.error)
            elif ran.error is not None:
                raise ran.error
        if done:
            await self._send(shard.encode_rounds(done))

    def apply(self, delta: shard.JobsDelta) -> None:
        for job_id in delta.removes:
            self.jobs.pop(job_id, None)
        for job in delta.upserts:
            assert isinstance(job, ProbeJob)
            self.jobs[job.job_id] = job
        self.scheduler.sync(self.jobs.values())

    async def report(self) -> None:
        """Skipped rounds to the daemon (netopt_schedule_skipped_total) once a second."""
        sent = 0
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            skipped = self.scheduler.skipped
            if skipped > sent:
                await self._send(shard.encode_skipped(skipped - sent))
                sent = skipped

    async def close(self) -> None:
        self.scheduler.shutdown()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pool.close()


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One frame; IncompleteReadError when the other end closed."""
    kind, length = shard.read_header(await reader.readexactly(shard.HEADER.size))
    return kind, await reader.readexactly(length)


async def worker_main(fd: int, index: int) -> None:
    """Follow the daemon's job frames until the socketpair closes."""
    from netopt.lab.netns import socket_in  # the lab's namespaces, as the daemon's pool

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    worker = Worker(index, writer, ProberPool(socket_in))
    worker.scheduler.start([])
    reporter = asyncio.create_task(worker.report())
    gc.freeze()  # as the daemon: start-up objects out of every collection
    try:
        while True:
            kind, body = await read_frame(reader)
            if kind != shard.JOBS:
                raise shard.FrameError(f"a worker takes job frames only, got {kind!r}")
            worker.apply(shard.decode_jobs(body))
    except asyncio.IncompleteReadError:
        log.info("probe_worker_stopping index=%d reason=pipe_closed (daemon gone)", index)
    finally:
        reporter.cancel()
        await worker.close()
        writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A probe worker process (started by netopt)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    return run_child(args.log_level, lambda: worker_main(args.fd, args.index))


if __name__ == "__main__":
    sys.exit(main())
