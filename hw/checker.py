"""Dispatch-time checks of the tile: the configuration-dependent errors of one decoded instruction.

Combinational (latency 0). The same checks, in the same order, as
:func:`mixpim.models.tile_timing.check_instruction` (docs/tile.md, "Decoding rules"): the first
failing check of the instruction's opcode gives the code; decode errors (``ILLEGAL_OPCODE``,
``BAD_FIELD`` from :class:`~.decoder.InstructionDecoder`) are reported before these by the
dispatcher, so every field here is at least its format's minimum (``rows``, ``words``, ``chans``,
``banks``, ``n``, ``len``, ``count``, ``groups`` at least 1).

VSOFT and VNORM on a tile without that datapath, and PIM instructions on a tile without its PIM
unit, are ``ILLEGAL_OPCODE`` (:meth:`~mixpim.models.config.TileConfig.missing_datapath`), before
their other checks.

The PIM checks are :func:`mixpim.models.pim.pim_problem`'s (``PIM_RANGE``), then the scratchpad
words of the footprint (:func:`mixpim.models.footprint.footprint`): a PIM_GBUF's ACT words (the last channel's source
reaches furthest; all channels share the first one's when ``act_stride`` is 0), a PIM_READ's ACC
words (the last channel's last word reaches furthest, ``word_stride`` and ``chan_stride`` being
non-negative). VEC, VSOFT, VNORM and GEMM: the ``BAD_FIELD`` checks of
``mixpim.models.tile_timing._vec_problem`` (``_vsoft_problem``, ``_vnorm_problem``,
``_gemm_problem``), then the scratchpad words of the footprint in its order (``SPAD_RANGE``).

Every sum and product is the model's, exact (no wrap), but no wider than the comparison it feeds
needs (the helpers below; each docstring says why it is exact):

* a quantity compared with a bound is *clipped* (:class:`_Clip`): bits above the bound's width
  already decide the comparison, so sums and products are taken over the bound's width only;
* a check decides the code only when the checks before it passed (:func:`_first`), so it may use
  their bounds: after ``rows > cfg.rows`` is false, ``rows`` has the width of ``cfg.rows``
  (:func:`_at_most`); after a LOAD's scratchpad words fit, ``rows`` and ``words`` are at most the
  deepest scratchpad's depth; after the alignment checks, DRAM addresses and strides (PIM_GEMV
  columns and lengths) drop their low zero bits, the bound its low bits;
* comparisons with constants are AND/OR logic (:meth:`_Arith.gt`), constant factors shifts and
  adds (:func:`_times`), divisibility a tree of residue tables (:meth:`_Arith.multiple_of`): no
  carry chains, multipliers or dividers for them; a narrow count is added to the low bits of an
  address only (:meth:`_Arith.exceeds_plus`).
"""

from functools import reduce
from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib.wiring import In, Out

from ..models.isa import ErrorCode, NormFunc, Opcode, ProbFormat, SoftFunc, Spad, VecFunc
from ..models.pim import PIM_OPS
from ..models.tile_array import wsrc_supported
from .common import ConfigComponent
from .decoder import operand_layout

__all__ = ["DispatchChecker"]


def _first(checks):
    """``checks``: [(condition, code)] in order -> the code of the first true one, else OK.

    A condition is only seen when every one before it is false: it may assume their bounds."""
    return reduce(lambda acc, c: Mux(c[0], c[1], acc), reversed(checks), ErrorCode.OK)


# -- exact comparisons and arithmetic, no wider than they need to be -----------------------------

def _times(x, c):
    """``x * c`` for a constant ``c >= 0``: a sum of shifted copies of ``x`` (Yosys would give a
    constant factor that is not a power of two a DSP multiplier)."""
    terms = [Value.cast(x) << i for i in range(c.bit_length()) if (c >> i) & 1]
    return sum(terms[1:], terms[0]) if terms else Const(0)


