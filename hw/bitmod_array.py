"""The BitMoD array: output-stationary, bit-serial weights, bit-serial dequantization at the edge.

Same stream protocol as the MixPE array (:mod:`.array`, docs/mixpe.md), so a tile can be built
with either: one input beat carries an activation per row and a weight code, type selector and
scale mantissa per column; ``last`` ends a tile of ``groups * group`` beats; one output beat is one
token row of ``cols`` accumulators. Differences (docs/bitmod.md):

* **Bit-serial weights.** A beat is held for ``terms`` cycles; each cycle the column's decoder (one
  per column, at the top edge) turns (code, selector, cycle) into one signed power-of-two term,
  which flows down the column while the held activation flows along the row. ``i_stream.ready``
  is high once every ``terms`` cycles at most (when the held beat's last term is issued, or idle).
* **PEs** add ``+-(a_val << shift)`` per term and hold each finished group sum until the next group
  ends (:mod:`.bitmod_pe`).
* **Column edge.** When row 0 of a column finishes a group, a sequencer hands the rows' sums one
  after another, every ``scale_bits`` cycles, to the column's bit-serial dequantizer
  (:mod:`.bitmod_dequant`), which multiplies by the group's scale mantissa (from a FIFO written at
  each group's first beat) and accumulates in a ring of ``rows`` accumulators. Tile totals leave
  one row every ``scale_bits`` cycles, deskewed so a beat carries one token row.

Backpressure on ``o_stream`` freezes the whole array (a global enable); missing input beats are
bubbles. Sticky status: ``o_nonfinite`` (an FP16 activation was inf/NaN, taken as 0), ``o_error``
(``last`` in the middle of a group, a reserved code, or a selector naming no type; the array must
then be reset).

Latency: a tile's first row leaves ``params.latency = terms + cols + 1 + scale_bits`` cycles after
its last beat was taken, the other rows every ``scale_bits`` cycles (derivation in
:mod:`mixpim.models.bitmod_gemm`).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data

from ..models.bitmod_gemm import SEL_BITS
from .bitmod_decoder import BitmodDecoder, check_params, term_layout
from .bitmod_dequant import BitmodDequant
from .bitmod_pe import BitmodPE
from .layouts import ctl_layout, stream_act_shape
from .systolic import StreamArray, delay_line, pe_grid, row_inputs

__all__ = ["bitmod_input_layout", "BitmodArray"]


def _index(n):
    """Shape of an index into ``n`` things, at least 1 bit wide (no zero-width signals in the
    Verilog)."""
    return range(max(n, 2))


def bitmod_input_layout(params):
    """One input beat of the BitMoD array (stream payload, fields LSB first).

    ``act[i]``: activation of row i (FP16 bit pattern or INT8 value); ``code[j]``: weight code of
    column j; ``sel[j]``: index into ``params.types`` of the group's type; ``scale[j]``: the group's
    scale mantissa (``sel`` and ``scale`` constant within a group); ``last``: last beat of the tile.
    """
    return data.StructLayout({
        "act": data.ArrayLayout(stream_act_shape(params.act_format), params.rows),
        "code": data.ArrayLayout(unsigned(params.wbits), params.cols),
        "sel": data.ArrayLayout(unsigned(SEL_BITS), params.cols),
        "scale": data.ArrayLayout(unsigned(params.scale_bits), params.cols),
        "last": 1,
    })


class BitmodArray(StreamArray):
    """The BitMoD array (see module doc).

    Arguments
    ---------
    params : BitmodParams

    Members
    -------
    i_stream : In(stream.Signature(bitmod_input_layout(params)))
    o_stream, o_nonfinite, o_error : as in :class:`~.systolic.StreamArray` (o_error: see module doc)
    """

    def __init__(self, params):
        check_params(params)
        super().__init__(params, bitmod_input_layout(params))

    def elaborate(self, platform):
        p = self._params
        t = p.terms
        m = Module()
        core = Module()  # everything that freezes under output backpressure
        en = self._enable(m)
        payload = self.i_stream.payload

        # Input stage: a beat is held for `terms` cycles, one term per cycle.
        busy = Signal()
        step = Signal(_index(t))
        take = Signal()
        m.d.comb += [
            take.eq(~busy | (step == t - 1)),
            self.i_stream.ready.eq(en & take),
        ]
        beat = Signal()  # inside `core`, a transfer
        core.d.comb += beat.eq(self.i_stream.valid & take)

        pos = Signal(_index(p.group))  # beat within the group
        glast = pos == p.group - 1
        held_code = Signal.like(payload.code)
        held_sel = Signal.like(payload.sel)
        held_glast = Signal()
        held_tlast = Signal()
        with core.If(beat):
            core.d.sync += [pos.eq(pos + 1), busy.eq(1), step.eq(0),
                            held_code.eq(payload.code), held_sel.eq(payload.sel),
                            held_glast.eq(glast), held_tlast.eq(payload.last)]
            with core.If(glast | payload.last):
                core.d.sync += pos.eq(0)
            with core.If(payload.last & ~glast):
                core.d.sync += self.o_error.eq(1)
        with core.Elif(busy & (step != t - 1)):
            core.d.sync += step.eq(step + 1)
        with core.Else():
            core.d.sync += busy.eq(0)

        # The term slot registered at this edge: the new beat's first, or the held beat's next.
        n_valid = beat | (busy & (step != t - 1))
        n_step = Signal(_index(t))
        n_last = Signal()
        core.d.comb += [n_step.eq(Mux(beat, 0, step + 1)), n_last.eq(n_step == t - 1)]
        ctl = Signal(ctl_layout)
        core.d.sync += [
            ctl.valid.eq(n_valid),
            ctl.glast.eq(n_valid & n_last & Mux(beat, glast, held_glast)),
            ctl.tlast.eq(n_valid & n_last & Mux(beat, payload.last, held_tlast)),
        ]
        terms = []
        for j in range(p.cols):
            dec = BitmodDecoder(p)
            core.submodules[f"decoder_{j}"] = dec
            core.d.comb += [
                dec.i_code.eq(Mux(beat, payload.code[j], held_code[j])),
                dec.i_sel.eq(Mux(beat, payload.sel[j], held_sel[j])),
                dec.i_step.eq(n_step),
            ]
            with core.If(beat & dec.o_reserved):
                core.d.sync += self.o_error.eq(1)
            term = Signal(term_layout(p), name=f"term_in{j}")
            core.d.sync += term.eq(dec.o_term)
            terms.append(term)

        # Row edge: activations, FP16 split into significand and shift, held for the beat.
        acts = row_inputs(core, p, payload, beat, self.o_nonfinite, hold=True)
        grid = pe_grid(core, p, BitmodPE, acts, ctl, [{"term": term} for term in terms])

        # Scales of groups in flight, written at each group's first beat; one shared write pointer,
        # one read pointer per column, advanced when the column starts dequantizing a group.
        depth = p.scale_fifo_depth
        slots = [Signal(p.scale_bits * p.cols, name=f"scale_slot{s}") for s in range(depth)]
        wptr = Signal(_index(depth))
        with core.If(beat & (pos == 0)):
            for s, slot in enumerate(slots):
                with core.If(wptr == s):
                    core.d.sync += slot.eq(payload.scale.as_value())
            core.d.sync += wptr.eq(Mux(wptr == depth - 1, 0, wptr + 1))

        outs = []
        for j in range(p.cols):
            outs.append(delay_line(core, self._column_edge(core, p, j, grid, slots), p.cols - 1 - j,
                               f"col{j}_deskew"))

        self._output(m, core, en, outs)
        return m

    def _column_edge(self, core, p, j, grid, slots):
        """Sequencer and dequantizer of column ``j``; returns the dequantizer's ``o_res``."""
        depth = len(slots)
        dq = BitmodDequant(p)
        core.submodules[f"dequant_{j}"] = dq
        rptr = Signal(_index(depth), name=f"col{j}_rptr")
        scale = Signal(p.scale_bits, name=f"col{j}_scale")  # the current group's, latched at start
        row = Signal(_index(p.rows), name=f"col{j}_row")      # next row to hand over
        active = Signal(name=f"col{j}_active")               # rows of the group remain
        start = grid[0][j].o_res.valid                       # row 0 finished a group
        issue = Signal(name=f"col{j}_issue")
        sel_row = Signal(_index(p.rows), name=f"col{j}_sel_row")
        core.d.comb += [
            issue.eq(start | (active & dq.o_ready)),
            sel_row.eq(Mux(start, 0, row)),
        ]
        head = Signal(p.scale_bits, name=f"col{j}_head")  # the scale at the read pointer
        for s, slot in enumerate(slots):
            with core.If(rptr == s):
                core.d.comb += head.eq(slot.word_select(j, p.scale_bits))
        core.d.comb += [dq.i_job.valid.eq(issue), dq.i_job.scale.eq(Mux(start, head, scale))]
        for i in range(p.rows):  # the selected row's held group result
            with core.If(sel_row == i):
                core.d.comb += [dq.i_job.value.eq(grid[i][j].o_res.value),
                                dq.i_job.tlast.eq(grid[i][j].o_res.tlast)]
        with core.If(start):
            core.d.sync += [scale.eq(head), rptr.eq(Mux(rptr == depth - 1, 0, rptr + 1))]
        with core.If(issue):
            core.d.sync += [row.eq(sel_row + 1), active.eq(sel_row != p.rows - 1)]
        return dq.o_res
