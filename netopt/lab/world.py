"""``netopt lab world``: a lab profile built from a real RTT matrix plus access statistics.

Delays come from a square city RTT matrix (WonderProxy layout: header row of cities, a row per
city, RTT in ms, trailing comma): every link's one-way delay is RTT/2 (same-city pairs, 0 in
the matrix, get a 1 ms floor). The matrix is data-centre to data-centre and has no jitter or
loss, so:

- PoP↔PoP (backbone) links get a fixed 0.2 ms jitter and no loss;
- links touching a region carry that region's customer-side *access* jitter and loss, derived
  from RIPE Atlas country RTT statistics (``cty1,cty2,rtt_cnt,rtt_avg,rtt_std,…``): for the
  region's country C, v = median over pairs (C, X), X ≠ C, both real country codes, with
  rtt_cnt ≥ 1000, of rtt_std / rtt_avg — how much RTTs measured from access networks in C
  spread relative to their mean, a distance-free index. jitter_ms = clip(20·v, 0.5, 12),
  loss_pct = clip(2·v, 0.1, 2). A country with fewer than 20 such pairs (RIPE Atlas has few
  probes in NG and EG) takes the median v of the well-measured countries of its continent
  (Africa) or of all countries.
- a *long* open-Internet path (a region to a PoP in another city, or to another region) also
  carries *transit* jitter and loss on top of the last mile; a hop to an edge node in the
  region's own city carries the last mile only. The transit share comes from the same file,
  domestic against international: T = median rtt_std of the country's international pairs
  ÷ rtt_std of its intra-country row (both with rtt_cnt ≥ 1000), clipped to [1, 5]. An
  international path's delay spreads T times as much as a domestic one (T² in variance), so
  the transit adds jitter_transit = (T − 1)·jitter and, taking drops to grow with queueing
  variance (an approximation, stated as such), loss_transit = min(3, (T² − 1)·loss) %; the
  long path's jitter is their quadrature, its loss 1−(1−a)(1−b). A country without a usable
  intra-country row takes the median T of its continent's (Africa) or of all countries.
  Region↔region links combine both ends' long paths (jitter in quadrature, loss as
  1−(1−a)(1−b)).

The profile's header records every number's origin.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from netopt.errors import ConfigError
from netopt.lab.profile import NODE_NAME_PATTERN, parse_profile

CITY_COUNTRY = {
    "Lagos": "NG", "Nairobi": "KE", "Johannesburg": "ZA", "CapeTown": "ZA", "Cairo": "EG",
    "DaresSalaam": "TZ", "Algiers": "DZ", "Tunis": "TN", "Fez": "MA", "Dubai": "AE",
    "Riyadh": "SA", "TelAviv": "IL", "Istanbul": "TR", "Moscow": "RU", "Frankfurt": "DE",
    "London": "GB", "Amsterdam": "NL", "Paris": "FR", "HongKong": "HK", "Singapore": "SG",
    "Tokyo": "JP", "SaoPaulo": "BR", "BuenosAires": "AR", "NewDelhi": "IN",
}  # fmt: skip
AFRICA = {"NG", "KE", "ZA", "EG", "GH", "TZ", "UG", "MA", "TN", "DZ", "SN", "CI", "RW", "CM",
          "AO", "ZM", "ZW", "MZ", "NA", "MU"}  # fmt: skip
MIN_SAMPLES = 1000
MIN_PAIRS = 20
BACKBONE_JITTER_MS = 0.2
SAME_CITY_DELAY_MS = 1.0


@dataclass(frozen=True)
class Place:
    node: str
    city: str
    country: str | None = None
    pop_role: str | None = None


MAX_TRANSIT_FACTOR = 5.0
MAX_TRANSIT_LOSS_PCT = 3.0


@dataclass(frozen=True)
class Access:
    """A region's last mile, and what a long open-Internet path adds to it (transit)."""

    jitter_ms: float
    loss_pct: float
    source: str
    transit_factor: float = 1.0
    transit_source: str = ""

    @property
    def long_jitter_ms(self) -> float:
        return round(self.jitter_ms * math.hypot(1.0, self.transit_factor - 1.0), 2)

    @property
    def long_loss_pct(self) -> float:
        transit = min(MAX_TRANSIT_LOSS_PCT, self.loss_pct * (self.transit_factor**2 - 1.0))
        return round(100.0 * (1 - (1 - self.loss_pct / 100) * (1 - transit / 100)), 3)


