"""Operand packing: the DRAM images of a layer's activations and weights, block by block.

Activations are K-major per token block (``rows`` tokens, one ACT word per K beat), weights
K-major per feature block (nibble-packed WGT words) with one META word per group
(docs/compiler.md, "Place"). :func:`kw_next` is the ACT words per token block of an output that
the next layer reads as its input.
"""

import numpy as np

from mixpim.models.bitmod import BitmodWeights
from mixpim.models.bitmod_gemm import array_selectors
from mixpim.models.executor import pack_act, pack_meta, pack_wgt
from mixpim.models.quant import num_groups
from mixpim.models.tile_array import array_params

from .emit import CompileError

__all__ = ["act_blocks", "weight_blocks", "kw_next"]


def act_blocks(cfg, act, kw):
    """Per token block the K-major ACT words (bytes) of ``act`` (M, K), padded to ``kw`` words."""
    m, k = act.shape
    mb = -(-m // cfg.rows)
    a = np.zeros((mb * cfg.rows, kw), act.dtype)
    a[:m, :k] = act
    return [pack_act(cfg, a[i * cfg.rows:(i + 1) * cfg.rows].T) for i in range(mb)]


def weight_blocks(cfg, qw):
    """Per feature block the K-major WGT words and the META words (bytes) of ``qw``
    (:class:`~mixpim.models.quant.QuantizedWeights`, or on BitMoD tiles
    :class:`~mixpim.models.bitmod.BitmodWeights`: the selector in the zero point's byte); padded
    features have zero codes, zero points and offsets, padded K beats the group's zero point
    (BitMoD: code 0) and activation 0 (:func:`act_blocks`). Group offsets (``qw.offsets``) need a configuration
    with ``group_offset`` (:func:`~mixpim.models.executor.pack_meta` refuses them otherwise);
    weights without offsets on such a configuration get offset 0."""
    n, k = qw.codes.shape
    g = qw.ngroups
    kw = g * cfg.group
    c = cfg.cols
    nb = -(-n // c)
    if isinstance(qw, BitmodWeights) != (cfg.family == "bitmod"):  # else META would mean another thing
        raise CompileError(f"{type(qw).__name__} cannot run on a {cfg.pe} tile (BitMoD tiles take "
                           f"BitmodWeights, the others QuantizedWeights)")
    if isinstance(qw, BitmodWeights):
        # BitMoD: the zero point's byte holds the array's type selector; code 0 is the value 0
        byte2, pad = array_selectors(array_params(cfg), qw), 0
    else:
        byte2, pad = qw.zeros, qw.zeros[:, -1:]
    codes = np.zeros((nb * c, kw), np.int64)
    codes[:n, :k] = qw.codes
    codes[:n, k:] = pad
    zeros = np.zeros((nb * c, g), np.int64)
    zeros[:n] = byte2
    scales = np.zeros((nb * c, g), np.int64)
    scales[:n] = qw.scales.mant
    offsets = None
    if getattr(qw, "offsets", None) is not None:
        offsets = np.zeros((nb * c, g), np.int64)
        offsets[:n] = qw.offsets
    wgt = [pack_wgt(cfg, codes[j * c:(j + 1) * c].T) for j in range(nb)]
    meta = [pack_meta(cfg, zeros[j * c:(j + 1) * c].T, scales[j * c:(j + 1) * c].T,
                      None if offsets is None else offsets[j * c:(j + 1) * c].T) for j in range(nb)]
    return wgt, meta


def kw_next(cfg, n):
    """ACT words per token block of an N-feature output consumed as the next layer's input."""
    return num_groups(n, cfg.group) * cfg.group
