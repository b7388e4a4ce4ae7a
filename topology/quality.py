"""How a call sounds over a path: ITU-T G.107 E-model (R-factor, MOS), per codec.

Flow: window stats (rtt, jitter, loss) → **quality** → planner ranks candidate routes by R.

Everything here is vectorised over numpy arrays (scalars are 0-d arrays); the scalar helpers
(`mos`, `r_factor_for_path`) call the same vector code, so there is one implementation.

The chain, for a path with round-trip `rtt_ms`, RFC 3550 interarrival jitter `jitter_ms` and
packet loss `loss_pct`:

1. `mouth_to_ear_delay_ms`: Ta = rtt/2 + jitter buffer + codec delay (formula in its docstring).
2. `effective_loss_pct`: network loss plus packets arriving later than the jitter buffer.
3. `r_factor`: R = Ro − Is − Id(Ta) − Ie,eff(Ppl) + A, G.107 (06/2015) with its default
   parameters (no echo, SLR 8, RLR 2, STMR 15, TELR 65, WEPL 110, Nc −70 dBm0p, ...), which give
   R ≈ 93.2 at Ta = 0. T (echo path) = Ta and Tr (4-wire loop) = 2·Ta.
4. `mos_from_r`: G.107 Annex B, clamped to [1, 4.5] (the raw polynomial dips to 0.99 for
   0 < R < 6.5; clamping keeps MOS monotone in R).

The planner scores millions of candidates with `DelayTable`, a lookup of Ro − Is − Id on a 0.1 ms
grid computed once from the exact formula (error < 0.01 R); `Ie,eff` and MOS use the same
functions as here.

Codecs (`CODECS`): Ie and Bpl from ITU-T G.113 Appendix I (random loss, BurstR = 1):
G.711 with PLC (Ie 0, Bpl 25.1), G.711 without PLC (Ie 0, Bpl 4.3), G.729A (Ie 11, Bpl 19.0).
Opus is NOT in G.113 on the narrowband scale: `opus` (Ie 0, Bpl 30) is an approximation —
treated as transparent like G.711 at ≥ 16 kbit/s and somewhat more robust to loss thanks to its
built-in concealment; use it to compare routes, not as an absolute MOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

# ---- G.107 default parameters (Table 3) -------------------------------------------------
SLR, RLR, STMR, LSTR, DS, TELR, WEPL, QDU = 8.0, 2.0, 15.0, 18.0, 3.0, 65.0, 110.0, 1.0
NC, NFOR, PS, PR = -70.0, -64.0, 35.0, 35.0
M_T, S_T = 100.0, 1.0  # Idd: delay (ms) where pure-delay impairment starts, and its sharpness


def _basic_terms() -> tuple[float, float]:
    """Ro (basic signal-to-noise ratio) and No (total noise, dBm0p) at the default parameters."""
    olr = SLR + RLR
    nos = PS - SLR - DS - 100 + 0.004 * (PS - olr - DS - 14) ** 2
    pre = PR + 10 * math.log10(1 + 10 ** ((10 - LSTR) / 10))
    nor = RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = NFOR + RLR
    no = 10 * math.log10(10 ** (NC / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    return 15 - 1.5 * (SLR + no), no


RO, NO = _basic_terms()


def _is_terms(t_ms: F64) -> F64:
    """Simultaneous impairment Is = Iolr + Ist + Iq (Ist depends weakly on T via STMRo)."""
    olr = SLR + RLR
    xolr = olr + 0.2 * (64 + NO - RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * np.log10(10 ** (-STMR / 10) + np.exp(-t_ms / 4) * 10 ** (-TELR / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    q = 37 - 15 * math.log10(QDU)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (RO - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * math.log10(1 + 10**y + 10**z)
    return np.asarray(iolr + ist + iq, dtype=np.float64)


def idte(t_ms: ArrayLike) -> F64:
    """Talker-echo impairment Idte for mean one-way echo-path delay T (ms), G.107 §7.4."""
    t = np.maximum(np.asarray(t_ms, dtype=np.float64), 0.0)
    roe = -1.5 * (NO - RLR)
    terv = TELR - 40 * np.log10((1 + t / 10) / (1 + t / 150)) + 6 * np.exp(-0.3 * t**2)
    re = 80 + 2.5 * (terv - 14)
    value = ((roe - re) / 2 + np.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - np.exp(-t))
    return np.asarray(value, dtype=np.float64)


def idle(tr_ms: ArrayLike) -> F64:
    """Listener-echo impairment Idle for 4-wire loop round-trip delay Tr (ms)."""
    tr = np.maximum(np.asarray(tr_ms, dtype=np.float64), 0.0)
    rle = 10.5 * (WEPL + 7) * (tr + 1) ** -0.25
    return np.asarray((RO - rle) / 2 + np.sqrt((RO - rle) ** 2 / 4 + 169), dtype=np.float64)


def idd(ta_ms: ArrayLike) -> F64:
    """Pure-delay impairment Idd for absolute delay Ta (ms): 0 up to mT = 100 ms, then
    25·((1 + X⁶)^(1/6) − 3·(1 + (X/3)⁶)^(1/6) + 2) with X = log2(Ta / mT) (sT = 1)."""
    ta = np.asarray(ta_ms, dtype=np.float64)
    x = np.log2(np.maximum(ta, M_T) / M_T)
    e = 6 * S_T
    return np.asarray(25 * ((1 + x**e) ** (1 / e) - 3 * (1 + (x / 3) ** e) ** (1 / e) + 2))


def delay_impairment(ta_ms: ArrayLike) -> F64:
    """Id = Idte(T) + Idle(Tr) + Idd(Ta) with T = Ta and Tr = 2·Ta (no separate echo path)."""
    ta = np.maximum(np.asarray(ta_ms, dtype=np.float64), 0.0)
    return np.asarray(idte(ta) + idle(2 * ta) + idd(ta), dtype=np.float64)


def delay_r(ta_ms: ArrayLike) -> F64:
    """The loss-free part of R: Ro − Is − Id(Ta). About 93.2 at Ta = 0."""
    ta = np.maximum(np.asarray(ta_ms, dtype=np.float64), 0.0)
    return np.asarray(RO - _is_terms(ta) - delay_impairment(ta), dtype=np.float64)


@dataclass(frozen=True)
class Codec:
    """E-model constants of a codec: equipment impairment `ie`, loss robustness `bpl`, and the
    delay it adds (packetisation `packet_ms` + algorithmic look-ahead `lookahead_ms`)."""

    name: str
    ie: float
    bpl: float
    packet_ms: float = 20.0
    lookahead_ms: float = 0.0

    @property
    def codec_delay_ms(self) -> float:
        return self.packet_ms + self.lookahead_ms


CODECS: dict[str, Codec] = {
    "g711": Codec("g711", ie=0.0, bpl=25.1),
    "g711_noplc": Codec("g711_noplc", ie=0.0, bpl=4.3),
    "g729a": Codec("g729a", ie=11.0, bpl=19.0, lookahead_ms=5.0),
    "opus": Codec("opus", ie=0.0, bpl=30.0, lookahead_ms=6.5),  # approximation, see docstring
}


def codec_of(codec: Codec | str) -> Codec:
    """A Codec from its name (ValueError listing the known ones) or the Codec itself."""
    if isinstance(codec, Codec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}") from None


@dataclass(frozen=True)
class JitterBuffer:
    """An adaptive playout buffer: depth = clip(factor × jitter, min_ms, max_ms)."""

    factor: float = 4.0
    min_ms: float = 20.0
    max_ms: float = 200.0

    def depth_ms(self, jitter_ms: ArrayLike) -> F64:
        j = np.asarray(jitter_ms, dtype=np.float64)
        return np.asarray(np.clip(self.factor * j, self.min_ms, self.max_ms), dtype=np.float64)


DEFAULT_JB = JitterBuffer()


def mouth_to_ear_delay_ms(
    rtt_ms: ArrayLike,
    jitter_ms: ArrayLike,
    codec: Codec | str = "g711",
    jb: JitterBuffer = DEFAULT_JB,
) -> F64:
    """Ta = rtt_ms / 2 + jb.depth_ms(jitter_ms) + codec.packet_ms + codec.lookahead_ms.

    One-way network delay is taken as half the round trip; the playout buffer adds its depth
    (clip(4 × jitter, 20, 200) ms by default); the codec adds one packet of packetisation and its
    look-ahead. Any relay delay is already inside `rtt_ms` (path composition adds it)."""
    c = codec_of(codec)
    rtt = np.asarray(rtt_ms, dtype=np.float64)
    return np.asarray(rtt / 2 + jb.depth_ms(jitter_ms) + c.codec_delay_ms, dtype=np.float64)


def late_loss_ratio(jitter_ms: ArrayLike, jb: JitterBuffer = DEFAULT_JB) -> F64:
    """Share of packets arriving after the playout buffer: 0.5·exp(−1.5·depth / jitter).

    Model: per-packet delay variation is Laplace(0, b) around the mean; RFC 3550 jitter J is
    E|D_i − D_{i−1}| = 1.5·b for that law, so b = J / 1.5 and P(D > depth) = 0.5·exp(−depth/b)."""
    j = np.asarray(jitter_ms, dtype=np.float64)
    depth = jb.depth_ms(j)
    with np.errstate(over="ignore"):  # a tiny jitter makes depth/jitter overflow to inf: ratio 0
        ratio = 0.5 * np.exp(-1.5 * depth / np.where(j > 0, j, 1.0))
    return np.asarray(np.where(j > 0, ratio, 0.0), dtype=np.float64)


def effective_loss_pct(
    loss_pct: ArrayLike, jitter_ms: ArrayLike, jb: JitterBuffer = DEFAULT_JB
) -> F64:
    """Ppl: network loss and late packets combined, 100·(1 − (1 − loss)(1 − late))."""
    survive = (1 - np.asarray(loss_pct, dtype=np.float64) / 100) * (
        1 - late_loss_ratio(jitter_ms, jb)
    )
    return np.asarray(100 * (1 - survive), dtype=np.float64)


def ie_eff(ppl_pct: ArrayLike, codec: Codec | str = "g711", burst_r: float = 1.0) -> F64:
    """Ie,eff = Ie + (95 − Ie)·Ppl / (Ppl/BurstR + Bpl) (G.107 eq. 7-29)."""
    c = codec_of(codec)
    ppl = np.asarray(ppl_pct, dtype=np.float64)
    return np.asarray(c.ie + (95 - c.ie) * ppl / (ppl / burst_r + c.bpl), dtype=np.float64)


def r_factor(
    ta_ms: ArrayLike,
    ppl_pct: ArrayLike,
    codec: Codec | str = "g711",
    *,
    burst_r: float = 1.0,
    advantage: float = 0.0,
) -> F64:
    """R = Ro − Is − Id(Ta) − Ie,eff(Ppl) + A for mouth-to-ear delay Ta and effective loss Ppl."""
    return np.asarray(
        delay_r(ta_ms) - ie_eff(ppl_pct, codec, burst_r) + advantage, dtype=np.float64
    )


def mos_from_r(r: ArrayLike) -> F64:
    """MOS = 1 + 0.035R + 7·10⁻⁶·R(R − 60)(100 − R), clamped to [1, 4.5] (G.107 Annex B)."""
    rr = np.clip(np.asarray(r, dtype=np.float64), 0.0, 100.0)
    m = 1 + 0.035 * rr + 7e-6 * rr * (rr - 60) * (100 - rr)
    return np.asarray(np.clip(m, 1.0, 4.5), dtype=np.float64)


def path_r(
    rtt_ms: ArrayLike,
    jitter_ms: ArrayLike,
    loss_pct: ArrayLike,
    codec: Codec | str = "g711",
    jb: JitterBuffer = DEFAULT_JB,
) -> F64:
    """R for a path's window stats: delay and loss through the jitter buffer, then the E-model."""
    ta = mouth_to_ear_delay_ms(rtt_ms, jitter_ms, codec, jb)
    return r_factor(ta, effective_loss_pct(loss_pct, jitter_ms, jb), codec)


