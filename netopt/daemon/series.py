"""Series that exist from start-up (config → **metrics**, before anything happened).

Prometheus practice: a labelled counter whose child is created on its first increment has no
series until then, so `increase()` and alerts cannot see a quiet region, a proxy that never
failed or an agent that never reported. `declare(metrics, config)` creates, for every label
value the config makes known, the children the dashboards and rules read — at 0 for counters,
at a meaningful start value for gauges — and the info series of the map (`netopt_site_info`,
`netopt_backbone_rtt_seconds`), removing the sites and links a reload took away.

Gauges of measured state (MOS, loss, RTT, the route in force, PoP up) are *not* declared: a 0
there would be a false measurement (and would fire NetoptMosBelowTarget at once); they appear
with the first plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import Gauge

from netopt.config import Config, Location
from netopt.daemon.metrics import Metrics

RELOAD_OUTCOMES = ("ok", "invalid")
INGEST_OUTCOMES = ("stored", "duplicate", "unauthorized", "forbidden", "invalid", "too_large",
                   "unavailable")  # fmt: skip


def site_labels(config: Config) -> set[tuple[str, ...]]:
    """(site, kind, role, name, lat, lon) per region and PoP; lat/lon "" where unknown."""

    def where(loc: Location | None) -> tuple[str, str]:
        return ("", "") if loc is None else (f"{loc.lat:g}", f"{loc.lon:g}")

    out: set[tuple[str, ...]] = {
        (r.id, "region", "region", r.name or r.id, *where(r.location)) for r in config.regions
    }
    out |= {(p.id, "pop", p.role, p.name or p.id, *where(p.location)) for p in config.pops}
    return out


def declare(metrics: Metrics, config: Config, now_wall_s: float,
            probe_keys: Iterable[tuple[str, str, str]] = ()) -> None:  # fmt: skip
    """Create every known series (start-up and each reload); `now_wall_s` stands for "last
    seen" of an agent never heard from, so NetoptAgentSilent fires for it after 5 minutes."""
    m = metrics
    _sync(m.site_info, site_labels(config))
    links = {(b.a, b.b): b.rtt_ms / 1000 for b in config.backbone}
    _sync(m.backbone_rtt, set(links))
    for (a, b), rtt_s in links.items():
        m.backbone_rtt.labels(a, b).set(rtt_s)
    for region in config.regions:
        m.route_changes.labels(region.id)
    for outcome in RELOAD_OUTCOMES:
        m.config_reloads.labels(outcome)
    for outcome in INGEST_OUTCOMES:
        m.ingest_batches.labels(outcome)
    seen = {s.labels["agent"] for f in m.agent_last_seen.collect() for s in f.samples}
    for agent in config.agents:
        m.ingest_rounds.labels(agent.id)
        m.spool_depth.labels(agent.id)
        if agent.id not in seen:
            m.agent_last_seen.labels(agent.id).set(now_wall_s)
    m.probes.declare(list(probe_keys))


def _sync(gauge: Gauge, wanted: set[tuple[str, ...]]) -> None:
    """Exactly the `wanted` children, each 1 (or the caller sets its value after)."""
    have = {tuple(s.labels.values()) for f in gauge.collect() for s in f.samples}
    for labels in have - wanted:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    for labels in wanted:
        gauge.labels(*labels).set(1)
