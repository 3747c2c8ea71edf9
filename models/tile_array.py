"""The array inside a tile, by PE kind: its parameters, the GEMM schedule the tile derives from
them, and the weight values of a BitMoD tile's WGT and META words.

``TileConfig.pe`` picks the array: MixPE or baseline (:class:`~mixpim.models.mixpe.ArrayParams`)
or BitMoD (:class:`~mixpim.models.bitmod_gemm.BitmodParams` with the mixture
``TileConfig.weight_types``). Both speak the same stream protocol; they differ in the cycles an
input beat takes (``cycles_per_beat``: 1, or BitMoD's ``terms``) and between a tile's output rows
(``row_interval``: 1, or BitMoD's ``scale_bits``).

GEMM schedule (docs/tile.md, "Cycle model rules"), for an instruction of ``B`` beats started in
cycle ``s``, ``T = cycles_per_beat``, ``L = latency``, ``S = row_interval``, ``R = rows``:

* beat ``k`` is read in cycle ``s + k T`` and enters the array one cycle later: busy
  ``D = B T`` cycles;
* the last beat enters in ``t = s + D - T + 1``; output row ``r`` leaves the array in
  ``t + L + r S`` and is written to ACC in that cycle;
* so the GEMM completes in ``s + D - 1 + tail`` with ``tail = L + 2 - T + (R - 1) S``
  (:func:`gemm_tail`; MixPE: ``L + R``).
"""

import functools

import numpy as np

from .bitmod import quantize_bitmod
from .bitmod_gemm import SEL_BITS, BitmodParams, bitmod_gemm, value_table
from .config import TileConfig
from .mixpe import ArrayParams, mixpe_gemm
from .quant import quantize_weights

__all__ = ["array_params", "gemm_tail", "wsrc_supported", "bitmod_weight_values", "quantize_for", "tile_gemm"]


@functools.lru_cache(maxsize=64)
def array_params(config: TileConfig):
    """The parameters of ``config``'s array: :class:`ArrayParams` (MixPE, baseline) or
    :class:`BitmodParams` (BitMoD; ``acc_bits`` equals ``config.acc_bits``)."""
    if config.family != "bitmod":
        return ArrayParams.from_config(config)
    return BitmodParams(rows=config.rows, cols=config.cols, group=config.group, wbits=config.wbits,
                        types=config.weight_types, act_format=config.act_format,
                        scale_bits=config.scale_bits, acc_headroom=config.acc_headroom)


def gemm_tail(params):
    """Cycles from a GEMM's last busy cycle to its completion (module doc): ``latency + 2 -
    cycles_per_beat + (rows - 1) * row_interval``."""
    return params.latency + 2 - params.cycles_per_beat + (params.rows - 1) * params.row_interval


def wsrc_supported(config):
    """The configuration can run ``wsrc`` GEMMs: MixPE or baseline (INT8 weights split into two
    4-bit passes with zero points; BitMoD's typed codes have none), a beat's weights fit one ACT
    word (``rows >= cols``), 4-bit codes, the scale 16 fits (``scale_bits >= 5``)."""
    return (config.family != "bitmod" and config.rows >= config.cols and config.wbits == 4
            and config.scale_bits >= 5)


def bitmod_weight_values(params, codes, sel):
    """The weight values a BitMoD array multiplies by: int64, ``codes``' shape. ``codes``: the
    WGT fields (any shape); ``sel``: the selector byte of each weight's META entry (same shape).
    The array takes the low ``wbits`` bits of a code and the low :data:`SEL_BITS` bits of a
    selector (:func:`~mixpim.models.bitmod_gemm.value_table`)."""
    table = value_table(params)
    return table[np.asarray(sel, np.int64) & ((1 << SEL_BITS) - 1),
                 np.asarray(codes, np.int64) & ((1 << params.wbits) - 1)]


def quantize_for(config, w):
    """``w`` (N, K) quantized as ``config``'s array takes it, with its ``wbits``, ``group`` and
    ``scale_bits``: :class:`~mixpim.models.quant.QuantizedWeights` (asymmetric INT) or, on
    BitMoD tiles, :class:`~mixpim.models.bitmod.BitmodWeights` of the tile's mixture."""
    if config.family == "bitmod":
        return quantize_bitmod(w, config.wbits, config.group, scale_bits=config.scale_bits)
    return quantize_weights(w, config.wbits, config.group, scale_bits=config.scale_bits)


def tile_gemm(config, act, qw):
    """The golden GEMM of ``config``'s array (:func:`~mixpim.models.mixpe.mixpe_gemm` or
    :func:`~mixpim.models.bitmod_gemm.bitmod_gemm`): a :class:`~mixpim.models.mixpe.GemmResult`."""
    p = array_params(config)
    return (bitmod_gemm if p.family == "bitmod" else mixpe_gemm)(p, act, qw)
