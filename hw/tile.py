"""The NPU tile: dispatcher, queues, dependency tokens, scratchpads, DMA, GEMM, VEC, PIM.

The synthesizable tile ends at its memory port ``bus`` (:mod:`.mem_bus`, Wishbone classic, the
DMA's) and its PIM port ``pim`` (:mod:`.pim_port`: PIM instructions to the PIM banks, which are
DRAM); the DRAM and its PIM banks sit behind them (in co-simulation
:class:`~.tile_system.TileSystem` puts the DRAM model and the banks' PIM unit there).

The architecture and every cycle rule are docs/tile.md; the golden cycle model
(:func:`mixpim.models.tile_timing.simulate`) predicts every status register of this RTL exactly.

* **Dispatcher.** Instruction memory (``imem_words`` x 128 bits, synchronous read addressed by
  the next pc, so the word of ``pc`` is there in every cycle). In each running cycle it examines
  ``pc``: decode errors (:class:`~.decoder.InstructionDecoder`), then configuration checks
  (:class:`~.checker.DispatchChecker`), then: a unit instruction is pushed into its queue if the
  queue has room; NOP retires; SYNC / HALT retire when every queue is empty and nothing executes
  (HALT raises ``done``); ``pc == length`` is ``NO_HALT``.
* **Queues.** One FIFO of ``queue_depth`` per unit of
  :data:`~mixpim.models.units.QUEUED_UNITS` (DMA, GEMM, VEC, PIM); an entry is the
  instruction's opcode, operand bits, token masks and pc. A push in cycle c is at the head from
  c + 1; a start in c frees its slot from c + 1.
* **DMA and PIM exclusion** (docs/pim.md, "Row-buffer modes"): the DMA does not start while an
  exclusive PIM instruction (:func:`~mixpim.models.pim_timing.pim_exclusive`) executes; the PIM
  unit does not start an exclusive instruction while the DMA executes or starts (the DMA goes
  first in a cycle). The PIM banks share the DRAM with the DMA (the DRAM model, :mod:`.dram`,
  keeps their own row state in "dual" mode, the DMA's in "single").
* **Tokens.** ``tok[src][dst]`` (3 bits) for every ordered pair of the four units; a start takes
  one from each counter of its ``wait`` mask, a completion gives one to each of its ``signal``
  mask, checked for overflow net of same-cycle takes.
* **Errors.** Candidates of one cycle (dispatcher at ``pc``; ``TOKEN_OVERFLOW`` at each
  completing instruction; ``DEADLOCK``; ``ARRAY_STREAM``) -> the one of the smallest pc is kept.
  No start after the error cycle; ``done`` in the first cycle with nothing executing.
* **Scratchpads** (ACT, WGT, META, ACC, VPARAM): block-RAM-shaped memories (:mod:`.tile_spads`,
  :mod:`.spad_memory`: banked for the DMA's multi-word ports, replicated per reader with a live
  value table per writer), so every unit that :data:`~mixpim.models.units.SPADS` names a reader
  (writer) of a scratchpad reads (writes) it in any cycle through its ``r_<spad>`` (``w_<spad>``)
  port, as docs/tile.md's timing assumes. VPARAM words 0 .. 64 + rows - 1 (GELU table, token
  multipliers) are mirrored in LUT-RAM-shaped memories (:mod:`.vparam_mirror`) that the VEC
  lanes look up combinationally.
* **Host port.** While the tile is not running, ``host_*`` reads and writes the program and the
  scratchpads one word per cycle: ``host_rdata`` holds the word addressed in the previous cycle
  (``HostSel.DRAM`` selects nothing here: the DRAM is behind ``bus``). ``start`` begins a run:
  status registers, tokens, queues and units are reset (the memory system behind the ports resets
  its bank state in the same cycle: ``start & ~running``); memory contents are kept.

Status (valid while ``done``; counted from the first cycle after ``start``): ``cycles``, ``busy``
per unit, ``dispatched``, ``error``, ``error_pc``, ``nonfinite``.
"""

