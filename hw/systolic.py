"""Building blocks shared by the output-stationary systolic arrays and their PEs.

The MixPE, baseline and BitMoD arrays (:mod:`.array`, :mod:`.bitmod_array`) have the same frame:
a stream in and a stream out with backpressure freezing the whole array, a row edge that turns the
streamed activations into PE activations (splitting FP16), row and column skews, a grid of PEs
passing activations right and weights and control bits down, and a deskewed output. Their PEs
(:mod:`.mixpe_pe`, :mod:`.baseline_pe`, :mod:`.bitmod_pe`, :mod:`.bitmod_parallel_pe`) share the
ports and the group accumulator; each differs only in how it forms the product of one cycle.
"""

from contextlib import nullcontext

from amaranth.hdl import EnableInserter, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fp16 import FP16Split
from .layouts import array_output_layout, ctl_layout, pe_act_layout, result_layout

__all__ = ["delay_line", "row_inputs", "pe_grid", "StreamArray", "SystolicPE"]


def delay_line(m, sig, n, name):
    """``sig`` delayed by ``n`` sync registers of ``m`` (named ``<name>_d0`` ..), e.g. the row and
    column skews and the output deskew of the arrays; ``sig`` itself when ``n`` is 0."""
    for k in range(n):
        reg = Signal.like(sig, name=f"{name}_d{k}")
        m.d.sync += reg.eq(sig)
        sig = reg
    return sig


def row_inputs(core, p, payload, beat, nonfinite, *, hold):
    """The row edge: one registered activation per row (``act_in<i>``), skewed by its row.

    INT8 activations are registered as they come; FP16 bit patterns are split into significand and
    shift (:class:`~.fp16.FP16Split`) and an infinity or NaN in a valid ``beat`` sets the sticky
    ``nonfinite``. With ``hold`` the registers load only on a ``beat`` (the BitMoD array holds an
    activation for all the terms of a beat); else on every cycle. Returns the ``rows`` skewed
    activations (row ``i`` delayed by ``i`` cycles, ``row<i>_skew``).
    """
    acts = []
    for i in range(p.rows):
        a = Signal(pe_act_layout(p.act_format), name=f"act_in{i}")
        if p.act_format == "int8":
            with core.If(beat) if hold else nullcontext():
                core.d.sync += a.eq(payload.act[i])
        else:
            split = FP16Split()
            core.submodules[f"fp16_{i}"] = split
            core.d.comb += split.i_bits.eq(payload.act[i])
            with core.If(beat) if hold else nullcontext():
                core.d.sync += a.eq(split.o_act)
                with core.If(split.o_nonfinite if hold else beat & split.o_nonfinite):
                    core.d.sync += nonfinite.eq(1)
        acts.append(delay_line(core, a, i, f"row{i}_skew"))
    return acts


def pe_grid(core, p, make_pe, acts, ctl, cols_in):
    """A ``rows x cols`` grid of ``make_pe(p)`` (submodules ``pe_<i>_<j>``), wired systolically.

    ``acts``: the (already skewed) activation of each row, entering column 0 and passing right
    through ``o_act``. ``ctl`` (:data:`~.layouts.ctl_layout`) and ``cols_in[j]`` (a dict: lane name
    -> value for PE members ``i_<name>``/``o_<name>``) enter row 0 of column ``j`` skewed by ``j``
    cycles (``col<j>_ctl``, ``col<j>_<name>``) and pass down. Returns the grid, ``grid[i][j]``.
    """
    col_ctl = [delay_line(core, ctl, j, f"col{j}_ctl") for j in range(p.cols)]
    cols_in = [{k: delay_line(core, v, j, f"col{j}_{k}") for k, v in col.items()}
               for j, col in enumerate(cols_in)]
    grid = [[make_pe(p) for _ in range(p.cols)] for _ in range(p.rows)]
    for i in range(p.rows):
        for j in range(p.cols):
            pe = grid[i][j]
            core.submodules[f"pe_{i}_{j}"] = pe
            core.d.comb += pe.i_act.eq(acts[i] if j == 0 else grid[i][j - 1].o_act)
            core.d.comb += pe.i_ctl.eq(col_ctl[j] if i == 0 else grid[i - 1][j].o_ctl)
            for k, v in cols_in[j].items():
                src = v if i == 0 else getattr(grid[i - 1][j], f"o_{k}")
                core.d.comb += getattr(pe, f"i_{k}").eq(src)
    return grid


