"""`netopt serve`, `agent`, `db stats` and `check-config`: the daemon's own subcommands."""

from __future__ import annotations

import argparse
import json

from netopt.config import load_config
from netopt.logs import setup_logging


def _serve(args: argparse.Namespace) -> int:
    from netopt.daemon.wiring import Daemon, run_until_signalled

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


def _agent(args: argparse.Namespace) -> int:
    from netopt.agent.run import load_agent_config, run_agent

    setup_logging(args.log_level)
    config = load_agent_config(args.config)
    if args.check:
        n = len(config.jobs())
        print(f"{args.config}: ok (agent {config.id} at site {config.site}, {n} probe jobs)")
        return 0
    return run_agent(config)


def _db_stats(args: argparse.Namespace) -> int:
    from netopt.store import store_stats

    path = args.db or load_config(args.config).store.sqlite_path
    stats = store_stats(path)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    rows = stats.pop("rows")
    for key, value in stats.items():
        print(f"{key:22} {value}")
    for table, n in rows.items():  # type: ignore[attr-defined]
        print(f"rows.{table:17} {n}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the controller: probe, plan, decide, serve routes")
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_serve)
    p = sub.add_parser("agent", help="run probes at a remote site and ship them to the controller")
    p.add_argument("--config", "-c", required=True, help="agent YAML config file")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_agent)
    p = sub.add_parser("db", help="the store: `netopt db stats` shows sizes and row counts")
    dbsub = p.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    p = dbsub.add_parser("stats", help="file sizes, schema version and row counts per table")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", help="daemon config (its store.url)")
    where.add_argument("--db", help="path of a SQLite store")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_db_stats)
    p = sub.add_parser("check-config", help="validate a config file; exit 2 on errors")
    p.add_argument("config", help="YAML config file")
    p.set_defaults(func=_check_config)