def read_matrix(path: str | Path) -> dict[str, dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    cities = [c for c in rows[0][1:] if c]
    out: dict[str, dict[str, float]] = {}
    for row in rows[1:]:
        if row and row[0]:
            out[row[0]] = {c: float(v) for c, v in zip(cities, row[1:], strict=False) if v}
    return out


def access_variability(path: str | Path) -> dict[str, tuple[float, int]]:
    """Per country: (median rtt_std/rtt_avg over well-sampled foreign pairs, number of pairs)."""
    ratios: dict[str, list[float]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            a, b = row["cty1"], row["cty2"]
            if a == b or {a, b} & {"None", "Unknown"} or int(row["rtt_cnt"]) < MIN_SAMPLES:
                continue
            ratio = float(row["rtt_std"]) / float(row["rtt_avg"])
            for c in (a, b):
                ratios.setdefault(c, []).append(ratio)
    return {c: (statistics.median(v), len(v)) for c, v in ratios.items()}


def transit_factors(path: str | Path) -> dict[str, tuple[float, int]]:
    """Per country with a well-sampled intra-country row: (T, international pairs), where
    T = median international rtt_std / intra-country rtt_std (unclipped)."""
    intra: dict[str, float] = {}
    intl: dict[str, list[float]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            a, b = row["cty1"], row["cty2"]
            if {a, b} & {"None", "Unknown"} or int(row["rtt_cnt"]) < MIN_SAMPLES:
                continue
            std = float(row["rtt_std"])
            if a == b:
                intra[a] = std
            else:
                for c in (a, b):
                    intl.setdefault(c, []).append(std)
    return {
        c: (statistics.median(intl[c]) / std, len(intl[c]))
        for c, std in intra.items()
        if std > 0 and len(intl.get(c, [])) >= MIN_PAIRS
    }


def transit_for(country: str, factors: dict[str, tuple[float, int]]) -> tuple[float, str]:
    """(T clipped to [1, MAX_TRANSIT_FACTOR], where it comes from) for a country."""
    if country in factors:
        t, n = factors[country]
        source = f"RIPE Atlas {country}: intl/domestic rtt_std {t:.2f} over {n} pairs"
    else:
        pool = [c for c in factors if c in AFRICA] if country in AFRICA else list(factors)
        t = statistics.median(factors[c][0] for c in pool)
        group = "African" if country in AFRICA else "all"
        source = (
            f"RIPE Atlas {country}: no intra-country row, so the median over "
            f"{len(pool)} {group} countries, {t:.2f}"
        )
    return round(min(MAX_TRANSIT_FACTOR, max(1.0, t)), 2), source


def access_for(country: str, var: dict[str, tuple[float, int]]) -> Access:
    v, n = var.get(country, (0.0, 0))
    source = f"RIPE Atlas {country}: median std/avg {v:.3f} over {n} country pairs"
    if n < MIN_PAIRS:
        pool = [c for c, (_, k) in var.items() if k >= MIN_PAIRS]
        if country in AFRICA:
            pool = [c for c in pool if c in AFRICA]
        v = statistics.median(var[c][0] for c in pool)
        group = "African" if country in AFRICA else "all"
        source = (
            f"RIPE Atlas {country}: only {n} well-sampled pairs, so the median over "
            f"{len(pool)} {group} countries, {v:.3f}"
        )
    jitter = min(12.0, max(0.5, 20.0 * v))
    loss = min(2.0, max(0.1, 2.0 * v))
    return Access(round(jitter, 1), round(loss, 2), source)


def parse_places(spec: list[str], *, pops: bool) -> list[Place]:
    """``[node=]City[@CC][:core|edge|relay]`` items; node defaults to the city in lower case."""
    places = []
    for item in spec:
        node, _, rest = item.rpartition("=")
        rest, _, role = rest.partition(":")
        city, _, country = rest.partition("@")
        node = node or city.lower()
        country = country or CITY_COUNTRY.get(city, "")
        if not pops and not country:
            raise ConfigError("--regions", [f"{city}: unknown country, write it as {city}@CC"])
        places.append(Place(node, city, country or None, (role or None) if pops else None))
    return places


def build_profile_text(
    matrix_path: str | Path,
    regions: list[str],
    pops: list[str],
    access_path: str | Path | None = None,
) -> str:
    """The YAML text of a profile (header comments included); validated before it is returned."""
    matrix = read_matrix(matrix_path)
    region_places = parse_places(regions, pops=False)
    pop_places = parse_places(pops, pops=True)
    places = region_places + pop_places
    missing = [p.city for p in places if p.city not in matrix]
    if missing:
        raise ConfigError(str(matrix_path), [f"city not in the matrix: {c}" for c in missing])
    bad = [p.node for p in places if not _valid_node(p.node)]
    if bad:
        raise ConfigError("world", [f"node name {n!r} must match {NODE_NAME_PATTERN}" for n in bad])
    access_file = Path(access_path) if access_path else _default_access(matrix_path)
    var = access_variability(access_file)
    factors = transit_factors(access_file)
    access = {}
    for p in region_places:
        base = access_for(p.country or "", var)
        t, why = transit_for(p.country or "", factors)
        access[p.node] = dataclasses.replace(base, transit_factor=t, transit_source=why)
    nodes: list[dict[str, object]] = [
        {"name": p.node, "role": "region", "city": p.city} for p in region_places
    ]
    for p in pop_places:
        node: dict[str, object] = {"name": p.node, "role": "pop", "city": p.city}
        if p.pop_role:
            node["pop_role"] = p.pop_role
        nodes.append(node)
    links = []
    for i, a in enumerate(places):
        for b in places[i + 1 :]:
            links.append(_link(a, b, matrix, access))
    default: dict[str, object] = {"delay_ms": 150.0, "jitter_ms": 10.0, "loss_pct": 1.0}
    data = {"nodes": nodes, "links": links, "default_link": default}
    parse_profile(data, "generated world")  # refuse to write something `lab up` would reject
    header = _header(matrix_path, access_file, access, region_places)
    header += f"# Built with: --regions {','.join(regions)} --pops {','.join(pops)}\n"
    return header + _dump(nodes, links, default)


def _valid_node(name: str) -> bool:
    return re.match(NODE_NAME_PATTERN, name) is not None


def _default_access(matrix_path: str | Path) -> Path:
    return Path(matrix_path).parent / "ripe_atlas_country_rtt_stat.csv.gz"


def _link(
    a: Place, b: Place, matrix: dict[str, dict[str, float]], access: dict[str, Access]
) -> dict[str, object]:
    rtt = matrix[a.city].get(b.city, 0.0) if a.city != b.city else 0.0
    delay = max(SAME_CITY_DELAY_MS, rtt / 2.0)
    ends = [access[n] for n in (a.node, b.node) if n in access]
    local = a.city == b.city and len(ends) == 1  # a region and an edge node in its city
    if not ends:
        jitter, loss = BACKBONE_JITTER_MS, 0.0
    elif local:
        jitter, loss = ends[0].jitter_ms, ends[0].loss_pct
    else:
        jitter = math.sqrt(sum(e.long_jitter_ms**2 for e in ends))
        loss = 100.0 * (1.0 - math.prod(1.0 - e.long_loss_pct / 100.0 for e in ends))
    return {
        "a": a.node,
        "b": b.node,
        "delay_ms": round(delay, 2),
        "jitter_ms": round(jitter, 2),
        "loss_pct": round(loss, 3),
    }


def _header(
    matrix_path: str | Path, access_file: Path, access: dict[str, Access], regions: list[Place]
) -> str:
    lines = [
        "# netopt lab world — generated by `netopt lab world`; do not edit by hand, regenerate.",
        f"# Delays: one-way = RTT/2 from {Path(matrix_path).name} (WonderProxy server-to-server",
        "#   averages via relab/hotstuff; same-city pairs get a 1 ms floor).",
        f"# Backbone (PoP<->PoP): jitter {BACKBONE_JITTER_MS} ms, no loss (matrix has neither).",
        f"# Access (any link touching a region), from {access_file.name} (RIPE Atlas, 2025):",
        "#   v = median rtt_std/rtt_avg over the country's foreign pairs with >= 1000 samples;",
        "#   jitter_ms = clip(20*v, 0.5, 12), loss_pct = clip(2*v, 0.1, 2);",
        "#   that is the last mile: all a link to an edge node in the region's own city carries.",
        "# Transit (long open-Internet paths: region to a PoP in another city, region<->region):",
        "#   T = median international rtt_std / intra-country rtt_std (same file), clip [1, 5];",
        "#   transit jitter = (T-1)*jitter (std ratio), transit loss = min(3, (T^2-1)*loss) %",
        "#   (variance ratio; drops taken to grow with queueing variance, an approximation);",
        "#   long jitter = hypot(jitter, transit), long loss = 1-(1-loss)(1-transit);",
        "#   region<->region: both ends' long paths,",
        "#   jitter in quadrature, loss 1-(1-a)(1-b). See docs/lab.md.",
    ]
    for p in regions:
        acc = access[p.node]
        lines.append(
            f"#   {p.node}: jitter {acc.jitter_ms} ms, loss {acc.loss_pct} % <- {acc.source}"
        )
        lines.append(
            f"#     long path: T {acc.transit_factor} -> jitter {acc.long_jitter_ms} ms, "
            f"loss {acc.long_loss_pct} % <- {acc.transit_source}"
        )
    return "\n".join(lines) + "\n"


def _dump(
    nodes: list[dict[str, object]], links: list[dict[str, object]], default: dict[str, object]
) -> str:
    out = ["nodes:"] + ["  - " + _flow(n) for n in nodes]
    out += ["links:"] + ["  - " + _flow(link) for link in links]
    out.append("default_link: " + _flow(default))
    return "\n".join(out) + "\n"


def _flow(mapping: dict[str, object]) -> str:
    return yaml.safe_dump(mapping, default_flow_style=True, sort_keys=False, width=1000).strip()
