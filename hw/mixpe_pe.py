"""The MixPE processing element: low-bit weight x INT8/FP16 activation by shift and add.

The PE holds only the narrow partial sum of the current weight group; the per-group scale is
applied once per group at the array edge (:mod:`.array`), which is MixPE's point.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..models.mixpe import ArrayParams
from .layouts import ctl_layout, pe_act_layout, result_layout
from .shift_add import shift_add

__all__ = ["MixPE", "check_params"]


def check_params(params, family):
    if not isinstance(params, ArrayParams):
        raise TypeError(f"params must be an ArrayParams, not {params!r}")
    if params.family != family:
        raise ValueError(f"params describe a {params.family} array, not a {family} one")


class MixPE(wiring.Component):
    """Output-stationary shift-and-add PE of the MixPE array.

    Each cycle with ``i_ctl.valid`` it adds ``a * wc`` to its group partial sum, where ``a`` is the
    INT8 activation or the FP16 ``sig << sh`` and ``wc = q - z`` the signed centered weight
    (``wbits + 1`` bits). On the group's last beat (``i_ctl.glast``) it presents the finished sum on
    ``o_res`` for one cycle and restarts from zero. Inputs pass to ``o_act``/``o_wc``/``o_ctl``
    registered (latency 1 cycle), so PEs chain into a systolic grid.

    Arguments
    ---------
    params : ArrayParams (family "mixpe")

    Members
    -------
    i_act, o_act : activation, :func:`~.layouts.pe_act_layout`
    i_wc, o_wc : signed(params.wc_bits)
    i_ctl, o_ctl : :data:`~.layouts.ctl_layout`
    o_res : :func:`~.layouts.result_layout` (params.psum_bits), registered: 1 cycle after the
        group's last beat
    """

    def __init__(self, params):
        check_params(params, "mixpe")
        self._params = params
        act = pe_act_layout(params.act)
        super().__init__({
            "i_act": In(act), "i_wc": In(signed(params.wc_bits)), "i_ctl": In(ctl_layout),
            "o_act": Out(act), "o_wc": Out(signed(params.wc_bits)), "o_ctl": Out(ctl_layout),
            "o_res": Out(result_layout(params.psum_bits)),
        })

    def elaborate(self, platform):
        p = self._params
        m = Module()
        prod = Signal(signed(p.prod_bits))
        if p.act == "int8":
            m.d.comb += prod.eq(shift_add(self.i_act, self.i_wc))
        else:
            # FP16: multiply the significand, then align by the exponent (a barrel shift).
            m.d.comb += prod.eq(shift_add(self.i_act.sig, self.i_wc) << self.i_act.sh)
        psum = Signal(signed(p.psum_bits))
        total = Signal(signed(p.psum_bits))
        m.d.comb += total.eq(psum + prod)

        m.d.sync += [
            self.o_act.eq(self.i_act), self.o_wc.eq(self.i_wc), self.o_ctl.eq(self.i_ctl),
            self.o_res.valid.eq(0),
        ]
        with m.If(self.i_ctl.valid):
            with m.If(self.i_ctl.glast):
                m.d.sync += [
                    psum.eq(0),
                    self.o_res.valid.eq(1), self.o_res.tlast.eq(self.i_ctl.tlast), self.o_res.value.eq(total),
                ]
            with m.Else():
                m.d.sync += psum.eq(total)
        return m
