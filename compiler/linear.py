"""Lowering a quantized Linear layer ``Y = X W^T`` to a tile :class:`~mixpim.models.program.Program`:
the entry points :func:`lower_linear`, :func:`compile_linear`, :func:`schedule_linear` and
:func:`emit_linear`.

``X`` is M tokens x K activations (INT8, or FP16 on W4A16 configurations), ``W`` is N x K weights
quantized group-wise (:func:`mixpim.models.quant.quantize_weights`). Any M, N, K: the operands are
padded to whole array tiles and whole groups (padded weights use the group's zero point, padded
activations are 0). Passes (docs/compiler.md), each in its own module:

1. **plan** (:mod:`.plan`, :mod:`.tune`): output tiles of ``rows x cols`` (token block i, feature
   block j) are grouped into blocks of ``bm x bn`` tiles; K is cut into chunks of ``gc`` groups
   that accumulate in ACC; the loop order keeps the activations (``"act"``) or the weights
   (``"wgt"``) of a block resident while the other operand streams. A cost model of the DMA and
   the array ranks every plan whose buffers fit; the best few are then scheduled and run on the
   (exact) cycle model and the fastest is kept (``tune``);
2. **place** (here, :mod:`.dram_alloc`, :mod:`.operands`): DRAM regions for X (K-major ACT
   blocks), W (K-major nibble-packed WGT blocks), META, column multipliers and Y, each starting on
   its own DRAM bank;
3. **schedule and emit** (:mod:`.steps`, :mod:`.rings`, :mod:`.schedule`): operands move in
   *pieces* (one strided LOAD for all the token blocks, or all the feature blocks, of a block and
   K chunk) into ring buffers in the scratchpads, freed after their last GEMM; the first block's
   first chunk runs K-outer in segments of 1, 1, 2, 4 ... groups, so the array starts after one
   group's operands; outputs (STORE of accumulators, or VEC then one STORE per token block and
   feature-block group) trail the GEMMs. A list scheduler with an estimated timeline (durations
   from the timing models) merges the units' streams into program order by start time, the DMA
   taking the most urgent transfer first. Tokens come from :class:`~mixpim.compiler.emit.Emitter`.

Outputs: ``out="acc"`` stores the raw accumulators (row-major, N padded to whole feature blocks);
``out="int8"`` requantizes them through VEC REQUANT (per-tensor or per-token input scales) and
stores the int8 results in the K-major ACT layout, ready to be the next layer's input.
:func:`schedule_linear` builds the same instruction stream from the shape alone (no operands, no
memory image), for timing-only runs of full-size layers.
"""

import numpy as np

from mixpim.models.config import TileConfig
from mixpim.models.errors import ShapeError
from mixpim.models.isa import VecFunc
from mixpim.models.bitmod import BitmodWeights
from mixpim.models.bitmod_gemm import array_selectors
from mixpim.models.mixpe import check_weights
from mixpim.models.program import Segment
from mixpim.models.quant import QuantizedWeights, num_groups
from mixpim.models.tile_array import array_params
from mixpim.models.vector import column_multipliers, pack_vparam, token_multipliers, vparam_header

from .dram_alloc import DramAllocator
from .emit import CompileError, Emitter
from .layout import CompiledLinear, LinearLayout
from .operands import act_blocks, kw_next, weight_blocks
from .plan import LinearPlan, choose_order, plan_linear
from .schedule import Schedule
from .tune import TUNE_BUDGET, TUNE_PLANS, choose_plan

__all__ = ["FRAC_BITS", "emit_linear", "lower_linear", "schedule_linear", "compile_linear",
           # defined in the pass modules, importable from here as before the split
           "CompileError", "LinearPlan", "LinearLayout", "CompiledLinear", "choose_order",
           "plan_linear", "DramAllocator", "act_blocks", "weight_blocks", "TUNE_PLANS", "TUNE_BUDGET"]

#: Fraction bits kept between the column and the token multiplier (per-token scales).
FRAC_BITS = 8


