"""Planning a Linear layer: :class:`LinearPlan`, the cost model and the enumeration of plans.

A plan tiles the ``M x N`` outputs into blocks of ``bm x bn`` tiles, cuts K into chunks of ``gc``
groups and picks the resident operand (docs/compiler.md, "Tile and plan"). :func:`plan_candidates`
lists every plan whose buffers fit the scratchpads and whose LOADs fit the ISA fields, best
estimate first; :func:`plan_linear` takes the first. The estimate (:func:`plan_cost`) is a cost
model, not the cycle model: :mod:`.tune` runs the best few on the cycle model.
"""

from dataclasses import dataclass

from mixpim.models.dram_timing import DMA_SETUP_CYCLES
from mixpim.models.isa import Opcode, reach
from mixpim.models.quant import num_groups
from mixpim.models.tile_timing import gemm_cycles

from .emit import CompileError

__all__ = ["LinearPlan", "ACC_SLOTS_STREAMING", "DMA_MARGIN", "max_chunk_groups", "choose_order",
           "plan_cost", "plan_candidates", "plan_linear"]

#: Most ACC tiles in flight when K is one chunk: enough slack for the outputs to trail the GEMMs,
#: few enough that GEMM->DMA/VEC tokens stay well inside the 3-bit counters.
ACC_SLOTS_STREAMING = 6

#: The cost model charges the DMA this much more than its sum of transfers (queueing, WAR
#: waits): plans that keep the DMA nearly saturated stall the array in practice.
DMA_MARGIN = 1.15

# ISA limits of a plan (models/isa tables). A piece's strided LOAD moves one row per token
# (feature) block of the block, each row one K chunk's beats (META: its groups), consecutive
# blocks a whole K apart in DRAM; a GEMM streams at most one chunk.
_LOAD_WORDS = reach(Opcode.LOAD, "words")
_LOAD_ROWS = reach(Opcode.LOAD, "rows")
_LOAD_STRIDE = reach(Opcode.LOAD, "stride")
_GEMM_GROUPS = reach(Opcode.GEMM, "groups")


