"""Output-stationary systolic arrays: the MixPE array and the baseline array it is compared against.

Dataflow (docs/mixpe.md has the pictures and the cycle derivation). One input beat per cycle
carries an activation for each of the ``rows`` rows and a weight code, zero point and scale for each
of the ``cols`` columns. Activations are skewed by row and flow right; weights and control bits are
skewed by column and flow down, so PE (i, j) sees beat k at cycle ``k + i + j``. A tile of
``groups * group`` beats computes ``rows x cols`` outputs; tiles stream back to back.

* **MixPE array**: the zero point is subtracted once per column at the top edge; PEs multiply by
  shift and add and keep a narrow group partial sum; at each group end every PE of a column puts its
  sum on the column's result bus (the skew makes them arrive one per cycle: this is why rows must
  not exceed the group size); the bottom edge multiplies by the group scale (one multiplier per
  column) and accumulates in a ring of ``rows`` wide accumulators per column. With group offsets
  (``params.group_offset``) a :class:`~.group_sum.GroupSum` beside each row's first PE sums the
  row's activations per group; those sums take a bus of their own down the left edge and a
  register chain along the bottom (column ``j`` sees them ``j`` cycles later, exactly when its own
  bus carries the same row's group sum), and the bottom edge adds ``om * A`` (a second multiplier
  per column, the offset from the same FIFO as the scale) to ``sm * I``.
* **Baseline array**: every PE dequantizes its weight (``(q - z) * sm``, plus ``om`` with group
  offsets) and multiplies; full-width accumulators in every PE; results leave through the same
  column bus at tile end.

Output beats are deskewed so one beat carries one token row of ``cols`` accumulators.
Backpressure on ``o_stream`` freezes the whole array (a global enable); a cycle with no input beat
sends a bubble through.

Latency: the first row of a tile leaves ``params.latency`` cycles after the tile's last beat
entered (``cols + 4`` MixPE, ``cols + 2`` baseline); the other rows follow one per cycle.
"""

from functools import reduce

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data

from .baseline_pe import BaselinePE
from .bitmod_array import BitmodArray
from .group_sum import GroupSum
from .layouts import array_input_layout, ctl_layout, result_layout
from .mixpe_pe import MixPE, check_params
from .systolic import StreamArray, delay_line, pe_grid, row_inputs

__all__ = ["MixPEArray", "BaselineArray", "make_array", "delay_line"]


def _bus(m, results, width, name):
    """Registered OR-bus of PE results; at most one is valid per cycle by construction."""
    bus = Signal(result_layout(width), name=name)
    m.d.sync += [
        bus.valid.eq(reduce(lambda x, y: x | y, (r.valid for r in results))),
        bus.tlast.eq(reduce(lambda x, y: x | y, (r.valid & r.tlast for r in results))),
        bus.value.eq(reduce(lambda x, y: x | y, (r.value.as_unsigned() & r.valid.replicate(width)
                                               for r in results))),
    ]
    return bus


