"""What a panel preview shows (Prometheus → preview → **results** → plots): the time window
and each target's series, shared by the query side (`preview`) and the drawing side (`plots`)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """The time range a preview shows, and Grafana's variables for it."""

    end_s: float
    range_s: int
    points: int = 120

    @property
    def step_s(self) -> int:
        return max(1, self.range_s // self.points)

    def grafana_vars(self) -> dict[str, str]:
        rate = max(4 * self.step_s, 15)  # Grafana: max(4 × scrape interval, step)
        return {"$__rate_interval": f"{rate}s", "$__range": f"{self.range_s}s",
                "$__interval": f"{self.step_s}s"}  # fmt: skip


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times_s: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Result:
    """One target's answer: its series, and how Grafana would name each (legendFormat)."""

    ref: str
    legend: str
    instant: bool
    series: tuple[Series, ...]

    def name(self, s: Series) -> str:
        if not self.legend:
            inner = ", ".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            return f"{{{inner}}}" if inner else self.ref
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: s.labels.get(m.group(1), ""), self.legend)
