"""docs/assess-report.schema.json is what the models generate (regenerate: see model.py)."""

from __future__ import annotations

import json
from pathlib import Path

from netopt.assess.model import report_schema

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "assess-report.schema.json"


def test_shipped_schema_matches_the_models() -> None:
    shipped = json.loads(SCHEMA.read_text())
    assert shipped == report_schema(), (
        "regenerate: netopt assess schema > docs/assess-report.schema.json"
    )
