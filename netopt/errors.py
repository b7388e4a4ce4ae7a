"""The exceptions netopt raises for its own faults and its neighbours' faults.

A lossy network is never an exception here (see `probes.base.Outcome`).
"""

from __future__ import annotations


class NetoptError(Exception):
    """Root of every error netopt reports to a user."""


class ConfigError(NetoptError):
    """A config or profile file is wrong. `problems` holds one line per bad field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} error(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class PushError(NetoptError):
    """A neighbour (SIP proxy) refused or did not answer a push."""


class ShipError(NetoptError):
    """The controller (or whatever answers at an agent's `controller.url`) answered a batch
    with something that is not its acknowledgement: the rounds stay spooled and are resent."""


class StoreError(NetoptError):
    """The store cannot be opened or written."""


class LabError(NetoptError):
    """The emulated WAN cannot be built, changed or reached."""
