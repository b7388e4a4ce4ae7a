"""Time from impairment to the first call on a new PoP: netopt vs Kamailio's own dispatcher.

    sudo .venv/bin/python bench/reroute.py [--trials 10] [--settings tuned|defaults]
                                           [--impairment degraded|dead]

The lab world of tests/lab/test_reroute.py (Lagos's calls enter at the West-African edge
`los`; Kamailio in the core `fra`; a SIPp UAS in every PoP; a SIPp caller in Lagos at 5
calls/s). Each trial degrades lagos–los (+150 ms RTT, 8 % loss; `--impairment dead`: los
stops answering, every link to it losing everything), notes when netopt's route changed and
when the first call was answered by another PoP, then restores and waits for the route to come
back (hold-down 3 s here; flap damping off, since the bench flaps on
purpose). Probes: ICMP, 1 s interval, 3 s window, 2 windows (`--settings tuned`, the
default), or a probe group naming only kind, from and to with no planner/decide keys
(`--settings defaults`: adaptive probing — 1 packet a second, bursts where a route is in
doubt — change detection, 60 s windows; hold-down 3 s and no damping still, for the trials'
sake). `--settings defaults` also prints the packets/s each lagos path was probed at
(netopt_probe_packets_sent_total) over a minute with nothing impaired.

The peer, measured here before (DESIGN.md): Kamailio 5.6's dispatcher never leaves a path with
20 % loss and its latency algorithm needs 11–13 s for +300 ms and ignores < ~200 ms — so for
this impairment (+150 ms, 8 %) it does not move at all; the ratio printed is against the
issue's goal (5 s). Needs root (namespaces); all traffic stays inside the lab (198.18.0.0/15).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--settings", choices=("tuned", "defaults"), default="tuned")
    ap.add_argument("--impairment", choices=("degraded", "dead"), default="degraded")
    args = ap.parse_args()

    import yaml

    from netopt.lab import Lab
    from tests.lab.conftest import lab_skip_reason
    from tests.lab.test_reroute import (
        PROFILE,
        _start_kamailio,
        netopt_config,
        primary,
        wait_for,
    )
    from tests.sip import UAC_XML, Kamailio, Uas, parse_answered, stop

    reason = lab_skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    name = "rrbench"
    rows = []
    with TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        lab = Lab.up(PROFILE, name=name)
        ports = {"fra": 5080, "jnb": 5060, "los": 5060}
        pops = {p: Uas(p, lab.address(p), port, tmp, netns=lab.netns(p))
                for p, port in ports.items()}  # fmt: skip
        kam = Kamailio(tmp, sip_host=lab.address("fra"), sip_port=5060, rpc_port=5071,
                       netns=lab.netns("fra"))  # fmt: skip
        cfg = netopt_config(lab, tmp, kam, ports)
        if args.settings == "defaults":
            del cfg["planner"]
            cfg["probes"] = [{"kind": p["kind"], "from": p["from"], "to": p["to"]}
                             for p in cfg["probes"]]  # fmt: skip
            cfg["decide"] = {}
        cfg["decide"]["hold_down_s"] = 3
        cfg["decide"]["flap_penalty"] = 0  # 20 forced changes would (rightly) be damped
        (tmp / "netopt.yaml").write_text(yaml.safe_dump(cfg))
        api = f"http://{cfg['api']['listen']}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for u in pops.values():
                u.start()
            _start_kamailio(kam)
            serve = [sys.executable, "-m", "netopt", "serve", "--config", str(tmp / "netopt.yaml")]
            err = (tmp / "serve.err").open("w")
            procs.append(subprocess.Popen(serve, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err))
            wait_for(lambda: primary(api) == "los", 40, "lagos routed via los")
            time.sleep(2)
            log = tmp / "uac.log"
            procs.append(lab.popen("lagos", [
                "sipp", "-sf", str(UAC_XML), "-i", lab.address("lagos"), "-p", "5062",
                "-m", str(5 * 30 * args.trials), "-r", "5", "-trace_logs", "-log_file", str(log),
                "-nostdin", "-recv_timeout", "4000", "-s", "netopt", f"{lab.address('fra')}:5060"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            time.sleep(3)
            if args.settings == "defaults":
                steady = _sent(api), time.time()
                time.sleep(60)
                later = _sent(api)
                pps = {d: (n - steady[0].get(d, 0.0)) / (time.time() - steady[1])
                       for d, n in later.items()}  # fmt: skip
                print(
                    "steady packets/s per lagos path: "
                    + " ".join(f"{d}={v:.2f}" for d, v in sorted(pps.items())),
                    flush=True,
                )
            for i in range(args.trials):
                t0 = time.time()
                _impair(lab, args.impairment)
                t_route = wait_for(lambda: primary(api) not in (None, "los"), 30, "a move")
                time.sleep(3)
                t_restore = time.time()
                _impair(lab, None)
                wait_for(lambda: primary(api) == "los", 200, "the route back")
                time.sleep(3)
                rows.append((t0, t_route, t_restore))
                print(f"trial {i + 1}: route changed after {t_route - t0:.2f} s", flush=True)
        finally:
            for p in reversed(procs):
                stop(p)
            kam.stop()
            for u in pops.values():
                u.stop()
            Lab.teardown(name)
        answered = parse_answered(tmp / "uac.log")
    firsts, routes = [], []
    for t0, t_route, t_restore in rows:
        first = next((a.at_unix_s for a in answered
                      if t0 < a.at_unix_s < t_restore and a.pop != "los"), None)  # fmt: skip
        routes.append(t_route - t0)
        if first is not None:
            firsts.append(first - t0)
    print(f"\n{len(rows)} trials ({args.settings}, {args.impairment}); impairment -> netopt "
          f"route change: median "
          f"{statistics.median(routes):.2f} s, max {max(routes):.2f} s")  # fmt: skip
    if firsts:
        med, goal = statistics.median(firsts), 5.0 if args.impairment == "degraded" else 2.0
        peer = (
            "never (does not react to +150 ms / 8 % loss)"
            if args.impairment == "degraded"
            else "only for calls that time out on the dead PoP (failure_route)"
        )
        print(
            f"impairment -> first call on the new PoP ({len(firsts)} trials): median "
            f"{med:.2f} s, max {max(firsts):.2f} s; goal {goal:g} s -> {med / goal:.2f}x of the "
            f"goal; Kamailio dispatcher alone: {peer}"
        )  # fmt: skip
    return 0


def _impair(lab: Any, impairment: str | None) -> None:
    """Apply one trial's impairment to the lab (a `netopt.lab.Lab`; None: restore)."""
    if impairment == "degraded":
        lab.set_link("lagos", "los", delay_ms=78, loss_pct=8)
    elif impairment == "dead":
        for region in ("lagos", "nairobi"):
            lab.set_link(region, "los", loss_pct=100)
    else:
        lab.set_link("lagos", "los", delay_ms=3, loss_pct=0)
        lab.set_link("nairobi", "los", loss_pct=0)


def _sent(api: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.conftest import http_get

    _, text = http_get(api + "/metrics")
    return {
        s.labels["dst"]: float(s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "netopt_probe_packets_sent_total" and s.labels.get("src") == "lagos"
    }


if __name__ == "__main__":
    sys.exit(main())
