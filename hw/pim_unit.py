"""PIM unit of the tile: executes one PIM_GBUF, PIM_WRITE, PIM_GEMV, PIM_READ or PIM_ACT at a
time.

Semantics are :func:`mixpim.models.pim.apply_pim`'s, durations
:func:`mixpim.models.pim_timing.pim_cycles`' (docs/pim.md), for an instruction started in cycle
``s`` (``busy`` from ``s`` to ``done`` inclusive; time is the DRAM model's ``now``):

* **PIM_GBUF** reads one ACT word per cycle in ``s+1 .. s+W`` (``W`` = the words the timing
  counts: a channel's words once when ``act_stride`` is 0, each channel's otherwise) and writes
  its lanes into the global buffers (:mod:`.pim_gbuf`) one cycle later, a byte each: a gathered
  word gives every channel it feeds its own lane, a packed word its lanes in lane order. On an
  FP16 tile every lane of the word read is converted to INT8 on the way
  (:func:`~.vec_fixed.fp16_to_int8`, ``rows`` converters; the cycles are an INT8 tile's).
  ``done`` in ``max(s + 1 + W, s + 1 + beats * t_ccd_s) + t_cl``.
* **PIM_READ** writes one ACC word per cycle in ``s+1 .. s+W`` (channel after channel, word after
  word, so that where words coincide the later one wins), assembling each from the result
  registers in the cycle it is written; ``done`` as for PIM_GBUF with the ACC words and
  ``ceil(4 * values / dram_bus_bytes)`` beats.
* **PIM_WRITE / PIM_GEMV** ask the PIM row state (:class:`~.dram_rows.RowState`, ``grp``) in
  ``s+1`` to open the row with one ``G_ACT`` per bank group and channel: it answers per channel
  when the row is ready (also where a row buffer holds it already but a ``PIM_ACT`` opened it
  less than ``t_rcd`` ago), so ``c0 = max(s + 2, every channel's ready cycle)`` and the last step
  ``c0 + (steps - 1) * t_ccd_l`` are known there, and the banks' last-access times are recorded
  at once in the row's buffers (the unit owns its row state while it executes: in ``pim_mode``
  "single" the DMA does not run meanwhile). The steps then happen at ``c0 + k * t_ccd_l``: a
  PIM_WRITE chunk writes its bus word's bytes from the global buffer into bank ``bank`` of every
  channel (each channel's timing counts from its own ready cycle; the data is written in lock
  step from the latest, which leaves the same end), ``done`` ``t_cl`` after the last chunk; a
  PIM_GEMV step reads ``pim_lanes`` bytes of the open row in every bank of every channel,
  multiplies them with global-buffer bytes (dot: ``pim_lanes`` elements, the same for every
  bank; bcast: one element broadcast over the lanes, the bank's own: bank ``bank + k`` takes
  element ``k * n + t`` for row vector ``t``) and adds into the result registers, ``done`` in
  the last step.
* **PIM_ACT** asks the row state in ``s+1`` like a PIM_GEMV (its banks, channels and row) and
  issues the ``G_ACT`` s (``open``, no access), then does not wait for them: ``done`` in ``s+2``
  (busy ``PIM_SETUP_CYCLES + 1`` = 3 cycles). A later PIM_WRITE / PIM_GEMV of the row (or, in
  "single" mode, a LOAD/STORE) finds it open and waits at most until ``t_rcd`` after the
  activation.

The result registers (``channels x banks x pim_res_regs``, 32 bits, wrapping) and the global
buffers are zero after reset: the tile resets the unit at a run's start. This is the simulation
side of the tile (the banks are DRAM, never synthesized), so both are held in
:class:`~amaranth.lib.memory.Memory` objects with combinational read ports, which Verilator
indexes directly, and a valid bit per entry, a flip-flop cleared by reset: an entry whose bit is
clear reads 0 (:func:`~.pim_gbuf.valid_read`). Each bank's registers are one memory, with one
read and one write port per MAC lane (a GEMV step updates registers ``tgt .. tgt + pim_lanes -
1``; a dot step only the first) and ``cols`` read ports for PIM_READ (register ``res + r`` of
each value of the word; the bank and the channel are chosen, or summed, after the read).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..models.isa import Opcode, Spad
from ..models.pim import PIM_ACC_BITS, PIM_OPS
from ..models.pim_timing import PIM_SETUP_CYCLES
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .dram import PimDramSignature
from .dram_rows import TIME_BITS, time_max
from .pim_gbuf import GlobalBuffers, valid_read
from .vec_fixed import fp16_to_int8

__all__ = ["pim_layout", "pim_unit_members", "PimUnit"]

# the formats share the channel fields (one channel mask for every instruction) and the setup
# cycle in which the row state is asked leaves one before the first access
assert len({(operand_layout(op)["ch"].offset, operand_layout(op)["chans"].offset)
            for op in PIM_OPS}) == 1
# PIM_ACT's bank, banks and row are PIM_GEMV's fields (one view serves both)
assert all(operand_layout(Opcode.PIM_ACT)[f].offset == operand_layout(Opcode.PIM_GEMV)[f].offset
           and operand_layout(Opcode.PIM_ACT)[f].shape == operand_layout(Opcode.PIM_GEMV)[f].shape
           for f in ("bank", "banks", "row"))
assert PIM_SETUP_CYCLES >= 2


def pim_layout():
    """Operands of the PIM instructions: a union of their formats, member ``pim_gbuf`` etc."""
    return data.UnionLayout({op.name.lower(): operand_layout(op) for op in PIM_OPS})


def pim_unit_members(config):
    """The PIM unit's members the tile drives and reads (docstring of :class:`PimUnit`)."""
    return {
        "start": In(1),
        "i_opcode": In(8),
        "i_inst": In(pim_layout()),
        "busy": Out(1),
        "done": Out(1),
        "r_act": Out(SpadReadSignature(word_shape(config, Spad.ACT), 1)),
        "w_acc": Out(SpadWriteSignature(word_shape(config, Spad.ACC), 1)),
    }