def _mul(x, y):
    """``x * y`` (unsigned): a multiplexer where a factor is one bit, else a multiplier."""
    x, y = Value.cast(x), Value.cast(y)
    if len(x) > len(y):
        x, y = y, x
    if len(x) == 0:
        return Const(0)
    if len(x) == 1:
        return Mux(x, y, 0)
    return x * y


def _at_most(x, bound):
    """``x`` in the width of ``bound``: exact where ``x <= bound``, which the caller knows from an
    earlier check of the instruction wherever its result decides the code (:func:`_first`)."""
    return Value.cast(x)[:bound.bit_length()]


def _less_one(x):
    """``x - 1`` for an ``x >= 1`` (a field at least its minimum), in ``x``'s width."""
    x = Value.cast(x)
    return (x - 1)[:len(x)]


def _floor_div(x, d):
    """``x // d`` for a constant ``d >= 1``: a shift when ``d`` is a power of two."""
    if d & (d - 1) == 0:
        return Value.cast(x) >> (d.bit_length() - 1)
    return Value.cast(x) // d


def _ceil_div(x, d):
    """``ceil(x / d)`` for a constant ``d >= 1``: ``(x + d - 1) // d``, a shift when ``d`` is a
    power of two."""
    return _floor_div(x + (d - 1), d)


def _trailing_zeros(c):
    """The largest ``e`` with ``2 ** e`` dividing the constant ``c >= 1``."""
    return (c & -c).bit_length() - 1


class _Clip(NamedTuple):
    """A non-negative integer seen against a bound ``limit``: where ``over`` is 1, the integer
    exceeds ``limit``; where it is 0, ``value`` is the integer exactly. A comparison with any
    constant up to ``limit`` is then ``over | value > k`` (:meth:`_Arith.exceeds`), however wide
    the integer would be."""
    over: Value
    value: Value
    limit: int


