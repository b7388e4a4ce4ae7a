"""Config validation: a table of invalid files, each with the message it must produce."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from netopt.cli import main
from netopt.config import load_config, parse_config
from netopt.errors import ConfigError
from netopt.validation import parse_model
from probes.base import PROBERS

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "netopt.example.yaml"

BASE: dict[str, Any] = {
    "regions": [{"id": "lagos", "address": "127.0.0.1"}],
    "pops": [
        {"id": "fra", "role": "core", "address": "127.0.0.2"},
        {"id": "jnb", "role": "edge", "address": "127.0.0.3"},
    ],
    "destinations": ["fra"],
    "backbone": [{"a": "jnb", "b": "fra", "rtt_ms": 160}],
    "probes": [{"kind": "icmp", "from": "lagos", "to": ["fra", "jnb"], "timeout_s": 0.5}],
}


def variant(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at a dotted path (list indices as numbers) replaced or deleted."""
    data = copy.deepcopy(BASE)
    parts = path.split(".")
    node: Any = data
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()

INVALID = [
    (variant("pops.1.address", "jnb.example"), "pops[1].address: not an IP address"),
    (variant("pops.0.role", "hub"), "pops[0].role: Input should be 'edge', 'relay' or 'core'"),
    (variant("pops.0.role", DELETE), "pops[0].role: required key missing"),
    (variant("regions.0.id", DELETE), "regions[0].id: required key missing"),
    (variant("pops.0.colour", "red"), "pops[0].colour: unknown key"),
    (variant("surprise", 1), "surprise: unknown key"),
    (variant("pops.1.id", "fra"), "pops[1].id: duplicate id 'fra' (also pops[0])"),
    (variant("destinations", ["ams"]), "destinations[0]: unknown pop 'ams'"),
    (variant("backbone.0.b", "ams"), "backbone[0].b: unknown pop 'ams'"),
    (variant("probes.0.from", "nairobi"), "probes[0].from: unknown site 'nairobi'"),
    (variant("probes.0.to", ["fra", "ams"]), "probes[0].to[1]: unknown site 'ams'"),
    (variant("probes.0.to", ["lagos"]), "probes[0].to[0]: a site cannot probe itself"),
    (variant("probes.0.kind", "carrier-pigeon"), "probes[0].kind: unknown probe kind"),
    (
        variant("probes.0.timeout_s", 1.0),
        "probes[0]: timeout_s (1.0) must be shorter than interval_s (1.0)",
    ),
    (variant("probes.0.interval_s", -1), "probes[0].interval_s: Input should be greater than 0"),
    (variant("backbone.0.loss_pct", 150), "backbone[0].loss_pct: Input should be less than"),
    (variant("regions.0.prefixes", ["41.58.0.0/33"]), "regions[0].prefixes: '41.58.0.0/33'"),
    (variant("regions.0.e164", ["234"]), "regions[0].e164: '234' is not an E.164 prefix"),
    (variant("pops.0.sip_uri", "http://x"), "pops[0].sip_uri: must start with 'sip:'"),
    (variant("api", {"listen": "localhost"}), "api.listen: expected HOST:PORT"),
    (variant("store", {"url": "mysql://x"}), "store.url: unknown store 'mysql': use sqlite:///"),
    (variant("store", {"url": "netopt.db"}), "store.url: unknown store 'netopt.db'"),
    (variant("store", {"url": "postgresql://"}), "store.url: postgresql:// needs at least a host"),
    (variant("store", {"pool_size": 1}), "store.pool_size: Input should be greater than"),
    (variant("ha", {"lease_interval_s": 0.05}), "ha.lease_interval_s: Input should be greater"),
    (variant("ha", {"lease_interval_s": 600}), "ha.lease_interval_s: Input should be less"),
    (variant("ha", {"name": "a b"}), "ha.name: String should match pattern"),
    (variant("ha", {"lease_s": 1}), "ha.lease_s: unknown key"),
    (variant("pops", []), "pops: Tuple should have at least 1 item"),
    (variant("probing", {"workers": 0}), "probing.workers: Input should be greater than"),
    (variant("probing", {"workers": "two"}), "probing.workers: Input should be a valid integer"),
    (variant("probing", {"cores": 2}), "probing.cores: unknown key"),
]