class StreamArray(wiring.Component):
    """The stream frame of an array: members, backpressure and output stage.

    Arguments
    ---------
    params : the array's parameters (checked by the subclass)
    input_layout : layout of one input beat

    Members
    -------
    i_stream : In(stream.Signature(input_layout))
    o_stream : Out(stream.Signature(array_output_layout(params))), one token row per beat
    o_nonfinite : Out(1), sticky: an FP16 activation was an infinity or NaN (it was taken as 0)
    o_error : Out(1), sticky: a malformed input (``last`` in the middle of a weight group, ...)
    """

    def __init__(self, params, input_layout):
        self._params = params
        super().__init__({
            "i_stream": In(stream.Signature(input_layout)),
            "o_stream": Out(stream.Signature(array_output_layout(params))),
            "o_nonfinite": Out(1),
            "o_error": Out(1),
        })

    @property
    def params(self):
        return self._params

    def _enable(self, m):
        """The global enable (comb in ``m``): low while an output beat waits for ``ready``."""
        en = Signal()
        m.d.comb += en.eq(~(self.o_stream.valid & ~self.o_stream.ready))
        return en

    def _output(self, m, core, en, outs):
        """Drive ``o_stream`` from the deskewed column results ``outs`` (one
        :func:`~.layouts.result_layout` per column, the last one's ``valid`` for the beat) and add
        ``core`` to ``m`` frozen by ``en``."""
        m.d.comb += self.o_stream.valid.eq(outs[-1].valid)
        for j, out in enumerate(outs):
            m.d.comb += self.o_stream.payload[j].eq(out.value)
        m.submodules.core = EnableInserter(en)(core)


class SystolicPE(wiring.Component):
    """The frame of an output-stationary PE: ports, registered pass-through, group accumulator.

    Activations enter on ``i_act`` and leave on ``o_act``; the control bits and the weight lanes
    enter on ``i_ctl``/``i_<lane>`` and leave on ``o_ctl``/``o_<lane>``; all pass registered
    (latency 1 cycle), so PEs chain into a systolic grid (:func:`pe_grid`). A subclass forms the
    product of one cycle in ``elaborate`` and hands it to :meth:`_accumulate`.

    Arguments
    ---------
    params : the array's parameters (checked by the subclass); ``params.act_format`` is used
    lanes : dict, lane name -> shape, in member order
    res_bits : width of the result

    Members
    -------
    i_act, o_act : :func:`~.layouts.pe_act_layout` (params.act_format)
    i_<lane>, o_<lane> : the lane's shape
    i_ctl, o_ctl : :data:`~.layouts.ctl_layout`
    o_res : :func:`~.layouts.result_layout` (res_bits), registered: 1 cycle after the last beat
        (or term) of a group or tile
    """

    def __init__(self, params, lanes, res_bits):
        self._params = params
        self._lanes = tuple(lanes)
        act = pe_act_layout(params.act_format)
        super().__init__({
            "i_act": In(act), **{f"i_{k}": In(s) for k, s in lanes.items()}, "i_ctl": In(ctl_layout),
            "o_act": Out(act), **{f"o_{k}": Out(s) for k, s in lanes.items()}, "o_ctl": Out(ctl_layout),
            "o_res": Out(result_layout(res_bits)),
        })

    def _accumulate(self, m, prod, bits, *, last=None, tlast=None, name="psum"):
        """Pass the inputs on and add ``prod`` to a ``bits``-wide sum in each valid cycle.

        In the valid cycle with ``last`` (default ``i_ctl.glast``) the finished sum goes to
        ``o_res`` (``o_res.tlast``: ``tlast``, default ``i_ctl.tlast``) and the sum restarts from
        zero. ``o_res.valid`` is high for one cycle; ``o_res.value`` and ``o_res.tlast`` then stay
        until the next result.
        """
        ctl = self.i_ctl
        last = ctl.glast if last is None else last
        tlast = ctl.tlast if tlast is None else tlast
        psum = Signal(signed(bits), name=name)
        total = Signal(signed(bits), name="total")
        m.d.comb += total.eq(psum + prod)

        m.d.sync += [
            self.o_act.eq(self.i_act),
            *(getattr(self, f"o_{k}").eq(getattr(self, f"i_{k}")) for k in self._lanes),
            self.o_ctl.eq(ctl), self.o_res.valid.eq(0),
        ]
        with m.If(ctl.valid):
            with m.If(last):
                m.d.sync += [
                    psum.eq(0),
                    self.o_res.valid.eq(1), self.o_res.tlast.eq(tlast), self.o_res.value.eq(total),
                ]
            with m.Else():
                m.d.sync += psum.eq(total)
