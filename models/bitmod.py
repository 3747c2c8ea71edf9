"""BitMoD weight data types (HPCA 2025): value tables, codes, term decompositions, group quantization.

This module is the executable specification of BitMoD's numerics; docs/bitmod-formats.md is its prose
version. The code tables below are rendered from :data:`DTYPES` by :func:`code_table_markdown` and a
test keeps them identical. The types and their terms are defined in :mod:`mixpim.models.bitmod_dtypes`
and re-exported here; this module holds the group quantization and the packed storage.

Data types
----------
Every type is a table from a ``bits``-bit code to a small integer value (scaled per group later).

* INT-b: symmetric two's complement, values -(2**(b-1) - 1) .. 2**(b-1) - 1. The code of
  -2**(b-1) (``100``, ``1000``) is *reserved*: never produced, rejected when read.
* FP3 (E2M0), FP4 (E2M1, scaled so the smallest step is 1), ANT's FLINT4: sign-magnitude, bit
  ``b-1`` is the sign and the low bits index the magnitudes (FP3: 0 1 2 4; FP4: 0 1 2 3 4 6 8 12;
  FLINT4: 0 1 2 3 4 6 8 16). The negative-zero code (``100``, ``1000``) decodes to 0.
* BitMoD variants: FP3 / FP4 whose negative-zero code holds one *special value* instead:
  ``_ER_`` ("extra resolution") +-3 (FP3) or +-10 (FP4); ``_EA_`` ("extra asymmetry") +-6 (FP3) or
  +-16 (FP4); ``_POS`` / ``_NEG`` give its sign.

3-bit codes (``res`` = reserved)::

    | code | INT3 | FP3 | FP3_ER_POS | FP3_ER_NEG | FP3_EA_POS | FP3_EA_NEG |
    |---|---|---|---|---|---|---|
    | 000 | 0 | 0 | 0 | 0 | 0 | 0 |
    | 001 | 1 | 1 | 1 | 1 | 1 | 1 |
    | 010 | 2 | 2 | 2 | 2 | 2 | 2 |
    | 011 | 3 | 4 | 4 | 4 | 4 | 4 |
    | 100 | res | -0 | **+3** | **-3** | **+6** | **-6** |
    | 101 | -3 | -1 | -1 | -1 | -1 | -1 |
    | 110 | -2 | -2 | -2 | -2 | -2 | -2 |
    | 111 | -1 | -4 | -4 | -4 | -4 | -4 |

4-bit codes::

    | code | INT4 | FP4 | FP4_ER_POS | FP4_ER_NEG | FP4_EA_POS | FP4_EA_NEG | FLINT4 |
    |---|---|---|---|---|---|---|---|
    | 0000 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |
    | 0001 | 1 | 1 | 1 | 1 | 1 | 1 | 1 |
    | 0010 | 2 | 2 | 2 | 2 | 2 | 2 | 2 |
    | 0011 | 3 | 3 | 3 | 3 | 3 | 3 | 3 |
    | 0100 | 4 | 4 | 4 | 4 | 4 | 4 | 4 |
    | 0101 | 5 | 6 | 6 | 6 | 6 | 6 | 6 |
    | 0110 | 6 | 8 | 8 | 8 | 8 | 8 | 8 |
    | 0111 | 7 | 12 | 12 | 12 | 12 | 12 | 16 |
    | 1000 | res | -0 | **+10** | **-10** | **+16** | **-16** | -0 |
    | 1001 | -7 | -1 | -1 | -1 | -1 | -1 | -1 |
    | 1010 | -6 | -2 | -2 | -2 | -2 | -2 | -2 |
    | 1011 | -5 | -3 | -3 | -3 | -3 | -3 | -3 |
    | 1100 | -4 | -4 | -4 | -4 | -4 | -4 | -4 |
    | 1101 | -3 | -6 | -6 | -6 | -6 | -6 | -6 |
    | 1110 | -2 | -8 | -8 | -8 | -8 | -8 | -8 |
    | 1111 | -1 | -12 | -12 | -12 | -12 | -12 | -16 |

Terms
-----
The bit-serial PE consumes one signed power-of-two term per weight per cycle. :func:`terms` writes a
value as the fewest terms ``sign * 2**shift`` (plain binary when that is as short: 3 = 2 + 1,
6 = 4 + 2, 10 = 8 + 2, 12 = 8 + 4; 7 = 8 - 1). Every FP3/FP4/FLINT4/BitMoD value needs at most two,
so those types take 2 cycles per weight slice. INT-b uses ``ceil(b/2)`` radix-4 Booth digits in
{0, +-1, +-2} (:func:`booth_digits`), one per cycle: INT3/INT4 2 cycles, INT6 3, INT8 4
(:func:`cycles_per_slice`, :func:`code_terms`).

Group quantization
------------------
``w`` (N output rows, K inputs) is cut along K into groups of ``group`` (32, 64 or 128) elements; a K
that is not a multiple leaves a shorter last group (padded with zeros, which every type represents
exactly, so padding changes neither the scale nor the error). For a group with candidate types
``T_0 .. T_{c-1}`` (one type, or BitMoD's four variants) and ``absmax = max|w|`` over the group:

1. float scales ``s_t = absmax / max|T_t|``;
2. fixed point (:func:`mixpim.models.numerics.to_fixed_scales` over all candidate scales of the row):
   one exponent ``e[n]`` per row and an unsigned ``scale_bits``-bit mantissa ``m_t`` per candidate,
   ``s_t ~= m_t * 2**-e[n]`` (default ``scale_bits`` = 8);
3. each weight takes the value of ``T_t`` nearest to ``w / (m_t * 2**-e)``: midpoint thresholds,
   compared exactly (``w * 2**e`` against ``m_t * midpoint``, both exact in float64); a weight exactly
   on a midpoint takes the value of smaller magnitude; weights beyond the range clip to the end
   values. A zero mantissa gives value 0 throughout;
4. the candidate with the lowest sum of squared errors ``sum (w - m_t * v * 2**-e)**2`` (float64) is
   kept; ties go to the lower selector. The selector (2 bits for BitMoD) indexes :data:`MIXTURES`:
   0 ``_ER_POS``, 1 ``_ER_NEG``, 2 ``_EA_POS``, 3 ``_EA_NEG``.

The hardware value of weight ``(n, k)`` in group ``g`` is ``m[n, g] * v[n, k] * 2**-e[n]``
(:meth:`BitmodWeights.dequantize`, exact in float64); the array accumulates the integer (FP16
activations: fixed-point) group sum of ``a * v`` and scales it by ``m`` once per group.

Storage: ``bits`` per weight + per group ``scale_bits`` + selector bits (+ the zero point for the
asymmetric INT baselines) + an 8-bit signed exponent per row, i.e. for BitMoD at group 128
``3 + (8 + 2)/128 + 8/K`` = 3.078 + 8/K bits per weight (:func:`bits_per_weight`). :func:`pack_bitmod`
gives the packed layout (described in :class:`PackedBitmod`).
"""

