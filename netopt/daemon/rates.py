"""Adaptive probe rates: detect (verdicts) + route table → **budget** → schedule and bursts.

The thin shell around `netopt.core.budget.allocate`. The probe groups whose `rate` is adaptive
(the default for a group that names neither `count` nor `interval_s`) are probed at the rate
the allocation gives each path, per probing site within its budget (`budget_pps`, or 2
packets/s per path but at least 50): 1 packet a second steady — the scheduler's round, one
packet on the job's grid — and, on a path whose verdict shows a jump, a lost packet that is
news, an alarm or doubt (and on every path of its region when it carries the route in force),
the rest of the escalated rate at once as bursts (netopt.daemon.bursts: 5 packets every
~0.2 s, overlapping); back to steady `relax_s` after the last signal.

`ProbeRates.update(now, verdicts, table)` returns what changed: the scheduler's jobs when a
steady round shape changed (a budget cut), the bursts' extra rates when an escalation
started, changed or ended; and keeps `netopt_probe_rate_packets_per_second{src,dst}` (steady
plus extra) and `netopt_probe_escalations_total{src,dst,reason}` current. Fixed groups keep
their rounds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import get_args

from netopt.config import Config
from netopt.core.budget import EMPTY, Allocation, BudgetPolicy, PathRole, Reason, Signal, allocate
from netopt.core.decide import RouteTable
from netopt.core.detect import Level, Verdict
from netopt.daemon.metrics import Metrics
from netopt.daemon.probing import ProbeJob, jobs_from_config

Key = tuple[str, str]
Extra = Mapping[str, tuple[ProbeJob, float]]  # job id → (steady job, extra packets/s)
_SLACK_S = 0.05  # between a round's timeout and the next round
MIN_EXTRA_PPS = 0.05  # below this an allocation's extra over the steady round is not burst
# a steady round's timeout on a path whose usual RTT is short (netopt.daemon.rates.steady_timeout)
STEADY_TIMEOUTS_S = (0.15, 0.25)
YOUNG_PACKETS = 50  # an accepted level on fewer packets keeps its path escalated
NEWS_CHANCE = 0.01  # lost packets are news when the path's own loss explains them less often
REASONS: tuple[Reason, ...] = get_args(Reason)


def round_count(rate_pps: float, job: ProbeJob) -> int:
    """Packets per round for `rate_pps` at the job's interval: as many as end, with their
    timeout, before the next round starts (at least 1)."""
    wanted = max(1, round(rate_pps * job.interval_s))
    spacing = job.options.interval_s
    room = job.interval_s - job.options.timeout_s - _SLACK_S
    fit = wanted if spacing <= 0 else max(1, math.floor(room / spacing) + 1)
    return min(wanted, fit)


def signal_of(verdict: Verdict) -> Signal:
    """`Signal.of`, with two rules of the daemon's:

    - lost packets are a trigger only when they are news: when the path's accepted loss p
      alone would lose that many packets in a row (`lost_run`) less than once in
      1/`NEWS_CHANCE` tries (p^run < 1 %). On a path with 0.3 % loss one lost packet is news,
      at 2 % two in a row, at 10 % three: losses that are the path's baseline do not keep it
      escalated, a dead path is found by its first or second packet, and a real rise in its
      loss shows as the loss CUSUM's doubt and alarm, which still escalate it;
    - an accepted level that rests on fewer than `YOUNG_PACKETS` packets (just after a change:
      the post-change loss is being learnt) is full doubt, which keeps the path escalated until
      the level is worth deciding on; a dead path's is not (nothing to learn)."""
    signal = Signal.of(verdict)
    level = verdict.level
    young = verdict.state not in ("learning", "changed") and level.packets < YOUNG_PACKETS
    if young and level.loss_ratio < 1.0:
        return Signal(1.0)
    if signal.trigger == "loss":
        p = min(max(level.loss_ratio, 1e-6), 1.0)
        if p ** max(verdict.lost_run, 1) >= NEWS_CHANCE:
            return Signal(signal.doubt)
    return signal


