"""STAMP packets (RFC 8762 unauthenticated, RFC 8972 SSID/TLVs): real sender packets from
teaparty, a round trip through our reflector, and fuzzing."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from probes import _stamp_wire as wire
from probes._ntp import ns_to_ntp, ntp_to_ns
from probes._udp_channel import UdpReply
from probes.stamp import reflect_one
from probes.udp_echo import EchoCodec
from tests.shared_data import shared_path


def _teaparty() -> list[dict[str, object]]:
    doc = json.loads(shared_path("vectors/stamp_sender_packets_teaparty.json").read_text())
    packets = doc["packets"]
    assert isinstance(packets, list)
    return packets


def test_decodes_teaparty_sender_packets() -> None:
    for packet in _teaparty():
        data = bytes.fromhex(str(packet["hex"]))
        decoded = packet["decoded"]
        assert isinstance(decoded, dict)
        got = wire.decode_sender(data)
        assert isinstance(got, wire.SenderPacket)
        assert got.seq == decoded["sequence_number"]
        assert got.ssid == decoded["ssid"]
        assert got.error_estimate == int(decoded["error_estimate_hex"], 16)
        sec, frac = ns_to_ntp(got.timestamp_ns)
        assert sec == decoded["timestamp_ntp_seconds"]
        assert abs(frac - decoded["timestamp_ntp_fraction"]) <= 5  # ns rounding
        assert not got.tlv_error
        assert [(t.flags, t.type, len(t.value)) for t in got.tlvs] == [
            (int(t["flags_hex"], 16), t["type"], t["length"]) for t in decoded["tlvs"]
        ]


def test_reflector_answers_teaparty_packet_and_keeps_its_tlvs() -> None:
    data = bytes.fromhex(str(_teaparty()[1]["hex"]))
    rx_ns = 1_700_000_000_123_456_789
    reply = reflect_one(data, rx_ns, "stamp")
    assert reply is not None and len(reply) == len(data)  # symmetric size
    assert reply[wire.BASE_BYTES :] == data[wire.BASE_BYTES :]
    decoded = wire.StampCodec().decode(reply)
    assert isinstance(decoded, UdpReply)
    assert decoded.seq == 34 and decoded.nonce == 5  # sender seq and SSID come back
    assert decoded.reflector_rx_ns is not None
    assert abs(decoded.reflector_rx_ns - rx_ns) < 2
    assert decoded.reflector_tx_ns is not None and decoded.reflector_tx_ns >= rx_ns


def test_sender_encoding_round_trips() -> None:
    sent_ns = 1_764_000_000_000_000_000
    data = wire.encode_sender(7, sent_ns, 0xBEEF, synced=True, size=60)
    got = wire.decode_sender(data)
    assert isinstance(got, wire.SenderPacket)
    assert (got.seq, got.ssid, len(data)) == (7, 0xBEEF, 60)
    assert got.error_estimate & wire.SYNC_BIT
    assert abs(got.timestamp_ns - sent_ns) < 2 and got.tlvs == () and not got.tlv_error
    assert wire.StampCodec().request_seq(data) == 7


def test_a_sender_packet_echoed_back_is_not_a_reply() -> None:
    sender = wire.encode_sender(1, 1_764_000_000_000_000_000, 0xBEEF, synced=False)
    assert wire.StampCodec().decode(sender) == "not_reflected"


def test_short_packets() -> None:
    assert wire.decode_sender(b"\0" * 43) == "truncated"
    assert wire.StampCodec().decode(b"\0" * 10) == "truncated"
    assert reflect_one(b"\0" * 10, 0, "stamp") is None
    assert reflect_one(b"abc", 0, "echo") == b"abc"


def test_ntp_round_trip() -> None:
    for ns in (0, 1_257_894_000 * 10**9, 1_764_000_000_123_456_789):
        assert abs(ntp_to_ns(*ns_to_ntp(ns)) - ns) <= 1


def test_echo_codec() -> None:
    codec = EchoCodec()
    data = codec.encode(3, 99, 123, 56)
    assert len(data) == 56
    assert codec.decode(data) == UdpReply(3, 99)
    assert codec.decode(b"XXXX" + data[4:]) == "foreign_payload"
    assert codec.decode(data[:10]) == "truncated"


@given(st.binary(max_size=300))
def test_stamp_parsers_never_raise(data: bytes) -> None:
    sender = wire.decode_sender(data)
    assert sender == "truncated" or isinstance(sender, wire.SenderPacket)
    reply = wire.StampCodec().decode(data)
    assert reply in ("truncated", "not_reflected") or isinstance(reply, UdpReply)
    out = reflect_one(data, 1, "stamp")
    assert out is None or len(out) == len(data)
    EchoCodec().decode(data)


@given(st.binary(max_size=200))
def test_looped_udp_payload_parser_never_raises(data: bytes) -> None:
    from probes._udp_channel import _udp_payload

    out = _udp_payload(data)
    assert out is None or len(out) <= len(data)


def test_looped_udp_payload_behind_an_ethernet_header() -> None:
    import struct as st_

    from probes._udp_channel import _udp_payload

    payload = b"NOPT" + bytes(20)
    udp = st_.pack("!HHHH", 40000, 862, 8 + len(payload), 0) + payload
    ip = st_.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                  bytes(4), bytes(4)) + udp  # fmt: skip
    assert _udp_payload(bytes(14) + ip) == payload
