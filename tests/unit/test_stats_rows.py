"""`round_summaries_from_arrays` (many rounds from arrays, no Sample objects) equals
`round_summary` of each round."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from probes.base import Outcome, ProbeResult, Sample, Target
from probes.stats import round_summaries_from_arrays, round_summary

# as the ICMP batch codes its packets: two codes may name one outcome
OUTCOMES = (Outcome.TIMEOUT, Outcome.OK, Outcome.UNREACHABLE, Outcome.ERROR, Outcome.TIMEOUT)
TIMED = (Outcome.OK, Outcome.UNREACHABLE)
PACKET = st.tuples(
    st.integers(0, len(OUTCOMES) - 1),
    st.integers(0, 10**12),  # send time
    st.one_of(st.integers(0, 3 * 10**9), st.sampled_from([0, 1, 1_000_000])),  # its RTT
)
ROUNDS = st.integers(1, 6).flatmap(
    lambda c: st.lists(st.lists(PACKET, min_size=c, max_size=c), min_size=1, max_size=8)
)


def _arrays(rounds: list[list[tuple[int, int, int]]]) -> tuple[np.ndarray, ...]:
    codes = np.array([[p[0] for p in r] for r in rounds], np.int8)
    sent = np.array([[p[1] for p in r] for r in rounds], np.int64)
    received = sent + np.array([[p[2] for p in r] for r in rounds], np.int64)
    return codes, sent, received


@given(ROUNDS)
def test_rows_equal_one_summary_per_round(rounds: list[list[tuple[int, int, int]]]) -> None:
    codes, sent, received = _arrays(rounds)
    expected = []
    for i, r in enumerate(rounds):
        samples = []
        for j, (code, _s, _rtt) in enumerate(r):
            o = OUTCOMES[code]
            at = int(received[i, j]) if o in TIMED else None
            samples.append(Sample(j, int(sent[i, j]), at, o))
        expected.append(round_summary(ProbeResult("icmp", Target("127.0.0.1"), 7, tuple(samples))))
    assert round_summaries_from_arrays(7, sent, received, codes, OUTCOMES) == expected


def test_arrival_order_decides_the_jitter_and_send_order_the_histogram() -> None:
    """Packet 1 overtakes packet 0: jitter follows arrival order (as `round_digest`), the RTTs for
    the histogram stay in send order."""
    sent = np.array([[0, 20_000_000, 40_000_000]], np.int64)
    received = sent + np.array([[50_000_000, 10_000_000, 30_000_000]], np.int64)
    (row,) = round_summaries_from_arrays(0, sent, received, np.ones((1, 3), np.int8), OUTCOMES)
    assert row.rtts_s == [0.05, 0.01, 0.03]
    assert row.digest.rtt_ms is not None and row.digest.rtt_ms.min == 10.0
    # arrival order: 10 ms (t=30), 50 ms (t=50), 30 ms (t=70)
    assert row.digest.jitter_ms == ((40 / 16) + (20 - 40 / 16) / 16)
