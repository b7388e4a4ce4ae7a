"""`netopt dashboards build | check | push | preview`: the dashboards as code, from a shell."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from netopt.dashboards.build import OUT_DIR, build_all, builders, stale


def register(sub: Any) -> None:
    p = sub.add_parser("dashboards", help="build or check the Grafana dashboards (JSON)")
    dsub = p.add_subparsers(dest="dashboards_command", metavar="ACTION")
    dsub.required = True
    b = dsub.add_parser("build", help="write the dashboards' JSON")
    b.add_argument("--out", type=Path, default=OUT_DIR, help=f"directory (default {OUT_DIR})")
    b.set_defaults(func=run_build)
    c = dsub.add_parser("check", help="exit 1 when the committed JSON differs from a fresh build")
    c.add_argument("--dir", type=Path, default=OUT_DIR, help=f"directory (default {OUT_DIR})")
    c.set_defaults(func=run_check)
    u = dsub.add_parser("push", help="upload the dashboards to Grafana's HTTP API")
    u.add_argument("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
    u.add_argument("--token", default=os.environ.get("NETOPT_GRAFANA_TOKEN"),
                   help="service-account token (default: $NETOPT_GRAFANA_TOKEN)")  # fmt: skip
    u.add_argument("--folder", default="netopt", help="folder uid or title (created when missing)")
    u.set_defaults(func=run_push)
    from netopt.dashboards.preview import register as register_preview

    register_preview(dsub)


def run_build(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, text in build_all().items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    return 0


def run_check(args: argparse.Namespace) -> int:
    problems = stale(args.dir)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("dashboards are stale: run `netopt dashboards build`", file=sys.stderr)
        return 1
    print(f"dashboards up to date ({len(builders())} in {args.dir})")
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Create or overwrite each dashboard (matched by uid) in one folder (netopt.ops.grafana)."""
    from netopt.dashboards.grafana import run_push as push

    for line in push(args.url, args.token, args.folder, build_all()):
        print(line)
    return 0
