"""Synthetic campaigns for the assess unit tests: seeded, no sockets, no clock."""

from __future__ import annotations

import random

from netopt.assess.analysis import Collected
from netopt.config import Config, parse_config
from probes.base import Outcome, ProbeResult, Sample, Target

START_S = 1_790_000_000.0


def config(extra_pops: tuple[dict[str, object], ...] = ()) -> Config:
    """Site `lagos`; core `fra` (the destination); edge `los` one hop from lagos."""
    return parse_config({
        "regions": [{"id": "lagos", "name": "Lagos"}],
        "pops": [
            {"id": "fra", "role": "core", "address": "198.18.0.10", "sip_uri": "sip:198.18.0.10"},
            {"id": "los", "role": "edge", "address": "198.18.0.11"},
            *extra_pops,
        ],
        "destinations": ["fra"],
        "backbone": [{"a": "fra", "b": "los", "rtt_ms": 110, "jitter_ms": 0.3, "loss_pct": 0}],
    })  # fmt: skip


def rounds(
    pop: str,
    kind: str,
    *,
    rtt_ms: float,
    jitter_ms: float,
    loss: float,
    n_rounds: int = 20,
    per_round: int = 100,
    seed: int = 1,
    answers: bool = True,
) -> list[ProbeResult]:
    rng = random.Random(f"{pop}-{kind}-{seed}")
    out = []
    for i in range(n_rounds):
        start_ns = int((START_S + 3 * i) * 1e9)
        samples = []
        for seq in range(per_round):
            sent = start_ns + seq * 20_000_000
            if not answers or rng.random() < loss:
                samples.append(Sample(seq, sent, None, Outcome.TIMEOUT))
                continue
            rtt = max(0.1, rng.gauss(rtt_ms, jitter_ms))
            samples.append(Sample(seq, sent, sent + int(rtt * 1e6), Outcome.OK))
        out.append(ProbeResult(kind, Target("198.18.0.1", 862, pop), start_ns, tuple(samples)))
    return out


def collected(results: list[ProbeResult], *, partial: bool = False) -> Collected:
    return Collected(
        site="lagos", started_wall_s=START_S, duration_planned_s=60.0,
        duration_s=30.0 if partial else 60.0, partial=partial, rounds=tuple(results),
    )  # fmt: skip
