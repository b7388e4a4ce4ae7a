"""`netopt assess` in the lab: real probes from a site's namespace, real impairment, reports.

A site whose direct path to the core loses 4 % each way while an edge node one hop away is
clean must get "acceleration needed via that edge" with MOS before and after; a site with a
clean direct path "not needed". A PoP with no reflector is reported, not fatal; SIGINT gives a
partial report; report.json validates against the shipped schema; report.html opens in
headless Chromium (the screenshot is kept in test-artefacts/assess/).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from netopt.lab import Lab
from tests.chromium import png_stats, screenshot
from tests.integration.conftest import artefacts_dir
from tests.lab.conftest import LabFactory
from tests.procs import stop

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "docs" / "assess-report.schema.json"
PORT = 8620
WORLD = {
    "nodes": [
        {"name": "site", "role": "region"}, {"name": "quiet", "role": "region"},
        {"name": "fra", "role": "pop", "pop_role": "core"},
        {"name": "los", "role": "pop", "pop_role": "edge"},
        {"name": "mute", "role": "pop", "pop_role": "edge"},
    ],
    "links": [
        {"a": "site", "b": "fra", "delay_ms": 40, "jitter_ms": 2, "loss_pct": 4},
        {"a": "site", "b": "los", "delay_ms": 1, "jitter_ms": 0.5},
        {"a": "quiet", "b": "fra", "delay_ms": 40, "jitter_ms": 0.5},
        {"a": "quiet", "b": "los", "delay_ms": 1, "jitter_ms": 0.5},
        {"a": "los", "b": "fra", "delay_ms": 20, "jitter_ms": 0.2},
    ],
    "default_link": {"delay_ms": 5},
}  # fmt: skip


@pytest.fixture(scope="module")
def lab(lab_world: LabFactory) -> Iterator[Lab]:
    lab = lab_world(WORLD)
    procs = []
    for node in ("fra", "los"):  # mute has no reflector
        proc = lab.popen(node, [sys.executable, "-m", "netopt", "reflector", "--listen",
                                f"{lab.address(node)}:{PORT}"],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        procs.append(proc)
    try:
        yield lab
    finally:
        for proc in procs:
            stop(proc, 5)


@pytest.fixture(scope="module")
def config(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = {
        "regions": [{"id": "site", "name": "Site"}, {"id": "quiet", "name": "Quiet"}],
        "pops": [
            {"id": n, "role": r, "address": lab.address(n)}
            for n, r in (("fra", "core"), ("los", "edge"), ("mute", "edge"))
        ],
        "destinations": ["fra"],
        "backbone": [{"a": "fra", "b": "los", "rtt_ms": 40, "jitter_ms": 0.3}],
    }
    path = tmp_path_factory.mktemp("assess") / "netopt.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _argv(lab: Lab, cfg: Path, site: str, out: Path, duration: str) -> list[str]:
    return ["ip", "netns", "exec", lab.netns(site), sys.executable, "-m", "netopt", "assess",
            "--config", str(cfg), "--site", site, "--duration", duration, "--out", str(out),
            "--stamp-port", str(PORT)]  # fmt: skip


def _assess(lab: Lab, cfg: Path, site: str, out: Path) -> dict[str, Any]:
    done = subprocess.run(_argv(lab, cfg, site, out, "20s"), capture_output=True, text=True,
                          timeout=90, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert "cycle" in done.stdout  # plain progress lines (stdout is not a TTY)
    report = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(report)
    return report


@pytest.fixture(scope="module")
def lossy(lab: Lab, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lossy")
    _assess(lab, config, "site", out)
    return out


def test_lossy_direct_clean_edge_needs_acceleration_via_the_edge(lossy: Path) -> None:
    report = json.loads((lossy / "report.json").read_text())
    assert report["verdict"] == "needed" and not report["partial"]
    (v,) = report["verdicts"]
    assert v["via"] == "los" and v["mos_before"] < v["mos_after"]
    assert v["mos_before"] < 4.0 <= v["mos_after"]
    fra = next(p for p in report["pops"] if p["pop"] == "fra")
    assert fra["path"]["kind"] == "voice" and 4.0 < fra["path"]["loss_pct"] < 14.0
    assert 75 < fra["path"]["rtt_ms"] < 100  # 2 x 40 ms: the lab answered, not loopback
    (route,) = report["routes"]
    assert route["entry_pop"] == "los" and route["path"] == ["site", "los", "fra"]
    assert "via los" in (lossy / "report.md").read_text()


def test_pop_without_reflector_is_reported_not_fatal(lossy: Path) -> None:
    report = json.loads((lossy / "report.json").read_text())
    mute = next(p for p in report["pops"] if p["pop"] == "mute")
    kinds = {k["kind"]: k for k in mute["kinds"]}
    assert kinds["icmp"]["answered"]  # the node is there ...
    assert not kinds["stamp"]["answered"] and "no answer" in kinds["stamp"]["note"]
    assert mute["path"]["kind"] == "icmp"  # ... so the planner gets its ICMP numbers


def test_clean_direct_path_does_not_need_acceleration(
    lab: Lab, config: Path, tmp_path: Path
) -> None:
    report = _assess(lab, config, "quiet", tmp_path)
    assert report["verdict"] == "not_needed"
    (v,) = report["verdicts"]
    assert v["via"] is None and v["mos_before"] == v["mos_after"] >= 4.0


def test_sigint_writes_a_partial_report(lab: Lab, config: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(_argv(lab, config, "site", tmp_path, "10m"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "cycle 2:" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["partial"] is True and report["duration_s"] < 120
    assert report["duration_planned_s"] == 600
    assert any(s.startswith("Partial run") for s in report["summary"])
    assert "Partial report" in (tmp_path / "report.html").read_text()


def test_report_html_renders_in_headless_chromium(lossy: Path) -> None:
    shot = artefacts_dir("assess") / "assess-report.png"
    shot.unlink(missing_ok=True)
    screenshot((lossy / "report.html").as_uri(), shot, lossy / "chromium", size="1280,2000")
    print(f"screenshot: {shot}")
    _width, _height, colours, ink = png_stats(shot)
    assert colours > 20 and ink > 0.02  # text, tables and plots, not a blank page