import math
from dataclasses import dataclass

import numpy as np

from .bitmod_dtypes import (ASYM_FORMATS, DTYPES, FORMATS, MIXTURES, DType, booth_digits, code_table_markdown,
                            code_terms, cycles_per_slice, dtype, terms)
from .config import GROUP_SIZES
from .errors import ConfigError, RangeError, ShapeError
from .numerics import FixedScales, to_fixed_scales
from .quant import num_groups, quantize_weights

__all__ = [
    "DType", "DTYPES", "dtype", "MIXTURES", "FORMATS", "ASYM_FORMATS", "ROW_EXP_BITS",
    "terms", "booth_digits", "cycles_per_slice", "code_terms", "code_table_markdown",
    "BitmodWeights", "quantize", "quantize_bitmod", "quantize_format", "bits_per_weight",
    "PackedBitmod", "pack_bitmod", "unpack_bitmod",
]

#: Bits of the signed per-row scale exponent in storage.
ROW_EXP_BITS = 8


# -- quantization -----------------------------------------------------------------------------------

def _check_group(group):
    if isinstance(group, bool) or group not in GROUP_SIZES:
        raise ConfigError(f"group must be one of {GROUP_SIZES}, not {group!r}")


def _check_scale_bits(scale_bits):
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int) or not 2 <= scale_bits <= 16:
        raise ConfigError(f"scale_bits must be an integer in 2..16, not {scale_bits!r}")


