"""The assess campaign on loopback against real neighbours: a STAMP reflector and Kamailio
answering SIP OPTIONS; a PoP with neither is reported; stopping early gives a partial result."""

from __future__ import annotations

import asyncio
import io

import pytest

from netopt.assess.analysis import analyse
from netopt.assess.campaign import Campaign, sip_target
from netopt.assess.live import PlainDisplay, RichDisplay, rows
from netopt.config import Config, parse_config
from tests.integration.test_probe_sip_tcp_voice import kamailio, reflector  # noqa: F401

pytestmark = pytest.mark.neighbour


def _config(sip_port: int) -> Config:
    return parse_config({
        "regions": [{"id": "site"}],
        "pops": [
            {"id": "fra", "role": "core", "address": "127.0.0.1",
             "sip_uri": f"sip:127.0.0.1:{sip_port};transport=udp"},
            {"id": "mute", "role": "edge", "address": "127.0.0.3"},
        ],
        "destinations": ["fra"],
        "backbone": [{"a": "fra", "b": "mute", "rtt_ms": 1}],
    })  # fmt: skip


def test_sip_target_parsing() -> None:
    t = sip_target("sip:198.18.0.1:5070;transport=udp", "fra")
    assert (t.address, t.port, t.name) == ("198.18.0.1", 5070, "fra")
    assert sip_target("sip:198.18.0.1", "x").port == 5060


async def test_campaign_probes_every_kind_and_reports_the_silent(kamailio, reflector) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sip_port, _ = kamailio
    cfg = _config(sip_port)
    out = io.StringIO()
    display = PlainDisplay(out)
    campaign = Campaign(cfg, "site", 5.0, stamp_port=reflector, on_cycle=display.update)
    collected = await campaign.run(asyncio.Event())
    assert not collected.partial and collected.duration_s >= 4.5
    kinds = {(r.target.name, r.kind) for r in collected.rounds}
    assert {("fra", "icmp"), ("fra", "stamp"), ("fra", "voice"), ("fra", "sip_options")} <= kinds
    assert collected.notes[("mute", "stamp")].startswith("no answer")
    assert "cycle 1:" in out.getvalue() and "ETA" in out.getvalue()
    report = analyse(cfg, collected, codec="g711", now_wall_s=0.0, version="t")
    fra = next(p for p in report.pops if p.pop == "fra")
    sip = next(k for k in fra.kinds if k.kind == "sip_options")
    assert sip.answered and sip.statuses == {"200": sip.received}
    assert fra.path is not None and fra.path.kind == "voice"
    assert report.verdict == "not_needed"
    table = rows(campaign.progress)
    assert any(r[0] == "mute" and "no answer" in r[5] for r in table)
    rich = RichDisplay("site")
    rich.update(campaign.progress)  # renders without a terminal attached


async def test_stop_gives_a_partial_result(reflector) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    cfg = _config(9)  # nothing answers SIP on port 9: reported, not fatal
    stop = asyncio.Event()
    campaign = Campaign(cfg, "site", 60.0, stamp_port=reflector)
    asyncio.get_running_loop().call_later(1.0, stop.set)
    collected = await campaign.run(stop)
    assert collected.partial and collected.duration_s < 10
    assert collected.duration_planned_s == 60.0
