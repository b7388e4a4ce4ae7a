"""JSON-RPC 2.0 over HTTP to a proxy: ... pusher → **rpc** → Kamailio jsonrpcs (xhttp).

The exchange itself is `netopt.push.http_client` (h11 over a socket opened here, possibly in
a network namespace; one deadline for the whole exchange; the body capped at
`MAX_BODY_BYTES`). This module judges the answer: it must be a JSON object with
``"jsonrpc": "2.0"``, our request's ``id``, and exactly one of ``result`` or a well-formed
``error`` (``{"code": int, "message": str}``). Every other answer — transport failure,
truncated or oversized body, garbage, a wrong id, an HTML error page — raises `PushError`
naming the proxy's URL, the method and what was wrong; `RpcError` keeps a proxy's own JSON-RPC
error code and message (e.g. Kamailio's "Ongoing reload", which it sends with HTTP 500).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from netopt.errors import PushError
from netopt.push.http_client import HttpError, request

# dispatcher.list answers ~300 bytes of JSON per destination: 4 MiB holds ~13,000 of them
# (1,000 regions × 10 PoPs); an answer larger than that is not a Kamailio we configured
MAX_BODY_BYTES = 4 << 20

_ids = itertools.count(1)


class RpcError(PushError):
    """The proxy answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{method}: error {code}: {message}")


async def call(
    url: str,
    method: str,
    params: list[Any] | None = None,
    *,
    timeout_s: float = 2.0,
    netns: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Any:
    """Call `method` and return its `result` (any JSON value: the caller checks its shape)."""
    request_id = next(_ids)
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params:
        body["params"] = params
    headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
    try:
        reply = await request(url, json.dumps(body).encode(), headers, timeout_s=timeout_s,
                              max_body_bytes=max_body_bytes, netns=netns)  # fmt: skip
    except HttpError as exc:
        raise PushError(f"{method}: {exc}") from None
    try:
        answer = json.loads(reply.body)
    except ValueError:  # also bytes that are not UTF-8
        raise PushError(
            f"{method}: {url} answered HTTP {reply.status}, not JSON: {reply.snippet()}"
        ) from None
    return judge(answer, method, request_id, f"{url} (HTTP {reply.status})", reply.status)


def judge(answer: Any, method: str, request_id: int, where: str, status: int = 200) -> Any:
    """The `result` of a JSON-RPC answer, or `PushError` / `RpcError` saying what is wrong."""

    def bad(what: str) -> PushError:
        return PushError(f"{method}: {where} answered {what}")

    if not isinstance(answer, dict):
        raise bad(f"a JSON {type(answer).__name__}, not a JSON-RPC object")
    if answer.get("jsonrpc") != "2.0":
        raise bad(f'no "jsonrpc": "2.0" (got {answer.get("jsonrpc")!r})')
    got_id, error = answer.get("id"), answer.get("error")
    # a server that could not read our id answers an error with id null (JSON-RPC 2.0 §5)
    if got_id != request_id and not (got_id is None and error is not None):
        raise bad(f"id {got_id!r} to our request {request_id}")
    if ("result" in answer) == ("error" in answer):
        raise bad("neither or both of result and error")
    if "error" in answer:
        if not isinstance(error, dict):
            raise bad(f"a malformed error {_short(error)}")
        code, message = error.get("code"), error.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise bad(f"a malformed error (code {_short(code)}, message {_short(message)})")
        raise RpcError(method, code, message)
    if status != 200:
        raise bad(f"a result with HTTP {status}")
    return answer["result"]


def _short(value: Any, n: int = 80) -> str:
    return repr(value)[:n]
