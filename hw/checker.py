"""Dispatch-time checks of the tile: the configuration-dependent errors of one decoded instruction.

Combinational (latency 0). The same checks, in the same order, as
:func:`mixpim.models.tile_timing.check_instruction` (docs/tile.md, "Decoding rules"): the first
failing check of the instruction's opcode gives the code; decode errors (``ILLEGAL_OPCODE``,
``BAD_FIELD`` from :class:`~.decoder.InstructionDecoder`) are reported before these by the
dispatcher. Products (``rows * words``, ``(rows - 1) * stride``) are exact: every sum is wide
enough not to wrap.
"""

from functools import reduce

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..models.isa import ErrorCode, Opcode, Spad, VecFunc
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
    i_dma : In(operand layout of LOAD/STORE); i_gemm : In(GEMM's); i_vec : In(VEC's)
        The instruction's operand bits seen through each format (the decoder's views).
    o_error : Out(ErrorCode), ``OK``, ``BAD_FIELD``, ``SPAD_RANGE`` or ``DRAM_RANGE``
        (``OK`` for other opcodes)
    """

    def _members(self, config):
        return {
            "i_opcode": In(8),
            "i_dma": In(operand_layout(Opcode.LOAD)),
            "i_gemm": In(operand_layout(Opcode.GEMM)),
            "i_vec": In(operand_layout(Opcode.VEC)),
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

        # GEMM
        g = self.i_gemm
        beats = g.groups * cfg.group
        gemm = _first([(g.act_addr + beats > cfg.act_words, ErrorCode.SPAD_RANGE),
                       (g.wgt_addr + beats > cfg.wgt_words, ErrorCode.SPAD_RANGE),
                       (g.meta_addr + g.groups > cfg.meta_words, ErrorCode.SPAD_RANGE),
                       (g.acc_addr + cfg.rows > cfg.acc_words, ErrorCode.SPAD_RANGE)])

        # VEC
        v = self.i_vec
        add = v.func == VecFunc.ADD
        apart = Mux(v.act_addr > v.res_addr, v.act_addr - v.res_addr, v.res_addr - v.act_addr)
        vec = _first([
            (v.rows > cfg.rows, ErrorCode.BAD_FIELD),
            (v.acc_addr + v.rows > cfg.acc_words, ErrorCode.SPAD_RANGE),
            (v.act_addr + cfg.cols > cfg.act_words, ErrorCode.SPAD_RANGE),
            (add & (v.res_addr + cfg.cols > cfg.act_words), ErrorCode.SPAD_RANGE),
            ((v.param_addr < cfg.vparam_param_base)
             | (v.param_addr + cfg.cols > cfg.vparam_words), ErrorCode.SPAD_RANGE),
            (add & (apart != 0) & (apart < cfg.cols), ErrorCode.BAD_FIELD),
        ])

        with m.Switch(self.i_opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                m.d.comb += self.o_error.eq(dma)
            with m.Case(Opcode.GEMM):
                m.d.comb += self.o_error.eq(gemm)
            with m.Case(Opcode.VEC):
                m.d.comb += self.o_error.eq(vec)
            with m.Default():
                m.d.comb += self.o_error.eq(ErrorCode.OK)
        return m
