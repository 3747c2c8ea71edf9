"""The golden effect of the vector unit's instructions (VEC, VSOFT, VNORM) on the scratchpads.

The numerics are :mod:`.vector` (multipliers, INT8 functions), :mod:`.vec_fixed` (FP16 output,
gates, RoPE), :mod:`.softmax` and :mod:`.norm`; this module reads their operands from the
scratchpads and writes the results where the instruction says (docs/isa.md, docs/tile.md):

* ACT words hold ``rows`` lanes: int8, or on FP16 tiles 16-bit lanes (FP16 bit patterns; RoPE's
  cosine and sine words are read as int16);
* a transposed write puts column ``j`` of a tile into ACT word ``act_addr + j`` (lane = token),
  a direct write row ``i`` into word ``act_addr + i`` (lane = column), a by-column VSOFT NORM
  value ``t`` into one lane of word ``act_addr + t`` (the other lanes are kept).

``spads`` maps scratchpad names to arrays: ``"ACC"`` (words, cols) integers, the others (words,
word_bytes) uint8.
"""

import numpy as np

from .config import VPARAM_LUT_WORDS
from .isa import NormFunc, SoftFunc, VecFunc
from .norm import NormState, norm_apply
from .numerics import wrap
from .softmax import SoftState, norm_words, soft_apply, soft_words
from .vec_fixed import fixed_from_fp16, fp16_from_fixed, gelu_fixed, glu_fixed, rope_fixed, silu_fixed
from .vector import (fp16_bits_to_int8, int8_to_fp16_bits, sat8, sat32, unpack_lut, unpack_vparam,
                     vec_apply, _requantize)

__all__ = ["VectorState", "exec_vec", "exec_vsoft", "exec_vnorm"]


class VectorState:
    """The vector unit's registers: the softmax's and the norm's (reset at the start of a run)."""

    def __init__(self, config):
        self.soft = SoftState()
        self.norm = NormState(config.rows)


def _lanes(cfg, words):
    """ACT words (n, word_bytes) uint8 -> lanes (n, rows): int8, or uint16 on FP16 tiles."""
    w = np.ascontiguousarray(words)
    return w.view(np.int8) if cfg.act_format == "int8" else w.view("<u2").astype(np.uint16)


def _words(cfg, lanes):
    """Lanes (n, rows) -> ACT words (n, word_bytes) uint8 (int8, or 16-bit patterns)."""
    dt = np.int8 if cfg.act_format == "int8" else "<u2"
    return np.ascontiguousarray(lanes.astype(dt)).view(np.uint8).reshape(len(lanes), -1)


def _encode(cfg, y, fmt):
    """Output lanes of values ``y``: fmt 0 ``sat8`` (FP16 tiles: the FP16 of it), fmt 1 FP16."""
    if fmt:
        return fp16_from_fixed(y)
    y8 = sat8(y)
    return y8 if cfg.act_format == "int8" else int8_to_fp16_bits(y8)


def _write_act(cfg, spads, first, tile, direct):
    """Write the (tokens, cols) output lanes ``tile``: transposed, or direct (row i -> word)."""
    r, c = tile.shape
    dt = np.int8 if cfg.act_format == "int8" else np.uint16
    if direct:
        out = np.zeros((r, cfg.rows), dt)
        out[:, :c] = tile
    else:
        out = np.zeros((c, cfg.rows), dt)
        out[:, :r] = tile.T
    spads["ACT"][first:first + len(out)] = _words(cfg, out)


def _values(acc, mult, shift, tmult, tshift):
    return _requantize(acc, mult, shift, tmult, tshift)


def _int32_words(words):
    """VPARAM words (n, 4) uint8 read as int32 (int64 array)."""
    return np.ascontiguousarray(words).view("<i4").reshape(-1).astype(np.int64)


def _acc_value(cfg, y):
    """``sat32(y)`` as the ACC register keeps it: wrapped to ``acc_bits`` (when that is below 32)."""
    return wrap(sat32(y), cfg.acc_bits)


