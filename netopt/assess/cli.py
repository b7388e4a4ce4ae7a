"""`netopt assess`: a consultant's timed campaign from a customer site, with a report.

config + --site → campaign (live display) → analysis → report.json / report.md / report.html
in --out, then optionally --upload to the controller. SIGINT/SIGTERM stop the campaign and
still write the report, marked partial (exit status 130). `netopt assess compare A B` puts two
reports side by side; `netopt assess schema` prints the report's JSON schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from netopt import __version__
from netopt.config import load_config
from netopt.errors import ConfigError, NetoptError

TOKEN_ENV = "NETOPT_ADMIN_TOKEN"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"duration {text!r}: expected e.g. 20s, 15m, 1h")
    value = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    if not 1 <= value <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"duration {text!r}: must be between 1 s and 24 h")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("assess", help="timed campaign from a customer site, with a report")
    p.add_argument("--config", type=Path, help="netopt config (YAML): the PoPs to assess")
    p.add_argument("--site", help="the region id of the site this machine is at")
    p.add_argument("--duration", type=parse_duration, default=900.0, help="e.g. 20s, 15m (15m)")
    p.add_argument("--codec", default=None, help="g711 (default: planner.codec), g729, opus")
    p.add_argument("--out", type=Path, default=None, help="report directory (assess-SITE)")
    p.add_argument("--stamp-port", type=int, default=862, help="PoPs' STAMP reflector port")
    p.add_argument("--upload", metavar="URL", help="POST report.json to this controller")
    p.add_argument("--token", help=f"admin token for --upload (default: ${TOKEN_ENV})")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    c = actions.add_parser("compare", help="compare two reports of the same site")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.set_defaults(func=run_compare)
    s = actions.add_parser("schema", help="print the JSON schema of report.json")
    s.set_defaults(func=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    from netopt.assess.model import report_schema

    print(json.dumps(report_schema(), indent=2, sort_keys=True))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from netopt.assess.compare import compare, load_report

    print(compare(load_report(args.before), load_report(args.after)))
    return 0


def run(args: argparse.Namespace) -> int:
    from netopt.assess.analysis import analyse, codec_name

    if args.config is None or args.site is None:
        raise NetoptError("assess needs --config FILE and --site ID (or: compare, schema)")
    config = load_config(args.config)
    regions = [r.id for r in config.regions]
    if args.site not in regions:
        known = ", ".join(regions) or "none configured"
        raise ConfigError(str(args.config), [f"--site: {args.site!r} is not a region ({known})"])
    codec = args.codec or config.planner.codec
    try:
        codec_name(codec)
    except ValueError as exc:
        raise NetoptError(f"--codec: {exc}") from None
    out = args.out or Path(f"assess-{args.site}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetoptError(f"--out {out}: cannot create: {exc.strerror}") from None
    collected = asyncio.run(_campaign(config, args, codec))
    report = analyse(config, collected, codec=codec, now_wall_s=time.time(), version=__version__)
    write_reports(report, out)
    for line in report.summary:
        print(line, flush=True)
    print(f"report: {out / 'report.html'} (also report.md, report.json)"
          f"{' — PARTIAL' if report.partial else ''}", flush=True)  # fmt: skip
    if args.upload:
        _upload(args, out)
    return 130 if report.partial else 0


async def _campaign(config: Any, args: argparse.Namespace, codec: str) -> Any:
    from netopt.assess.campaign import Campaign
    from netopt.assess.live import display_for

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with display_for(args.site) as display:
        campaign = Campaign(config, args.site, args.duration, codec=codec,
                            stamp_port=args.stamp_port, on_cycle=display.update)  # fmt: skip
        print(f"assessing {args.site} → {len(config.pops)} PoPs for {args.duration:.0f} s "
              f"(a cycle every {campaign.period_s:.1f} s); Ctrl-C writes a partial report",
              flush=True)  # fmt: skip
        return await campaign.run(stop)


def write_reports(report: Any, out: Path) -> None:
    """report.json, report.md and report.html, each written whole (temp file, then rename)."""
    from netopt.assess.render_html import render_html
    from netopt.assess.render_md import render_md

    texts = {
        "report.json": report.model_dump_json(indent=2) + "\n",
        "report.md": render_md(report),
        "report.html": render_html(report),
    }
    for name, text in texts.items():
        tmp = out / f".{name}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, out / name)
        except OSError as exc:
            raise NetoptError(f"cannot write {out / name}: {exc.strerror}") from None


def _upload(args: argparse.Namespace, out: Path) -> None:
    from netopt.assess.upload import upload

    token = args.token or os.environ.get(TOKEN_ENV)
    answer = upload(args.upload, (out / "report.json").read_bytes(), token)
    print(f"uploaded: assessment {answer.get('id')} at {args.upload}", flush=True)
