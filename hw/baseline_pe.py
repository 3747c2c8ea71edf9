"""The conventional PE MixPE is compared against: dequantize every weight, then multiply.

Same arithmetic as the MixPE PE and edge together, so both arrays give bit-identical results; the
difference is where the work happens: this PE multiplies ``(q - z) * sm`` for every weight and
``a * w`` for every product, and keeps a full-width accumulator.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import ctl_layout, pe_act_layout, result_layout
from .mixpe_pe import check_params

__all__ = ["BaselinePE"]


class BaselinePE(wiring.Component):
    """Output-stationary dequantize-then-multiply PE.

    Each cycle with ``i_ctl.valid`` it adds ``a * ((code - zero) * scale)`` to its accumulator
    (``a`` as in :class:`~.mixpe_pe.MixPE`). On a tile's last beat (``i_ctl.tlast``) it presents the
    total on ``o_res`` for one cycle and restarts from zero. Inputs pass through registered
    (latency 1 cycle).

    Arguments
    ---------
    params : ArrayParams (family "baseline")

    Members
    -------
    i_act, o_act : activation, :func:`~.layouts.pe_act_layout`
    i_code, o_code, i_zero, o_zero : unsigned(params.wbits)
    i_scale, o_scale : unsigned(params.scale_bits)
    i_ctl, o_ctl : :data:`~.layouts.ctl_layout`
    o_res : :func:`~.layouts.result_layout` (params.acc_bits), 1 cycle after the tile's last beat
    """

    def __init__(self, params):
        check_params(params, "baseline")
        self._params = params
        act = pe_act_layout(params.act)
        w, s = unsigned(params.wbits), unsigned(params.scale_bits)
        super().__init__({
            "i_act": In(act), "i_code": In(w), "i_zero": In(w), "i_scale": In(s), "i_ctl": In(ctl_layout),
            "o_act": Out(act), "o_code": Out(w), "o_zero": Out(w), "o_scale": Out(s), "o_ctl": Out(ctl_layout),
            "o_res": Out(result_layout(params.acc_bits)),
        })

    def elaborate(self, platform):
        p = self._params
        m = Module()
        wdeq = Signal(signed(p.wc_bits + p.scale_bits + 1))
        m.d.comb += wdeq.eq((self.i_code - self.i_zero) * self.i_scale)
        prod = Signal(signed(p.scaled_bits))
        if p.act == "int8":
            m.d.comb += prod.eq(self.i_act * wdeq)
        else:
            m.d.comb += prod.eq((self.i_act.sig * wdeq) << self.i_act.sh)
        acc = Signal(signed(p.acc_bits))
        total = Signal(signed(p.acc_bits))
        m.d.comb += total.eq(acc + prod)

        m.d.sync += [
            self.o_act.eq(self.i_act), self.o_code.eq(self.i_code), self.o_zero.eq(self.i_zero),
            self.o_scale.eq(self.i_scale), self.o_ctl.eq(self.i_ctl), self.o_res.valid.eq(0),
        ]
        with m.If(self.i_ctl.valid):
            with m.If(self.i_ctl.tlast):
                m.d.sync += [
                    acc.eq(0),
                    self.o_res.valid.eq(1), self.o_res.tlast.eq(1), self.o_res.value.eq(total),
                ]
            with m.Else():
                m.d.sync += acc.eq(total)
        return m
