"""The `netopt` command: one subcommand per face of the daemon.

Each area registers its own subcommands through a `register(subparsers)` function that adds
parsers with ``set_defaults(func=handler)``; a handler takes the parsed args and returns the
exit status. Errors the user can fix (`NetoptError`) print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from netopt import __version__, commands, dashboards, demo, plan_cli, probe_cli
from netopt.errors import ConfigError, NetoptError
from netopt.lab import cli as lab_cli


def _version(args: argparse.Namespace) -> int:
    print(f"netopt {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netopt",
        description=(
            "Measure voice paths, decide where media needs acceleration, tell the SIP proxies."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_version)
    # --- each area registers its own subcommands here (one line each) ---
    lab_cli.register(sub)
    commands.register(sub)
    demo.register(sub)
    probe_cli.register(sub)
    plan_cli.register(sub)
    dashboards.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except NetoptError as exc:
        print(f"netopt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