class _Array(StreamArray):
    """Common structure: stream handshake, input stage, skews, PE grid, column bus, deskew.

    Members
    -------
    i_stream : In(stream.Signature(array_input_layout(params)))
    o_stream, o_nonfinite : as in :class:`~.systolic.StreamArray`
    o_error : Out(1), sticky: a tile ended (``last``) in the middle of a weight group
    """

    family = None
    _pe = None           # PE class
    _result_width = None  # ArrayParams attribute: width of a PE result on the column bus

    def __init__(self, params):
        check_params(params, self.family)
        super().__init__(params, array_input_layout(params))

    def elaborate(self, platform):
        p = self._params
        m = Module()
        core = Module()  # everything that freezes under output backpressure
        en = self._enable(m)
        m.d.comb += self.i_stream.ready.eq(en)
        beat = self.i_stream.valid  # inside `core`, a valid beat is a transfer
        payload = self.i_stream.payload

        # Group position: group boundaries come from the configured group size, tile ends from `last`.
        pos = Signal(range(p.group))
        glast = pos == p.group - 1
        with core.If(beat):
            core.d.sync += pos.eq(0 if p.group == 1 else pos + 1)
            with core.If(glast | payload.last):
                core.d.sync += pos.eq(0)
            with core.If(payload.last & ~glast):
                core.d.sync += self.o_error.eq(1)

        ctl = Signal(ctl_layout)
        core.d.sync += [ctl.valid.eq(beat), ctl.glast.eq(beat & glast), ctl.tlast.eq(beat & payload.last)]

        # Row edge: activations, FP16 split into significand and shift.
        acts = row_inputs(core, p, payload, beat, self.o_nonfinite, hold=False)

        cols_in, edge_state = self._column_inputs(core, p, beat, pos, payload)
        grid = pe_grid(core, p, self._pe, acts, ctl, cols_in)
        row_sums = self._row_edge(core, p, grid)

        outs = []
        for j in range(p.cols):
            bus = _bus(core, [grid[i][j].o_res for i in range(p.rows)], getattr(p, self._result_width), f"col{j}_bus")
            col_out = self._column_edge(core, p, j, bus, edge_state, row_sums)
            outs.append(delay_line(core, col_out, p.cols - 1 - j, f"col{j}_deskew"))

        self._output(m, core, en, outs)
        return m

    def _row_edge(self, core, p, grid):
        """What the left edge computes from each row's PE inputs for the column edges: None, or
        per column a value (see :class:`MixPEArray`)."""
        return None