class _Arith:
    """Exact comparisons and sums, their signals driven in a submodule of ``m`` (unconditionally,
    whatever ``m``'s ``Switch`` or ``If`` they are built in: a residue is shared by every use).
    Sums, products and residues are signals of their own (:meth:`wire`): the simulator then
    computes one once, not once for each bit of it that a comparison slices."""

    def __init__(self, m):
        self._m = m.submodules.arith = Module()
        self._residues = {}  # (repr(x), m) -> x % m: one tree per value and modulus

    def wire(self, x):
        """``x`` as a signal (driven combinationally), unless it is one already."""
        if isinstance(x, (Signal, Const)):
            return x
        x = Value.cast(x)
        w = Signal(x.shape())
        self._m.d.comb += w.eq(x)
        return w

    def gt(self, x, k):
        """``x > k`` for an unsigned ``x`` and a constant ``k``, as AND/OR logic (LUTs; Yosys
        would make a carry-chain comparator, several times the cells).

        Exact: from the lowest bit up, ``gt`` is ``x[:i+1] > k[:i+1]``: where ``k``'s bit ``i``
        is 1, ``x``'s must be 1 too and the lower bits greater; where it is 0, ``x``'s bit 1
        suffices, else the lower bits decide."""
        x = Value.cast(x)
        if k < 0:
            return Const(1)
        if k >= (1 << len(x)) - 1:
            return Const(0)
        if x.shape().signed:
            x = x.as_unsigned()
        gt = Const(0)
        for i in range(len(x)):
            gt = (x[i] & gt) if (k >> i) & 1 else (x[i] | gt)
        return gt

    def lt(self, x, k):
        """``x < k`` for an unsigned ``x`` and a constant ``k`` (:meth:`gt`)."""
        return ~self.gt(x, k - 1)

    def table(self, index, f, width):
        """The constant function ``f`` of an unsigned ``index``, ``width`` bits: a word of a
        constant (logic after Yosys folds the constant; a shift in the simulator)."""
        index = Value.cast(index)
        words = sum(f(v) << (v * width) for v in range(1 << len(index)))
        return Const(words, width << len(index)).word_select(index, width)

    def residue(self, x, m):
        """``x % m`` for an unsigned ``x`` and an odd constant ``m > 1``, as a tree of small
        tables (Yosys maps ``%`` to a divider: hundreds of cells per bit).

        Exact: ``x`` is the sum of its 4-bit digits ``d_i * 2 ** (4 i)``; each leaf is
        ``d_i * (2 ** (4 i) % m) % m``, each node adds two residues modulo ``m``."""
        key = (repr(x), m)
        if key in self._residues:
            return self._residues[key]
        x = Value.cast(x)
        width = (m - 1).bit_length()
        level = [self.table(x[i:i + 4], lambda d, w=pow(2, i, m): d * w % m, width)
                 for i in range(0, len(x), 4)]
        while len(level) > 1:
            pairs = [self.table(Cat(a, b), lambda v: ((v & ((1 << width) - 1)) + (v >> width)) % m,
                                width)
                     for a, b in zip(level[::2], level[1::2])]
            level = pairs + level[len(pairs) * 2:]
        self._residues[key] = self.wire(level[0])
        return self._residues[key]

    def multiple_of(self, x, m):
        """``x % m == 0`` for an unsigned ``x`` and a constant ``m >= 1``: the low zero bits of
        ``m`` are zero in ``x`` and ``x`` is a multiple of ``m``'s odd factor (:meth:`residue`);
        exact, the two factors being coprime."""
        x = Value.cast(x)
        e = _trailing_zeros(m)
        low = ~x[:e].any() if e else Const(1)
        odd = m >> e
        return low & (self.residue(x, odd) == 0) if odd > 1 else low

    def within(self, diff, lo, hi):
        """``lo < diff < hi`` for a signed ``diff`` and constants ``lo < 0 < hi``: by its sign,
        a comparison of its two's-complement bits with a constant (:meth:`gt`)."""
        diff = self.wire(diff)
        bits = diff.as_unsigned()
        return Mux(diff[-1], self.gt(bits, (1 << len(diff)) + lo), self.lt(bits, hi))

    def clip(self, x, limit):
        """``x`` (unsigned) against ``limit``: exact, as bits of ``x`` above the width of
        ``limit`` make ``x >= 2 ** width > limit``."""
        x, b = Value.cast(x), limit.bit_length()
        return _Clip(x[b:].any() if len(x) > b else Const(0), x[:b], limit)

    def clip_scaled(self, x, c, limit):
        """``x * c`` for a constant ``c >= 1`` against ``limit``: exact, as ``x >= 2 ** b`` with
        ``b`` the width of ``limit // c`` makes ``x * c >= (limit // c + 1) * c > limit``; else
        the product is taken of ``x``'s low ``b`` bits (:func:`_times`)."""
        xc = self.clip(x, limit // c)
        return _Clip(xc.over, _times(xc.value, c), limit)

    def clip_product(self, x, y, limit):
        """``x * y`` (unsigned) against ``limit``: a factor above ``limit`` (:meth:`clip`) makes
        the product exceed it unless the other factor is 0; else the factors have the width of
        ``limit`` and the product is exact (then clipped itself)."""
        xc, yc = self.clip(x, limit), self.clip(y, limit)
        pc = self.clip(self.wire(_mul(xc.value, yc.value)), limit)
        return _Clip((xc.over & Value.cast(y).any()) | (yc.over & Value.cast(x).any()) | pc.over,
                     pc.value, limit)

    def total(self, *terms):
        """The sum of non-negative ``terms`` (:class:`_Clip`, or values taken as exact) against
        the smallest of their limits: exact, as a term over its limit makes the sum exceed it
        too; else every value is exact and so is their sum."""
        clips = [t if isinstance(t, _Clip) else _Clip(Const(0), Value.cast(t), float("inf"))
                 for t in terms]
        value = sum((c.value for c in clips[1:]), clips[0].value)
        return _Clip(reduce(lambda a, b: a | b, [c.over for c in clips]), self.wire(value),
                     min(c.limit for c in clips))

    def pick(self, sel, a, b):
        """:class:`_Clip` ``a`` where ``sel`` is 1, else ``b``."""
        return _Clip(Mux(sel, a.over, b.over), Mux(sel, a.value, b.value), min(a.limit, b.limit))

    def exceeds(self, q, k):
        """The :class:`_Clip` ``q``'s integer ``> k``, a constant at most its limit."""
        assert k <= q.limit, (k, q.limit)
        return q.over | self.gt(q.value, k)

    def exceeds_plus(self, q, z, k):
        """``q``'s integer plus an unsigned ``z`` narrower than ``q.value``, ``> k`` (a constant
        at most ``q.limit``): ``z`` is added to the low bits of ``q.value`` only, the carry out
        of them goes into constant comparisons of the high bits (Yosys would compress a sum of
        three operands in LUTs before a carry chain as wide as all of them).

        Exact: with ``w`` the width of ``z``, ``v = h 2 ** w + v[:w]``, ``v[:w] + z = c 2 ** w + l``
        and ``k = kh 2 ** w + kl``: ``v + z = (h + c) 2 ** w + l > k`` iff ``h + c > kh``, or
        ``h + c == kh`` and ``l > kl``."""
        assert k <= q.limit, (k, q.limit)
        z = Value.cast(z)
        w, v = len(z), self.wire(q.value)
        assert w < len(v), (w, len(v))
        low = self.wire(v[:w] + z)
        c, h, kh, kl = low[w], v[w:], k >> w, k & ((1 << w) - 1)
        above = Mux(c, self.gt(h, kh - 1), self.gt(h, kh))
        level = Mux(c, h == kh - 1, h == kh) if kh > 0 else ~c & ~h.any()
        return q.over | above | (level & self.gt(low[:w], kl))

    def span_out(self, first, count, limit):
        """``first + count > limit`` for unsigned ``first``, ``count`` and a constant ``limit``."""
        fc, cc = self.clip(first, limit), self.clip(count, limit)
        if len(cc.value) < len(fc.value):
            return cc.over | self.exceeds_plus(fc, cc.value, limit)
        return self.exceeds(self.total(fc, cc), limit)


class DispatchChecker(ConfigComponent):
    """Range and consistency checks of a LOAD, STORE, GEMM or VEC against the configuration.

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    i_opcode : In(8)
    i_dma : In(operand layout of LOAD/STORE); i_gemm : In(GEMM's); i_vec : In(VEC's);
    i_vsoft, i_pim_gbuf, i_pim_write, i_pim_gemv, i_pim_read, i_pim_act : In(their formats')
        The instruction's operand bits seen through each format (the decoder's views).
    o_error : Out(ErrorCode), ``OK``, ``ILLEGAL_OPCODE`` (a missing datapath), ``BAD_FIELD``,
        ``SPAD_RANGE``, ``DRAM_RANGE`` or ``PIM_RANGE`` (``OK`` for other opcodes)
    """

    def _members(self, config):
        return {
            "i_opcode": In(8),
            "i_dma": In(operand_layout(Opcode.LOAD)),
            "i_gemm": In(operand_layout(Opcode.GEMM)),
            "i_vec": In(operand_layout(Opcode.VEC)),
            "i_vsoft": In(operand_layout(Opcode.VSOFT)),
            "i_vnorm": In(operand_layout(Opcode.VNORM)),
            **{f"i_{op.name.lower()}": In(operand_layout(op)) for op in PIM_OPS},
            "o_error": Out(ErrorCode),
        }

    def elaborate(self, platform):
        m = Module()
        ar = _Arith(m)
        dma = self._dma(m, ar)
        codes = {Opcode.GEMM: self._gemm(ar), Opcode.VEC: self._vec(ar)}
        for op, build in ((Opcode.VSOFT, self._vsoft), (Opcode.VNORM, self._vnorm)):
            # a datapath the tile does not have: the opcode is illegal, its checks not built
            codes[op] = ErrorCode.ILLEGAL_OPCODE if self._cfg.missing_datapath(op) else build(ar)
        if self._cfg.pim_unit:
            codes.update(self._pim(ar))
        else:   # no PIM unit: every PIM opcode is illegal, no PIM checks built
            codes.update({op: ErrorCode.ILLEGAL_OPCODE for op in PIM_OPS})
        with m.Switch(self.i_opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                m.d.comb += self.o_error.eq(dma)
            for op, code in codes.items():
                with m.Case(op):
                    m.d.comb += self.o_error.eq(code)
            with m.Default():
                m.d.comb += self.o_error.eq(ErrorCode.OK)
        return m

    def _dma(self, m, ar):
        """The code of a LOAD or STORE: its scratchpad words, its DRAM address's and stride's
        alignment, then the end of its last row in DRAM."""
        cfg = self._cfg
        d = self.i_dma
        deepest = max(cfg.spad_words(s) for s in Spad)
        # spad_addr + rows * words, against every depth
        fill = ar.total(ar.clip(d.spad_addr, deepest), ar.clip_product(d.rows, d.words, deepest))
        # The DRAM end, decided after the scratchpad words fit (rows * words <= depth, so rows and
        # words <= deepest) and the alignment checks passed: dram_addr and stride are multiples
        # of the word size, so of 2 ** e, and dram_addr + (rows - 1) * stride + words * wb >
        # dram_bytes compares in units of 2 ** e bytes with dram_bytes >> e.
        e = min(_trailing_zeros(cfg.word_bytes(s)) for s in Spad)
        top = cfg.dram_bytes >> e
        last_row = _at_most(_less_one(d.rows), deepest - 1)
        reach = ar.total(ar.clip(d.dram_addr[e:], top), ar.clip_product(last_row, d.stride[e:], top))
        # words * wb >> e: the scratchpad's word size in these units times words (one small
        # multiplier; a multiplexer of the five products costs more logic)
        unit = Signal(range(max(cfg.word_bytes(s) >> e for s in Spad) + 1))
        dram_end = ar.exceeds_plus(reach, _mul(_at_most(d.words, deepest), unit), top)

        codes = {s: _first([
            (ar.exceeds(fill, cfg.spad_words(s)), ErrorCode.SPAD_RANGE),
            (~ar.multiple_of(d.dram_addr, cfg.word_bytes(s)), ErrorCode.DRAM_RANGE),
            (~ar.multiple_of(d.stride, cfg.word_bytes(s)), ErrorCode.DRAM_RANGE),
            (dram_end, ErrorCode.DRAM_RANGE),
        ]) for s in Spad}
        dma = Signal(ErrorCode)
        with m.Switch(d.spad):
            for s, code in codes.items():
                with m.Case(s):
                    m.d.comb += [unit.eq(cfg.word_bytes(s) >> e), dma.eq(code)]
            with m.Default():  # the decoder rejects the word first
                m.d.comb += dma.eq(ErrorCode.OK)
        return dma

    def _vparam_out(self, ar, addr, words):
        """VPARAM words ``addr .. addr + words - 1`` leave the column-parameter region; ``words``
        a constant or an unsigned value."""
        cfg = self._cfg
        top = cfg.vparam_words
        past = ar.gt(addr, top - words) if isinstance(words, int) else ar.span_out(addr, words, top)
        return ar.lt(addr, cfg.vparam_param_base) | past

    def _gemm(self, ar):
        """The code of a GEMM (``_gemm_problem``, then its footprint)."""
        cfg = self._cfg
        g = self.i_gemm
        act, wgt, meta = cfg.act_words, cfg.wgt_words, cfg.meta_words
        beats = ar.clip_scaled(g.groups, cfg.group, max(act, wgt))  # groups * group
        wgt_end = ar.total(ar.clip(g.wgt_addr, max(act, wgt)), beats)
        bad_wsrc = not wsrc_supported(cfg)  # a constant of the configuration
        return _first([
            (g.wsrc & (bad_wsrc | g.meta_addr.any()), ErrorCode.BAD_FIELD),
            (ar.exceeds(ar.total(ar.clip(g.act_addr, act), beats), act), ErrorCode.SPAD_RANGE),
            (g.wsrc & ar.exceeds(wgt_end, act), ErrorCode.SPAD_RANGE),
            (~g.wsrc & ar.exceeds(wgt_end, wgt), ErrorCode.SPAD_RANGE),
            (~g.wsrc & ar.span_out(g.meta_addr, g.groups, meta), ErrorCode.SPAD_RANGE),
            (ar.gt(g.acc_addr, cfg.acc_words - cfg.rows), ErrorCode.SPAD_RANGE)])

    def _vec(self, ar):
        """The code of a VEC (``_vec_problem``, its footprint, then an overlapping ADD)."""
        cfg = self._cfg
        v = self.i_vec
        f = v.func
        int8 = cfg.act_format != "fp16"
        cols, act, acc = cfg.cols, cfg.act_words, cfg.acc_words
        add, res, gate = f == VecFunc.ADD, f == VecFunc.RES, (f == VecFunc.SILU) | (f == VecFunc.GLU)
        rope = (f == VecFunc.ROPE_LO) | (f == VecFunc.ROPE_HI)
        pair = (f == VecFunc.GLU) | rope
        rows = _at_most(v.rows, cfg.rows)  # the first check passed
        res_rows_out = ar.span_out(v.res_addr, rows, acc)
        act_out = Mux(v.direct, ar.span_out(v.act_addr, rows, act), ar.gt(v.act_addr, act - cols))
        # ADD: 0 < |act_addr - res_addr| < cols;
        # ROPE: table_addr - cols < act_addr < table_addr + 2 cols
        apart = ar.wire(v.act_addr - v.res_addr)
        overlap = apart.any() & ar.within(apart, -cols, cols)
        over_table = ar.within(v.act_addr - v.table_addr, -cols, 2 * cols)
        return _first([
            (ar.gt(v.rows, cfg.rows), ErrorCode.BAD_FIELD),
            (v.fmt & int8, ErrorCode.BAD_FIELD),
            (gate & ~v.fmt, ErrorCode.BAD_FIELD),
            (rope & int8, ErrorCode.BAD_FIELD),
            (res & (v.fmt | v.direct), ErrorCode.BAD_FIELD),
            (v.bias & pair, ErrorCode.BAD_FIELD),
            (v.direct & (add | (cfg.rows < cols)), ErrorCode.BAD_FIELD),
            (ar.span_out(v.acc_addr, rows, acc), ErrorCode.SPAD_RANGE),
            (res & res_rows_out, ErrorCode.SPAD_RANGE),
            (~res & act_out, ErrorCode.SPAD_RANGE),
            (add & ar.gt(v.res_addr, act - cols), ErrorCode.SPAD_RANGE),
            (pair & res_rows_out, ErrorCode.SPAD_RANGE),
            (ar.lt(v.param_addr, cfg.vparam_param_base)
             | Mux(pair | v.bias, ar.gt(v.param_addr, cfg.vparam_words - 2 * cols),
                   ar.gt(v.param_addr, cfg.vparam_words - cols)), ErrorCode.SPAD_RANGE),
            (rope & ar.gt(v.table_addr, act - 2 * cols), ErrorCode.SPAD_RANGE),
            (add & overlap, ErrorCode.BAD_FIELD),
            (rope & ~v.direct & over_table, ErrorCode.BAD_FIELD),
        ])

    def _vsoft(self, ar):
        """The code of a VSOFT (``_vsoft_problem``, then its footprint)."""
        cfg = self._cfg
        v = self.i_vsoft
        norm = v.func == SoftFunc.NORM
        r, cols, acc = cfg.rows, cfg.cols, cfg.acc_words
        words = _at_most(v.words, r)           # the first check passed
        cap = _times(words, cols)              # words * cols <= rows * cols
        count = ar.clip(v.count, r * cols)
        counted = _at_most(v.count, r * cols)  # the second check passed: count <= cap
        # by column: ACC words acc_addr + (words - 1) * rows + 1; else acc_addr + words
        acc_reach = Mux(v.col, _times(_at_most(_less_one(v.words), r - 1), r) + 1, words)
        act_words = Mux(v.col, cap, _ceil_div(counted, r))
        return _first([
            (ar.gt(v.words, r), ErrorCode.BAD_FIELD),
            (count.over | (count.value > cap), ErrorCode.BAD_FIELD),
            ((v.pfmt == ProbFormat.FP16) & (cfg.act_format != "fp16"), ErrorCode.BAD_FIELD),
            (v.col & ar.gt(v.lane, r - 1), ErrorCode.BAD_FIELD),
            (~v.col & v.lane.any(), ErrorCode.BAD_FIELD),
            (ar.span_out(v.acc_addr, acc_reach, acc), ErrorCode.SPAD_RANGE),
            (self._vparam_out(ar, v.kparam, counted), ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(ar, v.vparam, counted), ErrorCode.SPAD_RANGE),
            (norm & ar.span_out(v.act_addr, act_words, cfg.act_words), ErrorCode.SPAD_RANGE),
        ])

    def _vnorm(self, ar):
        """The code of a VNORM (``_vnorm_problem``, then its footprint)."""
        cfg = self._cfg
        v = self.i_vnorm
        norm = v.func == NormFunc.NORM
        acc = cfg.acc_words
        rows = _at_most(v.rows, cfg.rows)  # the first check passed
        return _first([
            (ar.gt(v.rows, cfg.rows), ErrorCode.BAD_FIELD),
            (v.fmt & (cfg.act_format != "fp16"), ErrorCode.BAD_FIELD),
            (v.to_acc & v.fmt, ErrorCode.BAD_FIELD),
            (ar.span_out(v.acc_addr, rows, acc), ErrorCode.SPAD_RANGE),
            ((v.func != NormFunc.SUM) & ~v.rms & self._vparam_out(ar, v.nparam, 1),
             ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(ar, v.nparam, 2), ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(ar, v.param_addr, 2 * cfg.cols), ErrorCode.SPAD_RANGE),
            (norm & v.to_acc & ar.span_out(v.act_addr, rows, acc), ErrorCode.SPAD_RANGE),
            (norm & ~v.to_acc & ar.gt(v.act_addr, cfg.act_words - cfg.cols), ErrorCode.SPAD_RANGE),
        ])

    def _pim(self, ar):
        """Per PIM opcode, its code (``pim_problem``, then its footprint)."""
        cfg = self._cfg
        gb, wr, gv, rd = self.i_pim_gbuf, self.i_pim_write, self.i_pim_gemv, self.i_pim_read
        ac = self.i_pim_act
        bad, spad = ErrorCode.PIM_RANGE, ErrorCode.SPAD_RANGE
        gbuf, row_bytes, lanes = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_lanes
        nch, nbanks, regs, act = cfg.dram_channels, cfg.dram_banks, cfg.pim_res_regs, cfg.act_words

        def chans(i):
            return ar.span_out(i.ch, i.chans, nch)

        def banks(i):
            return ar.span_out(i.bank, i.banks, nbanks)

        # PIM_GBUF: the ACT words of the last channel's source, chans <= dram_channels and len <=
        # pim_gbuf_bytes once the PIM checks passed; (chans - 1) * act_stride is 0 where
        # act_stride is 0 (every channel reads the first one's words)
        length = _at_most(gb.len, gbuf)
        last_chan = _at_most(_less_one(gb.chans), nch - 1)
        act_end = ar.total(ar.clip(gb.act_addr, act), ar.clip_product(last_chan, gb.act_stride, act),
                           Mux(gb.packed, _ceil_div(length, cfg.rows), length))
        # PIM_GEMV: col + n * len in units of 2 ** e bytes, col and len being multiples of
        # pim_lanes, so of 2 ** e (checked first); then banks <= dram_banks, len and n <= row_bytes
        e = _trailing_zeros(lanes)
        row_end = ar.total(ar.clip(gv.col[e:], row_bytes >> e),
                           ar.clip_product(gv.n, gv.len[e:], row_bytes >> e))
        gv_len, gv_n = _at_most(gv.len, row_bytes), _at_most(gv.n, row_bytes)
        elems = ar.pick(gv.bcast, ar.clip_product(_at_most(gv.banks, nbanks), gv_n, gbuf),
                        ar.clip(gv_len, gbuf))
        gv_regs = ar.pick(gv.bcast, ar.clip(gv_len, regs), ar.clip(gv_n, regs))
        # PIM_READ: the last channel's last ACC word, ceil(values / cols) - 1 words on; chans,
        # banks and n within their bounds once the PIM checks passed
        rd_n = _at_most(rd.n, regs)
        values = Mux(rd.reduce, rd_n, _mul(_at_most(rd.banks, nbanks), rd_n))
        last = cfg.acc_words - 1
        acc_last = ar.total(
            ar.clip(rd.acc_addr, last),
            ar.clip_product(_at_most(_less_one(rd.chans), nch - 1), rd.chan_stride, last),
            ar.clip_product(_floor_div(_less_one(values), cfg.cols), rd.word_stride, last))
        return {
            Opcode.PIM_GBUF: _first([
                (chans(gb), bad),
                (ar.span_out(gb.gaddr, gb.len, gbuf), bad),
                (~gb.packed & ar.span_out(gb.lane, _at_most(gb.chans, nch), cfg.rows), bad),
                (ar.exceeds(act_end, act), spad)]),
            Opcode.PIM_WRITE: _first([
                (chans(wr), bad),
                (ar.gt(wr.bank, nbanks - 1), bad),
                (ar.gt(wr.row, cfg.dram_rows - 1), bad),
                (ar.span_out(wr.col, wr.len, row_bytes), bad),
                (ar.span_out(wr.gaddr, wr.len, gbuf), bad)]),
            Opcode.PIM_GEMV: _first([
                (chans(gv), bad),
                (banks(gv), bad),
                (ar.gt(gv.row, cfg.dram_rows - 1), bad),
                (~ar.multiple_of(gv.len, lanes), bad),
                (~ar.multiple_of(gv.col, lanes), bad),
                (~gv.bcast & ~ar.multiple_of(gv.gaddr, lanes), bad),
                (ar.exceeds(row_end, row_bytes >> e), bad),
                (ar.exceeds(ar.total(ar.clip(gv.gaddr, gbuf), elems), gbuf), bad),
                (ar.exceeds(ar.total(ar.clip(gv.res, regs), gv_regs), regs), bad)]),
            Opcode.PIM_READ: _first([
                (chans(rd), bad),
                (banks(rd), bad),
                (ar.span_out(rd.res, rd.n, regs), bad),
                (ar.exceeds(acc_last, last), spad)]),
            Opcode.PIM_ACT: _first([
                (chans(ac), bad),
                (banks(ac), bad),
                (ar.gt(ac.row, cfg.dram_rows - 1), bad)]),
        }
