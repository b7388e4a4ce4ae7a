"""Adaptive probe rates: detect (verdicts) + route table → **budget** → schedule (round shapes).

The thin shell around `netopt.core.budget.allocate`. The probe groups whose `rate` is adaptive
(the default for a group that names neither `count` nor `interval_s`) are probed at the rate
the allocation gives each path, per probing site within its budget (`budget_pps`, or 2
packets/s per path but at least 50): 1 packet a second steady, up to the escalated rate (rounds
of many packets 20 ms apart, as many as fit in the interval before the timeout) at once on a
path whose verdict shows a jump, a lost packet, an alarm or doubt, and on every path of its
region when it carries the route in force; back to steady `relax_s` after the last signal.

`ProbeRates.update(now, verdicts, table)` returns the probe jobs with their new round shapes
when any changed (the daemon then re-syncs the scheduler), and keeps
`netopt_probe_rate_packets_per_second{src,dst}` and
`netopt_probe_escalations_total{src,dst,reason}` current. Fixed groups keep their rounds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import get_args

from netopt.config import Config
from netopt.core.budget import EMPTY, Allocation, BudgetPolicy, PathRole, Reason, Signal, allocate
from netopt.core.decide import RouteTable
from netopt.core.detect import Verdict
from netopt.daemon.metrics import Metrics
from netopt.daemon.probing import ProbeJob, jobs_from_config

Key = tuple[str, str]
_SLACK_S = 0.05  # between a round's timeout and the next round
NEWS_LOSS_RATIO = 0.01  # a lost packet is news on a path whose accepted loss is below this
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
    """`Signal.of`, except that a lost packet is a trigger only on a path whose accepted loss is
    below `NEWS_LOSS_RATIO`: on a lossy path losses are its baseline, and escalating on each
    would keep it escalated for ever; a real rise in its loss shows as the loss CUSUM's doubt
    and alarm, which still escalate it."""
    signal = Signal.of(verdict)
    if signal.trigger == "loss" and verdict.level.loss_ratio >= NEWS_LOSS_RATIO:
        return Signal(signal.doubt)
    return signal


class ProbeRates:
    """The adaptive jobs' current rates and the allocation behind them, per probing site."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.metrics = metrics
        self.allocations: dict[str, Allocation] = {}
        self._table: RouteTable | None = None
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
        # asked on every round (`wanted`): one number, not a pass over every site's policy
        self._escalate_doubt = min((p.escalate_doubt for p in self.policies.values()), default=1)
        self.shaped: dict[str, ProbeJob] = {
            i: self._shape(j, self.policies[j.src].steady_pps) if i in self.adaptive else j
            for i, j in self.base.items()
        }
        self.allocations = {s: a for s, a in self.allocations.items() if s in self.policies}
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
        if verdict.state == "changed" or verdict.jump or verdict.lost:
            return True
        if verdict.doubt >= self._escalate_doubt:
            return True
        return any(a.reasons for a in self.allocations.values())

    def jobs(self) -> list[ProbeJob]:
        return list(self.shaped.values())

    def _shape(self, job: ProbeJob, rate_pps: float) -> ProbeJob:
        options = dataclasses.replace(job.options, count=round_count(rate_pps, job))
        return dataclasses.replace(job, options=options)

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
    ) -> list[ProbeJob] | None:
        """Reallocate with the verdicts newer than each site's last allocation; the jobs when a
        round shape changed, else None."""
        changed, self._table = False, table
        for site, roles in self._roles(table).items():
            previous = self.allocations.get(site, EMPTY)
            signals = {}
            for role in roles:
                verdict = verdicts.get(key_of(role.src, role.dst))
                if verdict is not None and verdict.at_s > previous.at_s:
                    signals[(role.src, role.dst)] = signal_of(verdict)
            alloc = allocate(roles, signals, now, self.policies[site], previous=previous)
            self.allocations[site] = alloc
            for key, reason in alloc.reasons.items():
                if previous.reasons.get(key) is None:
                    self.metrics.probe_escalations.labels(*key, reason).inc()
            changed |= self._reshape(alloc)
        return self.jobs() if changed else None

    def _reshape(self, alloc: Allocation) -> bool:
        changed = False
        for job_id, job in self.adaptive.items():
            rate = alloc.rates_pps.get((job.src, job.dst))
            if rate is None:
                continue
            shaped = self._shape(job, rate)
            if shaped != self.shaped[job_id]:
                self.shaped[job_id] = shaped
                self._export(shaped)
                changed = True
        return changed
