"""``netopt lab …``: bring the emulated WAN up and down, look at it, change it live.

Thin shell over `netopt.lab.api.Lab` (and `netopt.lab.world` for ``lab world``); every handler
returns an exit status, errors are `LabError` / `ConfigError` printed by `netopt.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netopt.errors import LabError
from netopt.lab.api import SETTABLE, Lab, default_name


def register(subparsers: Any) -> None:
    lab = subparsers.add_parser("lab", help="the emulated WAN (network namespaces + impairment)")
    lab.add_argument(
        "--name",
        default=None,
        help="lab instance name (default: $NETOPT_LAB_NAME or 'netopt'); prefixes namespaces",
    )
    # --name is also accepted after the subcommand (``netopt lab down --name t1``)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    sub.required = True

    p = sub.add_parser(
        "up", parents=[common], help="build the world in PROFILE (cleans a stale lab first)"
    )
    p.add_argument("profile", metavar="PROFILE")
    p.set_defaults(func=_up)

    p = sub.add_parser(
        "down", parents=[common], help="remove every namespace, interface and process of the lab"
    )
    p.set_defaults(func=_down)

    p = sub.add_parser(
        "status", parents=[common], help="nodes, addresses, links and their counters"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "exec", parents=[common], help="run a command inside a node: lab exec NODE -- CMD..."
    )
    p.add_argument("node", metavar="NODE")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
    p.set_defaults(func=_exec)

    p = sub.add_parser(
        "set", parents=[common], help="change a link live: lab set A B delay_ms=.. loss_pct=.."
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("changes", nargs="+", metavar="KEY=VALUE", help=f"keys: {', '.join(SETTABLE)}")
    p.set_defaults(func=_set)

    p = sub.add_parser("world", parents=[common], help="build a profile from a real RTT matrix")
    p.add_argument("--matrix", required=True, help="square RTT matrix CSV (WonderProxy layout)")
    p.add_argument("--regions", required=True, help="comma-separated matrix cities for regions")
    p.add_argument("--pops", required=True, help="comma-separated matrix cities for PoPs")
    p.add_argument("--access", default=None, help="RIPE Atlas country RTT stats (.csv.gz)")
    p.add_argument("--out", required=True, metavar="PROFILE")
    p.set_defaults(func=_world)


def _name(args: argparse.Namespace) -> str:
    return str(args.name or default_name())


def _up(args: argparse.Namespace) -> int:
    lab = Lab.up(args.profile, name=_name(args))
    print(f"lab {lab.name!r} is up: {len(lab.nodes)} nodes ({', '.join(lab.nodes)})")
    return 0


def _down(args: argparse.Namespace) -> int:
    Lab.teardown(_name(args))
    print(f"lab {_name(args)!r} is down")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = Lab.attach(_name(args)).status()
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(f"{'node':<16} {'role':<7} address")
    for n in status["nodes"]:
        print(f"{n['name']:<16} {n['role']:<7} {n['address']}")
    print()
    print(
        f"{'link':<28} {'delay_ms':>9} {'jitter_ms':>9} {'loss_pct':>8} "
        f"{'forwarded':>10} {'dropped':>8}"
    )
    for link in status["links"]:
        arrow = "->" if link["directed"] else "<>"
        name = f"{link['a']} {arrow} {link['b']}" + (" (default)" if link["default"] else "")
        print(
            f"{name:<28} {link['delay_ms']:>9g} {link['jitter_ms']:>9g} {link['loss_pct']:>8g} "
            f"{link['forwarded']:>10} {link['dropped']:>8}"
        )
    return 0


def _exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise LabError("lab exec NODE -- CMD...: no command given")
    lab = Lab.attach(_name(args))
    sys.stdout.flush()
    return int(lab.exec(args.node, cmd).returncode)


def _parse_value(key: str, text: str) -> Any:
    if key == "reorder":
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise LabError(f"reorder={text}: expected true or false")
    if key == "burst":
        if text.lower() in ("none", "off", "null"):
            return None
        try:
            p, r = (float(x) for x in text.split(","))
        except ValueError:
            raise LabError(f"burst={text}: expected P,R (e.g. burst=0.01,0.3) or none") from None
        return {"p": p, "r": r}
    try:
        return float(text)
    except ValueError:
        raise LabError(f"{key}={text}: expected a number") from None


def _set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    for item in args.changes:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTABLE:
            raise LabError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(SETTABLE)}")
        changes[key] = _parse_value(key, value)
    params = Lab.attach(_name(args)).set_link(args.a, args.b, **changes)
    shown = ", ".join(f"{k}={v}" for k, v in params.model_dump().items() if v is not None)
    print(f"{args.a} <> {args.b}: {shown}")
    return 0


def _world(args: argparse.Namespace) -> int:
    from netopt.lab import world

    regions = [x.strip() for x in args.regions.split(",") if x.strip()]
    pops = [x.strip() for x in args.pops.split(",") if x.strip()]
    text = world.build_profile_text(args.matrix, regions, pops, access_path=args.access)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(regions)} regions, {len(pops)} PoPs")
    return 0
