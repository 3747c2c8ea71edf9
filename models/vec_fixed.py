"""The vector unit's fixed-point functions for FP16 tiles, bit-exactly: the FP16 output
conversion, the gated activations (SiLU, GELU, the SwiGLU product) and RoPE (docs/numerics.md,
"Whole-model functions").

**Fixed point.** On an FP16 tile the vector unit works on ``v``, an integer in units of
``2**-FRAC`` (``FRAC`` = 16), and writes ``fp16_from_fixed(y)``: ``y * 2**-16`` rounded to the
nearest FP16 value (ties to even), saturated to +-65504 (never inf); 0 gives +0. The column and
token multipliers of :mod:`.vector` map accumulators into these units.

**Gates.** ``SILU: y = round_shift(v * gate_sigmoid(v), 15)``; ``GELU: y = round_shift(v *
gate_phi(v), 15)``; ``GLU: y = round_shift(silu(v_a) * sat32(v_b), 16)`` (SwiGLU: the SiLU of the
gate projection times the up projection). A gate is a 257-entry ROM ``T`` (Q15: ``round(2**15 *
g(x))`` at ``x = -R + k * R / 128``) read with linear interpolation::

    u    = clip(v, -2**(s + 7), 2**(s + 7) - 1) + 2**(s + 7)      # 0 .. 2**(s + 8) - 1
    k, f = u >> s, u & (2**s - 1)
    gate = T[k] + ((T[k + 1] - T[k]) * f >> s)                     # floor shift

with ``s`` = 13 for the sigmoid (``R`` = 16, steps of 1/8) and 12 for Phi, the normal CDF of
GELU (``R`` = 8, steps of 1/16). Interpolation error: below 2e-4 (sigmoid) and 1.2e-4 (Phi) of 1.

**RoPE** turns pairs of features ``(i, i + d/2)`` of a head by the angle of the token's position:
``ROPE_LO: y = round_shift(v_a * c - v_b * s, 14)`` for the first feature of a pair (``v_b`` is
its partner ``i + d/2``), ``ROPE_HI: y = round_shift(v_a * c + v_b * s, 14)`` for the second
(``v_b`` is feature ``i``), with ``c``, ``s`` = ``round(2**14 * cos / sin(angle))`` (int16, from
:func:`rope_table`).

Widths: ``v`` is ``sat32``'d before every product: ``v * gate`` < 2**47, ``silu * v_b`` < 2**62,
``v * c`` < 2**46.
"""

import math

import numpy as np

from .errors import RangeError, ShapeError
from .vector import _ints, round_shift, sat32

__all__ = ["FRAC", "FP16_MAX_FIXED", "GATE_ONE", "GATE_POINTS", "SIGMOID_SHIFT", "PHI_SHIFT",
           "SIGMOID_TABLE", "PHI_TABLE", "ROPE_ONE", "fp16_from_fixed", "fixed_from_fp16",
           "gate", "silu_fixed", "gelu_fixed", "glu_fixed", "rope_fixed", "rope_table"]

#: Fraction bits of the vector unit's fixed-point values on FP16 tiles.
FRAC = 16
#: Largest ``|y|`` converted without saturation: 65504 (the largest finite FP16) in ``2**-16`` units.
FP16_MAX_FIXED = 65504 << FRAC
#: 1.0 of a gate (Q15).
GATE_ONE = 1 << 15
#: Entries of a gate ROM: 256 segments.
GATE_POINTS = 257
#: Interpolation shift ``s`` of the sigmoid (steps of ``2**13 / 2**16`` = 1/8, range +-16) and of
#: Phi (steps of 1/16, range +-8).
SIGMOID_SHIFT = 13
PHI_SHIFT = 12
#: 1.0 of a RoPE cosine or sine (Q14).
ROPE_ONE = 1 << 14


def _table(fn, s):
    half = 1 << (s + 7)
    x = (np.arange(GATE_POINTS, dtype=np.float64) * (1 << s) - half) / (1 << FRAC)
    return tuple(int(round(GATE_ONE * fn(float(t)))) for t in x)


