"""Change detection vs today's fixed windows: delay (packets, seconds) and false alarms.

    .venv/bin/python bench/detect.py [--trials 30] [--hours 24] [--shared ../shared]
        [--only-levels] [--change-prior-packets W]

Pure simulation, no network: seeded synthetic paths (tests/unit/core/paths.py: 40 ms, lognormal
queueing, optional 1 % Pareto spikes, 0.3 % loss), impaired at a random instant after 600 s of
steady probing by +150 ms, 8 % loss, both, or death. Three ways to notice:

- `detect@1`: netopt.core.detect at the steady rate alone (1 packet/s).
- `detect+esc`: the same, with the rate from netopt.core.budget: 1 packet/s, 25 packets/s from
  the first jump, lost packet or doubt, relaxed 2 s later unless the doubt grew.
- `window`: today's rule, re-implemented on the same packets: rounds of 5 packets each second,
  a 60 s window (median of round medians, pooled loss), a window counting when its figure has
  moved half the impairment away from the pre-change level (an idealised margin: no MOS, no
  noise test), the change accepted on the 3rd counted window, counted windows ≥ 20 s apart
  (`evidence_s` = window_s / windows_to_switch); a round with no answer at all is a dead PoP
  at once (`pop_alive`).

Times are packet send times: the loss of a packet is known only at its timeout (≤ 1 s at the
defaults), which neither rule is charged here. Also: false alarms of each rule on stationary
paths (`--hours` of simulated time each, clean and spiky), the steady cost in packets/s, and
the IBM Cloud weekly series (../shared/data, skipped if absent) with the window rule scaled to
weeks (window 12 points, 3 counted, 4 apart).

First, the level table: +150 ms and 8 % loss each way (round trip 1 − (1 − p0)·0.92²) on a
path of 0.3 % and of 2 % round-trip loss, with escalation; the time to the accepted change and
to the first round on which the live accepted level (`netopt.core.evidence.PathChanges`) reads
at least half the true post-change loss, and what it reads then.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netopt.core.budget import EMPTY, BudgetPolicy, PathRole, Signal, allocate  # noqa: E402
from netopt.core.detect import ChangeDetector, DetectorConfig  # noqa: E402
from netopt.core.evidence import PathChanges  # noqa: E402
from tests.unit.core.paths import rtts_ms  # noqa: E402

KEY = ("site", "pop")
ROLE = [PathRole("site", "pop", "region", True)]
WARM_S = 600.0
Packet = Callable[[float], float | None]  # send time → RTT ms, or None if lost


def world(
    rng: np.random.Generator, kind: str, spikes: float, t_change: float,
    loss0: float = 0.003, loss1: float = 0.08,
) -> Packet:  # fmt: skip
    """One path: stationary (round-trip loss `loss0`), then from `t_change` impaired by `kind`
    (loss: `loss1`)."""

    def packet(t: float) -> float | None:
        changed = t >= t_change
        if changed and kind == "dead":
            return None
        loss = loss1 if changed and kind in ("loss", "both") else loss0
        if rng.random() < loss:
            return None
        base = 190.0 if changed and kind in ("jump", "both") else 40.0
        return float(rtts_ms(rng, 1, base_ms=base, spike_share=spikes)[0])

    return packet


def run_detector(
    packet: Packet, until: float, escalate: bool, t_change: float
) -> tuple[float, int] | None:
    """Send time (s) of the packet on which the detector accepts a change after t_change, and
    the packets sent from t_change to it."""
    det, policy = ChangeDetector(), BudgetPolicy()
    t, rate, alloc, sent = 0.0, policy.steady_pps, EMPTY, 0
    while t < until:
        rtt = packet(t)
        v = det.update(t, 1, [] if rtt is None else [rtt])
        sent += t >= t_change
        if v.state == "changed" and t >= t_change:
            return t, sent
        if escalate:
            alloc = allocate(ROLE, {KEY: Signal.of(v)}, t, policy, previous=alloc)
            rate = alloc.rates_pps[KEY]
        t += 1.0 / rate
    return None


def run_level(
    packet: Packet, until: float, t_change: float, truth: float, cfg: DetectorConfig
) -> tuple[float, ...]:
    """With escalation: (seconds, packets) from t_change to the first accepted change, then to
    the first round on which the live accepted level (netopt.core.evidence.PathChanges) has a
    loss of at least half `truth`, and that level's loss then; inf where not reached."""
    changes, policy = PathChanges(["site"], cfg), BudgetPolicy()
    t, rate, alloc, sent = 0.0, policy.steady_pps, EMPTY, 0
    accepted_at: tuple[float, int] | None = None
    while t < until:
        rtt = packet(t)
        v = changes.update("site", "pop", t, 1, [] if rtt is None else [rtt])
        sent += t >= t_change
        change = changes.accepted.get(KEY)
        if change is not None and change.at_s >= t_change:
            if accepted_at is None:
                accepted_at = (t - t_change, sent)
            if change.level.loss_ratio >= truth / 2:
                return (*accepted_at, t - t_change, sent, change.level.loss_ratio)
        alloc = allocate(ROLE, {KEY: Signal.of(v)}, t, policy, previous=alloc)
        rate = alloc.rates_pps[KEY]
        t += 1.0 / rate
    inf = float("inf")
    return (*(accepted_at or (inf, inf)), inf, inf, inf)


