"""Prefill attention on the NPU: ``softmax(Q K^T) V`` of every head over a whole prompt, with
activation x activation GEMMs (``wsrc``) and the by-column softmax (docs/compiler.md, "Whole
models").

Inputs in DRAM (:mod:`.model_build` layouts): ``q`` (:class:`ActTensor`, FP16, each feature
already multiplied by its key channel's scale and ``1/sqrt(head_dim)``), ``k`` (:class:`ActTensor`,
INT8 values per channel, written as FP16 integers), ``v`` (:class:`DirectTensor`, INT8 per
channel). Per head, K is loaded once; per head and query block (``rows`` queries):

1. one ``wsrc`` GEMM per key block (``cols`` keys): the scores tile, ``rows`` ACC words, key
   blocks ``rows`` words apart (the by-column layout of VSOFT);
2. per valid query row: VSOFT MAX, EXP, NORM (``col`` 1, lane = the query's row, FP16
   probabilities): P lands transposed in ACT, one word per key with the queries as lanes;
3. per feature block of the head: a LOAD of its V (all keys), one ``wsrc`` GEMM ``P V``, then
   VEC REQUANT (FP16; the column multiplier folds in the value channel's scale) and a STORE
   into ``out``.

Limits (:class:`CompileError`): at most ``rows * cols`` tokens (VSOFT reads at most ``rows``
words of a row), ``head_dim`` a multiple of ``cols`` and of the group.
"""

import numpy as np

from mixpim.models.isa import ProbFormat, SoftFunc, Spad, VecFunc
from mixpim.models.softmax import exp_step
from mixpim.models.vector import fixed_multiplier, pack_vparam

from .emit import CompileError
from .model_build import Slots
from .model_kernels import param_blocks

__all__ = ["soft_words", "context_words", "prefill_attention"]

#: FP16 probabilities: NORM's ``e * R >> 9`` is ``p * 2**22``; the V multiplier takes it to
#: the vector unit's ``2**-16`` units.
_P_MULT = (1, 6)


def soft_words(m):
    """VPARAM image (bytes) of the softmax over ``m`` keys: the score multipliers (``2**-24``
    units to the exponent step) then the probability multipliers (FP16 output), ``m`` words each."""
    km, ks = fixed_multiplier(2.0 ** -24 / exp_step())
    return (pack_vparam(np.full(m, km), np.full(m, ks))
            + pack_vparam(np.full(m, _P_MULT[0]), np.full(m, _P_MULT[1])))


def context_words(cfg, v_scale):
    """VPARAM image (bytes) of the context's column multipliers, ``2 cols`` words per feature
    block (``v_scale`` of the channel, from ``2**-24`` to ``2**-16`` units; biases 0)."""
    mult, shift = fixed_multiplier(np.asarray(v_scale, np.float64) * 2.0 ** -8)
    return param_blocks(cfg, pack_vparam(mult, shift))


