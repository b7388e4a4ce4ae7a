"""The route API's OpenAPI 3.1 document, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from netopt import __version__

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}

_EXPECTED = {
    "type": ["object", "null"],
    "properties": {k: {"type": "number"} for k in ("rtt_ms", "jitter_ms", "loss_pct", "mos")},
}

_ROUTE = {
    "type": "object",
    "properties": {
        "kind": {"type": ["string", "null"], "enum": ["direct", "relay", None]},
        "path": {"type": "array", "items": {"type": "string"}},
        "entry_pop": {"type": ["string", "null"]},
        "expected": _EXPECTED,
    },
}

_TARGET = {
    "type": "object",
    "description": "Where a proxy sends the call: the PoP, its SIP URI and media relay",
    "properties": {
        "pop": {"type": "string"},
        "sip_uri": {"type": ["string", "null"]},
        "media_addr": {"type": ["string", "null"]},
        "rtpengine_set": {"type": ["integer", "null"]},
    },
}

_FALLBACK = {
    "type": "object",
    "properties": {**_TARGET["properties"], **_ROUTE["properties"]},  # type: ignore[dict-item]
}

_ENTRY = {
    "type": "object",
    "required": [
        "region",
        "dest",
        "kind",
        "path",
        "entry_pop",
        "primary",
        "fallbacks",
        "expected",
        "acceleration",
        "decided_at",
        "stale",
    ],
    "properties": {
        "region": {"type": "string"},
        "dest": {"type": "string"},
        **_ROUTE["properties"],  # type: ignore[dict-item]
        "primary": _TARGET,
        "default": {"type": "boolean", "description": "the configured default route"},
        "acceleration": {
            "type": "string",
            "enum": ["needed", "not_needed", "insufficient", "unmeasured"],
        },
        "reason": {"type": "string"},
        "decided_at": {"type": "number", "description": "Unix time the route was chosen"},
        "stale": {"type": "boolean"},
        "fallbacks": {"type": "array", "items": _FALLBACK},
    },
}

_RTJSON = {
    "type": "object",
    "description": "Kamailio rtjson document (serial routing: primary, then fallbacks)",
    "required": ["version", "routing", "routes"],
    "properties": {
        "version": {"const": "1.0"},
        "routing": {"const": "serial"},
        "routes": {
            "type": "array",
            "items": {"type": "object", "properties": {"dst_uri": {"type": "string"}}},
        },
        "region": {"type": "string"},
        "dest": {"type": "string"},
        "pops": {"type": "array", "items": {"type": "string"}},
        "rtpengine_sets": {"type": "array", "items": {"type": ["integer", "null"]}},
        "stale": {"type": "boolean"},
    },
}

_SELECTORS = [
    ("region", "a region id"),
    ("src_ip", "the caller's source address: longest prefix among the regions' prefixes"),
    ("caller", "the caller's E.164 number: longest of the regions' e164 prefixes"),
    ("country", "ISO 3166 alpha-2 code: the first region with that country"),
]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    query = {"in": "query", "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "netopt route API", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/route": {
                "get": {
                    "summary": "The route in force for one region (give exactly one selector)",
                    "parameters": [
                        *(
                            {"name": n, "required": False, "description": d, **query}
                            for n, d in _SELECTORS
                        ),
                        {"name": "dest", "required": False, **query},
                        {
                            "name": "format",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": ["json", "rtjson"], "default": "json"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {
                                "application/json": {"schema": {"oneOf": [_ENTRY, _RTJSON]}}
                            },
                        },
                        "401": _ERROR,
                        "400": _ERROR,
                        "404": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/v1/routes": {
                "get": {
                    "summary": "Every route in force",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"routes": {"type": "array", "items": _ENTRY}},
                            }
                        )
                    },
                }
            },
            "/v1/paths": {
                "get": {
                    "summary": "A region's measured paths and candidate routes",
                    "parameters": [
                        {"name": n, "required": False, "description": d, **query}
                        for n, d in _SELECTORS
                    ],
                    "responses": {"200": _json({"type": "object"}), "400": _ERROR, "404": _ERROR},
                }
            },
            "/v1/traces": {
                "get": {
                    "summary": "Recent traceroutes run because a path degraded, newest first",
                    "parameters": [
                        {
                            "name": "src",
                            "required": False,
                            **query,
                            "description": "only traces that left from this site",
                        },
                        {
                            "name": "dst",
                            "required": False,
                            **query,
                            "description": "only traces towards this site",
                        },
                    ],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/v1/admin/publish": {
                "post": {
                    "summary": "Hand the current table to every publisher again (admin token)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _json({"type": "object"}),
                        "401": _ERROR,
                        "403": _ERROR,
                    },
                }
            },
            "/v1/regions": {
                "get": {
                    "summary": "Configured regions",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/v1/pops": {
                "get": {
                    "summary": "Configured PoPs",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"})}}
            },
            "/readyz": {
                "get": {
                    "summary": "Ready once at least one route is known",
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _json({"type": "object"}),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "OpenMetrics text", "content": {"text/plain": {}}}
                    },
                }
            },
        },
    }