def levels(
    loss0: float, spikes: float, trials: int, cfg: DetectorConfig
) -> list[tuple[float, ...]]:
    """+150 ms and 8 % each way on a path of round-trip loss `loss0`: `run_level` per trial."""
    truth = 1 - (1 - loss0) * (1 - 0.08) ** 2
    out = []
    for seed in range(trials):
        t_change = WARM_S + np.random.default_rng(seed).random()
        packet = world(np.random.default_rng(20_000 + seed), "both", spikes, t_change, loss0, truth)
        out.append(run_level(packet, t_change + 120.0, t_change, truth, cfg))
    return out


def run_window(packet: Packet, until: float, t_change: float, rtt0: float, loss0: float,
               kind: str, t0: float = 0.0) -> tuple[float, int] | None:  # fmt: skip
    """Today's rule (see the module docstring): the round time of the accepting window, and
    the packets sent from t_change to it."""
    rounds: list[tuple[float, int, float | None]] = []  # (t, lost, median rtt)
    counted: list[float] = []
    t = t0
    while t < until:
        rtts = [r for r in (packet(t + i * 0.02) for i in range(5)) if r is not None]
        rounds.append((t, 5 - len(rtts), float(np.median(rtts)) if rtts else None))
        if not rtts and t >= t_change:
            return t, 5 * sum(r[0] + 0.1 >= t_change for r in rounds)  # pop_alive
        window = [r for r in rounds if r[0] > t - 60.0]
        meds = [r[2] for r in window if r[2] is not None]
        loss = sum(r[1] for r in window) / (5 * len(window))
        moved = (kind in ("jump", "both") and bool(meds) and np.median(meds) >= rtt0 + 75.0) or (
            kind in ("loss", "both") and loss >= loss0 + 0.0385
        )
        if not moved:
            counted = []  # the challenge ends
        elif not counted or t - counted[-1] >= 20.0:
            counted.append(t)
        if len(counted) >= 3 and t >= t_change:
            return t, 5 * sum(r[0] + 0.1 >= t_change for r in rounds)
        t += 1.0
    return None


def delays(kind: str, spikes: float, trials: int) -> dict[str, list[float]]:
    names = ("detect@1", "detect+esc", "window")
    out: dict[str, list[float]] = {k: [] for n in names for k in (n, n + " packets")}
    for seed in range(trials):
        t_change = WARM_S + np.random.default_rng(seed).random()
        for name in names:
            rng = np.random.default_rng(10_000 + seed)
            packet = world(rng, kind, spikes, t_change)
            until = t_change + 300.0
            if name == "window":
                at = run_window(packet, until, t_change, 42.0, 0.003, kind)
            else:
                at = run_detector(packet, until, name == "detect+esc", t_change)
            out[name].append(np.inf if at is None else at[0] - t_change)
            out[name + " packets"].append(np.inf if at is None else at[1])
    return out


def false_alarms(spikes: float, hours: float) -> tuple[int, int, float]:
    """Alarms of the detector (with escalation) and of the window rule on a stationary path,
    and the detector's average packets/s (the steady cost, escalations included)."""
    rng = np.random.default_rng(99)
    packet = world(rng, "none", spikes, np.inf)
    det, policy, alloc = ChangeDetector(), BudgetPolicy(), EMPTY
    t, n, alarms, until = 0.0, 0, 0, hours * 3600.0
    while t < until:
        rtt = packet(t)
        v = det.update(t, 1, [] if rtt is None else [rtt])
        alarms += v.state == "changed"
        alloc = allocate(ROLE, {KEY: Signal.of(v)}, t, policy, previous=alloc)
        t += 1.0 / alloc.rates_pps[KEY]
        n += 1
    window_alarms = 0
    horizon = min(until, 6 * 3600.0)  # the window rule costs 5 packets a second: 6 h is plenty
    start = 0.0
    while start < horizon:
        at = run_window(packet, horizon, start + 60.0, 42.0, 0.003, "both", t0=start)
        if at is None:
            break
        window_alarms += 1
        start = at[0]
    return alarms, window_alarms, n / until


