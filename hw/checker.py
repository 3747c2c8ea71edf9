"""Dispatch-time checks of the tile: the configuration-dependent errors of one decoded instruction.

Combinational (latency 0). The same checks, in the same order, as
:func:`mixpim.models.tile_timing.check_instruction` (docs/tile.md, "Decoding rules"): the first
failing check of the instruction's opcode gives the code; decode errors (``ILLEGAL_OPCODE``,
``BAD_FIELD`` from :class:`~.decoder.InstructionDecoder`) are reported before these by the
dispatcher. Products (``rows * words``, ``(rows - 1) * stride``) are exact: every sum is wide
enough not to wrap.

The PIM checks are :func:`mixpim.models.pim.pim_problem`'s (``PIM_RANGE``), then the scratchpad
words of the footprint (:func:`mixpim.models.footprint.footprint`): a PIM_GBUF's ACT words (the last channel's source
reaches furthest; all channels share the first one's when ``act_stride`` is 0), a PIM_READ's ACC
words (the last channel's last word reaches furthest, ``word_stride`` and ``chan_stride`` being
non-negative). VEC, VSOFT, VNORM and GEMM: the ``BAD_FIELD`` checks of
``mixpim.models.tile_timing._vec_problem`` (``_vsoft_problem``, ``_vnorm_problem``,
``_gemm_problem``), then the scratchpad words of the footprint in its order (``SPAD_RANGE``).
"""

from functools import reduce

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..models.isa import ErrorCode, NormFunc, Opcode, ProbFormat, SoftFunc, Spad, VecFunc
from ..models.pim import PIM_OPS
from ..models.tile_array import wsrc_supported
from .common import ConfigComponent
from .decoder import operand_layout

__all__ = ["DispatchChecker"]


