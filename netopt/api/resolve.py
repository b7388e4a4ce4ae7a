"""Which region a SIP call belongs to: ... RouteTable → route API (**resolve** → answer).

The hot path of the route API. A `Resolver` is built once per config from the regions'
`prefixes`, `e164` prefixes and `country`, and answers in a few dictionary lookups:

- `by_ip(text)`: longest-prefix match. Prefixes are kept in one hash table per prefix length
  (key: the address shifted right to that length), and a lookup walks the lengths present,
  longest first — at most 33 (IPv4) or 129 (IPv6) probes, in practice the handful of lengths
  a config uses. The address is parsed with `socket.inet_pton` (strict dotted quad or RFC 4291
  text; `inet_aton`'s "1" or "0x7f.1" forms are refused).
- `by_e164(text)`: the longest configured E.164 prefix of the caller's number (`+234…`,
  `234…` or `00234…`; spaces, dashes, dots and parentheses are ignored).
- `by_country(code)`: ISO 3166 alpha-2, case-insensitive; the first region declaring it.

Each returns the region id, None when nothing matches, and raises `ValueError` for text that is
not an address / number / country code (the API answers 400 for that and 404 for None).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

_FAMILIES = ((socket.AF_INET, 32), (socket.AF_INET6, 128))
_NUMBER_JUNK = str.maketrans("", "", " -.()")


@dataclass(frozen=True)
class _PrefixTable:
    """Longest-prefix match for one address family: one hash table per prefix length."""

    bits: int
    by_length: tuple[tuple[int, dict[int, str]], ...]  # (length, {address >> (bits-length): id})

    @classmethod
    def build(cls, bits: int, prefixes: Iterable[tuple[int, int, str]]) -> _PrefixTable:
        tables: dict[int, dict[int, str]] = {}
        for network, length, region in prefixes:
            # the first region declaring a prefix keeps it (config order is the tie-break)
            tables.setdefault(length, {}).setdefault(network >> (bits - length), region)
        ordered = tuple(sorted(tables.items(), reverse=True))
        return cls(bits, ordered)

    def lookup(self, address: int) -> str | None:
        bits = self.bits
        for length, table in self.by_length:
            found = table.get(address >> (bits - length))
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Resolver:
    """Region lookup by source address, caller number or country (see the module docstring)."""

    v4: _PrefixTable
    v6: _PrefixTable
    e164: dict[str, str] = field(default_factory=dict)  # digits without '+' → region
    e164_max_len: int = 0
    countries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, regions: Iterable[RegionLike]) -> Resolver:
        v4: list[tuple[int, int, str]] = []
        v6: list[tuple[int, int, str]] = []
        e164: dict[str, str] = {}
        countries: dict[str, str] = {}
        for r in regions:
            for prefix in r.prefixes:
                text, _, length = prefix.partition("/")
                family = socket.AF_INET6 if ":" in text else socket.AF_INET
                value = int.from_bytes(socket.inet_pton(family, text), "big")
                bits = 128 if family == socket.AF_INET6 else 32
                n = int(length) if length else bits
                (v6 if family == socket.AF_INET6 else v4).append((value, n, r.id))
            for p in r.e164:
                e164.setdefault(p.lstrip("+"), r.id)
            if r.country:
                countries.setdefault(r.country.upper(), r.id)
        return cls(
            _PrefixTable.build(32, v4),
            _PrefixTable.build(128, v6),
            e164,
            max((len(p) for p in e164), default=0),
            countries,
        )

    def by_ip(self, text: str) -> str | None:
        if ":" in text:
            value = int.from_bytes(_pton(socket.AF_INET6, text.strip("[]")), "big")
            mapped = value >> 32 == 0xFFFF  # ::ffff:a.b.c.d is an IPv4 caller
            if mapped:
                return self.v4.lookup(value & 0xFFFFFFFF)
            return self.v6.lookup(value)
        return self.v4.lookup(int.from_bytes(_pton(socket.AF_INET, text), "big"))

    def by_e164(self, text: str) -> str | None:
        digits = text.translate(_NUMBER_JUNK)
        if digits.startswith("+"):
            digits = digits[1:]
        elif digits.startswith("00") and len(digits) > 2:  # "00" alone is a number, not a prefix
            digits = digits[2:]
        if not digits.isdigit() or not digits.isascii() or len(digits) > 15:
            raise ValueError(f"{text!r} is not an E.164 number")
        table = self.e164
        for n in range(min(len(digits), self.e164_max_len), 0, -1):
            found = table.get(digits[:n])
            if found is not None:
                return found
        return None

    def by_country(self, text: str) -> str | None:
        if len(text) != 2 or not text.isascii() or not text.isalpha():
            raise ValueError(f"{text!r} is not an ISO 3166 alpha-2 country code")
        return self.countries.get(text.upper())


def _pton(family: int, text: str) -> bytes:
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP address") from None


class RegionLike(Protocol):
    """What `Resolver.build` reads from a region (netopt.config.RegionConfig fits)."""

    @property
    def id(self) -> str: ...
    @property
    def prefixes(self) -> tuple[str, ...]: ...
    @property
    def e164(self) -> tuple[str, ...]: ...
    @property
    def country(self) -> str | None: ...


__all__ = ["Resolver"]
