"""The tile's vector unit, bit-exactly: integer-only requantization, RELU, GELU (table), residual ADD.

Per element of an ACC tile (token ``i``, column ``j``) the unit computes (docs/tile.md, "Vector
unit numerics")::

    v1 = sat32(round_shift(acc * mult[j], shift[j]))     column multiplier (requantization)
    v  = round_shift(v1 * tmult[i], tshift[i])           token multiplier (per-token scale)
    v  = v + bias[j]                                     with VEC ``bias``: int32 per column
    REQUANT: y = sat8(v)
    RELU:    y = sat8(max(v, 0))
    GELU:    y = lut[sat8(v) & 0xff]                      256-entry int8 -> int8 table
    ADD:     y = sat8(v + residual)

``round_shift(x, s) = (x + 2**(s-1)) >> s`` for ``s >= 1`` (round half up, arithmetic shift) and
``x`` for ``s = 0``; ``sat8`` clamps to -128..127, ``sat32`` to -2**31..2**31-1. Multipliers are
int16, shifts 0..63. Everything is exact integer arithmetic (int64 where the operands provably
fit, Python integers otherwise), so the golden model and the RTL agree bit for bit.

VPARAM word (4 bytes, little-endian ``u32``): bits [0:16] ``mult`` (int16, two's complement),
bits [16:22] ``shift`` (0..63), bits [22:32] ignored (write 0). The VPARAM scratchpad holds

* words 0..63: the GELU table, four int8 entries per word: byte ``b`` of the 256-byte table
  holds ``lut[b]``, the output for input ``b`` read as int8 (``b = x & 0xff``);
* words 64..64+rows-1: the token multipliers ``(tmult[i], tshift[i])`` of lanes ``i`` (the
  identity is ``(1, 0)``);
* words from 64+rows: column multipliers, ``VEC param_addr`` points at the first of ``cols``
  (with ``bias``, the ``cols`` biases follow as int32 words).

The compiler-side helpers (:func:`fixed_multiplier`, :func:`column_multipliers`,
:func:`token_multipliers`, :func:`gelu_lut`) turn float scales into these integers.
"""

import math

import numpy as np

from .config import VPARAM_LUT_WORDS, VPARAM_WORD_BYTES
from .errors import RangeError, ShapeError
from .isa import VecFunc
from .numerics import fp16_decode

__all__ = ["MULT_BITS", "SHIFT_BITS", "MULT_MAX", "SHIFT_MAX", "LUT_ENTRIES",
           "round_shift", "sat8", "sat32", "vec_apply",
           "pack_vparam", "unpack_vparam", "pack_lut", "unpack_lut", "vparam_header",
           "int8_to_fp16_bits", "fp16_bits_to_int8",
           "fixed_multiplier", "column_multipliers", "token_multipliers", "gelu", "gelu_lut"]

MULT_BITS = 16
SHIFT_BITS = 6
MULT_MAX = (1 << (MULT_BITS - 1)) - 1
SHIFT_MAX = (1 << SHIFT_BITS) - 1
LUT_ENTRIES = 256
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_SAFE = 1 << 62  # |x| below this: int64 arithmetic (incl. + 2**62 rounding bias) cannot overflow
#: The rounding bias of round_shift by each shift s: 2**(s-1), 0 for s = 0.
_ROUND_BIAS = np.array([0] + [1 << (s - 1) for s in range(1, SHIFT_MAX + 1)], np.int64)


def _ints(x):
    """``x`` as an int64 array if every value fits comfortably, else an object array of ints."""
    x = np.asarray(x)
    if x.dtype == object:
        if x.size == 0:
            return x.astype(np.int64)
        try:
            y = x.astype(np.int64)  # (OverflowError for a Python int beyond int64)
        except OverflowError:
            return x
        return y if _maxabs(y) < _SAFE else x
    if x.dtype.kind not in "iub":
        raise TypeError(f"integer array expected, not {x.dtype}")
    return x.astype(np.int64, copy=False)


def _maxabs(x):
    if x.size == 0:
        return 0
    if x.dtype == object:
        return max(abs(int(v)) for v in x.flat)
    return max(abs(int(x.max())), abs(int(x.min())))


def _mul(a, b):
    """Exact elementwise product of integer arrays (int64 when it cannot overflow)."""
    a, b = _ints(a), _ints(b)
    if a.dtype != object and b.dtype != object and _maxabs(a) * _maxabs(b) < _SAFE:
        return a * b
    return _ints(a.astype(object) * b.astype(object))


