"""The LLaMA-specific epilogues of a whole-model program (:mod:`.model_kernels` has the common
ones): RoPE on a Linear's query and key tiles (:func:`rope_epilogue`) and the SwiGLU product of
the gate and up projections (:func:`glu_epilogue`).

RoPE turns the feature pairs ``(i, i + head_dim / 2)`` of a head: feature blocks ``lo`` and
``hi = lo + head_dim / (2 cols)`` are loaded together, VEC ROPE_LO writes ``lo`` (partner ``hi``)
and ROPE_HI writes ``hi`` (partner ``lo``), each with both blocks' column multipliers (its own,
then the partner's: ``2 cols`` VPARAM words) and the token block's cosines and sines from ACT
(:func:`rope_words`: per frequency two ACT words, int16 lanes = tokens).
"""

from dataclasses import dataclass

import numpy as np

from mixpim.models.executor import pack_act
from mixpim.models.isa import Spad, VecFunc
from mixpim.models.vec_fixed import rope_table

from .model_build import Slots

__all__ = ["RopePair", "rope_words", "rope_epilogue", "glu_epilogue"]


def rope_words(cfg, positions, inv_freq):
    """ACT words (bytes) of the cosine and sine tables of tokens at ``positions`` (one per token:
    a prompt's 0 .. m-1, or each decoding request's own position): per token block ``2 F`` words
    (F = ``len(inv_freq)``), word ``2f`` the Q14 cosines and word ``2f + 1`` the sines of
    frequency f, lane t = the block's token t (padding lanes: position 0)."""
    r = cfg.rows
    pos = np.asarray(positions, np.int64)
    mb = -(-len(pos) // r)
    padded = np.zeros(mb * r, np.int64)
    padded[:len(pos)] = pos
    cos, sin = rope_table(padded, inv_freq)  # (T, F) int16
    f = len(inv_freq)
    words = np.empty((mb, 2 * f, r), np.int16)
    words[:, 0::2] = cos.reshape(mb, r, f).transpose(0, 2, 1)
    words[:, 1::2] = sin.reshape(mb, r, f).transpose(0, 2, 1)
    return pack_act(cfg, words.reshape(-1, r).view(np.uint16))


@dataclass(frozen=True)
class RopePair:
    """Feature blocks ``lo`` and ``hi`` of the source turned together: VPARAM images at DRAM
    ``params_lo`` / ``params_hi`` (own multipliers, then the partner's), output ``fmt``, written
    to features ``at_lo`` / ``at_hi`` of ``tensor`` (an :class:`~.model_build.ActTensor`); the
    blocks' frequencies start at ``freq`` (a head's ``lo`` block index x ``cols``)."""

    lo: int
    hi: int
    params_lo: int
    params_hi: int
    fmt: int
    tensor: object
    at_lo: int
    at_hi: int
    freq: int


def rope_epilogue(b, reg, y, pairs, table, freqs):
    """Per token block: LOAD its ``2 freqs`` table words (DRAM ``table``, :func:`rope_words`),
    then for each :class:`RopePair` both tiles of ``y`` (:class:`~.model_build.AccRows`), ROPE_LO
    and ROPE_HI, and the STOREs."""
    cfg = b.cfg
    r, c, ab, accb = cfg.rows, cfg.cols, cfg.act_word_bytes, cfg.acc_word_bytes
    tables = Slots(reg.act_out.end, 2 * freqs, 2)
    for i in range(-(-y.m // r)):
        ri = min(r, y.m - i * r)
        t = tables.take()
        b.load(Spad.ACT, t, table + i * 2 * freqs * ab, 2 * freqs, comment=f"RoPE table, block {i}")
        for p in pairs:
            tiles = {}
            for blk in (p.lo, p.hi):
                tiles[blk] = reg.acc_tiles.take()
                b.load(Spad.ACC, tiles[blk], y.addr(cfg, i * r, blk), 1, rows=ri, stride=y.nb * accb)
            for own, partner, params, at, func in ((p.lo, p.hi, p.params_lo, p.at_lo, VecFunc.ROPE_LO),
                                                   (p.hi, p.lo, p.params_hi, p.at_hi, VecFunc.ROPE_HI)):
                vp = reg.vp_slots.take()
                b.load(Spad.VPARAM, vp, params, 2 * c)
                o = reg.act_out.take()
                b.op("VEC", func=func, acc_addr=tiles[own], res_addr=tiles[partner], act_addr=o,
                     param_addr=vp, rows=ri, fmt=p.fmt, table_addr=t + 2 * p.freq)
                b.store_act(o, p.tensor, i, at, c)


def glu_epilogue(b, reg, y, blocks, params, out):
    """SwiGLU: ``y`` holds the gate projection's ``blocks`` feature blocks, then the up
    projection's; per block (VPARAM image at ``params + j * 2 cols`` words: the gate's, then the
    up's multipliers) and token block a VEC GLU (FP16) into ``out``."""
    cfg = b.cfg
    r, c, accb = cfg.rows, cfg.cols, cfg.acc_word_bytes
    for j in range(blocks):
        vp = reg.vp_slots.take()
        b.load(Spad.VPARAM, vp, params + j * 2 * c * 4, 2 * c)
        for i in range(-(-y.m // r)):
            ri = min(r, y.m - i * r)
            g, u = reg.acc_tiles.take(), reg.acc_tiles.take()
            b.load(Spad.ACC, g, y.addr(cfg, i * r, j), 1, rows=ri, stride=y.nb * accb)
            b.load(Spad.ACC, u, y.addr(cfg, i * r, blocks + j), 1, rows=ri, stride=y.nb * accb)
            o = reg.act_out.take()
            b.op("VEC", func=VecFunc.GLU, acc_addr=g, res_addr=u, act_addr=o, param_addr=vp,
                 rows=ri, fmt=1)
            b.store_act(o, out, i, j * c, c)
