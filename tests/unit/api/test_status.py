"""The status page renderer: contents, escaping, no external assets."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import MappingProxyType

from netopt.api.status import StatusFacts, render_status
from netopt.core.decide import RouteTable, TableEntry
from netopt.store import DecisionRecord
from topology.routes import Expected, Route

NOW_S = 1_800_000_000.0


def entry(region: str, dest: str, route: Route | None, **kw: object) -> TableEntry:
    fields = {"decided_at": 90.0, "acceleration": "not_needed", "reason": "best MOS"} | kw
    return TableEntry(region, dest, route, **fields)  # type: ignore[arg-type]


def relay(region: str, pop: str, mos: float) -> Route:
    return Route(region, "fra", "relay", (region, pop, "fra"), pop, Expected(80, 2, 0.5, mos))


def page(table: RouteTable, decisions: list[DecisionRecord] = []) -> str:  # noqa: B006
    facts = StatusFacts(version="9.9", now_wall_s=NOW_S, regions=3, pops=2, plans=7)
    body = render_status(table, decisions, facts, lambda mono: NOW_S - (100.0 - mono))
    return body.decode("utf-8")


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_table_with_verdicts_reasons_and_links() -> None:
    table = RouteTable(MappingProxyType({
        ("lagos", "fra"): entry("lagos", "fra", relay("lagos", "los", 4.21),
                                acceleration="needed", reason="direct misses 3.6"),
        ("abuja", "fra"): entry("abuja", "fra", relay("abuja", "jnb", 3.1), stale=True),
        ("kano", "fra"): entry("kano", "fra", None, reason="no measurements"),
        ("jos", "fra"): entry("jos", "fra", relay("jos", "los", 3.0), acceleration="insufficient"),
        ("ife", "fra"): entry("ife", "fra", relay("ife", "los", 4.4)),
    }), 100.0)  # fmt: skip
    d = DecisionRecord(int((NOW_S - 5) * 1e9), "lagos", "fra", "switch", None, "los", 2.9, 4.21,
                       2, 0.0, "relay via los wins by 1.31", "{}")  # fmt: skip
    html = page(table, [d])
    assert html.startswith("<!DOCTYPE html>")
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert len(rows) == 2 + 5 + 1  # two header rows, five routes, one decision
    assert rows[1].startswith("<td>abuja</td>")  # sorted by region
    lagos = next(r for r in rows if r.startswith("<td>lagos</td><td>fra</td><td>relay"))
    assert "lagos → los → fra" in lagos and "acceleration needed" in lagos
    assert '<td class="num good">4.21</td>' in lagos and "direct misses 3.6" in lagos
    assert "stale data" in html and '<td class="num bad">3.10</td>' in html
    assert "no route yet" in html and "no measurements" in html
    assert '<td class="bad">no route meets the target</td>' in html
    assert '<td class="good">direct is fine</td>' in html
    assert "4 of 5 routes known" in html and "7 plans" in html
    assert "direct → los" in html and "2.90 → 4.21" in html
    assert "as of 2027-01-15 08:00:00 UTC" in html
    assert "<td>2027-01-15 07:59:55 UTC</td><td>lagos</td>" in html  # the decision, 5 s ago
    assert lagos.endswith("<td>2027-01-15 07:59:50 UTC</td>")  # decided at mono 90 = 10 s ago
    links = {a["href"] for tag, a in tag_list(html) if tag == "a"}
    assert {"/metrics", "/v1/routes", "/openapi.json"} <= links


def tag_list(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_nothing_external_and_everything_escaped() -> None:
    evil = "<script>alert(1)</script>"
    table = RouteTable(MappingProxyType({
        (evil, "fra"): entry(evil, "fra", relay(evil, "los", 4.0), reason='a "quoted" & <b>'),
    }), 100.0)  # fmt: skip
    html = page(table)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &quot;quoted&quot; &amp; &lt;b&gt;" in html
    for tag, attrs in tag_list(html):
        assert tag not in ("script", "img", "link", "iframe"), tag
        for value in attrs.values():
            assert not (value or "").startswith(("http:", "https:", "//")), (tag, attrs)


def test_an_empty_table_says_so() -> None:
    html = page(RouteTable(MappingProxyType({}), 100.0))
    assert "No route yet: waiting for measurements." in html and "No decision yet." in html
