"""The route API's shapes: ... RouteTable → answers → API (**models**) → wire, and the document.

Pydantic models for every query, request body and answer of the route API. They are the one
description of the API: `netopt.push.answers` renders answers through them (once per table),
the handlers validate queries and bodies with them, and `netopt.api.openapi` generates the
OpenAPI document from their JSON schemas. The query rules live in plain functions here
(`route_query`, `selector_query`, `check_query`) that the models' validators call too, so the
hot path (`/v1/route`, once per distinct query string per table) never builds a model yet
applies exactly the rules the document states. Errors are `ValueError` naming what is wrong
(the API answers 400 with it).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from netopt.config import PopConfig, RegionConfig
from topology.routes import ACCELERATIONS

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # a site id, as netopt.config.Id
E164_PATTERN = r"^[ ().-]*(?:\+[ ().-]*|0[ ().-]*0[ ().-]*)?(?:[0-9][ ().-]*){1,15}$"
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
SELECTORS = ("region", "src_ip", "caller", "country")
_ID, _E164, _COUNTRY = re.compile(ID_PATTERN), re.compile(E164_PATTERN), re.compile(COUNTRY_PATTERN)

SiteId = Annotated[str, Field(pattern=ID_PATTERN)]
Acceleration = Literal[ACCELERATIONS]  # type: ignore[valid-type]  # the planner's own verdicts
RouteKind = Literal["direct", "relay"]


class _Shape(BaseModel):
    """An answer: every key documented, no other key (the schema says additionalProperties)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- queries --------------------------------------------------------------------------------
class RouteRequest(NamedTuple):
    """A checked `/v1/route` (or `/v1/paths`) query: one selector, its value, dest, format
    (a tuple, not a frozen dataclass: built once per new query string on the hot path)."""

    selector: str
    value: str
    dest: str | None = None
    rtjson: bool = False


def check_query(query: Mapping[str, str], allowed: Iterable[str]) -> dict[str, str]:
    """The query as a plain dict; ValueError for a parameter the operation does not take, or
    one given twice."""
    names = list(query)  # a multidict iterates each name once and counts every value
    known = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
    if len(query) == len(names) and known.issuperset(names):
        return {name: query[name] for name in names}
    for name in names:
        if name not in known:
            expected = ", ".join(sorted(known))
            raise ValueError(f"unknown query parameter {name!r} (expected {expected})")
    getall = getattr(query, "getall", None)
    twice = next((n for n in names if getall is not None and len(getall(n)) > 1), names[0])
    raise ValueError(f"query parameter {twice!r} given more than once")


def selector_query(query: Mapping[str, str], allowed: Iterable[str] = SELECTORS) -> RouteRequest:
    """Exactly one of region, src_ip, caller, country, with a well-formed value."""
    return _selector(check_query(query, allowed))


def _selector(q: dict[str, str], dest: str | None = None, rtjson: bool = False) -> RouteRequest:
    given = [k for k in SELECTORS if k in q]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of region, src_ip, caller, country"
            + (f" (got {', '.join(given)})" if given else "")
        )
    key = given[0]
    value = q[key]
    _check_selector(key, value)
    return RouteRequest(key, value, dest, rtjson)


def _check_selector(key: str, value: str) -> None:
    if key == "region" and not _ID.fullmatch(value):
        raise ValueError(f"region: {value!r} is not a region id ({ID_PATTERN})")
    if key == "src_ip":
        v6 = ":" in value  # as netopt.api.resolve: an IPv6 address may come in brackets
        family, text = (socket.AF_INET6, value.strip("[]")) if v6 else (socket.AF_INET, value)
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            raise ValueError(f"{value!r} is not an IP address") from None
    if key == "caller" and not _E164.fullmatch(value):
        raise ValueError(f"{value!r} is not an E.164 number")
    if key == "country" and not _COUNTRY.fullmatch(value):
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code")


ROUTE_PARAMETERS = (*SELECTORS, "dest", "format")
_ROUTE_PARAMETERS = frozenset(ROUTE_PARAMETERS)


def route_query(query: Mapping[str, str]) -> RouteRequest:
    """The `/v1/route` rules (what `RouteQuery` documents), without building a model."""
    fmt = query.get("format", "json")
    if fmt not in ("json", "rtjson"):
        raise ValueError(f"format must be 'json' or 'rtjson', not {fmt!r}")
    q = check_query(query, _ROUTE_PARAMETERS)
    dest = q.get("dest")
    if dest is not None and not _ID.fullmatch(dest):
        raise ValueError(f"dest: {dest!r} is not a destination id ({ID_PATTERN})")
    return _selector(q, dest, fmt == "rtjson")


