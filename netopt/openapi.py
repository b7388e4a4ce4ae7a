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

_ENTRY = {
    "type": "object",
    "required": ["region", "dest", "kind", "path", "entry_pop", "expected", "decided_at"],
    "properties": {
        "region": {"type": "string"},
        "dest": {"type": "string"},
        **_ROUTE["properties"],  # type: ignore[dict-item]
        "acceleration": {
            "type": "string",
            "enum": ["needed", "not_needed", "insufficient", "unmeasured"],
        },
        "reason": {"type": "string"},
        "decided_at": {"type": "number", "description": "Unix time the route was chosen"},
        "stale": {"type": "boolean"},
        "fallbacks": {"type": "array", "items": _ROUTE},
    },
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    query = {"in": "query", "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "netopt route API", "version": __version__},
        "paths": {
            "/v1/route": {
                "get": {
                    "summary": "The route in force for one region",
                    "parameters": [
                        {"name": "region", "required": True, **query},
                        {"name": "dest", "required": False, **query},
                    ],
                    "responses": {
                        "200": _json(_ENTRY),
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
