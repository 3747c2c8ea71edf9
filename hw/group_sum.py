"""The row edge of a MixPE array with group offsets: each token row's activation group sums.

With ``ArrayParams.group_offset`` the array adds ``om[n, g] * A[m, g]`` per group, where
``A[m, g]`` is the sum of token row ``m``'s activation values over group ``g``
(docs/numerics.md, "Group offsets"). ``A`` does not depend on the column, so it is computed once
per row at the array's left edge, by one :class:`GroupSum` per row beside PE (i, 0), and handed
to the bottom edge of every column (:mod:`.array`).
"""

from amaranth.hdl import Module, Signal, signed

from .mixpe_pe import check_params
from .systolic import SystolicPE

__all__ = ["GroupSum"]


class GroupSum(SystolicPE):
    """Sum of one row's activation values ``a_val`` over each weight group.

    It takes exactly the inputs of PE (i, 0) (the skewed activation and control bits), so it sums
    the ``a_val`` the PEs multiply, beat for beat: INT8 ``a``, or FP16 ``sig << sh`` (the value in
    units of 2**-24). Each valid beat adds ``a_val`` (``act_val_bits``) to a ``gsum_bits`` sum; on
    the group's last beat (``i_ctl.glast``) the sum appears on ``o_res`` for one cycle and restarts
    from zero, in the same cycle as PE (i, 0)'s group sum. Frame (ports, registered pass-through,
    which the array leaves unconnected): :class:`~.systolic.SystolicPE` without weight lanes.

    Arguments
    ---------
    params : ArrayParams (family "mixpe")

    Members
    -------
    i_act, o_act, i_ctl, o_ctl : as in :class:`~.systolic.SystolicPE`
    o_res : :func:`~.layouts.result_layout` (params.gsum_bits), registered: 1 cycle after the
        group's last beat
    """

    def __init__(self, params):
        check_params(params, "mixpe")
        super().__init__(params, {}, params.gsum_bits)

    def elaborate(self, platform):
        p = self._params
        m = Module()
        a_val = Signal(signed(p.act_val_bits))
        if p.act_format == "int8":
            m.d.comb += a_val.eq(self.i_act)
        else:
            m.d.comb += a_val.eq(self.i_act.sig << self.i_act.sh)
        self._accumulate(m, a_val, p.gsum_bits, name="gsum")
        return m