def _first(checks):
    """``checks``: [(condition, code)] in order -> the code of the first true one, else OK."""
    return reduce(lambda acc, c: Mux(c[0], c[1], acc), reversed(checks), ErrorCode.OK)


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
    o_error : Out(ErrorCode), ``OK``, ``BAD_FIELD``, ``SPAD_RANGE``, ``DRAM_RANGE`` or
        ``PIM_RANGE`` (``OK`` for other opcodes)
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
        cfg = self._cfg
        m = Module()

        # LOAD / STORE
        d = self.i_dma
        n = Signal(len(d.rows) + len(d.words))
        reach = Signal(len(d.dram_addr) + len(d.rows) + len(d.stride) + 1)
        m.d.comb += [n.eq(d.rows * d.words), reach.eq(d.dram_addr + (d.rows - 1) * d.stride)]
        dma = Signal(ErrorCode)
        with m.Switch(d.spad):
            for s in Spad:
                wb = cfg.word_bytes(s)
                with m.Case(s):
                    m.d.comb += dma.eq(_first([
                        (d.spad_addr + n > cfg.spad_words(s), ErrorCode.SPAD_RANGE),
                        (d.dram_addr % wb != 0, ErrorCode.DRAM_RANGE),
                        (d.stride % wb != 0, ErrorCode.DRAM_RANGE),
                        (reach + d.words * wb > cfg.dram_bytes, ErrorCode.DRAM_RANGE),
                    ]))
            with m.Default():  # the decoder rejects the word first
                m.d.comb += dma.eq(ErrorCode.OK)

        codes = {Opcode.GEMM: self._gemm(), Opcode.VEC: self._vec(), Opcode.VSOFT: self._vsoft(),
                 Opcode.VNORM: self._vnorm(), **self._pim()}
        with m.Switch(self.i_opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                m.d.comb += self.o_error.eq(dma)
            for op, code in codes.items():
                with m.Case(op):
                    m.d.comb += self.o_error.eq(code)
            with m.Default():
                m.d.comb += self.o_error.eq(ErrorCode.OK)
        return m

    def _vparam_out(self, addr, words):
        """VPARAM words ``addr .. addr + words - 1`` leave the column-parameter region."""
        cfg = self._cfg
        return (addr < cfg.vparam_param_base) | (addr + words > cfg.vparam_words)

    def _gemm(self):
        """The code of a GEMM (``_gemm_problem``, then its footprint)."""
        cfg = self._cfg
        g = self.i_gemm
        beats = g.groups * cfg.group
        bad_wsrc = not wsrc_supported(cfg)  # a constant of the configuration
        return _first([
            (g.wsrc & (bad_wsrc | (g.meta_addr != 0)), ErrorCode.BAD_FIELD),
            (g.act_addr + beats > cfg.act_words, ErrorCode.SPAD_RANGE),
            (g.wsrc & (g.wgt_addr + beats > cfg.act_words), ErrorCode.SPAD_RANGE),
            (~g.wsrc & (g.wgt_addr + beats > cfg.wgt_words), ErrorCode.SPAD_RANGE),
            (~g.wsrc & (g.meta_addr + g.groups > cfg.meta_words), ErrorCode.SPAD_RANGE),
            (g.acc_addr + cfg.rows > cfg.acc_words, ErrorCode.SPAD_RANGE)])

    def _vec(self):
        """The code of a VEC (``_vec_problem``, its footprint, then an overlapping ADD)."""
        cfg = self._cfg
        v = self.i_vec
        f = v.func
        int8 = cfg.act_format != "fp16"
        add, res, gate = f == VecFunc.ADD, f == VecFunc.RES, (f == VecFunc.SILU) | (f == VecFunc.GLU)
        rope = (f == VecFunc.ROPE_LO) | (f == VecFunc.ROPE_HI)
        pair = (f == VecFunc.GLU) | rope
        apart = Mux(v.act_addr > v.res_addr, v.act_addr - v.res_addr, v.res_addr - v.act_addr)
        return _first([
            (v.rows > cfg.rows, ErrorCode.BAD_FIELD),
            (v.fmt & int8, ErrorCode.BAD_FIELD),
            (gate & ~v.fmt, ErrorCode.BAD_FIELD),
            (rope & int8, ErrorCode.BAD_FIELD),
            (res & (v.fmt | v.direct), ErrorCode.BAD_FIELD),
            (v.bias & pair, ErrorCode.BAD_FIELD),
            (v.direct & (add | (cfg.rows < cfg.cols)), ErrorCode.BAD_FIELD),
            (v.acc_addr + v.rows > cfg.acc_words, ErrorCode.SPAD_RANGE),
            (res & (v.res_addr + v.rows > cfg.acc_words), ErrorCode.SPAD_RANGE),
            (~res & (v.act_addr + Mux(v.direct, v.rows, cfg.cols) > cfg.act_words), ErrorCode.SPAD_RANGE),
            (add & (v.res_addr + cfg.cols > cfg.act_words), ErrorCode.SPAD_RANGE),
            (pair & (v.res_addr + v.rows > cfg.acc_words), ErrorCode.SPAD_RANGE),
            (self._vparam_out(v.param_addr, Mux(pair | v.bias, 2 * cfg.cols, cfg.cols)), ErrorCode.SPAD_RANGE),
            (rope & (v.table_addr + 2 * cfg.cols > cfg.act_words), ErrorCode.SPAD_RANGE),
            (add & (apart != 0) & (apart < cfg.cols), ErrorCode.BAD_FIELD),
            (rope & ~v.direct & (v.act_addr + cfg.cols > v.table_addr)
             & (v.act_addr < v.table_addr + 2 * cfg.cols), ErrorCode.BAD_FIELD),
        ])

    def _vsoft(self):
        """The code of a VSOFT (``_vsoft_problem``, then its footprint)."""
        cfg = self._cfg
        v = self.i_vsoft
        norm = v.func == SoftFunc.NORM
        acc_end = Mux(v.col, v.acc_addr + (v.words - 1) * cfg.rows + 1, v.acc_addr + v.words)
        act_words = Mux(v.col, v.words * cfg.cols, (v.count + cfg.rows - 1) // cfg.rows)
        return _first([
            (v.words > cfg.rows, ErrorCode.BAD_FIELD),
            (v.count > v.words * cfg.cols, ErrorCode.BAD_FIELD),
            ((v.pfmt == ProbFormat.FP16) & (cfg.act_format != "fp16"), ErrorCode.BAD_FIELD),
            (v.col & (v.lane >= cfg.rows), ErrorCode.BAD_FIELD),
            (~v.col & (v.lane != 0), ErrorCode.BAD_FIELD),
            (acc_end > cfg.acc_words, ErrorCode.SPAD_RANGE),
            (self._vparam_out(v.kparam, v.count), ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(v.vparam, v.count), ErrorCode.SPAD_RANGE),
            (norm & (v.act_addr + act_words > cfg.act_words), ErrorCode.SPAD_RANGE),
        ])

    def _vnorm(self):
        """The code of a VNORM (``_vnorm_problem``, then its footprint)."""
        cfg = self._cfg
        v = self.i_vnorm
        norm = v.func == NormFunc.NORM
        return _first([
            (v.rows > cfg.rows, ErrorCode.BAD_FIELD),
            (v.fmt & (cfg.act_format != "fp16"), ErrorCode.BAD_FIELD),
            (v.to_acc & v.fmt, ErrorCode.BAD_FIELD),
            (v.acc_addr + v.rows > cfg.acc_words, ErrorCode.SPAD_RANGE),
            ((v.func != NormFunc.SUM) & ~v.rms & self._vparam_out(v.nparam, 1), ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(v.nparam, 2), ErrorCode.SPAD_RANGE),
            (norm & self._vparam_out(v.param_addr, 2 * cfg.cols), ErrorCode.SPAD_RANGE),
            (norm & v.to_acc & (v.act_addr + v.rows > cfg.acc_words), ErrorCode.SPAD_RANGE),
            (norm & ~v.to_acc & (v.act_addr + cfg.cols > cfg.act_words), ErrorCode.SPAD_RANGE),
        ])

    def _pim(self):
        """Per PIM opcode, its code (``pim_problem``, then its footprint)."""
        cfg = self._cfg
        gb, wr, gv, rd = self.i_pim_gbuf, self.i_pim_write, self.i_pim_gemv, self.i_pim_read
        ac = self.i_pim_act
        bad, spad = ErrorCode.PIM_RANGE, ErrorCode.SPAD_RANGE
        gbuf, row_bytes, lanes = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_lanes

        def chans(i):
            return i.ch + i.chans > cfg.dram_channels

        def banks(i):
            return i.bank + i.banks > cfg.dram_banks

        # PIM_GBUF: the ACT words of the last channel's source
        words = Mux(gb.packed, (gb.len + cfg.rows - 1) // cfg.rows, gb.len)
        act_end = gb.act_addr + Mux(gb.act_stride == 0, 0, (gb.chans - 1) * gb.act_stride) + words
        # PIM_READ: the last channel's last ACC word
        values = Mux(rd.reduce, rd.n, rd.banks * rd.n)
        acc_last = (rd.acc_addr + (rd.chans - 1) * rd.chan_stride
                    + ((values + cfg.cols - 1) // cfg.cols - 1) * rd.word_stride)
        elems, regs = Mux(gv.bcast, gv.banks * gv.n, gv.len), Mux(gv.bcast, gv.len, gv.n)
        return {
            Opcode.PIM_GBUF: _first([
                (chans(gb), bad),
                (gb.gaddr + gb.len > gbuf, bad),
                (~gb.packed & (gb.lane + gb.chans > cfg.rows), bad),
                (act_end > cfg.act_words, spad)]),
            Opcode.PIM_WRITE: _first([
                (chans(wr), bad),
                (wr.bank >= cfg.dram_banks, bad),
                (wr.row >= cfg.dram_rows, bad),
                (wr.col + wr.len > row_bytes, bad),
                (wr.gaddr + wr.len > gbuf, bad)]),
            Opcode.PIM_GEMV: _first([
                (chans(gv), bad),
                (banks(gv), bad),
                (gv.row >= cfg.dram_rows, bad),
                (gv.len % lanes != 0, bad),
                (gv.col % lanes != 0, bad),
                (~gv.bcast & (gv.gaddr % lanes != 0), bad),
                (gv.col + gv.n * gv.len > row_bytes, bad),
                (gv.gaddr + elems > gbuf, bad),
                (gv.res + regs > cfg.pim_res_regs, bad)]),
            Opcode.PIM_READ: _first([
                (chans(rd), bad),
                (banks(rd), bad),
                (rd.res + rd.n > cfg.pim_res_regs, bad),
                (acc_last >= cfg.acc_words, spad)]),
            Opcode.PIM_ACT: _first([
                (chans(ac), bad),
                (banks(ac), bad),
                (ac.row >= cfg.dram_rows, bad)]),
        }
