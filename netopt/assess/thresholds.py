"""The limits a consultant is asked about, stated beside every result in the report.

analysis → **thresholds** (values and phrases) → report. The numbers are the ones the planner
uses (`topology.quality`: Via/Skype poor-call flags) plus ITU-T G.114 and the E-model scale.
"""

from __future__ import annotations

from netopt.assess.model import Threshold
from topology import quality

G114_GOOD_MS = 150.0
G114_LIMIT_MS = 400.0

THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(name="Poor call: round trip", metric="rtt_ms", limit=quality.VIA_RTT_MS,
              source="Microsoft Via / Skype call-quality thresholds",
              meaning=f"a call with RTT above {quality.VIA_RTT_MS:.0f} ms is flagged poor"),
    Threshold(name="Poor call: packet loss", metric="loss_pct", limit=quality.VIA_LOSS_PCT,
              source="Microsoft Via / Skype call-quality thresholds",
              meaning=f"a call losing more than {quality.VIA_LOSS_PCT} % is flagged poor"),
    Threshold(name="Poor call: jitter", metric="jitter_ms", limit=quality.VIA_JITTER_MS,
              source="Microsoft Via / Skype call-quality thresholds",
              meaning=f"jitter above {quality.VIA_JITTER_MS:.0f} ms is flagged poor"),
    Threshold(name="One-way delay: good", metric="one_way_ms", limit=G114_GOOD_MS,
              source="ITU-T G.114",
              meaning=f"up to {G114_GOOD_MS:.0f} ms mouth to ear most users are satisfied"),
    Threshold(name="One-way delay: planning limit", metric="one_way_ms", limit=G114_LIMIT_MS,
              source="ITU-T G.114",
              meaning=f"beyond {G114_LIMIT_MS:.0f} ms a network should not be planned"),
    Threshold(name="MOS: target", metric="mos", limit=4.0,
              source="ITU-T G.107 E-model (MOS 1–4.5); netopt's default planner.target_mos",
              meaning="4.0 and up: users satisfied; 3.6: some dissatisfied; below 3.1: many"),
)  # fmt: skip


def g114_words(one_way_ms: float) -> list[str]:
    """Phrases for a one-way delay beyond G.114's good or planning limit (empty = good)."""
    if one_way_ms > G114_LIMIT_MS:
        return [f"one-way {one_way_ms:.0f} ms > {G114_LIMIT_MS:.0f} ms (G.114 planning limit)"]
    if one_way_ms > G114_GOOD_MS:
        return [f"one-way {one_way_ms:.0f} ms > {G114_GOOD_MS:.0f} ms (G.114 good)"]
    return []


def target_words(target_mos: float) -> str:
    return f"target MOS {target_mos:g} (ITU-T G.107 E-model)"