def max_chunk_groups(cfg, groups, act_reserved):
    """Largest number of groups per K chunk (at most ``groups``) whose two buffers fit ACT (less
    ``act_reserved`` words), WGT and META. Raises :class:`CompileError` when not even one fits."""
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
    """How :func:`~.linear.emit_linear` tiles and orders one layer.

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


# -- the cost model ----------------------------------------------------------------------------

def _dma_estimate(cfg, nbytes, dma_rows=1):
    """Rough DMA cycles of a transfer of ``dma_rows`` strided rows totalling ``nbytes``: the
    terms of the DRAM timing formula (:mod:`mixpim.models.dram_timing`) with every row a fresh
    DRAM row that misses (``DMA_SETUP_CYCLES``; ``t_ccd_l`` per bus beat; ``t_cl + t_rcd +
    t_rp`` per row, as if nothing overlapped), contiguous bytes one DRAM row per ``row_bytes``."""
    if nbytes <= 0:
        return 0.0
    runs = dma_rows + nbytes / cfg.dram_row_bytes
    return (DMA_SETUP_CYCLES + nbytes / cfg.dram_bus_bytes * cfg.t_ccd_l
            + runs * (cfg.t_cl + cfg.t_rcd + cfg.t_rp))


def _sizes(total, size):
    """``{group size: count}`` of ``total`` blocks cut into groups of ``size``."""
    full, rest = divmod(total, size)
    out = {size: full} if full else {}
    if rest:
        out[rest] = out.get(rest, 0) + 1
    return out


def plan_cost(cfg, m, n, g, out, per_token, outer, bm, bn, gc):
    """Estimated cycles of a plan: per block of tiles and K chunk the slower of the array (GEMM
    busy cycles, :func:`~mixpim.models.tile_timing.gemm_cycles`) and the DMA (the next chunk's
    pieces and the block's outputs overlap the GEMMs; the DMA charged :data:`DMA_MARGIN` more),
    the first chunk without overlap (its loads are not prefetched), plus the start (one group's
    loads) and the end (the last GEMM's tail and the last tile's output)."""
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    nc = -(-g // gc)
    ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
    n_i, n_j = -(-mb // bm), -(-nb // bn)
    n_inner = n_j if outer == "act" else n_i
    resident = nc == 1
    one_group = gemm_cycles(cfg, 1)  # busy: array cycles per group; tail: the drain after the last
    if out == "acc":  # one STORE of ``rows`` strided rows of accumulators per tile
        tile_out = r * _dma_estimate(cfg, c * cfg.acc_elem_bytes) - (r - 1) * DMA_SETUP_CYCLES
    else:  # a tile's share of its group's STORE, plus a token-multiplier LOAD per token block
        tile_out = _dma_estimate(cfg, bn * c * ab) / bn + (DMA_SETUP_CYCLES + r if per_token else 0)
    total = 0.0
    first = None
    for si, ni in _sizes(mb, bm).items():
        for sj, nj in _sizes(nb, bn).items():
            count = ni * nj
            for ch in range(nc):
                gch = min(gc, g - ch * gc)
                kwc = gch * cfg.group
                gemm = si * sj * gch * one_group.busy
                a_load = _dma_estimate(cfg, si * kwc * ab, si)
                w_load = _dma_estimate(cfg, sj * kwc * wb, sj) + _dma_estimate(cfg, sj * gch * mbb, sj)
                if first is None:  # the first block's first chunk: nothing prefetched
                    first = max(gemm, a_load + w_load) - gemm
                if resident and outer == "act":
                    a_load /= n_inner
                elif resident:
                    w_load /= n_inner
                outs = si * sj * tile_out if ch == nc - 1 else 0.0
                total += max(gemm, DMA_MARGIN * (a_load + w_load + outs)) * count
    start = (_dma_estimate(cfg, cfg.group * ab) + _dma_estimate(cfg, cfg.group * wb)
             + _dma_estimate(cfg, mbb))
    return total + first + start + one_group.tail + tile_out * (bn if out == "int8" else 1)


# -- plans that fit ----------------------------------------------------------------------------

def _plan_fits(cfg, m, n, g, out, act_base, outer, bm, bn, gc):
    """The :class:`LinearPlan` if its buffers fit the scratchpads and its instructions the ISA
    fields, else None."""
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
    if kwc > _LOAD_WORDS or bm > _LOAD_ROWS or bn > _LOAD_ROWS or gc > _GEMM_GROUPS:
        return None
    kw = g * cfg.group  # strides of the LOADs of several blocks
    if bm > 1 and kw * cfg.act_word_bytes > _LOAD_STRIDE:
        return None
    if bn > 1 and max(kw * cfg.wgt_word_bytes, g * cfg.meta_word_bytes) > _LOAD_STRIDE:
        return None
    slots = cfg.acc_words // r
    tiles = bm * bn
    if nc == 1:
        acc = min(slots, max(ACC_SLOTS_STREAMING, tiles + 2))  # the start's K-outer block
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


def _block_sizes(total):
    """Block sizes worth trying for ``total`` blocks: powers of two below it, and it."""
    out, v = set(), 1
    while v < total:
        out.add(v)
        v *= 2
    out.add(total)
    return sorted(out)


def plan_candidates(cfg, m, n, k, *, out="acc", per_token=False, order="auto", chunk_groups=None,
                    block=None, act_base=0):
    """Every plan whose buffers fit, best estimate first (ties: fewer chunks, smaller blocks,
    ``"act"`` outer). ``order``, ``chunk_groups`` and ``block`` pin those choices (see
    :func:`plan_linear`); ``act_base``: ACT words below it are not the layer's.

    Raises :class:`CompileError` when no plan fits."""
    g = num_groups(k, cfg.group)
    r, c = cfg.rows, cfg.cols
    mb, nb = -(-m // r), -(-n // c)
    orders = ("act", "wgt") if order == "auto" else (order,)
    if chunk_groups is None:
        gcs = sorted({-(-g // nc) for nc in range(1, g + 1)}, reverse=True)
    else:
        gcs = [int(chunk_groups)]
    if block is None:
        bms, bns = _block_sizes(mb), _block_sizes(nb)
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
                    cost = plan_cost(cfg, m, n, g, out, per_token, outer, bm, bn, gc)
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
    estimated cycles (:func:`plan_cost`); ties prefer fewer, larger chunks and smaller blocks.
    ``order`` (``"act"``/``"wgt"``), ``chunk_groups`` and ``block`` (``(bm, bn)``) pin those
    choices. (:func:`~.linear.lower_linear` refines this choice with the cycle model, see
    ``tune`` and :mod:`.tune`.)

    Raises :class:`CompileError` when no plan fits."""
    return plan_candidates(config, m, n, k, out=out, per_token=per_token, order=order,
                           chunk_groups=chunk_groups, block=block, act_base=act_base)[0]
