"""Lowering a quantized Linear layer ``Y = X W^T`` to a tile :class:`~mixpim.models.program.Program`.

``X`` is M tokens x K activations (INT8, or FP16 on W4A16 configurations), ``W`` is N x K weights
quantized group-wise (:func:`mixpim.models.quant.quantize_weights`). Any M, N, K: the operands are
padded to whole array tiles and whole groups (padded weights use the group's zero point, padded
activations are 0). Passes (docs/compiler.md):

1. **tile**: output tiles of ``rows x cols`` (token block i, feature block j); K is split into
   chunks of ``chunk_groups`` groups when two buffers of a whole K do not fit the scratchpads
   (the chunks accumulate in ACC);
2. **place**: DRAM regions for X (K-major ACT blocks), W (K-major nibble-packed WGT blocks), META,
   column multipliers and Y, each starting on its own DRAM bank; scratchpad double buffers;
3. **schedule**: the loop order keeping one operand resident (see :func:`choose_order`),
   software-pipelined: the loads of step s + 1 are issued before the GEMM of step s;
4. **emit**: instructions with dependency tokens (:class:`~mixpim.compiler.emit.Emitter`).

Outputs: ``out="acc"`` stores the raw accumulators (row-major, N padded to whole feature blocks);
``out="int8"`` requantizes them through VEC REQUANT (per-tensor or per-token input scales) and
stores the int8 results in the K-major ACT layout, ready to be the next layer's input.
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.config import TileConfig
from mixpim.models.errors import MixpimError, ShapeError
from mixpim.models.executor import pack_act, pack_meta, pack_wgt, unpack_acc, unpack_act
from mixpim.models.isa import Spad, VecFunc
from mixpim.models.mixpe import ArrayParams, check_weights, mixpe_gemm
from mixpim.models.program import Segment
from mixpim.models.quant import QuantizedWeights, num_groups
from mixpim.models.vector import (column_multipliers, pack_vparam, token_multipliers, vparam_header)

from .emit import Emitter

__all__ = ["CompileError", "LinearLayout", "CompiledLinear", "choose_order", "lower_linear",
           "compile_linear", "DramAllocator", "act_blocks", "weight_blocks"]

#: Fraction bits kept between the column and the token multiplier (per-token scales).
FRAC_BITS = 8


class CompileError(MixpimError, ValueError):
    """A layer does not fit the tile configuration (the message says what and why)."""


# -- DRAM placement ----------------------------------------------------------------------------

class DramAllocator:
    """Bump allocator over DRAM: region r starts at the beginning of a DRAM row of bank
    ``r % banks`` (rounded up to the region's word size), so streams of different tensors that
    the DMA interleaves start on different banks; every region itself spans consecutive rows,
    which rotate over all banks."""

    def __init__(self, config):
        self.cfg = config
        self.top = 0
        self.count = 0
        self.symbols = {}

    def alloc(self, name, nbytes, word_bytes):
        cfg = self.cfg
        rb, banks = cfg.dram_row_bytes, cfg.dram_banks
        row = -(-self.top // rb)
        row += (self.count - row) % banks  # bank (row % banks) == count % banks
        base = row * rb
        base += -base % word_bytes
        end = base + nbytes
        if end > cfg.dram_bytes:
            raise CompileError(f"DRAM ({cfg.dram_bytes} bytes) is too small: {name} needs "
                               f"{nbytes} bytes at 0x{base:x}")
        self.top = end
        self.count += 1
        self.symbols[name] = base
        return base


# -- operand layouts ---------------------------------------------------------------------------

def act_blocks(cfg, act, kw):
    """Per token block the K-major ACT words (bytes) of ``act`` (M, K), padded to ``kw`` words."""
    m, k = act.shape
    mb = -(-m // cfg.rows)
    a = np.zeros((mb * cfg.rows, kw), act.dtype)
    a[:m, :k] = act
    return [pack_act(cfg, a[i * cfg.rows:(i + 1) * cfg.rows].T) for i in range(mb)]


def weight_blocks(cfg, qw):
    """Per feature block the K-major WGT words and the META words (bytes) of ``qw``; padded
    features have zero codes and zero points, padded K beats the group's zero point."""
    n, k = qw.codes.shape
    g = qw.ngroups
    kw = g * cfg.group
    c = cfg.cols
    nb = -(-n // c)
    codes = np.zeros((nb * c, kw), np.int64)
    codes[:n, :k] = qw.codes
    codes[:n, k:] = qw.zeros[:, -1:]
    zeros = np.zeros((nb * c, g), np.int64)
    zeros[:n] = qw.zeros
    scales = np.zeros((nb * c, g), np.int64)
    scales[:n] = qw.scales.mant
    wgt = [pack_wgt(cfg, codes[j * c:(j + 1) * c].T) for j in range(nb)]
    meta = [pack_meta(cfg, zeros[j * c:(j + 1) * c].T, scales[j * c:(j + 1) * c].T) for j in range(nb)]
    return wgt, meta


# -- tiling ------------------------------------------------------------------------------------

def _chunk_groups(cfg, groups, act_reserved):
    """Largest number of groups per K chunk whose two buffers fit ACT, WGT and META."""
    fit = min((cfg.act_words - act_reserved) // (2 * cfg.group), cfg.wgt_words // (2 * cfg.group),
              cfg.meta_words // 2)
    if fit < 1:
        raise CompileError(f"the scratchpads cannot double-buffer one group of {cfg.group} beats "
                           f"(act_words {cfg.act_words}, {act_reserved} of them reserved for outputs; "
                           f"wgt_words {cfg.wgt_words}; meta_words {cfg.meta_words})")
    return min(groups, fit)


def choose_order(cfg, m, n, k, chunks=1):
    """``"act"`` (token block outer: the activation block stays resident while the weights of every
    feature block stream past it) or ``"wgt"`` (feature block outer: the weight block stays
    resident while the activations stream), whichever moves fewer DRAM bytes. With K split into
    several chunks nothing stays resident, and the order only decides which operand is reloaded;
    the same byte count picks it."""
    g = num_groups(k, cfg.group)
    kw = g * cfg.group
    mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
    a_bytes = kw * cfg.act_word_bytes
    w_bytes = kw * cfg.wgt_word_bytes + g * cfg.meta_word_bytes
    reuse = chunks == 1
    act_outer = mb * (a_bytes + nb * w_bytes) if reuse else mb * nb * (a_bytes + w_bytes)
    wgt_outer = nb * (w_bytes + mb * a_bytes) if reuse else mb * nb * (a_bytes + w_bytes)
    return "act" if act_outer <= wgt_outer else "wgt"


@dataclass
class LinearLayout:
    """Where a compiled Linear layer lives. DRAM byte addresses ``x``, ``w``, ``meta``, ``params``
    (column multipliers, int8 output only), ``tokens`` (token multipliers, per-token scales only)
    and ``y``; the tiling (``mb`` x ``nb`` tiles, ``groups`` per K, ``chunk_groups`` per GEMM)."""

    config: TileConfig
    m: int
    n: int
    k: int
    mb: int
    nb: int
    groups: int
    chunk_groups: int
    order: str
    out: str
    x: int
    w: int
    meta: int
    y: int
    params: int = -1
    tokens: int = -1
    y_block_words: int = 0  # int8 output: ACT words per token block in DRAM
    x_block_words: int = 0  # ACT words per token block of X in DRAM (0: K padded to whole groups)
    res: int = -1  # residual (ADD): DRAM base of K-major int8 blocks, ``res_block_words`` apart
    res_block_words: int = 0

    def output(self, result):
        """The layer's output read from an executor :class:`~mixpim.models.executor.Result`:
        accumulators (M, N) for ``out="acc"``, int8 (M, N) for ``out="int8"``."""
        cfg = self.config
        if self.out == "acc":
            wb = cfg.acc_word_bytes
            acc = unpack_acc(cfg, result.read(self.y, self.m * self.nb * wb))
            return acc.reshape(self.m, self.nb * cfg.cols)[:, :self.n]
        ab = cfg.act_word_bytes
        rows = []
        for i in range(self.mb):
            w = unpack_act(cfg, result.read(self.y + i * self.y_block_words * ab, self.n * ab))
            rows.append(w.T)  # (rows, n)
        return np.concatenate(rows, axis=0)[:self.m]


@dataclass
class CompiledLinear:
    """A compiled layer: the program, its layout, and the operands it was compiled with
    (``act`` the activations in DRAM; ``mult``/``shift``/``tmult``/``tshift`` the requantization
    multipliers for ``out="int8"``)."""

    program: object
    layout: LinearLayout
    act: np.ndarray
    qw: QuantizedWeights
    extra: dict = field(default_factory=dict)

    def reference(self):
        """The expected output, computed without the tile: ``mixpe_gemm`` (then the vector unit's
        requantization for ``out="int8"``)."""
        from mixpim.models.vector import vec_apply
        acc = mixpe_gemm(ArrayParams.from_config(self.layout.config), self.act, self.qw).acc
        if self.layout.out == "acc":
            return acc
        e = self.extra
        return vec_apply(VecFunc.REQUANT, acc, e["mult"], e["shift"], e["tmult"], e["tshift"])


def _activations(cfg, x_or_shape, k, seed):
    if isinstance(x_or_shape, tuple):
        if len(x_or_shape) != 2 or x_or_shape[1] != k or x_or_shape[0] < 1:
            raise ShapeError(f"activation shape must be (M, {k}) with M >= 1, not {x_or_shape}")
        rng = np.random.default_rng(seed)
        if cfg.act == "int8":
            return rng.integers(-128, 128, size=x_or_shape).astype(np.int8)
        return (rng.normal(size=x_or_shape) * 4).astype(np.float16)
    act = np.asarray(x_or_shape)
    if act.ndim != 2 or act.shape[1] != k or act.shape[0] < 1:
        raise ShapeError(f"activations must have shape (M, {k}) with M >= 1 (weights have K={k}), "
                         f"not {act.shape}")
    return act


def lower_linear(config, x_or_shape, qw, *, seed=None, out="acc", x_scale=None, out_scale=None,
                 order="auto", chunk_groups=None):
    """Compile ``Y = X W^T``; returns a :class:`CompiledLinear`.

    Arguments
    ---------
    config : TileConfig
    x_or_shape : array (M, K) or tuple (M, K)
        The activations (int8, or float16 on FP16 configurations), or their shape: then random
        activations drawn with ``seed``.
    qw : QuantizedWeights
        (N, K), quantized with the array's group size, ``wbits`` and ``scale_bits``.
    out : ``"acc"`` or ``"int8"``
        Store the accumulators, or requantize through VEC REQUANT (INT8 configurations only).
    x_scale : float or array (M,)
        ``out="int8"``: the activations' per-tensor or per-token scale (default 1).
    out_scale : float
        ``out="int8"``: the output's scale; default calibrated as ``max |Y| / 127`` of the float
        product on these activations.
    order : ``"auto"``, ``"act"`` or ``"wgt"``
        The resident operand (:func:`choose_order`).
    chunk_groups : int, optional
        Groups per GEMM (K chunk); default the largest that double-buffers.

    Raises
    ------
    CompileError
        The layer does not fit: K beyond the accumulator headroom, scratchpads too small for one
        double-buffered group, DRAM too small.
    ShapeError, RangeError
        Operands inconsistent with each other or the array.
    """
    cfg = config
    if not isinstance(cfg, TileConfig):
        raise CompileError(f"config must be a TileConfig, not {type(cfg).__name__}")
    if not isinstance(qw, QuantizedWeights):
        raise CompileError(f"weights must be QuantizedWeights, not {type(qw).__name__}")
    n, k = qw.codes.shape
    params = ArrayParams.from_config(cfg)
    check_weights(params, qw)
    act = _activations(cfg, x_or_shape, k, seed)
    m = act.shape[0]
    g = qw.ngroups
    if g > 1 << cfg.acc_headroom:
        raise CompileError(f"K={k} is {g} groups of {cfg.group}, beyond the accumulator headroom of "
                           f"2**{cfg.acc_headroom} = {1 << cfg.acc_headroom} groups "
                           f"(K <= {cfg.group << cfg.acc_headroom}); split K or raise acc_headroom")
    if out not in ("acc", "int8"):
        raise CompileError(f"out must be 'acc' or 'int8', not {out!r}")
    if out == "int8" and cfg.act != "int8":
        raise CompileError("out='int8' needs an INT8-activation configuration")
    if 2 * cfg.rows > cfg.acc_words:
        raise CompileError(f"acc_words ({cfg.acc_words}) cannot double-buffer two {cfg.rows}-row tiles")
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    kw = g * cfg.group
    act_out = 2 * c if out == "int8" else 0  # ACT words of the two VEC output buffers
    gc = _chunk_groups(cfg, g, act_out) if chunk_groups is None else int(chunk_groups)
    if not 1 <= gc <= g or 2 * gc * cfg.group + act_out > cfg.act_words \
            or 2 * gc * cfg.group > cfg.wgt_words or 2 * gc > cfg.meta_words:
        raise CompileError(f"chunk_groups={chunk_groups} does not double-buffer in the scratchpads")
    nc = -(-g // gc)
    if order == "auto":
        order = choose_order(cfg, m, n, k, nc)
    if order not in ("act", "wgt"):
        raise CompileError(f"order must be 'auto', 'act' or 'wgt', not {order!r}")

    # -- requantization parameters ---------------------------------------------------------------
    extra = {}
    per_token = False
    if out == "int8":
        xs = np.broadcast_to(np.asarray(1.0 if x_scale is None else x_scale, np.float64), (m,))
        per_token = np.ndim(x_scale) == 1
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
        if cfg.vparam_words < cfg.vparam_param_base + 2 * c:
            raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot double-buffer the column "
                               f"multipliers ({cfg.vparam_param_base} + 2 x {c} words)")

    # -- DRAM placement --------------------------------------------------------------------------
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    dram = DramAllocator(cfg)
    a_blocks = act_blocks(cfg, act, kw)
    w_blocks, m_blocks = weight_blocks(cfg, qw)
    x_base = dram.alloc("x", mb * kw * ab, ab)
    w_base = dram.alloc("w", nb * kw * wb, wb)
    meta_base = dram.alloc("meta", nb * g * mbb, mbb)
    segs = [Segment("dram", x_base + i * kw * ab, d) for i, d in enumerate(a_blocks)]
    segs += [Segment("dram", w_base + j * kw * wb, d) for j, d in enumerate(w_blocks)]
    segs += [Segment("dram", meta_base + j * g * mbb, d) for j, d in enumerate(m_blocks)]
    lay = LinearLayout(cfg, m, n, k, mb, nb, g, gc, order, out, x_base, w_base, meta_base, 0)
    if out == "acc":
        lay.y = dram.alloc("y", m * nb * cfg.acc_word_bytes, cfg.acc_word_bytes)
    else:
        mp = np.zeros(nb * c, np.int64)
        sp = np.zeros(nb * c, np.int64)
        mp[:n], sp[:n] = extra["mult"], extra["shift"]
        lay.params = dram.alloc("params", nb * c * 4, 4)
        segs.append(Segment("dram", lay.params, pack_vparam(mp, sp)))
        # VPARAM words 0 .. 64 + rows - 1 (GELU table unused, token multipliers): one block per
        # token block when the scales are per token, else preloaded once
        tm = np.ones(mb * r, np.int64)
        ts = np.zeros(mb * r, np.int64)
        tm[:m], ts[:m] = extra["tmult"], extra["tshift"]
        hdr = b"".join(vparam_header(cfg, tmult=tm[i * r:(i + 1) * r], tshift=ts[i * r:(i + 1) * r])
                       for i in range(mb if per_token else 1))
        lay.tokens = dram.alloc("tokens", len(hdr), 4)
        segs.append(Segment("dram", lay.tokens, hdr))
        lay.y_block_words = max(nb * c, kw_next(cfg, n))
        lay.y = dram.alloc("y", mb * lay.y_block_words * ab, ab)

    em = Emitter(cfg)
    emit_linear(em, lay, per_token=per_token)
    prog = em.program(segs, symbols=dram.symbols)
    return CompiledLinear(prog, lay, act, qw, extra)


def kw_next(cfg, n):
    """ACT words per token block of an N-feature output consumed as the next layer's input."""
    return num_groups(n, cfg.group) * cfg.group


def emit_linear(em, lay, *, per_token=False, act_base=0, vec_func=VecFunc.REQUANT):
    """Emit the double-buffered, software-pipelined instruction stream of one layer into ``em``."""
    cfg = lay.config
    r, c = cfg.rows, cfg.cols
    g, gc = lay.groups, lay.chunk_groups
    kw = g * cfg.group
    xkw = lay.x_block_words or kw
    kwc = gc * cfg.group
    nc = -(-g // gc)
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    act_slot = [act_base, act_base + kwc]
    out_slot = [act_base + 2 * kwc, act_base + 2 * kwc + c]
    wgt_slot = [0, kwc]
    meta_slot = [0, gc]
    acc_slot = [0, r]
    par_slot = [cfg.vparam_param_base, cfg.vparam_param_base + c]
    if lay.order == "act":
        steps = [(i, j, ch) for i in range(lay.mb) for j in range(lay.nb) for ch in range(nc)]
    else:
        steps = [(i, j, ch) for j in range(lay.nb) for i in range(lay.mb) for ch in range(nc)]

    state = {"a": None, "a_slot": 1, "w": None, "w_slot": 1, "p": None, "p_slot": 1, "tok": None}
    where = {}  # step -> (act addr, wgt addr, meta addr, param addr)

    def loads(s):
        i, j, ch = steps[s]
        groups = min(gc, g - ch * gc)
        if state["a"] != (i, ch):
            state["a"], state["a_slot"] = (i, ch), 1 - state["a_slot"]
            em.load(Spad.ACT, act_slot[state["a_slot"]], lay.x + (i * xkw + ch * kwc) * ab,
                    groups * cfg.group, comment=f"X block {i} chunk {ch}")
        if state["w"] != (j, ch):
            state["w"], state["w_slot"] = (j, ch), 1 - state["w_slot"]
            em.load(Spad.WGT, wgt_slot[state["w_slot"]], lay.w + (j * kw + ch * kwc) * wb,
                    groups * cfg.group, comment=f"W block {j} chunk {ch}")
            em.load(Spad.META, meta_slot[state["w_slot"]], lay.meta + (j * g + ch * gc) * mbb, groups,
                    comment=f"META block {j} chunk {ch}")
        if lay.out == "int8" and state["p"] != j:
            state["p"], state["p_slot"] = j, 1 - state["p_slot"]
            em.load(Spad.VPARAM, par_slot[state["p_slot"]], lay.params + j * c * 4, c,
                    comment=f"column multipliers {j}")
        where[s] = (act_slot[state["a_slot"]], wgt_slot[state["w_slot"]], meta_slot[state["w_slot"]],
                    par_slot[state["p_slot"]], groups)

    if lay.out == "int8" and not per_token:
        em.load(Spad.VPARAM, 0, lay.tokens, cfg.vparam_param_base, comment="token multipliers")
    loads(0)
    tile = -1
    for s, (i, j, ch) in enumerate(steps):
        if s + 1 < len(steps):
            loads(s + 1)
        if ch == 0:
            tile += 1
        acc = acc_slot[tile % 2]
        a, w, mt, p, groups = where[s]
        em.gemm(a, w, mt, acc, groups, accumulate=int(ch > 0), comment=f"tile ({i}, {j}) chunk {ch}")
        if ch != nc - 1:
            continue
        rows = min(r, lay.m - i * r)
        if lay.out == "acc":
            em.store(Spad.ACC, acc, lay.y + (i * r * lay.nb + j) * cfg.acc_word_bytes, 1, rows=rows,
                     stride=lay.nb * cfg.acc_word_bytes, comment=f"Y tile ({i}, {j})")
            continue
        if per_token and state["tok"] != i:
            state["tok"] = i
            em.load(Spad.VPARAM, 0, lay.tokens + i * cfg.vparam_param_base * 4, cfg.vparam_param_base,
                    comment=f"token multipliers {i}")
        o = out_slot[tile % 2]
        if lay.res >= 0:  # the residual goes where the output will be: ADD works in place
            em.load(Spad.ACT, o, lay.res + (i * lay.res_block_words + j * c) * ab, c,
                    comment=f"residual tile ({i}, {j})")
        em.vec(vec_func, acc, o, p, rows, res_addr=o if lay.res >= 0 else 0,
               comment=f"{VecFunc(vec_func).name.lower()} tile ({i}, {j})")
        em.store(Spad.ACT, o, lay.y + (i * lay.y_block_words + j * c) * ab, c,
                 comment=f"Y tile ({i}, {j})")


def compile_linear(config, x_or_shape, qw, *, seed=None, **options):
    """The :class:`~mixpim.models.program.Program` of ``Y = X W^T`` (see :func:`lower_linear` for
    the options and :attr:`Program.symbols` for where ``x``, ``w``, ``meta`` and ``y`` are)."""
    return lower_linear(config, x_or_shape, qw, seed=seed, **options).program
