"""The store's disk fills up under a running `netopt serve`: probing goes on, the error is
logged and exported, and once space returns every round kept meanwhile is written.

A 1 MiB tmpfs mounted by the test (root only; CI runs as root) holds the store; a filler file
takes the rest of the space. The read-only case is covered in tests/unit/test_store.py (a
remount read-only is refused while the store has the file open for writing).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import http_get
from tests.integration.test_serve import CONFIG, samples

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def metric(url: str, name: str, labels: frozenset[tuple[str, str]] = frozenset()) -> float:
    status, text = http_get(url + "/metrics")
    assert status == 200
    return samples(text).get((name, labels), 0.0)


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_full_disk_keeps_probing_and_resumes(serve: Any, small_fs: Path) -> None:
    config = {**CONFIG, "probes": [{**CONFIG["probes"][0], "interval_s": 0.2, "count": 1,
                                    "timeout_s": 0.1}]}  # fmt: skip
    daemon = serve(config)
    # the fixture puts the store in tmp_path; move it onto the small filesystem
    daemon.stop()
    db = small_fs / "netopt.db"
    text = daemon.config_path.read_text().replace(str(daemon.config_path.parent / "netopt.db"),
                                                  str(db))  # fmt: skip
    daemon.config_path.write_text(text)
    daemon = serve_again(serve, daemon)
    daemon.wait_ready()
    lab = frozenset({("src", "lagos"), ("dst", "fra"), ("kind", "icmp")})
    filler = small_fs / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    stored_before = _count(db)
    wait_for(lambda: metric(daemon.url, "netopt_store_writable") == 0, 10, "no write error seen")
    sent_at_full = metric(daemon.url, "netopt_probe_packets_sent_total", lab)
    time.sleep(1.5)
    assert metric(daemon.url, "netopt_probe_packets_sent_total", lab) > sent_at_full  # probing
    assert metric(daemon.url, "netopt_store_write_errors_total") > 0
    assert metric(daemon.url, "netopt_store_pending_rounds") > 0
    full_until = time.time()
    filler.unlink()  # space is back
    wait_for(lambda: metric(daemon.url, "netopt_store_writable") == 1, 10, "writes not resumed")
    assert daemon.stop() == 0
    log = daemon.stderr_path.read_text()
    assert "store_write_failed" in log and "store_write_resumed" in log
    assert "Traceback" not in log
    con = sqlite3.connect(db)
    (during,) = con.execute(
        "SELECT COUNT(*) FROM rounds WHERE started_wall_ns < ?", (int(full_until * 1e9),)
    ).fetchone()
    assert during > stored_before  # rounds taken while the disk was full were kept and written
    assert metric_dropped(log) == 0


def metric_dropped(log: str) -> int:
    return log.count("store_dropped_rounds")


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        return int(con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    except sqlite3.Error:
        return 0


def serve_again(serve: Any, old: Any) -> Any:
    """Start `netopt serve` again on the (edited) config file of `old`."""
    import subprocess as sp
    import sys

    from tests.integration.conftest import REPO

    old._stderr = old.stderr_path.open("a")
    old.proc = sp.Popen([sys.executable, "-m", "netopt", "serve", "--config",
                         str(old.config_path)], cwd=REPO, stdout=sp.PIPE, stderr=old._stderr,
                        text=True)  # fmt: skip
    return old
