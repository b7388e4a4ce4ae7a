"""The generated OpenAPI document: valid 3.1, lists every route the daemon's app and the API
workers serve, and states the query rules the handlers apply (checked on generated queries)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from netopt.api.ingest import add_routes
from netopt.api.models import (
    COUNTRY_PATTERN,
    E164_PATTERN,
    RouteQuery,
    SelectorQuery,
    route_query,
    selector_query,
)
from netopt.api.openapi import openapi_document
from netopt.api.routes import make_app
from netopt.api.workers.site import FastSite
from netopt.assess.api import add_routes as add_assessment_routes
from netopt.config import ApiConfig
from netopt.push.answers import Answers
from tests.routes_fixture import FakeDaemon, world_config
from topology.routes import ACCELERATIONS


@pytest.mark.parametrize("reads_open", [True, False])
def test_the_document_is_valid_openapi_3_1(reads_open: bool) -> None:
    doc = openapi_document(reads_open=reads_open)
    validate(doc)  # raises with the offending path
    assert doc["openapi"] == "3.1.0"
    assert set(doc["components"]["securitySchemes"]) == {"readToken", "adminToken", "agentToken"}


def served(app: Any) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes()}  # type: ignore[union-attr]


def test_every_served_route_is_documented_and_nothing_else() -> None:
    daemon = FakeDaemon(world_config())
    app = add_routes(make_app(daemon), daemon)  # type: ignore[arg-type]
    add_assessment_routes(app, daemon)  # type: ignore[arg-type]
    doc = openapi_document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served(app) == documented
    for path in ("/v1/ingest", "/v1/admin/reload", "/v1/admin/publish", "/metrics"):
        assert path in doc["paths"]
    site = FastSite(Answers(daemon.config, daemon.wall_time), daemon.config.api, None, 1)  # type: ignore[arg-type]
    assert {p.decode() for p in site.local} <= set(doc["paths"])  # what workers answer alone


def test_statuses_tokens_and_headers() -> None:
    doc = openapi_document()
    route = doc["paths"]["/v1/route"]["get"]
    assert {"200", "400", "401", "404", "503"} == set(route["responses"])
    assert route["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert route["security"] == [{"readToken": []}, {"adminToken": []}]
    ingest = doc["paths"]["/v1/ingest"]["post"]
    assert {"200", "400", "401", "403", "413", "502", "503"} == set(ingest["responses"])
    assert ingest["security"] == [{"agentToken": []}]
    assert doc["paths"]["/v1/admin/reload"]["post"]["security"] == [{"adminToken": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]
    assert "content" not in doc["paths"]["/v1/routes"]["head"]["responses"]["200"]
    opened = openapi_document(reads_open=True)["paths"]
    assert opened["/v1/route"]["get"]["security"] == []
    assert opened["/v1/admin/publish"]["post"]["security"] == [{"adminToken": []}]


def test_acceleration_lists_every_verdict_of_the_planner() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["RouteAnswer"]["properties"]["acceleration"]["enum"] == list(ACCELERATIONS)
    assert "unreachable" in ACCELERATIONS


def accepts(doc: dict[str, Any], path: str, query: dict[str, str]) -> bool:
    """Whether the document's parameters allow `query` (form-exploded `selector` object)."""
    params = doc["paths"][path]["get"]["parameters"]
    named = {p["name"]: p for p in params if p["name"] != "selector"}
    checker = jsonschema.FormatChecker()
    try:
        for name, p in named.items():
            if name in query:
                jsonschema.validate(query[name], p["schema"], format_checker=checker)
            elif p["required"]:
                return False
        rest = {k: v for k, v in query.items() if k not in named}
        (selector,) = (p for p in params if p["name"] == "selector")
        jsonschema.validate(rest, selector["schema"], format_checker=checker)
    except jsonschema.ValidationError:
        return False
    return True


def rule_accepts(rule: Any, query: dict[str, str]) -> bool:
    try:
        rule(query)
    except ValueError:
        return False
    return True


# no "\n": Python's re lets `$` match before a final newline, ECMA-262 (the document's and
# pydantic's dialect) does not; no brackets: the server also takes "[::1]" (as netopt.api.resolve)
values = st.one_of(
    st.sampled_from(["lagos", "fra", "x" * 65, "", "la gos", "127.0.0.1", "01.2.3.4", "::1",
                     "fe80::1%1", "2001:db8::5", "+2348030000000", "00234 803", "00", "0 0",
                     "+", "(+234) 803-000", "2" * 16, "NG", "ng", "NGA", "json", "rtjson",
                     "xml", "¹²"]),
    st.text(alphabet=st.characters(exclude_characters="\n[]"), max_size=8),
)  # fmt: skip
names = st.sampled_from(["region", "src_ip", "caller", "country", "dest", "format", "other"])
queries = st.dictionaries(names, values, max_size=3)


@settings(max_examples=400, deadline=None)
@given(query=queries)
def test_the_documented_query_rules_are_the_handlers_rules(query: dict[str, str]) -> None:
    doc = openapi_document()
    assert accepts(doc, "/v1/route", query) == rule_accepts(route_query, query), query
    assert rule_accepts(RouteQuery.model_validate, query) == rule_accepts(route_query, query)
    assert accepts(doc, "/v1/paths", query) == rule_accepts(selector_query, query), query
    assert rule_accepts(SelectorQuery.model_validate, query) == rule_accepts(selector_query, query)


def test_the_served_document_follows_the_read_token() -> None:
    api = ApiConfig(read_token="r" * 16)
    site = FastSite(Answers(world_config(), lambda s: s), api, None, 1)  # type: ignore[arg-type]
    import json

    assert json.loads(site._openapi.body) == openapi_document(reads_open=False)
    site = FastSite(Answers(world_config(), lambda s: s), ApiConfig(), None, 1)  # type: ignore[arg-type]
    assert json.loads(site._openapi.body) == openapi_document(reads_open=True)


@settings(max_examples=300, deadline=None)
@given(
    caller=st.from_regex(E164_PATTERN, fullmatch=True).filter(lambda s: "\n" not in s),
    country=st.from_regex(COUNTRY_PATTERN, fullmatch=True).filter(lambda s: "\n" not in s),
    ip=st.ip_addresses().map(str),
)
def test_what_the_document_allows_the_resolver_reads(caller: str, country: str, ip: str) -> None:
    """A documented selector value is answered 200 or 404, never refused by the resolver."""
    resolver = Answers(world_config(), lambda s: s).resolver
    for key, value in (("caller", caller), ("country", country), ("src_ip", ip)):
        route_query({key: value})  # the document's rule: accepted
    resolver.by_e164(caller)
    resolver.by_country(country)
    resolver.by_ip(ip)
