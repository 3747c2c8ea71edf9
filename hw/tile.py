"""The NPU tile: dispatcher, unit queues, dependency tokens, scratchpads, DMA + DRAM, GEMM, VEC.

The architecture and every cycle rule are docs/tile.md; the golden cycle model
(:func:`mixpim.models.tile_timing.simulate`) predicts every status register of this RTL exactly.

* **Dispatcher.** Instruction memory (``imem_words`` x 128 bits, synchronous read addressed by
  the next pc, so the word of ``pc`` is there in every cycle). In each running cycle it examines
  ``pc``: decode errors (:class:`~.decoder.InstructionDecoder`), then configuration checks
  (:class:`~.checker.DispatchChecker`), then: a unit instruction is pushed into its queue if the
  queue has room; NOP retires; SYNC / HALT retire when every queue is empty and nothing executes
  (HALT raises ``done``); ``pc == length`` is ``NO_HALT``.
* **Queues.** One FIFO of ``queue_depth`` per unit (DMA, GEMM, VEC); an entry is the
  instruction's operand bits, token masks and pc. A push in cycle c is at the head from c + 1; a
  start in c frees its slot from c + 1.
* **Tokens.** ``tok[src][dst]`` (3 bits) for every ordered pair of the four units; a start takes
  one from each counter of its ``wait`` mask, a completion gives one to each of its ``signal``
  mask, checked for overflow net of same-cycle takes.
* **Errors.** Candidates of one cycle (dispatcher at ``pc``; ``TOKEN_OVERFLOW`` at each
  completing instruction; ``DEADLOCK``; ``ARRAY_STREAM``) -> the one of the smallest pc is kept.
  No start after the error cycle; ``done`` in the first cycle with nothing executing.
* **Scratchpads** (ACT, WGT, META, ACC, VPARAM): ``lib.memory.Memory`` with one port per
  access path (multi-lane DMA ports, GEMM, VEC, host). They are multi-ported register files in
  simulation; a BRAM mapping would bank them (docs/tile.md, "RTL structure"). VPARAM words
  0 .. 64 + rows - 1 (GELU table, token multipliers) are mirrored in registers for the VEC unit.
* **Host port.** While the tile is not running, ``host_*`` reads and writes any memory (program,
  DRAM, scratchpads) one word per cycle: ``host_rdata`` holds the word addressed in the previous
  cycle. ``start`` begins a run: status registers, tokens, queues, units and DRAM bank state
  are reset; memory contents are kept.

Status (valid while ``done``; counted from the first cycle after ``start``): ``cycles``, ``busy``
per unit, ``dispatched``, ``error``, ``error_pc``, ``nonfinite``.
"""

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Shape, Signal
from amaranth.lib import data, enum, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models.config import VPARAM_LUT_WORDS, TileConfig
from ..models.isa import MASK_BITS, WORD_BITS, ErrorCode, Opcode, Spad, Unit, header_fields
from ..models.tile_timing import TOKEN_MAX
from .checker import DispatchChecker
from .decoder import InstructionDecoder
from .dma import DmaEngine, dma_layout, word_shape
from .dram import DramModel
from .gemm_unit import GemmUnit, gemm_layout
from .vector import VPARAM_BITS, VectorUnit, vec_layout

__all__ = ["HostSel", "host_word_bits", "Tile", "MAX_IMEM_WORDS"]

#: Largest instruction memory (the pc and ``length`` are 16-bit + 1).
MAX_IMEM_WORDS = 65536
#: Units with a queue in this step (PIM opcodes are illegal until the PIM step).
QUEUED = (Unit.DMA, Unit.GEMM, Unit.VEC)
OPERAND_LO = sum(w for _, _, w in header_fields())
OPERAND_BITS = WORD_BITS - OPERAND_LO
COUNTER_BITS = 32


class HostSel(enum.Enum, shape=3):
    """Memory addressed by the host port."""
    IMEM = 0
    DRAM = 1
    ACT = 2
    WGT = 3
    META = 4
    ACC = 5
    VPARAM = 6


_SPAD_SEL = {Spad.ACT: HostSel.ACT, Spad.WGT: HostSel.WGT, Spad.META: HostSel.META,
             Spad.ACC: HostSel.ACC, Spad.VPARAM: HostSel.VPARAM}