def steady_timeout(level: Level, configured_s: float, current_s: float | None = None) -> float:
    """The timeout of a path's steady one-packet round: the configured one, or a shorter step
    of `STEADY_TIMEOUTS_S` when the accepted level says a reply never takes that long
    (2·RTT + 8·jitter + 50 ms). A lost steady packet is then known — and its path bursting —
    in 150 ms instead of 500 on a path of a few ms: a dead PoP is left ~0.35 s sooner. A reply
    later than that is counted lost in the steady round (the bursts that follow wait the
    configured timeout and measure the path as it is). Hysteresis: a shorter step is taken
    only below 80 % of it, so a level wandering at a step's edge does not reschedule."""
    if level.rtt_ms is None or level.loss_ratio >= 1.0:
        return configured_s
    want_s = (2.0 * level.rtt_ms + 8.0 * (level.jitter_ms or 0.0)) / 1000.0 + 0.05
    for step in STEADY_TIMEOUTS_S:
        if step >= configured_s:
            break
        keep = current_s is not None and step >= current_s
        if want_s <= (step if keep else 0.8 * step):
            return step
    return configured_s


class ProbeRates:
    """The adaptive jobs' current rates and the allocation behind them, per probing site."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.metrics = metrics
        self.allocations: dict[str, Allocation] = {}
        self._table: RouteTable | None = None
        self._roles_of: dict[str, list[PathRole]] = {}  # per site, for `_table`
        self._busy: set[str] = set()  # sites with an escalation in force
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self.regions = config.region_ids
        self.base = {j.job_id: j for j in jobs_from_config(config)}
        adaptive = {
            f"{p.kind}:{p.from_}->{t}"
            for p in config.probes
            if p.adaptive and p.kind in config.planner.kinds
            for t in p.to
        }
        self.adaptive = {i: j for i, j in self.base.items() if i in adaptive}
        self.policies = {s.id: BudgetPolicy(budget_pps=s.budget_pps) for s in config.sites()}
        self._timeout: dict[str, float] = {}  # job id → its steady round's timeout, when shorter
        self._job_of = {(j.src, j.dst): i for i, j in self.adaptive.items()}
        # asked on every round (`wanted`): one number, not a pass over every site's policy
        self._escalate_doubt = min((p.escalate_doubt for p in self.policies.values()), default=1)
        self.shaped: dict[str, ProbeJob] = {
            i: self._shape(j, self.policies[j.src].steady_pps) if i in self.adaptive else j
            for i, j in self.base.items()
        }
        self.allocations = {s: a for s, a in self.allocations.items() if s in self.policies}
        self.extra: Extra = MappingProxyType({})  # nothing escalated until the next update
        self._table = None  # the roles are worked out again on the next update
        self._jobs_of: dict[str, list[tuple[str, ProbeJob]]] = {}
        for job_id, job in self.adaptive.items():
            self._jobs_of.setdefault(job.src, []).append((job_id, job))
        for job in self.shaped.values():
            self._export(job)
            if job.job_id in self.adaptive:
                for reason in REASONS:
                    self.metrics.probe_escalations.labels(job.src, job.dst, reason)

    def wanted(self, verdict: Verdict, table: RouteTable) -> bool:
        """Is a reallocation due? When the verdict is a signal, an escalation is in force (it
        may relax), or the route table changed (paths join or leave the routes in force).
        Never without adaptive jobs: there is nothing to reallocate."""
        if not self.adaptive:
            return False
        if table is not self._table:
            return True
        if verdict.state in ("changed", "learning") or verdict.jump or verdict.lost:
            return True
        if verdict.doubt >= self._escalate_doubt:
            return True
        return bool(self._busy)

    def jobs(self) -> list[ProbeJob]:
        return list(self.shaped.values())

    def _shape(self, job: ProbeJob, rate_pps: float, *, steady: bool = True) -> ProbeJob:
        """`job` at `rate_pps`: its steady round (with its steady timeout), or the job a burst
        is shaped from (`steady` False: the configured timeout)."""
        timeout_s = self._timeout.get(job.job_id, job.options.timeout_s) if steady else None
        options = dataclasses.replace(job.options, count=round_count(rate_pps, job),
                                      timeout_s=timeout_s or job.options.timeout_s)  # fmt: skip
        return dataclasses.replace(job, options=options)

    def retime(self, src: str, dst: str, level: Level) -> bool:
        """Follow the path's accepted level with its steady round's timeout
        (`steady_timeout`); True when a steady round shape changed (re-sync the scheduler)."""
        job_id = self._job_of.get((src, dst))
        if job_id is None:
            return False
        job = self.adaptive[job_id]
        current = self._timeout.get(job_id, job.options.timeout_s)
        wanted = steady_timeout(level, job.options.timeout_s, current)
        if wanted == current:
            return False
        if wanted < job.options.timeout_s:
            self._timeout[job_id] = wanted
        else:
            self._timeout.pop(job_id, None)
        old = self.shaped[job_id]
        self.shaped[job_id] = self._shape(job, old.options.count / old.interval_s)
        return True

    def _export(self, job: ProbeJob) -> None:
        pps = job.options.count / job.interval_s
        self.metrics.probe_rate.labels(job.src, job.dst).set(pps)

    def _roles(self, table: RouteTable) -> dict[str, list[PathRole]]:
        hops = {
            frozenset(h)
            for e in table
            if e.route is not None
            for h in zip(e.route.path, e.route.path[1:], strict=False)
        }
        by_site: dict[str, list[PathRole]] = {}
        for job in self.adaptive.values():
            region = job.src if job.src in self.regions else job.dst
            on_route = frozenset((job.src, job.dst)) in hops
            by_site.setdefault(job.src, []).append(PathRole(job.src, job.dst, region, on_route))
        return by_site

    def update(
        self,
        now: float,
        verdicts: Mapping[Key, Verdict],
        key_of: Callable[[str, str], Key],
        table: RouteTable,
        touched: Iterable[Key] | None = None,
    ) -> Reshaped:
        """Reallocate with the verdicts newer than each site's last allocation: every site on a
        new route table (or `touched` None), else the sites of the `touched` paths (src, dst)
        and those with an escalation in force (so it can relax) — a verdict costs the paths of
        its site, not of every site."""
        if table is not self._table:
            self._table, self._roles_of, sites = table, self._roles(table), None
        elif touched is not None:
            sites = {src for src, _ in touched} | self._busy
        else:
            sites = None
        changed, extra = False, dict(self.extra)
        for site, roles in self._roles_of.items():
            if sites is not None and site not in sites:
                continue
            previous = self.allocations.get(site, EMPTY)
            signals = {}
            for role in roles:
                verdict = verdicts.get(key_of(role.src, role.dst))
                if verdict is not None and verdict.at_s > previous.at_s:
                    signals[(role.src, role.dst)] = signal_of(verdict)
            alloc = allocate(roles, signals, now, self.policies[site], previous=previous)
            self.allocations[site] = alloc
            if alloc.paths or alloc.regions:
                self._busy.add(site)
            else:
                self._busy.discard(site)
            for key, reason in alloc.reasons.items():
                if previous.reasons.get(key) is None:
                    self.metrics.probe_escalations.labels(*key, reason).inc()
            changed |= self._reshape(alloc, self._jobs_of.get(site, []), extra)
        moved = extra != self.extra
        self.extra = MappingProxyType(extra)
        return Reshaped(self.jobs() if changed else None, self.extra if moved else None)

    def _reshape(
        self,
        alloc: Allocation,
        jobs: list[tuple[str, ProbeJob]],
        extra: dict[str, tuple[ProbeJob, float]],
    ) -> bool:
        """The scheduler's steady shapes and the bursts' extra rates of a site's `jobs` from
        its `alloc`; whether a steady shape changed."""
        changed = False
        for job_id, job in jobs:
            rate = alloc.rates_pps.get((job.src, job.dst))
            if rate is None:
                continue
            shaped = self._shape(job, alloc.steady_pps)
            steady = shaped.options.count / shaped.interval_s
            more = rate - steady
            if more > MIN_EXTRA_PPS:
                extra[job_id] = (self._shape(job, alloc.steady_pps, steady=False), more)
            else:
                extra.pop(job_id, None)
            if shaped != self.shaped[job_id]:
                self.shaped[job_id] = shaped
                changed = True
            self.metrics.probe_rate.labels(job.src, job.dst).set(steady + max(0.0, more))
        return changed


@dataclass(frozen=True)
class Reshaped:
    """What an update changed: the scheduler's jobs (None: unchanged) and the bursts' extra
    rates (None: unchanged)."""

    jobs: list[ProbeJob] | None
    extra: Extra | None
