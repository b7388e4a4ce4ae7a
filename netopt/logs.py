"""Logging for every netopt process (daemon, agent, API workers, demo): key=value lines on
stderr. A leaf: it imports nothing of netopt, so any shell may call it."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    # APScheduler logs every job run at INFO; keep its warnings only
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
