"""The adaptive probe rate: a low steady rate everywhere, more where a route is in doubt.

detect (each path's `Verdict`) → **budget** → schedule (packets/s per path) → probe. Pure:
no I/O, no clock, deterministic; `now` is an argument and the escalations in force are carried
from one `allocate` call to the next in the `Allocation` it returns.

Rules (`BudgetPolicy` holds the numbers):

1. Every probed path (src, dst) gets `steady_pps`.
2. A path of the route in force escalates to `escalated_pps` at once on its own signal: a jump
   (a packet many σ̂ off its baseline) for `confirm_s` — long enough for a burst or two to
   confirm it (a second packet beyond the clip is an alarm) or not —, lost packets that are
   news (the caller decides which: `netopt.daemon.rates`), doubt ≥ `escalate_doubt` or a
   detector alarm for `relax_s`. An alarm also puts its region in doubt, as does the caller
   naming the region in `regions_in_doubt` (a decider challenge pending, say): then every path
   of the region, the route's and its candidates', is escalated. A path off the route does not
   escalate on its own signals: nothing is decided on it until its region is in doubt (its
   getting worse changes no route; its getting better is the windows' to prove). A path whose
   detector is still learning its baseline escalates, on the route or not, for `confirm_s` at
   a time, until it has one (a few bursts once, at start-up or when the path is new): an
   impairment in the first seconds is then seen against a baseline, not learnt as one.
3. An escalation lasts until its `confirm_s` or `relax_s` after the signal that started it,
   extended only by an alarm,
   a doubt past `escalate_doubt` that is not a jump or a loss (evidence building up), a signal
   more doubtful than any before it, or the caller naming the region again; then the
   path is back to steady. (Renewing on every signal would keep a spiky path escalated: at
   25 packets/s its 1 % of spikes come faster than any relax time.)
4. The site's budget (`budget_pps`, or `budget_per_path_pps` per path but at least
   `budget_min_pps`) is never exceeded. Steady rates come first; if they do not fit they are
   cut evenly, down to `floor_pps` (and if even the floors do not fit, below it:
   `Allocation.floors_fit` is False and `budget_problem` says so, for the config validator).
   What is left goes to escalated paths, most doubtful first (ties: the stronger reason — a
   path's own alarm, jump, loss or doubt before a candidate's — then region and path names);
   the one it runs out on gets the rest, those after it stay at steady.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar

from netopt.core.detect import Verdict

Key = tuple[str, str]
Reason = Literal["alarm", "jump", "loss", "doubt", "learning", "candidate"]
_K = TypeVar("_K", str, Key)
_RANK: dict[Reason, int] = {
    "alarm": 5, "jump": 4, "loss": 3, "doubt": 2, "learning": 1, "candidate": 0,
}  # fmt: skip


@dataclass(frozen=True)
class BudgetPolicy:
    """Probe rates in packets per second per path, and the site's budget."""

    steady_pps: float = 1.0
    escalated_pps: float = 25.0
    floor_pps: float = 0.2
    confirm_s: float = 0.5
    relax_s: float = 2.0
    escalate_doubt: float = 0.5
    budget_pps: float | None = None
    budget_per_path_pps: float = 2.0
    budget_min_pps: float = 50.0

    def __post_init__(self) -> None:
        if not 0 < self.floor_pps <= self.steady_pps <= self.escalated_pps:
            raise ValueError("probe rates need 0 < floor_pps <= steady_pps <= escalated_pps")
        if self.relax_s < 0 or self.confirm_s < 0 or not 0 < self.escalate_doubt <= 1:
            raise ValueError("relax_s, confirm_s must be >= 0 and escalate_doubt in (0, 1]")
        if self.budget_pps is not None and self.budget_pps <= 0:
            raise ValueError(f"budget_pps must be > 0, got {self.budget_pps}")
        if self.budget_per_path_pps <= 0 or self.budget_min_pps < 0:
            raise ValueError("budget_per_path_pps must be > 0 and budget_min_pps >= 0")

    def site_budget_pps(self, paths: int) -> float:
        if self.budget_pps is not None:
            return self.budget_pps
        return max(self.budget_per_path_pps * paths, self.budget_min_pps)