def _check_weights(w):
    w = np.asarray(w)
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise TypeError(f"weights must be a float array, not {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"weights must be a non-empty 2-D (out, in) array, not shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise RangeError("weights contain inf or NaN")
    return w


def _types(types):
    if isinstance(types, (str, DType)):
        types = (types,)
    ts = tuple(dtype(t) for t in types)
    if not 1 <= len(ts) <= 4:
        raise ConfigError(f"a format has 1 to 4 candidate types, not {len(ts)}")
    if len({t.bits for t in ts}) != 1:
        widths = ", ".join(f"{t.name} ({t.bits} bits)" for t in ts)
        raise ConfigError(f"candidate types must have the same width, not {widths}")
    if len({t.name for t in ts}) != len(ts):
        raise ConfigError(f"candidate types repeat: {', '.join(t.name for t in ts)}")
    return ts


def _selector_bits(ntypes):
    return (ntypes - 1).bit_length()


@dataclass(frozen=True, eq=False)
class BitmodWeights:
    """Weights quantized to BitMoD (or single-type) group formats.

    Members
    -------
    codes : uint8 (N, K), codes of the group's type
    selector : uint8 (N, groups), index into ``types`` per group (all 0 for a single type)
    scales : :class:`~mixpim.models.numerics.FixedScales`, mantissa per (row, group), exponent per row
    types : tuple of :class:`DType`, the candidates (same width)
    group : int
    """

    codes: np.ndarray
    selector: np.ndarray
    scales: FixedScales
    types: tuple
    group: int

    @property
    def shape(self):
        return self.codes.shape

    @property
    def bits(self):
        return self.types[0].bits

    @property
    def ngroups(self):
        return self.selector.shape[1]

    @property
    def selector_bits(self):
        return _selector_bits(len(self.types))

    @property
    def format(self):
        """The name in :data:`FORMATS` of these candidate types, or ``None``."""
        names = tuple(t.name for t in self.types)
        return next((f for f, ts in FORMATS.items() if ts == names), None)

    def _per_weight(self, a):
        return np.repeat(a, self.group, axis=1)[:, :self.codes.shape[1]]

    def table_values(self):
        """The unscaled type value of every weight, int64 (N, K): what the PEs multiply by."""
        lut = np.stack([t.value_lut for t in self.types])
        return lut[self._per_weight(self.selector), self.codes]

    def dequantize(self):
        """The weights the hardware computes with, float64 (N, K):
        ``mant[n, g] * value[n, k] * 2**-exp[n]``, exact."""
        m = self._per_weight(self.scales.mant)
        return np.ldexp((m * self.table_values()).astype(np.float64), -self.scales.exp[:, None])

    def type_counts(self):
        """Groups per candidate type: dict name -> count."""
        counts = np.bincount(self.selector.ravel(), minlength=len(self.types))
        return {t.name: int(c) for t, c in zip(self.types, counts)}

    @property
    def bits_per_weight(self):
        return _storage_bits(self.shape, self.group, self.bits,
                             self.scales.bits + self.selector_bits) / math.prod(self.shape)

    def check(self):
        """Raise :class:`ShapeError`/:class:`RangeError` if the fields are inconsistent."""
        n, k = self.codes.shape
        ng = num_groups(k, self.group)
        if self.selector.shape != (n, ng):
            raise ShapeError(f"selector has shape {self.selector.shape}, expected {(n, ng)} for "
                             f"{n}x{k} weights in groups of {self.group}")
        if self.scales.mant.shape != (n, ng):
            raise ShapeError(f"scales have shape {self.scales.mant.shape}, expected {(n, ng)}")
        if self.selector.max(initial=0) >= len(self.types):
            raise RangeError(f"selector values must be below {len(self.types)} "
                             f"({', '.join(t.name for t in self.types)})")
        if self.codes.max(initial=0) >= 1 << self.bits:
            raise RangeError(f"codes must be in 0..{(1 << self.bits) - 1} for {self.bits}-bit types")
        reserved = np.stack([np.array([v is None for v in t.codes]) for t in self.types])
        bad = reserved[self._per_weight(self.selector), self.codes]
        if bad.any():
            n0, k0 = np.argwhere(bad)[0]
            raise RangeError(f"weight ({n0}, {k0}) has the reserved code {int(self.codes[n0, k0])} "
                             f"of {self.types[int(self.selector[n0, k0 // self.group])].name}")


def _nearest(t, W, m):
    """Index into ``t.values`` of the value nearest to ``W / m`` (``W = w * 2**e`` and integer
    mantissas ``m``, both exact float64), ties to the smaller magnitude; 0 where ``m == 0``."""
    th = t.thresholds
    y = W / np.where(m > 0, m, 1.0)  # rounded; only exact hits on a threshold need a second look
    # Thresholds are multiples of 1/2, h/2 < y <=> h <= ceil(2y) - 1: count them with a table.
    lo, cnt = t.threshold_counts
    c = np.clip(np.ceil(2 * y), lo + 1, lo + len(cnt)).astype(np.int64) - 1 - lo
    idx = cnt[c]  # thresholds strictly below y
    amb = th[np.minimum(idx, len(th) - 1)] == y
    if amb.any():
        j = idx[amb]
        mt = np.broadcast_to(m, W.shape)[amb] * th[j]  # exact: integer * half-integer
        wa = W[amb]
        # th is never 0 (0 is a value), so a tie goes towards zero: down if th > 0, up if th < 0.
        idx[amb] = np.where(wa > mt, j + 1, np.where(wa < mt, j, np.where(th[j] > 0, j, j + 1)))
    return np.where(m > 0, idx, t.zero_index)


def quantize(w, types, group, *, scale_bits=8, row_exp=None):
    """Quantize ``w`` (N, K) to one type or a per-group mixture of types.

    Arguments
    ---------
    w : float array (N, K)
    types : a type (name or :class:`DType`) or a sequence of 1..4 types of one width
    group : 32, 64 or 128
    scale_bits : width of the unsigned scale mantissa (default 8)
    row_exp : int array (N,), optional
        Force the per-row scale exponents (otherwise chosen by ``to_fixed_scales`` over all
        candidate scales of the row). :class:`RangeError` if a mantissa would not fit.

    Returns :class:`BitmodWeights`. The rules are in the module docstring.
    """
    ts = _types(types)
    _check_group(group)
    _check_scale_bits(scale_bits)
    w = _check_weights(w)
    n, k = w.shape
    ng = num_groups(k, group)
    wg = np.zeros((n, ng * group))
    wg[:, :k] = w
    wg = wg.reshape(n, ng, group)

    absmax = np.abs(wg).max(axis=2)
    s = np.stack([absmax / t.maxmag for t in ts], axis=2)  # (N, G, T)
    if row_exp is None:
        fs = to_fixed_scales(s.reshape(n, ng * len(ts)), scale_bits)
        mant, exp = fs.mant.reshape(n, ng, len(ts)), fs.exp
    else:
        exp = np.asarray(row_exp)
        if exp.shape != (n,) or not np.issubdtype(exp.dtype, np.integer):
            raise ShapeError(f"row_exp must be {n} integers (one per row), not {exp.dtype} {exp.shape}")
        exp = exp.astype(np.int64)
        mant = np.rint(np.ldexp(s, exp[:, None, None])).astype(np.int64)
        if mant.max(initial=0) >= 1 << scale_bits:
            row = int(np.argwhere(mant >= 1 << scale_bits)[0][0])
            raise RangeError(f"row {row}: a scale mantissa needs more than {scale_bits} bits with "
                             f"exponent {int(exp[row])}")

    W = np.ldexp(wg, exp[:, None, None])  # exact
    best = None
    for i, t in enumerate(ts):
        m = mant[:, :, i:i + 1].astype(np.float64)
        idx = _nearest(t, W, m)
        deq = np.ldexp(m * t.sorted_values[idx], -exp[:, None, None])
        sse = np.square(wg - deq).sum(axis=2)
        codes = t.sorted_codes[idx]
        if best is None:
            best_sse, best_codes = sse, codes
            best_sel = np.zeros((n, ng), dtype=np.uint8)
            best_mant = mant[:, :, 0].copy()
            best = True
        else:
            better = sse < best_sse  # strict: ties keep the lower selector
            best_sse = np.where(better, sse, best_sse)
            best_codes = np.where(better[:, :, None], codes, best_codes)
            best_sel[better] = i
            best_mant = np.where(better, mant[:, :, i], best_mant)

    q = BitmodWeights(best_codes.reshape(n, ng * group)[:, :k].copy(), best_sel,
                      FixedScales(best_mant, exp, scale_bits), ts, group)
    q.check()
    return q


def quantize_bitmod(w, bits, group=128, *, scale_bits=8):
    """The BitMoD mixture: per group the best of ``MIXTURES[bits]`` (bits 3 or 4)."""
    if bits not in MIXTURES:
        raise ConfigError(f"BitMoD weight bits must be 3 or 4, not {bits!r}")
    return quantize(w, MIXTURES[bits], group, scale_bits=scale_bits)


def quantize_format(w, fmt, group, *, scale_bits=8):
    """Quantize ``w`` to the named format (:data:`FORMATS` or :data:`ASYM_FORMATS`).

    Returns :class:`BitmodWeights`, or :class:`~mixpim.models.quant.QuantizedWeights` for the
    asymmetric INT formats (rounding half to even there, see :mod:`mixpim.models.quant`). Both have
    ``dequantize()``.
    """
    if fmt in ASYM_FORMATS:
        _check_scale_bits(scale_bits)
        return quantize_weights(_check_weights(w), ASYM_FORMATS[fmt], group, scale_bits=scale_bits)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown weight format {fmt!r}; formats are "
                          f"{', '.join([*FORMATS, *ASYM_FORMATS])}")
    return quantize(w, FORMATS[fmt], group, scale_bits=scale_bits)


