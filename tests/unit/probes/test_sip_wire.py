"""SIP OPTIONS requests and the response parser (never crashes on garbage)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from probes import _sip_wire as wire


def test_options_request_is_well_formed() -> None:
    req = wire.options_request("127.0.0.1:5060", "UDP", ("127.0.0.1", 40000), "abc-1@netopt",
                               "z9hG4bKabc1", 2).decode()  # fmt: skip
    head, _, body = req.partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "OPTIONS sip:127.0.0.1:5060 SIP/2.0"
    assert "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc1;rport" in lines
    assert "CSeq: 2 OPTIONS" in lines and "Call-ID: abc-1@netopt" in lines
    assert "Content-Length: 0" in lines and body == ""
    v6 = wire.options_request("[::1]:5060", "TCP", ("::1", 5), "x", "z9hG4bKx", 1).decode()
    assert "Via: SIP/2.0/TCP [::1]:5;" in v6


def test_parse_final_response_with_compact_headers_and_body() -> None:
    data = (b"SIP/2.0 486 Busy Here\r\ni: abc-1@netopt\r\nCSeq: 2 OPTIONS\r\nl: 4\r\n\r\nbody"
            b"SIP/2.0 200 OK\r\n")  # fmt: skip
    resp = wire.parse_response(data)
    assert isinstance(resp, wire.SipResponse)
    assert (resp.status, resp.reason, resp.call_id, resp.cseq) == (
        486, "Busy Here", "abc-1@netopt", "2 OPTIONS")  # fmt: skip
    assert data[resp.length :] == b"SIP/2.0 200 OK\r\n"  # the next message starts there


def test_parse_rejects_what_is_not_a_response() -> None:
    assert wire.parse_response(b"SIP/2.0 200 OK\r\nCall-ID: x") == "incomplete"
    assert wire.parse_response(b"SIP/2.0 200 OK\r\nl: 10\r\n\r\nabc") == "incomplete"
    assert wire.parse_response(b"OPTIONS sip:a SIP/2.0\r\n\r\n") == "request"
    assert wire.parse_response(b"HTTP/1.1 200 OK\r\n\r\n") == "not_sip"
    assert wire.parse_response(b"SIP/2.0 200 OK\r\nno colon\r\n\r\n") == "bad_header"
    assert wire.parse_response(b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n") == "bad_header"
    assert wire.parse_response(b"\xff\xfe\r\n\r\n") == "not_sip"


@given(st.binary(max_size=400))
def test_parser_never_raises_on_bytes(data: bytes) -> None:
    out = wire.parse_response(data)
    assert isinstance(out, str | wire.SipResponse)
    if isinstance(out, wire.SipResponse):
        assert 100 <= out.status <= 699 and 0 < out.length <= len(data)


@given(
    st.integers(100, 699),
    st.text(max_size=30),
    st.lists(
        st.tuples(
            st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
            st.text(max_size=40).filter(lambda v: "\r" not in v and "\n" not in v),
        ),
        max_size=8,
    ),
)
def test_parser_never_raises_on_response_shaped_text(
    status: int, reason: str, headers: list[tuple[str, str]]
) -> None:  # fmt: skip
    reason = reason.replace("\r", "").replace("\n", "")
    text = f"SIP/2.0 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    out = wire.parse_response((text + "\r\n").encode())
    assert isinstance(out, str | wire.SipResponse)
