"""Where the real data and test vectors live (`../shared` beside the checkout), or a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()


def shared_path(relative: str) -> Path:
    """The path of `relative` under ../shared, or skip the test saying what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/{relative} (real data kept beside the checkout, not in it)")
    return path
