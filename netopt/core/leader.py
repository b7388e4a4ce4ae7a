"""Who may decide and push among controllers sharing one PostgreSQL (… decide → **publish**).

Pure: the daemon's lease task (netopt.daemon.leader) renews the lease twice per
`ha.lease_interval_s` and feeds each outcome here with `now` (monotonic seconds); the push
path asks `may_push` before each reload.

A controller leads while all of these hold:
- its last renewal succeeded and held the lease (`held` is its generation, the fencing token);
- that renewal is younger than one lease interval (a renewal that hangs or fails past that
  deposes it: it must stop pushing within one interval, before it knows why);
- no newer generation has been seen in the database (another controller took the lease).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class LeaderState:
    """What the lease task last learnt. `held`: our generation, None when not holding."""

    held: int | None = None
    renewed_at_s: float = float("-inf")  # monotonic: when `held` was last confirmed
    newest_seen: int = 0  # the newest generation seen in the database


def renewed(state: LeaderState, held: int | None, newest: int, now_s: float) -> LeaderState:
    """A renewal that answered: `held` (our generation or None) and the newest in the DB."""
    newest_seen = max(state.newest_seen, newest, held or 0)
    if held is None:
        return LeaderState(None, state.renewed_at_s, newest_seen)
    return LeaderState(held, now_s, newest_seen)


def renew_failed(state: LeaderState) -> LeaderState:
    """A renewal that raised (the session died, the database is unreachable): not holding."""
    return replace(state, held=None)


def is_leader(state: LeaderState, now_s: float, lease_interval_s: float) -> bool:
    """Whether this controller decides and pushes at `now_s` (see the module docstring)."""
    if state.held is None or state.newest_seen > state.held:
        return False
    return now_s - state.renewed_at_s <= lease_interval_s


def may_push(token: int, newest_in_db: int, still_held: bool) -> bool:
    """The check right before a reload: the lease is still ours and no newer token exists."""
    return still_held and token > 0 and newest_in_db == token
