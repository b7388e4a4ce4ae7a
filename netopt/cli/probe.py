"""`netopt probe KIND TARGET…` and `netopt reflector`: the probers, by hand, from a shell.

probe → sample → **stats → print**. One round per target (all targets in flight at once),
summarised by `probes.stats` and printed like ping, or as JSON with `--json`. Where a result
needs a MOS (voice), it is computed here with `topology.quality`, because `probes` and
`topology` never import each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
from typing import Any

from netopt.errors import NetoptError
from probes.base import KINDS, ProbeOptions, ProbeResult, ProbeSetupError, Target, make_prober
from probes.stats import RoundStats, round_stats

DEFAULT_PORTS = {"stamp": 862, "udp_echo": 7, "sip_options": 5060, "voice": 862}
DSCP_NAMES = {"EF": 46, "VA": 44, "BE": 0, "DF": 0}
DSCP_NAMES |= {f"CS{i}": 8 * i for i in range(8)}
DSCP_NAMES |= {f"AF{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)}


def register(sub: Any) -> None:
    """Add `probe` and `reflector` to the `netopt` subcommands."""
    p = sub.add_parser("probe", help="send one round of probes and print the statistics")
    p.add_argument("kind", choices=KINDS, help="prober kind")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="ADDR, ADDR:PORT or [ADDR6]:PORT")
    p.add_argument("-c", "--count", type=int, default=5, help="packets per target (default 5)")
    p.add_argument(
        "-i",
        "--interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between packets (default 1; voice 0.02); 0 = flood, root only",
    )
    p.add_argument("-W", "--timeout", type=float, default=1.0, metavar="S", help="reply timeout")
    p.add_argument("-s", "--size", type=int, default=56, help="payload bytes")
    p.add_argument(
        "--dscp", type=parse_dscp, default=None, help="DSCP name or number (EF, AF41, 46)"
    )
    p.add_argument("--source", default=None, help="source address")
    p.add_argument(
        "--transport",
        default="udp",
        choices=("udp", "tcp", "icmp"),
        help="sip_options: udp or tcp; traceroute: udp, icmp or tcp (default udp)",
    )
    p.add_argument("--duration", type=float, default=None, metavar="S", help="voice: stream length")
    p.add_argument("--codec", default=None, help="voice: G711 (default), G729, OPUS")
    p.add_argument(
        "--reflector",
        default="stamp",
        choices=("stamp", "echo"),
        help="voice: the far end is a STAMP (default) or UDP echo reflector",
    )
    p.add_argument(
        "--jitter-buffer",
        type=float,
        default=60.0,
        metavar="MS",
        help="voice: jitter buffer depth for late loss (default 60 ms)",
    )
    p.add_argument("--clock-synced", action="store_true", help="trust the reflector's clock")
    p.add_argument("--json", action="store_true", help="print JSON, one object per target")
    p.set_defaults(func=run_probe)
    r = sub.add_parser("reflector", help="answer STAMP or UDP echo probes")
    r.add_argument("--listen", default="0.0.0.0:862", metavar="ADDR:PORT")
    r.add_argument("--mode", choices=("stamp", "echo"), default="stamp")
    r.set_defaults(func=run_reflector)


def parse_dscp(text: str) -> int:
    value = DSCP_NAMES.get(text.upper())
    if value is None:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"unknown DSCP {text!r}") from None
    if not 0 <= value <= 63:
        raise argparse.ArgumentTypeError(f"DSCP {text!r} is outside 0..63")
    return value


def parse_target(text: str, default_port: int | None) -> Target:
    """`ADDR`, `ADDR:PORT` or `[ADDR6]:PORT` → Target (the name is the text as given)."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise NetoptError(f"target {text!r}: not an IP address (names are not resolved)") from None
    return Target(host, port, name=text)


def options_from(args: argparse.Namespace) -> ProbeOptions:
    voice = args.kind == "voice"
    interval = args.interval if args.interval is not None else (0.02 if voice else 1.0)
    if interval == 0 and os.geteuid() != 0:
        raise NetoptError("-i 0 (flood) is for root only, as with ping")
    count = args.count
    if voice and args.duration is not None:
        count = max(1, round(args.duration / interval))
    dscp = args.dscp if args.dscp is not None else (46 if voice else 0)
    return ProbeOptions(
        count=count,
        interval_s=interval,
        timeout_s=args.timeout,
        dscp=dscp,
        size=args.size,
        source=args.source,
        codec=args.codec,
        transport=args.transport,
        clock_synced=args.clock_synced,
    )


async def _probe_all(
    kind: str, targets: list[Target], options: ProbeOptions, **kwargs: Any
) -> list[ProbeResult]:
    prober = make_prober(kind, **kwargs)
    try:
        return list(await asyncio.gather(*(prober.probe(t, options) for t in targets)))
    finally:
        await prober.close()


def run_probe(args: argparse.Namespace) -> int:
    targets = [parse_target(t, DEFAULT_PORTS.get(args.kind)) for t in args.targets]
    options = options_from(args)
    if args.kind == "traceroute":
        return run_traceroute(targets, options, args.json)
    try:
        results = asyncio.run(_probe_all(args.kind, targets, options, **_prober_kwargs(args)))
    except ProbeSetupError as exc:
        raise NetoptError(str(exc)) from None
    buffer_ms = args.jitter_buffer if args.kind == "voice" else None
    for result in results:
        stats = round_stats(result, jitter_buffer_ms=buffer_ms)
        mos = voice_mos(stats, options.codec) if args.kind == "voice" else None
        if args.json:
            out = stats.to_json()
            if args.kind == "voice":
                out["mos"] = mos
            print(json.dumps(out))
        else:
            print(render(stats, options, mos))
    return 0 if all(r.received for r in results) else 1