def _storage_bits(shape, group, bits, meta_bits_per_group):
    n, k = shape
    return n * (k * bits + num_groups(k, group) * meta_bits_per_group + ROW_EXP_BITS)


def bits_per_weight(fmt, shape, group, *, scale_bits=8):
    """Stored bits per weight of format ``fmt`` for an (N, K) matrix: codes, per-group scale mantissa
    and selector (or zero point), per-row exponent."""
    _check_group(group)
    if fmt in ASYM_FORMATS:
        b = ASYM_FORMATS[fmt]
        meta = scale_bits + b
    elif fmt in FORMATS:
        ts = _types(FORMATS[fmt])
        b = ts[0].bits
        meta = scale_bits + _selector_bits(len(ts))
    else:
        raise ConfigError(f"unknown weight format {fmt!r}; formats are "
                          f"{', '.join([*FORMATS, *ASYM_FORMATS])}")
    return _storage_bits(shape, group, b, meta) / math.prod(shape)


# -- packed storage ---------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PackedBitmod:
    """The stored form of :class:`BitmodWeights`.

    Layout
    ------
    codes : uint32 (N, G * group * bits / 32)
        Row ``n`` is a little-endian bit stream: code ``k`` occupies stream bits
        ``[k*bits, (k+1)*bits)``, least significant bit first; stream bit ``i`` is bit ``i % 32`` of
        word ``i // 32``. The last group is padded with code 0 to ``group`` codes, so every row holds
        ``G * group`` codes and, since ``group * bits`` is a multiple of 32 for groups of 32/64/128,
        every group starts on a word boundary (``group * bits / 32`` words per group).
    selector : uint8 (N, G), the type selector of each group (0 for single-type formats)
    scale_mant : uint8 (N, G) for ``scale_bits`` <= 8, else uint16
    scale_exp : int8 (N,), the per-row exponent
    shape, group, scale_bits, types (type names) : the header needed to read the arrays back
    """

    shape: tuple
    group: int
    scale_bits: int
    types: tuple
    codes: np.ndarray
    selector: np.ndarray
    scale_mant: np.ndarray
    scale_exp: np.ndarray

    @property
    def bits(self):
        return dtype(self.types[0]).bits