from dataclasses import dataclass
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import data, enum, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models.isa import WORD_BITS, ErrorCode, Opcode, header_fields
from ..models.pim import PIM_OPS
from ..models.pim_timing import pim_exclusive
from ..models.units import MASK_BITS, QUEUED_UNITS, TOKEN_MAX, Spad, Unit
from .checker import DispatchChecker
from .common import ConfigComponent, any_of, check_config
from .decoder import InstructionDecoder
from .dma import DmaEngine, word_shape
from .gemm_unit import GemmUnit
from .mem_bus import MemBusSignature
from .pim_port import PimFrontEnd, PimPortSignature
from .tile_spads import HostAccess, connect_spads
from .vector import VPARAM_BITS, VectorOp, VectorUnit
from .vparam_mirror import VParamMirror

__all__ = ["HostSel", "host_word_bits", "Tile", "MAX_IMEM_WORDS"]

#: Largest instruction memory (the pc and ``length`` are 16-bit + 1).
MAX_IMEM_WORDS = 65536
OPERAND_LO = sum(w for _, _, w in header_fields())
OPERAND_BITS = WORD_BITS - OPERAND_LO
COUNTER_BITS = 32


def _host_sel():
    # IMEM, DRAM, then one member per scratchpad (named and ordered as Spad)
    members = {"IMEM": 0, "DRAM": 1, **{s.name: 2 + s for s in Spad}}
    shape = range(len(members))
    namespace = enum.EnumType.__prepare__("HostSel", (enum.Enum,), shape=shape)
    namespace["__module__"] = __name__
    namespace["__qualname__"] = "HostSel"
    namespace["__doc__"] = "Memory addressed by the host port: IMEM, DRAM, then each scratchpad."
    for name, value in members.items():
        namespace[name] = value
    return enum.EnumType("HostSel", (enum.Enum,), namespace, shape=shape)


HostSel = _host_sel()
_SPAD_SEL = {s: HostSel[s.name] for s in Spad}


def _unit_components(config, pc_bits):
    """The component that executes each unit of :data:`~mixpim.models.units.QUEUED_UNITS`.

    Each has ``start`` and ``i_inst`` (its operand layout) inputs, a ``busy`` output counted in
    the unit's busy register, and the ``r_<spad>`` / ``w_<spad>`` ports that
    :data:`~mixpim.models.units.SPADS` gives it. A single-issue unit also has ``done`` (its last
    busy cycle completes it); a pipelined unit instead has ``i_signal``, ``i_pc``, ``idle``,
    ``inflight``, ``complete``, ``o_signal`` and ``o_pc`` and tracks its own completions.
    """
    units = {Unit.DMA: DmaEngine(config), Unit.GEMM: GemmUnit(config, pc_bits),
             Unit.VEC: VectorUnit(config), Unit.PIM: PimFrontEnd(config)}
    assert tuple(units) == QUEUED_UNITS
    return units


@dataclass(frozen=True)
class _Completion:
    """What the dispatcher sees of one unit: may it start, is something in flight, and the
    completion of this cycle with its token mask and pc."""
    idle: Value
    executing: Value
    complete: Value
    signal: Value
    pc: Value


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


