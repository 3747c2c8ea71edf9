"""Integer softmax on the vector unit (the ``VSOFT`` instruction), bit-exactly (docs/numerics.md,
"Softmax").

A softmax row (one request's attention scores over its context) is a flat vector of values in ACC
words, ``cols`` per word; ``VSOFT`` processes up to ``rows`` words of it per instruction and keeps
two registers across instructions, so a row may be any number of words long:

* every value is first scaled by its own multiplier (the per-token K scale times the score scale,
  in steps of the exponent table): ``v = sat32(round_shift(x * kmult[t], kshift[t]))``;
* ``MAX``: ``rmax = max(rmax, v)`` (``first`` starts from ``INT32_MIN``);
* ``EXP``: ``d = min(max(rmax - v, 0), D_MAX)``, ``e = EXP_TABLE[d % 32] >> (d // 32)``
  (``e = 2**15 * 2**(-d / 32)`` rounded: one step of ``d`` is ``ln 2 / 32`` in the exponent),
  ``rsum += e`` (``first`` starts from 0; 32 bits, unsigned);
* ``NORM``: ``R = N // rsum`` (0 if ``rsum`` is 0), then per value the ``e`` of ``EXP`` again
  and ``q = round_shift(round_shift(e * R, 9) * vmult[t], vshift[t])`` (``vmult/2**vshift``
  folds in the value's per-token V scale and the output unit), written as ``pfmt`` says:

  ========  ================  ==========================================================
  ``pfmt``  ``N``             written value (``vmult / 2**vshift`` for a V factor of 1)
  ========  ================  ==========================================================
  INT8      ``127 << 24``     ``sat8(q)``, ``q = 127 p`` (``2**-15``)
  FP16      ``1 << 31``       FP16 of ``q * 2**-16``, ``q = 2**16 p`` (``2**-6``)
  HI        ``1 << 31``       ``clip(q, 0, 16383) >> 7``, ``q = 2**14 p`` (``2**-8``): the
                              high INT8 digit of a 14-bit probability
  LO        ``1 << 31``       ``clip(q, 0, 16383) & 127``: its low digit
  ========  ================  ==========================================================

  packed (``col`` 0): value ``t`` in lane ``t % rows`` of word ``act_addr + t // rows`` (lanes
  past the last value are 0); by column (``col`` 1): value ``t`` of the ``words * cols`` values
  in lane ``lane`` of ACT word ``act_addr + t`` (0 past ``count``; other lanes are kept).
  With ``col`` 1 the row is read from ACC words ``acc_addr + w * rows`` (column ``lane`` of a
  GEMM's output tiles: one query's scores over a block of keys).

Widths: ``x * kmult`` is ``acc_bits + 16`` bits, ``v`` 32; ``e`` <= 2**15; ``rsum`` 32 bits
(wraps). For a softmax as the compiler emits it (MAX over the row, then EXP over the same values:
``rsum`` >= 2**15) ``R`` <= 2**16, ``e * R`` <= 2**31 and ``(e * R >> 9) * vmult`` < 2**38;
any legal program (``rsum`` from 1, e.g. NORM after an EXP over a subset) can reach ``R`` =
``2**31``, ``e * R`` <= 2**46 and the product < 2**53, and the RTL is sized for that.
"""

import math

import numpy as np

from .errors import ShapeError
from .isa import ProbFormat, SoftFunc
from .vec_fixed import fp16_from_fixed
from .vector import round_shift, sat8, sat32, _mul

__all__ = ["EXP_FRAC_BITS", "EXP_ONE", "EXP_TABLE", "D_MAX", "PROB_MAX", "DIVIDEND", "DIGITS_MAX",
           "RECIP_SHIFT", "soft_words", "norm_writes",
           "NORM_SHIFT", "SOFT_DIV_CYCLES",
           "SoftState", "soft_values", "soft_exp", "soft_recip", "soft_apply", "exp_step",
           "norm_words"]

#: Steps of ``d`` per halving of ``e``: the exponent table has ``2**EXP_FRAC_BITS`` entries.
EXP_FRAC_BITS = 5
#: ``e`` of the row's maximum (``d = 0``).
EXP_ONE = 1 << 15
#: ``EXP_TABLE[k] = round(2**15 * 2**(-k / 32))``: the fixed table of the unit (a ROM).
EXP_TABLE = tuple(round(EXP_ONE * 2.0 ** (-k / (1 << EXP_FRAC_BITS))) for k in range(1 << EXP_FRAC_BITS))
#: Largest ``d``: beyond it ``e`` would be shifted to 0 anyway (``2**15 >> 16``).
D_MAX = (16 << EXP_FRAC_BITS) - 1
#: Largest probability (INT8): ``R = (PROB_MAX << RECIP_SHIFT) // rsum``.
PROB_MAX = 127
#: The dividend ``N`` of ``R = N // rsum`` per probability format (each quotient fits 32 bits).
DIVIDEND = {ProbFormat.INT8: PROB_MAX << 24, ProbFormat.FP16: 1 << 31, ProbFormat.HI: 1 << 31,
            ProbFormat.LO: 1 << 31}
