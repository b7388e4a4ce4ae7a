"""What the rounds so far say: probe → store → **observations** → plan → decide.

The daemon's observation state and its rules, pure (`now` is an argument, no I/O):
- the latest round per path (a replayed older round is not the latest word on its path);
- freshness: per region, when a round of one of its paths last arrived (decide's staleness);
- liveness: a PoP is dead when the latest round of every path towards it got no answer, or,
  where its SIP service is probed (`sip_options`), no path's latest OPTIONS got a 2xx; a
  round of fewer than `dead_packets` packets (an adaptive path's steady single packet) says
  nothing of liveness when it is lost: the change detector calls such a path dead after that
  many packets in a row (netopt.core.evidence);
- the warm-up gate: the first plan waits until every configured path has reported once, or
  `warmup_s` (two probe intervals) has passed, so no region is decided on half its candidates.
Only rounds of the planner's kinds measure a path; `sip_options` rounds always count for
liveness.
"""

from __future__ import annotations

from collections.abc import Iterable

from netopt.store.model import RoundRecord

PathKey = tuple[str, str]  # (src, dst)
SIP_KIND = "sip_options"


class Observations:
    """The latest word on every path, region and PoP."""

    def __init__(
        self,
        regions: Iterable[str],
        kinds: Iterable[str],
        expected: Iterable[PathKey],
        *,
        warmup_s: float,
        started_at: float,
        dead_packets: int = 1,
    ) -> None:
        self.dead_packets = dead_packets
        self.regions = frozenset(regions)
        self.kinds = frozenset(kinds)
        self.warmup_s, self.started_at = warmup_s, started_at
        self.last_round: dict[PathKey, RoundRecord] = {}
        self.last_sip: dict[PathKey, RoundRecord] = {}  # latest sip_options round per path
        self.fresh_at: dict[str, float] = {}  # region → when a round of its paths arrived
        self.unmeasured: set[PathKey] = set(expected)  # configured paths not heard from yet

    def add(self, record: RoundRecord, now: float) -> bool:
        """Take a round in, arrived at `now`; True when it changes what the planner sees."""
        changed = record.kind == SIP_KIND and self._note_sip(record)
        if record.kind not in self.kinds:
            return changed  # stored and exported, but not a measure of the path for planning
        key = (record.src, record.dst)
        last = self.last_round.get(key)
        if last is not None and last.started_wall_ns > record.started_wall_ns:
            return changed  # a replayed old round: not the latest word on the path
        self.last_round[key] = record
        self.unmeasured.discard(key)
        for site in key:
            if site in self.regions and self.fresh_at.get(site, -1e18) < now:
                self.fresh_at[site] = now
        return True

    def measures(self, record: RoundRecord) -> bool:
        """Is this round a measure of its path for planning (one of the planner's kinds)?"""
        return record.kind in self.kinds

    def _note_sip(self, record: RoundRecord) -> bool:
        key = (record.src, record.dst)
        last = self.last_sip.get(key)
        if last is None or last.started_wall_ns <= record.started_wall_ns:
            self.last_sip[key] = record
            return True
        return False

    def pop_alive(self) -> dict[str, bool]:
        """Per PoP: does it answer (paths) and, where probed, does its SIP service (2xx)?"""
        paths, sip = self._answering(self.last_round), self._answering(self.last_sip)
        return {pop: up and sip.get(pop, True) for pop, up in paths.items()}

    def _answering(self, last: dict[PathKey, RoundRecord]) -> dict[str, bool]:
        """Per PoP: did the latest round of any path towards it get an answer?"""
        alive: dict[str, bool] = {}
        for (src, dst), rec in last.items():
            pop = dst if dst not in self.regions else src
            silent = rec.received == 0 and (rec.sent >= self.dead_packets or rec.kind == SIP_KIND)
            alive[pop] = alive.get(pop, False) or not silent
        return alive

    def warming(self, now: float) -> bool:
        """Should planning wait? While a configured path is unheard of, within the warm-up."""
        return bool(self.unmeasured) and now - self.started_at < self.warmup_s

    def reconfigure(
        self, regions: Iterable[str], kinds: Iterable[str], expected: Iterable[PathKey]
    ) -> None:
        """A new config: its regions and kinds; of its paths, those not heard from yet wait."""
        self.regions, self.kinds = frozenset(regions), frozenset(kinds)
        self.unmeasured = {k for k in expected if k not in self.last_round}
