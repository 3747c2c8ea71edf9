"""Lowering a quantized Linear layer ``Y = X W^T`` to a tile :class:`~mixpim.models.program.Program`.

``X`` is M tokens x K activations (INT8, or FP16 on W4A16 configurations), ``W`` is N x K weights
quantized group-wise (:func:`mixpim.models.quant.quantize_weights`). Any M, N, K: the operands are
padded to whole array tiles and whole groups (padded weights use the group's zero point, padded
activations are 0). Passes (docs/compiler.md):

1. **plan** (:func:`plan_linear`, :func:`_choose_plan`): output tiles of ``rows x cols`` (token
   block i, feature block j) are grouped into blocks of ``bm x bn`` tiles; K is cut into chunks
   of ``gc`` groups that accumulate in ACC; the loop order keeps the activations (``"act"``) or
   the weights (``"wgt"``) of a block resident while the other operand streams. A cost model of
   the DMA and the array ranks every plan whose buffers fit; the best few are then scheduled and
   run on the (exact) cycle model and the fastest is kept (``tune``);
2. **place**: DRAM regions for X (K-major ACT blocks), W (K-major nibble-packed WGT blocks), META,
   column multipliers and Y, each starting on its own DRAM bank;
3. **schedule and emit** (:class:`_Schedule`): operands move in *pieces* (one strided LOAD for
   all the token blocks, or all the feature blocks, of a block and K chunk) into ring buffers in
   the scratchpads, freed after their last GEMM; the first block's first chunk runs K-outer in
   segments of 1, 1, 2, 4 ... groups, so the array starts after one group's operands; outputs
   (STORE of accumulators, or VEC then one STORE per token block and feature-block group) trail
   the GEMMs. A list scheduler with an estimated timeline (exact durations) merges the DMA, GEMM
   and VEC streams into program order by start time, the DMA taking the most urgent transfer
   first. Tokens come from :class:`~mixpim.compiler.emit.Emitter`.

Outputs: ``out="acc"`` stores the raw accumulators (row-major, N padded to whole feature blocks);
``out="int8"`` requantizes them through VEC REQUANT (per-tensor or per-token input scales) and
stores the int8 results in the K-major ACT layout, ready to be the next layer's input.
:func:`schedule_linear` builds the same instruction stream from the shape alone (no operands, no
memory image), for timing-only runs of full-size layers.
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.config import TileConfig
from mixpim.models.errors import ShapeError
from mixpim.models.executor import pack_act, pack_meta, pack_wgt, unpack_acc, unpack_act
from mixpim.models.isa import Spad, VecFunc
from mixpim.models.mixpe import ArrayParams, check_weights, mixpe_gemm
from mixpim.models.program import Segment
from mixpim.models.quant import QuantizedWeights, num_groups
from mixpim.models.tile_timing import DMA_SETUP_CYCLES, VEC_FILL_CYCLES, DramBanks
from mixpim.models.vector import (column_multipliers, pack_vparam, token_multipliers, vparam_header)

from .emit import CompileError, Emitter

__all__ = ["CompileError", "LinearPlan", "LinearLayout", "CompiledLinear", "choose_order",
           "plan_linear", "lower_linear", "schedule_linear", "compile_linear", "DramAllocator",
           "act_blocks", "weight_blocks"]

#: Fraction bits kept between the column and the token multiplier (per-token scales).
FRAC_BITS = 8


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


# -- planning ----------------------------------------------------------------------------------

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
    resident while the activations stream), whichever moves fewer DRAM bytes with one tile per
    block. With K split into several chunks nothing stays resident, and the order only decides
    which operand is reloaded; the same byte count picks it. (:func:`plan_linear` weighs whole
    plans; this is the one-tile special case.)"""
    g = num_groups(k, cfg.group)
    kw = g * cfg.group
    mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
    a_bytes = kw * cfg.act_word_bytes
    w_bytes = kw * cfg.wgt_word_bytes + g * cfg.meta_word_bytes
    reuse = chunks == 1
    act_outer = mb * (a_bytes + nb * w_bytes) if reuse else mb * nb * (a_bytes + w_bytes)
    wgt_outer = nb * (w_bytes + mb * a_bytes) if reuse else mb * nb * (a_bytes + w_bytes)
    return "act" if act_outer <= wgt_outer else "wgt"


@dataclass(frozen=True)
class LinearPlan:
    """How :func:`emit_linear` tiles and orders one layer.

    ``outer``: ``"act"`` (token-block groups outer: with K in one chunk a group's activations stay
    resident while every feature-block group streams past) or ``"wgt"`` (the transpose);
    ``bm`` x ``bn``: token blocks x feature blocks per block of output tiles (the GEMMs of one K
    chunk run over the block token-major, so a loaded weight piece serves ``bm`` tiles and an
    activation piece ``bn``); ``gc``: groups per K chunk; ``acc_slots``: ACC tiles in the ring
    (accumulating tiles plus those waiting for their STORE or VEC); ``out_words``: ACT words
    reserved at the top of ACT for VEC outputs (``out="int8"``)."""

    outer: str
    bm: int
    bn: int
    gc: int
    acc_slots: int
    out_words: int = 0
    estimate: float = 0.0  # cost model: estimated cycles (for reports)


#: Most ACC tiles in flight when K is one chunk: enough slack for the outputs to trail the GEMMs,
#: few enough that GEMM->DMA/VEC tokens stay well inside the 3-bit counters.
_ACC_SLOTS_STREAMING = 6


def _dma_cost(cfg, nbytes, rows=1):
    """Rough DMA cycles of a transfer of ``rows`` strided rows totalling ``nbytes`` (every row a
    fresh DRAM row run with an activation; contiguous transfers one per DRAM row)."""
    if nbytes <= 0:
        return 0.0
    runs = rows + nbytes / cfg.dram_row_bytes
    return (DMA_SETUP_CYCLES + nbytes / cfg.dram_bus_bytes * cfg.t_ccd
            + runs * (cfg.t_cl + cfg.t_rcd + cfg.t_rp))


