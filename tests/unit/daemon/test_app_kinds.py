"""Only the probe kinds that measure a path (planner.kinds) feed planning and liveness."""

from __future__ import annotations

import copy
from pathlib import Path

from netopt.config import parse_config
from netopt.daemon.wiring import Daemon
from netopt.store import RoundRecord
from tests.unit.test_config import BASE

NOW_S = 1_800_000_000.0


def rnd(kind: str, dst: str, received: int, rtt_ms: float | None) -> RoundRecord:
    t = int((NOW_S - 1) * 1e9)
    return RoundRecord(t, "lagos", dst, kind, 5, received, rtt_ms, rtt_ms, rtt_ms, rtt_ms,
                       rtt_ms, 0.5 if rtt_ms else None)  # fmt: skip


def daemon_probing_jnb_with(kind: str, tmp_path: Path) -> Daemon:
    """The BASE world plus one `kind` probe group from lagos to jnb, on a fixed clock."""
    data = copy.deepcopy(BASE)
    data["store"] = {"url": f"sqlite:///{tmp_path / 'n.db'}"}
    data["probes"].append(
        {"kind": kind, "from": "lagos", "to": ["jnb"], "port": 5060, "timeout_s": 0.5}
    )
    return Daemon(parse_config(data), wall_clock=lambda: NOW_S, mono_clock=lambda: 100.0)


def test_tcp_and_sip_rounds_do_not_plan_or_kill_a_pop(tmp_path: Path) -> None:
    daemon = daemon_probing_jnb_with("tcp_connect", tmp_path)
    try:
        daemon.add_round(rnd("icmp", "jnb", 5, 60.0))
        daemon.add_round(rnd("tcp_connect", "jnb", 0, None))  # refused: says nothing of the path
        daemon.add_round(rnd("icmp", "fra", 5, 120.0))
        stats = {(s.src, s.dst): s for s in daemon.path_stats()}
        assert stats[("lagos", "jnb")].loss_pct == 0 and stats[("lagos", "jnb")].rtt_ms == 60
        assert daemon.pop_alive() == {"jnb": True, "fra": True}
        # the icmp round of jnb was the last word on that path; an icmp silence is not
        daemon.add_round(rnd("icmp", "jnb", 0, None))
        assert daemon.pop_alive()["jnb"] is False
    finally:
        daemon.store.close()


def test_a_pop_whose_sip_service_is_down_is_dead_though_it_answers_pings(tmp_path: Path) -> None:
    daemon = daemon_probing_jnb_with("sip_options", tmp_path)
    try:
        daemon.add_round(rnd("icmp", "jnb", 5, 60.0))
        daemon.add_round(rnd("icmp", "fra", 5, 120.0))
        daemon.add_round(rnd("sip_options", "jnb", 5, 61.0))  # 200 OK
        assert daemon.pop_alive() == {"jnb": True, "fra": True}  # fra: SIP not probed
        daemon.add_round(rnd("sip_options", "jnb", 0, None))  # refused / 503 / silence
        assert daemon.pop_alive() == {"jnb": False, "fra": True}
        stats = {(s.src, s.dst): s for s in daemon.path_stats()}
        assert stats[("lagos", "jnb")].loss_pct == 0  # the path itself is fine
    finally:
        daemon.store.close()
