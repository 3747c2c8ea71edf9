"""Integer LayerNorm and RMSNorm on the vector unit (the ``VNORM`` instruction), bit-exactly
(docs/numerics.md, "Norms").

A norm reduces over a token's whole hidden vector, which lies in ACC as several words (``cols``
features of one token per word, one word per token of a block), so it runs in passes over ACC
words, any number of instructions each, with per-token registers kept between instructions (like
the softmax's): ``s1[i]`` (48-bit two's complement, wraps) and ``s2[i]`` (64-bit unsigned,
wraps) for the ``rows`` tokens ``i`` of a block. Per element ``x`` (an ACC value, ``sat32``'d):

* ``SUM`` (LayerNorm only): ``s1[i] += x``;
* ``SQ``: ``mu[i] = 0`` (``rms``) or ``sat32(round_shift(s1[i] * hm, hs))`` (the mean: ``(hm,
  hs)`` ~= 1/H from VPARAM word ``nparam``); ``d = sat24(round_shift(x - mu[i], qshift))``;
  ``s2[i] += d * d``;
* ``NORM``: per token ``D = s2[i] + eps`` (65 bits: not wrapped; ``eps``: VPARAM word ``nparam +
  1`` as an unsigned 32-bit value), ``(r, e) = rsqrt(D)``; per element ``n = round_shift(d * r, e
  / 2 + 4)`` (``d / sqrt(D)`` in units of 2**-19) and ``y = round_shift(n * gm[j], gs[j]) +
  beta[j]`` with ``(gm[j], gs[j])`` the VPARAM word ``param_addr + j`` and ``beta[j]`` the word
  ``param_addr + cols + j`` read as int32. When ``d`` is the one squared into ``s2``, ``|n|`` is
  at most about ``2**19 * 1.002`` (21 bits; the truncated ``m`` makes ``r`` up to 0.2% large);
  any legal program (a NORM over other data than its SQ) reaches ``|n| < 2**43``, and the RTL
  keeps all of it.

``first`` starts a pass from 0 (``SUM`` clears ``s1``, ``SQ`` clears ``s2``). ``rsqrt(D)``: 0 for
``D = 0``; else with ``b`` the bit length of ``D``, ``e = b - 10`` rounded up to even (so ``e >=
-8``), ``m = D >> e`` (``D << -e`` for ``e < 0``; ``m`` in 256..1023) and ``r = RSQRT_TABLE[m -
256] = round(2**23 / sqrt(m))`` (a 768-entry ROM of 20-bit values): ``1 / sqrt(D) ~= r * 2**-23
* 2**(-e/2)`` within 0.2% (``m`` is truncated).

The compiler folds ``sqrt(H) * gamma[j]`` and the output unit into ``(gm, gs)``, LayerNorm's
``beta`` into ``beta``, and ``H * eps`` into ``eps`` (in units of ``d**2``); it picks ``qshift``
so that calibrated ``|x - mu| >> qshift`` fits 24 bits with room to spare.
"""

import math

import numpy as np

from .errors import ShapeError
from .isa import NormFunc
from .vector import _ints, round_shift, sat32

__all__ = ["RSQRT_BITS", "RSQRT_LO", "RSQRT_TABLE", "N_FRAC", "D_BITS", "NormState", "rsqrt",
           "norm_apply"]

#: ``m`` of :func:`rsqrt` is in ``RSQRT_LO .. 4 * RSQRT_LO - 1``.
RSQRT_LO = 256
#: ``RSQRT_TABLE[m - 256] = round(2**23 / sqrt(m))``.
RSQRT_BITS = 23
RSQRT_TABLE = tuple(int(round((1 << RSQRT_BITS) / math.sqrt(m))) for m in range(RSQRT_LO, 4 * RSQRT_LO))
#: Fraction bits of the normalized value ``n``.
N_FRAC = 19
#: Width of ``d`` (two's complement, saturated).
D_BITS = 24
_S1_BITS, _S2_BITS = 48, 64


def _wrap(x, bits, signed=True):
    m = (1 << bits) - 1
    x = int(x) & m
    return x - (1 << bits) if signed and x >> (bits - 1) else x


class NormState:
    """The per-token norm registers of a block of ``rows`` tokens: ``s1`` (int48), ``s2`` (uint64)."""

    def __init__(self, rows):
        self.s1 = [0] * rows
        self.s2 = [0] * rows


def rsqrt(d):
    """``(r, e)`` with ``1 / sqrt(d) ~= r * 2**-23 * 2**(-e / 2)`` (``(0, 0)`` for ``d == 0``)."""
    d = int(d)
    if d <= 0:
        return 0, 0
    e = d.bit_length() - 10
    e += e & 1
    m = d >> e if e >= 0 else d << -e
    return RSQRT_TABLE[m - RSQRT_LO], e


def _mean(state, i, rms, hm, hs):
    if rms:
        return 0
    return int(sat32(round_shift(np.array([state.s1[i] * int(hm)], dtype=object), int(hs)))[0])


def _deviation(x, mu, qshift):
    """``sat24(round_shift(x - mu, qshift))`` of one token's values (int64 array)."""
    d = round_shift(np.asarray(x, np.int64) - mu, qshift)
    lim = 1 << (D_BITS - 1)
    return np.clip(d, -lim, lim - 1)


def norm_apply(state, func, acc, *, first=False, rms=False, qshift=0, hm=0, hs=0, eps=0,
               gm=None, gs=None, beta=None):
    """One ``VNORM`` over ``acc`` (int array (R, C): R tokens of a block, C features): updates
    ``state`` (:class:`NormState`) for SUM and SQ; for NORM returns ``y`` (int64 (R, C)), the
    output before the format conversion (``sat8`` or FP16, or ``sat32`` into ACC)."""
    func = NormFunc(func)
    x = sat32(_ints(acc))
    if x.ndim != 2 or x.shape[0] > len(state.s1):
        raise ShapeError(f"VNORM values must be (tokens <= {len(state.s1)}, columns), not {x.shape}")
    r, c = x.shape
    if func == NormFunc.SUM:
        for i in range(r):
            state.s1[i] = _wrap((0 if first else state.s1[i]) + int(x[i].sum()), _S1_BITS)
        return None
    mus = [_mean(state, i, rms, hm, hs) for i in range(r)]
    d = np.stack([_deviation(x[i], mus[i], qshift) for i in range(r)])
    if func == NormFunc.SQ:
        for i in range(r):
            sq = int((d[i] * d[i]).sum())  # < 2**46 * C: int64 for C < 2**17
            state.s2[i] = _wrap((0 if first else state.s2[i]) + sq, _S2_BITS, signed=False)
        return None
    if gm is None or gs is None or beta is None:
        raise ShapeError("NORM needs the column multipliers and biases")
    gm, gs, beta = (np.asarray(a, np.int64) for a in (gm, gs, beta))
    if gm.shape != (c,) or gs.shape != (c,) or beta.shape != (c,):
        raise ShapeError(f"column multipliers and biases must have shape ({c},)")
    out = np.empty((r, c), np.int64)
    for i in range(r):
        rr, e = rsqrt(state.s2[i] + int(eps))
        n = round_shift(d[i] * rr, e // 2 + 4)  # |d * r| < 2**43
        out[i] = round_shift(n * gm, gs) + beta
    return out