def run_traceroute(targets: list[Target], options: ProbeOptions, as_json: bool) -> int:
    """Hop by hop, like traceroute: address and per-attempt RTTs."""
    from probes.traceroute import Trace, TracerouteProber

    async def trace_all() -> list[Trace]:
        prober = TracerouteProber()
        try:
            return list(await asyncio.gather(*(prober.trace(t, options) for t in targets)))
        finally:
            await prober.close()

    try:
        traces = asyncio.run(trace_all())
    except ProbeSetupError as exc:
        raise NetoptError(str(exc)) from None
    for trace in traces:
        if as_json:
            hops = [{"ttl": h.ttl, "address": h.address, "reached": h.reached,
                     "rtt_ms": [None if r is None else round(r / 1e6, 4) for r in h.rtts_ns]}
                    for h in trace.hops]  # fmt: skip
            print(json.dumps({"target": trace.target.label, "kind": "traceroute",
                              "protocol": trace.protocol, "reached": trace.reached,
                              "hops": hops}))  # fmt: skip
            continue
        print(f"traceroute to {trace.target.label} ({trace.protocol}, flow-stable, "
              f"DSCP {options.dscp})")  # fmt: skip
        for h in trace.hops:
            rtts = "  ".join("*" if r is None else f"{r / 1e6:.3f} ms" for r in h.rtts_ns)
            print(f"{h.ttl:3d}  {h.address or '*':<15}  {rtts}")
    return 0 if all(t.reached for t in traces) else 1


def _prober_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind != "voice":
        return {}
    from probes.voice import codec_key

    try:
        codec_key(args.codec)
    except ValueError as exc:
        raise NetoptError(str(exc)) from None
    return {"reflector": args.reflector}


def voice_mos(stats: RoundStats, codec: str | None) -> float | None:
    """E-model MOS of the voice round via `topology.quality.mos` (None if it is not there)."""
    try:
        from topology import quality
    except ImportError:
        return None
    mos_fn = getattr(quality, "mos", None)
    if mos_fn is None or stats.rtt_ms is None:
        return None
    name = (codec or "g711").lower()
    name = {"g729": "g729a", "pcmu": "g711", "pcma": "g711"}.get(name, name)
    try:
        value = mos_fn(stats.rtt_ms.p50, stats.jitter_ms or 0.0, 100 * stats.loss_ratio, name)
    except (TypeError, ValueError):
        return None
    return round(float(value), 3)


def render(stats: RoundStats, options: ProbeOptions, mos: float | None) -> str:
    """A ping-like summary of one round."""
    lines = [
        f"--- {stats.target} {stats.kind} statistics ---",
        f"{stats.sent} packets transmitted, {stats.received} received, "
        f"{100 * stats.loss_ratio:.3g}% packet loss "
        f"(95% CI {100 * stats.loss_ci95[0]:.3g}–{100 * stats.loss_ci95[1]:.3g}%), "
        f"interval {options.interval_s:g} s, DSCP {options.dscp}",
    ]
    if stats.rtt_ms is not None:
        r = stats.rtt_ms
        lines.append(
            f"rtt min/avg/max/stddev = {r.min:.3f}/{r.avg:.3f}/{r.max:.3f}/{r.stddev:.3f} ms, "
            f"p50/p90/p99 = {r.p50:.3f}/{r.p90:.3f}/{r.p99:.3f} ms"
        )
    if stats.jitter_ms is not None:
        ipdv = (
            f", ipdv p50/p99 = {stats.ipdv_ms.p50:.3f}/{stats.ipdv_ms.p99:.3f} ms"
            if stats.ipdv_ms
            else ""
        )
        lines.append(f"jitter {stats.jitter_ms:.3f} ms (RFC 3550){ipdv}")
    if stats.bursts.count:
        b = stats.bursts
        lines.append(f"loss bursts {b.count}, longest {b.max_len}, mean {b.mean_len:.2f} packets")
    if stats.late_ratio is not None:
        lines.append(f"late (beyond jitter buffer) {100 * stats.late_ratio:.3g}%")
    if stats.kind == "voice":
        lines.append(
            f"MOS {mos:.2f}" if mos is not None else "MOS n/a (topology.quality has no MOS yet)"
        )
    lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())))
    if stats.statuses:
        lines.append(
            "status codes: " + ", ".join(f"{k} ×{v}" for k, v in sorted(stats.statuses.items()))
        )
    if stats.forward_ms is not None and stats.backward_ms is not None:
        fwd, back = stats.forward_ms, stats.backward_ms
        lines.append(
            f"one-way p50 forward/backward = {fwd.p50:.3f}/{back.p50:.3f} ms (clocks synced)"
        )
    if stats.foreign:
        lines.append("foreign: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.foreign.items())))
    return "\n".join(lines)


def run_reflector(args: argparse.Namespace) -> int:
    default_port = 862 if args.mode == "stamp" else 7
    target = parse_target(args.listen, default_port)
    try:
        asyncio.run(_reflect(target.address, target.port or default_port, args.mode))
    except OSError as exc:
        raise NetoptError(f"reflector cannot listen on {args.listen}: {exc.strerror}") from None
    return 0


async def _reflect(address: str, port: int, mode: str) -> None:
    """Serve until SIGINT/SIGTERM, then return quietly."""
    from probes.stamp import serve_reflector

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    def ready(sockname: tuple[str, int]) -> None:
        print(f"netopt reflector ({mode}) listening on {sockname[0]}:{sockname[1]}", flush=True)

    with contextlib.suppress(asyncio.CancelledError):
        await serve_reflector(address, port, mode=mode, ready=ready)
