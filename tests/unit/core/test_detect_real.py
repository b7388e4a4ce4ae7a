"""netopt.core.detect on real series from ../shared/data (skipped with the reason if absent):

- IBM Cloud's weekly inter-region RTTs (30-day averages, integer ms): the level shifts its
  README documents are found within the ~4 points over which the overlapping windows smear
  them, and the other alarms mostly mark real level changes (≥ 5 ms between the medians
  around them), under one per pair-year.
- The Seattle frames (RTTs between personal devices; a measurement is held for ~5 frames):
  the visible level shifts (a tight stretch, then another tight stretch ≥ 30 ms and 30 %
  away) are found within two frames, and stretches of 30 frames within ±5 % raise few alarms.

Configs: one sample per week (IBM) or frame (Seattle) is the "steady rate"; the false-alarm
rate is set for that cadence, and IBM's floor is 5 ms (averages over 30 days in whole ms).
"""

from __future__ import annotations

import csv
import lzma
from collections import defaultdict

import numpy as np
import pytest

from netopt.core.detect import ChangeDetector, DetectorConfig
from tests.shared_data import shared_path

WEEK_PPS = 1 / (7 * 86400)
IBM = DetectorConfig(
    steady_pps=WEEK_PPS, false_alarm_every_h=5 * 365 * 24, scale_floor_ms=5.0, min_reference=4
)


@pytest.fixture(scope="module")
def ibm() -> dict[tuple[str, str], list[tuple[str, float]]]:
    path = shared_path("data/ibm_cloud_interregion_rtt_weekly_2023-2026.csv")
    series: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    with path.open() as f:
        for row in sorted(csv.DictReader(f), key=lambda r: r["window_end"]):
            key = (row["src_region"], row["dst_region"])
            series[key].append((row["window_end"], float(row["avg_rtt_ms"])))
    return dict(series)


def _alarms(series: list[tuple[str, float]]) -> list[tuple[int, str, str]]:
    det = ChangeDetector(IBM)
    out = []
    for i, (date, rtt) in enumerate(series):
        v = det.update(float(i), 1, [rtt])
        if v.state == "changed":
            out.append((i, date, str(v.statistic)))
    return out


@pytest.mark.parametrize(
    ("src", "dst", "direction", "since", "until"),
    [
        ("Frankfurt", "Sao Paulo", "rtt_up", "2023-04-09", "2023-04-30"),  # 196 → 238
        ("Frankfurt", "Sao Paulo", "rtt_down", "2023-05-07", "2023-05-28"),  # → 195
        ("Dallas", "Osaka", "rtt_up", "2023-06-18", "2023-07-09"),  # 143 → 185
        ("Frankfurt", "Toronto", "rtt_up", "2023-04-01", "2023-04-30"),  # 93 → 132
        ("Frankfurt", "Toronto", "rtt_down", "2023-05-01", "2023-05-31"),  # → 93
    ],
)
def test_the_documented_ibm_level_shifts_are_found(
    ibm: dict[tuple[str, str], list[tuple[str, float]]],
    src: str,
    dst: str,
    direction: str,
    since: str,
    until: str,
) -> None:
    found = [a for a in _alarms(ibm[(src, dst)]) if since <= a[1] <= until]
    assert [a[2] for a in found] == [direction]


def test_ibm_alarms_mark_real_level_changes(
    ibm: dict[tuple[str, str], list[tuple[str, float]]],
) -> None:
    real = total = points = 0
    for series in ibm.values():
        rtt = np.array([v for _, v in series])
        points += len(rtt)
        for i, _, _ in _alarms(series):
            before = np.median(rtt[max(0, i - 10) : max(1, i - 2)])
            after = np.median(rtt[i : i + 4])
            real += bool(abs(after - before) >= 5.0)
            total += 1
    assert total > 50  # the series do move
    assert real >= 0.8 * total  # measured: 210 of 243
    assert total / (points / 52) < 1.0  # alarms per pair-year; measured 0.66


@pytest.fixture(scope="module")
def seattle() -> np.ndarray:
    path = shared_path("data/seattle_rtt_99nodes_688frames.tsv.xz")
    with lzma.open(path, "rt") as f:
        return np.loadtxt(f).reshape(688, 99, 99) * 1000.0  # seconds → ms


def _tight(window: np.ndarray, share: float, floor_ms: float) -> tuple[bool, float]:
    m = float(np.median(window))
    return bool(np.all(np.abs(window - m) <= max(floor_ms, share * m))), m


def test_seattle_visible_shifts_are_found_and_quiet_stretches_stay_quiet(
    seattle: np.ndarray,
) -> None:
    cfg = DetectorConfig(steady_pps=1.0, false_alarm_every_h=1000 / 3600)
    pairs = [(i, j) for i in range(99) for j in range(99) if i != j][::80]
    shifts = found = quiet = quiet_alarms = 0
    for i, j in pairs:
        x = seattle[:, i, j]  # 0 = missing: a lost packet
        det = ChangeDetector(cfg)
        alarms = [
            f
            for f, rtt in enumerate(x)
            if det.update(float(f), 1, [rtt] if rtt > 0 else []).state == "changed"
        ]
        for t in range(8, len(x) - 8):
            ok_before, before = _tight(x[t - 8 : t], 0.1, 10.0)
            ok_after, after = _tight(x[t : t + 8], 0.1, 10.0)
            moved = abs(after - before) >= max(30.0, 0.3 * before)
            if ok_before and ok_after and min(before, after) > 0 and moved:
                shifts += 1
                found += any(0 <= f - t <= 2 for f in alarms)
        calm = np.zeros(len(x), dtype=bool)
        for t in range(len(x) - 30):
            if (x[t : t + 30] > 0).all() and _tight(x[t : t + 30], 0.05, 5.0)[0]:
                calm[t + 4 : t + 30] = True
        quiet += int(calm.sum())
        quiet_alarms += sum(bool(calm[f]) for f in alarms)
    assert shifts > 100 and quiet > 1000
    assert found >= 0.9 * shifts  # measured: 97 %
    assert quiet_alarms <= 0.03 * quiet  # measured: 1.6 %
