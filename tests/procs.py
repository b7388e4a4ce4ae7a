"""Stopping the programs a test started: by PID, politely first."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def stop(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_all(procs: Iterable[subprocess.Popen[Any]], timeout_s: float = 10.0) -> None:
    """SIGTERM to every one first (they stop side by side), then `stop` each."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        stop(proc, timeout_s)


def acked_batches(agent_logs: Iterable[Path]) -> dict[str, int]:
    """Batch id → rounds, from the agents' logs of acknowledgements (`batch_acked`)."""
    out = {}
    for log in agent_logs:
        for m in re.finditer(r"batch_acked batch=(\S+) rounds=(\d+)", log.read_text()):
            out[m.group(1)] = int(m.group(2))
    return out
