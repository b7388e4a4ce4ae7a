"""The API's token rules (netopt.api.auth), as the route API, ingest and the workers apply them."""

from __future__ import annotations

import pytest

from netopt.api.auth import Refusal, admin_ok, agent_for, refusal
from netopt.config import AgentAuth

READ, ADMIN = "r" * 16, "a" * 16


@pytest.mark.parametrize(
    ("path", "header", "read", "admin", "status"),
    [
        ("/v1/route", "", None, None, None),  # open reads
        ("/v1/route", "", READ, None, 401),
        ("/v1/route", f"Bearer {READ}", READ, None, None),
        ("/v1/route", f"Bearer {ADMIN}", READ, ADMIN, None),  # the admin token reads too
        ("/v1/route", f"bearer {READ}", READ, None, 401),  # the route API wants `Bearer` exactly
        ("/v1/route", f"Bearer {READ}x", READ, None, 401),
        ("/healthz", "", READ, ADMIN, None),
        ("/readyz", "", READ, ADMIN, None),
        ("/v1/admin/publish", f"Bearer {ADMIN}", None, None, 403),  # no admin token: disabled
        ("/v1/admin/publish", f"Bearer {READ}", READ, ADMIN, 401),
        ("/v1/admin/publish", f"Bearer {ADMIN}", None, ADMIN, None),
    ],
)
def test_read_and_admin_rules(
    path: str, header: str, read: str | None, admin: str | None, status: int | None
) -> None:
    got = refusal(path, header, read, admin)
    assert (None if got is None else got.status) == status
    if got is not None and status == 401:
        assert got.headers == (("WWW-Authenticate", "Bearer"),)


def test_an_agent_is_known_by_its_own_token() -> None:
    a = AgentAuth(id="a", site="lagos", token="t" * 16)
    b = AgentAuth(id="b", site="jnb", token="u" * 16)
    assert agent_for((a, b), "Bearer " + "u" * 16) is b
    assert agent_for((a, b), "BEARER " + "t" * 16) is a  # the scheme in any case
    assert agent_for((a, b), "Bearer " + "v" * 16) == Refusal(401, "wrong token")
    for header in ("", "Bearer ", "Basic " + "t" * 16):
        found = agent_for((a, b), header)
        assert isinstance(found, Refusal) and "missing bearer token" in found.message


def test_admin_token_of_the_reload_endpoint() -> None:
    assert admin_ok(f"Bearer {ADMIN}", ADMIN) and admin_ok(f"bearer {ADMIN}", ADMIN)
    assert not admin_ok(f"Bearer {READ}", ADMIN)
    assert not admin_ok(ADMIN, ADMIN) and not admin_ok("", ADMIN)
