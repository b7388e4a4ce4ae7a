"""The `netopt` command: one subcommand per face of the daemon.

Each area registers its own subcommands through a `register(subparsers)` function that adds
parsers with ``set_defaults(func=handler)``; a handler takes the parsed args and returns the
exit status. Errors the user can fix (`NetoptError`) print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from netopt import __version__
from netopt.errors import ConfigError, NetoptError

# Which module registers each subcommand. Only the module of the command being run is
# imported, so `netopt lab set …` does not pay for numpy, networkx and aiohttp; `--help`
# imports them all to list every command.
COMMANDS: dict[str, str] = {
    "serve": "netopt.cli.serve",
    "check-config": "netopt.cli.serve",
    "agent": "netopt.cli.serve",
    "db": "netopt.cli.serve",
    "demo": "netopt.cli.demo",
    "lab": "netopt.lab.cli",
    "probe": "netopt.cli.probe",
    "reflector": "netopt.cli.probe",
    "plan": "netopt.cli.plan",
    "dashboards": "netopt.dashboards.cli",
    "assess": "netopt.assess.cli",
}


def _version(args: argparse.Namespace) -> int:
    print(f"netopt {__version__}")
    return 0


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (its first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
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
    command = _command_of(argv) if argv is not None else None
    every = list(dict.fromkeys(COMMANDS.values()))
    if command == "version":
        every = []
    modules = [COMMANDS[command]] if command in COMMANDS else every
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
