"""BitMoD weight decoder: (code, type selector, cycle of the beat) -> one signed power-of-two term.

The table is :func:`mixpim.models.bitmod_gemm.term_table`, itself derived from
:func:`mixpim.models.bitmod.code_terms`; nothing here is written by hand. FP3/FP4/FLINT4/BitMoD
values take at most two terms (``12 = 8 + 4``: shifts 3, 2), INT-b takes ``ceil(b/2)`` radix-4
Booth digits (INT8 ``-127 = 1 - 2*4 + 0*16 - 2*64``: one term per digit, shift ``2i`` or ``2i + 1``).
"""

from amaranth.hdl import Cat, Module, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..models.bitmod_gemm import SEL_BITS, BitmodParams, term_table

__all__ = ["term_layout", "BitmodDecoder", "check_params"]


def check_params(params):
    if not isinstance(params, BitmodParams):
        raise TypeError(f"params must be a BitmodParams, not {params!r}")


def term_layout(params):
    """One term as it travels down a column: ``valid`` (0: a zero term), ``sign`` (1: negative),
    ``shift`` (the term is ``+-2**shift``)."""
    return data.StructLayout({"valid": 1, "sign": 1, "shift": unsigned(params.shift_bits)})


class BitmodDecoder(wiring.Component):
    """Combinational term decoder (latency 0 cycles), one per array column.

    Arguments
    ---------
    params : BitmodParams

    Members
    -------
    i_code : In(params.wbits), the weight code
    i_sel : In(2), the group's type selector (index into ``params.types``)
    i_step : In(range(max(params.terms, 2))), the cycle of the beat (at least 1 bit wide)
    o_term : Out(:func:`term_layout`), the term consumed in that cycle
    o_reserved : Out(1), the code is reserved in its type or the selector names no type (the
        terms are then zero)
    """

    def __init__(self, params):
        check_params(params)
        self._params = params
        super().__init__({
            "i_code": In(params.wbits), "i_sel": In(SEL_BITS), "i_step": In(range(max(params.terms, 2))),
            "o_term": Out(term_layout(params)), "o_reserved": Out(1),
        })

    def elaborate(self, platform):
        p = self._params
        m = Module()
        slots, reserved = term_table(p)
        lay = term_layout(p)
        # Every case statement has a default, so the Verilog has no incomplete case.
        res = [int(code) | int(sel) << p.wbits for sel, code in zip(*reserved.nonzero())]
        with m.Switch(Cat(self.i_code, self.i_sel)):
            with m.Case(*res):
                m.d.comb += self.o_reserved.eq(1)
            with m.Default():
                m.d.comb += self.o_reserved.eq(0)
        step_bits = len(self.i_step)
        with m.Switch(Cat(self.i_step, self.i_code, self.i_sel)):
            for sel, code, step in zip(*slots[..., 0].nonzero()):
                _, sign, shift = (int(x) for x in slots[sel, code, step])
                with m.Case(int(step) | (int(code) | int(sel) << p.wbits) << step_bits):
                    m.d.comb += self.o_term.eq(lay.const({"valid": 1, "sign": sign, "shift": shift}))
            with m.Default():
                m.d.comb += self.o_term.eq(0)
        return m