def budget_problem(paths: int, policy: BudgetPolicy) -> str | None:
    """Why `paths` paths cannot all be probed at `floor_pps` within the budget, or None."""
    budget = policy.site_budget_pps(paths)
    if paths * policy.floor_pps <= budget:
        return None
    return (
        f"probe budget {budget:g} packets/s cannot give {paths} paths even the floor of "
        f"{policy.floor_pps:g} packets/s each ({paths * policy.floor_pps:g} packets/s): raise "
        f"the budget, lower the floor or probe fewer paths"
    )


@dataclass(frozen=True)
class PathRole:
    """A probed path and the region it serves: on the route in force, or a candidate's."""

    src: str
    dst: str
    region: str
    on_route: bool


@dataclass(frozen=True)
class Signal:
    """What the budget needs from a detector's verdict."""

    doubt: float
    trigger: Literal["alarm", "jump", "loss", "learning"] | None = None

    @classmethod
    def of(cls, verdict: Verdict) -> Signal:
        if verdict.state == "changed":
            return cls(1.0, "alarm")
        if verdict.state == "learning":
            return cls(verdict.doubt, "learning")
        if verdict.jump:
            return cls(verdict.doubt, "jump")
        return cls(verdict.doubt, "loss" if verdict.lost else None)


@dataclass(frozen=True)
class Escalation:
    until_s: float
    reason: Reason
    doubt: float


@dataclass(frozen=True)
class Allocation:
    """Packets/s per path, why each escalated path is, and the escalations still in force."""

    at_s: float
    rates_pps: Mapping[Key, float]
    reasons: Mapping[Key, Reason]  # paths granted more than the steady rate
    paths: Mapping[Key, Escalation] = field(default_factory=dict)  # by a path's own signal
    regions: Mapping[str, Escalation] = field(default_factory=dict)  # regions in doubt
    budget_pps: float = 0.0
    steady_pps: float = 0.0  # after any cut to fit the budget
    floors_fit: bool = True
    starved: tuple[Key, ...] = ()  # escalated paths the budget could not fully serve

    @property
    def total_pps(self) -> float:
        return sum(self.rates_pps.values())


EMPTY = Allocation(at_s=float("-inf"), rates_pps=MappingProxyType({}), reasons={})


def _own(signal: Signal, policy: BudgetPolicy) -> tuple[Reason, float] | None:
    if signal.trigger is not None:
        return signal.trigger, max(signal.doubt, 1.0 if signal.trigger == "alarm" else 0.0)
    if signal.doubt >= policy.escalate_doubt:
        return "doubt", signal.doubt
    return None


def _merge(
    old: Mapping[_K, Escalation],
    new: dict[_K, Escalation],
    now: float,
    always: Iterable[_K] = (),
) -> None:
    """Carry the escalations still in force into `new`. A new signal extends one in force only
    if it is an alarm, a doubt past `escalate_doubt` without a jump or a loss (evidence
    building up), or more doubtful than any before it — else every spike of a spiky path would
    keep it escalated for ever; keys in `always` are renewed on the caller's word."""
    renew = set(always)
    for key, esc in old.items():
        fresh = new.get(key)
        if esc.until_s <= now:
            continue
        extends = fresh is not None and (
            key in renew or fresh.reason in ("alarm", "doubt") or fresh.doubt > esc.doubt
        )
        if fresh is None or not extends:
            new[key] = esc
        elif key not in renew:
            new[key] = Escalation(fresh.until_s, fresh.reason, max(fresh.doubt, esc.doubt))


def _raise(table: dict[str, Escalation], key: str, esc: Escalation) -> None:
    old = table.get(key)
    if old is None or (_RANK[esc.reason], esc.doubt) > (_RANK[old.reason], old.doubt):
        table[key] = esc


