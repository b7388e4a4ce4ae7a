"""`netopt lab` as a user meets it without root: clear messages, nothing built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netopt.lab import api
from netopt.lab.cli import _parse_value, register

REPO = Path(__file__).resolve().parents[3]


def _main(argv: list[str]) -> int:
    from netopt.cli import main

    return main(argv)


def test_not_root_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    status = _main(["lab", "up", str(REPO / "deploy" / "lab" / "world.yaml")])
    assert status == 1
    assert "needs root" in capsys.readouterr().err


def test_bad_profile_is_reported_before_the_root_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - {name: a, role: region}\nlinks:\n  - {a: a, b: zz}\n")
    assert _main(["lab", "up", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "links[0].b: unknown node 'zz'" in err


def test_bad_lab_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["lab", "--name", "My-Lab", "status"]) == 1
    assert "lab name 'My-Lab'" in capsys.readouterr().err


def test_status_of_a_lab_that_is_not_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(api.RUN_DIR_ENV, str(tmp_path))
    assert _main(["lab", "status", "--name", "nolab"]) == 1
    assert "no lab named 'nolab' is up" in capsys.readouterr().err


def test_set_values_parse() -> None:
    assert _parse_value("delay_ms", "12.5") == 12.5
    assert _parse_value("reorder", "true") is True
    assert _parse_value("burst", "0.01,0.3") == {"p": 0.01, "r": 0.3}
    assert _parse_value("burst", "none") is None


def test_register_adds_every_subcommand() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    world = ["lab", "world", "--matrix", "m", "--regions", "A", "--pops", "B", "--out", "o"]
    for argv in (["lab", "up", "x.yaml"], ["lab", "down"], ["lab", "status", "--json"],
                 ["lab", "exec", "a", "--", "true"], ["lab", "set", "a", "b", "delay_ms=1"],
                 world):  # fmt: skip
        args = parser.parse_args(argv)
        assert callable(args.func)