class Tile(ConfigComponent):
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
        Word ``host_addr`` of the selected memory (ACC: ``cols`` ``acc_bits``-bit fields, LSB
        first; others their DRAM bytes, little-endian; ``DRAM`` reads 0 and writes nothing).
        Writes are ignored while running.
    running : Out(1), a run is in progress; done : Out(1), the run ended (status valid)
    cycles, dispatched : Out(32); busy : Out(ArrayLayout(32, 4)), per :class:`Unit`
    error : Out(ErrorCode); error_pc : Out(32); nonfinite : Out(1)
    bus : Out(:class:`~.mem_bus.MemBusSignature`), the memory port (the DMA's)
    pim : Out(:class:`~.pim_port.PimPortSignature`), PIM instructions to the PIM banks

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    ValueError
        If ``imem_words`` is out of range.
    """

    def __init__(self, config, imem_words=1024):
        check_config(config)
        if isinstance(imem_words, bool) or not isinstance(imem_words, int) \
                or not 1 <= imem_words <= MAX_IMEM_WORDS:
            raise ValueError(f"imem_words must be an integer in 1..{MAX_IMEM_WORDS}, not {imem_words!r}")
        self._imem_words = imem_words
        super().__init__(config)

    def _members(self, config):
        width = host_word_bits(config)
        return {
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
            "bus": Out(MemBusSignature(config)),
            "pim": Out(PimPortSignature(config)),
        }

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
        units = _unit_components(cfg, pc_bits)
        for u, unit in units.items():
            m.submodules[u.name.lower()] = ResetInserter(begin)(unit)
        wiring.connect(m, units[Unit.DMA].dram, wiring.flipped(self.bus))
        wiring.connect(m, units[Unit.PIM].port, wiring.flipped(self.pim))

        # -- host port and memories -----------------------------------------------------------
        host_w = Signal()
        m.d.comb += host_w.eq(self.host_we & ~run)
        rsel = Signal(HostSel)
        m.d.sync += rsel.eq(self.host_sel)

        # instruction memory: the host writes it; the dispatcher's read port serves the host's
        # reads while not running (in the start cycle it reads pc 0)
        imem = Memory(shape=WORD_BITS, depth=self._imem_words, init=[])
        m.submodules.imem = imem
        imem_wr = imem.write_port()
        m.d.comb += [imem_wr.addr.eq(self.host_addr), imem_wr.data.eq(self.host_wdata[:WORD_BITS]),
                     imem_wr.en.eq(host_w & (self.host_sel == HostSel.IMEM))]
        imem_rd = imem.read_port()
        host = HostAccess(run, self.host_addr, self.host_wdata,
                          {s: host_w & (self.host_sel == _SPAD_SEL[s]) for s in Spad},
                          {s: self.host_sel == _SPAD_SEL[s] for s in Spad})
        host_reads = connect_spads(m, cfg, units, host)
        host_reads = {_SPAD_SEL[s]: v for s, v in host_reads.items()}
        host_reads[HostSel.IMEM] = imem_rd.data

        with m.Switch(rsel):
            for sel, value in host_reads.items():
                with m.Case(sel):
                    m.d.comb += self.host_rdata.eq(value)

        # VPARAM words 0 .. 64 + rows - 1 mirrored for the VEC lanes' lookups; written as the
        # scratchpad is: by the DMA, by the host (on the DMA's port) while not running
        m.submodules.vparam_mirror = mirror = VParamMirror(cfg)
        dma_w = units[Unit.DMA].w_vparam
        m.d.comb += [
            mirror.w.addr.eq(Mux(run, dma_w.addr, self.host_addr)),
            mirror.w.en.eq(Mux(run, dma_w.en, host.write[Spad.VPARAM])),
            mirror.w.data.eq(Mux(run, dma_w.data.as_value(), self.host_wdata[:VPARAM_BITS])),
        ]
        wiring.connect(m, units[Unit.VEC].lookup, mirror.lookup)

        # -- dispatcher -------------------------------------------------------------------------
        pc = Signal(pc_bits)
        retire = Signal()
        m.d.comb += imem_rd.addr.eq(Mux(run, pc + retire, Mux(self.start, 0, self.host_addr)))
        m.submodules.decoder = dec = InstructionDecoder()
        m.submodules.checker = chk = DispatchChecker(cfg)
        m.d.comb += [
            dec.i_word.eq(imem_rd.data),
            chk.i_opcode.eq(dec.o_opcode),
            chk.i_dma.eq(dec.o_load),
            chk.i_gemm.eq(dec.o_gemm),
            chk.i_vec.eq(dec.o_vec),
            chk.i_vsoft.eq(dec.o_vsoft),
            chk.i_vnorm.eq(dec.o_vnorm),
        ]
        for name in (op.name.lower() for op in PIM_OPS):   # every PIM format's view
            m.d.comb += getattr(chk, f"i_{name}").eq(getattr(dec, f"o_{name}"))
        at_end = pc == self.length
        disp_error = Signal(ErrorCode)
        m.d.comb += disp_error.eq(Mux(at_end, ErrorCode.NO_HALT,
                                      Mux(dec.o_error != ErrorCode.OK, dec.o_error, chk.o_error)))
        is_unit = ~dec.o_dispatcher
        op = dec.o_opcode
        is_nop = dec.o_dispatcher & (op == Opcode.NOP)
        is_wait = dec.o_dispatcher & ((op == Opcode.SYNC) | (op == Opcode.HALT))
        is_halt = dec.o_dispatcher & (op == Opcode.HALT)

        entry_layout = data.StructLayout({"opcode": 8, "operands": OPERAND_BITS, "wait": MASK_BITS,
                                          "signal": MASK_BITS, "pc": pc_bits})
        queues = {}
        for u in QUEUED_UNITS:
            q = fifo.SyncFIFO(width=entry_layout.size, depth=cfg.queue_depth)
            m.submodules[f"queue_{u.name.lower()}"] = ResetInserter(begin)(q)
            queues[u] = q
            m.d.comb += q.w_data.eq(Cat(op, imem_rd.data[OPERAND_LO:], dec.o_wait, dec.o_signal, pc))
        room = Cat(*(queues[u].w_rdy if u in queues else 0 for u in Unit)).bit_select(dec.o_unit, 1)

        # in flight per unit: started before this cycle and not yet completed before it
        in_flight = {u: Signal(name=f"in_flight_{u.name.lower()}") for u in QUEUED_UNITS}
        err_reg = Signal()
        ok = Signal()
        m.d.comb += ok.eq(run & ~err_reg & (disp_error == ErrorCode.OK))
        queues_empty = ~any_of(q.r_rdy for q in queues.values())
        quiet = queues_empty & ~any_of(in_flight.values())
        m.d.comb += retire.eq(ok & ((is_unit & room) | is_nop | (is_wait & quiet)))
        stalled = ok & ((is_unit & ~room) | (is_wait & ~quiet))
        for u, q in queues.items():
            m.d.comb += q.w_en.eq(retire & is_unit & (dec.o_unit == u))
        with m.If(begin):
            m.d.sync += pc.eq(0)
        with m.Elif(retire):
            m.d.sync += pc.eq(pc + 1)

        # -- starts, completions and tokens -----------------------------------------------------
        tok = [[Signal(range(TOKEN_MAX + 1), name=f"tok_{s.name.lower()}_{d.name.lower()}")
                if s != d else None for d in Unit] for s in Unit]

        def tok_ready(src, dst):
            return tok[src][dst] != 0

        heads = {u: data.View(entry_layout, q.r_data) for u, q in queues.items()}
        track = {u: self._track(m, begin, unit, heads[u]) for u, unit in units.items()}
        start = {u: Signal(name=f"start_{u.name.lower()}") for u in queues}
        gate = self._exclusion(m, begin, cfg, units, heads, track, start)
        for u, q in queues.items():
            h = heads[u]
            m.d.comb += in_flight[u].eq(track[u].executing)
            tokens_ok = reduce(lambda a, b: a & b,
                               ((~h.wait[s]) | (tok_ready(s, u)) for s in Unit if s != u), Const(1, 1))
            unit = units[u]
            operands = h.operands[:data.Layout.cast(unit.i_inst.shape()).size]
            m.d.comb += [start[u].eq(run & ~err_reg & q.r_rdy & track[u].idle & tokens_ok
                                     & gate[u]),
                         q.r_en.eq(start[u]), unit.start.eq(start[u]),
                         unit.i_inst.eq(data.View(unit.i_inst.shape(), operands))]
        m.d.comb += units[Unit.DMA].i_store.eq(heads[Unit.DMA].opcode == Opcode.STORE)
        vop = heads[Unit.VEC].opcode
        m.d.comb += units[Unit.VEC].i_op.eq(Mux(vop == Opcode.VSOFT, VectorOp.VSOFT,
                                                Mux(vop == Opcode.VNORM, VectorOp.VNORM, VectorOp.VEC)))
        m.d.comb += units[Unit.PIM].i_opcode.eq(heads[Unit.PIM].opcode)

        overflows = {u: [] for u in track}
        for s in Unit:
            for d in Unit:
                if s == d:
                    continue
                take = start[d] & heads[d].wait[s] if d in start else Const(0, 1)
                give = track[s].complete & track[s].signal[d] if s in track else Const(0, 1)
                nxt = Signal(range(TOKEN_MAX + 2), name=f"tok_next_{s.name.lower()}_{d.name.lower()}")
                m.d.comb += nxt.eq(tok[s][d] + give - take)
                with m.If(begin):
                    m.d.sync += tok[s][d].eq(0)
                with m.Else():
                    m.d.sync += tok[s][d].eq(Mux(nxt > TOKEN_MAX, TOKEN_MAX, nxt))
                if s in overflows:
                    overflows[s].append(nxt > TOKEN_MAX)
        overflow = {u: any_of(v) for u, v in overflows.items()}

        executing = Signal()
        m.d.comb += executing.eq(any_of(start.values()) | any_of(in_flight.values()))

        # -- errors ---------------------------------------------------------------------------
        # (valid, code, pc) candidates; the smallest pc wins (completions precede the dispatcher)
        cands = [(run & (disp_error != ErrorCode.OK), disp_error, pc),
                 (stalled & ~executing, Const(ErrorCode.DEADLOCK, 4), pc),
                 (units[Unit.GEMM].fault, Const(ErrorCode.ARRAY_STREAM, 4), units[Unit.GEMM].o_pc)]
        cands += [(overflow[u], Const(ErrorCode.TOKEN_OVERFLOW, 4), track[u].pc) for u in track]
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
        with m.If(begin):
            m.d.sync += [cycles.eq(0), dispatched.eq(0)] + [b.eq(0) for b in busy]
        with m.Elif(run):
            m.d.sync += [cycles.eq(cycles + 1), dispatched.eq(dispatched + retire)]
            m.d.sync += [busy[u].eq(busy[u] + unit.busy) for u, unit in units.items()]
        m.d.comb += [self.cycles.eq(cycles), self.dispatched.eq(dispatched),
                     self.busy.eq(Cat(*busy)), self.nonfinite.eq(units[Unit.GEMM].nonfinite)]
        return m

    @staticmethod
    def _exclusion(m, begin, cfg, units, heads, track, start):
        """Per unit, the exclusion's condition on its start (1 for GEMM and VEC): the DMA may
        start unless an exclusive PIM instruction executes (started before this cycle); the PIM
        unit may start an exclusive one unless the DMA executes or starts in this cycle."""
        dma, pim = Unit.DMA, Unit.PIM
        exclusive = [op for op in PIM_OPS if pim_exclusive(cfg, op)]
        head_excl = heads[pim].opcode.matches(*exclusive)
        pim_excl = Signal()   # an exclusive PIM instruction executes
        with m.If(begin | units[pim].done):
            m.d.sync += pim_excl.eq(0)
        with m.If(start[pim]):
            m.d.sync += pim_excl.eq(head_excl)
        gate = {u: Const(1, 1) for u in start}
        gate[dma] = ~pim_excl
        gate[pim] = ~(head_excl & (track[dma].executing | start[dma]))
        return gate

    @staticmethod
    def _track(m, begin, unit, head):
        """The :class:`_Completion` of ``unit`` (see :func:`_unit_components`). A pipelined unit
        tracks its own completions; for a single-issue unit the tile keeps the token mask and pc
        of the running instruction, which completes in the unit's ``done`` cycle."""
        if hasattr(unit, "complete"):
            m.d.comb += [unit.i_signal.eq(head.signal), unit.i_pc.eq(head.pc)]
            return _Completion(unit.idle, unit.inflight, unit.complete, unit.o_signal, unit.o_pc)
        running, signal, pc = Signal(), Signal(MASK_BITS), Signal(len(head.pc))
        with m.If(begin):
            m.d.sync += running.eq(0)
        with m.Elif(unit.start):
            m.d.sync += [running.eq(1), signal.eq(head.signal), pc.eq(head.pc)]
        with m.Elif(unit.done):
            m.d.sync += running.eq(0)
        return _Completion(~running, running, unit.done, signal, pc)
