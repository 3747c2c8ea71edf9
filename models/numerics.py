"""Activation formats and fixed-point scales, bit-exactly as the hardware sees them.

Formats (docs/numerics.md is the prose version of this file):

* INT8 activations: ``x ~= a * sa[m]`` with ``a`` in -127..127 (the hardware also accepts -128) and a
  float32 per-token scale ``sa`` applied outside the array.
* FP16 activations: IEEE binary16. The array's row edge splits each value into a 12-bit signed
  significand and an exponent so that ``x == sig * 2**(exp - 25)`` exactly, ``exp`` in 1..30
  (subnormals have ``exp = 1`` and no hidden bit). Infinities and NaN are outside the datapath's
  domain: they become ``sig = 0`` and raise the array's sticky ``nonfinite`` flag.
* Fixed-point scales: a float scale per (row n, group g) becomes an unsigned ``scale_bits`` mantissa
  ``sm[n, g]`` with one exponent ``e[n]`` per row: ``s ~= sm * 2**-e``. Group offsets (Q4_1's
  minima) become signed mantissas at the same exponent: ``o ~= om * 2**-e``.
"""

import numpy as np

from .errors import RangeError, ShapeError

__all__ = [
    "FP16_EXP_BIAS_SHIFT", "FP16_SIG_MAX", "FP16_SHIFT_MAX", "fp16_decode", "quantize_act_int8", "FixedScales", "to_fixed_scales",
    "to_fixed_offsets", "wrap",
]

#: ``x == sig * 2**(exp - FP16_EXP_BIAS_SHIFT)`` for a decoded FP16 value (bias 15 + 10 fraction bits).
FP16_EXP_BIAS_SHIFT = 25
#: Largest magnitude of a decoded FP16 significand (hidden bit and 10 fraction bits).
FP16_SIG_MAX = 2047
#: Largest shift ``exp - 1`` of a finite FP16 value (exponent 30).
FP16_SHIFT_MAX = 29


def fp16_decode(x):
    """Split FP16 values into the array's (significand, exponent, non-finite) triple.

    Arguments
    ---------
    x : array of float16 (or of uint16 raw bit patterns)

    Returns
    -------
    sig : int64 array, -2047..2047
    exp : int64 array, 1..30
    nonfinite : bool array (inf or NaN; ``sig`` is 0 there)
    """
    x = np.asarray(x)
    if x.dtype == np.float16:
        bits = x.view(np.uint16)
    elif x.dtype == np.uint16:
        bits = x
    else:
        raise TypeError(f"fp16_decode takes float16 or uint16 bit patterns, not {x.dtype}")
    bits = bits.astype(np.int64)
    sign = bits >> 15
    efield = (bits >> 10) & 0x1F
    frac = bits & 0x3FF
    nonfinite = efield == 31
    sig = np.where(efield == 0, frac, frac | 0x400)
    sig = np.where(nonfinite, 0, sig)
    sig = np.where(sign == 1, -sig, sig)
    exp = np.where(efield == 0, 1, np.where(nonfinite, 1, efield))
    return sig, exp, nonfinite


