"""SIP OPTIONS requests and response parsing (RFC 3261 §7, §20): probe → **wire**.

Pure functions. `parse_response` never raises: anything that is not a well-formed SIP
response comes back as a str naming why, so the prober can count it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS = re.compile(r"SIP/2\.0 ([1-6]\d\d)(?: (.*))?\Z")
_COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "l": "content-length",
            "m": "contact", "c": "content-type"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SipResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names, compact forms expanded, first value kept
    length: int  # bytes of the message consumed (headers + body)

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "")


def options_request(
    target: str, transport: str, local: tuple[str, int], call_id: str, branch: str, cseq: int
) -> bytes:
    """One OPTIONS request to `target` (``host:port``; IPv6 hosts already in brackets)."""
    host, port = local
    via_host = f"[{host}]" if ":" in host else host
    lines = [
        f"OPTIONS sip:{target} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:netopt@{via_host}>;tag={call_id[:16]}",
        f"To: <sip:{target}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        f"Contact: <sip:netopt@{via_host}:{port};transport={transport.lower()}>",
        "Accept: application/sdp",
        "User-Agent: netopt",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(data: bytes) -> SipResponse | str:
    """The first SIP response in `data`: ``"incomplete"`` if more bytes are needed (TCP),
    ``"not_sip"`` / ``"bad_header"`` / ``"request"`` for what is not a response."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return "incomplete" if len(data) < 65536 else "not_sip"
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        return "not_sip"
    first, *rest = head.split("\r\n")
    match = _STATUS.match(first)
    if match is None:
        return "request" if first.endswith(" SIP/2.0") else "not_sip"
    headers: dict[str, str] = {}
    for line in rest:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return "bad_header"
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), value.strip())
    try:
        body = int(headers.get("content-length", "0"))
    except ValueError:
        return "bad_header"
    if body < 0:
        return "bad_header"
    total = end + 4 + body
    if total > len(data):
        return "incomplete"
    return SipResponse(int(match.group(1)), match.group(2) or "", headers, total)
