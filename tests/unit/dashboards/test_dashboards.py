"""Dashboards as code: golden JSON, Grafana schemas, and every PromQL name is a real metric."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt import cli
from netopt.config import parse_config
from netopt.daemon.metrics import Metrics
from netopt.dashboards import build as dashboards
from netopt.dashboards import cli as dashboards_cli
from netopt.push.pusher import make_pushers
from tests.shared_data import shared_path
from tests.unit.test_config import BASE

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "dashboards" / "rules" / "netopt.rules.yml"
# series Prometheus itself adds to every scrape and evaluation
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "e"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression reads (function names, labels, keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\$\{?\w+\}?", "", text)  # template variables
    text = _GROUPING.sub("", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}


def exported_names() -> set[str]:
    """Every series name the daemon's registry exposes, by metric type."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created")}  # fmt: skip
    names = set()
    metrics = Metrics()
    with_proxy = {**BASE, "proxies": [{"kind": "kamailio", "id": "core", "dispatcher_file": "d",
                                       "rpc_url": "http://127.0.0.1:1/RPC"}]}  # fmt: skip
    make_pushers(parse_config(with_proxy), metrics.registry)  # netopt_push_total
    for family in metrics.registry.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def built() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.build_all().items()}


def rule_exprs() -> Iterator[tuple[str, str]]:
    """(record or alert name, expr) for every rule in the rules file."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule["alert"], rule["expr"]


def test_metric_names_parser() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (src, dst, le) (rate(netopt_probe_rtt_seconds_bucket"
        '{src=~"$src", dst="a"}[$__rate_interval]))) > 1e-3 and on (src) up offset 5m'
    )
    assert metric_names(expr) == {"netopt_probe_rtt_seconds_bucket", "up"}
    assert metric_names("1 - sum(rate(a_total[5m])) / sum(rate(b_total[5m]))") == {
        "a_total", "b_total",
    }  # fmt: skip
    assert metric_names("path:netopt_loss:ratio5m > 0.012") == {"path:netopt_loss:ratio5m"}


def test_committed_json_is_fresh() -> None:
    assert dashboards.stale(dashboards.OUT_DIR) == [], "run `netopt dashboards build`"


def run(*argv: str) -> int:
    """`netopt dashboards ARGV` through the subcommand's own parser (as cli.py registers it)."""
    parser = argparse.ArgumentParser(prog="netopt")
    dashboards_cli.register(parser.add_subparsers())
    args = parser.parse_args(["dashboards", *argv])
    status: int = args.func(args)
    return status


def test_check_reports_stale_and_build_fixes_it(tmp_path: Path, capsys: Any) -> None:
    assert run("check", "--dir", str(tmp_path)) == 1
    assert "missing" in capsys.readouterr().err
    assert run("build", "--out", str(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dashboards.build_all())
    assert run("check", "--dir", str(tmp_path)) == 0
    path = tmp_path / "netopt-paths.json"
    path.write_text(path.read_text().replace("netopt — paths", "netopt - paths"))
    assert run("check", "--dir", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "netopt-paths.json: 2 changed lines" in err and "stale" in err


def test_cli_registers_dashboards() -> None:
    try:
        args = cli.build_parser().parse_args(["dashboards", "check"])
    except SystemExit:
        pytest.skip("`netopt dashboards` is not registered in netopt/cli/__init__.py yet")
    assert args.func is dashboards_cli.run_check


def test_dashboards_validate_against_grafana_schemas() -> None:
    from jsonschema import Draft7Validator

    grafana = shared_path("grafana")
    schema = json.loads((grafana / "dashboard.jsonschema.json").read_text())
    query = Draft7Validator(json.loads((grafana / "prometheus.jsonschema.json").read_text()))
    kinds = set()
    for name, dash in built().items():
        errors = [e.message for e in Draft7Validator(schema).iter_errors(dash)]
        assert errors == [], name
        for panel in dash["panels"]:
            kind = panel["type"].replace("-", "")
            kinds.add(kind)
            defs = json.loads((grafana / f"{kind}.jsonschema.json").read_text())["definitions"]
            where = f"{name} / {panel['title']}"
            opts = Draft7Validator({"$ref": "#/definitions/Options", "definitions": defs})
            assert [e.message for e in opts.iter_errors(panel["options"])] == [], where
            custom = panel["fieldConfig"]["defaults"].get("custom")
            if "FieldConfig" in defs and custom is not None:
                fc = Draft7Validator({"$ref": "#/definitions/FieldConfig", "definitions": defs})
                assert [e.message for e in fc.iter_errors(custom)] == [], where
            for t in panel["targets"]:
                assert [e.message for e in query.iter_errors(t)] == [], where
    assert {"timeseries", "stat", "table", "statetimeline", "heatmap", "geomap"} <= kinds


def test_a_broken_panel_fails_the_schema() -> None:
    from jsonschema import Draft7Validator

    grafana = shared_path("grafana")
    schema = json.loads((grafana / "dashboard.jsonschema.json").read_text())
    dash = dashboards.regions()
    dash["panels"][0]["gridPos"]["w"] = 25
    assert list(Draft7Validator(schema).iter_errors(dash))


def test_every_queried_metric_is_exported() -> None:
    exported = exported_names()
    assert "netopt_probe_rtt_seconds_bucket" in exported
    assert "netopt_probe_packets_sent_total" in exported
    for name, dash in built().items():
        for expr in dashboards.iter_exprs(dash):
            names = metric_names(expr)
            assert names, expr
            assert names <= exported | PROMETHEUS_SERIES, (name, expr, names - exported)
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?, *(\w+)\)", var["query"])
                assert m and m.group(1) in exported, var["query"]


def test_rules_read_exported_metrics_or_recorded_series() -> None:
    exported = exported_names()
    rules = list(rule_exprs())
    recorded = {name for name, _ in rules if ":" in name}
    assert recorded, "no recording rules"
    for name, expr in rules:
        names = metric_names(expr)
        assert names, (name, expr)
        assert names <= exported | recorded | PROMETHEUS_SERIES, (name, names - exported)


def test_loss_and_rtt_queries_derive_from_counters_and_histogram() -> None:
    exprs = [e for d in built().values() for e in dashboards.iter_exprs(d)]
    assert any("histogram_quantile(0.9" in e and "_bucket" in e for e in exprs)
    loss = [e for e in exprs if e.startswith("1 - ")]
    assert loss and all(
        re.fullmatch(r"1 - sum by \(src, dst\) \(rate\(netopt_probe_packets_received_total"
                     r"\{.*\}\[.*\]\)\) / sum by \(src, dst\) "
                     r"\(rate\(netopt_probe_packets_sent_total\{.*\}\[.*\]\)\)", e)
        for e in loss
    ), loss  # fmt: skip
    assert any("increase(netopt_route_changes_total" in e for e in exprs)


def test_panels_do_not_overlap_and_ids_are_unique() -> None:
    for name, dash in built().items():
        cells: dict[tuple[int, int], str] = {}
        for p in dash["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (name, p["title"], cells.get((x, y)))
                    cells[(x, y)] = p["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(set(ids)) == len(ids), name
    assert len({d["uid"] for d in built().values()}) == len(built())
