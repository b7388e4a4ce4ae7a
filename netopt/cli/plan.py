"""`netopt plan`: offline planning from a config file and a CSV of measured path stats.

Flow: config (topology) + paths.csv (PathStats) → topology.plan → a table for a consultant, or
JSON (`--json`) for programs.

paths.csv columns: `src,dst,rtt_ms,jitter_ms,loss_pct` and optionally `samples`; `src`/`dst`
are region or PoP ids (region → PoP or PoP → region for access, PoP → PoP adds to or overrides
the backbone). Every bad line is reported with its number (exit 2); candidates that could not
be scored (pairs not measured, destinations unreachable over the backbone) are listed, never
silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from netopt.config import load_config
from netopt.errors import ConfigError
from topology.model import Topology, check_path_numbers
from topology.planner import PathStats, Plan, RegionPlan, Route, plan

REQUIRED = ("src", "dst", "rtt_ms", "jitter_ms", "loss_pct")


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="plan routes offline from a config and a paths CSV")
    p.add_argument("--config", required=True, type=Path, help="netopt config (YAML)")
    p.add_argument(
        "--paths", required=True, type=Path, help="CSV: src,dst,rtt_ms,jitter_ms,loss_pct"
    )
    p.add_argument("--dest", help="only this destination")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    topology = config.to_topology()
    if args.dest is not None and args.dest not in topology.destinations:
        known = ", ".join(topology.destinations)
        raise ConfigError(
            str(args.config), [f"--dest: {args.dest!r} is not a destination ({known})"]
        )
    paths = read_paths(args.paths, topology)
    pc = config.planner
    result = plan(
        topology, paths, target_mos=pc.target_mos, margin_mos=pc.margin_mos, codec=pc.codec
    )
    entries = [e for e in result if args.dest is None or e.dest == args.dest]
    if args.json:
        json.dump(to_json(entries, result), sys.stdout, indent=2)
        print()
    else:
        print(render_table(entries, result))
    return 0


def read_paths(path: Path, topology: Topology) -> list[PathStats]:
    """PathStats from the CSV, or ConfigError listing every bad line by number."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    rows = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (rows.fieldnames or [])]
    if missing:
        raise ConfigError(str(path), [f"line 1: missing column(s) {', '.join(missing)}"])
    problems: list[str] = []
    out: list[PathStats] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            stats = _parse_row(row, topology)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        key = (stats.src, stats.dst)
        if key in seen:
            problems.append(f"line {line}: {stats.src}->{stats.dst} repeats line {seen[key]}")
            continue
        seen[key] = line
        out.append(stats)
    if problems:
        raise ConfigError(str(path), problems)
    return out


def _parse_row(row: dict[str, str | None], topology: Topology) -> PathStats:
    src, dst = (row.get("src") or "").strip(), (row.get("dst") or "").strip()
    for name, node in (("src", src), ("dst", dst)):
        if not (topology.is_region(node) or topology.is_pop(node)):
            raise ValueError(f"{name} {node!r} is not a region or pop id")
    if topology.is_region(src) and topology.is_region(dst):
        raise ValueError(f"{src}->{dst}: region to region is not a candidate path")
    if src == dst:
        raise ValueError(f"{src}->{dst}: a site to itself is not a path")
    values = {}
    for col in ("rtt_ms", "jitter_ms", "loss_pct"):
        raw = (row.get(col) or "").strip()
        try:
            values[col] = float(raw) if raw or col == "rtt_ms" else 0.0
        except ValueError:
            raise ValueError(f"{col} {raw!r} is not a number") from None
    check_path_numbers(f"{src}->{dst}", values["rtt_ms"], values["jitter_ms"], values["loss_pct"])
    raw_samples = (row.get("samples") or "").strip()
    try:
        samples = int(raw_samples) if raw_samples else 0
    except ValueError:
        raise ValueError(f"samples {raw_samples!r} is not an integer") from None
    return PathStats(src, dst, values["rtt_ms"], values["jitter_ms"], values["loss_pct"], samples)


# ---- output ---------------------------------------------------------------------------------


def route_json(route: Route) -> dict[str, Any]:
    e = route.expected
    return {
        "kind": route.kind,
        "path": list(route.path),
        "entry_pop": route.entry_pop,
        "expected": {
            "rtt_ms": _num(e.rtt_ms),
            "jitter_ms": _num(e.jitter_ms),
            "loss_pct": _num(e.loss_pct),
            "mos": _num(e.mos, 3),
        },
    }


def _num(x: float, digits: int = 2) -> float | None:
    return None if math.isnan(x) else round(x, digits)


def to_json(entries: list[RegionPlan], result: Plan) -> dict[str, Any]:
    routes = []
    for e in entries:
        best = e.best
        item: dict[str, Any] = {"region": e.region, "dest": e.dest}
        item.update(
            route_json(best)
            if best
            else {"kind": None, "path": [], "entry_pop": None, "expected": None}
        )
        item["acceleration"] = e.acceleration
        item["reason"] = e.reason
        item["alternatives"] = [route_json(r) for r in e.routes[1:]]
        item["skipped"] = [{"pop": s.pop, "why": s.why} for s in e.skipped]
        routes.append(item)
    unreachable = [{"pop": p, "dest": d} for p, d in result.unreachable]
    return {"routes": routes, "unreachable": unreachable}


def render_table(entries: list[RegionPlan], result: Plan) -> str:
    """A table a consultant can read, then each verdict's reason and what was skipped."""
    head = ("region", "dest", "route", "RTT ms", "jitter", "loss %", "MOS", "acceleration")
    rows = [head]
    for e in entries:
        b = e.best
        if b is None:
            rows.append((e.region, e.dest, "-", "-", "-", "-", "-", e.acceleration))
            continue
        x = b.expected
        rows.append((
            e.region, e.dest, " → ".join(b.path), f"{x.rtt_ms:.0f}", f"{x.jitter_ms:.1f}",
            f"{x.loss_pct:.2f}", f"{x.mos:.2f}", e.acceleration,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for e in entries:
        lines.append(f"{e.region} → {e.dest}: {e.reason}")
        not_measured = [s.pop for s in e.skipped if s.why.startswith("not measured")]
        no_path = [s.pop for s in e.skipped if not s.why.startswith("not measured")]
        if not_measured and e.acceleration != "unmeasured":
            lines.append(f"  not measured from {e.region}: {', '.join(not_measured)}")
        if no_path:
            lines.append(f"  no backbone path to {e.dest}: {', '.join(no_path)}")
    if result.unreachable:
        pairs = ", ".join(f"{p}→{d}" for p, d in result.unreachable)
        lines.append(f"unreachable over the backbone: {pairs}")
    return "\n".join(lines)
