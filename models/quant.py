"""Group-wise integer weight quantization (INT4/INT3/INT2), as stored for the MixPE array.

A weight matrix ``w`` (N output rows, K inputs) is cut along K into groups of ``group`` elements.
Group ``g`` of row ``n`` has an unsigned ``bits``-bit code per weight, a zero point ``z[n, g]`` and a
fixed-point scale ``s[n, g] = sm[n, g] * 2**-e[n]`` (see :mod:`.numerics`)::

    w[n, k] ~= s[n, g] * (q[n, k] - z[n, g])          g = k // group

* asymmetric: codes 0 .. 2**bits - 1, ``z`` in the same range, the range [min(w, 0), max(w, 0)]
  mapped onto the codes;
* symmetric: codes 1 .. 2**bits - 1 with the fixed zero point ``2**(bits-1)``, so ``q - z`` runs
  over -(2**(bits-1) - 1) .. 2**(bits-1) - 1 (one code, 0, is unused).

A K that is not a multiple of ``group`` leaves a last, shorter group quantized over the elements it
has. Where the hardware pads such a group to ``group`` beats it uses code ``z`` (so ``q - z = 0``)
and activation 0.

Optionally (``offsets``, for arrays with ``TileConfig.group_offset``) each group also has a signed
offset mantissa ``om[n, g]`` at the row's scale exponent, and::

    w[n, k] ~= s[n, g] * (q[n, k] - z[n, g]) + om[n, g] * 2**-e[n]

This is how GGUF's Q4_1 (``w = d q + m``) maps exactly: codes ``q``, zero point 0, scale ``d``,
offset ``m`` (:func:`from_scale_offset`).
"""

from dataclasses import dataclass

import numpy as np

from .config import GROUP_SIZES
from .errors import ConfigError, RangeError, ShapeError
from .numerics import FixedScales, to_fixed_offsets, to_fixed_scales
from .widths import offset_bits as _offset_bits

__all__ = ["QuantizedWeights", "quantize_weights", "from_scale_offset", "num_groups"]


