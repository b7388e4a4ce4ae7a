"""`netopt demo` (what `make demo` runs): lab world up, daemon on it, real routes, clean stop."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netopt.lab import Lab
from tests.integration.conftest import REPO, free_port, http_get
from tests.lab.conftest import lab_skip_reason, unique_lab_name

WORLD = REPO / "deploy" / "lab" / "world.yaml"


@pytest.fixture
def demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    name = unique_lab_name(__name__, 0)
    port = free_port()
    err = (tmp_path / "demo.stderr").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "netopt", "demo", "--lab-name", name, "--listen",
         f"127.0.0.1:{port}", "--store", str(tmp_path / "demo.db")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
    )  # fmt: skip
    try:
        yield proc, f"http://127.0.0.1:{port}", name, tmp_path / "demo.stderr"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
        Lab.teardown(name)


def test_demo_serves_measured_lab_routes(demo) -> None:  # type: ignore[no-untyped-def]
    proc, url, name, stderr = demo
    deadline = time.monotonic() + 20
    status = 0
    while time.monotonic() < deadline and status != 200:
        assert proc.poll() is None, stderr.read_text()
        try:
            status, _ = http_get(url + "/readyz", 0.5)
        except OSError:
            status = 0
        time.sleep(0.3)
    assert status == 200, stderr.read_text()

    status, route = http_get(url + "/v1/route?region=lagos")
    assert status == 200, route
    # the world's Lagos–Frankfurt link is 57.2 ms each way: the lab, not loopback, answered
    direct = (
        route
        if route["kind"] == "direct"
        else next(r for r in route["fallbacks"] if r["kind"] == "direct")
    )
    assert 100 < direct["expected"]["rtt_ms"] < 140
    assert os.path.exists(f"/run/netns/{Lab.attach(name).netns('lagos')}")

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    out = proc.stdout.read()
    assert "netopt serving" in out and f"lab {name!r} is down" in out
    assert "Traceback" not in stderr.read_text()
    assert not any(n.startswith(name) for n in os.listdir("/run/netns"))


NEEDED_LINE = re.compile(r"\] (lagos|nairobi) → fra: acceleration needed — via (los|nbo) "
                         r"\(MOS (\d\.\d+) → (\d\.\d+)\)")  # fmt: skip


def test_demo_moves_an_african_region_to_its_local_edge(demo) -> None:  # type: ignore[no-untyped-def]
    """The world's story: Lagos or Nairobi to Frankfurt over the open Internet carries transit
    loss, the local edge only the last mile; the demo says it moved within a minute."""
    proc, _, _, stderr = demo
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen, buffer = None, ""
    deadline = time.monotonic() + 60
    while seen is None and time.monotonic() < deadline:
        assert proc.poll() is None, stderr.read_text()
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            buffer += proc.stdout.read() or ""
            seen = NEEDED_LINE.search(buffer)
    assert seen is not None, buffer
    region, pop, before, after = seen.groups()
    assert {"lagos": "los", "nairobi": "nbo"}[region] == pop
    assert float(before) < 4.0 <= float(after)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