class MixPEArray(_Array):
    """The MixPE array (see module doc). ``params``: ArrayParams of family "mixpe".

    Per column the top edge subtracts the zero point; the bottom edge holds a FIFO of
    ``params.scale_fifo_depth`` group scales, one multiplier and ``rows`` accumulators of
    ``params.acc_bits`` bits.

    With ``params.group_offset`` the FIFO also holds each group's signed offset mantissas
    (``offset_bits``), the left edge has one :class:`~.group_sum.GroupSum` per row
    (``gsum_bits``), and each column's first edge stage adds ``om * A`` (``offset_prod_bits``) to
    ``sm * I``: ``term_bits`` wide. The latency does not change.
    """

    family = "mixpe"
    _pe = MixPE
    _result_width = "psum_bits"  # PEs hand narrow group sums to the edge

    def _column_inputs(self, core, p, beat, pos, payload):
        # Scales of groups in flight, written at each group's first beat; shared write pointer,
        # one read pointer per column (columns run j cycles apart).
        depth = p.scale_fifo_depth
        slots = [Signal(data.ArrayLayout(p.scale_bits, p.cols), name=f"scale_slot{s}") for s in range(depth)]
        oslots = [Signal(data.ArrayLayout(signed(p.offset_bits), p.cols), name=f"offset_slot{s}")
                  for s in range(depth)] if p.group_offset else []
        wptr = Signal(range(depth))
        with core.If(beat & (pos == 0)):
            for s, slot in enumerate(slots):
                with core.If(wptr == s):
                    core.d.sync += slot.eq(payload.scale)
                    if oslots:
                        core.d.sync += oslots[s].eq(payload.offset)
            core.d.sync += wptr.eq(0 if depth == 1 else (wptr + 1) % depth)
        cols = []
        for j in range(p.cols):
            wc = Signal(signed(p.wc_bits), name=f"wc_in{j}")
            core.d.sync += wc.eq(payload.code[j] - payload.zero[j])
            cols.append({"wc": wc})
        return cols, (slots, oslots)

    def _row_edge(self, core, p, grid):
        """With group offsets: per column ``j``, the activation group sum ``A`` of the row whose
        group sum is on column ``j``'s bus in the same cycle.

        ``GroupSum`` ``i`` takes PE (i, 0)'s inputs, so its sum of group g is ready with PE
        (i, 0)'s (registered ``i + 1`` cycles after the group's last beat entered the array);
        rows finish on consecutive cycles as in a column, so the sums share a registered bus
        (``gsum_bus``, in step with column 0's bus), and a chain of registers along the bottom
        delays it by ``j`` for column ``j`` (``gsum_col<j>``), as the column skew delays column
        ``j``'s results.
        """
        if not p.group_offset:
            return None
        sums = []
        for i in range(p.rows):
            gs = GroupSum(p)
            core.submodules[f"gsum_{i}"] = gs
            core.d.comb += [gs.i_act.eq(grid[i][0].i_act), gs.i_ctl.eq(grid[i][0].i_ctl)]
            sums.append(gs.o_res)
        chain = [_bus(core, sums, p.gsum_bits, "gsum_bus").value]
        for j in range(1, p.cols):
            reg = Signal(signed(p.gsum_bits), name=f"gsum_col{j}")
            core.d.sync += reg.eq(chain[-1])
            chain.append(reg)
        return chain

    def _column_edge(self, core, p, j, bus, fifo, row_sums):
        slots, oslots = fifo
        depth = p.scale_fifo_depth
        rptr = Signal(range(depth), name=f"col{j}_rptr")
        row = Signal(range(p.rows), name=f"col{j}_row")
        scale = Signal(p.scale_bits, name=f"col{j}_scale")
        for s, slot in enumerate(slots):
            with core.If(rptr == s):
                core.d.comb += scale.eq(slot[j])
        term = bus.value * scale
        if row_sums is not None:
            offset = Signal(signed(p.offset_bits), name=f"col{j}_offset")
            for s, slot in enumerate(oslots):
                with core.If(rptr == s):
                    core.d.comb += offset.eq(slot[j])
            oprod = Signal(signed(p.offset_prod_bits), name=f"col{j}_oprod")
            core.d.comb += oprod.eq(row_sums[j] * offset)
            term = term + oprod

        # Stage 1: dequantize the group sum (the array's only multiplier per column; with group
        # offsets, plus the offset times the row's activation group sum).
        scaled = Signal(result_layout(p.term_bits), name=f"col{j}_scaled")
        core.d.sync += [scaled.valid.eq(bus.valid), scaled.tlast.eq(bus.tlast),
                        scaled.value.eq(term)]
        with core.If(bus.valid):
            core.d.sync += row.eq(0 if p.rows == 1 else row + 1)
            with core.If(row == p.rows - 1):
                core.d.sync += [row.eq(0), rptr.eq(0 if depth == 1 else (rptr + 1) % depth)]

        # Stage 2: accumulate. Results arrive in row order, so the accumulators form a ring whose
        # head always belongs to the arriving row.
        ring = [Signal(signed(p.acc_bits), name=f"col{j}_acc{i}") for i in range(p.rows)]
        total = Signal(signed(p.acc_bits), name=f"col{j}_total")
        core.d.comb += total.eq(ring[0] + scaled.value)
        out = Signal(result_layout(p.acc_bits), name=f"col{j}_out")
        core.d.sync += out.valid.eq(0)
        with core.If(scaled.valid):
            core.d.sync += [ring[i].eq(ring[i + 1]) for i in range(p.rows - 1)]
            core.d.sync += ring[-1].eq(total)
            with core.If(scaled.tlast):
                core.d.sync += [ring[-1].eq(0), out.valid.eq(1), out.tlast.eq(1), out.value.eq(total)]
        return out


class BaselineArray(_Array):
    """The baseline array (see module doc). ``params``: ArrayParams of family "baseline"."""

    family = "baseline"
    _pe = BaselinePE
    _result_width = "acc_bits"  # PEs hand full accumulators to the edge

    def _column_inputs(self, core, p, beat, pos, payload):
        lanes = ("code", "zero", "scale") + (("offset",) if p.group_offset else ())
        cols = []
        for j in range(p.cols):
            regs = {k: Signal(getattr(payload, k)[j].shape(), name=f"{k}_in{j}") for k in lanes}
            core.d.sync += [r.eq(getattr(payload, k)[j]) for k, r in regs.items()]
            cols.append(regs)
        return cols, None

    def _column_edge(self, core, p, j, bus, edge_state, row_sums):
        return bus


def make_array(params):
    """The array of ``params.family``: MixPE or baseline (``ArrayParams``), or BitMoD
    (``BitmodParams``: :class:`~.bitmod_array.BitmodArray`, the same stream protocol)."""
    if getattr(params, "family", None) == "bitmod":
        return BitmodArray(params)
    check_params(params, getattr(params, "family", None))
    return {"mixpe": MixPEArray, "baseline": BaselineArray}[params.family](params)