def quantize_act_int8(x):
    """Per-token symmetric INT8 quantization of activations ``x`` (M, K).

    ``sa[m] = max|x[m]| / 127`` as float32 (1.0 for an all-zero token; the smallest positive float32
    if that quotient underflows); ``a = clip(rint(x / sa), -127, 127)``, computed in float64.
    Rounding is half to even. Returns ``(a int8 (M, K), sa float32 (M,))``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"activations must be a 2-D (tokens, features) array, not shape {x.shape}")
    if x.shape[1] == 0:
        raise ShapeError("activations have no features (shape (M, 0)); nothing to quantize")
    if not np.all(np.isfinite(x)):
        raise RangeError("activations contain inf or NaN; INT8 quantization needs finite values")
    absmax = np.max(np.abs(x), axis=1)
    if np.any(absmax > np.finfo(np.float32).max):
        raise RangeError("activations exceed the float32 range")
    sa = (absmax / 127).astype(np.float32)
    # A token so small that max/127 underflows float32 still gets a positive scale.
    tiny = np.nextafter(np.float32(0), np.float32(1))
    sa = np.where(sa > 0, sa, np.where(absmax > 0, tiny, np.float32(1))).astype(np.float32)
    a = np.clip(np.rint(x / sa[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    return a, sa


class FixedScales:
    """Per-group scales as integer mantissas with one exponent per output row.

    Members
    -------
    mant : int64 array (N, G), each in 0 .. 2**bits - 1
    exp : int64 array (N,); the scale of (n, g) is ``mant[n, g] * 2**-exp[n]``
    bits : int
    """

    def __init__(self, mant, exp, bits):
        self.mant = np.asarray(mant, dtype=np.int64)
        self.exp = np.asarray(exp, dtype=np.int64)
        self.bits = bits
        if self.mant.ndim != 2 or self.exp.shape != self.mant.shape[:1]:
            raise ShapeError(f"scale mantissas (N, groups) and exponents (N,) disagree: "
                             f"{self.mant.shape} vs {self.exp.shape}")
        if np.any(self.mant < 0) or np.any(self.mant >= 1 << bits):
            raise RangeError(f"scale mantissas must be in 0..{(1 << bits) - 1}")

    def value(self):
        """The scales as float64 (exact for bits <= 16 and moderate exponents)."""
        return np.ldexp(self.mant.astype(np.float64), -self.exp[:, None])


def to_fixed_scales(scales, bits):
    """Round float scales (N, G) >= 0 to :class:`FixedScales` with ``bits``-bit mantissas.

    The exponent of each row puts the row's largest scale in ``[2**(bits-1), 2**bits)``; smaller
    scales of the row lose relative precision (documented in docs/numerics.md). Rounding is
    half to even; a row of zeros gets exponent 0. Every scale is within half a unit of
    ``2**-exp``, i.e. ``2**-bits`` of the row's *rounded* maximum (one bit less when rounding
    carried the maximum to ``2**bits`` and the row's exponent dropped by one).
    """
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 2:
        raise ShapeError(f"scales must be 2-D (rows, groups), not shape {s.shape}")
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise RangeError("scales must be finite and non-negative")
    smax = s.max(axis=1)
    _, e2 = np.frexp(np.where(smax > 0, smax, 1.0))  # smax = f * 2**e2, f in [0.5, 1)
    exp = (bits - e2).astype(np.int64)
    mant = np.rint(np.ldexp(s, exp[:, None])).astype(np.int64)
    # Rounding may carry the largest mantissa to 2**bits: drop one bit of exponent for that row.
    over = mant.max(axis=1) >= (1 << bits)
    exp = np.where(over, exp - 1, exp)
    mant = np.rint(np.ldexp(s, exp[:, None])).astype(np.int64)
    exp = np.where(smax > 0, exp, 0)
    return FixedScales(mant, exp, bits)


def to_fixed_offsets(scales, offsets, bits, offset_bits):
    """Scales (N, G) >= 0 and signed offsets (N, G) as mantissas at one exponent per row.

    Returns ``(FixedScales, om)``: ``om`` int64 (N, G), ``om = rint(o * 2**e[n])`` (half to even),
    within ``-(2**(offset_bits-1) - 1) .. 2**(offset_bits-1) - 1``. ``e[n]`` is
    :func:`to_fixed_scales`'s exponent, lowered where the row's largest offset would not fit
    ``offset_bits`` (then the largest ``|om|`` is in ``[2**(offset_bits-2), 2**(offset_bits-1))``
    and the scales keep fewer bits); a row of zero scales takes its exponent from the offsets
    alone. So every offset is within half a unit of ``2**-e[n]``: ``2**-bits`` of the row's
    largest scale (``scale_bits`` = 16: ``2**-16``) while the offsets fit.
    """
    fs = to_fixed_scales(scales, bits)
    o = np.asarray(offsets, dtype=np.float64)
    if o.shape != fs.mant.shape:
        raise ShapeError(f"offsets have shape {o.shape}, the scales {fs.mant.shape}")
    if not np.all(np.isfinite(o)):
        raise RangeError("offsets must be finite")
    s = np.asarray(scales, dtype=np.float64)
    omax = np.abs(o).max(axis=1, initial=0.0)
    _, e2 = np.frexp(np.where(omax > 0, omax, 1.0))  # omax in [2**(e2-1), 2**e2)
    e_off = (offset_bits - 1 - e2).astype(np.int64)  # puts omax in [2**(offset_bits-2), 2**(offset_bits-1))
    has_s = fs.mant.max(axis=1, initial=0) > 0
    exp = np.where(has_s, fs.exp, e_off)
    exp = np.where(omax > 0, np.minimum(exp, e_off), exp)
    lim = (1 << (offset_bits - 1)) - 1
    for _ in range(2):  # rounding may carry the largest offset to 2**(offset_bits-1): one bit less
        om = np.rint(np.ldexp(o, exp[:, None])).astype(np.int64)
        over = np.abs(om).max(axis=1, initial=0) > lim
        if not over.any():
            break
        exp = np.where(over, exp - 1, exp)
    mant = np.rint(np.ldexp(s, exp[:, None])).astype(np.int64)
    exp = np.where(has_s | (omax > 0), exp, 0)
    return FixedScales(mant, exp, bits), om


def wrap(values, bits):
    """``values`` reduced to ``bits``-bit two's complement (what a register of that width keeps)."""
    half = 1 << (bits - 1)
    if isinstance(values, np.ndarray) and values.dtype != object and bits <= 62:
        return ((values + half) & ((1 << bits) - 1)) - half
    v = np.asarray(values, dtype=object)
    return ((v + half) % (1 << bits)) - half