def pack_bitmod(q):
    """Pack :class:`BitmodWeights` into a :class:`PackedBitmod` (layout there).

    :class:`RangeError` if an exponent does not fit :data:`ROW_EXP_BITS` signed bits.
    """
    if not isinstance(q, BitmodWeights):
        raise TypeError(f"pack_bitmod takes BitmodWeights, not {type(q).__name__}")
    q.check()
    n, k = q.shape
    b, g = q.bits, q.group
    lo, hi = -(1 << (ROW_EXP_BITS - 1)), (1 << (ROW_EXP_BITS - 1)) - 1
    if q.scales.exp.min() < lo or q.scales.exp.max() > hi:
        raise RangeError(f"scale exponents {q.scales.exp.min()}..{q.scales.exp.max()} do not fit "
                         f"{ROW_EXP_BITS} signed bits ({lo}..{hi})")
    padded = np.zeros((n, q.ngroups * g), dtype=np.uint8)
    padded[:, :k] = q.codes
    bitplanes = (padded[:, :, None] >> np.arange(b, dtype=np.uint8)) & 1
    stream = np.packbits(bitplanes.reshape(n, -1), axis=1, bitorder="little")
    words = np.ascontiguousarray(stream).view("<u4").astype(np.uint32)
    mant_t = np.uint8 if q.scales.bits <= 8 else np.uint16
    return PackedBitmod((n, k), g, q.scales.bits, tuple(t.name for t in q.types), words,
                        q.selector.astype(np.uint8), q.scales.mant.astype(mant_t),
                        q.scales.exp.astype(np.int8))


