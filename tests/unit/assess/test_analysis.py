"""Assessment analysis on synthetic campaigns: verdicts, MOS before/after, loss CI, placement."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from netopt.assess.analysis import analyse, pool
from netopt.assess.compare import compare
from netopt.assess.model import Report, report_schema
from netopt.assess.render_html import render_html
from netopt.assess.render_md import render_md
from netopt.errors import NetoptError
from tests.unit.assess.synthetic import START_S, collected, config, rounds


def _report(results, cfg=None, **kw) -> Report:  # type: ignore[no-untyped-def]
    return analyse(cfg or config(), collected(results, **kw), codec="g711",
                   now_wall_s=START_S + 70, version="test")  # fmt: skip


def lossy_direct() -> Report:
    return _report(
        rounds("fra", "voice", rtt_ms=130, jitter_ms=3, loss=0.04)
        + rounds("los", "voice", rtt_ms=3, jitter_ms=1, loss=0.0)
        + rounds("fra", "icmp", rtt_ms=130, jitter_ms=3, loss=0.04, per_round=10)
    )


def test_lossy_direct_clean_edge_is_needed_via_the_edge() -> None:
    rep = lossy_direct()
    assert rep.verdict == "needed"
    (v,) = rep.verdicts
    assert (v.dest, v.acceleration, v.via) == ("fra", "needed", "los")
    assert v.mos_before is not None and v.mos_after is not None
    assert v.mos_before < 4.0 <= v.mos_after
    assert any("loss" in r and "> 1.2 %" in r for r in v.reasons)
    assert "via los" in rep.summary[0] and "→" in rep.summary[0]
    (route,) = rep.routes
    assert route.entry_pop == "los" and route.path == ("lagos", "los", "fra")


def test_clean_direct_is_not_needed() -> None:
    rep = _report(
        rounds("fra", "voice", rtt_ms=130, jitter_ms=1, loss=0.0)
        + rounds("los", "voice", rtt_ms=3, jitter_ms=1, loss=0.0)
    )
    assert rep.verdict == "not_needed"
    (v,) = rep.verdicts
    assert v.via is None and v.mos_before == v.mos_after and v.mos_before > 4.0
    assert rep.routes[0].kind == "direct"


def test_insufficient_suggests_a_local_edge_from_placement() -> None:
    far = {"id": "hkg", "role": "edge", "address": "198.18.0.12"}
    cfg = config((far,))
    cfg = cfg.model_copy(update={"backbone": (
        *cfg.backbone,
        cfg.backbone[0].model_copy(update={"a": "fra", "b": "hkg", "rtt_ms": 200.0}),
    )})  # fmt: skip
    rep = _report(
        rounds("fra", "voice", rtt_ms=180, jitter_ms=3, loss=0.05)
        + rounds("los", "voice", rtt_ms=6, jitter_ms=2, loss=0.05)
        + rounds("hkg", "voice", rtt_ms=300, jitter_ms=1, loss=0.0),
        cfg,
    )
    assert rep.verdict == "insufficient"
    s = rep.verdicts[0].suggestion
    assert s is not None and s.pop == "lagos-edge"
    assert s.lifted == ("fra",) and s.expected_mos is not None and s.expected_mos >= 4.0
    assert "private line" in s.assumption


def test_loss_confidence_interval_brackets_the_loss() -> None:
    rep = lossy_direct()
    fra = next(p for p in rep.pops if p.pop == "fra")
    voice = next(k for k in fra.kinds if k.kind == "voice")
    lo, hi = voice.loss_ci95_pct
    assert lo < voice.loss_pct < hi
    assert 2.0 < voice.loss_pct < 6.5
    assert voice.bursts.count > 0 and voice.sent == 2000
    assert fra.path is not None and fra.path.kind == "voice"  # voice before icmp
    assert set(fra.mos) == {"g711", "g729a", "opus"}
    assert fra.mos["g729a"] < fra.mos["g711"]  # type: ignore[operator]


def test_pool_renumbers_sequences_across_rounds() -> None:
    merged = pool(rounds("fra", "icmp", rtt_ms=10, jitter_ms=0, loss=0, n_rounds=3, per_round=5))
    assert [s.seq for s in merged.samples] == list(range(15))


def test_unanswering_pop_is_reported_not_fatal() -> None:
    rep = _report(
        rounds("fra", "voice", rtt_ms=130, jitter_ms=1, loss=0.0)
        + rounds("los", "icmp", rtt_ms=3, jitter_ms=1, loss=0.0, answers=False)
    )
    los = next(p for p in rep.pops if p.pop == "los")
    assert not los.answered and los.path is None
    assert any("No answer from: los" in s for s in rep.summary)
    assert rep.verdict == "not_needed"


def test_partial_is_said() -> None:
    rep = _report(rounds("fra", "voice", rtt_ms=130, jitter_ms=1, loss=0.0), partial=True)
    assert rep.partial and rep.duration_s == 30.0
    assert any(s.startswith("Partial run") for s in rep.summary)
    assert "Partial report" in render_html(rep) and "PARTIAL" in render_md(rep)


def test_report_json_validates_against_the_schema() -> None:
    data = json.loads(lossy_direct().model_dump_json())
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    bad = dict(data, verdict="maybe")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(report_schema()).validate(bad)


def test_routes_are_plan_json_route_objects() -> None:
    route = json.loads(lossy_direct().model_dump_json())["routes"][0]
    keys = {"region", "dest", "kind", "path", "entry_pop", "expected", "acceleration",
            "reason", "alternatives", "skipped"}  # fmt: skip
    assert set(route) == keys
    assert set(route["expected"]) == {"rtt_ms", "jitter_ms", "loss_pct", "mos"}


def test_renderings_state_the_thresholds() -> None:
    rep = lossy_direct()
    for text in (render_md(rep), render_html(rep)):
        for needle in ("320 ms", "1.2 %", "12 ms", "G.114", "150 ms", "E-model", "via los"):
            assert needle in text
    html = render_html(rep)
    assert html.count("<svg") == 4
    assert not re.search(r"(href|src)=[\"'](https?:|//)", html)  # no external assets
    assert "<link" not in html and "<script" not in html


def test_compare_before_after() -> None:
    before = lossy_direct()
    after = _report(
        rounds("fra", "voice", rtt_ms=130, jitter_ms=1, loss=0.0)
        + rounds("los", "voice", rtt_ms=3, jitter_ms=1, loss=0.0)
    )
    text = compare(before, after)
    assert "verdict: needed → not_needed" in text
    assert "fra: RTT" in text and "loss" in text and "(-" in text
    other = after.model_copy(update={"site": "nairobi"})
    with pytest.raises(NetoptError, match="different sites"):
        compare(before, other)


def test_nothing_collected_is_unmeasured_not_a_crash() -> None:
    rep = _report([], partial=True)
    assert rep.verdict == "unmeasured" and all(not p.answered for p in rep.pops)
    assert "Partial report" in render_html(rep) and "unmeasured" in render_md(rep)
