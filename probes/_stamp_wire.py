"""STAMP test packets, unauthenticated mode (RFC 8762 §4.2.1/§4.3.1, SSID from RFC 8972).

probe → **wire**. Pure encode/decode; decoders never raise: a packet too short to hold the
fields is reported as ``"truncated"``. TLVs (RFC 8972 §4) after the 44-byte base are parsed as
far as they are well-formed and reflected as they came.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from probes._ntp import ns_to_ntp, ntp_to_ns
from probes._udp_channel import UdpReply

BASE_BYTES = 44
_SENDER = struct.Struct("!IIIHH28x")  # seq, timestamp (NTP s, frac), error estimate, SSID, MBZ
_REFLECTOR = struct.Struct("!IIIHHIIIIIHHB3x")
_TLV = struct.Struct("!BBH")  # flags, type, length
SYNC_BIT = 0x8000
ERROR_SCALE_MULT = (22 << 8) | 1  # Z=0 (NTP), scale 22, multiplier 1: 2^-10 s ≈ 1 ms


@dataclass(frozen=True, slots=True)
class Tlv:
    flags: int
    type: int
    value: bytes


@dataclass(frozen=True, slots=True)
class SenderPacket:
    seq: int
    timestamp_ns: int
    error_estimate: int
    ssid: int
    tlvs: tuple[Tlv, ...] = ()
    tlv_error: bool = False  # trailing bytes that are not a well-formed TLV


def error_estimate(synced: bool) -> int:
    return ERROR_SCALE_MULT | (SYNC_BIT if synced else 0)


def encode_sender(seq: int, sent_ns: int, ssid: int, synced: bool, size: int = BASE_BYTES) -> bytes:
    sec, frac = ns_to_ntp(sent_ns)
    packet = _SENDER.pack(seq & 0xFFFFFFFF, sec, frac, error_estimate(synced), ssid & 0xFFFF)
    return packet + bytes(max(0, size - BASE_BYTES))


def decode_sender(data: bytes) -> SenderPacket | str:
    if len(data) < BASE_BYTES:
        return "truncated"
    seq, sec, frac, err, ssid = _SENDER.unpack_from(data)
    tlvs, bad = parse_tlvs(data[BASE_BYTES:])
    return SenderPacket(seq, ntp_to_ns(sec, frac), err, ssid, tlvs, bad)


def parse_tlvs(data: bytes) -> tuple[tuple[Tlv, ...], bool]:
    """TLVs in `data`; the flag says some trailing bytes did not form a TLV. All-zero padding
    (a sender padding for symmetric size) is not a TLV and not an error."""
    tlvs: list[Tlv] = []
    off = 0
    while off < len(data):
        if not any(data[off:]):
            return tuple(tlvs), False
        if len(data) - off < _TLV.size:
            return tuple(tlvs), True
        flags, kind, length = _TLV.unpack_from(data, off)
        end = off + _TLV.size + length
        if end > len(data):
            return tuple(tlvs), True
        tlvs.append(Tlv(flags, kind, bytes(data[off + _TLV.size : end])))
        off = end
    return tuple(tlvs), False


def reflect(request: bytes, seq: int, rx_ns: int, tx_ns: int, synced: bool, ttl: int) -> bytes:
    """The session-reflector's answer to a decodable `request` (stateless: caller picks seq)."""
    s_seq, s_sec, s_frac, s_err, ssid = _SENDER.unpack_from(request)
    rx_sec, rx_frac = ns_to_ntp(rx_ns)
    tx_sec, tx_frac = ns_to_ntp(tx_ns)
    base = _REFLECTOR.pack(
        seq & 0xFFFFFFFF, tx_sec, tx_frac, error_estimate(synced), ssid,
        rx_sec, rx_frac, s_seq, s_sec, s_frac, s_err, 0, ttl & 0xFF,
    )  # fmt: skip
    return base + request[BASE_BYTES:]


@dataclass(frozen=True, slots=True)
class StampCodec:
    """Session-sender side for the UDP channel: the round's nonce rides in the SSID."""

    synced: bool = False

    def encode(self, seq: int, nonce: int, sent_ns: int, size: int) -> bytes:
        return encode_sender(seq, sent_ns, nonce, self.synced, size)

    def decode(self, data: bytes) -> UdpReply | str:
        if len(data) < BASE_BYTES:
            return "truncated"
        f = _REFLECTOR.unpack_from(data)
        _seq, tx_sec, tx_frac, _err, ssid, rx_sec, rx_frac, s_seq = f[:8]
        if not (tx_sec or tx_frac) or not (rx_sec or rx_frac):
            return "not_reflected"  # our own packet echoed back: no reflector timestamps
        return UdpReply(s_seq, ssid, ntp_to_ns(rx_sec, rx_frac), ntp_to_ns(tx_sec, tx_frac))

    def request_seq(self, payload: bytes) -> int | None:
        return int.from_bytes(payload[:4], "big") if len(payload) >= BASE_BYTES else None
