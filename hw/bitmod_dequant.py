"""Bit-serial dequantizer and accumulators of one column of the BitMoD array.

A job is one group partial sum ``I`` of one output row with its group's scale mantissa ``sm``. The
unit multiplies by shift and add, one mantissa bit per cycle, adding straight into that row's
accumulator::

    acc += sm[b] ? (I << b) : 0        b = 0 .. scale_bits - 1, one b per cycle

so it needs one ``acc_bits`` adder and two shift registers, no multiplier. Jobs arrive in row order
0, 1, .., rows-1 for every group, so the ``rows`` accumulators form a ring whose head always belongs
to the current job (no addressing, as in the MixPE array's edge). On a tile's last group the head's
total leaves on ``o_res`` and its slot restarts at 0.

Throughput: one job per ``scale_bits`` cycles. A column produces ``rows`` jobs per group and a group
every ``group * terms`` cycles at most, hence ``rows * scale_bits <= group * terms``
(:class:`~mixpim.models.bitmod_gemm.BitmodParams` enforces it).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .bitmod_decoder import check_params
from .layouts import result_layout

__all__ = ["job_layout", "BitmodDequant"]


def job_layout(params):
    """A dequantization job: ``value`` (a group partial sum), ``scale`` (its mantissa), ``tlast``
    (the tile's last group: the row's total leaves after this job)."""
    return data.StructLayout({"valid": 1, "tlast": 1, "value": signed(params.psum_bits),
                              "scale": unsigned(params.scale_bits)})


class BitmodDequant(wiring.Component):
    """Bit-serial ``acc[row] += scale * value`` for the rows of one column (see module doc).

    A job given (``i_job.valid``) on a cycle with ``o_ready`` high is accepted at that clock edge;
    its ``scale_bits`` additions happen on the next ``scale_bits`` edges. ``o_ready`` is high when
    idle and in the cycle of a job's last addition, so jobs can follow every ``scale_bits`` cycles.
    A job given while ``o_ready`` is low is a protocol error (the array never does it).

    Arguments
    ---------
    params : BitmodParams

    Members
    -------
    i_job : In(:func:`job_layout`)
    o_ready : Out(1)
    o_res : Out(:func:`~.layouts.result_layout` (params.acc_bits)): a row's tile total, valid for
        one cycle, registered at the edge of the tlast job's last addition (``scale_bits`` edges
        after the job was accepted)
    """

    def __init__(self, params):
        check_params(params)
        self._params = params
        super().__init__({
            "i_job": In(job_layout(params)),
            "o_ready": Out(1),
            "o_res": Out(result_layout(params.acc_bits)),
        })

    def elaborate(self, platform):
        p = self._params
        s = p.scale_bits
        m = Module()
        busy = Signal()
        count = Signal(range(s))
        x = Signal(signed(p.psum_bits + s - 1))  # value << b
        sm = Signal(unsigned(s))                  # remaining mantissa bits, current one in bit 0
        tlast = Signal()
        ring = [Signal(signed(p.acc_bits), name=f"acc{i}") for i in range(p.rows)]
        total = Signal(signed(p.acc_bits))
        final = Signal()
        m.d.comb += [
            total.eq(ring[0] + Mux(sm[0], x, 0)),
            final.eq(busy & (count == s - 1)),
            self.o_ready.eq(~busy | final),
        ]

        m.d.sync += self.o_res.valid.eq(0)
        with m.If(busy):
            m.d.sync += [x.eq(x << 1), sm.eq(sm >> 1), count.eq(count + 1)]
            with m.If(final):
                # the row is done: rotate the ring, its slot restarts at the tile's end
                m.d.sync += [ring[i].eq(ring[i + 1]) for i in range(p.rows - 1)]
                m.d.sync += [ring[-1].eq(Mux(tlast, 0, total)), busy.eq(0),
                             self.o_res.valid.eq(tlast), self.o_res.tlast.eq(tlast), self.o_res.value.eq(total)]
            with m.Else():
                m.d.sync += ring[0].eq(total)
        with m.If(self.i_job.valid):
            m.d.sync += [x.eq(self.i_job.value), sm.eq(self.i_job.scale), tlast.eq(self.i_job.tlast),
                         count.eq(0), busy.eq(1)]
        return m