#: Largest 14-bit probability of the HI / LO digits.
DIGITS_MAX = (1 << 14) - 1
#: ``R = (PROB_MAX << RECIP_SHIFT) // rsum``.
RECIP_SHIFT = 24
#: NORM's first rounding shift: ``round_shift(e * R, NORM_SHIFT)``.
NORM_SHIFT = 9
#: Cycles of NORM's division (one quotient bit per cycle).
SOFT_DIV_CYCLES = 32
_I32_MIN = -(1 << 31)


def norm_words(config, count):
    """ACT words a packed NORM over ``count`` values writes: ``rows`` probabilities per word."""
    return -(-count // config.rows)


def soft_words(config, inst):
    """ACC word addresses a VSOFT reads (int64 array): consecutive, or ``rows`` apart (``col``)."""
    step = config.rows if inst.col else 1
    return inst.acc_addr + step * np.arange(inst.words, dtype=np.int64)


def norm_writes(config, inst):
    """ACT words a VSOFT NORM writes: packed ``ceil(count / rows)``, by column ``words * cols``."""
    return inst.words * config.cols if inst.col else norm_words(config, inst.count)


def exp_step():
    """The exponent step of one unit of ``d`` (natural log units): ``ln 2 / 32``."""
    return math.log(2) / (1 << EXP_FRAC_BITS)


class SoftState:
    """The vector unit's softmax registers: ``rmax`` (int32), ``rsum`` (uint32); 0 after reset."""

    def __init__(self):
        self.rmax = 0
        self.rsum = 0


def soft_values(x, kmult, kshift):
    """``v = sat32(round_shift(x * kmult, kshift))`` elementwise (int64 array)."""
    return sat32(round_shift(_mul(x, kmult), kshift))


def soft_exp(rmax, v):
    """``e`` of every value ``v`` against the running maximum ``rmax`` (int64 array)."""
    d = np.clip(int(rmax) - np.asarray(v, np.int64), 0, D_MAX)
    table = np.array(EXP_TABLE, np.int64)
    return table[d & ((1 << EXP_FRAC_BITS) - 1)] >> (d >> EXP_FRAC_BITS)


def soft_recip(rsum, pfmt=ProbFormat.INT8):
    """``R = N // rsum`` (``N`` of ``pfmt``: :data:`DIVIDEND`), 0 for ``rsum == 0``."""
    return DIVIDEND[ProbFormat(pfmt)] // rsum if rsum else 0


def soft_apply(state, func, x, kmult, kshift, *, first=False, vmult=None, vshift=None,
               pfmt=ProbFormat.INT8):
    """One ``VSOFT`` on the values ``x`` (int array (count,)) with their K multipliers; updates
    ``state`` (:class:`SoftState`) for MAX/EXP, returns the probabilities for NORM (else None):
    int8 values (INT8, HI, LO) or FP16 bit patterns (uint16, FP16)."""
    func = SoftFunc(func)
    x = np.asarray(x)
    if x.ndim != 1:
        raise ShapeError(f"softmax values must be 1-D, not shape {x.shape}")
    v = soft_values(x, kmult, kshift)
    if func == SoftFunc.MAX:
        state.rmax = int(max(_I32_MIN if first else state.rmax, int(v.max())))
        return None
    e = soft_exp(state.rmax, v)
    if func == SoftFunc.EXP:
        state.rsum = ((0 if first else state.rsum) + int(e.sum())) & 0xFFFFFFFF
        return None
    if vmult is None or vshift is None:
        raise ShapeError("NORM needs the V multipliers")
    pfmt = ProbFormat(pfmt)
    r = soft_recip(state.rsum, pfmt)
    q = round_shift(_mul(round_shift(_mul(e, r), NORM_SHIFT), vmult), vshift)
    if pfmt == ProbFormat.INT8:
        return sat8(q)
    if pfmt == ProbFormat.FP16:
        return fp16_from_fixed(q)
    q = np.clip(q, 0, DIGITS_MAX).astype(np.int64)
    return (q >> 7 if pfmt == ProbFormat.HI else q & 127).astype(np.int8)
