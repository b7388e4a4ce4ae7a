"""`netopt serve` and `netopt check-config`: the controller's own subcommands."""

from __future__ import annotations

import argparse
import logging
import sys

from netopt.config import load_config


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    # APScheduler logs every job run at INFO; keep its warnings only
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    from netopt.app import Daemon, run_until_signalled

    setup_logging(args.log_level)
    config = load_config(args.config)
    daemon = Daemon(config, config_path=args.config)

    def listening(url: str) -> None:
        print(f"netopt serving: route API {url}/v1/route?region=ID  metrics {url}/metrics",
              flush=True)  # fmt: skip
        regions = ", ".join(r.id for r in config.regions) or "(none)"
        print(f"regions: {regions}; press Ctrl-C to stop", flush=True)

    return run_until_signalled(daemon, listening)


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    n_targets = sum(len(p.to) for p in config.probes)
    print(
        f"{args.config}: ok ({len(config.regions)} regions, {len(config.pops)} pops, "
        f"{len(config.probes)} probe groups, {n_targets} targets)"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the controller: probe, plan, decide, serve routes")
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_serve)
    p = sub.add_parser("check-config", help="validate a config file; exit 2 on errors")
    p.add_argument("config", help="YAML config file")
    p.set_defaults(func=_check_config)
