"""The status page at `/` of a running `netopt serve` (loopback): HTML with every region's
route, served by the daemon and through the API worker processes, and what headless Chromium
shows of it (a PNG kept in test-artefacts/status/)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import png_stats, screenshot
from tests.integration.conftest import Served, artefacts_dir, http_get, icmp_allowed

pytestmark = [
    pytest.mark.neighbour,
    pytest.mark.skipif(not icmp_allowed(), reason="ICMP probes need root or ping_group_range"),
]
CONFIG: dict[str, Any] = {
    "regions": [{"id": "lagos", "name": "Lagos", "address": "127.0.0.1"},
                {"id": "nairobi", "address": "127.0.0.4"}],
    "pops": [{"id": "fra", "role": "core", "address": "127.0.0.2"},
             {"id": "jnb", "role": "edge", "address": "127.0.0.3"}],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160}],
    "probes": [{"kind": "icmp", "from": r, "to": ["fra", "jnb"], "interval_s": 0.5, "count": 3,
                "timeout_s": 0.3, "packet_interval_s": 0.01} for r in ("lagos", "nairobi")],
}  # fmt: skip


def page_when_routed(url: str, timeout_s: float = 20) -> str:
    """GET / until every region has a route (the first plan waits for every path's round)."""
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        status, text = http_get(url + "/")
        assert status == 200, text
        if "2 of 2 routes known" in text:
            return str(text)
        time.sleep(0.3)
    raise AssertionError(f"no full route table on / in {timeout_s} s: {text[:2000]}")


@pytest.mark.parametrize("workers", [1, 2])
def test_status_page_shows_the_route_table(tmp_path: Path, workers: int) -> None:
    served = Served({**CONFIG, "api": {"workers": workers}}, tmp_path)
    try:
        served.wait_ready()
        html = page_when_routed(served.url)
        assert html.startswith("<!DOCTYPE html>")
        for region in ("<td>lagos</td><td>fra</td><td>direct</td>", "<td>nairobi</td><td>fra"):
            assert region in html
        assert "2 regions, 2 PoPs" in html and 'href="/metrics"' in html
        assert "initial" in html  # the first decisions, with their reasons
        if workers == 1:
            return
        png = screenshot(served.url + "/", artefacts_dir("status") / "status.png",
                         tmp_path / "chromium")  # fmt: skip
        width, height, colours, ink = png_stats(png)
        assert (width, height) == (1280, 1000)
        assert colours > 20 and 0.02 < ink < 0.6, (colours, ink)  # text and tinted cells
    finally:
        served.stop()