def _escalations(
    roles: Iterable[PathRole],
    signals: Mapping[Key, Signal],
    regions_in_doubt: Mapping[str, float],
    now: float,
    policy: BudgetPolicy,
    previous: Allocation,
) -> tuple[dict[Key, Escalation], dict[str, Escalation]]:
    until = now + policy.relax_s
    paths: dict[Key, Escalation] = {}
    regions: dict[str, Escalation] = {}
    for region, doubt in sorted(regions_in_doubt.items()):
        _raise(regions, region, Escalation(until, "doubt", min(1.0, max(0.0, doubt))))
    for role in roles:
        key = (role.src, role.dst)
        signal = signals.get(key)
        learning = signal is not None and signal.trigger == "learning"
        own = _own(signal, policy) if signal is not None and (role.on_route or learning) else None
        if own is None:
            continue
        hold = now + (policy.confirm_s if own[0] in ("jump", "learning") else policy.relax_s)
        esc = Escalation(hold, own[0], min(1.0, own[1]))
        if key not in paths or _RANK[esc.reason] > _RANK[paths[key].reason]:
            paths[key] = esc
        if esc.reason == "alarm":
            _raise(regions, role.region, esc)
    _merge(previous.paths, paths, now)
    _merge(previous.regions, regions, now, always=regions_in_doubt)
    return paths, regions


def _wants(
    roles: Iterable[PathRole],
    paths: Mapping[Key, Escalation],
    regions: Mapping[str, Escalation],
) -> dict[Key, tuple[float, str, Reason]]:
    """Per escalated path: (priority doubt, region, reason) of its strongest escalation."""
    wants: dict[Key, tuple[float, str, Reason]] = {}
    for role in roles:
        key = (role.src, role.dst)
        options: list[tuple[float, str, Reason]] = []
        if key in paths:
            options.append((paths[key].doubt, role.region, paths[key].reason))
        region = regions.get(role.region)
        if region is not None:
            reason: Reason = region.reason if role.on_route else "candidate"
            options.append((region.doubt, role.region, reason))
        for option in options:
            old = wants.get(key)
            if old is None or (option[0], _RANK[option[2]]) > (old[0], _RANK[old[2]]):
                wants[key] = option
    return wants


def _steady(policy: BudgetPolicy, paths: int, budget: float) -> tuple[float, bool]:
    """The steady rate that fits the budget, and whether the floors fit at all."""
    if not paths or policy.steady_pps * paths <= budget:
        return policy.steady_pps, True
    if policy.floor_pps * paths <= budget:
        return max(policy.floor_pps, budget / paths), True
    return budget / paths, False


def allocate(
    roles: Iterable[PathRole],
    signals: Mapping[Key, Signal],
    now: float,
    policy: BudgetPolicy | None = None,
    regions_in_doubt: Mapping[str, float] | None = None,
    previous: Allocation = EMPTY,
) -> Allocation:
    """Packets/s for every path of `roles` at `now` (see the module docstring)."""
    pol = policy or BudgetPolicy()
    roles = sorted(set(roles), key=lambda r: (r.region, r.src, r.dst, r.on_route))
    keys = sorted({(r.src, r.dst) for r in roles})
    budget = pol.site_budget_pps(len(keys))
    steady, floors_fit = _steady(pol, len(keys), budget)
    paths, regions = _escalations(roles, signals, regions_in_doubt or {}, now, pol, previous)
    wants = _wants(roles, paths, regions)
    rates = dict.fromkeys(keys, steady)
    reasons: dict[Key, Reason] = {}
    starved: list[Key] = []
    left = max(0.0, budget - steady * len(keys))
    extra = max(0.0, pol.escalated_pps - steady)
    # most doubtful first; at equal doubt a path's own signal before a candidate's share of
    # its region's (the path that signalled is the one to watch), then region and path names
    order = sorted(wants, key=lambda k: (-wants[k][0], -_RANK[wants[k][2]], wants[k][1], k))
    for key in order:
        grant = min(extra, left)
        left -= grant
        if grant < extra:
            starved.append(key)
        if grant > 0:
            rates[key], reasons[key] = steady + grant, wants[key][2]
    return Allocation(
        now, MappingProxyType(rates), MappingProxyType(reasons), MappingProxyType(paths),
        MappingProxyType(regions), budget, steady, floors_fit, tuple(starved),
    )  # fmt: skip
