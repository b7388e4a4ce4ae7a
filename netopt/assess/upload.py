"""`netopt assess --upload URL`: POST report.json to the controller (`/v1/assessments`).

report.json (already on disk) → **upload** → controller store. The client survives any answer:
a refused connection, a timeout, an answer bigger than MAX_ANSWER_BYTES, a non-JSON body or an
error status each become one NetoptError saying what happened; the report stays on disk. The
admin token goes in the Authorization header only and is never printed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from netopt.errors import NetoptError

MAX_ANSWER_BYTES = 64 * 1024
PATH = "/v1/assessments"


def endpoint(url: str) -> str:
    """The controller's assessments URL from its base URL (or that URL itself)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NetoptError(f"--upload {url!r}: expected http(s)://HOST:PORT of the controller")
    return url if parts.path.rstrip("/").endswith(PATH) else url.rstrip("/") + PATH


def upload(url: str, body: bytes, token: str | None, timeout_s: float = 10.0) -> dict[str, Any]:
    """POST the report; the controller's JSON answer ({"id": …}) or NetoptError."""
    target = endpoint(url)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(target, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            raw, status = resp.read(MAX_ANSWER_BYTES + 1), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(MAX_ANSWER_BYTES + 1), exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetoptError(f"upload to {target} failed: {reason}") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise NetoptError(f"upload to {target}: answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        answer = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NetoptError(f"upload to {target}: HTTP {status}, answer is not JSON") from None
    if not isinstance(answer, dict):
        raise NetoptError(f"upload to {target}: HTTP {status}, answer is not a JSON object")
    if status >= 300:
        raise NetoptError(f"upload to {target}: HTTP {status}: {answer.get('error', answer)}")
    return answer
