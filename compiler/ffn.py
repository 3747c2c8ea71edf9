"""Lowering a transformer FFN block ``Y = X + GELU(X W1^T) W2^T`` (INT8 activations, INT4 weights).

Two Linear layers (:func:`~.linear.emit_linear`) in one program, sharing the scratchpad buffers:

1. ``H = X W1^T`` requantized to int8 at the calibrated scale ``s_h`` and passed through VEC GELU
   (table :func:`~mixpim.models.vector.gelu_lut` from ``s_h`` to ``s_g``); stored to DRAM in the
   K-major ACT layout the second layer loads;
2. ``Y = X + G W2^T``: the accumulators are requantized to the output's scale and added to the
   residual X by VEC ADD (in place on the loaded residual words), saturated to int8: the ADD is
   also the final REQUANT.

Scales (calibrated on the given activations unless given):

* ``x_scale`` (M,): layer 1's input, **per token** (``max |x_i| / 127``), folded into VEC token
  multipliers;
* ``out_scale`` (M,): the residual stream after the block, per token, covering both ``x_i`` and
  the float block output ``y_i`` (else the ADD saturates). The ADD adds int8 residual words
  unscaled, so the residual enters the program a second time, quantized at ``out_scale`` (DRAM
  region ``x_res``; shared with ``x`` when both scales agree). A token whose FFN output dwarfs its
  input (MiniLM's [CLS]: |y| up to 105, |x| below 6.4) would otherwise feed layer 1 with 7 levels;
* ``s_h``, ``s_g`` (per tensor: one GELU table): ``max |H|`` and ``max |GELU(H)|``, not a
  percentile: on MiniLM the few largest ``H`` carry the largest outputs, and clipping them costs
  far more than the coarser steps (docs/compiler.md, "FFN block").

Biases are not applied (the ISA has no bias add yet).
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.isa import VecFunc
from mixpim.models.program import Segment
from mixpim.models.quant import num_groups
from mixpim.models.tile_array import quantize_for, tile_gemm
from mixpim.models.vector import (column_multipliers, gelu, gelu_lut, pack_vparam, token_multipliers,
                                  vec_apply, vparam_header)

from .dram_alloc import DramAllocator
from .emit import CompileError, Emitter
from .layout import LinearLayout
from .linear import FRAC_BITS, emit_linear
from .operands import act_blocks, weight_blocks
from .plan import max_chunk_groups

__all__ = ["CompiledFfn", "lower_ffn", "compile_ffn", "ffn_reference"]


def ffn_reference(x, w1, w2):
    """The float32 FFN without biases: ``x + gelu(x w1^T) w2^T``."""
    x = np.asarray(x, np.float32)
    h = x @ np.asarray(w1, np.float32).T
    return x + gelu(h).astype(np.float32) @ np.asarray(w2, np.float32).T


@dataclass
class CompiledFfn:
    """A compiled FFN block.

    Members
    -------
    program : Program
    layouts : (LinearLayout, LinearLayout)
        Layer 1 (``X -> H``) and layer 2 (``H -> Y``).
    act : int8 array (M, d)
        Layer 1's input as stored in DRAM (symbol ``x``), at ``x_scale``.
    x_scale : float64 array (M,)
        Per-token scales of ``act``.
    res : int8 array (M, d)
        The residual as stored in DRAM (symbol ``x_res``), at ``out_scale``.
    out_scale : float64 array (M,)
        Per-token scales of ``res`` and of the int8 output.
    qw1, qw2 : QuantizedWeights
    extra : dict
        ``s_h``, ``s_g``, ``lut`` and the VEC multipliers of both layers (``mult1``, ``shift1``,
        ``tmult1``, ``tshift1``, ``mult2`` ...).
    """

    program: object
    layouts: tuple
    act: np.ndarray
    x_scale: np.ndarray
    res: np.ndarray
    out_scale: np.ndarray
    qw1: object
    qw2: object
    extra: dict = field(default_factory=dict)

    def output(self, result):
        """The int8 output (M, d) read from an executor result (at :attr:`out_scale`)."""
        return self.layouts[1].output(result)

    def dequantize(self, y):
        """Float64 values (M, d) of int8 outputs ``y`` (M, d): ``y * out_scale[:, None]``."""
        y = np.asarray(y)
        if y.shape != self.res.shape:
            raise ShapeError(f"outputs must have shape {self.res.shape}, not {y.shape}")
        return y.astype(np.float64) * self.out_scale[:, None]

    def reference(self):
        """The bit-exact expected int8 output (the array's golden GEMM + ``vec_apply``, no tile)."""
        cfg = self.layouts[0].config
        e = self.extra
        a1 = tile_gemm(cfg, self.act, self.qw1).acc
        g = vec_apply(VecFunc.GELU, a1, e["mult1"], e["shift1"], e["tmult1"], e["tshift1"], lut=e["lut"])
        a2 = tile_gemm(cfg, g.astype(np.int8), self.qw2).acc
        return vec_apply(VecFunc.ADD, a2, e["mult2"], e["shift2"], e["tmult2"], e["tshift2"],
                         residual=self.res)


def _token_scales(name, value, m):
    """``value`` (a float or (M,) floats) as a positive float64 array (M,)."""
    s = np.asarray(value, np.float64)
    if s.ndim == 0:
        s = np.full(m, float(s))
    if s.shape != (m,):
        raise ShapeError(f"{name} must be a float or have shape ({m},), not {s.shape}")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise RangeError(f"{name} must be positive and finite")
    return s


def _calibrated(top):
    """Per-token scales ``top / 127``, at least ``max / 2**10`` (1 where all are 0): bounds the
    ratio the token multipliers carry, so the column multipliers stay in range."""
    s = np.asarray(top, np.float64) / 127
    hi = float(s.max())
    return np.maximum(s, hi * 2.0 ** -10) if hi > 0 else np.ones_like(s)


def _quantize(x, scales):
    return np.clip(np.rint(x / scales[:, None]), -127, 127).astype(np.int8)


def lower_ffn(config, x, w1, w2, *, x_scale=None, out_scale=None, h_scale=None):
    """Compile the FFN block ``x + gelu(x w1^T) w2^T``; returns a :class:`CompiledFfn`.

    Arguments
    ---------
    config : TileConfig
        An INT8-activation configuration.
    x : float array (M, d)
        The activations; every scale not given is calibrated on them.
    w1, w2 : float arrays (f, d) and (d, f)
        Quantized here with the configuration's ``wbits``, ``group`` and ``scale_bits``
        (:func:`~mixpim.models.tile_array.quantize_for`: the BitMoD mixture on BitMoD tiles).
    x_scale : float or array (M,), optional
        Scale of layer 1's int8 input; default per token ``max |x_i| / 127``.
    out_scale : float or array (M,), optional
        Scale of the residual and the int8 output; default per token ``max(|x_i|, |y_i|) / 127``
        over the float block outputs ``y`` (with the float and with the quantized weights).
    h_scale : float, optional
        Scale of ``H = X W1^T`` (the GELU table's input); default ``max |H| / 127``. A smaller
        scale clips the largest ``H`` (for experiments: on MiniLM clipping loses accuracy).

    Raises
    ------
    CompileError
        A float configuration, or a layer that does not fit (see :func:`~.linear.lower_linear`).
    ShapeError, RangeError
        Inconsistent shapes; scales not positive.
    """
    cfg = config
    if cfg.act_format != "int8":
        raise CompileError("the FFN block needs an INT8-activation configuration")
    x = np.asarray(x, np.float64)
    w1 = np.asarray(w1, np.float64)
    w2 = np.asarray(w2, np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ShapeError(f"activations must be a non-empty (M, d) array, not shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise RangeError("activations contain inf or NaN")
    m, d = x.shape
    f = w1.shape[0]
    if w1.shape != (f, d) or w2.shape != (d, f):
        raise ShapeError(f"FFN weights must be (f, {d}) and ({d}, f), not {w1.shape} and {w2.shape}")
    for kk in (d, f):
        if num_groups(kk, cfg.group) > 1 << cfg.acc_headroom:
            raise CompileError(f"K={kk} is beyond the accumulator headroom of 2**{cfg.acc_headroom} groups")
    r, c = cfg.rows, cfg.cols
    if cfg.vparam_words < cfg.vparam_param_base + 2 * c:
        raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot double-buffer the column "
                           f"multipliers ({cfg.vparam_param_base} + 2 x {c} words)")
    qw1, qw2 = quantize_for(cfg, w1), quantize_for(cfg, w2)  # BitMoD tiles: the tile's mixture
    wq1, wq2 = qw1.dequantize(), qw2.dequantize()

    # -- calibration (float, on these activations) ----------------------------------------------
    if x_scale is None:
        x_scale = _calibrated(np.abs(x).max(axis=1))
    s_in = _token_scales("x_scale", x_scale, m)
    act = _quantize(x, s_in)
    h = (act * s_in[:, None]) @ wq1.T  # what layer 1 computes, before requantization
    if out_scale is None:  # cover the input and the block's output, with either weights
        y_float = ffn_reference(x, w1, w2).astype(np.float64)
        y_quant = act * s_in[:, None] + gelu(h) @ wq2.T
        top = np.maximum(np.abs(x).max(axis=1), np.abs(y_float).max(axis=1))
        out_scale = _calibrated(np.maximum(top, np.abs(y_quant).max(axis=1)))
    s_out = _token_scales("out_scale", out_scale, m)
    res = _quantize(x, s_out)
    if h_scale is None:
        s_h = float(np.abs(h).max() / 127) or 1.0
    elif np.ndim(h_scale) or not (np.isfinite(h_scale) and h_scale > 0):
        raise RangeError(f"h_scale must be one positive float, not {h_scale!r}")
    else:
        s_h = float(h_scale)
    s_g = float(np.abs(gelu(np.clip(h, -128 * s_h, 127 * s_h))).max() / 127) or 1.0
    lut = gelu_lut(s_h, s_g)
    # layer 1: acc * 2^-e * s_in[i] -> units of s_h; the token multiplier carries s_in[i] / max s_in
    ref1 = float(s_in.max())
    mult1, shift1 = column_multipliers(qw1.scales.exp, ref1, s_h, frac_bits=FRAC_BITS)
    tmult1, tshift1 = token_multipliers(s_in, ref_scale=ref1, frac_bits=FRAC_BITS)
    # layer 2: acc * 2^-e * s_g -> units of s_out[i]; the token multiplier is min s_out / s_out[i]
    ref2 = float(s_out.min())
    mult2, shift2 = column_multipliers(qw2.scales.exp, s_g, ref2, frac_bits=FRAC_BITS)
    tmult2, tshift2 = token_multipliers(1 / s_out, ref_scale=1 / ref2, frac_bits=FRAC_BITS)

    # -- DRAM placement --------------------------------------------------------------------------
    mb = -(-m // r)
    nb1, nb2 = -(-f // c), -(-d // c)
    kw1, kw2 = qw1.ngroups * cfg.group, qw2.ngroups * cfg.group
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
    shared = np.array_equal(s_in, s_out)
    res_base = x_base if shared else put("x_res", b"".join(act_blocks(cfg, res, x_words)), ab)
    lays = []
    layers = ((qw1, nb1, mult1, shift1, tmult1, tshift1), (qw2, nb2, mult2, shift2, tmult2, tshift2))
    for li, (qw, nb, mult, shift, tmult, tshift) in enumerate(layers, 1):
        wgt, meta = weight_blocks(cfg, qw)
        w = put(f"w{li}", b"".join(wgt), cfg.wgt_word_bytes)
        mt = put(f"meta{li}", b"".join(meta), cfg.meta_word_bytes)
        mp, sp = np.zeros(nb * c, np.int64), np.zeros(nb * c, np.int64)
        n = qw.codes.shape[0]
        mp[:n], sp[:n] = mult, shift
        params = put(f"params{li}", pack_vparam(mp, sp), cfg.vparam_word_bytes)
        # VPARAM words 0 .. 64 + rows - 1 per token block: the table, then its token multipliers
        tm, ts = np.ones(mb * r, np.int64), np.zeros(mb * r, np.int64)
        tm[:m], ts[:m] = tmult, tshift
        hdr = b"".join(vparam_header(cfg, lut=lut, tmult=tm[i * r:(i + 1) * r], tshift=ts[i * r:(i + 1) * r])
                       for i in range(mb))
        token_mults = put(f"token_mults{li}", hdr, cfg.vparam_word_bytes)
        g = qw.ngroups
        gc = max_chunk_groups(cfg, g, 2 * c)
        lays.append(LinearLayout(cfg, m, n, qw.codes.shape[1], mb, nb, g, gc, "act", "int8",
                                 0, w, mt, 0, params=params, token_mults=token_mults))
    lay1, lay2 = lays
    lay1.x, lay1.x_block_words = x_base, x_words
    lay1.y_block_words = h_words
    lay1.y = dram.alloc("h", mb * h_words * ab, ab)
    lay2.x, lay2.x_block_words = lay1.y, h_words
    lay2.res, lay2.res_block_words = res_base, x_words
    lay2.y_block_words = x_words
    lay2.y = dram.alloc("y", mb * x_words * ab, ab)

    em = Emitter(cfg)
    emit_linear(em, lay1, per_token=True, vec_func=VecFunc.GELU)
    emit_linear(em, lay2, per_token=True, vec_func=VecFunc.ADD)
    prog = em.program(segs, symbols=dram.symbols)
    extra = {"s_h": s_h, "s_g": s_g, "lut": lut, "mult1": mult1, "shift1": shift1, "tmult1": tmult1,
             "tshift1": tshift1, "mult2": mult2, "shift2": shift2, "tmult2": tmult2, "tshift2": tshift2}
    return CompiledFfn(prog, (lay1, lay2), act, s_in, res, s_out, qw1, qw2, extra)


def compile_ffn(config, x, w1, w2, **scales):
    """The :class:`~mixpim.models.program.Program` of the FFN block (see :func:`lower_ffn` for
    ``x_scale``, ``out_scale`` and ``h_scale``)."""
    return lower_ffn(config, x, w1, w2, **scales).program