def _spad_bits(config, spad):
    return data.Layout.cast(word_shape(config, spad)).size if spad == Spad.ACC \
        else 8 * config.word_bytes(spad)


def host_word_bits(config):
    """Width of ``host_wdata`` / ``host_rdata``: the widest memory word (instruction, DRAM beat,
    scratchpad word)."""
    return max([WORD_BITS, 8 * config.dram_bus_bytes] + [_spad_bits(config, s) for s in Spad])


class _State(enum.Enum, shape=2):
    IDLE = 0
    RUN = 1
    DONE = 2


def _any(values):
    return reduce(lambda a, b: a | b, values, Const(0, 1))


class Tile(wiring.Component):
    """The tile of docs/tile.md.

    Arguments
    ---------
    config : TileConfig
    imem_words : int
        Instruction memory depth, 1..65536 (programs up to this many instructions).

    Members
    -------
    start : In(1), begin a run from pc 0 (ignored while running)
    length : In(17), program length in instructions (``pc == length`` is ``NO_HALT``); held
        during the run
    host_sel : In(:class:`HostSel`); host_addr : In(32); host_we : In(1)
    host_wdata : In(:func:`host_word_bits`), host_rdata : Out(same)
        Word ``host_addr`` of the selected memory (DRAM: ``dram_bus_bytes``-byte words; ACC:
        ``cols`` ``acc_bits``-bit fields, LSB first; others their DRAM bytes, little-endian).
        Writes are ignored while running.
    running : Out(1), a run is in progress; done : Out(1), the run ended (status valid)
    cycles, dispatched : Out(32); busy : Out(ArrayLayout(32, 4)), per :class:`Unit`
    error : Out(ErrorCode); error_pc : Out(32); nonfinite : Out(1)

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    ValueError
        If ``imem_words`` is out of range.
    """

    def __init__(self, config, imem_words=1024):
        if not isinstance(config, TileConfig):
            raise TypeError(f"config must be a TileConfig, not {config!r}")
        if isinstance(imem_words, bool) or not isinstance(imem_words, int) \
                or not 1 <= imem_words <= MAX_IMEM_WORDS:
            raise ValueError(f"imem_words must be an integer in 1..{MAX_IMEM_WORDS}, not {imem_words!r}")
        self._cfg = config
        self._imem_words = imem_words
        width = host_word_bits(config)
        super().__init__({
            "start": In(1),
            "length": In(17),
            "host_sel": In(HostSel),
            "host_addr": In(32),
            "host_we": In(1),
            "host_wdata": In(width),
            "host_rdata": Out(width),
            "running": Out(1),
            "done": Out(1),
            "cycles": Out(COUNTER_BITS),
            "busy": Out(data.ArrayLayout(COUNTER_BITS, len(Unit))),
            "dispatched": Out(COUNTER_BITS),
            "error": Out(ErrorCode),
            "error_pc": Out(32),
            "nonfinite": Out(1),
        })

    @property
    def config(self):
        return self._cfg

    @property
    def imem_words(self):
        return self._imem_words

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        pc_bits = 17
        state = Signal(_State)
        run = Signal()
        begin = Signal()   # the start cycle: reset everything of the previous run
        m.d.comb += [run.eq(state == _State.RUN), begin.eq(self.start & ~run),
                     self.running.eq(run), self.done.eq(state == _State.DONE)]

        # -- units (reset at the start of a run) ----------------------------------------------
        dma = DmaEngine(cfg)
        dram = DramModel(cfg)
        gemm = GemmUnit(cfg, pc_bits)
        vec = VectorUnit(cfg)
        m.submodules.dma = ResetInserter(begin)(dma)
        m.submodules.dram = ResetInserter(begin)(dram)
        m.submodules.gemm = ResetInserter(begin)(gemm)
        m.submodules.vec = ResetInserter(begin)(vec)
        wiring.connect(m, dma.dram, dram.bus)

        # -- host port and memories -----------------------------------------------------------
        host_w = Signal()
        m.d.comb += host_w.eq(self.host_we & ~run)
        rsel = Signal(HostSel)
        m.d.sync += rsel.eq(self.host_sel)
        host_reads = {}

        def host_ports(mem, sel):
            wp = mem.write_port()
            rp = mem.read_port()
            width = Shape.cast(mem.shape).width
            m.d.comb += [
                wp.addr.eq(self.host_addr), wp.data.eq(self.host_wdata[:width]),
                wp.en.eq(Mux(host_w & (self.host_sel == sel), -1, 0)),
                rp.addr.eq(self.host_addr),
            ]
            host_reads[sel] = rp.data

        imem = Memory(shape=WORD_BITS, depth=self._imem_words, init=[])
        m.submodules.imem = imem
        host_ports(imem, HostSel.IMEM)
        host_ports(dram.memory, HostSel.DRAM)

        spads = {}
        for s in Spad:
            spads[s] = mem = Memory(shape=word_shape(cfg, s), depth=cfg.spad_words(s), init=[])
            m.submodules[f"spad_{s.name.lower()}"] = mem
            host_ports(mem, _SPAD_SEL[s])
        vparam_writes = [(self.host_addr, host_w & (self.host_sel == HostSel.VPARAM),
                          self.host_wdata[:VPARAM_BITS])]

        def write(s, port):
            for i in range(len(port.en)):
                wp = spads[s].write_port()
                m.d.comb += [wp.addr.eq(port.addr + i), wp.en.eq(Mux(port.en[i], -1, 0)),
                             wp.data.eq(port.data[i])]
                if s == Spad.VPARAM:
                    vparam_writes.append((port.addr + i, port.en[i], port.data[i]))

        def read(s, port):
            for i in range(port.data.shape().length):
                rp = spads[s].read_port()
                m.d.comb += [rp.addr.eq(port.addr + i), rp.en.eq(port.en), port.data[i].eq(rp.data)]

        for s in (Spad.ACT, Spad.WGT, Spad.META, Spad.VPARAM):
            write(s, getattr(dma, f"w_{s.name.lower()}"))
        for s in (Spad.ACT, Spad.ACC):
            read(s, getattr(dma, f"r_{s.name.lower()}"))
        read(Spad.ACT, gemm.r_act)
        read(Spad.WGT, gemm.r_wgt)
        read(Spad.META, gemm.r_meta)
        read(Spad.ACC, gemm.r_acc)
        write(Spad.ACC, gemm.w_acc)
        read(Spad.ACC, vec.r_acc)
        read(Spad.ACT, vec.r_act)
        read(Spad.VPARAM, vec.r_vparam)
        write(Spad.ACT, vec.w_act)

        with m.Switch(rsel):
            for sel, value in host_reads.items():
                with m.Case(sel):
                    m.d.comb += self.host_rdata.eq(value)

        # VPARAM words 0 .. 64 + rows - 1 mirrored in registers (the VEC unit reads all lanes)
        mirror = [Signal(VPARAM_BITS, name=f"vparam_reg{w}") for w in range(VPARAM_LUT_WORDS + cfg.rows)]
        for addr, en, value in vparam_writes:
            with m.If(en):
                with m.Switch(addr):
                    for w, reg in enumerate(mirror):
                        with m.Case(w):
                            m.d.sync += reg.eq(value)
        m.d.comb += [
            vec.i_lut.eq(Cat(*mirror[:VPARAM_LUT_WORDS])),
            vec.i_tparam.eq(Cat(*mirror[VPARAM_LUT_WORDS:])),
        ]

        # -- dispatcher -------------------------------------------------------------------------
        pc = Signal(pc_bits)
        retire = Signal()
        imem_rd = imem.read_port()
        m.d.comb += imem_rd.addr.eq(Mux(run, pc + retire, 0))
        m.submodules.decoder = dec = InstructionDecoder()
        m.submodules.checker = chk = DispatchChecker(cfg)
        m.d.comb += [
            dec.i_word.eq(imem_rd.data),
            chk.i_opcode.eq(dec.o_opcode),
            chk.i_dma.eq(dec.o_load),
            chk.i_gemm.eq(dec.o_gemm),
            chk.i_vec.eq(dec.o_vec),
        ]
        at_end = pc == self.length
        disp_error = Signal(ErrorCode)
        m.d.comb += disp_error.eq(Mux(at_end, ErrorCode.NO_HALT,
                                      Mux(dec.o_error != ErrorCode.OK, dec.o_error, chk.o_error)))
        is_unit = ~dec.o_dispatcher
        op = dec.o_opcode
        is_nop = dec.o_dispatcher & (op == Opcode.NOP)
        is_wait = dec.o_dispatcher & ((op == Opcode.SYNC) | (op == Opcode.HALT))
        is_halt = dec.o_dispatcher & (op == Opcode.HALT)

        entry_layout = data.StructLayout({"operands": OPERAND_BITS, "store": 1, "wait": MASK_BITS,
                                          "signal": MASK_BITS, "pc": pc_bits})
        queues = {}
        for u in QUEUED:
            q = fifo.SyncFIFO(width=entry_layout.size, depth=cfg.queue_depth)
            m.submodules[f"queue_{u.name.lower()}"] = ResetInserter(begin)(q)
            queues[u] = q
            m.d.comb += q.w_data.eq(Cat(imem_rd.data[OPERAND_LO:], op == Opcode.STORE,
                                        dec.o_wait, dec.o_signal, pc))
        room = Cat(*(queues[u].w_rdy if u in queues else 0 for u in Unit)).bit_select(dec.o_unit, 1)

        # executing: started before this cycle and not yet completed before it
        dma_run = Signal()
        vec_run = Signal()
        err_reg = Signal()
        ok = Signal()
        m.d.comb += ok.eq(run & ~err_reg & (disp_error == ErrorCode.OK))
        queues_empty = ~_any(q.r_rdy for q in queues.values())
        quiet = queues_empty & ~dma_run & ~vec_run & ~gemm.inflight
        m.d.comb += retire.eq(ok & ((is_unit & room) | is_nop | (is_wait & quiet)))
        stalled = ok & ((is_unit & ~room) | (is_wait & ~quiet))
        for u, q in queues.items():
            m.d.comb += q.w_en.eq(retire & is_unit & (dec.o_unit == u))
        with m.If(begin):
            m.d.sync += pc.eq(0)
        with m.Elif(retire):
            m.d.sync += pc.eq(pc + 1)

        # -- starts and tokens ----------------------------------------------------------------
        n = len(Unit)
        tok = [[Signal(range(TOKEN_MAX + 1), name=f"tok_{s.name.lower()}_{d.name.lower()}")
                if s != d else None for d in Unit] for s in Unit]
        heads = {u: data.View(entry_layout, q.r_data) for u, q in queues.items()}
        idle = {Unit.DMA: ~dma_run, Unit.GEMM: gemm.idle, Unit.VEC: ~vec_run}
        start = {}
        for u, q in queues.items():
            h = heads[u]
            tokens_ok = reduce(lambda a, b: a & b,
                               ((~h.wait[s]) | (tok[s][u] != 0) for s in range(n) if s != u), Const(1, 1))
            start[u] = Signal(name=f"start_{u.name.lower()}")
            m.d.comb += [start[u].eq(run & ~err_reg & q.r_rdy & idle[u] & tokens_ok),
                         q.r_en.eq(start[u])]

        # unit inputs and the operands kept for completion
        def view(u, layout):
            return data.View(layout, heads[u].operands[:data.Layout.cast(layout).size])
        dma_sig, dma_pc = Signal(MASK_BITS), Signal(pc_bits)
        vec_sig, vec_pc = Signal(MASK_BITS), Signal(pc_bits)
        m.d.comb += [
            dma.start.eq(start[Unit.DMA]), dma.i_store.eq(heads[Unit.DMA].store),
            dma.i_inst.eq(view(Unit.DMA, dma_layout())),
            gemm.start.eq(start[Unit.GEMM]), gemm.i_inst.eq(view(Unit.GEMM, gemm_layout())),
            gemm.i_signal.eq(heads[Unit.GEMM].signal), gemm.i_pc.eq(heads[Unit.GEMM].pc),
            vec.start.eq(start[Unit.VEC]), vec.i_inst.eq(view(Unit.VEC, vec_layout())),
        ]
        for u, sig_reg, pc_reg, run_reg, unit in ((Unit.DMA, dma_sig, dma_pc, dma_run, dma),
                                                  (Unit.VEC, vec_sig, vec_pc, vec_run, vec)):
            with m.If(begin):
                m.d.sync += run_reg.eq(0)
            with m.Elif(start[u]):
                m.d.sync += [run_reg.eq(1), sig_reg.eq(heads[u].signal), pc_reg.eq(heads[u].pc)]
            with m.Elif(unit.done):
                m.d.sync += run_reg.eq(0)

        complete = {Unit.DMA: (dma.done, dma_sig, dma_pc), Unit.GEMM: (gemm.complete, gemm.o_signal, gemm.o_pc),
                    Unit.VEC: (vec.done, vec_sig, vec_pc)}
        overflows = {u: [] for u in complete}
        for s in Unit:
            for d in Unit:
                if s == d:
                    continue
                take = start[d] & heads[d].wait[s] if d in start else Const(0, 1)
                give = complete[s][0] & complete[s][1][d] if s in complete else Const(0, 1)
                nxt = Signal(range(TOKEN_MAX + 2), name=f"tok_next_{s.name.lower()}_{d.name.lower()}")
                m.d.comb += nxt.eq(tok[s][d] + give - take)
                with m.If(begin):
                    m.d.sync += tok[s][d].eq(0)
                with m.Else():
                    m.d.sync += tok[s][d].eq(Mux(nxt > TOKEN_MAX, TOKEN_MAX, nxt))
                if s in overflows:
                    overflows[s].append(nxt > TOKEN_MAX)
        overflow = {u: _any(v) for u, v in overflows.items()}

        executing = Signal()
        m.d.comb += executing.eq(_any(start.values()) | dma_run | vec_run | gemm.inflight)

        # -- errors ---------------------------------------------------------------------------
        # (valid, code, pc) candidates; the smallest pc wins (completions precede the dispatcher)
        cands = [(run & (disp_error != ErrorCode.OK), disp_error, pc),
                 (stalled & ~executing, Const(ErrorCode.DEADLOCK, 4), pc),
                 (gemm.fault, Const(ErrorCode.ARRAY_STREAM, 4), gemm.o_pc)]
        cands += [(overflow[u], Const(ErrorCode.TOKEN_OVERFLOW, 4), complete[u][2]) for u in complete]
        best_v, best_code, best_pc = cands[0]
        for v, code, cpc in cands[1:]:
            take_it = v & (~best_v | (cpc < best_pc))
            best_v, best_code, best_pc = (best_v | v, Mux(take_it, code, best_code),
                                          Mux(take_it, cpc, best_pc))
        err_now = Signal()
        m.d.comb += err_now.eq(run & ~err_reg & best_v)
        error = Signal(ErrorCode)
        error_pc = Signal(pc_bits)
        with m.If(begin):
            m.d.sync += [err_reg.eq(0), error.eq(ErrorCode.OK), error_pc.eq(0)]
        with m.Elif(err_now):
            m.d.sync += [err_reg.eq(1), error.eq(best_code), error_pc.eq(best_pc)]
        m.d.comb += [self.error.eq(error), self.error_pc.eq(error_pc)]

        # -- run state and status -------------------------------------------------------------
        finish = run & ((is_halt & retire) | ((err_now | err_reg) & ~executing))
        with m.If(begin):
            m.d.sync += state.eq(_State.RUN)
        with m.Elif(finish):
            m.d.sync += state.eq(_State.DONE)

        cycles = Signal(COUNTER_BITS)
        dispatched = Signal(COUNTER_BITS)
        busy = [Signal(COUNTER_BITS, name=f"busy_{u.name.lower()}") for u in Unit]
        unit_busy = {Unit.DMA: dma.busy, Unit.GEMM: gemm.busy, Unit.VEC: vec.busy}
        with m.If(begin):
            m.d.sync += [cycles.eq(0), dispatched.eq(0)] + [b.eq(0) for b in busy]
        with m.Elif(run):
            m.d.sync += [cycles.eq(cycles + 1), dispatched.eq(dispatched + retire)]
            m.d.sync += [busy[u].eq(busy[u] + unit_busy[u]) for u in unit_busy]
        m.d.comb += [self.cycles.eq(cycles), self.dispatched.eq(dispatched),
                     self.busy.eq(Cat(*busy)), self.nonfinite.eq(gemm.nonfinite)]
        return m