class SelectorQuery(BaseModel):
    """Which region: exactly one selector (`one_of`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    one_of: ClassVar[tuple[str, ...]] = SELECTORS

    region: SiteId | None = Field(default=None, description="a region id")
    src_ip: str | None = Field(
        default=None,
        description="the caller's source address (IPv4 or IPv6 text; an IPv6 address may also "
        "come in brackets): the longest of the regions' prefixes that contains it",
        json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    )
    caller: str | None = Field(
        default=None,
        pattern=E164_PATTERN,
        description="the caller's E.164 number (+234…, 234… or 00234…; spaces, dots, dashes "
        "and parentheses ignored): the longest of the regions' e164 prefixes",
    )
    country: str | None = Field(
        default=None,
        pattern=COUNTRY_PATTERN,
        description="ISO 3166 alpha-2 code, any case: the first region with that country",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_selector(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            selector_query({k: v for k, v in data.items() if v is not None}, cls.model_fields)
        return data


class RouteQuery(SelectorQuery):
    """`/v1/route`: one selector, optionally a destination and the answer's format."""

    dest: SiteId | None = Field(
        default=None, description="a destination id (default: the region's first destination)"
    )
    format: Literal["json", "rtjson"] = Field(
        default="json", description="json: netopt's answer; rtjson: Kamailio's rtjson document"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_selector(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            route_query({k: v for k, v in data.items() if v is not None})
        return data


class TracesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    src: SiteId | None = Field(default=None, description="only traces that left from this site")
    dst: SiteId | None = Field(default=None, description="only traces towards this site")


# --- answers --------------------------------------------------------------------------------
class Error(_Shape):
    """Every refusal: 4xx and 5xx answers are JSON with one message naming what is wrong."""

    error: str


class Expected(_Shape):
    """Expected quality of a route (null where the inputs were not measured)."""

    mos: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None


class Target(_Shape):
    """Where a proxy sends the call: the PoP, its SIP URI and media relay."""

    pop: str
    sip_uri: str | None
    media_addr: str | None
    rtpengine_set: int | None


class Fallback(Target):
    """A fallback: its target and the route through it."""

    kind: RouteKind
    path: list[str]
    entry_pop: str | None
    expected: Expected


class RouteAnswer(_Shape):
    """The route in force for one region and destination (`format=json`)."""

    region: str
    dest: str
    kind: RouteKind
    path: list[str]
    entry_pop: str | None
    primary: Target
    fallbacks: list[Fallback]
    expected: Expected
    acceleration: Acceleration = Field(description="the planner's verdict for the region")
    reason: str
    decided_at: float = Field(description="Unix time the route was chosen")
    stale: bool
    default: bool = Field(description="the configured default route (no fresh data)")


class RtjsonRoute(_Shape):
    dst_uri: str


class RtjsonAnswer(_Shape):
    """Kamailio's rtjson document (serial routing: primary, then fallbacks; `format=rtjson`).
    Only `dst_uri` is set per route; `pops` and `rtpengine_sets` follow the same order."""

    version: Literal["1.0"]
    routing: Literal["serial"]
    routes: list[RtjsonRoute]
    region: str
    dest: str
    pops: list[str]
    rtpengine_sets: list[int | None]
    stale: bool


class RoutesList(_Shape):
    routes: list[RouteAnswer]


class RegionsList(_Shape):
    regions: list[RegionConfig]


class PopsList(_Shape):
    pops: list[PopConfig]


class MeasuredPath(_Shape):
    """One measured path's window statistics."""

    src: str
    dst: str
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    samples: int


class CandidateRoute(_Shape):
    kind: RouteKind
    path: list[str]
    expected: Expected


class Candidates(_Shape):
    dest: str
    routes: list[CandidateRoute]


class PathsAnswer(_Shape):
    """A region's measured paths and its candidate routes per destination."""

    region: str
    paths: list[MeasuredPath]
    candidates: list[Candidates]


class TraceHop(_Shape):
    ttl: int
    address: str | None
    reached: bool
    rtt_ms: list[float | None] = Field(description="one per probe; null: no answer")


class Trace(_Shape):
    """A traceroute run because a path degraded."""

    at: float = Field(description="Unix time of the trace")
    src: str
    dst: str
    address: str
    trigger: str = Field(description="loss | rtt | rtt_jump | silent | withdrawn")
    reason: str
    protocol: str
    reached: bool
    hops: list[TraceHop]
    error: str | None


class TracesAnswer(_Shape):
    traces: list[Trace]


class Health(_Shape):
    status: Literal["ok"]
    version: str


class Readiness(_Shape):
    ready: bool
    routes: int = Field(description="table entries with a route")
    entries: int


class Published(_Shape):
    published: int = Field(description="publishers handed the table")
    entries: int


class Reloaded(_Shape):
    reloaded: Literal[True]
    changes: list[str]


class ReloadRejected(_Shape):
    error: str
    problems: list[str] = Field(description="one line per problem, naming the field")


class Ingested(_Shape):
    batch_id: str
    rounds: int = Field(description="rounds in the batch")
    stored: int = Field(description="rounds stored now (0 for a batch seen before)")
    duplicate: bool


# the ingest body's models are the wire format's own: netopt.api.batch