def path_mos(
    rtt_ms: ArrayLike,
    jitter_ms: ArrayLike,
    loss_pct: ArrayLike,
    codec: Codec | str = "g711",
    jb: JitterBuffer = DEFAULT_JB,
) -> F64:
    """MOS for a path's window stats (vectorised)."""
    return mos_from_r(path_r(rtt_ms, jitter_ms, loss_pct, codec, jb))


def mos(rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0, codec: str = "g711") -> float:
    """MOS of one path (scalar convenience over `path_mos`)."""
    return float(path_mos(rtt_ms, jitter_ms, loss_pct, codec))


# ---- path composition ---------------------------------------------------------------------


def compose_rtt_ms(*legs_rtt_ms: ArrayLike, relay_delay_ms: ArrayLike = 0.0) -> F64:
    """Round trips add; each relay's one-way delay is crossed twice (there and back)."""
    total = np.asarray(2 * np.asarray(relay_delay_ms, dtype=np.float64))
    for leg in legs_rtt_ms:
        total = total + np.asarray(leg, dtype=np.float64)
    return np.asarray(total, dtype=np.float64)


def compose_jitter_ms(*legs_jitter_ms: ArrayLike) -> F64:
    """Independent jitters add in quadrature: sqrt(Σ j²)."""
    total = np.asarray(0.0)
    for leg in legs_jitter_ms:
        total = total + np.asarray(leg, dtype=np.float64) ** 2
    return np.asarray(np.sqrt(total), dtype=np.float64)