def emit_linear(em, lay, *, per_token=False, act_base=0, vec_func=VecFunc.REQUANT, tune=True):
    """Emit the instruction stream of one layer into ``em`` (module doc, pass 3). ``lay.plan``
    None: planned here (:func:`~.tune.choose_plan`: the cost model, then with ``tune`` the cycle
    model) and stored in ``lay`` (with ``order`` and ``chunk_groups``). ``act_base``: ACT words
    below it are left alone. ``per_token``: VPARAM words 64 .. 64 + rows - 1 are reloaded per
    token block from ``lay.token_mults`` (blocks of ``64 + rows`` words; the first block's GELU table,
    words 0 .. 63, is loaded once and must be the same in every block)."""
    if lay.plan is None:
        lay.plan = choose_plan(lay, per_token, act_base, vec_func, tune=tune)
        lay.order, lay.chunk_groups = lay.plan.outer, lay.plan.gc
    Schedule(em, lay, lay.plan, per_token, act_base, vec_func).run()
    return em


def _activations(cfg, x_or_shape, k, seed):
    """The activations (M, K): ``x_or_shape`` itself, or random ones of that shape (``seed``)."""
    if isinstance(x_or_shape, tuple):
        if len(x_or_shape) != 2 or x_or_shape[1] != k or x_or_shape[0] < 1:
            raise ShapeError(f"activation shape must be (M, {k}) with M >= 1, not {x_or_shape}")
        rng = np.random.default_rng(seed)
        if cfg.act_format == "int8":
            return rng.integers(-128, 128, size=x_or_shape).astype(np.int8)
        return (rng.normal(size=x_or_shape) * 4).astype(np.float16)
    act = np.asarray(x_or_shape)
    if act.ndim != 2 or act.shape[1] != k or act.shape[0] < 1:
        raise ShapeError(f"activations must have shape (M, {k}) with M >= 1 (weights have K={k}), "
                         f"not {act.shape}")
    return act


def _check_layer(cfg, m, n, k, out, order):
    """Raise :class:`CompileError` for a layer no plan can handle (before planning)."""
    if not isinstance(cfg, TileConfig):
        raise CompileError(f"config must be a TileConfig, not {type(cfg).__name__}")
    g = num_groups(k, cfg.group)
    if g > 1 << cfg.acc_headroom:
        raise CompileError(f"K={k} is {g} groups of {cfg.group}, beyond the accumulator headroom of "
                           f"2**{cfg.acc_headroom} = {1 << cfg.acc_headroom} groups "
                           f"(K <= {cfg.group << cfg.acc_headroom}); split K or raise acc_headroom")
    if out not in ("acc", "int8"):
        raise CompileError(f"out must be 'acc' or 'int8', not {out!r}")
    if out == "int8" and cfg.act_format != "int8":
        raise CompileError("out='int8' needs an INT8-activation configuration")
    if 2 * cfg.rows > cfg.acc_words:
        raise CompileError(f"acc_words ({cfg.acc_words}) cannot double-buffer two {cfg.rows}-row tiles")
    if order not in ("auto", "act", "wgt"):
        raise CompileError(f"order must be 'auto', 'act' or 'wgt', not {order!r}")
    if out == "int8" and cfg.vparam_words < cfg.vparam_param_base + 2 * cfg.cols:
        raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot double-buffer the column "
                           f"multipliers ({cfg.vparam_param_base} + 2 x {cfg.cols} words)")


def _check_options(cfg, m, n, k, chunk_groups, block):
    """Raise :class:`CompileError` for pinned ``chunk_groups`` / ``block`` out of range."""
    g = num_groups(k, cfg.group)
    if chunk_groups is not None:
        gc = chunk_groups
        if isinstance(gc, bool) or not isinstance(gc, (int, np.integer)) or not 1 <= gc <= g:
            raise CompileError(f"chunk_groups={chunk_groups} must be an integer in 1..{g}")
    if block is not None:
        mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
        if (len(block) != 2 or not 1 <= block[0] <= mb or not 1 <= block[1] <= nb):
            raise CompileError(f"block={block} must be (bm, bn) with 1 <= bm <= {mb}, 1 <= bn <= {nb}")


