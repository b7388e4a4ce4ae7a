"""The row the store keeps for one probe round: the round's summary, not its packets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One probe round from `src` to `dst`, summarised. Times in wall-clock ns / ms values."""

    started_wall_ns: int
    src: str
    dst: str
    kind: str
    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_p50_ms: float | None
    rtt_p90_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None

    @property
    def loss_ratio(self) -> float:
        return 0.0 if self.sent == 0 else 1.0 - self.received / self.sent