#: The cost model charges the DMA this much more than its sum of transfers (queueing, WAR
#: waits): plans that keep the DMA nearly saturated stall the array in practice.
_DMA_MARGIN = 1.15


def _sizes(total, size):
    """``{group size: count}`` of ``total`` blocks cut into groups of ``size``."""
    full, rest = divmod(total, size)
    out = {size: full} if full else {}
    if rest:
        out[rest] = out.get(rest, 0) + 1
    return out


def _plan_cost(cfg, m, n, g, out, per_token, outer, bm, bn, gc):
    """Estimated cycles of a plan: per block of tiles and K chunk the slower of the array and the
    DMA (the next chunk's pieces and the block's outputs overlap the GEMMs; the DMA charged
    ``_DMA_MARGIN`` more), the first chunk without overlap (its loads are not prefetched), plus
    the start (one group's loads) and the end (the last tile's drain and output)."""
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    nc = -(-g // gc)
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    n_i, n_j = -(-mb // bm), -(-nb // bn)
    n_inner = n_j if outer == "act" else n_i
    resident = nc == 1
    latency = ArrayParams.from_config(cfg).latency + r
    if out == "acc":
        tile_out = r * _dma_cost(cfg, c * cfg.acc_elem_bytes) - (r - 1) * DMA_SETUP_CYCLES
    else:
        tile_out = _dma_cost(cfg, bn * c * ab) / bn + (DMA_SETUP_CYCLES + r if per_token else 0)
    total = 0.0
    first = None
    for si, ni in _sizes(mb, bm).items():
        for sj, nj in _sizes(nb, bn).items():
            count = ni * nj
            for ch in range(nc):
                gch = min(gc, g - ch * gc)
                kwc = gch * cfg.group
                gemm = si * sj * kwc
                a_load = _dma_cost(cfg, si * kwc * ab, si)
                w_load = _dma_cost(cfg, sj * kwc * wb, sj) + _dma_cost(cfg, sj * gch * mbb, sj)
                if first is None:  # the first block's first chunk: nothing prefetched
                    first = max(gemm, a_load + w_load) - gemm
                if resident and outer == "act":
                    a_load /= n_inner
                elif resident:
                    w_load /= n_inner
                outs = si * sj * tile_out if ch == nc - 1 else 0.0
                total += max(gemm, _DMA_MARGIN * (a_load + w_load + outs)) * count
    start = _dma_cost(cfg, cfg.group * ab) + _dma_cost(cfg, cfg.group * wb) + _dma_cost(cfg, mbb)
    return total + first + start + latency + tile_out * (bn if out == "int8" else 1)


def _plan_fits(cfg, m, n, g, out, act_base, outer, bm, bn, gc):
    """The :class:`LinearPlan` if its buffers fit the scratchpads, else None."""
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    nc = -(-g // gc)
    kwc = gc * cfg.group
    n_i, n_j = -(-mb // bm), -(-nb // bn)
    # pieces per stream, and whether more than one exists (then two must fit: double buffering)
    act_pieces = n_i * nc * (1 if nc == 1 and outer == "act" else n_j)
    wgt_pieces = n_j * nc * (1 if nc == 1 and outer == "wgt" else n_i)
    out_words = 0
    if out == "int8":  # VEC outputs: two stores' worth, and at least 8 tiles of slack
        out_words = c * max(2 * bn, 8)
    act_room = cfg.act_words - act_base - out_words
    if bm * kwc * min(2, act_pieces) > act_room:
        return None
    if bn * kwc * min(2, wgt_pieces) > cfg.wgt_words:
        return None
    if bn * gc * min(2, wgt_pieces) > cfg.meta_words:
        return None
    if bm * kwc > 65535 or bn * kwc > 65535 or bm > 4095 or bn > 4095:
        return None
    kw = g * cfg.group  # strided LOADs of several blocks: the stride field has 24 bits
    if (bm > 1 and kw * cfg.act_word_bytes >= 1 << 24) or (bn > 1 and kw * cfg.wgt_word_bytes >= 1 << 24):
        return None
    slots = cfg.acc_words // r
    tiles = bm * bn
    if nc == 1:
        acc = min(slots, max(_ACC_SLOTS_STREAMING, tiles + 2))  # the start's K-outer block
        if acc < 2:
            return None
    else:
        blocks = n_i * n_j
        if tiles * min(2, blocks) > slots:
            return None
        acc = tiles * min(2, blocks)
    if out == "int8":
        room = cfg.vparam_words - cfg.vparam_param_base
        if nb * c > room and 2 * bn * c > room:
            return None
    return LinearPlan(outer, bm, bn, gc, acc, out_words)


def _candidates(total):
    """Block sizes worth trying for ``total`` blocks: powers of two below it, and it."""
    out, v = set(), 1
    while v < total:
        out.add(v)
        v *= 2
    out.add(total)
    return sorted(out)


def _plan_candidates(cfg, m, n, k, *, out="acc", per_token=False, order="auto", chunk_groups=None,
                     block=None, act_base=0):
    """Every plan whose buffers fit, best estimate first (ties: fewer chunks, smaller blocks)."""
    g = num_groups(k, cfg.group)
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    orders = ("act", "wgt") if order == "auto" else (order,)
    if chunk_groups is None:
        gcs = sorted({-(-g // nc) for nc in range(1, g + 1)}, reverse=True)
    else:
        gcs = [int(chunk_groups)]
    if block is None:
        bms, bns = _candidates(mb), _candidates(nb)
    else:
        bms, bns = [int(block[0])], [int(block[1])]
    found = []
    for outer in orders:
        for gc in gcs:
            for bm in bms:
                for bn in bns:
                    plan = _plan_fits(cfg, m, n, g, out, act_base, outer, bm, bn, gc)
                    if plan is None:
                        continue
                    cost = _plan_cost(cfg, m, n, g, out, per_token, outer, bm, bn, gc)
                    key = (round(cost), -gc, bm * bn, outer != "act")
                    found.append((key, LinearPlan(outer, bm, bn, gc, plan.acc_slots, plan.out_words,
                                                  float(cost))))
    if not found:
        raise CompileError(f"no tiling of the {m}x{n}x{k} layer fits the scratchpads "
                           f"(act_words {cfg.act_words}, {act_base} reserved; wgt_words "
                           f"{cfg.wgt_words}; meta_words {cfg.meta_words}; acc_words "
                           f"{cfg.acc_words}): the scratchpads cannot double-buffer one group of "
                           f"{cfg.group} beats")
    found.sort(key=lambda t: t[0])
    return [p for _, p in found]


def plan_linear(config, m, n, k, *, out="acc", per_token=False, order="auto", chunk_groups=None,
                block=None, act_base=0):
    """The :class:`LinearPlan` of a layer by the cost model alone: among the plans whose buffers
    fit (double-buffered pieces, the ACC ring, the VEC output words), the one with the lowest
    estimated cycles (:func:`_plan_cost`); ties prefer fewer, larger chunks and smaller blocks.
    ``order`` (``"act"``/``"wgt"``), ``chunk_groups`` and ``block`` (``(bm, bn)``) pin those
    choices. (:func:`lower_linear` refines this choice with the cycle model, see ``tune``.)

    Raises :class:`CompileError` when no plan fits."""
    return _plan_candidates(config, m, n, k, out=out, per_token=per_token, order=order,
                            chunk_groups=chunk_groups, block=block, act_base=act_base)[0]


#: Tuning: at most this many plans (the cost model's best) are scheduled and run on the cycle
#: model, while their estimated instructions stay within the budget; the fastest wins.
TUNE_PLANS = 6
TUNE_BUDGET = 12000


def _instructions_estimate(lay, plan):
    nc = -(-lay.groups // plan.gc)
    n_i, n_j = -(-lay.mb // plan.bm), -(-lay.nb // plan.bn)
    outs = lay.mb * lay.nb * (2 if lay.out == "int8" else 1)
    return lay.mb * lay.nb * nc + 3 * n_i * n_j * nc + outs + 4 * (plan.bm + plan.bn) * max(
        1, lay.groups.bit_length()) + 8


def _choose_plan(lay, per_token, act_base, vec_func, *, tune=True, order="auto", chunk_groups=None,
                 block=None):
    """The plan of the placed layer ``lay``: the cost model ranks the plans that fit
    (:func:`_plan_candidates`); with ``tune``, the best ``TUNE_PLANS`` of them (within
    ``TUNE_BUDGET`` estimated instructions) are scheduled and run on the cycle model, and the one
    with the fewest cycles is taken (the timing model is exact: golden = RTL)."""
    from dataclasses import replace

    from mixpim.models.tile_timing import simulate
    cfg = lay.config
    cands = _plan_candidates(cfg, lay.m, lay.n, lay.k, out=lay.out, per_token=per_token,
                             order=order, chunk_groups=chunk_groups, block=block, act_base=act_base)
    if not tune or len(cands) == 1:
        return cands[0]
    best, spent = None, 0
    for plan in cands[:TUNE_PLANS]:
        spent += _instructions_estimate(lay, plan)
        if spent > TUNE_BUDGET:
            break
        em = Emitter(cfg)
        try:
            _Schedule(em, replace(lay, plan=plan), plan, per_token, act_base, vec_func).run()
        except CompileError:
            continue
        t = simulate(cfg, em.instructions())
        if t.ok and (best is None or t.cycles < best[0]):
            best = (t.cycles, plan)
    return cands[0] if best is None else best[1]


# -- layouts and results -----------------------------------------------------------------------

@dataclass
class LinearLayout:
    """Where a compiled Linear layer lives. DRAM byte addresses ``x``, ``w``, ``meta``, ``params``
    (column multipliers, int8 output only), ``tokens`` (token multipliers, per-token scales only)
    and ``y``; the tiling (``mb`` x ``nb`` tiles, ``groups`` per K, ``chunk_groups`` per GEMM);
    ``plan`` the :class:`LinearPlan` (None: :func:`emit_linear` plans, and fills in ``plan``,
    ``order`` and ``chunk_groups``)."""

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
    plan: LinearPlan = None

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


def _check_layer(cfg, m, n, k, out, order):
    if not isinstance(cfg, TileConfig):
        raise CompileError(f"config must be a TileConfig, not {type(cfg).__name__}")
    g = num_groups(k, cfg.group)
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
    if order not in ("auto", "act", "wgt"):
        raise CompileError(f"order must be 'auto', 'act' or 'wgt', not {order!r}")
    if out == "int8" and cfg.vparam_words < cfg.vparam_param_base + 2 * cfg.cols:
        raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot double-buffer the column "
                           f"multipliers ({cfg.vparam_param_base} + 2 x {cfg.cols} words)")


def _plan_layout(lay, per_token, tune, order, chunk_groups, block):
    try:
        lay.plan = _choose_plan(lay, per_token, 0, VecFunc.REQUANT, tune=tune, order=order,
                                chunk_groups=chunk_groups, block=block)
    except CompileError:
        if chunk_groups is not None or block is not None:
            raise CompileError(f"chunk_groups={chunk_groups}, block={block} do not double-buffer in "
                               f"the scratchpads") from None
        raise
    lay.order, lay.chunk_groups = lay.plan.outer, lay.plan.gc


def _layout(cfg, m, n, k, out, per_token, dram):
    """Allocate the DRAM regions of a layer (x, w, meta, [params, tokens], y): its LinearLayout."""
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
        lay.params = dram.alloc("params", nb * c * 4, 4)
        lay.tokens = dram.alloc("tokens", (mb if per_token else 1) * cfg.vparam_param_base * 4, 4)
        lay.y_block_words = max(nb * c, kw_next(cfg, n))
        lay.y = dram.alloc("y", mb * lay.y_block_words * ab, ab)
    return lay


def lower_linear(config, x_or_shape, qw, *, seed=None, out="acc", x_scale=None, out_scale=None,
                 order="auto", chunk_groups=None, block=None, tune=True):
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
    if not isinstance(qw, QuantizedWeights):
        raise CompileError(f"weights must be QuantizedWeights, not {type(qw).__name__}")
    n, k = qw.codes.shape
    _check_layer(cfg, 1, n, k, out, order)
    params = ArrayParams.from_config(cfg)
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
        segs.append(Segment("dram", lay.tokens, hdr))

    em = Emitter(cfg)
    emit_linear(em, lay, per_token=per_token)
    prog = em.program(segs, symbols=dram.symbols)
    return CompiledLinear(prog, lay, act, qw, extra)


def _check_options(cfg, m, n, k, chunk_groups, block):
    g = num_groups(k, cfg.group)
    if chunk_groups is not None:
        gc = chunk_groups
        if isinstance(gc, bool) or not isinstance(gc, (int, np.integer)) or not 1 <= gc <= g:
            raise CompileError(f"chunk_groups={chunk_groups} must be an integer in 1..{g}")
    if block is not None:
        mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
        if (len(block) != 2 or not 1 <= block[0] <= mb or not 1 <= block[1] <= nb):
            raise CompileError(f"block={block} must be (bm, bn) with 1 <= bm <= {mb}, 1 <= bn <= {nb}")


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


def kw_next(cfg, n):
    """ACT words per token block of an N-feature output consumed as the next layer's input."""
    return num_groups(n, cfg.group) * cfg.group


# -- scheduling and emission -------------------------------------------------------------------

_SPAD_OF = {"OUT": "ACT", "HDR": "VPARAM"}  # pieces outside the operand rings
_INF = float("inf")


class _Piece:
    """A contiguous scratchpad buffer filled by zero or more LOADs; ``last``: the last step
    (GEMM) using it; ``free``: every user emitted, ``free_at``: estimated cycle its last user
    completes (a new occupant of its words starts after that)."""

    __slots__ = ("space", "words", "loads", "last", "addr", "free", "free_at", "uses")

    def __init__(self, space, words):
        self.space, self.words = space, words
        self.loads = []
        self.last = -1
        self.addr = None
        self.free = False
        self.free_at = 0
        self.uses = 0


class _Load:
    """One queued LOAD of a piece: needed by step ``need``; ``off`` words into the piece."""

    __slots__ = ("piece", "need", "off", "dram", "words", "rows", "stride", "comment", "done")

    def __init__(self, piece, need, off, dram, words, rows, stride, comment):
        self.piece, self.need, self.off, self.dram = piece, need, off, dram
        self.words, self.rows, self.stride, self.comment = words, rows, stride, comment
        self.done = None  # estimated completion cycle once emitted


class _Ring:
    """Round-robin allocation of contiguous pieces in words ``[lo, hi)`` of one scratchpad. A
    piece may take the words of pieces that are free (the emitter orders the new writes after
    their last readers)."""

    def __init__(self, lo, hi):
        self.lo, self.hi, self.head = lo, hi, lo
        self.live = []

    def fit(self, words):
        """``(position, pieces in the way)`` of the next allocation, or None while one of those
        pieces is still in use (or the ring is too small)."""
        if words > self.hi - self.lo:
            return None
        pos = self.head if self.head + words <= self.hi else self.lo
        way = [p for p in self.live if p.addr < pos + words and pos < p.addr + p.words]
        if any(not p.free for p in way):
            return None
        return pos, way

    def commit(self, piece, fit):
        pos, way = fit
        piece.addr = pos
        self.head = pos + piece.words
        self.live = [p for p in self.live if p not in way] + [piece]


def _groups(total, size):
    return [list(range(a, min(a + size, total))) for a in range(0, total, size)]


def _split(groups):
    """Group counts 1, 1, 2, 4, ... summing to ``groups``: the K segments of the first block."""
    out, done = [], 0
    while done < groups:
        s = min(max(1, done), groups - done)
        out.append(s)
        done += s
    return out


def emit_linear(em, lay, *, per_token=False, act_base=0, vec_func=VecFunc.REQUANT, tune=True):
    """Emit the instruction stream of one layer into ``em`` (module doc, pass 3). ``lay.plan``
    None: planned here (:func:`_choose_plan`: the cost model, then with ``tune`` the cycle model)
    and stored in ``lay`` (with ``order`` and ``chunk_groups``). ``act_base``: ACT words below it
    are left alone. ``per_token``: VPARAM words 64 .. 64 + rows - 1 are reloaded per token block
    from ``lay.tokens`` (blocks of ``64 + rows`` words; the first block's GELU table, words
    0 .. 63, is loaded once and must be the same in every block)."""
    if lay.plan is None:
        lay.plan = _choose_plan(lay, per_token, act_base, vec_func, tune=tune)
        lay.order, lay.chunk_groups = lay.plan.outer, lay.plan.gc
    _Schedule(em, lay, lay.plan, per_token, act_base, vec_func).run()
    return em


class _Schedule:
    """Steps (GEMMs), pieces and outputs of one layer, then their emission in program order.

    Emission is a list scheduler over three in-order streams: the GEMMs in step order, the DMA
    (queued loads in need order, STOREs, residual and token-multiplier loads: the most urgent
    first, by estimated deadline) and the VECs in tile order. It keeps an estimated timeline
    (exact durations; DMA through :class:`~mixpim.models.tile_timing.DramBanks` in DMA order)
    and always emits next the instruction that can start first, so program order follows
    execution order and no unit's queue holds the dispatcher back for work far in the future.
    """

    def __init__(self, em, lay, plan, per_token, act_base, vec_func):
        self.em, self.lay, self.plan = em, lay, plan
        self.per_token, self.vec_func = per_token, vec_func
        cfg = self.cfg = lay.config
        r = cfg.rows
        act_top = cfg.act_words - plan.out_words
        self.rings = {"ACT": _Ring(act_base, act_top), "WGT": _Ring(0, cfg.wgt_words),
                      "META": _Ring(0, cfg.meta_words), "ACC": _Ring(0, plan.acc_slots * r),
                      "OUT": _Ring(act_top, cfg.act_words),
                      "VPARAM": _Ring(cfg.vparam_param_base, cfg.vparam_words)}
        self.pieces = []
        self.steps = []
        self.j_groups = _groups(lay.nb, plan.bn)
        self._build()

    def _piece(self, space, words):
        p = _Piece(space, words)
        self.pieces.append(p)
        return p

    def _load(self, piece, need, off, dram, words, rows, stride, comment):
        piece.loads.append(_Load(piece, need, off, dram, words, rows, stride if rows > 1 else 0,
                                 comment))

    # -- steps and pieces ----------------------------------------------------------------------

    def _build(self):
        lay, plan, cfg = self.lay, self.plan, self.cfg
        g, gc = lay.groups, plan.gc
        grp = cfg.group
        kw = g * grp
        xkw = lay.x_block_words or kw
        nc = -(-g // gc)
        ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
        i_groups, j_groups = _groups(lay.mb, plan.bm), _groups(lay.nb, plan.bn)
        if plan.outer == "act":
            blocks = [(ii, jj) for ii in range(len(i_groups)) for jj in range(len(j_groups))]
        else:
            blocks = [(ii, jj) for jj in range(len(j_groups)) for ii in range(len(i_groups))]
        act_cache, wgt_cache = {}, {}
        steps = self.steps
        for bi, (ii, jj) in enumerate(blocks):
            I, J = i_groups[ii], j_groups[jj]
            tiles = [(i, j) for i in I for j in J]
            for ch in range(nc):
                g0 = ch * gc
                gch = min(gc, g - g0)
                kwc = gch * grp
                s0 = len(steps)
                # The start: the first block's first chunk runs in K segments of 1, 1, 2, 4 ...
                # groups, each over all its tiles (or over the first tile only, when their
                # accumulators do not fit the ring), with one LOAD per token / feature block and
                # segment: the array starts after one group's operands.
                fill = bi == 0 and ch == 0 and gch > 1
                segs = _split(gch) if fill else [gch]
                if fill and len(tiles) > 1 and (nc > 1 or len(tiles) <= plan.acc_slots - 2):
                    kouter = tiles
                else:
                    kouter = tiles[:1]
                akey = (ii, ch) if nc == 1 and plan.outer == "act" else (ii, jj, ch)
                a = act_cache.get(akey)
                fresh_a = a is None
                if fresh_a:
                    a = act_cache[akey] = self._piece("ACT", len(I) * kwc)
                wkey = (jj, ch) if nc == 1 and plan.outer == "wgt" else (ii, jj, ch)
                pair = wgt_cache.get(wkey)
                fresh_w = pair is None
                if fresh_w:
                    pair = wgt_cache[wkey] = (self._piece("WGT", len(J) * kwc),
                                              self._piece("META", len(J) * gch))
                w, mt = pair
                # the GEMMs: K-outer segments over ``kouter``, then the other tiles whole
                if fill:
                    order = [(si, t) for si in range(len(segs)) for t in kouter]
                    order += [(None, t) for t in tiles if t not in kouter]
                else:
                    order = [(None, t) for t in tiles]
                offs = [sum(segs[:si]) for si in range(len(segs))]
                first_use = {}
                for si, (i, j) in order:
                    sg = gch if si is None else segs[si]
                    done = 0 if si is None else offs[si]
                    t, u = i - I[0], j - J[0]
                    s = len(steps)
                    first_use.setdefault(("a", t, si), s)
                    first_use.setdefault(("w", u, si), s)
                    group = None  # tiles whose ACC is allocated (one piece) at this step
                    if ch == 0:
                        if nc > 1:
                            group = tiles if s == s0 else None
                        elif len(kouter) > 1 and si is not None:
                            group = kouter if si == 0 and (i, j) == kouter[0] else None
                        elif si is None or si == 0:
                            group = [(i, j)]
                    steps.append(dict(
                        i=i, j=j, ch=ch, groups=sg, act=(a, t * kwc + done * grp),
                        wgt=(w, u * kwc + done * grp), meta=(mt, u * gch + done),
                        first=ch == 0 and (si is None or si == 0),
                        last=ch == nc - 1 and (si is None or si == len(segs) - 1), block=(ii, jj),
                        acc_group=group))
                xd = lay.x + (I[0] * xkw + g0 * grp) * ab
                wd = lay.w + (J[0] * kw + g0 * grp) * wb
                md = lay.meta + (J[0] * g + g0) * mbb
                if not fill:
                    if fresh_a:
                        self._load(a, s0, 0, xd, kwc, len(I), xkw * ab,
                                   f"X blocks {I[0]}..{I[-1]} chunk {ch}")
                    if fresh_w:
                        self._load(w, s0, 0, wd, kwc, len(J), kw * wb,
                                   f"W blocks {J[0]}..{J[-1]} chunk {ch}")
                        self._load(mt, s0, 0, md, gch, len(J), g * mbb,
                                   f"META blocks {J[0]}..{J[-1]} chunk {ch}")
                else:  # one LOAD per block and segment (per block for rows outside ``kouter``)
                    for t, i in enumerate(I):
                        rsegs = ([(si, offs[si], segs[si]) for si in range(len(segs))]
                                 if ("a", t, 0) in first_use else [(None, 0, gch)])
                        for si, o, sg in rsegs:
                            self._load(a, first_use[("a", t, si)], t * kwc + o * grp,
                                       xd + (t * xkw + o * grp) * ab, sg * grp, 1, 0,
                                       f"X block {i} chunk {ch}" + (f" groups {o}..{o + sg - 1}"
                                                                    if sg < gch else ""))
                    for u, j in enumerate(J):
                        wsegs = ([(si, offs[si], segs[si]) for si in range(len(segs))]
                                 if ("w", u, 0) in first_use else [(None, 0, gch)])
                        self._load(mt, first_use[("w", u, wsegs[0][0])], u * gch, md + u * g * mbb,
                                   gch, 1, 0, f"META block {j} chunk {ch}")
                        for si, o, sg in wsegs:
                            self._load(w, first_use[("w", u, si)], u * kwc + o * grp,
                                       wd + (u * kw + o * grp) * wb, sg * grp, 1, 0,
                                       f"W block {j} chunk {ch}" + (f" groups {o}..{o + sg - 1}"
                                                                    if sg < gch else ""))
                for p in (a, w, mt):
                    p.last = len(steps) - 1

    def _deps(self):
        """Per step the loads whose words its GEMM reads."""
        grp = self.cfg.group
        by_piece = {}
        for p in self.pieces:
            by_piece[id(p)] = [(ld.off, ld.off + ld.words * ld.rows, ld) for ld in p.loads]
        for st in self.steps:
            beats = st["groups"] * grp
            deps = []
            for key, n in (("act", beats), ("wgt", beats), ("meta", st["groups"])):
                p, off = st[key]
                deps += [ld for lo, hi, ld in by_piece[id(p)] if lo < off + n and off < hi]
            st["deps"] = deps

    # -- outputs: setup ------------------------------------------------------------------------

    def _setup_outputs(self):
        lay, cfg = self.lay, self.cfg
        c = cfg.cols
        self.tok_block = None
        self.hdr = None
        self.batches = {}  # (i, block) -> [piece, tiles left]
        self.params = {}
        if lay.out != "int8":
            return
        jg = self.j_groups
        room = cfg.vparam_words - cfg.vparam_param_base
        first_last = next(s for s, st in enumerate(self.steps) if st["last"])
        if lay.nb * c <= room:  # every column multiplier at once
            p = self._piece("VPARAM", lay.nb * c)
            self._load(p, first_last, 0, lay.params, lay.nb * c, 1, 0, "column multipliers")
            p.uses = sum(1 for st in self.steps if st["last"])
            self.params["all"] = p
        else:  # one piece per visit of a feature-block group
            for s, st in enumerate(self.steps):
                if not st["last"]:
                    continue
                key = self._param_key(st["block"])
                p = self.params.get(key)
                if p is None:
                    J = jg[st["block"][1]]
                    p = self.params[key] = self._piece("VPARAM", len(J) * c)
                    self._load(p, s, 0, lay.params + J[0] * c * 4, len(J) * c, 1, 0,
                               f"column multipliers {J[0]}..{J[-1]}")
                p.uses += 1
        if not self.per_token:  # the table and token multipliers, once, before the first VEC
            hdr = self.hdr = self._piece("HDR", cfg.vparam_param_base)
            hdr.addr = 0
            self._load(hdr, first_last, 0, lay.tokens, cfg.vparam_param_base, 1, 0,
                       "token multipliers")

    def _param_key(self, block):
        return block if self.plan.outer == "act" else block[1]

    def _param_of(self, block, j):
        c = self.cfg.cols
        if "all" in self.params:
            return self.params["all"], j * c
        j0 = self.j_groups[block[1]][0]
        return self.params[self._param_key(block)], (j - j0) * c

    # -- the list scheduler --------------------------------------------------------------------

    def run(self):
        cfg = self.cfg
        self._setup_outputs()
        self._deps()
        self.loads = sorted((ld for p in self.pieces for ld in p.loads),
                            key=lambda ld: ld.need)  # stable: creation order within a step
        self.li = 0
        self.gi = 0
        self.free_t = [0, 0, 0]  # estimated first cycle each unit (DMA, GEMM, VEC) is free
        self.banks = DramBanks(cfg)
        self.latency = ArrayParams.from_config(cfg).latency + cfg.rows
        self.acc_of = {}
        self.last_vec_done = -1
        self.dma_jobs = []  # [kind, ready, data]: "store" (ACC tile), "out" (VEC batch), "load"
        self.vec_jobs = []  # [tile, slot, soff, block, ready, prepared]
        # when the words of an ACC group / VEC batch are next needed: the allocation that wraps
        # around the ring onto them (their STORE's deadline)
        self.acc_allocs = [(s, len(st["acc_group"])) for s, st in enumerate(self.steps) if st["acc_group"]]
        self.acc_index = {s: k for k, (s, _) in enumerate(self.acc_allocs)}
        last_steps = [s for s, st in enumerate(self.steps) if st["last"]]
        self.batch_steps = []  # step of each VEC batch's first tile, in VEC order
        seen = set()
        for s in last_steps:
            st = self.steps[s]
            key = (st["i"], st["block"])
            if key not in seen:
                seen.add(key)
                self.batch_steps.append(s)
        self.batch_count = 0
        dur = [st["groups"] * cfg.group for st in self.steps]
        self.cum = np.concatenate([[0], np.cumsum(dur)]).tolist()
        self.avg = max(1, self.cum[-1] // max(1, len(dur)))
        while self.gi < len(self.steps) or self.vec_jobs or self.dma_jobs or self.li < len(self.loads):
            vec = self._vec_next()  # first: it may queue the DMA jobs it waits for
            cands = [c for c in (self._dma_next(), self._gemm_next(), vec) if c]
            if not cands:
                raise CompileError("internal: the schedule is stuck (scratchpad rings too small "
                                   "for the plan)")
            t, _, emit = min(cands, key=lambda c: c[:2])
            emit(t)

    def _projected(self, step):
        """Estimated start of GEMM ``step`` if the array never waits from now on."""
        if step <= self.gi:
            return self.free_t[1]
        return self.free_t[1] + self.cum[step] - self.cum[self.gi]

    # GEMM ---------------------------------------------------------------------------------------

    def _gemm_next(self):
        if self.gi >= len(self.steps):
            return None
        st = self.steps[self.gi]
        t = self.free_t[1]
        for ld in st["deps"]:
            if ld.done is None:
                return None
            t = max(t, ld.done + 1)
        fit = None
        if st["acc_group"]:
            fit = self.rings["ACC"].fit(self.cfg.rows * len(st["acc_group"]))
            if fit is None:
                return None
            for p in fit[1]:
                t = max(t, p.free_at + 1)
        return (t, 1, lambda t: self._emit_gemm(t, st, fit))

    def _emit_gemm(self, t, st, fit):
        em, cfg, r = self.em, self.cfg, self.cfg.rows
        fence = ()
        group = st["acc_group"]
        if group:
            slot = self._piece("ACC", r * len(group))
            self.rings["ACC"].commit(slot, fit)
            slot.uses = len(group)
            slot.last = self._reuse_step(self.acc_index[self.gi], self.plan.acc_slots)
            if len(group) > 1:  # the group's first GEMM waits once for every slot it reuses
                fence = (("ACC", slot.addr, slot.words),)
            for k, key in enumerate(group):
                self.acc_of[key] = (slot, k * r)
        tile = (st["i"], st["j"])
        slot, soff = self.acc_of[tile]
        a, aoff = st["act"]
        w, woff = st["wgt"]
        mt, moff = st["meta"]
        part = st["groups"] < min(self.plan.gc, self.lay.groups - st["ch"] * self.plan.gc)
        em.gemm(a.addr + aoff, w.addr + woff, mt.addr + moff, slot.addr + soff, st["groups"],
                accumulate=int(not st["first"]), fence=fence,
                comment=f"tile ({tile[0]}, {tile[1]}) chunk {st['ch']}"
                        + (f" {st['groups']} groups" if part else ""))
        d = st["groups"] * cfg.group
        done = t + d - 1 + self.latency
        self.free_t[1] = t + d
        s = self.gi
        self.gi += 1
        for p in (a, w, mt):
            if p.last == s:
                p.free, p.free_at = True, done
        if st["last"]:
            del self.acc_of[tile]
            if self.lay.out == "acc":
                self.dma_jobs.append(["store", done + 1, (tile, slot, soff)])
            else:
                self.vec_jobs.append([tile, slot, soff, st["block"], done + 1, False])

    # DMA ----------------------------------------------------------------------------------------

    def _dma_cost(self, addr, stride, rows, nbytes):
        saved = self.banks.open_rows.copy()
        d = DMA_SETUP_CYCLES + self.banks.transfer_rows(addr, stride, rows, nbytes)
        self.banks.open_rows = saved
        return d

    def _dma_next(self):
        """(start, 0, emit) of the DMA instruction to emit next: among the next queued load and
        the pending jobs, the earliest deadline, unless it must wait and another fits before."""
        cands = []
        now = self.free_t[0]
        gemm_blocked = self._acc_blocked()
        if self.li < len(self.loads):
            ld = self.loads[self.li]
            p = ld.piece
            ready, fit = now, None
            if p.addr is None:
                fit = self.rings[p.space].fit(p.words)
                if fit is not None:
                    for q in fit[1]:
                        ready = max(ready, q.free_at + 1)
            if p.addr is not None or fit is not None:
                cands.append((self._projected(ld.need), ready, ld, fit))
        for job in self.dma_jobs:
            kind, ready, data = job
            if kind in ("load", "res") or (kind == "store" and gemm_blocked) \
                    or (kind == "out" and self._out_blocked()):
                deadline = -1
            elif kind == "store":  # when the ring wraps onto its ACC words
                deadline = self._projected(data[1].last)
            else:  # a VEC batch: when the ring of batches wraps onto it
                deadline = self._projected(data[3])
            cands.append((deadline, max(now, ready), job, None))
        if not cands:
            return None
        cands.sort(key=lambda c: (c[0], c[1]))
        pick = cands[0]
        if pick[1] > now:  # it must wait: another that can go now and finish in time goes first
            for c in cands[1:]:
                if c[1] <= now and now + self._cost(c[2]) <= pick[1]:
                    pick = c
                    break
        _, ready, item, fit = pick
        return (ready, 0, lambda t: self._emit_dma(t, item, fit))

    def _cost(self, item):
        if isinstance(item, _Load):
            spad = Spad[_SPAD_OF.get(item.piece.space, item.piece.space)]
            return self._dma_cost(item.dram, item.stride, item.rows,
                                  item.words * self.cfg.word_bytes(spad))
        return 1 << 30  # jobs are not used to fill gaps

    def _reuse_step(self, k, slots):
        """Step of the ACC allocation that wraps around the ring onto allocation ``k``'s words."""
        allocs = self.acc_allocs
        room = slots - allocs[k][1]
        for s, size in allocs[k + 1:]:
            room -= size
            if room < 0:
                return s
        return len(self.steps)

    def _acc_blocked(self):
        if self.gi >= len(self.steps):
            return True
        st = self.steps[self.gi]
        return bool(st["acc_group"]) and self.rings["ACC"].fit(self.cfg.rows * len(st["acc_group"])) is None

    def _out_blocked(self):
        return bool(self.vec_jobs) and not self.vec_jobs[0][5] and \
            self.rings["OUT"].fit(self._batch_words(self.vec_jobs[0][3])) is None

    def _dma(self, t, load, spad, spad_addr, dram, words, rows, stride, comment):
        """Emit one LOAD/STORE starting (estimated) at ``t``; returns its estimated completion."""
        cfg = self.cfg
        nbytes = words * cfg.word_bytes(spad)
        d = DMA_SETUP_CYCLES + self.banks.transfer_rows(dram, stride if rows > 1 else 0, rows, nbytes)
        fn = self.em.load if load else self.em.store
        fn(spad, spad_addr, dram, words, rows=rows, stride=stride, comment=comment)
        self.free_t[0] = t + d
        return t + d - 1

    def _emit_dma(self, t, item, fit):
        cfg, lay = self.cfg, self.lay
        if isinstance(item, _Load):
            p = item.piece
            if p.addr is None:
                self.rings[p.space].commit(p, fit)
            item.done = self._dma(t, True, Spad[_SPAD_OF.get(p.space, p.space)], p.addr + item.off,
                                  item.dram, item.words, item.rows, item.stride, item.comment)
            self.li += 1
            return
        self.dma_jobs.remove(item)
        kind, _, data = item
        if kind == "store":
            (i, j), slot, soff = data
            rows = min(cfg.rows, lay.m - i * cfg.rows)
            done = self._dma(t, False, Spad.ACC, slot.addr + soff,
                             lay.y + (i * cfg.rows * lay.nb + j) * cfg.acc_word_bytes, 1, rows,
                             lay.nb * cfg.acc_word_bytes, f"Y tile ({i}, {j})")
            self._release_acc(slot, done)
        elif kind == "out":
            key, J, piece, _ = data
            i, c = key[0], cfg.cols
            done = self._dma(t, False, Spad.ACT, piece.addr,
                             lay.y + (i * lay.y_block_words + J[0] * c) * cfg.act_word_bytes,
                             len(J) * c, 1, 0, f"Y block {i} features {J[0]}..{J[-1]}")
            piece.free, piece.free_at = True, done
        else:  # "load" (token multipliers) or "res" (residual): ``data`` = args, then the job
            args, job = data
            done = self._dma(t, True, *args)
            job.append(done)

    def _release_acc(self, slot, done):
        slot.uses -= 1
        slot.free_at = max(slot.free_at, done)
        if slot.uses == 0:
            slot.free = True

    # VEC ----------------------------------------------------------------------------------------

    def _batch_words(self, block):
        return len(self.j_groups[block[1]]) * self.cfg.cols

    def _vec_next(self):
        """(start, 2, emit) of the next VEC, once its output words, residual, column and token
        multipliers are (being) loaded; prepares those loads as urgent DMA jobs."""
        if not self.vec_jobs:
            return None
        job = self.vec_jobs[0]
        tile, slot, soff, block, ready, prepared = job[:6]
        lay, cfg = self.lay, self.cfg
        i, j = tile
        key = (i, block)
        t = max(self.free_t[2], ready)
        if not prepared:
            waits = []
            if key not in self.batches:
                fit = self.rings["OUT"].fit(self._batch_words(block))
                if fit is None:
                    return None
                piece = _Piece("OUT", self._batch_words(block))
                self.rings["OUT"].commit(piece, fit)
                J = self.j_groups[block[1]]
                self.batches[key] = [piece, len(J), max([q.free_at + 1 for q in fit[1]], default=0)]
                if lay.res >= 0:  # the residual goes where the output will be: ADD works in place
                    ab, c = cfg.act_word_bytes, cfg.cols
                    rj = ["res", 0, None]
                    rj[2] = ((Spad.ACT, piece.addr, lay.res + (i * lay.res_block_words + J[0] * c) * ab,
                              len(J) * c, 1, 0, f"residual block {i} features {J[0]}..{J[-1]}"), rj)
                    rj[1] = self.batches[key][2]
                    self.dma_jobs.append(rj)
                    waits.append(rj)
            if self.per_token and self.tok_block != i:
                base, tb = cfg.vparam_param_base, cfg.vparam_token_base
                if self.tok_block is None:
                    args = (Spad.VPARAM, 0, lay.tokens + i * base * 4, base, 1, 0, f"token multipliers {i}")
                else:
                    args = (Spad.VPARAM, tb, lay.tokens + (i * base + tb) * 4, cfg.rows, 1, 0,
                            f"token multipliers {i}")
                tj = ["load", self.last_vec_done + 1, None]
                tj[2] = (args, tj)
                self.dma_jobs.append(tj)
                waits.append(tj)
                self.tok_block = i
            job[5] = True
            job.append(waits)
        for w in job[6]:
            if len(w) < 4:  # not emitted yet
                return None
            t = max(t, w[3] + 1)
        t = max(t, self.batches[key][2])
        par, _ = self._param_of(block, j)
        loads = par.loads + (self.hdr.loads if self.hdr is not None else [])
        if any(ld.done is None for ld in loads):
            return None
        t = max(t, max(ld.done for ld in loads) + 1)
        return (t, 2, lambda t: self._emit_vec(t, job))

    def _emit_vec(self, t, job):
        em, lay, cfg = self.em, self.lay, self.cfg
        (i, j), slot, soff, block = job[:4]
        key = (i, block)
        piece = self.batches[key][0]
        J = self.j_groups[block[1]]
        o = piece.addr + (j - J[0]) * cfg.cols
        par, poff = self._param_of(block, j)
        rows = min(cfg.rows, lay.m - i * cfg.rows)
        em.vec(self.vec_func, slot.addr + soff, o, par.addr + poff, rows,
               res_addr=o if lay.res >= 0 else 0,
               comment=f"{VecFunc(self.vec_func).name.lower()} tile ({i}, {j})")
        d = rows + cfg.cols + VEC_FILL_CYCLES
        done = t + d - 1
        self.free_t[2] = t + d
        self.last_vec_done = done
        self.vec_jobs.pop(0)
        self._release_acc(slot, done)
        par.uses -= 1
        par.free_at = max(par.free_at, done)
        if par.uses == 0:
            par.free = True
        self.batches[key][1] -= 1
        if self.batches[key][1] == 0:
            nring = max(1, (self.plan.out_words // piece.words))
            k = self.batch_count + nring - 1
            reuse = self.batch_steps[k] if k < len(self.batch_steps) else len(self.steps)
            self.batch_count += 1
            self.dma_jobs.append(["out", done + 1, (key, J, piece, reuse)])
            del self.batches[key]


def compile_linear(config, x_or_shape, qw, *, seed=None, **options):
    """The :class:`~mixpim.models.program.Program` of ``Y = X W^T`` (see :func:`lower_linear` for
    the options and :attr:`Program.symbols` for where ``x``, ``w``, ``meta`` and ``y`` are)."""
    return lower_linear(config, x_or_shape, qw, seed=seed, **options).program
