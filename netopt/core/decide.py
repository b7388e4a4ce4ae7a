"""Stable route decisions: from each new Plan to the RouteTable the proxies are told.

Flow: topology.plan → Plan → **decide** → RouteTable (frozen snapshot) → route API, Kamailio
push, metrics, decision log.

Pure: no I/O, no clock. The daemon owns one `Decider(policy)` and, for every new plan (one
window of measurements), calls

    table, decisions = decider.update(plan, now, fresh_at=..., pop_alive=...)

- `now`: monotonic seconds (the daemon's clock; tests pass a fake one).
- `fresh_at`: region id → monotonic time of the newest measurement behind that region's plan.
  A region whose `fresh_at` did not advance since the previous update takes part, but that
  update does not count as a new window for it. Omitted: every region is fresh at `now`.
- `pop_alive`: PoP id → False for a PoP that stopped answering or was withdrawn.

It returns the new `RouteTable` (replace the old one whole; never edit it) and the
`Decision`s worth logging: everything except "kept the same route, no challenger".

Rules, per region × destination (`Policy` holds the numbers):

1. A route that crosses a dead PoP (`pop_alive` False), shows ≥ `dead_loss_pct` loss, or is no
   longer in the plan is withdrawn at once: failover to the best usable route, ignoring the
   streak, hold-down and damping (a flap penalty is still charged). A route the plan skips as
   "not measured" (no round in the window: probing stalled) is a gap in the data, not a
   failure: it is kept as it was (region staleness, rule 5, covers a long gap).
2. A challenger (the plan's preferred usable route, if different from the incumbent) takes
   over after `windows_to_switch` windows in which it beats the incumbent by `margin_mos`
   beyond the sampling noise: the gain left once the two routes' loss figures are moved
   against the challenger by `confidence_z` standard errors of their difference
   (`topology.uncertainty.sure_gain`), the loss figures resting on every packet since the
   challenge began (the first window plus the running counters' growth, so no packet counts
   twice). A window counts only with new data at least `evidence_s` newer than the last
   counted one, so k windows are k pieces of evidence, not one window re-read k times. A
   window within the noise does not count but keeps the challenge alive; the challenge ends
   when the plain gain falls below the margin. It is "the incumbent is beaten": the lead may
   pass between equally good challengers (noise does that); the switch goes to the plan's best
   at that moment. Routes without sample counts are taken as exact. Releasing acceleration is
   the one exception: when the plan says acceleration is `not_needed`, the direct route wins
   back once it is within `margin_mos` of the incumbent relay (point estimates) for
   `windows_to_switch` windows (relays cost capacity; a good direct path is preferred).
   A change for the worse that a path of the route in force accepted since it was chosen
   (`proven`, from netopt.core.evidence) is evidence enough: the challenger then needs only
   to beat it by `margin_mos` (point estimates), no windows.
3. After a change, no further change for `hold_down_s` (failover excepted).
4. Flap damping, as BGP route-flap damping (RFC 2439): every change adds `flap_penalty`; the
   penalty halves every `half_life_s`; above `suppress_threshold` changes are suppressed until
   it decays below `reuse_threshold` (capped so suppression lasts at most `max_suppress_s`).
5. Data older than `stale_after_s` marks the route stale and drives no change; older than
   `expire_after_s` the route falls back to the configured default (`default_entry`: region id,
   or "*", → entry PoP id, None = direct). A region nothing has been measured from also gets
   the default.
6. The first plan (and the first after a default) adopts the plan's preferred route, except a
   relay that beats the direct route by less than `margin_mos` once both are given the same
   (pooled) loss — its lead rests on a loss difference seen in a round or two: then direct,
   which the relay can challenge under rule 2 once the evidence is there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from topology.planner import Expected, Plan, RegionPlan, Route
from topology.uncertainty import Evidence, gain_at_equal_loss, sure_gain

Key = tuple[str, str]
# did a hop of this route path accept a change for the worse after that (monotonic) time?
Proven = Callable[[Sequence[str], float], bool]


@dataclass(frozen=True)
class Policy:
    """The numbers behind every decision (see the module docstring)."""

    margin_mos: float = 0.2
    windows_to_switch: int = 3
    hold_down_s: float = 60.0
    flap_penalty: float = 1000.0
    suppress_threshold: float = 2000.0
    reuse_threshold: float = 750.0
    half_life_s: float = 900.0
    max_suppress_s: float = 3600.0
    stale_after_s: float = 30.0
    expire_after_s: float = 300.0
    dead_loss_pct: float = 100.0
    confidence_z: float = 2.0
    evidence_s: float = 0.0
    codec: str = "g711"
    default_entry: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.windows_to_switch < 1:
            raise ValueError("windows_to_switch must be at least 1")
        if self.reuse_threshold >= self.suppress_threshold:
            raise ValueError("reuse_threshold must be below suppress_threshold")
        if self.expire_after_s < self.stale_after_s:
            raise ValueError("expire_after_s must not be shorter than stale_after_s")
        if self.half_life_s <= 0 or self.margin_mos < 0 or self.hold_down_s < 0:
            raise ValueError("half_life_s must be > 0; margin_mos and hold_down_s >= 0")
        if self.confidence_z < 0 or self.evidence_s < 0:
            raise ValueError("confidence_z and evidence_s must be >= 0")

    @property
    def max_penalty(self) -> float:
        return self.reuse_threshold * 2 ** (self.max_suppress_s / self.half_life_s)

    def default_for(self, region: str) -> str | None:
        return self.default_entry.get(region, self.default_entry.get("*"))


@dataclass(frozen=True)
class TableEntry:
    """What the proxies are told for one region × destination."""

    region: str
    dest: str
    route: Route | None
    decided_at: float  # monotonic seconds when this route was chosen
    acceleration: str
    reason: str
    stale: bool = False
    is_default: bool = False
    fallbacks: tuple[Route, ...] = ()


@dataclass(frozen=True)
class RouteTable:
    """A frozen snapshot: (region, dest) → TableEntry."""

    entries: Mapping[Key, TableEntry]
    made_at: float

    def get(self, region: str, dest: str | None = None) -> TableEntry | None:
        """The entry for region and dest; without dest, the region's first destination."""
        if dest is not None:
            return self.entries.get((region, dest))
        return next((e for (r, _), e in self.entries.items() if r == region), None)

    def __iter__(self) -> Iterator[TableEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class Decision:
    """One logged decision with its inputs."""

    at: float
    region: str
    dest: str
    action: str  # initial|default|switch|failover|pending|hold_down|suppressed|stale|expired
    old_entry: str | None  # entry PoP of the previous route (None = direct or none)
    new_entry: str | None
    old_mos: float | None
    new_mos: float | None
    consecutive: int
    penalty: float
    reason: str


@dataclass
class _State:
    route: Route | None
    decided_at: float
    is_default: bool = False
    challenger: str | None = None  # route key of the current challenger
    streak: int = 0
    counted_at: float = -math.inf  # data time of the last window counted towards the streak
    # per route key, at the start of the challenge: (sent_total, lost_total, loss_pct, samples)
    evidence: dict[str, tuple[int, int, float, int]] | None = None
    hold_until: float = -math.inf
    penalty: float = 0.0
    penalty_at: float = 0.0
    suppressed: bool = False
    fresh_at: float | None = None
    stale: bool = False
    expired: bool = False


def _key(route: Route | None) -> str:
    if route is None:
        return "-"
    return "direct" if route.entry_pop is None else route.entry_pop


class Decider:
    """Keeps per region × destination state across plans; see the module docstring."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._state: dict[Key, _State] = {}
        self._plan = Plan()
        self._proven: Proven | None = None

    def update(
        self,
        plan: Plan,
        now: float,
        *,
        fresh_at: Mapping[str, float] | None = None,
        pop_alive: Mapping[str, bool] | None = None,
        proven: Proven | None = None,
    ) -> tuple[RouteTable, list[Decision]]:
        decisions: list[Decision] = []
        self._proven = proven
        entries: dict[Key, TableEntry] = {}
        dead = {p for p, alive in (pop_alive or {}).items() if not alive}
        self._plan = plan
        for rp in plan:
            seen = fresh_at.get(rp.region) if fresh_at is not None else now
            entries[(rp.region, rp.dest)] = self._decide(rp, now, seen, dead, decisions)
        return RouteTable(MappingProxyType(entries), now), decisions

    # ---- one region × destination ---------------------------------------------------------

    def _decide(
        self, rp: RegionPlan, now: float, seen: float | None, dead: set[str], log: list[Decision]
    ) -> TableEntry:
        usable = [r for r in rp.routes if self._usable(r, dead)]
        state = self._state.get((rp.region, rp.dest))
        age = math.inf if seen is None else now - seen
        if state is None:
            return self._initial(rp, now, usable, age, seen, log)
        new_window = seen is not None and (state.fresh_at is None or seen > state.fresh_at)
        state.fresh_at = seen if seen is not None else state.fresh_at
        current = None if state.is_default else self._current(rp, state, dead)
        early = self._withdrawn_or_aged(rp, state, now, usable, current, age, dead, log)
        if early is not None:
            return early
        return self._challenge(rp, state, now, usable, current, seen if new_window else None, log)

    def _withdrawn_or_aged(
        self,
        rp: RegionPlan,
        state: _State,
        now: float,
        usable: list[Route],
        current: Route | None,
        age: float,
        dead: set[str],
        log: list[Decision],
    ) -> TableEntry | None:
        """Failover, expiry, staleness and recovery from the default; None = go on."""
        pol = self.policy
        if not state.is_default and state.route is not None and current is None:
            why = self._why_withdrawn(rp, state.route, dead)
            if usable:
                return self._switch(rp, state, usable[0], now, "failover", why, log, usable)
            return self._to_default(rp, state, now, "failover", f"{why}; no usable route", log)
        if age > pol.expire_after_s:
            if not state.expired:
                return self._to_default(rp, state, now, "expired", self._age(age), log, stale=True)
            return self._entry(rp, state, usable, stale=True, reason=self._age(age))
        state.expired = False
        if age > pol.stale_after_s:
            if not state.stale:
                state.stale = True
                log.append(self._log(rp, state, now, "stale", None, self._age(age)))
            return self._entry(rp, state, usable, stale=True, reason=self._age(age))
        state.stale = False
        if state.is_default and usable:  # fresh data again after a default: adopt at once
            first, why = self._first_choice(usable)
            why = f"measurements arrived; {why}"
            return self._switch(rp, state, first, now, "initial", why, log, usable)
        return None

    def _challenge(
        self,
        rp: RegionPlan,
        state: _State,
        now: float,
        usable: list[Route],
        current: Route | None,
        new_data_at: float | None,
        log: list[Decision],
    ) -> TableEntry:
        """Margin under uncertainty × k windows of new evidence, then hold-down and damping,
        before a challenger takes over. `new_data_at`: data time of this window if it is new."""
        pol = self.policy
        penalty = self._decay(state, now)
        challenger = usable[0] if usable else None
        if challenger is None or _key(challenger) == _key(state.route):
            _reset_challenge(state)
            return self._entry(rp, state, usable, route=current)
        gain = challenger.expected.mos - (current.expected.mos if current else -math.inf)
        release = challenger.kind == "direct" and rp.acceleration == "not_needed"
        if (gain < -pol.margin_mos) if release else (gain < pol.margin_mos):
            _reset_challenge(state)
            return self._entry(rp, state, usable, route=current)
        if state.evidence is None:
            state.evidence = {_key(r): _snapshot(r) for r in (*usable, current) if r is not None}
        proven = self._change_proven(state, current)
        plain = release or current is None or proven
        sure = gain if plain or current is None else self._sure_gain(challenger, current, state)
        beyond_noise = release or sure >= pol.margin_mos
        self._count(state, _key(challenger), new_data_at if beyond_noise else None)
        if proven:  # the detector's alarm is the evidence: no windows to wait for
            state.streak = max(state.streak, pol.windows_to_switch)
        why = f"{_key(challenger)} beats {_key(state.route)} by {gain:+.2f} MOS"
        if proven:
            why += " after a change detected on its path"
        if sure != gain:
            why += f" ({sure:+.2f} beyond {pol.confidence_z:g} SE of loss noise)"
        if release:
            why = f"acceleration not needed (direct {gain:+.2f} MOS against {_key(state.route)})"
        blocked = None
        if state.streak < pol.windows_to_switch or not beyond_noise:
            noise = "" if beyond_noise else ", within the loss noise so far"
            blocked = ("pending", f"{why}, {state.streak}/{pol.windows_to_switch} windows{noise}")
        elif now < state.hold_until:
            blocked = ("hold_down", f"{why}, held down until {state.hold_until:.0f}")
        elif state.suppressed:
            blocked = ("suppressed", f"{why}, flap damping penalty {penalty:.0f}")
        if blocked is not None:
            log.append(self._log(rp, state, now, blocked[0], challenger, blocked[1]))
            return self._entry(rp, state, usable, route=current)
        reason = f"{why} for {state.streak} windows"
        return self._switch(rp, state, challenger, now, "switch", reason, log, usable)

    def _initial(
        self,
        rp: RegionPlan,
        now: float,
        usable: list[Route],
        age: float,
        seen: float | None,
        log: list[Decision],
    ) -> TableEntry:
        state = _State(route=None, decided_at=now, fresh_at=seen)
        self._state[(rp.region, rp.dest)] = state
        if usable and age <= self.policy.stale_after_s:
            first, why = self._first_choice(usable)
            log.append(self._log(rp, state, now, "initial", first, why))
            state.route = first
            return self._entry(rp, state, usable, reason=rp.reason)
        why = "nothing measured yet" if not usable else self._age(age)
        return self._to_default(rp, state, now, "default", why, log, stale=bool(usable))

    def _switch(
        self,
        rp: RegionPlan,
        state: _State,
        new: Route,
        now: float,
        action: str,
        reason: str,
        log: list[Decision],
        usable: list[Route],
    ) -> TableEntry:
        pol = self.policy
        log.append(self._log(rp, state, now, action, new, reason))
        if action != "initial":
            state.penalty = min(self._decay(state, now) + pol.flap_penalty, pol.max_penalty)
            state.penalty_at = now
            if state.penalty > pol.suppress_threshold:
                state.suppressed = True
            state.hold_until = now + pol.hold_down_s
        state.route, state.decided_at, state.is_default = new, now, False
        _reset_challenge(state)
        state.stale, state.expired = False, False
        return self._entry(rp, state, usable, reason=f"{reason}. {rp.reason}")

    def _to_default(
        self,
        rp: RegionPlan,
        state: _State,
        now: float,
        action: str,
        reason: str,
        log: list[Decision],
        stale: bool = False,
    ) -> TableEntry:
        route = self._default_route(rp)
        log.append(self._log(rp, state, now, action, route, reason))
        state.route, state.decided_at, state.is_default = route, now, True
        _reset_challenge(state)
        state.expired = action == "expired"
        state.stale = stale
        return self._entry(rp, state, [], stale=stale, reason=f"default route: {reason}")

    # ---- helpers ----------------------------------------------------------------------------

    def _first_choice(self, usable: list[Route]) -> tuple[Route, str]:
        """The plan's preferred route — unless it is a relay that beats the direct route only
        through a loss difference: a first plan may rest on one round of a few packets, so
        then direct, which the relay can challenge once the evidence is there (rule 2)."""
        best = usable[0]
        direct = next((r for r in usable if r.kind == "direct"), None)
        if best.kind == "direct" or direct is None:
            return best, "first plan"
        gain = gain_at_equal_loss(best.expected, direct.expected, self.policy.codec)
        if gain >= self.policy.margin_mos:
            return best, "first plan"
        why = f"first plan: {_key(best)} beats direct only by its loss ({gain:+.2f} at equal loss)"
        return direct, why

    def _sure_gain(self, challenger: Route, incumbent: Route, state: _State | None = None) -> float:
        """The gain left once loss sampling noise is held against the challenger, on all the
        evidence since the challenge began (see `_pooled`)."""
        pol = self.policy
        evidence = (None, None) if state is None else (_pooled(state, challenger),
                                                      _pooled(state, incumbent))  # fmt: skip
        return sure_gain(
            challenger.expected, incumbent.expected, pol.confidence_z, pol.codec, evidence
        )

    def _count(self, state: _State, challenger: str, data_at: float | None) -> None:
        """Count this window towards the streak if it brings new evidence: new data, at least
        `evidence_s` newer than the last counted window's (the first one always). The streak
        is "the incumbent is beaten": it survives the lead passing between equal challengers,
        which noise does all the time; the switch goes to the plan's best at that moment."""
        state.challenger = challenger
        if data_at is None or data_at - state.counted_at < self.policy.evidence_s:
            return
        state.streak += 1
        state.counted_at = data_at

    def _change_proven(self, state: _State, current: Route | None) -> bool:
        """Did the route in force accept a change for the worse since it was chosen (the
        `proven` callback, netopt.core.evidence)?"""
        if self._proven is None or current is None or state.route is None:
            return False
        return self._proven(state.route.path, state.decided_at)

    def _usable(self, route: Route, dead: set[str]) -> bool:
        return route.expected.loss_pct < self.policy.dead_loss_pct and not dead.intersection(
            route.path[1:]
        )

    def _current(self, rp: RegionPlan, state: _State, dead: set[str]) -> Route | None:
        inc = state.route
        if inc is None:
            return None
        now_route = self._plan.find(rp.region, rp.dest, inc.entry_pop)
        if now_route is None and _unmeasured(rp, inc) and not dead.intersection(inc.path[1:]):
            return inc  # a gap in the data (probing stalled), not a failure: keep it as it was
        if now_route is None or not self._usable(now_route, dead):
            return None
        return now_route

    def _why_withdrawn(self, rp: RegionPlan, inc: Route, dead: set[str]) -> str:
        down = sorted(dead.intersection(inc.path[1:]))
        if down:
            return f"{', '.join(down)} stopped answering: withdrawn"
        now_route = self._plan.find(rp.region, rp.dest, inc.entry_pop)
        if now_route is not None:
            return f"{_key(inc)} lost {now_route.expected.loss_pct:.0f} % of packets: withdrawn"
        return f"{_key(inc)} is no longer in the plan: withdrawn"

    def _decay(self, state: _State, now: float) -> float:
        pol = self.policy
        value = state.penalty * 2 ** (-(now - state.penalty_at) / pol.half_life_s)
        if state.suppressed and value < pol.reuse_threshold:
            state.suppressed = False
        return value

    def _default_route(self, rp: RegionPlan) -> Route:
        entry = self.policy.default_for(rp.region)
        found = next((r for r in rp.routes if r.entry_pop == entry), None)
        if found is not None:
            return found
        unknown = Expected(math.nan, math.nan, math.nan, math.nan)
        if entry is None:
            return Route(rp.region, rp.dest, "direct", (rp.region, rp.dest), None, unknown)
        return Route(rp.region, rp.dest, "relay", (rp.region, entry, rp.dest), entry, unknown)

    @staticmethod
    def _age(age: float) -> str:
        return "no data" if math.isinf(age) else f"data is {age:.0f} s old"

    def _entry(
        self,
        rp: RegionPlan,
        state: _State,
        usable: list[Route],
        *,
        route: Route | None = None,
        stale: bool = False,
        reason: str | None = None,
    ) -> TableEntry:
        if route is not None and not state.is_default:
            state.route = route  # same route, fresh expectations
        chosen = state.route
        fallbacks = tuple(r for r in usable if _key(r) != _key(chosen))
        if reason is None:
            reason = rp.reason
        elif stale and "stale" not in reason:
            reason = f"stale: {reason}"
        return TableEntry(
            rp.region,
            rp.dest,
            chosen,
            state.decided_at,
            rp.acceleration,
            reason,
            stale,
            state.is_default,
            fallbacks,
        )

    def _log(
        self, rp: RegionPlan, state: _State, now: float, action: str, new: Route | None, reason: str
    ) -> Decision:
        old = state.route
        return Decision(
            at=now, region=rp.region, dest=rp.dest, action=action,
            old_entry=old.entry_pop if old else None, new_entry=new.entry_pop if new else None,
            old_mos=old.expected.mos if old else None, new_mos=new.expected.mos if new else None,
            consecutive=state.streak, penalty=self._decay(state, now), reason=reason,
        )  # fmt: skip


def _unmeasured(rp: RegionPlan, route: Route) -> bool:
    """The plan skipped the route's first hop as not measured (no round in the window)."""
    pop = route.entry_pop or rp.dest
    return any(s.pop == pop and s.why.startswith("not measured") for s in rp.skipped)


def _reset_challenge(state: _State) -> None:
    state.challenger, state.streak, state.counted_at, state.evidence = None, 0, -math.inf, None


def _snapshot(route: Route) -> tuple[int, int, float, int]:
    e = route.expected
    return e.sent_total, e.lost_total, e.loss_pct, e.samples


def _pooled(state: _State, route: Route) -> Evidence | None:
    """The route's loss over the challenge's first window plus every packet since — exact
    counts from the running counters, so no packet counts twice however often we replan.
    None (use the current window) when the route has no counters or no snapshot."""
    e = route.expected
    snap = None if state.evidence is None else state.evidence.get(_key(route))
    if snap is None or e.sent_total <= 0 or e.sent_total < snap[0]:
        return None
    sent, lost = e.sent_total - snap[0], e.lost_total - snap[1]
    n = snap[3] + sent
    if n <= 0 or not math.isfinite(snap[2]):
        return None
    return 100.0 * (snap[2] / 100.0 * snap[3] + lost) / n, n


__all__ = ["Decider", "Decision", "Policy", "RouteTable", "TableEntry"]
