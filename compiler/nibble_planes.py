"""8-bit weights on the 4-bit array: two nibble planes along K (docs/decisions.md, "Whole models").

An 8-bit group-wise weight ``w = s (q - z)`` with codes ``q`` and zero point ``z`` in 0..255 splits
exactly into ``16 s (q_hi - z_hi) + s (q_lo - z_lo)`` with ``q_hi = q >> 4``, ``q_lo = q & 15``
(and the same for ``z``): two 4-bit weight matrices. Side by side along K they make one
:class:`~mixpim.models.quant.QuantizedWeights` of ``N x 2K`` (the high plane's groups first) that
the unchanged array multiplies by the activations given twice, ``[x | x]``: the layer costs twice
the beats of a 4-bit one and is exactly the 8-bit product. The scale mantissas are kept to
``scale_bits - 4`` bits so that the high plane's ``16 sm`` fits the array's ``scale_bits``.
"""

import numpy as np

from mixpim.models.errors import RangeError
from mixpim.models.numerics import FixedScales
from mixpim.models.quant import QuantizedWeights, num_groups, to_fixed_scales

from .emit import CompileError

__all__ = ["PLANES", "quantize_planes", "planes_of_codes"]

#: The activations of a two-plane layer are given this many times along K.
PLANES = 2


def quantize_planes(w, group, scale_bits):
    """The two-plane :class:`QuantizedWeights` (N, 2K) of float ``w`` (N, K), 8-bit asymmetric per
    group (``[min(w, 0), max(w, 0)]`` onto 0..255, codes rounded half to even). K must be a whole
    number of groups (the planes meet at a group boundary)."""
    w = np.asarray(w, np.float64)
    n, k = w.shape
    if k % group:
        raise CompileError(f"two-plane weights need K ({k}) to be a multiple of the group ({group})")
    if scale_bits < 5:
        raise CompileError(f"two-plane weights need scale_bits >= 5, not {scale_bits}")
    if not np.all(np.isfinite(w)):
        raise RangeError("weights contain inf or NaN")
    g = num_groups(k, group)
    wg = w.reshape(n, g, group)
    lo, hi = np.minimum(wg.min(2), 0), np.maximum(wg.max(2), 0)
    fs = to_fixed_scales((hi - lo) / 255, scale_bits - 4)
    s = fs.value()
    safe = np.where(s > 0, s, 1.0)
    z = np.where(s > 0, np.clip(np.rint(-lo / safe), 0, 255), 0).astype(np.int64)
    q = np.where(s[..., None] > 0, np.clip(np.rint(wg / safe[..., None]) + z[..., None], 0, 255), 0)
    return _planes(q.astype(np.int64).reshape(n, k), z, fs, group, scale_bits)


def planes_of_codes(codes, zeros, scales, group, scale_bits):
    """The two-plane :class:`QuantizedWeights` of given 8-bit codes ``codes`` (N, K) and zero
    points ``zeros`` (N, K / group), both in 0..255, with float ``scales`` (N, K / group) (e.g.
    Q8_0: codes ``q + 128``, zero point 128, scale ``d``); the scales are rounded to ``scale_bits
    - 4``-bit mantissas."""
    codes, zeros = np.asarray(codes, np.int64), np.asarray(zeros, np.int64)
    if min(codes.min(initial=0), zeros.min(initial=0)) < 0 or max(codes.max(initial=0),
                                                                  zeros.max(initial=0)) > 255:
        raise RangeError("8-bit codes and zero points must be in 0..255")
    return _planes(codes, zeros, to_fixed_scales(scales, scale_bits - 4), group, scale_bits)


def _planes(q, z, fs, group, scale_bits):
    q = q.astype(np.uint8)  # (0..255: an eighth of the int64 traffic for the LM head's 28 M codes)
    codes = np.concatenate([q >> 4, q & 15], axis=1)
    zeros = np.concatenate([z >> 4, z & 15], axis=1)
    mant = np.concatenate([fs.mant << 4, fs.mant], axis=1)
    qw = QuantizedWeights(codes=codes, zeros=zeros, scales=FixedScales(mant, fs.exp, scale_bits),
                          bits=4, group=group, symmetric=False)
    qw.check()
    return qw
