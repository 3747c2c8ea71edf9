"""A conventional bit-parallel PE for the BitMoD weight types: the reference design the bit-serial
:class:`~.bitmod_pe.BitmodPE` is measured against (docs/bitmod.md, "Measured results").

Per beat it decodes (code, type selector) to the weight's integer value ``v`` (the table comes from
:mod:`mixpim.models.bitmod`, :func:`value_table`; nothing is written by hand) and multiplies it with
the activation in one cycle with a hardware multiplier: ``a * v`` (INT8) or ``(sig * v) << sh``
(FP16, ``a_val = sig << sh``). It adds the product to the same exact group partial sum as the
bit-serial PE and reports it the same way, so both compute bit-identical group sums
``I = sum_{k in group} a_val[k] * v[k]`` (:func:`mixpim.models.mixpe.group_sums`, as used by
:func:`mixpim.models.bitmod_gemm.bitmod_gemm`); this one takes one cycle per beat, the bit-serial PE
``params.terms`` cycles (one per signed power-of-two term).
"""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned

from ..models.bitmod_gemm import SEL_BITS, value_table
from .bitmod_decoder import check_params
from .systolic import SystolicPE

__all__ = ["value_table", "value_bits", "BitmodParallelPE"]


def value_bits(params):
    """Width of a decoded weight value (two's complement): 4 bits at 3-bit BitMoD (-6..6), 6 at
    4-bit BitMoD (-16..16), 8 at INT8."""
    return int(params.value_max).bit_length() + 1


class BitmodParallelPE(SystolicPE):
    """Output-stationary bit-parallel PE for the BitMoD types: one weight per cycle, with a multiplier.

    Each cycle with ``i_ctl.valid`` (one beat: one weight) it decodes ``(i_code, i_sel)`` to the
    weight value ``v`` and adds ``a_val * v`` to the group's partial sum, where ``a_val`` is the
    INT8 ``a`` or FP16 ``sig << sh``: one multiplier ``a * v`` (INT8) or ``sig * v`` followed by a
    shift by ``sh`` (FP16; the multiplier stays ``12 x value_bits`` wide instead of multiplying the
    42-bit aligned ``a_val``). On the group's last beat (``i_ctl.glast``) the finished sum goes to
    ``o_res`` and the PE restarts from zero; ``o_res.valid`` is high for one cycle, ``o_res.value``
    and ``o_res.tlast`` then stay until the next group ends: the result semantics of
    :class:`~.bitmod_pe.BitmodPE`, with ``glast``/``tlast`` on the last *beat* instead of the last
    term. Reserved codes and selectors naming no type decode to 0. Ports, pass-through and group
    accumulator: :class:`~.systolic.SystolicPE`, with the lanes ``code`` and ``sel``, so PEs
    chain into an array as the other PEs do.

    Arguments
    ---------
    params : BitmodParams
        ``types``, ``wbits``, ``act``, ``group`` (through ``psum_bits``) are used; ``terms``,
        ``scale_bits`` and the array size are not.

    Members
    -------
    i_act, o_act, i_ctl, o_ctl : as in :class:`~.systolic.SystolicPE` (ctl valid: a beat;
        glast/tlast: the last beat of a group / tile)
    i_code, o_code : unsigned(params.wbits), the weight code
    i_sel, o_sel : unsigned(SEL_BITS), the group's type selector (index into ``params.types``)
    o_res : the group sum, as :class:`~.bitmod_pe.BitmodPE`'s
    """

    def __init__(self, params):
        check_params(params)
        super().__init__(params, {"code": unsigned(params.wbits), "sel": unsigned(SEL_BITS)},
                         params.psum_bits)

    def elaborate(self, platform):
        p = self._params
        m = Module()

        # decoder: (sel, code) -> value, one case per non-zero table entry
        value = Signal(signed(value_bits(p)))
        table = value_table(p)
        with m.Switch(Cat(self.i_code, self.i_sel)):
            for sel, code in zip(*table.nonzero()):
                with m.Case(int(code) | int(sel) << p.wbits):
                    m.d.comb += value.eq(int(table[sel, code]))
            with m.Default():
                m.d.comb += value.eq(0)

        # one multiplication per beat
        prod = Signal(signed((p.act_val_max * p.value_max).bit_length() + 1))
        if p.act_format == "int8":
            m.d.comb += prod.eq(self.i_act * value)
        else:
            sig_prod = Signal(signed(12 + len(value)))
            m.d.comb += [sig_prod.eq(self.i_act.sig * value), prod.eq(sig_prod << self.i_act.sh)]
        self._accumulate(m, prod, p.psum_bits)
        return m
