"""Per-kind probe config rules: what the daemon would otherwise get wrong at run time.

A voice round is paced at 20 ms whatever packet_interval_s says, so its length check uses
20 ms; tcp_connect has no default port; sip_options speaks UDP or TCP only; two probe groups
with the same (kind, from, to) would collapse into one scheduled job, so they are refused.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from netopt.config import parse_config
from netopt.daemon.probing import jobs_from_config
from netopt.errors import ConfigError

BASE: dict[str, Any] = {
    "regions": [{"id": "lagos", "address": "127.0.0.1"}],
    "pops": [
        {"id": "fra", "role": "core", "address": "127.0.0.2"},
        {"id": "jnb", "role": "edge", "address": "127.0.0.3"},
    ],
    "destinations": ["fra"],
    "probes": [],
}


def with_probes(*probes: dict[str, Any], **top: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["probes"] = [{"from": "lagos", "to": ["fra"], **p} for p in probes]
    data.update(top)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_voice_round_length_counts_20_ms_packets() -> None:
    # 50 packets at a claimed 1 ms would be 0.05 s; the stream really takes 0.98 s
    bad = with_probes({"kind": "voice", "port": 862, "count": 50, "packet_interval_s": 0.001,
                       "timeout_s": 0.5, "interval_s": 1.0})  # fmt: skip
    [msg] = problems(bad)
    assert msg.startswith("probes[0]: ") and "(count-1)*20 ms + timeout_s = 1.48 s" in msg
    ok = with_probes({"kind": "voice", "count": 50, "timeout_s": 0.5, "interval_s": 1.5})
    [job] = jobs_from_config(parse_config(ok))
    assert job.options.count == 50 and job.target.port is None  # the prober's default: 862


def test_icmp_round_length_still_uses_packet_interval() -> None:
    cfg = parse_config(with_probes({"kind": "icmp", "count": 50, "packet_interval_s": 0.001,
                                    "timeout_s": 0.5, "interval_s": 1.0}))  # fmt: skip
    assert cfg.probes[0].count == 50


def test_tcp_connect_needs_a_port() -> None:
    [msg] = problems(with_probes({"kind": "tcp_connect", "timeout_s": 0.5}))
    assert msg == "probes[0]: kind tcp_connect needs a port (the TCP port to connect to)"
    cfg = parse_config(with_probes({"kind": "tcp_connect", "port": 443, "timeout_s": 0.5}))
    assert jobs_from_config(cfg)[0].target.port == 443


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sip_options_transports(transport: str) -> None:
    cfg = parse_config(with_probes({"kind": "sip_options", "transport": transport,
                                    "timeout_s": 0.5}))  # fmt: skip
    assert jobs_from_config(cfg)[0].options.transport == transport


def test_sip_options_refuses_icmp_transport() -> None:
    [msg] = problems(with_probes({"kind": "sip_options", "transport": "icmp", "timeout_s": 0.5}))
    assert msg == "probes[0]: kind sip_options: transport must be udp or tcp, not 'icmp'"


def test_same_kind_source_and_target_twice_is_refused() -> None:
    data = with_probes(
        {"kind": "sip_options", "to": ["fra", "jnb"], "timeout_s": 0.5},
        {"kind": "icmp", "to": ["fra"], "timeout_s": 0.5},
        {"kind": "sip_options", "to": ["fra"], "transport": "tcp", "timeout_s": 0.5},
    )
    assert problems(data) == [
        "probes[2]: sip_options from 'lagos' to 'fra' is already probed by probes[0]"
    ]
    within = with_probes({"kind": "icmp", "to": ["jnb", "jnb"], "timeout_s": 0.5})
    assert problems(within) == [
        "probes[0]: icmp from 'lagos' to 'jnb' is already probed by probes[0]"
    ]


def test_every_kind_becomes_a_job_with_its_options() -> None:
    kinds: dict[str, dict[str, Any]] = {
        "icmp": {}, "stamp": {"port": 8620, "clock_synced": True}, "udp_echo": {"port": 7},
        "voice": {"codec": "g729", "count": 25}, "tcp_connect": {"port": 443},
        "sip_options": {"transport": "tcp"}, "traceroute": {"transport": "icmp"},
    }  # fmt: skip
    data = with_probes(*({"kind": k, "timeout_s": 0.5, **extra} for k, extra in kinds.items()))
    jobs = {j.kind: j for j in jobs_from_config(parse_config(data))}
    assert set(jobs) == set(kinds)
    assert jobs["stamp"].target.port == 8620 and jobs["stamp"].options.clock_synced
    assert jobs["voice"].options.codec == "g729" and jobs["voice"].options.dscp == 46
    assert jobs["sip_options"].options.transport == "tcp"
    assert len({j.job_id for j in jobs.values()}) == len(kinds)


def test_traceroute_section_defaults_and_limits() -> None:
    cfg = parse_config(with_probes())
    t = cfg.traceroute
    assert t.enabled and t.loss_pct == 1.2 and t.cooldown_s == 300 and t.max_hops == 16
    [msg] = problems(with_probes(traceroute={"max_hops": 0}))
    assert msg.startswith("traceroute.max_hops: ")
    [msg] = problems(with_probes(traceroute={"transport": "sctp"}))
    assert msg.startswith("traceroute.transport: ")
    [msg] = problems(with_probes(traceroute={"colour": "red"}))
    assert msg == "traceroute.colour: unknown key"