def unpack_bitmod(p):
    """The :class:`BitmodWeights` stored in a :class:`PackedBitmod`; checks every field (shapes,
    reserved codes, non-zero padding) and raises :class:`ShapeError`/:class:`RangeError`."""
    ts = _types(p.types)
    _check_group(p.group)
    _check_scale_bits(p.scale_bits)
    n, k = p.shape
    b, g = ts[0].bits, p.group
    ng = num_groups(k, g)
    wpr = ng * g * b // 32
    for name, a, shape in (("codes", p.codes, (n, wpr)), ("selector", p.selector, (n, ng)),
                           ("scale_mant", p.scale_mant, (n, ng)), ("scale_exp", p.scale_exp, (n,))):
        if np.asarray(a).shape != shape:
            raise ShapeError(f"packed {name} has shape {np.asarray(a).shape}, expected {shape} for "
                             f"{n}x{k} {b}-bit weights in groups of {g}")
    stream = np.ascontiguousarray(p.codes.astype("<u4")).view(np.uint8)
    bitplanes = np.unpackbits(stream, axis=1, bitorder="little").reshape(n, ng * g, b)
    codes = (bitplanes << np.arange(b, dtype=np.uint8)).sum(axis=2, dtype=np.uint8)
    if codes[:, k:].any():
        raise RangeError("packed codes have non-zero padding after the last weight of a row")
    q = BitmodWeights(codes[:, :k].copy(), p.selector.astype(np.uint8),
                      FixedScales(p.scale_mant.astype(np.int64), p.scale_exp.astype(np.int64),
                                  p.scale_bits), ts, g)
    q.check()
    return q
