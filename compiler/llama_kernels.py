"""The LLaMA-specific epilogues of a whole-model program (:mod:`.model_kernels` has the common
ones): RoPE on a Linear's query and key tiles (:func:`rope_epilogue`) and the SwiGLU product of
the gate and up projections (:func:`glu_epilogue`).

RoPE turns the feature pairs ``(i, i + head_dim / 2)`` of a head: a ``lo`` feature block and its
``hi`` block, column for column partners, are loaded together, VEC ROPE_LO writes ``lo`` (partner
``hi``) and ROPE_HI writes ``hi`` (partner ``lo``), each with both blocks' column multipliers (its
own, then the partner's: ``2 cols`` VPARAM words) and the token block's cosines and sines from
ACT (:func:`rope_words`: per frequency two ACT words, int16 lanes = tokens). Where half a head
spans whole blocks, ``hi = lo + head_dim / (2 cols)``; where it is narrower than the array
(``head_dim = 128`` on 128 columns), the QKV Linear's query and key rows are permuted so that
the first halves of ``cols / (head_dim / 2)`` heads fill a ``lo`` block and their second halves
the next block (:class:`RopeLayout`); the STOREs put every head's features back in order.
"""

from dataclasses import dataclass

import numpy as np

from mixpim.models.executor import pack_act
from mixpim.models.isa import Spad, VecFunc
from mixpim.models.vec_fixed import rope_table

from .emit import CompileError
from .model_build import Slots

__all__ = ["RopeLayout", "RopePair", "rope_words", "rope_epilogue", "glu_epilogue"]


@dataclass(frozen=True)
class RopeLayout:
    """Where RoPE's feature pairs sit in the QKV Linear's output on a ``cols``-wide array (module
    doc): half a head spans ``blocks`` feature blocks, and ``heads_per`` heads share a pair of
    blocks (one of the two is 1)."""

    cols: int
    head_dim: int

    @classmethod
    def of(cls, cfg, head_dim):
        half = head_dim // 2
        if head_dim % 2 or (half % cfg.cols and cfg.cols % half):
            raise CompileError(f"RoPE needs half a head ({head_dim} / 2) to be a multiple or a divisor "
                               f"of the array's cols ({cfg.cols})")
        return cls(cfg.cols, head_dim)

    @property
    def blocks(self):
        return max(1, self.head_dim // 2 // self.cols)

    @property
    def heads_per(self):
        return max(1, self.cols // (self.head_dim // 2))

    def perm(self, width):
        """Output position -> feature of ``width`` features (whole heads, a whole number of
        ``heads_per``): per group of ``heads_per`` heads their first halves, then their second
        halves (the identity when ``heads_per`` is 1)."""
        half, per = self.head_dim // 2, self.heads_per
        heads = width // self.head_dim
        if width % self.head_dim or heads % per:
            raise CompileError(f"RoPE on {self.cols} columns turns {per} heads of {self.head_dim} "
                               f"together; {width} features are not a whole number of them")
        return np.arange(width).reshape(heads // per, per, 2, half).transpose(0, 2, 1, 3).reshape(-1)

    def freqs(self, inv_freq):
        """The table's frequencies (:func:`rope_words`): the head's, once per head of a block."""
        return np.tile(np.asarray(inv_freq, np.float64), self.heads_per)

    def pairs(self, width):
        """``(lo, hi, freq, at_lo, at_hi)`` per pair of feature blocks of ``width`` permuted
        features: the blocks, the table's first frequency, and per block the feature where each
        of its ``heads_per`` pieces goes."""
        c, hd, nb, per = self.cols, self.head_dim, self.blocks, self.heads_per
        for g in range(width // (hd * per)):
            for t in range(nb):
                lo = g * 2 * nb + t
                at = tuple((g * per + p) * hd + t * c for p in range(per))
                yield lo, lo + nb, t * c, at, tuple(a + hd // 2 for a in at)


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
    to ``tensor`` (an :class:`~.model_build.ActTensor`) in equal pieces, piece p at feature
    ``at_lo[p]`` / ``at_hi[p]`` (:meth:`RopeLayout.pairs`); the blocks' frequencies start at
    ``freq`` (a head's ``lo`` block index x ``cols``)."""

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
                w = c // len(at)
                for k, feature in enumerate(at):
                    b.store_act(o + k * w, p.tensor, i, feature, w)


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
