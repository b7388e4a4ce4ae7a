"""The example configs in deploy/ are valid for the programs they are written for."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from netopt.config import load_config
from tests.integration.conftest import REPO


def test_prometheus_config_and_its_rules_load() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian prometheus; see DEBIAN_TEST in the Makefile)")
    done = subprocess.run(
        [promtool, "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # the rule file was found and parsed, not silently skipped
    assert "netopt.rules.yml" in done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_example_daemon_config_is_valid() -> None:
    cfg = load_config(REPO / "deploy" / "netopt.example.yaml")
    assert cfg.destinations == ("fra",)
