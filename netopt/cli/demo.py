"""`netopt demo`: the whole system on one machine — lab world up, daemon on it, Ctrl-C to stop.

lab (emulated WAN) → daemon config generated from it → `netopt serve` → route API, metrics.
Every region probes every PoP from inside its own namespace; the backbone between PoPs is
declared from the profile (RTT = the sum of both directions' delays). Without root (or
without TUN support) the demo says why and runs on loopback stand-ins instead.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import yaml

from netopt.config import Config, load_config, parse_config
from netopt.errors import LabError

REPO = Path(__file__).resolve().parents[2]
WORLD = REPO / "deploy" / "lab" / "world.yaml"
LOOPBACK = REPO / "deploy" / "netopt.example.yaml"
log = logging.getLogger("netopt.demo")


def config_for_lab(lab: Any, *, listen: str, store: str, interval_s: float = 1.0) -> Config:
    """A daemon config for a running lab: regions probe every PoP, backbone from the profile."""
    profile = lab.profile
    directed = profile.directed_params()
    regions = [n for n in profile.nodes if n.role == "region"]
    pops = [n for n in profile.nodes if n.role == "pop"]
    cores = [p.name for p in pops if p.pop_role == "core"] or [pops[0].name]
    # up to 25 packets 20 ms apart (250 a window: enough to tell loss), as many as a round
    # fits in the interval
    timeout_s = min(0.4, interval_s / 2)
    count = max(1, min(25, math.ceil((interval_s - timeout_s) / 0.02)))
    backbone = []
    for i, a in enumerate(pops):
        for b in pops[i + 1 :]:
            ab, ba = directed[(a.name, b.name)], directed[(b.name, a.name)]
            backbone.append({
                "a": a.name, "b": b.name,
                "rtt_ms": round(ab.delay_ms + ba.delay_ms, 3),
                "jitter_ms": round(math.hypot(ab.jitter_ms, ba.jitter_ms), 3),
                "loss_pct": round(100 * (1 - (1 - ab.loss_pct / 100) * (1 - ba.loss_pct / 100)), 4),
            })  # fmt: skip
    data = {
        "regions": [
            {
                "id": r.name,
                "name": r.city or r.name,
                "address": lab.address(r.name),
                "netns": lab.netns(r.name),
            }
            for r in regions
        ],
        "pops": [
            {
                "id": p.name,
                "name": p.city or p.name,
                "role": p.pop_role or "edge",
                "address": lab.address(p.name),
                "sip_uri": f"sip:{lab.address(p.name)}:5060",
                "netns": lab.netns(p.name),
            }
            for p in pops
        ],
        "destinations": cores,
        "backbone": backbone,
        "probes": [
            {
                "kind": "icmp",
                "from": r.name,
                "to": [p.name for p in pops],
                "interval_s": interval_s,
                "count": count,
                "timeout_s": timeout_s,
            }
            for r in regions
        ],
        "store": {"url": f"sqlite:///{store}"},
        "api": {"listen": listen},
        "planner": {"window_s": 10},
    }
    return parse_config(data, "demo config")


class VerdictPrinter:
    """A RouteTable publisher that prints a region's verdict when its route changes, e.g.
    ``[23 s] lagos: acceleration needed — via los (MOS 3.62 → 4.31)``."""

    def __init__(self, clock: Any = None) -> None:
        import time

        self._clock = clock or time.monotonic
        self._t0 = self._clock()
        self._said: dict[tuple[str, str], str | None] = {}

    def publish(self, table: Any) -> None:
        for e in table:
            if e.route is None or e.acceleration in ("unmeasured", "unreachable"):
                continue
            key, now = (e.region, e.dest), e.route.entry_pop
            if key in self._said and self._said[key] == now:
                continue  # the verdict may waver; the route (what the proxies do) did not
            self._said[key] = now
            print(f"[{self._clock() - self._t0:.0f} s] {self.line(e)}", flush=True)

    @staticmethod
    def line(e: Any) -> str:
        mos = e.route.expected.mos
        direct = next((r for r in (e.route, *e.fallbacks) if r.kind == "direct"), None)
        words = e.acceleration.replace("_", " ")
        where = f"{e.region} → {e.dest}" if e.dest else e.region
        if e.route.kind == "relay" and direct is not None:
            return (f"{where}: acceleration {words} — via {e.route.entry_pop} "
                    f"(MOS {direct.expected.mos:.2f} → {mos:.2f})")  # fmt: skip
        if e.route.kind == "relay":
            return f"{where}: acceleration {words} — via {e.route.entry_pop} (MOS {mos:.2f})"
        if e.acceleration == "needed":
            return f"{where}: acceleration needed, still direct until proven (MOS {mos:.2f})"
        return f"{where}: acceleration {words} — direct (MOS {mos:.2f})"


def _demo(args: argparse.Namespace) -> int:
    from netopt.daemon.wiring import Daemon, run_until_signalled
    from netopt.logs import setup_logging

    setup_logging(args.log_level)
    lab = None
    try:
        from netopt.lab.api import Lab

        lab = Lab.up(args.profile, name=args.lab_name)
        config = config_for_lab(lab, listen=args.listen, store=args.store)
        print(f"lab {lab.name!r} is up: {len(lab.nodes)} nodes from {args.profile}", flush=True)
    except LabError as exc:
        print(f"netopt demo: no lab ({exc}); probing loopback stand-ins instead", flush=True)
        base = load_config(LOOPBACK)
        config = base.model_copy(
            update={"api": base.api.model_copy(update={"listen": args.listen})}
        )
    if args.print_config:
        print(yaml.safe_dump(config.model_dump(mode="json", by_alias=True, exclude_none=True),
                             sort_keys=False))  # fmt: skip
    daemon = Daemon(config)
    daemon.publishers.append(VerdictPrinter().publish)

    def listening(url: str) -> None:
        first = config.regions[0].id if config.regions else "ID"
        print(f"netopt serving: status page {url}/  route API {url}/v1/route?region={first}  "
              f"metrics {url}/metrics", flush=True)  # fmt: skip
        print(f"regions: {', '.join(r.id for r in config.regions)}; press Ctrl-C to stop",
              flush=True)  # fmt: skip

    try:
        return run_until_signalled(daemon, listening)
    finally:
        if lab is not None and not args.keep_lab:
            lab.down()
            print(f"lab {lab.name!r} is down", flush=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="bring the lab world up and run the daemon on it")
    p.add_argument("--profile", default=str(WORLD), help="lab world profile (YAML)")
    p.add_argument("--lab-name", default="demo", help="name of the lab instance")
    p.add_argument("--listen", default="127.0.0.1:8080", help="route API address HOST:PORT")
    p.add_argument("--store", default="run/demo.db", help="SQLite file for the demo's rounds")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up on exit")
    p.add_argument("--print-config", action="store_true", help="print the generated config")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_demo)