def round_shift(x, s):
    """``(x + 2**(s-1)) >> s`` elementwise (``x`` where ``s == 0``): round half up, exactly.

    ``x`` is an integer array (int64 or Python ints), ``s`` broadcasts against it, each in 0..63.
    """
    x = _ints(x)
    s = np.asarray(s, dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() > SHIFT_MAX):
        raise RangeError(f"shifts must be in 0..{SHIFT_MAX}")
    if x.dtype != object and _maxabs(x) < _SAFE:
        return _round_shift64(x, s)
    x, s = np.broadcast_arrays(x.astype(object), s)
    out = np.empty(x.shape, dtype=object)
    for idx, (v, k) in enumerate(zip(x.flat, s.flat)):
        k = int(k)
        out.flat[idx] = (int(v) + (1 << (k - 1)) >> k) if k else int(v)
    return _ints(out)


def _round_shift64(x, s):
    """:func:`round_shift` of int64 ``x`` with ``|x| < 2**62`` by shifts ``s`` in 0..63
    (int64; not checked): ``x + 2**(s-1)`` cannot overflow."""
    return (x + _ROUND_BIAS.take(s)) >> s


def _requantize(acc, mult, shift, tmult, tshift):
    """``v = round_shift(sat32(round_shift(acc * mult[j], shift[j])) * tmult[i], tshift[i])`` of
    an ACC tile (R, C) (module doc) for column (C,) and token (R,) multipliers and shifts."""
    a = _ints(acc)
    mult, shift, tmult, tshift = mult[None, :], shift[None, :], tmult[:, None], tshift[:, None]
    if (a.dtype != object and _maxabs(a) * _maxabs(mult) < _SAFE and _maxabs(tmult) <= _I32_MAX
            and not (shift >> SHIFT_BITS).any() and not (tshift >> SHIFT_BITS).any()):
        # the common case in int64 without the checks of each step, exactly: |acc * mult| <
        # 2**62 and |sat32(.) * tmult| < 2**62, and the shifts are in 0..63
        v1 = np.minimum(np.maximum(_round_shift64(a * mult, shift), _I32_MIN), _I32_MAX)
        return _round_shift64(v1 * tmult, tshift)
    v1 = sat32(round_shift(_mul(a, mult), shift))
    return round_shift(v1 * tmult, tshift)  # |v1 * tmult| < 2**47: int64


def _clamp(x, lo, hi):
    x = _ints(x)
    if x.dtype == object:
        return np.array([min(max(int(v), lo), hi) for v in x.flat], dtype=np.int64).reshape(x.shape)
    return np.minimum(np.maximum(x, lo), hi)  # (np.clip, without its per-call overhead)


def sat8(x):
    """Clamp to -128..127; int8 array."""
    return _clamp(x, -128, 127).astype(np.int8)


def sat32(x):
    """Clamp to -2**31..2**31-1; int64 array."""
    return _clamp(x, _I32_MIN, _I32_MAX)


def vec_apply(func, acc, mult, shift, tmult, tshift, *, lut=None, residual=None, bias=None):
    """The vector unit on one tile: int8 (R, C).

    Arguments
    ---------
    func : VecFunc (or its value / name)
    acc : int array (R, C) (int64 or Python ints)
        Accumulators: R tokens x C columns.
    mult, shift : int arrays (C,)
        Column multipliers (int16) and shifts (0..63).
    tmult, tshift : int arrays (R,)
        Token multipliers (int16) and shifts (0..63).
    lut : int8 array (256,)
        GELU table indexed by ``x & 0xff`` (GELU only).
    residual : int8 array (R, C)
        Residual (ADD only).
    bias : int array (C,), optional
        Per-column int32 biases added to ``v`` before the function (VEC ``bias``).
    """
    func = VecFunc[func] if isinstance(func, str) else VecFunc(func)
    acc = _ints(acc)
    if acc.ndim != 2:
        raise ShapeError(f"accumulators must be 2-D (tokens, columns), not shape {acc.shape}")
    r, c = acc.shape
    mult, shift = _vector("mult", mult, c), _vector("shift", shift, c)
    tmult, tshift = _vector("tmult", tmult, r), _vector("tshift", tshift, r)
    for name, m in (("mult", mult), ("tmult", tmult)):
        if m.size and (m.min() < -MULT_MAX - 1 or m.max() > MULT_MAX):
            raise RangeError(f"{name} must be int16 values")
    v = _requantize(acc, mult, shift, tmult, tshift)
    if bias is not None:
        bias = _vector("bias", bias, c)
        if bias.size and (bias.min() < _I32_MIN or bias.max() > _I32_MAX):
            raise RangeError("biases must be int32 values")
        v = v + bias[None, :]  # |v| <= 2**46, |bias| <= 2**31: int64
    if func == VecFunc.REQUANT:
        return sat8(v)
    if func == VecFunc.RELU:
        return sat8(np.maximum(v, 0))
    if func == VecFunc.GELU:
        if lut is None:
            raise ShapeError("GELU needs a 256-entry table")
        lut = np.asarray(lut)
        if lut.shape != (LUT_ENTRIES,):
            raise ShapeError(f"the GELU table must have shape (256,), not {lut.shape}")
        return lut.astype(np.int8)[sat8(v).astype(np.int64) & 0xFF]
    if residual is None:
        raise ShapeError("ADD needs a residual")
    residual = np.asarray(residual)
    if residual.shape != (r, c):
        raise ShapeError(f"the residual must have shape {(r, c)}, not {residual.shape}")
    return sat8(v + residual.astype(np.int64))


