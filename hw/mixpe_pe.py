"""The MixPE processing element: low-bit weight x INT8/FP16 activation by shift and add.

The PE holds only the narrow partial sum of the current weight group; the per-group scale is
applied once per group at the array edge (:mod:`.array`), which is MixPE's point.
"""

from amaranth.hdl import Module, Signal, signed

from ..models.mixpe import ArrayParams
from .shift_add import shift_add
from .systolic import SystolicPE

__all__ = ["MixPE", "check_params"]


def check_params(params, family):
    if not isinstance(params, ArrayParams):
        raise TypeError(f"params must be an ArrayParams, not {params!r}")
    if params.family != family:
        raise ValueError(f"params describe a {params.family} array, not a {family} one")


class MixPE(SystolicPE):
    """Output-stationary shift-and-add PE of the MixPE array.

    Each cycle with ``i_ctl.valid`` it adds ``a * wc`` to its group partial sum, where ``a`` is the
    INT8 activation or the FP16 ``sig << sh`` and ``wc = q - z`` the signed centered weight
    (``wbits + 1`` bits). On the group's last beat (``i_ctl.glast``) it presents the finished sum on
    ``o_res`` for one cycle and restarts from zero. Ports, pass-through and group accumulator:
    :class:`~.systolic.SystolicPE`, with the lane ``wc``.

    Arguments
    ---------
    params : ArrayParams (family "mixpe")

    Members
    -------
    i_act, o_act, i_ctl, o_ctl : as in :class:`~.systolic.SystolicPE`
    i_wc, o_wc : signed(params.wc_bits)
    o_res : :func:`~.layouts.result_layout` (params.psum_bits), registered: 1 cycle after the
        group's last beat
    """

    def __init__(self, params):
        check_params(params, "mixpe")
        super().__init__(params, {"wc": signed(params.wc_bits)}, params.psum_bits)

    def elaborate(self, platform):
        p = self._params
        m = Module()
        prod = Signal(signed(p.prod_bits))
        if p.act_format == "int8":
            m.d.comb += prod.eq(shift_add(self.i_act, self.i_wc))
        else:
            # FP16: multiply the significand, then align by the exponent (a barrel shift).
            m.d.comb += prod.eq(shift_add(self.i_act.sig, self.i_wc) << self.i_act.sh)
        self._accumulate(m, prod, p.psum_bits)
        return m