#: ``round(2**15 * sigmoid(x))`` at x = -16, -15.875, ..., 16 (the SiLU gate ROM).
SIGMOID_TABLE = _table(lambda x: 1.0 / (1.0 + math.exp(-x)), SIGMOID_SHIFT)
#: ``round(2**15 * Phi(x))`` at x = -8, -7.9375, ..., 8 (the GELU gate ROM).
PHI_TABLE = _table(lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))), PHI_SHIFT)


def fp16_from_fixed(y):
    """FP16 bit patterns (uint16) of ``y * 2**-16``: nearest, ties to even, saturated at +-65504."""
    y = np.clip(_ints(y), -FP16_MAX_FIXED, FP16_MAX_FIXED).astype(np.int64)
    # |y| < 2**32: exact in float64, and numpy rounds float64 -> float16 to nearest even once
    return np.ldexp(y.astype(np.float64), -FRAC).astype(np.float16).view(np.uint16)


def fixed_from_fp16(bits):
    """``round_shift`` of an FP16 value to ``2**-16`` units (round half up; inf and NaN give 0)."""
    bits = np.asarray(bits, dtype=np.uint16).astype(np.int64)
    sign, efield, frac = bits >> 15, (bits >> 10) & 0x1F, bits & 0x3FF
    sig = np.where(efield == 0, frac, frac | 0x400)
    sig = np.where(efield == 31, 0, np.where(sign == 1, -sig, sig))
    exp = np.where(efield == 0, 1, efield)
    # value = sig * 2**(exp - 25); in 2**-16 units: sig * 2**(exp - 9)
    up = sig << np.maximum(exp - 9, 0)
    return np.where(exp >= 9, up, round_shift(sig, np.maximum(9 - exp, 0)))


def gate(table, s, v):
    """The interpolated gate (Q15, int64 array) of ``v`` (2**-16 units) for ROM ``table``."""
    half = 1 << (s + 7)
    u = np.clip(_ints(v), -half, half - 1).astype(np.int64) + half
    k, f = u >> s, u & ((1 << s) - 1)
    t = np.asarray(table, dtype=np.int64)
    k1 = np.minimum(k + 1, GATE_POINTS - 1)
    return t[k] + (((t[k1] - t[k]) * f) >> s)


def silu_fixed(v):
    """``round_shift(v * sigmoid_gate(v), 15)`` with ``v`` sat32'd (2**-16 units in and out)."""
    v = sat32(v)
    return round_shift(v * gate(SIGMOID_TABLE, SIGMOID_SHIFT, v), 15)


def gelu_fixed(v):
    """``round_shift(v * phi_gate(v), 15)`` with ``v`` sat32'd (2**-16 units in and out)."""
    v = sat32(v)
    return round_shift(v * gate(PHI_TABLE, PHI_SHIFT, v), 15)


def glu_fixed(va, vb):
    """SwiGLU: ``round_shift(silu(v_a) * sat32(v_b), 16)`` (2**-16 units in and out)."""
    return round_shift(silu_fixed(va) * sat32(vb), FRAC)


def rope_fixed(va, vb, c, s, *, high):
    """``round_shift(v_a * c -/+ v_b * s, 14)`` (``+`` for the second feature of a pair, ``high``)."""
    va, vb = sat32(va), sat32(vb)
    c, s = np.asarray(c, np.int64), np.asarray(s, np.int64)
    return round_shift(va * c + vb * s if high else va * c - vb * s, 14)


def rope_table(positions, inv_freq):
    """``(c, s)`` int16 arrays (T, F): ``round(2**14 * cos/sin(pos * inv_freq))`` for each token
    position and frequency (a head's pair ``i`` turns by ``inv_freq[i] = base**(-2i/d)``)."""
    pos = np.asarray(positions, dtype=np.float64)
    f = np.asarray(inv_freq, dtype=np.float64)
    if pos.ndim != 1 or f.ndim != 1:
        raise ShapeError("positions and frequencies must be 1-D")
    if pos.size and (pos.min() < 0 or not np.all(np.isfinite(f))):
        raise RangeError("positions must be >= 0 and frequencies finite")
    ang = np.outer(pos, f)
    return (np.rint(np.cos(ang) * ROPE_ONE).astype(np.int16), np.rint(np.sin(ang) * ROPE_ONE).astype(np.int16))