def _vector(name, x, n):
    x = np.asarray(x, dtype=np.int64)
    if x.shape != (n,):
        raise ShapeError(f"{name} must have shape ({n},), not {x.shape}")
    return x


# -- VPARAM words ------------------------------------------------------------------------------

def pack_vparam(mult, shift):
    """VPARAM words (bytes, 4 per word) for multipliers ``mult`` (int16) and shifts (0..63)."""
    mult = np.atleast_1d(np.asarray(mult, dtype=np.int64))
    shift = np.atleast_1d(np.asarray(shift, dtype=np.int64))
    if mult.shape != shift.shape or mult.ndim != 1:
        raise ShapeError(f"mult and shift must be 1-D of one length, not {mult.shape} and {shift.shape}")
    if mult.size and (mult.min() < -MULT_MAX - 1 or mult.max() > MULT_MAX):
        raise RangeError(f"multipliers must be int16 ({-MULT_MAX - 1}..{MULT_MAX})")
    if shift.size and (shift.min() < 0 or shift.max() > SHIFT_MAX):
        raise RangeError(f"shifts must be in 0..{SHIFT_MAX}")
    word = (mult & 0xFFFF) | shift << 16
    return word.astype("<u4").tobytes()


def unpack_vparam(data):
    """``(mult, shift)`` int64 arrays from VPARAM words (bytes or uint8 array, 4 bytes a word)."""
    raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), "<u4")
    word = raw.astype(np.int64)
    mult = ((word & 0xFFFF) ^ 0x8000) - 0x8000  # the low 16 bits as int16
    return mult, (word >> 16) & SHIFT_MAX


def pack_lut(lut):
    """The 64 VPARAM words (256 bytes) of a GELU table indexed by ``x & 0xff``."""
    lut = np.asarray(lut)
    if lut.shape != (LUT_ENTRIES,):
        raise ShapeError(f"the GELU table must have shape (256,), not {lut.shape}")
    if lut.dtype.kind not in "iu" or lut.min() < -128 or lut.max() > 127:
        raise RangeError("GELU table entries must be int8 values")
    return lut.astype(np.int8).tobytes()


def unpack_lut(data):
    """The int8 table (256,) from its 64 VPARAM words."""
    return np.frombuffer(bytes(data), np.int8).copy()


def vparam_header(config, *, lut=None, tmult=None, tshift=None):
    """Bytes of VPARAM words ``0 .. 64 + rows - 1``: the GELU table and the token multipliers.

    ``lut`` defaults to zeros; the token multipliers default to the identity ``(1, 0)``.
    """
    rows = config.rows
    lut = np.zeros(LUT_ENTRIES, np.int8) if lut is None else lut
    tmult = np.ones(rows, np.int64) if tmult is None else tmult
    tshift = np.zeros(rows, np.int64) if tshift is None else tshift
    if np.shape(tmult) != (rows,) or np.shape(tshift) != (rows,):
        raise ShapeError(f"token multipliers must have shape ({rows},)")
    out = pack_lut(lut) + pack_vparam(tmult, tshift)
    assert len(out) == (VPARAM_LUT_WORDS + rows) * VPARAM_WORD_BYTES
    return out


# -- FP16 activations --------------------------------------------------------------------------

def int8_to_fp16_bits(y):
    """FP16 bit patterns (uint16) of int8 values (exact)."""
    return np.asarray(y, dtype=np.int64).astype(np.float16).view(np.uint16)


