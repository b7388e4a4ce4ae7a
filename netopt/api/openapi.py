"""The route API's OpenAPI 3.1 document as served: every route module's specs → /openapi.json.

The routes are declared beside their handlers (`netopt.api.routes.ROUTES`,
`netopt.api.ingest.ROUTES`, `netopt.assess.api.ROUTES`; a new route module adds its tuple to
`served_routes`) and turned into the document by `netopt.api.spec.document`. The route
modules do not import this module (the daemon's app builds the same document from the same
specs), so there is no import cycle.

`python -m netopt.api.openapi` prints the document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from netopt.api import ingest, routes
from netopt.api.spec import RouteSpec, document
from netopt.assess import api as assessments


def served_routes() -> tuple[RouteSpec, ...]:
    """Every route the daemon and its API workers answer."""
    return (*routes.ROUTES, *ingest.ROUTES, *assessments.ROUTES)


def openapi_document(
    routes: Iterable[RouteSpec] | None = None, *, reads_open: bool = False
) -> dict[str, Any]:
    """The document for `routes` (default: `served_routes()`); `reads_open`: no read token."""
    return document(served_routes() if routes is None else routes, reads_open=reads_open)


def main() -> int:
    json.dump(openapi_document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
