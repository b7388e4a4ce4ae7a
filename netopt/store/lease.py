"""Leadership among controllers sharing one PostgreSQL store (… plan → decide → **publish**).

The daemon's lease task (netopt.daemon.leader) renews it every `ha.lease_interval_s`; the
rule of who leads is netopt.core.leader's.

- The lease is a session-level PostgreSQL advisory lock, held on a connection of its own:
  while that session lives, no other session can take it; when the holder dies (kill -9,
  network gone, session terminated) the server releases it and a follower's next
  `try_acquire()` wins.
- Each acquisition increments a generation number kept in the `leadership` table (schema
  version 2 of pg_schema.py: open the PostgresStore first, which migrates), in the
  same transaction as the check that the lock is held: that number is the fencing token the
  leader stamps on every push. `Fence` is what a receiver (or the push path, before sending)
  uses to refuse a token older than the newest it has seen, so a deposed leader's late push is
  refused even if it does not know yet that it lost the lease.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psycopg

from netopt.errors import StoreError

LEADER_LOCK = 0x6E65_746F_7074_0003  # "netopt" + 3: the advisory lock key of the lease


@dataclass(frozen=True, slots=True)
class Leadership:
    """What a successful acquisition gives: the holder and its fencing token."""

    holder: str
    generation: int


class LeaderLease:
    """One controller's side of the lease, on its own connection (see the module docstring)."""

    def __init__(self, url: str, holder: str, name: str = "controller",
                 connect_timeout_s: float = 5.0) -> None:  # fmt: skip
        self.holder, self.name = holder, name
        try:
            self._db = psycopg.connect(
                url, autocommit=True, connect_timeout=max(1, int(connect_timeout_s))
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the lease: {exc}") from None
        self.held: Leadership | None = None

    def try_acquire(self, now_wall_ns: int) -> Leadership | None:
        """Take the lease if free (or already ours); a new holding gets the next generation."""
        if self.held is not None and self.still_held():
            return self.held
        self.held = None
        row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
        if not (row and row[0]):
            return None
        with self._db.transaction():
            row = self._db.execute(
                "INSERT INTO leadership (name, generation, holder, acquired_wall_ns) "
                "VALUES (%s, 1, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "generation = leadership.generation + 1, holder = EXCLUDED.holder, "
                "acquired_wall_ns = EXCLUDED.acquired_wall_ns RETURNING generation",
                (self.name, self.holder, now_wall_ns),
            ).fetchone()
        assert row is not None
        self.held = Leadership(self.holder, int(row[0]))
        return self.held

    def still_held(self) -> bool:
        """True while this session holds the lock (False once the session is gone)."""
        try:
            row = self._db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND ((classid::BIGINT << 32) | objid::BIGINT) = %s",
                (LEADER_LOCK,),
            ).fetchone()
        except psycopg.Error:
            self.held = None
            return False
        held = bool(row and row[0])
        if not held:
            self.held = None
        return held

    @property
    def broken(self) -> bool:
        """The lease's connection is closed or lost (the lock went with it): open a new one."""
        return self._db.closed or self._db.broken

    def newest(self) -> int:
        """The newest generation given out by anyone (a newer one than ours: we are deposed)."""
        return current_generation(self._db, self.name)

    def share_table(self, generation: int, at_wall_ns: int, body: str) -> bool:
        """Store the leader's newest route table (schema v4), unless a newer generation's
        table is already there; True when written."""
        row = self._db.execute(
            "INSERT INTO route_tables (name, generation, at_wall_ns, body) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "generation = EXCLUDED.generation, at_wall_ns = EXCLUDED.at_wall_ns, "
            "body = EXCLUDED.body WHERE route_tables.generation <= EXCLUDED.generation "
            "RETURNING generation",
            (self.name, generation, at_wall_ns, body),
        ).fetchone()
        return row is not None

    def shared_table(self) -> tuple[int, int, str] | None:
        """The newest shared route table: (generation, at_wall_ns, body), None before any."""
        row = self._db.execute(
            "SELECT generation, at_wall_ns, body FROM route_tables WHERE name = %s", (self.name,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    def release(self) -> None:
        if self.held is not None:
            with contextlib.suppress(psycopg.Error):  # the session gone: so is the lock
                self._db.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
            self.held = None

    def close(self) -> None:
        self.release()
        self._db.close()


def current_generation(db: psycopg.Connection[tuple[object, ...]], name: str = "controller") -> int:
    """The newest fencing token given out (0 before any leader)."""
    row = db.execute("SELECT generation FROM leadership WHERE name = %s", (name,)).fetchone()
    return 0 if row is None else int(row[0])  # type: ignore[call-overload]


class Fence:
    """A receiver's guard: admits a push whose token is at least the newest seen."""

    def __init__(self) -> None:
        self.newest = 0

    def admit(self, generation: int) -> bool:
        if generation < self.newest:
            return False
        self.newest = generation
        return True
