"""Who may call what: request → **auth** → route API, ingest, admin (daemon and API workers).

Every token check of the API, in one place and pure (header strings in, a verdict out):
- reads are open unless `api.read_token` is set (then that token or the admin token);
  `/healthz` and `/readyz` stay open; admin paths always need `api.admin_token`
  (`refusal`, what the aiohttp middleware of `routes` and the workers' `site` both ask);
- an agent's batch needs that agent's own token (`agent_for`);
- `POST /v1/admin/reload` needs the admin token (`admin_ok`).
Tokens are compared in constant time, each against every candidate.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netopt.config import AgentAuth

ADMIN_PATHS = frozenset({"/v1/admin/publish"})
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
CHALLENGE = (("WWW-Authenticate", "Bearer"),)


@dataclass(frozen=True)
class Refusal:
    """Why a request may not pass: the HTTP status, the error message, extra headers."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def same(given: str, token: str) -> bool:
    """Constant-time equality of two tokens."""
    return hmac.compare_digest(given.encode(), token.encode())


def bearer_ok(authorization: str, token: str) -> bool:
    """Is the Authorization header exactly `Bearer <token>`? (the route API's rule)"""
    return hmac.compare_digest(authorization.encode(), b"Bearer " + token.encode())


def bearer_token(authorization: str) -> str | None:
    """The token of `Bearer <token>` (scheme in any case), None if there is none."""
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def admin_refusal(authorization: str, admin_token: str | None) -> Refusal | None:
    """The admin rule: 403 while no `api.admin_token` is configured, 401 without it."""
    if admin_token is None:
        return Refusal(403, "admin endpoints are disabled (set api.admin_token)")
    if not bearer_ok(authorization, admin_token):
        return Refusal(401, "admin endpoint: missing or wrong bearer token", CHALLENGE)
    return None


def refusal(
    path: str, authorization: str, read_token: str | None, admin_token: str | None
) -> Refusal | None:
    """The route API's read and admin rules for one request; None lets it through."""
    if path in ADMIN_PATHS:
        return admin_refusal(authorization, admin_token)
    if read_token is not None and path not in OPEN_PATHS:
        ok = bearer_ok(authorization, read_token)
        if not ok and admin_token is not None:
            ok = bearer_ok(authorization, admin_token)
        if not ok:
            return Refusal(401, "missing or wrong bearer token", CHALLENGE)
    return None


def agent_for(agents: Iterable[AgentAuth], authorization: str) -> AgentAuth | Refusal:
    """The agent whose token this is, or a 401 refusal."""
    token = bearer_token(authorization)
    if token is None:
        return Refusal(401, "missing bearer token (Authorization: Bearer ...)")
    found = None
    for agent in agents:  # compare against every token, in constant time each
        if same(agent.token, token):
            found = agent
    return Refusal(401, "wrong token") if found is None else found


def admin_ok(authorization: str, admin_token: str) -> bool:
    """Does the Authorization header carry the admin token (`Bearer`, scheme in any case)?"""
    token = bearer_token(authorization)
    return token is not None and same(token, admin_token)