def _layout(cfg, m, n, k, out, per_token, dram):
    """Allocate the DRAM regions of a layer (x, w, meta, [params, token_mults], y): its LinearLayout."""
    r, c = cfg.rows, cfg.cols
    g = num_groups(k, cfg.group)
    kw = g * cfg.group
    mb, nb = -(-m // r), -(-n // c)
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    x = dram.alloc("x", mb * kw * ab, ab)
    w = dram.alloc("w", nb * kw * wb, wb)
    meta = dram.alloc("meta", nb * g * mbb, mbb)
    lay = LinearLayout(cfg, m, n, k, mb, nb, g, 0, "", out, x, w, meta, 0)
    if out == "acc":
        lay.y = dram.alloc("y", m * nb * cfg.acc_word_bytes, cfg.acc_word_bytes)
    else:
        vb = cfg.vparam_word_bytes
        lay.params = dram.alloc("params", nb * c * vb, vb)
        lay.token_mults = dram.alloc("token_mults", (mb if per_token else 1) * cfg.vparam_param_base * vb, vb)
        lay.y_block_words = max(nb * c, kw_next(cfg, n))
        lay.y = dram.alloc("y", mb * lay.y_block_words * ab, ab)
    return lay


def _plan_layout(lay, per_token, tune, order, chunk_groups, block):
    """Choose the plan of the placed layer ``lay`` (:func:`~.tune.choose_plan`) and record it."""
    try:
        lay.plan = choose_plan(lay, per_token, 0, VecFunc.REQUANT, tune=tune, order=order,
                               chunk_groups=chunk_groups, block=block)
    except CompileError:
        if chunk_groups is not None or block is not None:
            raise CompileError(f"chunk_groups={chunk_groups}, block={block} do not double-buffer in "
                               f"the scratchpads") from None
        raise
    lay.order, lay.chunk_groups = lay.plan.outer, lay.plan.gc


def lower_linear(config, x_or_shape, qw, *, seed=None, out="acc", x_scale=None, out_scale=None,
                 order="auto", chunk_groups=None, block=None, tune=True):
    """Compile ``Y = X W^T``; returns a :class:`CompiledLinear`.

    Arguments
    ---------
    config : TileConfig
    x_or_shape : array (M, K) or tuple (M, K)
        The activations (int8, or float16 on FP16 configurations), or their shape: then random
        activations drawn with ``seed``.
    qw : QuantizedWeights, or BitmodWeights on BitMoD tiles
        (N, K), quantized with the array's group size, ``wbits`` and ``scale_bits``; BitMoD
        weights with types of the tile's mixture (``TileConfig.weight_types``, e.g.
        :func:`~mixpim.models.bitmod.quantize_bitmod` with the tile's ``wbits``).
    out : ``"acc"`` or ``"int8"``
        Store the accumulators, or requantize through VEC REQUANT (INT8 configurations only).
    x_scale : float or array (M,)
        ``out="int8"``: the activations' per-tensor or per-token scale (default 1).
    out_scale : float
        ``out="int8"``: the output's scale; default calibrated as ``max |Y| / 127`` of the float
        product on these activations.
    order : ``"auto"``, ``"act"`` or ``"wgt"``
        The resident operand (:class:`LinearPlan`); default chosen by :func:`plan_linear`.
    chunk_groups : int, optional
        Groups per K chunk; default chosen by :func:`plan_linear`.
    block : (int, int), optional
        Token blocks x feature blocks per block of tiles; default chosen by :func:`plan_linear`.
    tune : bool
        Refine the cost model's choice of the unpinned plan parameters on the cycle model: the
        best ``TUNE_PLANS`` plans (within ``TUNE_BUDGET`` estimated instructions) are scheduled
        and simulated, the fastest is kept (deterministic; ``False``: the cost model's first).

    Raises
    ------
    CompileError
        The layer does not fit: K beyond the accumulator headroom, scratchpads too small for one
        double-buffered group, DRAM too small.
    ShapeError, RangeError
        Operands inconsistent with each other or the array.
    """
    cfg = config
    kind = BitmodWeights if getattr(cfg, "family", None) == "bitmod" else QuantizedWeights
    if not isinstance(qw, kind):
        raise CompileError(f"weights must be {kind.__name__} on a {getattr(cfg, 'pe', '?')} tile, "
                           f"not {type(qw).__name__}")
    n, k = qw.codes.shape
    _check_layer(cfg, 1, n, k, out, order)
    params = array_params(cfg)
    if kind is BitmodWeights:
        array_selectors(params, qw)  # the checks of bitmod_gemm
    else:
        check_weights(params, qw)
    act = _activations(cfg, x_or_shape, k, seed)
    m = act.shape[0]
    per_token = out == "int8" and np.ndim(x_scale) == 1
    _check_options(cfg, m, n, k, chunk_groups, block)

    # -- requantization parameters ---------------------------------------------------------------
    extra = {}
    if out == "int8":
        xs = np.broadcast_to(np.asarray(1.0 if x_scale is None else x_scale, np.float64), (m,))
        if out_scale is None:
            ref = (act.astype(np.float64) * xs[:, None]) @ qw.dequantize().T
            out_scale = float(np.abs(ref).max() / 127) or 1.0
        if per_token:
            ref_scale = float(np.abs(xs).max())
            mult, shift = column_multipliers(qw.scales.exp, ref_scale, out_scale, frac_bits=FRAC_BITS)
            tmult, tshift = token_multipliers(xs, ref_scale=ref_scale, frac_bits=FRAC_BITS)
        else:
            mult, shift = column_multipliers(qw.scales.exp, float(xs[0]), out_scale)
            tmult, tshift = np.ones(m, np.int64), np.zeros(m, np.int64)
        extra = {"mult": mult, "shift": shift, "tmult": tmult, "tshift": tshift, "out_scale": out_scale,
                 "x_scale": xs}

    # -- DRAM placement and memory image ---------------------------------------------------------
    r, c = cfg.rows, cfg.cols
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    dram = DramAllocator(cfg)
    lay = _layout(cfg, m, n, k, out, per_token, dram)
    _plan_layout(lay, per_token, tune, order, chunk_groups, block)
    g, kw, mb, nb = lay.groups, lay.groups * cfg.group, lay.mb, lay.nb
    a_blocks = act_blocks(cfg, act, kw)
    w_blocks, m_blocks = weight_blocks(cfg, qw)
    segs = [Segment("dram", lay.x + i * kw * ab, d) for i, d in enumerate(a_blocks)]
    segs += [Segment("dram", lay.w + j * kw * wb, d) for j, d in enumerate(w_blocks)]
    segs += [Segment("dram", lay.meta + j * g * mbb, d) for j, d in enumerate(m_blocks)]
    if out == "int8":
        mp = np.zeros(nb * c, np.int64)
        sp = np.zeros(nb * c, np.int64)
        mp[:n], sp[:n] = extra["mult"], extra["shift"]
        segs.append(Segment("dram", lay.params, pack_vparam(mp, sp)))
        # VPARAM words 0 .. 64 + rows - 1 (GELU table unused, token multipliers): one block per
        # token block when the scales are per token, else loaded once
        tm = np.ones(mb * r, np.int64)
        ts = np.zeros(mb * r, np.int64)
        tm[:m], ts[:m] = extra["tmult"], extra["tshift"]
        hdr = b"".join(vparam_header(cfg, tmult=tm[i * r:(i + 1) * r], tshift=ts[i * r:(i + 1) * r])
                       for i in range(mb if per_token else 1))
        segs.append(Segment("dram", lay.token_mults, hdr))

    em = Emitter(cfg)
    emit_linear(em, lay, per_token=per_token)
    prog = em.program(segs, symbols=dram.symbols)
    return CompiledLinear(prog, lay, act, qw, extra)


def schedule_linear(config, m, n, k, *, out="acc", per_token=False, order="auto", chunk_groups=None,
                    block=None, tune=True):
    """The instruction stream of an ``M x N x K`` Linear layer without operands: a
    :class:`~mixpim.models.program.Program` with the same instructions and symbols as
    :func:`compile_linear` of that shape (same options; ``per_token`` as with an (M,) ``x_scale``)
    but no memory image, for timing-only runs (``execute(program, timing_only=True)``) of layers
    too large to build operands for. (Instructions do not depend on operand values.)"""
    cfg = config
    for name, v in (("m", m), ("n", n), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ShapeError(f"{name} must be a positive integer, not {v!r}")
    _check_layer(cfg, m, n, k, out, order)
    per_token = bool(per_token) and out == "int8"
    _check_options(cfg, m, n, k, chunk_groups, block)
    dram = DramAllocator(cfg)
    lay = _layout(cfg, m, n, k, out, per_token, dram)
    _plan_layout(lay, per_token, tune, order, chunk_groups, block)
    em = Emitter(cfg)
    emit_linear(em, lay, per_token=per_token)
    return em.program((), symbols=dram.symbols)


def compile_linear(config, x_or_shape, qw, *, seed=None, **options):
    """The :class:`~mixpim.models.program.Program` of ``Y = X W^T`` (see :func:`lower_linear` for
    the options and :attr:`Program.symbols` for where ``x``, ``w``, ``meta`` and ``y`` are)."""
    return lower_linear(config, x_or_shape, qw, seed=seed, **options).program