def ibm(path: Path) -> list[tuple[str, int | None, int | None]]:
    import csv

    want = [("Frankfurt", "Sao Paulo", "2023-04-09", 42.0), ("Dallas", "Osaka", "2023-06-18", 42.0),
            ("Frankfurt", "Toronto", "2023-04-09", 39.0)]  # fmt: skip
    rows = sorted(csv.DictReader(path.open()), key=lambda r: r["window_end"])
    cfg = DetectorConfig(steady_pps=1 / (7 * 86400), false_alarm_every_h=5 * 365 * 24,
                         scale_floor_ms=5.0, min_reference=4)  # fmt: skip
    out = []
    for src, dst, date, shift in want:
        s = [(r["window_end"], float(r["avg_rtt_ms"])) for r in rows
             if (r["src_region"], r["dst_region"]) == (src, dst)]  # fmt: skip
        at = next(i for i, (d, _) in enumerate(s) if d >= date)
        det, found = ChangeDetector(cfg), None
        for i, (_, v) in enumerate(s):
            if det.update(float(i), 1, [v]).state == "changed" and i >= at and found is None:
                found = i - at + 1
        x = np.array([v for _, v in s])
        rtt0, win = float(np.median(x[max(0, at - 8) : at])), None
        counted: list[int] = []
        for i in range(at, len(x)):
            if np.median(x[max(0, i - 11) : i + 1]) >= rtt0 + shift / 2:
                if not counted or i - counted[-1] >= 4:
                    counted.append(i)
            else:
                counted = []
            if len(counted) >= 3:
                win = i - at + 1
                break
        out.append((f"{src}→{dst} {date}", found, win))
    return out


def _fmt(d: dict[str, list[float]], name: str) -> str:
    xs, ps = d[name], d[name + " packets"]
    finite = [x for x in xs if np.isfinite(x)]
    missed = len(xs) - len(finite)
    med = statistics.median(finite) if finite else float("nan")
    pkts = statistics.median([p for p in ps if np.isfinite(p)] or [float("nan")])
    return f"{med:.2f} s / {pkts:.0f} pkts (max {max(finite, default=float('nan')):.2f} s)" + (
        f", {missed} missed" if missed else ""
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--only-levels", action="store_true", help="only the level table")
    ap.add_argument("--change-prior-packets", type=float, default=None,
                    help="the detector's change_prior_packets for the level table")  # fmt: skip
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--shared", type=Path, default=REPO / ".." / "shared", help="../shared")
    args = ap.parse_args()
    cfg, det = DetectorConfig(), ChangeDetector()
    print(f"detector defaults: 1 false alarm / path / {cfg.false_alarm_every_h:g} h at "
          f"{cfg.steady_pps:g} packet/s; h_rtt {det.h_rtt:.2f} σ̂, "
          f"h_loss {det.h_loss:.2f}")  # fmt: skip
    prior = args.change_prior_packets
    level_cfg = DetectorConfig() if prior is None else DetectorConfig(change_prior_packets=prior)
    print(f"\nchange_prior_packets {level_cfg.change_prior_packets:g}")
    print("\n| +150 ms, 8 % each way (detect+esc) | true loss | accepted | level loss ≥ half the "
          "truth | its loss then |")  # fmt: skip
    print("|---|---|---|---|---|")
    for loss0 in (0.003, 0.02):
        for spikes in (0.0, 0.01):
            rows = levels(loss0, spikes, args.trials, level_cfg)
            truth = 1 - (1 - loss0) * (1 - 0.08) ** 2
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            worst = max(r[2] for r in rows)
            missed = sum(not np.isfinite(r[2]) for r in rows)
            print(f"| {loss0:.1%} baseline, {'spiky' if spikes else 'clean'} | {truth:.1%} | "
                  f"{med[0]:.2f} s / {med[1]:.0f} pkts | {med[2]:.2f} s / {med[3]:.0f} pkts "
                  f"(max {worst:.2f} s{f', {missed} missed' if missed else ''}) | "
                  f"{med[4]:.1%} |")  # fmt: skip
    if args.only_levels:
        return 0
    print(
        "\n| impairment | path | detect@1 | detect+esc | window (today) | window / detect+esc (s) |"
    )
    print("|---|---|---|---|---|---|")
    for kind in ("jump", "loss", "both", "dead"):
        for spikes in (0.0, 0.01):
            d = delays(kind, spikes, args.trials)
            ratio = statistics.median(d["window"]) / max(statistics.median(d["detect+esc"]), 1e-3)
            print(f"| {kind} | {'spiky' if spikes else 'clean'} | {_fmt(d, 'detect@1')} | "
                  f"{_fmt(d, 'detect+esc')} | {_fmt(d, 'window')} | {ratio:.1f}× |")  # fmt: skip
    print("\n| stationary path | detector alarms | window alarms | detector packets/s |")
    print("|---|---|---|---|")
    for spikes in (0.0, 0.01):
        a, w, pps = false_alarms(spikes, args.hours)
        print(f"| {'spiky' if spikes else 'clean'}, {args.hours:g} h | {a} | {w} (≤ 6 h) | "
              f"{pps:.2f} (window rule: 5) |")  # fmt: skip
    path = args.shared / "data" / "ibm_cloud_interregion_rtt_weekly_2023-2026.csv"
    if path.exists():
        print("\n| IBM Cloud series (weekly points) | detector | window (12 pts, 3 × 4 apart) |")
        print("|---|---|---|")
        for name, found, win in ibm(path):
            never = "not within the series"
            found_s = f"{found} points" if found else never
            print(f"| {name} | {found_s} | {f'{win} points' if win else never} |")
    else:
        print(f"\n(IBM series skipped: {path} is absent)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
