"""Lowering a transformer FFN block ``Y = X + GELU(X W1^T) W2^T`` (INT8 activations, INT4 weights).

Two Linear layers (:mod:`.linear`) in one program, sharing the scratchpad buffers:

1. ``H = X W1^T`` requantized to int8 at the calibrated scale ``s_h`` and passed through VEC GELU
   (table :func:`~mixpim.models.vector.gelu_lut` from ``s_h`` to ``s_g``); stored to DRAM in the
   K-major ACT layout the second layer loads;
2. ``Y = X + G W2^T``: the accumulators are requantized to the residual's scale ``s_x`` and added
   to the residual X by VEC ADD (in place on the loaded residual words), saturated to int8: the ADD
   is also the final REQUANT (the output keeps the input's scale, as a residual stream does).

Biases are not applied (the ISA has no bias add yet). Scales are per tensor, calibrated on the
given activations: ``s_x`` (input and output: the residual stream) covers both ``X`` and the
float FFN output (else the ADD saturates), ``s_h`` the product ``X W1^T``, ``s_g`` its GELU.
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.errors import ShapeError
from mixpim.models.isa import VecFunc
from mixpim.models.mixpe import ArrayParams, mixpe_gemm
from mixpim.models.program import Segment
from mixpim.models.quant import num_groups, quantize_weights
from mixpim.models.vector import (column_multipliers, gelu, gelu_lut, pack_vparam, vec_apply,
                                  vparam_header)

from .emit import Emitter
from .linear import (CompileError, DramAllocator, LinearLayout, _chunk_groups, act_blocks, emit_linear,
                     weight_blocks)

__all__ = ["CompiledFfn", "lower_ffn", "compile_ffn", "ffn_reference"]


def ffn_reference(x, w1, w2):
    """The float32 FFN without biases: ``x + gelu(x w1^T) w2^T``."""
    x = np.asarray(x, np.float32)
    h = x @ np.asarray(w1, np.float32).T
    return x + gelu(h).astype(np.float32) @ np.asarray(w2, np.float32).T


@dataclass
class CompiledFfn:
    """The program, both layers' layouts, the int8 input ``act`` and its scale ``x_scale``, the
    quantized weights and the calibrated scales (``s_h``, ``s_g``), multipliers and table."""

    program: object
    layouts: tuple
    act: np.ndarray
    x_scale: float
    qw1: object
    qw2: object
    extra: dict = field(default_factory=dict)

    def output(self, result):
        """The int8 output (M, d_model) read from an executor result."""
        return self.layouts[1].output(result)

    def reference(self):
        """The bit-exact expected int8 output (``mixpe_gemm`` + ``vec_apply``, no tile)."""
        cfg = self.layouts[0].config
        p = ArrayParams.from_config(cfg)
        e = self.extra
        m = self.act.shape[0]
        one, zero = np.ones(m, np.int64), np.zeros(m, np.int64)
        a1 = mixpe_gemm(p, self.act, self.qw1).acc
        g = vec_apply(VecFunc.GELU, a1, e["mult1"], e["shift1"], one, zero, lut=e["lut"])
        a2 = mixpe_gemm(p, g.astype(np.int8), self.qw2).acc
        return vec_apply(VecFunc.ADD, a2, e["mult2"], e["shift2"], one, zero, residual=self.act)


def lower_ffn(config, x, w1, w2, *, x_scale=None):
    """Compile the FFN block for float activations ``x`` (M, d) and float weights ``w1`` (f, d),
    ``w2`` (d, f); returns a :class:`CompiledFfn`. Scales are calibrated on ``x``."""
    cfg = config
    if cfg.act != "int8":
        raise CompileError("the FFN block needs an INT8-activation configuration")
    x = np.asarray(x, np.float64)
    w1 = np.asarray(w1, np.float64)
    w2 = np.asarray(w2, np.float64)
    m, d = x.shape
    f = w1.shape[0]
    if w1.shape != (f, d) or w2.shape != (d, f):
        raise ShapeError(f"FFN weights must be (f, {d}) and ({d}, f), not {w1.shape} and {w2.shape}")
    for kk in (d, f):
        if num_groups(kk, cfg.group) > 1 << cfg.acc_headroom:
            raise CompileError(f"K={kk} is beyond the accumulator headroom of 2**{cfg.acc_headroom} groups")
    qw1 = quantize_weights(w1, cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    qw2 = quantize_weights(w2, cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    if x_scale is None:  # the residual stream's scale must cover the input and the output
        s_x = float(max(np.abs(x).max(), np.abs(ffn_reference(x, w1, w2)).max()) / 127) or 1.0
    else:
        s_x = float(x_scale)
    act = np.clip(np.rint(x / s_x), -127, 127).astype(np.int8)
    # calibration (float, on these activations)
    h = (act * s_x) @ qw1.dequantize().T
    s_h = float(np.abs(h).max() / 127) or 1.0
    s_g = float(np.abs(gelu(h)).max() / 127) or 1.0
    lut = gelu_lut(s_h, s_g)
    mult1, shift1 = column_multipliers(qw1.scales.exp, s_x, s_h)
    mult2, shift2 = column_multipliers(qw2.scales.exp, s_g, s_x)

    r, c = cfg.rows, cfg.cols
    mb = -(-m // r)
    nb1, nb2 = -(-f // c), -(-d // c)
    g1, g2 = qw1.ngroups, qw2.ngroups
    kw1, kw2 = g1 * cfg.group, g2 * cfg.group
    ab = cfg.act_word_bytes
    x_words = max(kw1, nb2 * c)  # X is layer 1's input and layer 2's residual
    h_words = max(kw2, nb1 * c)  # layer 1's output is layer 2's input
    dram = DramAllocator(cfg)
    segs = []

    def put(name, data, wb):
        base = dram.alloc(name, len(data), wb)
        segs.append(Segment("dram", base, data))
        return base

    x_base = put("x", b"".join(act_blocks(cfg, act, x_words)), ab)
    lays = []
    for li, (qw, nb, mult, shift) in enumerate(((qw1, nb1, mult1, shift1), (qw2, nb2, mult2, shift2)), 1):
        wgt, meta = weight_blocks(cfg, qw)
        w = put(f"w{li}", b"".join(wgt), cfg.wgt_word_bytes)
        mt = put(f"meta{li}", b"".join(meta), cfg.meta_word_bytes)
        mp, sp = np.zeros(nb * c, np.int64), np.zeros(nb * c, np.int64)
        n = qw.codes.shape[0]
        mp[:n], sp[:n] = mult, shift
        params = put(f"params{li}", pack_vparam(mp, sp), 4)
        hdr = put(f"header{li}", vparam_header(cfg, lut=lut if li == 1 else None), 4)
        g = qw.ngroups
        gc = _chunk_groups(cfg, g, 2 * c)
        lays.append(LinearLayout(cfg, m, n, qw.codes.shape[1], mb, nb, g, gc, "act", "int8",
                                 0, w, mt, 0, params=params, tokens=hdr))
    lay1, lay2 = lays
    lay1.x, lay1.x_block_words = x_base, x_words
    lay1.y_block_words = h_words
    lay1.y = dram.alloc("h", mb * h_words * ab, ab)
    lay2.x, lay2.x_block_words = lay1.y, h_words
    lay2.res, lay2.res_block_words = x_base, x_words
    lay2.y_block_words = x_words
    lay2.y = dram.alloc("y", mb * x_words * ab, ab)

    em = Emitter(cfg)
    emit_linear(em, lay1, vec_func=VecFunc.GELU)
    emit_linear(em, lay2, vec_func=VecFunc.ADD)
    prog = em.program(segs, symbols=dram.symbols)
    extra = {"s_h": s_h, "s_g": s_g, "lut": lut, "mult1": mult1, "shift1": shift1, "mult2": mult2,
             "shift2": shift2}
    return CompiledFfn(prog, (lay1, lay2), act, s_x, qw1, qw2, extra)


def compile_ffn(config, x, w1, w2, *, x_scale=None):
    """The :class:`~mixpim.models.program.Program` of the FFN block (see :func:`lower_ffn`)."""
    return lower_ffn(config, x, w1, w2, x_scale=x_scale).program
