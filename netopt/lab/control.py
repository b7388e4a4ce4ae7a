"""The lab's control channel, client side: `Lab` → **control** → ``ctl.sock`` → the stage.

One JSON line out, one JSON line back, over the stage's unix socket. Whatever the stage does —
not running, a stale socket, no answer, a trickle, a reset, garbage, an answer without end, a
reply of the wrong shape — becomes a `LabError` naming the lab and what was wrong; never a
traceback and never a hang: one deadline covers connect, send and receive, and the reply is
capped (`MAX_REPLY_BYTES`).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from netopt.errors import LabError

# a status row is ~250 bytes: 4 MiB is ~16,000 directions (a lab of ~120 nodes, all linked)
MAX_REPLY_BYTES = 4 << 20
ROW_NUMBERS = ("forwarded", "dropped")


def exchange(
    lab: str, path: Path, request: dict[str, Any], timeout_s: float = 2.0,
    max_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:  # fmt: skip
    """Send `request`, return the stage's reply (a JSON object with ``"ok": true``)."""
    where = f"lab {lab!r}: impairment stage"
    deadline = time.monotonic() + timeout_s
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = _read_line(s, deadline, max_bytes)
    except TimeoutError:
        raise LabError(f"{where} gave no complete answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise LabError(f"{where} not answering ({exc})") from None
    except _TooLong:
        raise LabError(f"{where} answered more than {max_bytes} bytes") from None
    if not data:
        raise LabError(f"{where} closed the connection without answering")
    try:
        reply = json.loads(data)
    except ValueError:
        raise LabError(f"{where} answered garbage: {data[:80]!r}") from None
    if not isinstance(reply, dict):
        raise LabError(f"{where} answered a JSON {type(reply).__name__}, not an object")
    if reply.get("ok") is not True:
        raise LabError(f"lab {lab!r}: {reply.get('error', 'request refused')}")
    return reply


class _TooLong(Exception):
    pass


def _read_line(s: socket.socket, deadline: float, max_bytes: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            break  # the stage closed: what came is the answer (json.loads judges it)
        data += chunk
        if len(data) > max_bytes:
            raise _TooLong
    return data


def directions(lab: str, reply: dict[str, Any], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ``directions`` of a status reply, each row checked: ``a``, ``b`` (str), the link
    parameters `fields` and the counters present; `LabError` for anything else."""
    rows = reply.get("directions")
    if not isinstance(rows, list):
        raise LabError(f"lab {lab!r}: status without a list of directions: {str(rows)[:80]!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise LabError(f"lab {lab!r}: status direction {i} is not an object: {row!r:.80}")
        missing = [k for k in ("a", "b", *fields, *ROW_NUMBERS) if k not in row]
        if missing:
            raise LabError(f"lab {lab!r}: status direction {i} lacks {', '.join(missing)}")
        if not all(isinstance(row[k], str) for k in ("a", "b")) or not all(
            isinstance(row[k], int | float) and not isinstance(row[k], bool) for k in ROW_NUMBERS
        ):
            raise LabError(f"lab {lab!r}: status direction {i} is malformed: {str(row)[:120]}")
    return rows


def counter(lab: str, reply: dict[str, Any], key: str) -> int:
    """A stage counter of a status reply (0 when absent), `LabError` when not a number."""
    value = reply.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabError(f"lab {lab!r}: stage counter {key} is {value!r}, not a number")
    return int(value)