def num_groups(k, group):
    return -(-k // group)


@dataclass(frozen=True)
class QuantizedWeights:
    """Members: ``codes`` uint8 (N, K); ``zeros`` int64 (N, groups); ``scales`` :class:`FixedScales`;
    ``bits``; ``group``; ``symmetric``; ``offsets``: int64 (N, groups) signed offset mantissas at
    the scales' row exponents (``om * 2**-e[n]``), or None for weights without group offsets."""

    codes: np.ndarray
    zeros: np.ndarray
    scales: FixedScales
    bits: int
    group: int
    symmetric: bool
    offsets: np.ndarray | None = None

    @property
    def shape(self):
        return self.codes.shape

    @property
    def ngroups(self):
        return self.zeros.shape[1]

    def centered(self):
        """``q - z`` per weight, int64 (N, K): the signed value the PEs multiply by."""
        z = np.repeat(self.zeros, self.group, axis=1)[:, :self.codes.shape[1]]
        return self.codes.astype(np.int64) - z

    def dequantize(self):
        """The weights the hardware computes with, float64 (N, K): ``s (q - z)``, plus
        ``om 2**-e`` with offsets (exact in float64 for 4-bit codes, 16-bit scales and offsets of
        at most 24 bits)."""
        k = self.codes.shape[1]
        s = np.repeat(self.scales.value(), self.group, axis=1)[:, :k]
        w = s * self.centered()
        if self.offsets is not None:
            o = np.ldexp(self.offsets.astype(np.float64), -self.scales.exp[:, None])
            w = w + np.repeat(o, self.group, axis=1)[:, :k]
        return w

    def check(self):
        """Raise :class:`RangeError`/:class:`ShapeError` if fields are inconsistent."""
        n, k = self.codes.shape
        if self.zeros.shape != (n, num_groups(k, self.group)):
            raise ShapeError(f"zero points have shape {self.zeros.shape}, expected "
                             f"{(n, num_groups(k, self.group))} for {n}x{k} weights in groups of {self.group}")
        if self.scales.mant.shape != self.zeros.shape:
            raise ShapeError(f"scales have shape {self.scales.mant.shape}, expected {self.zeros.shape}")
        top = (1 << self.bits) - 1
        if self.codes.max(initial=0) > top or self.zeros.max(initial=0) > top or self.zeros.min(initial=0) < 0:
            raise RangeError(f"codes and zero points must be in 0..{top} for {self.bits}-bit weights")
        if self.offsets is not None:
            off = np.asarray(self.offsets)
            if off.shape != self.zeros.shape:
                raise ShapeError(f"offsets have shape {off.shape}, expected {self.zeros.shape}")
            if off.dtype.kind not in "iu":
                raise RangeError(f"offsets must be integer mantissas, not {off.dtype}")


def _check_format(bits, group, scale_bits):
    """:class:`ConfigError` for a weight format the array does not take."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in (2, 3, 4):
        raise ConfigError(f"weight bits must be 2, 3 or 4, not {bits!r}")
    if isinstance(group, bool) or not isinstance(group, int) or group not in GROUP_SIZES:
        raise ConfigError(f"group must be one of {GROUP_SIZES}, not {group!r}")
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int) or not 4 <= scale_bits <= 16:
        raise ConfigError(f"scale_bits must be an integer in 4..16, not {scale_bits!r}")


def quantize_weights(w, bits, group, *, scale_bits=16, symmetric=False):
    """Quantize ``w`` (N, K) float to :class:`QuantizedWeights` (rounding half to even)."""
    _check_format(bits, group, scale_bits)
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"weights must be a non-empty 2-D (out, in) array, not shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise RangeError("weights contain inf or NaN")
    n, k = w.shape
    ng = num_groups(k, group)
    wp = np.zeros((n, ng * group))
    wp[:, :k] = w  # zero padding does not move min(w, 0), max(w, 0) or max|w|
    wg = wp.reshape(n, ng, group)

    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        s = np.abs(wg).max(axis=2) / qmax
        fs = to_fixed_scales(s, scale_bits)
        sv = fs.value()
        zeros = np.full((n, ng), 1 << (bits - 1), dtype=np.int64)
        lo_code, hi_code = 1, (1 << bits) - 1
    else:
        qmax = (1 << bits) - 1
        lo = np.minimum(wg.min(axis=2), 0.0)
        hi = np.maximum(wg.max(axis=2), 0.0)
        s = (hi - lo) / qmax
        fs = to_fixed_scales(s, scale_bits)
        sv = fs.value()
        safe = np.where(sv > 0, sv, 1.0)
        zeros = np.where(sv > 0, np.clip(np.rint(-lo / safe), 0, qmax), 0).astype(np.int64)
        lo_code, hi_code = 0, qmax

    safe = np.where(sv > 0, sv, 1.0)[:, :, None]
    q = np.rint(wg / safe) + zeros[:, :, None]
    q = np.where(sv[:, :, None] > 0, np.clip(q, lo_code, hi_code), zeros[:, :, None])
    codes = q.reshape(n, ng * group)[:, :k].astype(np.uint8)
    qw = QuantizedWeights(codes, zeros, fs, bits, group, symmetric)
    qw.check()
    return qw



def from_scale_offset(codes, scales, offsets, group, *, bits=4, scale_bits=16):
    """:class:`QuantizedWeights` of ``w = scales * codes + offsets`` (per group; Q4_1's ``d q + m``)
    with zero point 0 and group offsets.

    ``codes`` (N, K) in ``0 .. 2**bits - 1``; ``scales`` (N, groups) >= 0 and ``offsets``
    (N, groups), finite floats. Scales and offsets become mantissas at one exponent per row
    (:func:`~.numerics.to_fixed_offsets`, ``scale_bits`` and ``scale_bits + 8`` bits, rounding
    half to even): ``dequantize()`` differs from ``scales * codes + offsets`` by at most
    ``(q + 1) / 2`` units ``2**-e[n]`` (half a unit for the offset, half a unit per code step for
    the scale), and a unit is at most ``2**-(scale_bits - 1)`` of the row's largest scale unless
    the row's offsets forced a lower exponent (or rounding carried the largest scale mantissa to
    ``2**scale_bits``, which a scale of at most ``scale_bits`` significant bits never does)
    (docs/numerics.md, "Group offsets"); the difference
    is 0 where scales and offsets are multiples of ``2**-e[n]``.
    """
    _check_format(bits, group, scale_bits)
    codes = np.asarray(codes)
    if codes.ndim != 2 or 0 in codes.shape:
        raise ShapeError(f"codes must be a non-empty 2-D (out, in) array, not shape {codes.shape}")
    if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= 1 << bits:
        raise RangeError(f"codes must be integers in 0..{(1 << bits) - 1}")
    n, k = codes.shape
    want = (n, num_groups(k, group))
    scales, offsets = np.asarray(scales, np.float64), np.asarray(offsets, np.float64)
    for name, x in (("scales", scales), ("offsets", offsets)):
        if x.shape != want:
            raise ShapeError(f"{name} have shape {x.shape}, expected {want} for {n}x{k} codes in "
                             f"groups of {group}")
    fs, om = to_fixed_offsets(scales, offsets, scale_bits, _offset_bits(scale_bits))
    qw = QuantizedWeights(codes.astype(np.uint8), np.zeros(want, np.int64), fs, bits, group, False, om)
    qw.check()
    return qw
