"""E-model against values worked by hand from G.107 / G.113, and monotonicity properties."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.shared_data import shared_path
from topology import quality as q
from topology.scoring import AccessMatrix, Backbone, scorer_for


def test_default_parameters_give_the_g107_reference_values() -> None:
    # Worked by hand from G.107 (06/2015) eqs. 7-2..7-26 with Table 3 defaults:
    # No = -61.18 dBm0p, Ro = 15 - 1.5(8 + No) = 94.77, Is = Iolr 0.44 + Ist 0.00 + Iq 0.97 = 1.41,
    # Id(0) = Idle(Tr=0) = 0.149 (Idte(0) = 0), so R = 93.2.
    assert float(q.NO) == pytest.approx(-61.18, abs=0.01)
    assert float(q.RO) == pytest.approx(94.77, abs=0.01)
    assert float(q._is_terms(np.array(0.0))) == pytest.approx(1.41, abs=0.01)
    assert float(q.idle(0)) == pytest.approx(0.149, abs=0.001)
    assert float(q.idte(0)) == 0.0
    r0 = float(q.r_factor(0, 0))
    assert r0 == pytest.approx(93.2, abs=0.01)
    assert float(q.mos_from_r(r0)) == pytest.approx(4.41, abs=0.005)


def test_pure_delay_impairment_by_hand() -> None:
    # Ta = 200 ms: X = 1, Idd = 25((2)^(1/6) - 3(1 + 3^-6)^(1/6) + 2) = 3.044
    # Ta = 400 ms: X = 2, Idd = 25(65^(1/6) - 3(1 + (2/3)^6)^(1/6) + 2) = 24.07
    assert float(q.idd(100)) == 0.0
    assert float(q.idd(200)) == pytest.approx(3.044, abs=0.001)
    assert float(q.idd(400)) == pytest.approx(24.07, abs=0.01)


@pytest.mark.parametrize(
    ("codec", "ppl", "expected"),
    [
        ("g711", 1.0, 95 * 1 / (1 + 25.1)),  # 3.64
        ("g711_noplc", 1.0, 95 * 1 / (1 + 4.3)),  # 17.92
        ("g729a", 2.0, 11 + 84 * 2 / (2 + 19)),  # 19.0
        ("g729a", 0.0, 11.0),
    ],
)
def test_effective_equipment_impairment_g113(codec: str, ppl: float, expected: float) -> None:
    assert float(q.ie_eff(ppl, codec)) == pytest.approx(expected, abs=1e-9)


def test_bursty_loss_hurts_more() -> None:
    assert float(q.ie_eff(2.0, "g711", burst_r=2.0)) > float(q.ie_eff(2.0, "g711"))


@pytest.mark.parametrize(
    ("r", "mos"), [(93.2, 4.409), (80.0, 4.024), (50.0, 2.575), (100.0, 4.5), (-5, 1.0)]
)
def test_mos_mapping(r: float, mos: float) -> None:
    assert float(q.mos_from_r(r)) == pytest.approx(mos, abs=0.001)


def test_mos_is_clamped_at_one_where_the_raw_polynomial_dips() -> None:
    raw = 1 + 0.035 * 4.2 + 7e-6 * 4.2 * (4.2 - 60) * (100 - 4.2)
    assert raw < 1.0
    assert float(q.mos_from_r(4.2)) == 1.0


def test_baresip_pseudo_mos_shares_only_the_r_to_mos_mapping() -> None:
    # baresip's "pseudo MOS": R = 93.2 - Leff/40 (Leff < 160) or 93.2 - (Leff - 120)/10, with
    # Leff = rtt + 2·jitter + 10, minus 2.5 per % loss. That is not G.107, so R is not compared;
    # its R → MOS step is G.107 Annex B, the same as ours except our clamp at 1.
    path = shared_path("vectors/pseudo_mos_baresip.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        r, expected = float(row["expected_r_factor"]), float(row["expected_mos"])
        if expected >= 1.0:
            assert float(q.mos_from_r(r)) == pytest.approx(expected, abs=0.001), row
        else:
            assert float(q.mos_from_r(r)) == 1.0


def test_mouth_to_ear_delay_formula() -> None:
    # 100 ms RTT, 5 ms jitter → buffer max(20, 4·5) = 20, G.711 20 ms packet: 50 + 20 + 20
    assert float(q.mouth_to_ear_delay_ms(100, 5)) == pytest.approx(90.0)
    # 30 ms jitter → buffer 120 ms; G.729A adds 20 + 5 ms
    assert float(q.mouth_to_ear_delay_ms(100, 30, "g729a")) == pytest.approx(50 + 120 + 25)
    assert float(q.mouth_to_ear_delay_ms(0, 1000)) == pytest.approx(0 + 200 + 20)


def test_late_packets_count_as_loss() -> None:
    assert float(q.late_loss_ratio(0)) == 0.0
    assert float(q.late_loss_ratio(12)) == pytest.approx(0.5 * math.exp(-1.5 * 48 / 12))
    assert float(q.effective_loss_pct(1.0, 12)) > 1.0


def test_path_composition() -> None:
    assert float(q.compose_rtt_ms(100, 60, relay_delay_ms=0.5)) == pytest.approx(161.0)
    assert float(q.compose_jitter_ms(3, 4)) == pytest.approx(5.0)
    assert float(q.compose_loss_pct(1, 2)) == pytest.approx(100 * (1 - 0.99 * 0.98))


def test_unknown_codec_is_named() -> None:
    with pytest.raises(ValueError, match="unknown codec 'amr'"):
        q.codec_of("amr")


def test_codecs_rank_as_g113_says() -> None:
    args = (150.0, 5.0, 1.0)
    assert q.mos(*args, codec="g711") > q.mos(*args, codec="g729a")
    assert q.mos(*args, codec="g711") > q.mos(*args, codec="g711_noplc")


stats = st.tuples(
    st.floats(0, 2000), st.floats(0, 300), st.floats(0, 100), st.sampled_from(sorted(q.CODECS))
)


@settings(max_examples=200, deadline=None)
@given(stats, st.floats(0, 500), st.floats(0, 100), st.floats(0, 100))
def test_mos_never_rises_with_more_delay_loss_or_jitter(
    s: tuple[float, float, float, str], more_rtt: float, more_jit: float, more_loss: float
) -> None:
    rtt, jit, loss, codec = s
    base = q.mos(rtt, jit, loss, codec)
    assert 1.0 <= base <= 4.5
    assert q.mos(rtt + more_rtt, jit, loss, codec) <= base + 1e-9
    assert q.mos(rtt, jit + more_jit, loss, codec) <= base + 1e-9
    assert q.mos(rtt, jit, min(100.0, loss + more_loss), codec) <= base + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    st.lists(stats.filter(lambda s: s[1] <= 250), min_size=1, max_size=20),
)
def test_fast_scorer_matches_the_exact_formula(rows: list[tuple[float, float, float, str]]) -> None:
    for codec in {r[3] for r in rows}:
        rtt = np.array([[r[0] for r in rows]])
        jit = np.array([[r[1] for r in rows]])
        loss = np.array([[r[2] for r in rows]])
        scorer = scorer_for(codec)
        acc = scorer.prepare_access(AccessMatrix(rtt.T, jit.T, loss.T))
        zero = np.zeros((1, 1))
        bb = Backbone(zero, zero, zero, np.ones((1, 1), dtype=bool), {})
        fast = scorer.score(acc, scorer.prepare_backbone(bb, 0))[:, 0]
        exact = q.path_r(rtt[0], jit[0], loss[0], codec)
        # delay grid 0.1 ms (slope < 0.14 R/ms) and jitter grid 0.01 ms keep R within 0.02
        assert np.max(np.abs(fast - exact)) < 0.02
