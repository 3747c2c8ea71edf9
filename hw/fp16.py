"""FP16 activation splitter at the row edge of the W4A16 arrays.

An IEEE binary16 pattern becomes ``sig`` signed(12) and ``sh`` unsigned(5) with
``value = sig << sh`` in units of 2**-24, exactly (``mixpim.models.numerics.fp16_decode`` with
``sh = exp - 1``). Subnormals have ``sh = 0`` and no hidden bit; +-0 gives ``sig = 0``; infinities
and NaN give ``sig = 0`` and ``nonfinite = 1``.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import pe_act_layout

__all__ = ["FP16Split"]


class FP16Split(wiring.Component):
    """Combinational FP16 splitter (latency 0 cycles).

    Members
    -------
    i_bits : In(16), an FP16 bit pattern
    o_act : Out(StructLayout sig: signed(12), sh: unsigned(5))
    o_nonfinite : Out(1), the input was an infinity or NaN
    """

    def __init__(self):
        super().__init__({
            "i_bits": In(16),
            "o_act": Out(pe_act_layout("fp16")),
            "o_nonfinite": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sign = self.i_bits[15]
        efield = self.i_bits[10:15]
        frac = self.i_bits[0:10]
        subnormal = efield == 0
        nonfinite = efield == 31
        mag = Signal(unsigned(11))
        m.d.comb += [
            mag.eq(Mux(nonfinite, 0, Mux(subnormal, frac, frac | 0x400))),
            self.o_act.sig.eq(Mux(sign, -mag, mag)),
            self.o_act.sh.eq(Mux(subnormal | nonfinite, 0, efield - 1)),
            self.o_nonfinite.eq(nonfinite),
        ]
        return m
