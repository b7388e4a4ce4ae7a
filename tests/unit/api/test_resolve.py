"""Region resolution: longest-prefix match, longest E.164 prefix, country; malformed input."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netopt.api.resolve import Resolver
from netopt.config import RegionConfig

REGIONS = (
    RegionConfig(id="lagos", country="NG", prefixes=("198.18.0.0/15", "2001:db8::/32"),
                 e164=("+234",)),
    RegionConfig(id="lagos-island", country="NG", prefixes=("198.18.10.0/24",),
                 e164=("+2341",)),
    RegionConfig(id="nairobi", country="KE", prefixes=("10.0.0.0/8", "2001:db8:ab::/48"),
                 e164=("+254",)),
    RegionConfig(id="everyone", prefixes=("0.0.0.0/0",)),
)  # fmt: skip
R = Resolver.build(REGIONS)


@pytest.mark.parametrize(
    ("ip", "region"),
    [
        ("198.18.10.7", "lagos-island"),  # /24 beats /15
        ("198.19.0.1", "lagos"),
        ("10.1.2.3", "nairobi"),
        ("8.8.8.8", "everyone"),  # only the default route covers it
        ("2001:db8:ab::1", "nairobi"),  # /48 beats /32
        ("2001:db8:1::1", "lagos"),
        ("::ffff:198.18.10.1", "lagos-island"),  # v4-mapped is an IPv4 caller
        ("[2001:db8::5]", "lagos"),
    ],
)
def test_longest_prefix_wins(ip: str, region: str) -> None:
    assert R.by_ip(ip) == region


def test_no_match_is_none() -> None:
    assert Resolver.build(REGIONS[:3]).by_ip("8.8.8.8") is None
    assert R.by_ip("2001:db9::1") is None


@pytest.mark.parametrize("bad", ["", "1", "0x7f.0.0.1", "198.18.0", "198.18.0.256", "::g", "a b"])
def test_malformed_address_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        R.by_ip(bad)


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+2348031234567", "lagos"),
        ("+2341234567", "lagos-island"),
        ("2341234567", "lagos-island"),
        ("002348031234567", "lagos"),
        ("+254 (20) 123-4567", "nairobi"),
        ("+4930123456", None),
    ],
)
def test_longest_e164_prefix(number: str, region: str | None) -> None:
    assert R.by_e164(number) == region


@pytest.mark.parametrize("bad", ["", "+", "+234abc", "+1234567890123456", "sip:+234@x"])
def test_malformed_number_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        R.by_e164(bad)


def test_country_first_region_wins_and_is_case_insensitive() -> None:
    assert R.by_country("NG") == "lagos"
    assert R.by_country("ke") == "nairobi"
    assert R.by_country("DE") is None
    for bad in ("N", "NGA", "1G", ""):
        with pytest.raises(ValueError):
            R.by_country(bad)


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), min_size=1, max_size=12),
       st.integers(0, 2**32 - 1))  # fmt: skip
def test_matches_brute_force(prefixes: list[tuple[int, int]], probe: int) -> None:
    nets = [ipaddress.IPv4Network((a, n), strict=False) for a, n in prefixes]
    regions = [RegionConfig(id=f"r{i}", prefixes=(str(net),)) for i, net in enumerate(nets)]
    addr = ipaddress.IPv4Address(probe)
    best = None
    for i, net in enumerate(nets):
        if addr in net and (best is None or net.prefixlen > nets[best].prefixlen):
            best = i
    expected = None if best is None else f"r{best}"
    # equal prefixes: the first region declaring it keeps it, which brute force also picks
    assert Resolver.build(regions).by_ip(str(addr)) == expected
