"""Window statistics: the recent rounds of each path → `PathStats` for the planner.

store → **stats** → plan. Kept in memory, fed as rounds arrive, so planning never waits on
the database. RTT is the median of the rounds' medians (robust to one bad round), jitter the
mean of the rounds' RFC 3550 jitter, loss the pooled ratio of all packets in the window, and
`samples` the packets sent in the window (the planner's and decider's measure of how sure the
loss figure is; see topology/uncertainty.py). `sent_total`/`lost_total` count every packet
added since this WindowStats was made, so the decider can pool the evidence that arrived
since a challenge began without counting a packet twice.

A path with no reply in the whole window is reported with 100 % loss and the RTT of its last
answered round (the loss is what counts: the decider withdraws a route over it at once); one
that never answered has no RTT to plan with and is left out. `silent` names both, for metrics.
A path with no round in the window at all (probing stalled) is left out too: the planner lists
it as not measured, which the decider does not mistake for a failure.
"""

from __future__ import annotations

import statistics
from collections import deque

from netopt.store.model import RoundRecord
from topology.planner import PathStats

_Kept = tuple[int, int, int, float | None, float | None]
# (started_wall_ns, sent, received, rtt_p50_ms, jitter_ms): what the stats need of a round. A
# tuple of numbers is dropped from the garbage collector's tracking, so a minute of rounds for
# thousands of paths costs full collections nothing (a RoundRecord each would be traversed).


class WindowStats:
    """Per directed path (src, dst), the rounds whose start lies within `window_s` of now."""

    def __init__(self, window_s: float) -> None:
        self.window_ns = int(window_s * 1e9)
        self._rounds: dict[tuple[str, str], deque[_Kept]] = {}
        self._totals: dict[tuple[str, str], list[int]] = {}  # sent, lost since the start
        self._last_rtt: dict[tuple[str, str], tuple[int, float]] = {}  # newest answered round

    def add(self, record: RoundRecord) -> None:
        """Add a round, kept in start-time order (an agent's replayed rounds arrive late)."""
        key = (record.src, record.dst)
        q = self._rounds.get(key)
        if q is None:
            q = self._rounds[key] = deque()
        total = self._totals.setdefault(key, [0, 0])
        total[0] += record.sent
        total[1] += record.sent - record.received
        t = record.started_wall_ns
        last = self._last_rtt.get(key)
        if record.rtt_p50_ms is not None and (last is None or last[0] <= t):
            self._last_rtt[key] = (t, record.rtt_p50_ms)
        kept = (t, record.sent, record.received, record.rtt_p50_ms, record.jitter_ms)
        if not q or q[-1][0] <= t:
            q.append(kept)
            return
        i = len(q)
        while i > 0 and q[i - 1][0] > t:
            i -= 1
        q.insert(i, kept)

    def _expire(self, now_wall_ns: int) -> None:
        cutoff = now_wall_ns - self.window_ns
        for key in list(self._rounds):
            q = self._rounds[key]
            while q and q[0][0] < cutoff:
                q.popleft()
            if not q:
                del self._rounds[key]

    def last_seen_ns(self, src: str, dst: str) -> int | None:
        q = self._rounds.get((src, dst))
        return q[-1][0] if q else None

    def silent(self, now_wall_ns: int) -> list[tuple[str, str]]:
        """Paths probed within the window that answered no packet at all."""
        self._expire(now_wall_ns)
        return [k for k, q in self._rounds.items() if not any(r[2] for r in q)]

    def stats(self, now_wall_ns: int) -> list[PathStats]:
        """One `PathStats` per path with at least one round in the window."""
        self._expire(now_wall_ns)
        out = []
        for (src, dst), q in self._rounds.items():
            sent = sum(r[1] for r in q)
            received = sum(r[2] for r in q)
            medians = [r[3] for r in q if r[3] is not None]
            jitters = [r[4] for r in q if r[4] is not None]
            if sent == 0:
                continue
            loss_pct = 100.0 * (sent - received) / sent
            totals = self._totals[(src, dst)]
            if not medians:  # nothing came back in the whole window: see `silent`
                last = self._last_rtt.get((src, dst))
                if last is not None:
                    out.append(PathStats(src, dst, last[1], 0.0, 100.0, sent, *totals))
                continue
            out.append(
                PathStats(
                    src=src,
                    dst=dst,
                    rtt_ms=statistics.median(medians),
                    jitter_ms=statistics.fmean(jitters) if jitters else 0.0,
                    loss_pct=loss_pct,
                    samples=sent,
                    sent_total=totals[0],
                    lost_total=totals[1],
                )
            )
        return out
