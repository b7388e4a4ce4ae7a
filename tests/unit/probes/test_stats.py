"""probes.stats against the shared RFC 3550 vector and hand-checked cases."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.base import Outcome, ProbeResult, Sample, Target
from probes.stats import (
    burst_summary,
    reordered_count,
    rfc3550_jitter,
    round_stats,
    wilson_interval,
)
from tests.shared_data import shared_path

MS = 1_000_000


def _result(samples: list[Sample], foreign: dict[str, int] | None = None) -> ProbeResult:
    return ProbeResult("icmp", Target("127.0.0.1"), 0, tuple(samples), foreign or {})


def _ok(seq: int, sent_ms: float, recv_ms: float) -> Sample:
    return Sample(seq, int(sent_ms * MS), int(recv_ms * MS), Outcome.OK)


def test_rfc3550_jitter_matches_shared_sequence() -> None:
    with shared_path("vectors/rfc3550_jitter_ms_sequence.csv").open() as f:
        rows = list(csv.DictReader(f))
    sent = [float(r["sent_time_ms"]) for r in rows]
    recv = [float(r["recv_time_ms"]) for r in rows]
    series = rfc3550_jitter(sent, recv)
    expected = [float(r["expected_jitter_ms_after_packet"]) for r in rows]
    assert [round(x, 4) for x in series] == expected


def test_summarize_jitter_is_the_last_value_of_the_sequence_in_ms() -> None:
    with shared_path("vectors/rfc3550_jitter_ms_sequence.csv").open() as f:
        rows = list(csv.DictReader(f))
    samples = [_ok(int(r["seq"]), float(r["sent_time_ms"]), float(r["recv_time_ms"])) for r in rows]
    stats = round_stats(_result(samples[::-1]))  # order in the tuple must not matter
    assert stats.jitter_ms is not None
    assert round(stats.jitter_ms, 4) == float(rows[-1]["expected_jitter_ms_after_packet"])


def test_pion_two_packet_jitter_in_timestamp_units() -> None:
    # RTP ts delta 60000, arrival delta 1 s = 90000 units at 90 kHz → J = 30000/16 = 1875
    series = rfc3550_jitter([42378934, 42438934], [0, 90000])
    assert series[-1] == 1875


def test_rtt_summary_and_loss() -> None:
    samples = [_ok(i, 0, 10 + i) for i in range(8)]
    samples += [Sample(8, 0, None, Outcome.TIMEOUT), Sample(9, 0, None, Outcome.TIMEOUT)]
    stats = round_stats(_result(samples))
    assert stats.sent == 10 and stats.received == 8 and stats.lost == 2
    assert stats.loss_ratio == pytest.approx(0.2)
    assert stats.rtt_ms is not None
    assert stats.rtt_ms.min == pytest.approx(10) and stats.rtt_ms.max == pytest.approx(17)
    assert stats.rtt_ms.avg == pytest.approx(13.5)
    assert stats.rtt_ms.p50 == pytest.approx(float(np.percentile(np.arange(10, 18), 50)))
    assert stats.rtt_ms.stddev == pytest.approx(float(np.std(np.arange(10, 18))))
    assert stats.bursts.count == 1 and stats.bursts.max_len == 2
    j = stats.to_json()
    assert j["loss_pct"] == pytest.approx(20.0)
    assert set(j["rtt_ms"]) == {"min", "avg", "p50", "p90", "p99", "max", "stddev"}
    assert j["outcomes"] == {"ok": 8, "timeout": 2}


def test_unreachable_and_error_are_not_loss() -> None:
    samples = [
        _ok(0, 0, 1),
        Sample(1, 0, 5, Outcome.UNREACHABLE),
        Sample(2, 0, None, Outcome.ERROR),
    ]
    stats = round_stats(_result(samples))
    assert stats.sent == 2  # the ERROR packet never left
    assert stats.lost == 0 and stats.loss_ratio == 0
    assert stats.outcomes == {"ok": 1, "unreachable": 1, "error": 1}


def test_empty_round() -> None:
    stats = round_stats(_result([Sample(0, 0, None, Outcome.TIMEOUT)]))
    assert stats.rtt_ms is None and stats.jitter_ms is None and stats.ipdv_ms is None
    assert stats.loss_ratio == 1.0
    assert stats.to_json()["rtt_ms"] is None


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(3, 100)
    assert lo == pytest.approx(0.01026, abs=1e-4) and hi == pytest.approx(0.08452, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bursts_and_gaps() -> None:
    b = burst_summary([False, True, True, False, False, False, True, False])
    assert (b.count, b.max_len) == (2, 2)
    assert b.mean_len == pytest.approx(1.5)
    assert b.mean_gap_len == pytest.approx((1 + 3 + 1) / 3)
    assert burst_summary([]).count == 0


def test_reorder_and_duplicates() -> None:
    assert reordered_count([1, 3, 2, 4]) == 1
    assert reordered_count([0, 1, 2]) == 0
    samples = [_ok(0, 0, 1), _ok(1, 20, 45), _ok(2, 40, 41)]  # seq 2 overtakes seq 1
    stats = round_stats(_result(samples, {"duplicate": 2}))
    assert stats.reordered == 1 and stats.duplicates == 2


def test_ipdv_only_over_consecutive_pairs() -> None:
    samples = [_ok(0, 0, 10), _ok(1, 20, 32), Sample(2, 40, None, Outcome.TIMEOUT), _ok(3, 60, 70)]
    stats = round_stats(_result(samples))
    assert stats.ipdv_ms is not None
    assert stats.ipdv_ms.pairs == 1 and stats.ipdv_ms.max == pytest.approx(2.0)


def test_late_ratio_against_a_jitter_buffer() -> None:
    samples = [_ok(i, 20 * i, 20 * i + d) for i, d in enumerate([10, 10, 75, 10, 40])]
    stats = round_stats(_result(samples), jitter_buffer_ms=30)
    assert stats.late_ratio == pytest.approx(1 / 5)  # only the 75 ms one is > 10 + 30
    assert stats.to_json()["late_pct"] == pytest.approx(20.0)


def _pion_cases() -> dict[str, dict[str, object]]:
    import json

    doc = json.loads(shared_path("vectors/rfc3550_receiver_report_pion.json").read_text())
    return {c["name"]: c for c in doc["cases"]}


def test_pion_receiver_report_loss_fields() -> None:
    from probes.stats import receiver_report

    checked = 0
    for case in _pion_cases().values():
        seqs = case.get("packets_seq_in_arrival_order")
        if seqs is None:
            continue
        expected = case["expected"]
        assert isinstance(seqs, list) and isinstance(expected, dict)
        rr = receiver_report(seqs)
        assert rr.extended_highest_seq == expected["extended_highest_seq"], case["name"]
        assert rr.cumulative_lost == expected["cumulative_lost"], case["name"]
        assert rr.fraction_lost == expected["fraction_lost"], case["name"]
        checked += 1
    assert checked == 5


def test_pion_jitter_case_from_the_file() -> None:
    from datetime import datetime

    case = _pion_cases()["interarrival_jitter_two_packets"]
    packets = case["packets"]
    assert isinstance(packets, list)
    rate = case["clock_rate_hz"]
    assert isinstance(rate, int)
    t0 = datetime.fromisoformat(packets[0]["arrival_utc"].replace("Z", "+00:00")).timestamp()
    arrival = [
        (datetime.fromisoformat(p["arrival_utc"].replace("Z", "+00:00")).timestamp() - t0) * rate
        for p in packets
    ]
    series = rfc3550_jitter([p["rtp_timestamp"] for p in packets], arrival)
    expected = case["expected"]
    assert isinstance(expected, dict)
    assert int(series[-1]) == expected["jitter_timestamp_units"]


def test_pion_lsr_and_dlsr() -> None:
    from datetime import datetime

    from probes._ntp import dlsr_units, ntp_middle32

    cases = _pion_cases()

    def ns(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * 10**9

    first = cases["lsr_dlsr"]
    sr, exp = first["sender_report"], first["expected"]
    assert isinstance(sr, dict) and isinstance(exp, dict)
    assert ntp_middle32(ns(sr["ntp_time_utc"])) == exp["last_sr_LSR"]
    gen = first["receiver_report_generated_at_utc"]
    assert isinstance(gen, str)
    assert dlsr_units(ns(gen) - ns(sr["received_at_utc"])) == exp["delay_since_last_sr_DLSR"]
    second = cases["lsr_for_sr_at_23_00_01"]
    sr2, exp2 = second["sender_report"], second["expected"]
    assert isinstance(sr2, dict) and isinstance(exp2, dict)
    assert ntp_middle32(ns(sr2["ntp_time_utc"])) == exp2["last_sr_LSR"]


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=600))
def test_percentiles_are_numpys_bit_for_bit_and_both_paths_agree_exactly(
    values: list[float],
) -> None:
    from unittest import mock

    import probes.stats as stats_mod

    qs = (0, 1, 25, 50, 90, 99, 99.9, 100)
    expected = [float(x) for x in np.percentile(np.asarray(values), qs)]
    results = []
    for numpy_from in (1, 10**9):  # every vector through numpy, then none
        with mock.patch.object(stats_mod, "NUMPY_FROM", numpy_from):
            results.append((stats_mod.percentiles(values, qs), stats_mod.moments(values)))
    assert results[0][0] == expected and results[1][0] == expected
    assert results[0][1] == results[1][1]  # mean and stddev: identical on both paths


@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.sampled_from(list(Outcome)),
            st.integers(0, 10**9),
            st.integers(-(10**6), 10**9),
        ),
        max_size=12,
    )
)
def test_the_digest_is_the_summary_for_its_fields(
    packets: list[tuple[int, Outcome, int, int]],
) -> None:
    from probes.stats import round_digest

    samples = [
        Sample(seq, sent, None if o in (Outcome.TIMEOUT, Outcome.ERROR) else sent + rtt, o)
        for seq, o, sent, rtt in packets
    ]
    full, lean = round_stats(_result(samples)), round_digest(_result(samples))
    assert (lean.sent, lean.received, lean.rtt_ms, lean.jitter_ms, lean.outcomes) == (
        full.sent, full.received, full.rtt_ms, full.jitter_ms, full.outcomes,
    )  # fmt: skip


def test_a_round_summary_does_not_depend_on_the_sample_order() -> None:
    samples = [_ok(i, 20 * i, 20 * i + 10 + (i * 7) % 5) for i in range(6)]
    samples += [Sample(6, 0, None, Outcome.TIMEOUT), Sample(7, 0, None, Outcome.ERROR)]
    assert round_stats(_result(samples)) == round_stats(_result(samples[::-1]))


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=300))
def test_short_path_percentiles_and_moments_match_numpy(values: list[float]) -> None:
    from probes.stats import RttSummary, percentiles

    qs = (0, 1, 50, 90, 99, 100)
    expected = np.percentile(np.asarray(values), qs)
    assert percentiles(values, qs) == pytest.approx(list(expected), rel=1e-9, abs=1e-9)
    summary = RttSummary.of_ms(values)
    assert summary is not None
    assert summary.avg == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-9)
    assert summary.stddev == pytest.approx(float(np.std(values)), rel=1e-6, abs=1e-6)