def _check(cfg, m, hd):
    if -(-m // cfg.cols) > cfg.rows:
        raise CompileError(f"prefill attention takes at most {cfg.rows * cfg.cols} tokens on a "
                           f"{cfg.rows}x{cfg.cols} array (a softmax row spans at most {cfg.rows} "
                           f"ACC words), not {m}")
    if hd % cfg.cols or hd % cfg.group:
        raise CompileError(f"head_dim {hd} must be a multiple of the array's cols ({cfg.cols}) "
                           f"and of the group ({cfg.group})")


def prefill_attention(b, reg, q, k, v, out, *, heads, head_dim, soft, ctx, kv_heads=None,
                      causal=False):
    """Emit attention (module doc) reading ``q``, ``k``, ``v`` and writing ``out``
    (:class:`ActTensor`); ``soft``, ``ctx``: DRAM addresses of the :func:`soft_words` and
    :func:`context_words` images (``ctx``: per query head). ``kv_heads`` (default ``heads``):
    query head h reads key/value head ``h // (heads / kv_heads)`` (grouped-query attention).
    ``causal``: query t sees keys 0 .. t only (a decoder's prompt): its softmax runs over ``t + 1``
    scores, the rest of its probabilities are 0. Operators (:meth:`~.model_build.ModelBuild.operator`):
    ``attn_score`` (Q K^T), ``softmax``; ``P V`` and the rest keep the caller's."""
    cfg = b.cfg
    r, c, g, ab = cfg.rows, cfg.cols, cfg.group, cfg.act_word_bytes
    m, hd = q.m, head_dim
    _check(cfg, m, hd)
    nkb = -(-m // c)
    mg = -(-m // g) * g
    pw = max(nkb * c, mg)
    fpb = hd // c
    # ACT: Q, K (all key blocks), P, two V slots (a feature block each), after the output slots
    qa = reg.act_out.end
    ka = qa + hd
    pa = ka + nkb * hd
    vslots = Slots(pa + pw, mg, 2)
    top = vslots.end
    if top > cfg.act_words:
        raise CompileError(f"act_words ({cfg.act_words}) cannot hold attention over {m} tokens "
                           f"(needs {top})")
    sa = reg.res_base  # scores: nkb tiles of r words
    ca = sa + nkb * r
    if ca + 2 * r > cfg.acc_words:
        raise CompileError(f"acc_words ({cfg.acc_words}) cannot hold the scores of {m} tokens")
    kp = reg.soft_base
    vp = kp + m
    if vp + m > cfg.vparam_words:
        raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot hold the softmax "
                           f"multipliers of {m} tokens")
    b.load(Spad.VPARAM, kp, soft, 2 * m, comment="score and probability multipliers")
    mb = -(-m // r)
    group = heads // (kv_heads or heads)
    for h in range(heads):
        kvh = h // group
        if causal or h == 0:  # a causal row leaves the lanes of later keys as an earlier head wrote them
            with b.operator("softmax"):
                b.load(Spad.ACT, pa, b.zeros(ab, pw), pw, comment="P: zeros")
        if h % group == 0:
            with b.operator("attn_score"):
                b.load(Spad.ACT, ka, k.addr(cfg, 0, kvh * hd), hd, rows=nkb, stride=k.kw * ab,
                       comment=f"K of KV head {kvh}")
        for qi in range(mb):
            ri = min(r, m - qi * r)
            keys = min(m, (qi + 1) * r) if causal else m  # keys any query of the block sees
            kbq, mgq = -(-keys // c), -(-keys // g) * g
            with b.operator("attn_score"):
                b.load(Spad.ACT, qa, q.addr(cfg, qi, h * hd), hd, comment=f"Q of head {h}, block {qi}")
                for kb in range(kbq):
                    b.op("GEMM", act_addr=qa, wgt_addr=ka + kb * hd, meta_addr=0, acc_addr=sa + kb * r,
                         groups=hd // g, wsrc=1, comment=f"scores, key block {kb}")
            with b.operator("softmax"):
                for t in range(ri):
                    n = qi * r + t + 1 if causal else m
                    common = dict(acc_addr=sa + t, words=-(-n // c), count=n, kparam=kp, col=1, lane=t)
                    b.op("VSOFT", func=SoftFunc.MAX, first=1, **common)
                    b.op("VSOFT", func=SoftFunc.EXP, first=1, **common)
                    b.op("VSOFT", func=SoftFunc.NORM, vparam=vp, act_addr=pa, pfmt=ProbFormat.FP16,
                         **common)
            for f in range(fpb):
                a = ca + (f % 2) * r
                va = vslots.take()
                b.load(Spad.ACT, va, v.addr(cfg, kvh * fpb + f), mgq,
                       comment=f"V of KV head {kvh}, block {f}")
                b.op("GEMM", act_addr=pa, wgt_addr=va, meta_addr=0, acc_addr=a,
                     groups=mgq // g, wsrc=1, comment=f"P V, feature block {f}")
                p = reg.vp_slots.take()
                b.load(Spad.VPARAM, p, ctx + (h * fpb + f) * 2 * c * 4, 2 * c)
                o = reg.act_out.take()
                b.op("VEC", func=VecFunc.REQUANT, acc_addr=a, act_addr=o, param_addr=p, rows=ri, fmt=1)
                b.store_act(o, out, qi, h * hd + f * c, c)