def fp16_bits_to_int8(bits):
    """int8 values of FP16 bit patterns: ``sat8`` of the value rounded half up; inf/NaN give 0.

    With ``x = sig * 2**(exp - 25)`` (:func:`~mixpim.models.numerics.fp16_decode`): ``sig <<
    (exp - 25)`` for ``exp >= 25``, else ``round_shift(sig, 25 - exp)``; then ``sat8``.
    """
    sig, exp, _ = fp16_decode(np.asarray(bits, dtype=np.uint16))
    up = sig << np.maximum(exp - 25, 0)
    down = round_shift(sig, np.maximum(25 - exp, 0))
    return sat8(np.where(exp >= 25, up, down))


# -- compiler-side helpers ---------------------------------------------------------------------

def fixed_multiplier(scale):
    """Nearest ``(mult, shift)`` with ``mult * 2**-shift ~= scale``, int64 arrays.

    ``|mult| <= 32767``, ``shift`` in 0..63, with the largest shift that fits (best precision;
    rounding half to even). Zero, and magnitudes below ``2**-64``, give ``(0, 0)``.

    Raises
    ------
    RangeError
        If a scale is not finite or ``|scale| >= 32767.5`` (not representable).
    """
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise RangeError("scales must be finite")
    mag = np.abs(s)
    if np.any(mag >= MULT_MAX + 0.5):
        raise RangeError(f"a multiplier scale must be below {MULT_MAX + 0.5} in magnitude, "
                         f"not {float(mag.max())}")
    _, e = np.frexp(np.where(mag > 0, mag, 1.0))  # mag = f * 2**e, f in [0.5, 1)
    shift = np.clip(MULT_BITS - 1 - e, 0, SHIFT_MAX)
    m = np.rint(np.ldexp(mag, shift))
    over = m > MULT_MAX  # rounding carried to 2**15
    shift = np.where(over, shift - 1, shift)
    m = np.rint(np.ldexp(mag, shift))
    m = np.where(mag > 0, m, 0).astype(np.int64)
    shift = np.where(m > 0, shift, 0).astype(np.int64)
    return np.where(s < 0, -m, m), shift


def column_multipliers(weight_exp, in_scale, out_scale, *, frac_bits=0, act="int8"):
    """Column multipliers ``(mult, shift)`` (N,) requantizing accumulators to ``out_scale``.

    The real output of column ``n`` is ``acc * 2**-weight_exp[n] * in_scale`` (INT8 activations
    with per-tensor scale ``in_scale``; use ``in_scale = 1`` with token multipliers carrying the
    per-token scales) or ``acc * 2**-weight_exp[n] * 2**-24`` (``act="fp16"``, ``in_scale``
    ignored). The multiplier maps it to ``2**frac_bits`` units of ``out_scale``: keep
    ``frac_bits`` > 0 when token multipliers divide by ``2**frac_bits`` again, so the first
    rounding keeps fraction bits.
    """
    e = np.asarray(weight_exp, dtype=np.float64)
    base = 2.0 ** -24 if act == "fp16" else float(in_scale)
    return fixed_multiplier(np.ldexp(base / float(out_scale), (frac_bits - e).astype(np.int64)))


def token_multipliers(token_scales, *, ref_scale=None, frac_bits=0):
    """Token multipliers ``(tmult, tshift)`` (M,) for per-token activation scales.

    Token ``i`` contributes the factor ``token_scales[i] / ref_scale * 2**-frac_bits`` (to pair
    with :func:`column_multipliers` called with ``in_scale = ref_scale``). ``ref_scale``
    defaults to the largest token scale, so every factor is at most ``2**-frac_bits``.
    """
    t = np.asarray(token_scales, dtype=np.float64)
    ref = float(np.max(np.abs(t))) if ref_scale is None else float(ref_scale)
    if not ref > 0:
        raise RangeError("the reference token scale must be positive")
    return fixed_multiplier(np.ldexp(t / ref, -frac_bits))


def gelu(x):
    """Exact (erf) GELU of float values, float64."""
    x = np.asarray(x, dtype=np.float64)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_lut(in_scale, out_scale):
    """GELU table (256,) int8 indexed by ``x & 0xff``: ``sat8(rint(gelu(x * in_scale) / out_scale))``
    for the int8 input ``x`` (rounding half to even)."""
    if not (in_scale > 0 and out_scale > 0):
        raise RangeError("GELU table scales must be positive")
    x = np.arange(LUT_ENTRIES, dtype=np.uint8).view(np.int8).astype(np.float64)
    return sat8(np.rint(gelu(x * in_scale) / out_scale).astype(np.int64))