def exec_vec(cfg, spads, inst):
    """One VEC (docs/isa.md, VEC)."""
    r, c, func = inst.rows, cfg.cols, inst.func
    acc = spads["ACC"][inst.acc_addr:inst.acc_addr + r]
    vp = spads["VPARAM"]
    mult, shift = unpack_vparam(vp[inst.param_addr:inst.param_addr + c])
    base = cfg.vparam_token_base
    tmult, tshift = unpack_vparam(vp[base:base + r])
    bias = None
    if inst.bias:  # int32 words param_addr + cols .. (the raw words, as VNORM's beta)
        bias = _int32_words(vp[inst.param_addr + c:inst.param_addr + 2 * c])
    if func in (VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD) and not inst.fmt:
        lut = unpack_lut(vp[:VPARAM_LUT_WORDS].tobytes()) if func == VecFunc.GELU else None
        residual = None
        if func == VecFunc.ADD:
            res = _lanes(cfg, spads["ACT"][inst.res_addr:inst.res_addr + c])[:, :r].T
            residual = res if cfg.act_format == "int8" else fp16_bits_to_int8(res)
        y = vec_apply(func, acc, mult, shift, tmult, tshift, lut=lut, residual=residual, bias=bias)
        _write_act(cfg, spads, inst.act_addr, _encode(cfg, y, 0), inst.direct)
        return
    v = _values(acc, mult, shift, tmult, tshift)
    if bias is not None:
        v = v + bias[None, :]
    if func == VecFunc.RES:
        res = spads["ACC"][inst.res_addr:inst.res_addr + r]
        out = _acc_value(cfg, np.asarray(v, dtype=object) + np.asarray(res, dtype=object))
        spads["ACC"][inst.res_addr:inst.res_addr + r] = out.astype(spads["ACC"].dtype)
        return
    partner = None
    if func in (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI):
        pm, ps = unpack_vparam(vp[inst.param_addr + c:inst.param_addr + 2 * c])
        partner = _values(spads["ACC"][inst.res_addr:inst.res_addr + r], pm, ps, tmult, tshift)
    if func == VecFunc.REQUANT:
        y = v
    elif func == VecFunc.RELU:
        y = np.maximum(v, 0)
    elif func == VecFunc.GELU:
        y = gelu_fixed(v)
    elif func == VecFunc.ADD:
        res = _lanes(cfg, spads["ACT"][inst.res_addr:inst.res_addr + c])[:, :r].T
        y = v + fixed_from_fp16(res)
    elif func == VecFunc.SILU:
        y = silu_fixed(v)
    elif func == VecFunc.GLU:
        y = glu_fixed(v, partner)
    else:  # ROPE: int16 cosine and sine lanes, two ACT words per column
        table = _lanes(cfg, spads["ACT"][inst.table_addr:inst.table_addr + 2 * c]).view(np.int16)
        cos, sin = table[0::2, :r].T, table[1::2, :r].T
        y = rope_fixed(v, partner, cos, sin, high=func == VecFunc.ROPE_HI)
    _write_act(cfg, spads, inst.act_addr, _encode(cfg, y, inst.fmt), inst.direct)


def exec_vsoft(cfg, spads, state, inst):
    """One VSOFT (docs/numerics.md, Softmax): updates ``state.soft``, NORM writes ACT."""
    n = inst.count
    x = spads["ACC"][soft_words(cfg, inst)].reshape(-1)[:n]
    vp = spads["VPARAM"]
    kmult, kshift = unpack_vparam(vp[inst.kparam:inst.kparam + n])
    vmult = vshift = None
    if inst.func == SoftFunc.NORM:
        vmult, vshift = unpack_vparam(vp[inst.vparam:inst.vparam + n])
    p = soft_apply(state.soft, inst.func, x, kmult, kshift, first=bool(inst.first), vmult=vmult,
                   vshift=vshift, pfmt=inst.pfmt)
    if p is None:
        return
    if cfg.act_format == "fp16" and p.dtype == np.int8:
        p = int8_to_fp16_bits(p)
    dt = np.int8 if cfg.act_format == "int8" else np.uint16
    if inst.col:  # value t -> lane `lane` of word act_addr + t; 0 past count; other lanes kept
        total = inst.words * cfg.cols
        act = spads["ACT"][inst.act_addr:inst.act_addr + total]
        lanes = _lanes(cfg, act).copy()
        lanes[:, inst.lane] = 0
        lanes[:n, inst.lane] = p
        spads["ACT"][inst.act_addr:inst.act_addr + total] = _words(cfg, lanes.astype(dt))
        return
    words = norm_words(cfg, n)
    out = np.zeros(words * cfg.rows, dt)
    out[:n] = p
    spads["ACT"][inst.act_addr:inst.act_addr + words] = _words(cfg, out.reshape(words, cfg.rows))


def exec_vnorm(cfg, spads, state, inst):
    """One VNORM (docs/numerics.md, Norms): SUM and SQ update ``state.norm``; NORM writes ACT
    (transposed) or, with ``to_acc``, ACC rows ``act_addr ..``."""
    r, c = inst.rows, cfg.cols
    acc = spads["ACC"][inst.acc_addr:inst.acc_addr + r]
    vp = spads["VPARAM"]
    hm = hs = 0
    if inst.func != NormFunc.SUM and not inst.rms:  # the mean's multiplier ~ 1/H
        hm, hs = (int(a[0]) for a in unpack_vparam(vp[inst.nparam:inst.nparam + 1]))
    kw = dict(first=bool(inst.first), rms=bool(inst.rms), qshift=inst.qshift, hm=hm, hs=hs)
    if inst.func != NormFunc.NORM:
        norm_apply(state.norm, inst.func, acc, **kw)
        return
    eps = int(np.ascontiguousarray(vp[inst.nparam + 1]).view("<u4")[0])
    gm, gs = unpack_vparam(vp[inst.param_addr:inst.param_addr + c])
    beta = _int32_words(vp[inst.param_addr + c:inst.param_addr + 2 * c])
    y = norm_apply(state.norm, inst.func, acc, eps=eps, gm=gm, gs=gs, beta=beta, **kw)
    if inst.to_acc:
        spads["ACC"][inst.act_addr:inst.act_addr + r] = _acc_value(cfg, y).astype(spads["ACC"].dtype)
        return
    _write_act(cfg, spads, inst.act_addr, _encode(cfg, y, inst.fmt), False)
