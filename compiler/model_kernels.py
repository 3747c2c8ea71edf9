"""The kernels of a whole-model program (module doc of :mod:`.model_build`): a Linear layer into
accumulators (:func:`linear_acc`), a VEC epilogue of its tiles (:func:`epilogue`), and a residual
update followed by a LayerNorm / RMSNorm (:func:`residual_norm`).

Scratchpad regions (:class:`Regions`, from the configuration): ACC tile slots and the residual
block; ACT output slots; VPARAM: the norm words, the epilogue's parameter slots, then the softmax
multipliers (:mod:`.prefill_attention`). Linear layers use their own ring buffers over whole
scratchpads; the token pass orders any overlap.
"""

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from mixpim.models.executor import pack_acc
from mixpim.models.isa import NormFunc, Opcode, Spad, VecFunc
from mixpim.models.quant import num_groups
from mixpim.models.vector import fixed_multiplier, pack_vparam, vparam_header

from .emit import CompileError
from .layout import LinearLayout
from .linear import emit_linear
from .model_build import Blank, Slots, int32_words
from .operands import weight_blocks
from .record import record

__all__ = ["Regions", "TileOut", "NormParams", "PackedLinear", "pack_linear", "linear_acc", "epilogue",
           "residual_norm", "norm_words", "blank_linear", "start_program", "param_blocks", "acc_multipliers",
           "RES_HEADROOM_BITS", "D_KEEP_BITS", "residual_units", "residual_image"]

_SLOTS = 4
#: The residual stream's calibrated maximum uses at most 2**RES_HEADROOM_BITS of the int32 range.
RES_HEADROOM_BITS = 30
#: Bits a norm keeps of ``x - mean`` (VNORM's ``d`` is 24 bits, saturating).
D_KEEP_BITS = 22


def residual_units(max_abs):
    """``(res_frac, qshift)`` of a residual stream whose calibrated maximum is ``max_abs``: its
    unit ``2**-res_frac`` and the norms' shift of ``x - mean`` (docs/numerics.md, "Norms")."""
    frac = int(math.floor(RES_HEADROOM_BITS - math.log2(max_abs)))
    return frac, max(0, int(math.ceil(math.log2(2 * max_abs) + frac)) - D_KEEP_BITS)


