"""Preview internals without a Prometheus: variables, answers (good and garbage), drawing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from netopt import cli
from netopt.dashboards import build as dashboards
from netopt.dashboards.plots import merged_rows
from netopt.dashboards.preview import (
    Prometheus,
    fill,
    parse_answer,
    parse_duration_s,
    preview_all,
)
from netopt.dashboards.results import Result, Series, Window
from netopt.errors import NetoptError

WINDOW = Window(end_s=1_800_000_000.0, range_s=900)


def test_fill_sets_grafana_variables_and_all_but_keeps_label_replace() -> None:
    expr = 'rate(x{src=~"$src", j=~"${job}"}[$__rate_interval])'
    expr += ' + label_replace(y, "a", "$1", "b", "(.*)")'
    assert fill(expr, WINDOW) == (
        'rate(x{src=~".*", j=~".*"}[28s]) + label_replace(y, "a", "$1", "b", "(.*)")'
    )
    assert WINDOW.step_s == 7 and WINDOW.grafana_vars()["$__range"] == "900s"
    assert parse_duration_s("15m") == 900
    with pytest.raises(NetoptError, match="not a duration"):
        parse_duration_s("15 minutes")


def test_answers_parse_and_garbage_is_a_value_error() -> None:
    series = {"metric": {"__name__": "m", "src": "a"}, "values": [[1, "0.5"], [2, "NaN"]]}
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": [series]}}
    (s,) = parse_answer(matrix)
    assert s.labels == {"src": "a"} and s.times_s == (1.0, 2.0) and s.values[0] == 0.5
    for bad in (None, [], {"status": "error", "error": "parse error"},
                {"status": "success", "data": {"resultType": "string", "result": []}},
                {"status": "success", "data": {"resultType": "vector", "result": [{"x": 1}]}},
                {"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {}, "value": [1, "x"]}]}}):  # fmt: skip
        with pytest.raises(ValueError):
            parse_answer(bad)


def test_tables_merge_on_common_labels() -> None:
    a = Result("A", "", True, (Series({"region": "r", "dest": "d", "kind": "direct"}, (1,), (1,)),))
    b = Result("B", "", True, (Series({"region": "r", "dest": "d"}, (1,), (4.2,)),))
    header, body = merged_rows([a, b])
    assert header == ["dest", "kind", "region", "A", "B"]
    assert body == [["d", "direct", "r", "1", "4.2"]]


class Garbage(BaseHTTPRequestHandler):
    answer = b"<html>not prometheus</html>"
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def garbage() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_broken_prometheus_is_a_clear_error(garbage: str, tmp_path: Path, capsys: Any) -> None:
    built = {n: json.loads(t) for n, t in dashboards.build_all().items()}
    with pytest.raises(NetoptError, match="not JSON"):
        preview_all(Prometheus(garbage), built, tmp_path, WINDOW)
    Garbage.answer, Garbage.status = b'{"status":"error","error":"bad query"}', 400
    try:
        with pytest.raises(NetoptError, match="query failed: bad query"):
            preview_all(Prometheus(garbage), built, tmp_path, WINDOW)
    finally:
        Garbage.answer, Garbage.status = b"<html>not prometheus</html>", 200
    assert cli.main(["dashboards", "preview", "--prometheus", garbage, "--out", str(tmp_path)]) == 1
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    argv = ["dashboards", "preview", "--prometheus", garbage, "--out", str(blocked / "x")]
    Garbage.answer = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    try:
        assert cli.main(argv) == 1  # the answers are fine, the directory cannot be made
        err = capsys.readouterr().err
        assert "cannot write to" in err and "Traceback" not in err, err
    finally:
        Garbage.answer = b"<html>not prometheus</html>"
    with pytest.raises(NetoptError, match="unreachable"):
        Prometheus("http://127.0.0.1:1").get("/api/v1/query", {"query": "up"})


class OnlyUp(BaseHTTPRequestHandler):
    """A Prometheus that knows one metric: `up` (a series with a NaN and a number); every other
    query answers no series."""

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        points = [[1_800_000_000 - 60, "NaN"], [1_800_000_000, "1"]] if query == "up" else []
        if "query_range" in self.path:
            kind, result = "matrix", [{"metric": {"job": "netopt"}, "values": points}]
        else:
            kind, result = "vector", [{"metric": {"job": "netopt"}, "value": p} for p in points[1:]]
        body = {
            "status": "success",
            "data": {"resultType": kind, "result": result if points else []},
        }
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_panels_without_data_are_named(tmp_path: Path, capsys: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), OnlyUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    panel = {
        "id": 3,
        "type": "timeseries",
        "gridPos": {"w": 12, "h": 8},
        "fieldConfig": {"defaults": {}},
    }
    board = {"uid": "b", "panels": [
        {**panel, "title": "Up", "targets": [{"expr": "up", "refId": "A"}]},
        {**panel, "id": 4, "title": "Gone", "targets": [{"expr": "gone", "refId": "A"}]},
        {**panel, "id": 5, "title": "Both", "targets": [{"expr": "gone", "refId": "A"},
                                                        {"expr": "up", "refId": "B"}]},
    ]}  # fmt: skip
    try:
        written = preview_all(Prometheus(base), {"b": board}, tmp_path, WINDOW)
        assert [(p.path.name, p.empty) for p in written] == [
            ("03-up.png", False), ("04-gone.png", True), ("05-both.png", False)]  # fmt: skip
        assert all(p.path.stat().st_size > 0 for p in written)
        assert (
            cli.main(["dashboards", "preview", "--prometheus", base, "--out", str(tmp_path)]) == 0
        )
        out = capsys.readouterr().out
        said = "no data for "
        assert said in out and "netopt-paths/" in out.split(said)[1], out  # nothing to query
    finally:
        server.shutdown()
        server.server_close()
