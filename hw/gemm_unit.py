"""GEMM unit of the tile: feeds the array from the scratchpads and drains its outputs into ACC.

Schedule (docs/tile.md, "Cycle model rules"; :func:`mixpim.models.tile_timing.gemm_cycles`,
:mod:`mixpim.models.tile_array`), for an instruction started in cycle ``s`` with ``B = groups *
group`` beats, the array's ``T`` cycles per beat (1; BitMoD: ``terms``), latency ``L``, ``S``
cycles between output rows (1; BitMoD: ``scale_bits``) and ``R`` rows:

* beats: cycle ``s + k T`` reads ACT[``act_addr + k``], WGT[``wgt_addr + k``] and
  META[``meta_addr + k // group``]; the words enter the array one cycle later (the BitMoD array
  takes a beat every ``T`` cycles); ``busy`` for ``D = B T`` cycles;
* drain: row ``r`` of the tile leaves the array ``L + r S`` cycles after the last beat entered
  and is written to ACC[``acc_addr + r``] in that cycle (with ``accumulate``, added to the old
  word, read one cycle before: the reads are scheduled from the beats' end, since the array's
  latency is fixed);
* completion (``complete``, tokens given at its end) in the cycle of the last ACC write,
  ``s + D - 1 + tail`` (``tail = L + 2 - T + (R - 1) S``; MixPE: ``L + R``).
  With ``R == group`` (MixPE and baseline arrays) the next GEMM's first ACC read can be in the
  cycle of this one's last ACC write; that write is forwarded to it (an ACC word of flip-flops;
  not built otherwise).

The next GEMM may start in ``s + D``: its beats overlap this one's drain. Drains never overlap
each other (``(R - 1) S < group T <= D``: ``R <= group``, BitMoD ``R S <= group T``), so one
sequencer serves them, in order; the operands still needed by the drains wait in a small FIFO.

``wsrc`` (an activation x activation product; the tile guarantees a MixPE or baseline array,
``rows >= cols``, ``wbits`` 4, ``scale_bits >= 5``): the INT8 weight of column ``n`` and beat
``k`` is lane ``n`` of ACT[``wgt_addr + k``] (read on ``r_wact``; FP16 lanes go through
``fp16_bits_to_int8``). The unit streams K twice as one array tile of ``2 D`` beats (``busy``
``2 D`` cycles; WGT and META are not read): beats ``k`` = 0 .. D-1 carry the high nibbles, code ``(w >> 4) + 8`` with zero
point 8 and scale 16, beats ``D + k`` the low nibbles, code ``w & 15`` with zero point 0 and
scale 1, both with ACT[``act_addr + k``] (and group offset 0). The array sums the ``2 groups``
groups, so the drained row is ``sum_k a[m, k] * w[n, k]`` exactly: ``16 (w >> 4) + (w & 15) == w``. The drain and the
completion follow the last beat as above (``D`` read as ``2 D``).

Word formats (docs/tile.md, "Words in DRAM"): ACT lane i is byte i (INT8) or bytes 2i, 2i+1
(FP16); WGT column j is nibble j; META column j is bytes Ej..Ej+E-1, ``E =
config.meta_entry_bytes`` (scale mantissa uint16, zero point uint8 (BitMoD: the type selector),
and with ``group_offset`` the offset mantissa int24); the array takes the low ``wbits`` /
``scale_bits`` / ``offset_bits`` (BitMoD: ``SEL_BITS``) bits (the offset as two's complement).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.bitmod_gemm import SEL_BITS
from ..models.isa import MASK_BITS, Opcode, Spad
from ..models.tile_array import array_params, gemm_tail, wsrc_supported
from .array import make_array
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .vec_fixed import fp16_to_int8 as _fp16_to_int8

__all__ = ["gemm_layout", "wsrc_supported", "GemmUnit"]


def gemm_layout():
    """Operands of GEMM (from the ISA)."""
    return operand_layout(Opcode.GEMM)


class GemmUnit(ConfigComponent):
    """Executes one GEMM's beats at a time; drains overlap the next GEMM's beats.

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)
    pc_bits : int
        Width of the instruction addresses carried for the status registers.

    Members
    -------
    start : In(1), take ``i_inst`` / ``i_signal`` / ``i_pc`` and start (only while ``idle``)
    i_inst : In(:func:`gemm_layout`)
    i_signal : In(4), token mask given at completion; i_pc : In(pc_bits)
    idle : Out(1), registered: no beats in progress (a drain may be)
    busy : Out(1), a beat cycle (``start`` or beats in progress)
    inflight : Out(1), registered: a GEMM started before this cycle has not completed
    complete : Out(1), the completion cycle of a GEMM; ``o_signal`` / ``o_pc`` are its operands
    nonfinite : Out(1), sticky: an FP16 activation was inf/NaN (the array's flag)
    fault : Out(1), the array's output disagreed with the drain schedule or flagged a malformed
        stream (cannot happen; reported as ``ARRAY_STREAM``)
    r_act, r_wgt, r_meta, r_acc : Out(:class:`~.dma.SpadReadSignature`), one lane each
    r_wact : Out(SpadReadSignature), one ACT word: the weights of a ``wsrc`` GEMM (a second ACT
        read port, used in the same cycles as ``r_act``)
    w_acc : Out(:class:`~.dma.SpadWriteSignature`), one lane
    """

    def __init__(self, config, pc_bits=16):
        self._pc_bits = pc_bits
        super().__init__(config)
        self._params = array_params(config)

    def _members(self, config):
        pc_bits = self._pc_bits
        acc = word_shape(config, Spad.ACC)
        return {
            "start": In(1),
            "i_inst": In(gemm_layout()),
            "i_signal": In(MASK_BITS),
            "i_pc": In(pc_bits),
            "idle": Out(1),
            "busy": Out(1),
            "inflight": Out(1),
            "complete": Out(1),
            "o_signal": Out(MASK_BITS),
            "o_pc": Out(pc_bits),
            "nonfinite": Out(1),
            "fault": Out(1),
            "r_act": Out(SpadReadSignature(word_shape(config, Spad.ACT), 1)),
            "r_wact": Out(SpadReadSignature(word_shape(config, Spad.ACT), 1)),
            "r_wgt": Out(SpadReadSignature(word_shape(config, Spad.WGT), 1)),
            "r_meta": Out(SpadReadSignature(word_shape(config, Spad.META), 1)),
            "r_acc": Out(SpadReadSignature(acc, 1)),
            "w_acc": Out(SpadWriteSignature(acc, 1)),
        }

    def elaborate(self, platform):
        cfg, p = self._cfg, self._params
        rows, cols, group = cfg.rows, cfg.cols, cfg.group
        lat, T, S = p.latency, p.cycles_per_beat, p.row_interval
        bitmod = p.family == "bitmod"
        m = Module()
        m.submodules.array = array = make_array(p)
        m.d.comb += array.o_stream.ready.eq(1)  # ACC takes a row every cycle: never backpressure

        # -- beats --------------------------------------------------------------------------
        wsrc_ok = wsrc_supported(cfg)
        inst = Signal(gemm_layout())
        beating = Signal()
        k = Signal(len(inst.groups) + exact_log2(group))    # beat read next (when beating)
        lo = Signal()                                       # wsrc: the low-nibble pass
        ph = Signal(range(max(T, 2)))                       # cycle within the beat (T > 1)
        tailing = Signal()                                  # the last beat was read (T > 1)
        beats = inst.groups * group
        m.d.comb += [self.idle.eq(~beating), self.busy.eq(self.start | beating)]
        reading = Signal()
        kk = Signal.like(k)
        base = Signal(gemm_layout())
        wsrc = Signal()
        m.d.comb += [reading.eq(self.start | (beating & (ph == 0) & ~tailing)),
                     kk.eq(Mux(beating, k, 0)),
                     base.eq(Mux(beating, inst, self.i_inst)),
                     wsrc.eq(base.wsrc if wsrc_ok else 0)]
        pass_end = Signal()   # the last beat of a pass
        end = Signal()        # the last beat's read
        m.d.comb += [pass_end.eq(beating & reading & (k == beats - 1)), end.eq(pass_end & (lo | ~wsrc))]
        with m.If(self.start):
            m.d.sync += [inst.eq(self.i_inst), k.eq(1), lo.eq(0), beating.eq(1), ph.eq(1 % T),
                         tailing.eq(0)]
        with m.Elif(beating):
            if T == 1:  # one beat per cycle
                m.d.sync += k.eq(k + 1)
                with m.If(end):
                    m.d.sync += beating.eq(0)
                with m.Elif(pass_end):  # wsrc: K again, the low nibbles
                    m.d.sync += [k.eq(0), lo.eq(1)]
            else:  # a beat every T cycles; busy until the last beat's last cycle (no wsrc)
                m.d.sync += ph.eq(Mux(ph == T - 1, 0, ph + 1))
                with m.If(reading):
                    m.d.sync += k.eq(k + 1)
                with m.If(end):
                    m.d.sync += tailing.eq(1)
                with m.If(tailing & (ph == T - 1)):
                    m.d.sync += beating.eq(0)
        m.d.comb += [
            self.r_act.en.eq(reading), self.r_act.addr.eq(base.act_addr + kk),
            self.r_wgt.en.eq(reading & ~wsrc), self.r_wgt.addr.eq(base.wgt_addr + kk),
            self.r_meta.en.eq(reading & ~wsrc),
            self.r_meta.addr.eq(base.meta_addr + (kk >> exact_log2(group))),
            self.r_wact.en.eq(reading & wsrc), self.r_wact.addr.eq(base.wgt_addr + kk),
        ]

        # the words arrive one cycle after their read: one array beat
        beat_valid = Signal()
        beat_last = Signal()
        beat_wsrc = Signal()
        beat_lo = Signal()
        m.d.sync += [beat_valid.eq(reading), beat_last.eq(end), beat_wsrc.eq(wsrc),
                     beat_lo.eq(beating & lo)]
        payload = array.i_stream.payload
        act_bits = 16 if p.act_format == "fp16" else 8
        act_word = self.r_act.data[0]
        wgt_word = self.r_wgt.data[0]
        meta_word = self.r_meta.data[0]
        wact_word = self.r_wact.data[0]
        entry = 8 * cfg.meta_entry_bytes  # bits of one column's META entry
        m.d.comb += [array.i_stream.valid.eq(beat_valid), payload.last.eq(beat_last)]
        m.d.comb += [payload.act[i].eq(act_word[i * act_bits:(i + 1) * act_bits]) for i in range(rows)]
        for j in range(cols):
            code = wgt_word[4 * j:4 * j + p.wbits]
            scale = meta_word[entry * j:entry * j + p.scale_bits]
            if bitmod:  # byte 2 is the group's type selector
                m.d.comb += [payload.code[j].eq(code), payload.scale[j].eq(scale),
                             payload.sel[j].eq(meta_word[entry * j + 16:entry * j + 16 + SEL_BITS])]
                continue
            zero = meta_word[entry * j + 16:entry * j + 16 + p.wbits]
            offset = meta_word[entry * j + 24:entry * j + 24 + p.offset_bits] if p.group_offset else None
            if wsrc_ok:
                lane = wact_word[j * act_bits:(j + 1) * act_bits]
                w = Signal(8, name=f"wsrc_w{j}")
                m.d.comb += w.eq(_fp16_to_int8(lane) if p.act_format == "fp16" else lane)
                # high pass: the signed high nibble + 8 = its top bit flipped
                code = Mux(beat_wsrc, Mux(beat_lo, w[:4], w[4:] ^ 8), code)
                scale = Mux(beat_wsrc, Mux(beat_lo, 1, 16), scale)
                zero = Mux(beat_wsrc, Mux(beat_lo, 0, 8), zero)
                offset = None if offset is None else Mux(beat_wsrc, 0, offset)
            m.d.comb += [payload.code[j].eq(code), payload.scale[j].eq(scale),
                         payload.zero[j].eq(zero)]
            if offset is not None:
                m.d.comb += payload.offset[j].eq(offset)

        # -- GEMMs between start and completion ---------------------------------------------
        # Starts are >= group * T cycles apart and a GEMM completes `tail` cycles after its beats.
        pend_layout = data.StructLayout({"acc_addr": len(inst.acc_addr), "accumulate": 1,
                                         "signal": MASK_BITS, "pc": len(self.i_pc)})
        m.submodules.pending = pending = fifo.SyncFIFO(width=pend_layout.size,
                                                       depth=gemm_tail(p) // (group * T) + 2)
        m.d.comb += [
            pending.w_en.eq(self.start),
            pending.w_data.eq(Cat(self.i_inst.acc_addr, self.i_inst.accumulate, self.i_signal,
                                  self.i_pc)),
        ]
        count = Signal(range(pending.depth + 1))
        m.d.sync += count.eq(count + self.start - self.complete)
        m.d.comb += self.inflight.eq(count != 0)

        # -- drain ---------------------------------------------------------------------------
        # ``go``: the last beat's read, delayed by L: ACC row 0 is read now, written in L + 1.
        go = end
        for i in range(lat):
            nxt = Signal(name=f"end_d{i}")
            m.d.sync += nxt.eq(go)
            go = nxt
        # rows every S cycles: `sub` counts the cycles between them (always 0 when S = 1)
        draining = Signal()
        row = Signal(range(max(rows, 2)))
        sub = Signal(range(max(S, 2)))
        with m.If(go):
            m.d.sync += [draining.eq(rows > 1), row.eq(1), sub.eq(1 % S)]
        with m.Elif(draining):
            m.d.sync += sub.eq(Mux(sub == S - 1, 0, sub + 1))
            with m.If(sub == 0):
                m.d.sync += row.eq(row + 1)
                with m.If(row == rows - 1):
                    m.d.sync += draining.eq(0)
        rd = Signal()
        rd_row = Signal.like(row)
        m.d.comb += [rd.eq(go | (draining & (sub == 0))), rd_row.eq(Mux(go, 0, row))]
        # the drain's GEMM leaves the FIFO at ``go`` (its first read); its reads use ``cur``, its
        # writes, a cycle later, ``wr_op``: with R == group the next GEMM's first read is in the
        # cycle of this one's last write
        rd_op = Signal(pend_layout)
        cur = Signal(pend_layout)
        wr_op = Signal(pend_layout)
        m.d.comb += [pending.r_en.eq(go), cur.eq(Mux(go, pending.r_data, rd_op))]
        with m.If(go):
            m.d.sync += rd_op.eq(pending.r_data)
        m.d.comb += [self.r_acc.en.eq(rd & cur.accumulate),
                     self.r_acc.addr.eq(cur.acc_addr + rd_row)]
        wr = Signal()
        wr_row = Signal.like(row)
        m.d.sync += [wr.eq(rd), wr_row.eq(rd_row), wr_op.eq(cur)]
        out = array.o_stream.payload
        old = self.r_acc.data[0]
        if group * T <= (rows - 1) * S + 1:
            # R == group: a read returns the word before its cycle's write, so the last row's
            # write is forwarded to the next GEMM's first read of it (an accumulation into the
            # row just written sees it, as the instructions' order says)
            fwd = Signal()
            fwd_word = Signal(word_shape(cfg, Spad.ACC))
            m.d.sync += [fwd.eq(self.w_acc.en & self.r_acc.en & (self.w_acc.addr == self.r_acc.addr)),
                         fwd_word.eq(self.w_acc.data[0])]
            old = Signal(word_shape(cfg, Spad.ACC))
            m.d.comb += old.eq(Mux(fwd, fwd_word, self.r_acc.data[0]))
        m.d.comb += [
            self.w_acc.en.eq(wr),
            self.w_acc.addr.eq(wr_op.acc_addr + wr_row),
            self.complete.eq(wr & (wr_row == rows - 1)),
            self.o_signal.eq(wr_op.signal),
            self.o_pc.eq(wr_op.pc),
        ]
        for j in range(cols):
            m.d.comb += self.w_acc.data[0][j].eq(out[j] + Mux(wr_op.accumulate, old[j], 0))

        m.d.comb += [
            self.nonfinite.eq(array.o_nonfinite),
            self.fault.eq(array.o_error | (wr != array.o_stream.valid)),
        ]
        return m

