"""When a detected change is evidence enough: detect → **evidence** → plan → decide.

The detector (`netopt.core.detect`) accepts a change on a path after a few packets; the window
stats (`netopt.core.window`) average a minute of rounds. This module combines them, pure (no
I/O, no clock; `now` is an argument):

- `PathChanges` keeps one `ChangeDetector` per path, keyed the way the planner sees it
  (region → PoP: a PoP → region measurement is turned round, RTT being symmetric), and the
  latest change each accepted (`Accepted`): when and by which statistic it alarmed, and a
  live level — the detector's current estimate of the post-change regime, updated by every
  round until the next alarm (the post-change packets keep arriving; a snapshot taken at the
  alarm would rest on two of them for a whole window).
- `overlay(stats, accepted, now, window_s)`: the path stats for the planner. A path whose
  detector accepted a change less than a window ago is planned with the accepted level — for
  `rtt_up`/`rtt_down`/`loss` its RTT, jitter and loss with the packets behind that loss as
  `samples` (so the loss-noise test weighs it for what it is), 100 % loss for `dead` —
  instead of a window that still mixes the old level in. A change back to life (`alive`)
  overlays nothing: the window, whose loss still counts the outage, brings the route back
  the slow way, through the decider's margin and windows.
- `incumbent_changed(path, accepted, since)`: did a path of the route in force accept a change
  after `since` (when that route was chosen)? The decider then takes the challenge as proven
  by the detector: the alarm's false-alarm rate (one per path a day at the defaults) replaces
  the windows and the loss-noise test, so the challenger needs only to beat the incumbent by
  the margin on the accepted levels. Hold-down and flap damping still apply. Noise that the
  detector accepts as a change (rare by construction) yields a level close to the old one,
  which beats nothing by the margin: equal routes still never switch.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from netopt.core.detect import ChangeDetector, DetectorConfig, Level, Statistic, Verdict
from topology.planner import PathStats

Key = tuple[str, str]
_WORSE = frozenset({"rtt_up", "loss", "dead"})


@dataclass(frozen=True)
class Accepted:
    """A change a path's detector accepted: when, which statistic, and the level since (live:
    `PathChanges` replaces it with each round's until the next alarm)."""

    at_s: float
    statistic: Statistic
    level: Level


class PathChanges:
    """One `ChangeDetector` per path (planner orientation), and each path's latest change."""

    def __init__(self, regions: Iterable[str], config: DetectorConfig | None = None) -> None:
        self.regions = frozenset(regions)
        self.config = config or DetectorConfig()
        self.detectors: dict[Key, ChangeDetector] = {}
        self.accepted: dict[Key, Accepted] = {}
        self.last: dict[Key, Verdict] = {}

    def key(self, src: str, dst: str) -> Key:
        """The planner's orientation of a measured pair: region first."""
        return (dst, src) if src not in self.regions and dst in self.regions else (src, dst)

    def update(
        self,
        src: str,
        dst: str,
        now: float,
        sent: int,
        rtts_ms: Sequence[float],
        *,
        per_packet: bool = True,
    ) -> Verdict:
        """Feed one round of the path src → dst; returns the detector's verdict. A new alarm
        is a new `Accepted`; any other round moves the latest one's level. `per_packet`
        False: the RTTs stand for a round known by its summary (`round_rtts`), whose jitter
        the detector cannot see: the accepted level then carries none (the window's stays)."""
        key = self.key(src, dst)
        detector = self.detectors.get(key)
        if detector is None:
            detector = self.detectors[key] = ChangeDetector(self.config)
        verdict = detector.update(now, sent, rtts_ms)
        self.last[key] = verdict
        level = verdict.level if per_packet else dataclasses.replace(verdict.level, jitter_ms=None)
        change = self.accepted.get(key)
        if verdict.state == "changed" and verdict.statistic is not None:
            self.accepted[key] = Accepted(now, verdict.statistic, level)
        elif change is not None and change.level != level:
            self.accepted[key] = dataclasses.replace(change, level=level)
        return verdict

    def reconfigure(self, regions: Iterable[str], paths: Iterable[Key]) -> None:
        """New regions; detectors of paths no longer probed are dropped."""
        self.regions = frozenset(regions)
        keep = {self.key(s, d) for s, d in paths}
        for table in (self.detectors, self.accepted, self.last):
            for key in [k for k in table if k not in keep]:
                del table[key]


def round_rtts(received: int, rtt_p50_ms: float | None) -> list[float]:
    """The RTTs to feed for a round known only by its summary (an agent's, or from the store):
    its median once per packet that came back."""
    if rtt_p50_ms is None or received <= 0:
        return []
    return [rtt_p50_ms] * received


def _overlaid(s: PathStats, change: Accepted) -> PathStats:
    level = change.level
    if change.statistic == "dead":
        return dataclasses.replace(s, loss_pct=100.0)
    if change.statistic == "alive":
        return s
    loss_pct = min(100.0, max(0.0, 100.0 * level.loss_ratio))
    s = dataclasses.replace(s, loss_pct=loss_pct, samples=max(1, level.packets))
    if level.rtt_ms is not None:
        s = dataclasses.replace(s, rtt_ms=level.rtt_ms)
    if level.jitter_ms is not None:
        s = dataclasses.replace(s, jitter_ms=level.jitter_ms)
    return s


def overlay(
    stats: Iterable[PathStats], accepted: Mapping[Key, Accepted], now: float, window_s: float
) -> list[PathStats]:
    """The planner's path stats: a change accepted less than `window_s` ago replaces what the
    window says of that statistic (see the module docstring)."""
    out = []
    for s in stats:
        change = accepted.get((s.src, s.dst))
        if change is not None and now - change.at_s < window_s:
            s = _overlaid(s, change)
        out.append(s)
    return out


def incumbent_changed(path: Sequence[str], accepted: Mapping[Key, Accepted], since: float) -> bool:
    """Did a hop of `path` (a route's sites in order) accept a change after `since`? Only
    changes for the worse count (RTT up, loss, dead): a path that got better is no reason to
    leave it."""
    for hop in itertools.pairwise(path):
        for key in (hop, (hop[1], hop[0])):
            change = accepted.get(key)
            if change is not None and change.at_s > since and change.statistic in _WORSE:
                return True
    return False


def proof(accepted: Mapping[Key, Accepted]) -> Callable[[Sequence[str], float], bool]:
    """`incumbent_changed` over `accepted`: the decider's `proven` callback."""
    return lambda path, since: incumbent_changed(path, accepted, since)
