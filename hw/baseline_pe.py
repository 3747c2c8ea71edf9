"""The conventional PE MixPE is compared against: dequantize every weight, then multiply.

Same arithmetic as the MixPE PE and edge together, so both arrays give bit-identical results; the
difference is where the work happens: this PE multiplies ``(q - z) * sm`` for every weight and
``a * w`` for every product, and keeps a full-width accumulator.
"""

from amaranth.hdl import Module, Signal, signed, unsigned

from .mixpe_pe import check_params
from .systolic import SystolicPE

__all__ = ["BaselinePE"]


class BaselinePE(SystolicPE):
    """Output-stationary dequantize-then-multiply PE.

    Each cycle with ``i_ctl.valid`` it adds ``a * ((code - zero) * scale)`` to its accumulator
    (``a`` as in :class:`~.mixpe_pe.MixPE`; with ``params.group_offset``, ``a * ((code - zero) *
    scale + offset)``: summed over a group, ``sm * I + om * A``). On a tile's last beat
    (``i_ctl.tlast``) it presents the total on ``o_res`` for one cycle and restarts from zero.
    Ports and pass-through: :class:`~.systolic.SystolicPE`, with the lanes ``code``, ``zero``,
    ``scale`` (and ``offset``).

    Arguments
    ---------
    params : ArrayParams (family "baseline")

    Members
    -------
    i_act, o_act, i_ctl, o_ctl : as in :class:`~.systolic.SystolicPE`
    i_code, o_code, i_zero, o_zero : unsigned(params.wbits)
    i_scale, o_scale : unsigned(params.scale_bits)
    i_offset, o_offset : signed(params.offset_bits), with ``params.group_offset`` only
    o_res : :func:`~.layouts.result_layout` (params.acc_bits), 1 cycle after the tile's last beat
    """

    def __init__(self, params):
        check_params(params, "baseline")
        w, s = unsigned(params.wbits), unsigned(params.scale_bits)
        lanes = {"code": w, "zero": w, "scale": s}
        if params.group_offset:
            lanes["offset"] = signed(params.offset_bits)
        super().__init__(params, lanes, params.acc_bits)

    def elaborate(self, platform):
        p = self._params
        m = Module()
        if p.group_offset:
            wdeq = Signal(signed(max(p.wc_bits + p.scale_bits + 1, p.offset_bits) + 1))
            m.d.comb += wdeq.eq((self.i_code - self.i_zero) * self.i_scale + self.i_offset)
        else:
            wdeq = Signal(signed(p.wc_bits + p.scale_bits + 1))
            m.d.comb += wdeq.eq((self.i_code - self.i_zero) * self.i_scale)
        prod = Signal(signed(p.term_bits))
        if p.act_format == "int8":
            m.d.comb += prod.eq(self.i_act * wdeq)
        else:
            m.d.comb += prod.eq((self.i_act.sig * wdeq) << self.i_act.sh)
        # a full-width accumulator over the whole tile
        self._accumulate(m, prod, p.acc_bits, last=self.i_ctl.tlast, tlast=1, name="acc")
        return m