def compose_loss_pct(*legs_loss_pct: ArrayLike) -> F64:
    """Independent losses compose as 1 − Π(1 − p)."""
    survive = np.asarray(1.0)
    for leg in legs_loss_pct:
        survive = survive * (1 - np.asarray(leg, dtype=np.float64) / 100)
    return np.asarray(100 * (1 - survive), dtype=np.float64)


# ---- poor-path flags (Skype/Via) ------------------------------------------------------------

VIA_RTT_MS, VIA_LOSS_PCT, VIA_JITTER_MS = 320.0, 1.2, 12.0


def poor_flags(rtt_ms: float, jitter_ms: float, loss_pct: float) -> list[str]:
    """The Via thresholds a path crosses, as readable phrases (empty = none)."""
    flags = []
    if rtt_ms > VIA_RTT_MS:
        flags.append(f"RTT {rtt_ms:.0f} ms > {VIA_RTT_MS:.0f} ms")
    if loss_pct > VIA_LOSS_PCT:
        flags.append(f"loss {loss_pct:.2f} % > {VIA_LOSS_PCT} %")
    if jitter_ms > VIA_JITTER_MS:
        flags.append(f"jitter {jitter_ms:.1f} ms > {VIA_JITTER_MS:.0f} ms")
    return flags


# ---- fast path for the planner ------------------------------------------------------------


class DelayTable:
    """Ro − Is − Id(Ta) tabulated on a uniform grid (default 0.1 ms up to 3000 ms), float32.

    `lookup` is nearest-grid: the slope of Id is below 0.2 R/ms, so the error is < 0.01 R.
    Past `max_ms` the last value is used (R is already near 0 there); monotone non-increasing."""

    def __init__(self, step_ms: float = 0.1, max_ms: float = 3000.0) -> None:
        self.step_ms = step_ms
        self.inv_step = np.float32(1.0 / step_ms)
        grid = np.arange(0.0, max_ms + step_ms, step_ms)
        values = delay_r(grid)
        # Enforce monotone non-increasing against float noise at the grid.
        self.values = np.minimum.accumulate(values).astype(np.float32)

    def lookup(
        self, ta_ms: NDArray[np.float32], out: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """R contribution of delay for an array of Ta (ms), same dtype as the table."""
        idx = (ta_ms * self.inv_step + np.float32(0.5)).astype(np.int32)
        return np.take(self.values, idx, mode="clip", out=out)
