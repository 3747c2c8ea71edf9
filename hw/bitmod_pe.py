"""The BitMoD processing element: bit-serial weight x FP16 (or INT8) activation.

Each cycle the PE receives one signed power-of-two term of its weight (decoded once per column at
the array's top edge, :mod:`.bitmod_decoder`) and adds ``+-(a_val << shift)`` to the group's
partial sum: a negation of the narrow significand, a shifter and an adder, no multiplier. Like the
MixPE PE it keeps only the narrow group sum; dequantization happens at the column edge
(:mod:`.bitmod_dequant`).
"""

from amaranth.hdl import Module, Mux, Signal, signed

from .bitmod_decoder import check_params, term_layout
from .systolic import SystolicPE

__all__ = ["BitmodPE"]


class BitmodPE(SystolicPE):
    """Output-stationary bit-serial PE of the BitMoD array.

    Each cycle with ``i_ctl.valid`` it adds the term ``i_term`` times the activation: INT8 ``a`` or
    FP16 ``sig << sh``, i.e. ``+-(sig << (sh + shift))``. On the group's last term
    (``i_ctl.glast``) the finished sum goes to ``o_res`` and the PE restarts from zero. ``o_res.valid``
    is high for one cycle; ``o_res.value`` and ``o_res.tlast`` then stay until the next group ends,
    so the column's dequantizer can read the rows one after another. Ports, pass-through and group
    accumulator: :class:`~.systolic.SystolicPE`, with the lane ``term``.

    Arguments
    ---------
    params : BitmodParams

    Members
    -------
    i_act, o_act, i_ctl, o_ctl : as in :class:`~.systolic.SystolicPE` (ctl valid: a term slot;
        glast/tlast: the last term of a group / tile)
    i_term, o_term : :func:`~.bitmod_decoder.term_layout`
    o_res : :func:`~.layouts.result_layout` (params.psum_bits), registered: 1 cycle after the
        group's last term
    """

    def __init__(self, params):
        check_params(params)
        super().__init__(params, {"term": term_layout(params)}, params.psum_bits)

    def elaborate(self, platform):
        p = self._params
        m = Module()
        a = self.i_act if p.act_format == "int8" else self.i_act.sig
        signed_a = Signal(signed(p.act_bits + 1))
        m.d.comb += signed_a.eq(Mux(self.i_term.valid, Mux(self.i_term.sign, -a, a), 0))
        prod = Signal(signed(p.prod_bits))
        if p.act_format == "int8":
            m.d.comb += prod.eq(signed_a << self.i_term.shift)
        else:
            # one barrel shift by the activation's exponent plus the term's shift
            amount = Signal(range(31 + (1 << p.shift_bits)))
            m.d.comb += [amount.eq(self.i_act.sh + self.i_term.shift), prod.eq(signed_a << amount)]
        self._accumulate(m, prod, p.psum_bits)
        return m