def residual_image(cfg, values, frac):
    """:class:`~.model_build.ResTensor` bytes of float ``values`` (tokens, hidden) in units of
    ``2**-frac`` (tile-major ACC words)."""
    r, c = cfg.rows, cfg.cols
    m, d = values.shape
    mb, nb = -(-m // r), -(-d // c)
    v = np.zeros((mb * r, nb * c), np.int64)
    v[:m, :d] = np.rint(np.ldexp(np.asarray(values, np.float64), frac))
    return pack_acc(cfg, v.reshape(mb, r, nb, c).transpose(0, 2, 1, 3).reshape(-1, c))


@dataclass(frozen=True)
class Regions:
    """Fixed scratchpad regions of the model kernels (words): ``acc_tiles`` (tile slots) and
    from ``res_base`` a token block's residual (or attention's scores) in ACC; ``act_out``
    (output slots) in ACT; ``nparam`` (a norm's two words), ``vp_slots`` (column parameters) and
    from ``soft_base`` the softmax multipliers in VPARAM."""

    acc_tiles: Slots
    res_base: int
    act_out: Slots
    nparam: int
    vp_slots: Slots
    soft_base: int

    def restart(self):
        """Every slot ring from its first slot again (the next piece takes slot 0)."""
        for slots in (self.acc_tiles, self.act_out, self.vp_slots):
            slots.taken = 0

    @classmethod
    def of(cls, cfg, hidden):
        r, c = cfg.rows, cfg.cols
        nb = -(-hidden // c)
        acc_tiles = Slots(0, r, _SLOTS)
        if acc_tiles.end + nb * r > cfg.acc_words:
            raise CompileError(f"acc_words ({cfg.acc_words}) cannot hold a token block's residual "
                               f"({nb} x {r} words) beside {_SLOTS} tiles; use at least "
                               f"{acc_tiles.end + nb * r}")
        pb = cfg.vparam_param_base
        vp = Slots(pb + 2, 2 * c, _SLOTS)
        if vp.end > cfg.vparam_words:
            raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot hold the norm words and "
                               f"{_SLOTS} column-parameter slots; use at least {vp.end}")
        return cls(acc_tiles, acc_tiles.end, Slots(0, max(r, c), _SLOTS), pb, vp, vp.end)


def param_blocks(cfg, first, second=None):
    """VPARAM image (bytes) of per-column parameters, ``2 cols`` words per feature block: the
    block's ``cols`` words of ``first``, then its ``cols`` words of ``second`` (each 4 bytes a
    column: :func:`~mixpim.models.vector.pack_vparam` multipliers, or int32 biases; None: zeros);
    the last block is padded with zero words."""
    c = cfg.cols
    a = np.frombuffer(first, "<u4")
    nb = -(-len(a) // c)
    words = np.zeros((2, nb * c), "<u4")
    words[0, :len(a)] = a
    if second is not None:
        words[1, :len(a)] = np.frombuffer(second, "<u4")
    return words.reshape(2, nb, c).transpose(1, 0, 2).tobytes()


def acc_multipliers(qw, scale):
    """Column multipliers ``(mult, shift)`` taking a Linear's FP16 accumulators (column n in units
    of ``2**-24 2**-e[n]``, :func:`~mixpim.models.mixpe.output_to_float`) to units of
    ``1 / scale[n]`` (``scale`` a float or one per column)."""
    n = qw.codes.shape[0]
    return fixed_multiplier(np.ldexp(np.broadcast_to(np.asarray(scale, np.float64), (n,)),
                                     -24 - qw.scales.exp.astype(np.int64)))


def start_program(b):
    """The identity token multipliers (VPARAM words 64 ..), loaded once at the start."""
    cfg = b.cfg
    hdr = vparam_header(cfg)
    base = b.region("vparam_header", len(hdr), 4, hdr)
    b.load(Spad.VPARAM, 0, base, len(hdr) // 4, comment="identity token multipliers")


@dataclass(frozen=True)
class PackedLinear:
    """A Linear's weights (``qw``) and their DRAM images (``wgt``, ``meta`` bytes), packed once
    per model (:func:`pack_linear`) and placed in every program that uses them; ``shape``
    ``(N, K)``. A Linear known only by its shape (:func:`blank_linear`) has no ``qw`` and
    :class:`~.model_build.Blank` images."""

    qw: object
    wgt: bytes
    meta: bytes
    shape: tuple


def pack_linear(cfg, qw):
    """The :class:`PackedLinear` of ``qw`` for ``cfg``."""
    w_blocks, m_blocks = weight_blocks(cfg, qw)
    return PackedLinear(qw, b"".join(w_blocks), b"".join(m_blocks), tuple(qw.codes.shape))


def _linear_words(cfg, n, k):
    """``(nb, g, kw)`` of an ``N x K`` Linear: feature blocks, groups, K words per block."""
    g = num_groups(k, cfg.group)
    return -(-n // cfg.cols), g, g * cfg.group


def blank_linear(cfg, n, k):
    """The :class:`PackedLinear` of an ``n x k`` Linear without weights (timing only)."""
    nb, g, kw = _linear_words(cfg, n, k)
    return PackedLinear(None, Blank(nb * kw * cfg.wgt_word_bytes), Blank(nb * g * cfg.meta_word_bytes),
                        (n, k))


def linear_acc(b, name, x, lin, *, out="y", tune=True):
    """``Y = X W^T`` into accumulators: a Linear layer (:func:`~.linear.emit_linear`) reading the
    :class:`ActTensor` ``x`` with the weights of ``lin`` (:class:`PackedLinear`, placed under
    ``name``); the output goes to the workspace ``out``. Returns the :class:`AccRows`."""
    cfg = b.cfg
    n, k = lin.shape
    if k != x.k:
        raise CompileError(f"internal: {name} has K={k}, its input {x.k} features")
    nb, g, kw = _linear_words(cfg, n, k)
    mb = -(-x.m // cfg.rows)
    wb, mbb = cfg.wgt_word_bytes, cfg.meta_word_bytes
    w = b.region(f"{name}.w", nb * kw * wb, wb, lin.wgt)
    meta = b.region(f"{name}.meta", nb * g * mbb, mbb, lin.meta)
    y = b.acc_rows(out, x.m, n)
    lay = LinearLayout(b.linear_config, x.m, n, k, mb, nb, g, 0, "", "acc", x.base, w, meta, y.base,
                       x_block_words=x.kw)
    _emit_linear(b, lay, tune)
    return y


#: Layouts a compiler's ``linear_memo`` holds before it starts again.
LINEAR_MEMO_SIZE = 2048


def _emit_linear(b, lay, tune):
    """:func:`~.linear.emit_linear` into ``b``. With ``b.linear_memo`` each layout is scheduled
    once and its recorded stream emitted again by later programs: the scheduler only emits, so
    the instructions are a function of the layout (the tokens are planned in each program).

    A layout whose weights and group scales lie whole row groups (``dram_channels *
    dram_banks`` DRAM rows) away from a scheduled one's, all else equal, is the same stream with
    those LOADs moved: every access stays in its channel and bank, regions never share a DRAM
    row (:class:`~.dram_alloc.DramAllocator`), so the scheduler's DRAM timing, and with it every
    choice it makes, is the same (the blocks of a timing-only model, :mod:`.llama_shapes`)."""
    memo = b.linear_memo
    if memo is None:
        emit_linear(b.em, lay, tune=tune)
        return
    cfg = lay.config
    group = cfg.dram_channels * cfg.dram_banks * cfg.dram_row_bytes
    key = (tune, *(getattr(lay, f.name) % group if f.name in ("w", "meta") else getattr(lay, f.name)
                   for f in dataclasses.fields(lay)))
    hit = memo.get(key)
    if hit is None:
        w, meta = lay.w, lay.meta
        with record(b) as calls:
            emit_linear(b.em, lay, tune=tune)
        if len(memo) >= LINEAR_MEMO_SIZE:
            memo.clear()
        memo[key] = hit = (calls, w, meta)
    calls, w, meta = hit
    moves = [(lo, size, new - lo) for lo, new, size in
             ((w, lay.w, lay.nb * lay.groups * cfg.group * cfg.wgt_word_bytes),
              (meta, lay.meta, lay.nb * lay.groups * cfg.meta_word_bytes)) if new != lo]
    for c in calls:
        inst = c.inst
        if moves and inst.op == Opcode.LOAD:
            a = inst["dram_addr"]
            for lo, size, d in moves:
                if lo <= a < lo + size:
                    inst = inst.replace(dram_addr=a + d)
        b.em.append(inst, fence=c.fence, comment=c.comment)


@dataclass(frozen=True)
class TileOut:
    """Where an epilogue writes feature block ``j`` of its source: VEC ``func`` / ``fmt`` with the
    column parameters at DRAM ``params`` (``2 cols`` words: multipliers, biases; ``bias`` says
    whether the biases are used), into ``tensor`` (an :class:`ActTensor` at feature ``at``, or a
    :class:`DirectTensor` at feature block ``at``: ``direct``)."""

    params: int
    func: VecFunc
    fmt: int
    bias: bool
    tensor: object
    at: int
    direct: bool = False


def epilogue(b, reg, y, outs):
    """VEC over every tile of the accumulators ``y`` (:class:`AccRows`): feature block ``j``
    goes as ``outs[j]`` (:class:`TileOut`, or None: not here) says. Per feature block its
    parameters are loaded once; per token block one strided LOAD of the tile, one VEC, one STORE."""
    cfg = b.cfg
    r, c = cfg.rows, cfg.cols
    mb = -(-y.m // r)
    for j, out in enumerate(outs):
        if out is None:  # written by another epilogue
            continue
        vp = reg.vp_slots.take()
        b.load(Spad.VPARAM, vp, out.params, 2 * c, comment=f"epilogue params, block {j}")
        for i in range(mb):
            ri = min(r, y.m - i * r)
            a = reg.acc_tiles.take()
            b.load(Spad.ACC, a, y.addr(cfg, i * r, j), 1, rows=ri, stride=y.nb * cfg.acc_word_bytes)
            o = reg.act_out.take()
            b.op("VEC", func=out.func, acc_addr=a, act_addr=o, param_addr=vp, rows=ri, fmt=out.fmt,
                 direct=int(out.direct), bias=int(out.bias))
            if out.direct:
                b.store(Spad.ACT, o, out.tensor.addr(cfg, out.at, i * r), ri)
            else:
                b.store_act(o, out.tensor, i, out.at, c)


@dataclass(frozen=True)
class NormParams:
    """A norm's DRAM words: ``nparam`` (mean multiplier, eps), per feature block ``2 cols`` words
    (gamma multipliers, biases) at ``act`` for the FP16 ACT output and at ``res`` for the residual
    output (None: no residual output); ``rms``; ``qshift``."""

    nparam: int
    act: int
    res: int
    rms: bool
    qshift: int


def norm_words(cfg, hidden, gamma, beta, *, eps, rms, res_frac, out_frac, qshift):
    """The VPARAM images of a norm (bytes): ``(nparam, act_params, res_params)``. The residual is
    in units of ``2**-res_frac``; ``out_frac``: the output unit of the ACT copy (16: FP16);
    ``res_params`` writes the normed value back in residual units (a post-norm residual)."""
    c = cfg.cols
    nb = -(-hidden // c)
    hm, hs = fixed_multiplier(1.0 / hidden)
    d_unit = 2.0 ** (qshift - res_frac)
    eps_word = int(round(hidden * eps / d_unit ** 2))
    if eps_word >= 1 << 32:
        raise CompileError(f"internal: norm eps {eps} is {eps_word} in units of d**2, beyond 32 bits")
    nparam = pack_vparam(hm, hs) + np.array([eps_word], "<u4").tobytes()

    def blocks(frac):
        g = np.zeros(nb * c)
        bt = np.zeros(nb * c)
        g[:hidden], bt[:hidden] = gamma, beta
        gm, gs = fixed_multiplier(np.sqrt(hidden) * g * 2.0 ** (frac - 19))
        return param_blocks(cfg, pack_vparam(gm, gs), int32_words(np.rint(bt * 2.0 ** frac)))
    return nparam, blocks(out_frac), blocks(res_frac)


def residual_norm(b, reg, res_in, norm, x_out, res_out, *, update=None, ops=None):
    """Per token block: LOAD the residual (:class:`ResTensor` ``res_in``) into ACC; with
    ``update`` ``(y, params)`` add the Linear output ``y`` (:class:`AccRows`; VEC RES, column
    multipliers and biases at DRAM ``params``, ``2 cols`` words per feature block); then the norm
    (:class:`NormParams`): SUM (LayerNorm), SQ, NORM into ACT (FP16) stored to ``x_out``
    (:class:`ActTensor`), and with ``norm.res`` a second NORM into the residual rows (a post-norm
    block). The residual is stored to ``res_out`` when it changed (an update or ``norm.res``).
    ``ops``: the operators ``(residual add, norm)`` of the instructions (default: the caller's)."""
    if ops is None:
        _residual_norm(b, reg, res_in, norm, x_out, res_out, update, None)
        return
    with b.operator(ops[1]):
        _residual_norm(b, reg, res_in, norm, x_out, res_out, update, ops[0])


def _residual_norm(b, reg, res_in, norm, x_out, res_out, update, add_op):
    cfg = b.cfg
    r, c = cfg.rows, cfg.cols
    nb, mb = res_in.nb, -(-res_in.m // r)
    base = reg.res_base
    b.load(Spad.VPARAM, reg.nparam, norm.nparam, 2, comment="norm mean multiplier, eps")
    for i in range(mb):
        ri = min(r, res_in.m - i * r)
        if update is not None:
            with b.operator(add_op) if add_op else nullcontext():
                b.load(Spad.ACC, base, res_in.addr(cfg, i), nb * r, comment=f"residual block {i}")
                _residual_add(b, reg, update, i, ri, base, nb)
        else:
            b.load(Spad.ACC, base, res_in.addr(cfg, i), nb * r, comment=f"residual block {i}")
        common = dict(rows=ri, qshift=norm.qshift, rms=int(norm.rms), nparam=reg.nparam)
        passes = ([] if norm.rms else [NormFunc.SUM]) + [NormFunc.SQ]
        for func in passes:
            for j in range(nb):
                b.op("VNORM", func=func, acc_addr=base + j * r, first=int(j == 0), **common)
        outs = [(norm.act, False)] + ([(norm.res, True)] if norm.res is not None else [])
        for params, to_acc in outs:
            for j in range(nb):
                vp = reg.vp_slots.take()
                b.load(Spad.VPARAM, vp, params + j * 2 * c * 4, 2 * c)
                if to_acc:
                    b.op("VNORM", func=NormFunc.NORM, acc_addr=base + j * r, act_addr=base + j * r,
                         param_addr=vp, to_acc=1, **common)
                else:
                    o = reg.act_out.take()
                    b.op("VNORM", func=NormFunc.NORM, acc_addr=base + j * r, act_addr=o,
                         param_addr=vp, fmt=1, **common)
                    b.store_act(o, x_out, i, j * c, c)
        if update is not None or norm.res is not None:
            with b.operator(add_op) if add_op and norm.res is None else nullcontext():
                b.store(Spad.ACC, base, res_out.addr(cfg, i), nb * r, comment=f"residual block {i}")


def _residual_add(b, reg, update, i, ri, base, nb):
    """Token block i of the residual (ACC ``base``, ``nb`` feature blocks) += the Linear output
    of ``update``."""
    cfg = b.cfg
    r, c = cfg.rows, cfg.cols
    y, params = update
    for j in range(nb):
        vp = reg.vp_slots.take()
        b.load(Spad.VPARAM, vp, params + j * 2 * c * 4, 2 * c)
        a = reg.acc_tiles.take()
        b.load(Spad.ACC, a, y.addr(cfg, i * r, j), 1, rows=ri, stride=y.nb * cfg.acc_word_bytes)
        b.op("VEC", func=VecFunc.RES, acc_addr=a, res_addr=base + j * r, param_addr=vp,
             rows=ri, bias=1, comment="residual += projection")