@pytest.mark.parametrize(("data", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_config_names_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "bad.yaml")
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    data = variant("destinations", ["ams"])
    data["probes"][0]["from"] = "nairobi"
    with pytest.raises(ConfigError) as info:
        parse_config(data, "bad.yaml")
    assert len(info.value.problems) == 2


def test_valid_base_and_defaults() -> None:
    cfg = parse_config(BASE)
    assert cfg.store.url == "sqlite:///netopt.db"
    assert cfg.store.pool_size == 4
    pg = parse_config(variant("store", {"url": "postgresql://netopt@127.0.0.1:5432/netopt"}))
    assert pg.store.url.startswith("postgresql://")
    assert cfg.api.port == 8080
    assert cfg.probes[0].interval_s == 1.0
    topo = cfg.to_topology()
    assert [p.id for p in topo.pops] == ["fra", "jnb"]
    assert topo.destinations == ("fra",)


MINIMAL: dict[str, Any] = {  # every optional key left out
    "regions": [{"id": "lagos", "address": "127.0.0.1"}],
    "pops": [{"id": "fra", "role": "core", "address": "127.0.0.2"}],
    "destinations": ["fra"],
    "probes": [{"kind": "icmp", "from": "lagos", "to": ["fra"]}],
}


def test_every_optional_key_left_out_is_valid_and_sensible() -> None:
    cfg = parse_config(MINIMAL)
    (probe,) = cfg.probes
    assert (probe.interval_s, probe.count, probe.timeout_s) == (1.0, 5, 0.5)
    assert (probe.count - 1) * probe.packet_interval_s + probe.timeout_s < probe.interval_s
    assert cfg.store.url == "sqlite:///netopt.db" and cfg.api.listen == "127.0.0.1:8080"


@pytest.mark.parametrize("kind", sorted(k for k in PROBERS if k != "tcp_connect"))
def test_a_group_naming_only_kind_from_to_is_valid(kind: str) -> None:
    """tcp_connect alone needs a port: there is no TCP port a default could guess."""
    data = copy.deepcopy(MINIMAL)
    data["probes"] = [{"kind": kind, "from": "lagos", "to": ["fra"]}]
    (probe,) = parse_config(data).probes
    assert 0 < probe.timeout_s < probe.interval_s


def test_an_agent_config_with_every_optional_key_left_out_is_valid() -> None:
    from netopt.agent.run import AgentConfig

    data = {
        "id": "lagos-1", "site": "lagos",
        "controller": {"url": "http://127.0.0.1:8080", "token": "a-token-of-16-chars"},
        "targets": [{"id": "fra", "address": "127.0.0.2"}],
        "probes": [{"kind": "icmp", "to": ["fra"]}],
    }  # fmt: skip
    (probe,) = parse_model(AgentConfig, data, "agent.yaml").probes
    assert (probe.interval_s, probe.timeout_s) == (1.0, 0.5)


@pytest.mark.parametrize(
    ("interval_s", "timeout_s"), [(0.5, 0.25), (1.5, 0.75), (2.0, 1.0), (10.0, 1.0)]
)
def test_left_out_timeout_follows_the_interval(interval_s: float, timeout_s: float) -> None:
    data = copy.deepcopy(MINIMAL)
    data["probes"][0]["interval_s"] = interval_s
    assert parse_config(data).probes[0].timeout_s == timeout_s


def test_a_bad_interval_is_named_not_the_derived_timeout() -> None:
    data = copy.deepcopy(MINIMAL)
    data["probes"][0]["interval_s"] = "soon"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert [p.split(":")[0] for p in info.value.problems] == ["probes[0].interval_s"]


def test_config_is_frozen() -> None:
    cfg = parse_config(BASE)
    with pytest.raises(ValueError, match="frozen"):
        cfg.pops[0].id = "x"  # type: ignore[misc]


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert {r.id for r in cfg.regions} == {"lagos"}


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pops:\n  - {id: fra, role: core\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pops:\n  - {id: fra, role: core, address: 127.0.0.2}\n"
        "  - {id: jnb, role: edge, address: not-an-ip}\ndestinations: [fra]\n"
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "pops[1].address: not an IP address" in err


def test_round_must_fit_its_interval() -> None:
    data = variant("probes.0.count", 30)  # 29 × 20 ms + 0.5 s > 1 s
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any("a round lasts" in p for p in info.value.problems)


def test_a_command_imports_only_its_own_module() -> None:
    from netopt.cli import build_parser

    parser = build_parser(["check-config", "x.yaml"])
    names = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(names) == {"version", "serve", "check-config", "agent", "db"}
    assert "lab" in build_parser(["--help"])._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def test_probe_options_reach_the_prober() -> None:
    from netopt.daemon.probing import jobs_from_config

    data = variant("probes.0.kind", "voice")
    data["probes"][0] |= {"codec": "g729", "clock_synced": True, "count": 10, "port": 862}
    (job, _) = jobs_from_config(parse_config(data))
    assert job.options.codec == "g729" and job.options.clock_synced
    assert job.target.port == 862
    with pytest.raises(ConfigError, match=r"probes\[0\]\.codec"):
        parse_config(variant("probes.0.codec", "speex"))


def test_planner_kinds_are_probe_kinds() -> None:
    assert parse_config(BASE).planner.kinds == ("voice", "stamp", "udp_echo", "icmp")
    with pytest.raises(ConfigError, match=r"planner\.kinds: unknown probe kind 'ping'"):
        parse_config({**BASE, "planner": {"kinds": ["ping"]}})
