"""NTP 64-bit timestamps (RFC 5905) for STAMP packets and RTCP fields (probe → **wire**).

Conversions between Unix ns (CLOCK_REALTIME) and NTP seconds/fraction, plus the RTCP "middle
32 bits" (LSR) and the 1/65536 s units of DLSR (RFC 3550 §6.4.1).
"""

from __future__ import annotations

NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 → 1970-01-01
_NS = 1_000_000_000


def ns_to_ntp(unix_ns: int) -> tuple[int, int]:
    """(seconds, fraction) of the NTP timestamp for `unix_ns`."""
    seconds, rem_ns = divmod(unix_ns, _NS)
    return (seconds + NTP_UNIX_OFFSET_S) & 0xFFFFFFFF, (rem_ns << 32) // _NS


def ntp_to_ns(seconds: int, fraction: int) -> int:
    """Unix ns of an NTP (seconds, fraction) timestamp (era 0, i.e. before 2036)."""
    return (seconds - NTP_UNIX_OFFSET_S) * _NS + ((fraction * _NS) >> 32)


def ntp_middle32(unix_ns: int) -> int:
    """The middle 32 bits of the NTP timestamp: RTCP's LSR field."""
    seconds, fraction = ns_to_ntp(unix_ns)
    return ((seconds & 0xFFFF) << 16) | (fraction >> 16)


def dlsr_units(delay_ns: int) -> int:
    """A delay in RTCP DLSR units of 1/65536 s."""
    return (delay_ns << 16) // _NS