def _min(a, b):
    return Mux(a < b, a, b)


def _named(m, value, name):
    """``value`` as a Signal: an expression used in many places is copied into the Verilog at
    each use (thousands of copies of ``op == ...`` and the masks), a Signal is computed once."""
    sig = Signal(value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


class PimUnit(ConfigComponent):
    """Executes one PIM instruction at a time (module docstring).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_opcode`` / ``i_inst`` and start (only while ``busy`` is low)
    i_opcode : In(8), one of the PIM opcodes
    i_inst : In(:func:`pim_layout`), the decoded operands (must pass ``check_instruction``)
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_act : Out(:class:`~.dma.SpadReadSignature`), 1 ACT word (PIM_GBUF)
    w_acc : Out(:class:`~.dma.SpadWriteSignature`), 1 ACC word (PIM_READ)
    dram : Out(:class:`~.dram.PimDramSignature`), the banks, their PIM row state and ``now``

    The result registers of bank ``bank`` of channel ``ch`` (``q = ch * dram_banks + bank``) are
    one :class:`~amaranth.lib.memory.Memory` (``res_data[q]``, ``pim_res_regs`` entries) and a
    valid bit per register (``res_valid[q]``, one Signal): a register reads 0 unless its bit is
    set (module docstring). Testbenches read them with :meth:`res_values`.
    """

    def __init__(self, config):
        super().__init__(config)
        n, regs = config.dram_channels * config.dram_banks, config.pim_res_regs
        self.res_data = [MemoryData(shape=signed(PIM_ACC_BITS), depth=regs, init=[])
                         for _ in range(n)]
        self.res_valid = [Signal(regs, name=f"res_valid_{q}") for q in range(n)]

    def res_values(self, ctx):
        """In a testbench (``ctx``): every result register's value, a list of
        ``pim_res_regs`` ints per ``ch * dram_banks + bank``."""
        return [[ctx.get(d[r]) if ctx.get(v) >> r & 1 else 0 for r in range(d.depth)]
                for d, v in zip(self.res_data, self.res_valid)]

    def _members(self, config):
        return {**pim_unit_members(config), "dram": Out(PimDramSignature(config))}

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.gbuf = gbuf = GlobalBuffers(cfg)
        # the result registers: read and written by the GEMV steps and PIM_READ
        res = [Memory(d) for d in self.res_data]
        for q, mem in enumerate(res):
            m.submodules[f"res_{q}"] = mem
        now = self.dram.now

        op = Signal(8)
        inst = Signal(pim_layout())
        running = Signal()
        first = Signal()    # the cycle after the start: the row state is asked
        ending = Signal()   # t_end is the instruction's last cycle
        t0 = Signal(TIME_BITS)
        t_end = Signal(TIME_BITS)
        starting = self.start & ~running
        done = running & ending & (now == t_end)
        m.d.comb += [self.busy.eq(self.start | running), self.done.eq(done)]
        m.d.sync += first.eq(starting)
        with m.If(done):
            m.d.sync += [running.eq(0), ending.eq(0)]
        with m.If(starting):
            m.d.sync += [op.eq(self.i_opcode), inst.eq(self.i_inst), running.eq(1),
                         ending.eq(0), t0.eq(now)]

        is_op = {o: _named(m, op == o, f"is_{o.name.lower()}") for o in PIM_OPS}
        nb = cfg.dram_banks
        any_view = inst.pim_gemv   # ch / chans are common (asserted above)
        chan_mask = _named(m, Cat(*[(c >= any_view.ch) & (c < any_view.ch + any_view.chans)
                                    for c in range(cfg.dram_channels)]), "chan_mask")
        lo = Mux(is_op[Opcode.PIM_WRITE], inst.pim_write.bank, inst.pim_gemv.bank)  # or ACT's
        count = Mux(is_op[Opcode.PIM_WRITE], 1,
                    Mux(is_op[Opcode.PIM_GEMV] | is_op[Opcode.PIM_ACT], inst.pim_gemv.banks,
                        inst.pim_read.banks))
        bank_mask = _named(m, Cat(*[(b >= lo) & (b < lo + count) for b in range(nb)]),
                           "bank_mask")

        def finish_walk():
            """The walk's last item is now: done ``t_cl`` cycles after the port bound
            (``s + 1 + W``), or after the bus bound."""
            m.d.sync += [ending.eq(1), t_end.eq(time_max(self._bus_bound(inst, is_op, t0),
                                                         now + 1 + cfg.t_cl))]

        self._rows_and_steps(m, inst, is_op, first, t0, now, chan_mask, bank_mask, gbuf,
                             ending, t_end, starting, res)
        self._gbuf_walk(m, inst, is_op, starting, chan_mask, gbuf, finish_walk)
        self._read_walk(m, inst, starting, finish_walk, res)
        return m

    def _bus_bound(self, inst, is_op, t0):
        """PIM_GBUF / PIM_READ: ``s + 1 + beats * t_ccd_s + t_cl``, the channels' buses'
        bound."""
        cfg = self._cfg
        lb = exact_log2(cfg.dram_bus_bytes)
        rd = inst.pim_read
        values = Mux(rd.reduce, rd.n, rd.banks * rd.n)
        nbytes = Mux(is_op[Opcode.PIM_GBUF], inst.pim_gbuf.len, PIM_ACC_BITS // 8 * values)
        beats = (nbytes + cfg.dram_bus_bytes - 1) >> lb
        return t0 + 1 + beats * cfg.t_ccd_s + cfg.t_cl

    # -- PIM_WRITE and PIM_GEMV ----------------------------------------------------------------

    def _rows_and_steps(self, m, inst, is_op, first, t0, now, chan_mask, bank_mask, gbuf,
                        ending, t_end, starting, res):
        cfg = self._cfg
        nch, nb = cfg.dram_channels, cfg.dram_banks
        bus, lanes = cfg.dram_bus_bytes, cfg.pim_lanes
        lb, ll, lr = exact_log2(bus), exact_log2(lanes), exact_log2(cfg.dram_row_bytes)
        wr, gv = inst.pim_write, inst.pim_gemv   # gv: also PIM_ACT's row (asserted above)
        write, gemv, act = is_op[Opcode.PIM_WRITE], is_op[Opcode.PIM_GEMV], is_op[Opcode.PIM_ACT]
        rows = self.dram.rows

        # s + 1: the G_ACTs, when the row is ready per channel, the last step, the banks' last
        # accesses (PIM_ACT: the G_ACTs alone, done in s + 2 whenever they happen)
        ask = first & (write | gemv)
        m.d.comb += [rows.chans.eq(chan_mask), rows.banks.eq(bank_mask),
                     rows.row.eq(Mux(write, wr.row, gv.row)), rows.start.eq(t0),
                     rows.open.eq(ask | (first & act)), rows.access.eq(ask)]
        with m.If(first & act):
            m.d.sync += [ending.eq(1), t_end.eq(t0 + PIM_SETUP_CYCLES)]
        setup = t0 + PIM_SETUP_CYCLES
        ready = [time_max(setup, rows.ready[c]) for c in range(nch)]
        c0 = time_max(*ready)   # a channel outside the mask answers ``start``
        chunks = (wr.col + wr.len - 1)[lb:] - wr.col[lb:] + 1
        steps = (gv.n * gv.len)[ll:]
        span = (Mux(write, chunks, steps) - 1) * cfg.t_ccd_l   # first step to last step
        for c in range(nch):
            m.d.comb += rows.t_access[c].eq(Mux(write, ready[c], c0) + span)
        stepping = Signal()
        t_next = Signal(TIME_BITS)
        with m.If(ask):
            m.d.sync += [ending.eq(1), t_end.eq(c0 + span + Mux(write, cfg.t_cl, 0)),
                         stepping.eq(1), t_next.eq(c0)]
        step = Signal()
        m.d.comb += step.eq(stepping & (now == t_next))

        # the steps: ``o`` is the row byte of the step (PIM_WRITE: the chunk's first written byte)
        o = Signal(len(wr.col) + 1)
        vec = Signal.like(gv.n)      # GEMV: row vector (dot: result; bcast: buffer element)
        pos = Signal.like(gv.len)    # GEMV: element in the vector
        gptr = Signal.like(wr.gaddr)  # WRITE: buffer byte of the chunk's first written byte
        left = Signal.like(wr.len)    # WRITE: bytes still to write
        off = o[:lb]
        n_bytes = Signal(range(bus + 1))
        m.d.comb += n_bytes.eq(_min(left, bus - off))
        i_wr, i_gv = self.i_inst.pim_write, self.i_inst.pim_gemv
        with m.If(starting):
            m.d.sync += [o.eq(Mux(self.i_opcode == Opcode.PIM_WRITE, i_wr.col, i_gv.col)),
                         vec.eq(0), pos.eq(0), gptr.eq(i_wr.gaddr), left.eq(i_wr.len)]
        with m.If(step):
            m.d.sync += t_next.eq(t_next + cfg.t_ccd_l)
            with m.If(write):
                m.d.sync += [o.eq(o + n_bytes), gptr.eq(gptr + n_bytes), left.eq(left - n_bytes)]
                with m.If(left == n_bytes):
                    m.d.sync += stepping.eq(0)
            with m.Else():
                wrap = pos + lanes == gv.len
                m.d.sync += [o.eq(o + lanes), pos.eq(Mux(wrap, 0, pos + lanes)),
                             vec.eq(vec + wrap)]
                with m.If(wrap & (vec == gv.n - 1)):
                    m.d.sync += stepping.eq(0)

        # the banks' words: every bank the same one; the global buffers: the same byte address
        dram = self.dram
        row = Mux(write, wr.row, gv.row)
        m.d.comb += [
            dram.addr.eq(Cat(o[lb:lr], row)),
            gbuf.r_addr.eq(Mux(write, gptr, gv.gaddr + pos)),
            dram.wmask.eq((((Const(1, bus + 1) << n_bytes) - 1) << off)[:bus]),
        ]
        for c in range(nch):
            m.d.comb += dram.wdata[c].eq((gbuf.r_data[c] << (off * 8))[:8 * bus])
            for b in range(nb):
                m.d.comb += dram.we[c * nb + b].eq(step & write & chan_mask[c] & (b == wr.bank))
        self._macs(m, gv, _named(m, step & gemv, "mac_step"), chan_mask, bank_mask, gbuf, vec,
                   pos, o[ll:lb], res)

    def _macs(self, m, gv, step, chan_mask, bank_mask, gbuf, vec, pos, sub, res):
        """One GEMV step in every bank: ``pim_lanes`` products, added into the registers."""
        cfg = self._cfg
        nb, lanes, regs = cfg.dram_banks, cfg.pim_lanes, cfg.pim_res_regs
        # the registers a step updates: dot ``res + vec``; bcast ``res + pos + k``, k < lanes
        # (inside the registers: the dispatch checks)
        tgt = [_named(m, gv.res + Mux(gv.bcast, pos, vec) + k, f"tgt_{k}") for k in range(lanes)]
        updated = _named(m, (Mux(gv.bcast, (1 << lanes) - 1, 1) << tgt[0][:ceil_log2(regs)])
                         [:regs], "updated")
        # bcast: bank ``bank + k``'s element of row vector ``vec`` is ``gaddr + k * n + vec``
        for b in range(nb):
            m.d.comb += gbuf.e_addr[b].eq(gv.gaddr + vec + (b - gv.bank) * gv.n)
        overwrite = _named(m, ~gv.accumulate & Mux(gv.bcast, vec == 0, pos == 0), "overwrite")
        for c in range(cfg.dram_channels):
            g = gbuf.r_data[c]
            g_elem = [g.word_select(k, 8).as_signed() for k in range(lanes)]
            for b in range(nb):
                q = c * nb + b
                word = self.dram.rdata[q]
                chunk = word.word_select(sub, 8 * lanes) if len(sub) else word
                g_own = gbuf.e_data[c][b].as_signed()
                prod = [chunk.word_select(k, 8).as_signed() * Mux(gv.bcast, g_own, g_elem[k])
                        for k in range(lanes)]
                dot = sum(prod)
                en = step & chan_mask[c] & bank_mask[b]
                # register tgt + k: a read port and a write port (k > 0: bcast only)
                for k in range(lanes):
                    add = Mux(gv.bcast, prod[k], dot) if k == 0 else prod[k]
                    old = Mux(overwrite, 0, valid_read(m, res[q], self.res_valid[q], tgt[k]))
                    v = Signal(signed(PIM_ACC_BITS), name=f"mac_{q}_{k}")
                    m.d.comb += v.eq(old + add)     # wraps at 32 bits
                    port = res[q].write_port()
                    m.d.comb += [port.addr.eq(tgt[k][:len(port.addr)]), port.data.eq(v),
                                 port.en.eq(en & (gv.bcast if k else 1))]
                with m.If(en):
                    m.d.sync += self.res_valid[q].eq(self.res_valid[q] | updated)

    # -- PIM_GBUF ------------------------------------------------------------------------------

    def _gbuf_walk(self, m, inst, is_op, starting, chan_mask, gbuf, finish_walk):
        cfg = self._cfg
        gi, i_gi = inst.pim_gbuf, self.i_inst.pim_gbuf
        walking = Signal()
        j = Signal.like(gi.chans)         # the channel (offset from ch) whose words are read
        base = Signal(len(gi.act_addr) + len(gi.act_stride) + len(gi.chans))
        addr = Signal.like(base)          # the ACT word read now
        gptr = Signal.like(gi.gaddr)      # where its bytes go
        left = Signal.like(gi.len)        # bytes of the channel still to read
        per = Mux(gi.packed, cfg.rows, 1)  # bytes a word gives a channel
        n_bytes = _min(left, per)
        with m.If(starting):
            m.d.sync += [walking.eq(self.i_opcode == Opcode.PIM_GBUF), j.eq(0),
                         base.eq(i_gi.act_addr), addr.eq(i_gi.act_addr), gptr.eq(i_gi.gaddr),
                         left.eq(i_gi.len)]
        m.d.comb += [self.r_act.en.eq(walking), self.r_act.addr.eq(addr)]
        with m.If(walking):
            with m.If(left <= per):   # the channel's last word
                with m.If((gi.act_stride == 0) | (j == gi.chans - 1)):
                    m.d.sync += walking.eq(0)
                    finish_walk()
                with m.Else():
                    m.d.sync += [j.eq(j + 1), base.eq(base + gi.act_stride),
                                 addr.eq(base + gi.act_stride), gptr.eq(gi.gaddr),
                                 left.eq(gi.len)]
            with m.Else():
                m.d.sync += [addr.eq(addr + 1), gptr.eq(gptr + per), left.eq(left - per)]

        # one cycle later the word is there: into the buffers of the channels it feeds
        w_valid = Signal()
        w_chans = Signal(cfg.dram_channels)
        m.d.sync += [w_valid.eq(walking), gbuf.w_addr.eq(gptr), gbuf.w_len.eq(n_bytes),
                     w_chans.eq(Mux(gi.act_stride == 0, chan_mask,
                                    Cat(*(gi.ch + j == c for c in range(cfg.dram_channels)))))]
        m.d.comb += gbuf.w_en.eq(Mux(w_valid, w_chans, 0))
        word = self.r_act.data[0]
        if cfg.act_format == "fp16":  # the word's rows INT8 values, lane k in byte k
            lanes = Signal(8 * cfg.rows)
            m.d.comb += lanes.eq(Cat(*(fp16_to_int8(word.word_select(k, 16))
                                       for k in range(cfg.rows))))
            word = lanes
        for c in range(cfg.dram_channels):
            lane = word.word_select((gi.lane + c - gi.ch)[:len(gi.lane)], 8)  # gather: lane + j
            m.d.comb += gbuf.w_data[c].eq(Mux(gi.packed, word, lane))

    # -- PIM_READ ------------------------------------------------------------------------------

    def _read_walk(self, m, inst, starting, finish_walk, res):
        cfg = self._cfg
        nch, nb, cols = cfg.dram_channels, cfg.dram_banks, cfg.cols
        rd, i_rd = inst.pim_read, self.i_inst.pim_read
        walking = Signal()
        j = Signal.like(rd.chans)
        ch = Signal.like(rd.ch)
        base = Signal(len(rd.acc_addr) + len(rd.chan_stride) + len(rd.chans))
        addr = Signal(len(base) + len(rd.word_stride) + 16)
        # the position of the word's first value: bank offset and register offset (reduce: the
        # register offset alone, which then runs past n)
        b0 = Signal(len(rd.banks) + 1)
        r0 = Signal(len(rd.n) + 1)
        with m.If(starting):
            m.d.sync += [walking.eq(self.i_opcode == Opcode.PIM_READ), j.eq(0), ch.eq(i_rd.ch),
                         base.eq(i_rd.acc_addr), addr.eq(i_rd.acc_addr), b0.eq(0), r0.eq(0)]
        pos = [(b0, r0)]
        for k in range(cols):   # value k + 1 follows value k: the next register, or bank
            b, r = pos[-1]
            wrap = ~rd.reduce & (r + 1 == rd.n)
            # signals, not expressions: each position is used twice by the next, so expressions
            # would double at every value (2**cols nodes)
            b_next = Signal.like(b0, name=f"pos_b_{k + 1}")
            r_next = Signal.like(r0, name=f"pos_r_{k + 1}")
            m.d.comb += [b_next.eq((b + wrap)[:len(b0)]), r_next.eq(Mux(wrap, 0, r + 1)[:len(r0)])]
            pos.append((b_next, r_next))

        def valid(b, r):
            return Mux(rd.reduce, r < rd.n, b < rd.banks)

        lch, lbk = exact_log2(nch), exact_log2(nb)
        for k in range(cols):
            b, r = pos[k]
            # register res + r of every bank of every channel: a read port each
            at = _named(m, rd.res + r, f"read_reg_{k}")
            reg = [valid_read(m, mem, valid, at) for mem, valid in zip(res, self.res_valid)]
            one = Array(reg)[Cat((rd.bank + b)[:lbk], ch[:lch])]
            total = sum(Mux((bb >= rd.bank) & (bb < rd.bank + rd.banks),
                            Array(reg[c * nb + bb] for c in range(nch))[ch], 0)
                        for bb in range(nb))
            v = Signal(signed(PIM_ACC_BITS), name=f"read_{k}")
            m.d.comb += v.eq(Mux(valid(b, r), Mux(rd.reduce, total, one), 0))  # wraps at 32
            m.d.comb += self.w_acc.data[0][k].eq(v)  # sign-extended (or wrapped) to acc_bits
        m.d.comb += [self.w_acc.en.eq(walking), self.w_acc.addr.eq(addr)]
        with m.If(walking):
            with m.If(~valid(*pos[cols])):   # the channel's last word
                with m.If(j == rd.chans - 1):
                    m.d.sync += walking.eq(0)
                    finish_walk()
                with m.Else():
                    m.d.sync += [j.eq(j + 1), ch.eq(ch + 1), base.eq(base + rd.chan_stride),
                                 addr.eq(base + rd.chan_stride), b0.eq(0), r0.eq(0)]
            with m.Else():
                m.d.sync += [addr.eq(addr + rd.word_stride), b0.eq(pos[cols][0]),
                             r0.eq(pos[cols][1])]
