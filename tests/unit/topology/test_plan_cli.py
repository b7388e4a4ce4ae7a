"""`netopt plan`: table and JSON output, bad paths.csv lines named by number, missing pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netopt.cli import main

CONFIG = """\
regions:
  - {id: lagos, name: Lagos}
  - {id: nairobi}
  - {id: quiet}
pops:
  - {id: fra, name: Frankfurt, role: core, address: 127.0.0.2}
  - {id: jnb, role: edge, address: 127.0.0.3, relay_delay_ms: 0.5}
  - {id: lon, role: edge, address: 127.0.0.4}
  - {id: sin, role: edge, address: 127.0.0.5}
destinations: [fra]
backbone:
  - {a: jnb, b: fra, rtt_ms: 160, jitter_ms: 1, loss_pct: 0.01}
  - {a: lon, b: fra, rtt_ms: 10}
"""

PATHS = """\
src,dst,rtt_ms,jitter_ms,loss_pct
lagos,fra,300,15,2
lagos,lon,96,2,0.1
lagos,jnb,110,3,0.2
lagos,sin,200,1,0
nairobi,fra,178.5,2,0.1
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cfg, paths = tmp_path / "netopt.yaml", tmp_path / "paths.csv"
    cfg.write_text(CONFIG)
    paths.write_text(PATHS)
    return cfg, paths


def test_json_output_has_the_documented_shape(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, paths = files
    assert main(["plan", "--config", str(cfg), "--paths", str(paths), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_region = {r["region"]: r for r in out["routes"]}
    lagos = by_region["lagos"]
    assert lagos["kind"] == "relay" and lagos["path"] == ["lagos", "lon", "fra"]
    assert lagos["entry_pop"] == "lon" and lagos["acceleration"] == "needed"
    assert set(lagos["expected"]) == {"rtt_ms", "jitter_ms", "loss_pct", "mos"}
    assert lagos["expected"]["rtt_ms"] == 106.0
    assert [a["entry_pop"] for a in lagos["alternatives"]] == ["jnb", None]
    assert lagos["skipped"] == [{"pop": "sin", "why": "no backbone path to fra"}]
    assert by_region["nairobi"]["acceleration"] == "not_needed"
    assert by_region["nairobi"]["kind"] == "direct"
    quiet = by_region["quiet"]
    assert quiet["acceleration"] == "unmeasured" and quiet["path"] == [] and quiet["kind"] is None
    assert out["unreachable"] == [{"pop": "sin", "dest": "fra"}]


def test_table_output_reads_aloud_and_lists_missing_pairs(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, paths = files
    assert main(["plan", "--config", str(cfg), "--paths", str(paths), "--dest", "fra"]) == 0
    out = capsys.readouterr().out
    assert "lagos → lon → fra" in out
    assert "not measured from nairobi: jnb, lon, sin" in out
    assert "unreachable over the backbone: sin→fra" in out
    assert "Nothing has been measured from quiet" in out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mars,fra,10,1,0", "line 2: src 'mars' is not a region or pop id"),
        ("lagos,fra,-5,1,0", "line 2: lagos->fra: rtt_ms must be a finite number >= 0"),
        ("lagos,fra,nan,1,0", "line 2: lagos->fra: rtt_ms must be a finite number >= 0"),
        ("lagos,fra,10,1,101", "line 2: lagos->fra: loss_pct must be between 0 and 100"),
        ("lagos,fra,ten,1,0", "line 2: rtt_ms 'ten' is not a number"),
        ("lagos,nairobi,10,1,0", "line 2: lagos->nairobi: region to region"),
        ("lagos,fra,10,1,0\nlagos,fra,11,1,0", "line 3: lagos->fra repeats line 2"),
    ],
)
def test_bad_lines_are_named_and_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    cfg, paths = files
    paths.write_text("src,dst,rtt_ms,jitter_ms,loss_pct\n" + line + "\n")
    assert main(["plan", "--config", str(cfg), "--paths", str(paths)]) == 2
    assert message in capsys.readouterr().err


def test_every_bad_line_is_reported_at_once(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, paths = files
    paths.write_text("src,dst,rtt_ms,jitter_ms,loss_pct\nmars,fra,1,0,0\nlagos,fra,-1,0,0\n")
    assert main(["plan", "--config", str(cfg), "--paths", str(paths)]) == 2
    err = capsys.readouterr().err
    assert "2 error(s)" in err and "line 2:" in err and "line 3:" in err


def test_missing_column_and_unknown_dest(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, paths = files
    paths.write_text("src,dst,rtt_ms\nlagos,fra,10\n")
    assert main(["plan", "--config", str(cfg), "--paths", str(paths)]) == 2
    assert "missing column(s) jitter_ms, loss_pct" in capsys.readouterr().err
    paths.write_text(PATHS)
    assert main(["plan", "--config", str(cfg), "--paths", str(paths), "--dest", "jnb"]) == 2
    assert "'jnb' is not a destination" in capsys.readouterr().err
