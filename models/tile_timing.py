"""Exact cycle model of the tile: dispatcher, unit queues, dependency tokens, DRAM banks, errors.

This is the one timing model of the tile (docs/tile.md, "Cycle model rules"): the golden executor
(:mod:`.executor`) calls :func:`simulate` and then applies each instruction's effect in the order
the model starts them; timing-only runs (paper-scale configurations, full-size models) call
:func:`simulate` directly. Timing never depends on data, only on the instructions and the
configuration, so both uses share every line of it.

The simulation is event driven: it visits only cycles in which something can change (a dispatch,
a start, a completion, the cycle after one), so a GEMM of thousands of beats or a DMA of
thousands of bus beats costs a handful of Python steps. DMA durations come from
:mod:`.dram_timing`, which computes them per DRAM-row piece of a transfer from the banks' and
channels' state at the instruction's start; GEMM and VEC durations are :func:`gemm_cycles` and
:func:`vec_cycles`, which the compiler's scheduler uses too.
"""

import enum
import functools
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .config import TileConfig
from .dram_timing import DramTiming, dma_cycles
from .errors import ConfigError
from .footprint import footprint
from .memo import config_memo, remembered
from .isa import (WORD_BITS, DecodeError, ErrorCode, Instruction, NormFunc, Opcode, ProbFormat, SoftFunc,
                  VecFunc, decode)
from .tile_array import array_params, gemm_tail
from .pim import PIM_OPS, pim_problem
from .pim_timing import pim_cycles, pim_exclusive
from .program import ProgramError
from .softmax import SOFT_DIV_CYCLES, norm_writes
from .units import TOKEN_MAX, Spad, Unit, unit_bits

__all__ = ["VEC_FILL_CYCLES", "Fault", "Duration", "check_instruction", "gemm_cycles", "vec_cycles",
           "vsoft_cycles", "vnorm_cycles",
           "TimingResult", "simulate"]

#: Pipeline fill of the vector datapaths: a VEC is busy reads + column slots + writes + this.
VEC_FILL_CYCLES = 3


class Fault(NamedTuple):
    """Why an instruction cannot run: the tile's error code and a message for people."""
    code: ErrorCode
    message: str


# -- dispatch-time checks ----------------------------------------------------------------------

def _range(lo, n):
    return f"{lo}..{lo + n - 1}"


def check_instruction(config, inst):
    """The configuration-dependent :class:`Fault` of ``inst`` at dispatch, or None.

    Order of the checks (the first failing one is reported):

    * VSOFT and VNORM on a tile without that datapath, PIM instructions on a tile without its
      PIM unit (``ILLEGAL_OPCODE``, :meth:`~.config.TileConfig.missing_datapath`);
    * VEC, VNORM, VSOFT, GEMM: the unit checks (``BAD_FIELD``: ``rows`` / ``words`` beyond
      the array, formats and modes the configuration does not have);
    * PIM instructions: :func:`~.pim.pim_problem` (channels, banks, rows, columns, buffer bytes,
      result registers, ACT lanes: ``PIM_RANGE``);
    * every scratchpad access of the instruction's footprint (:func:`~.footprint.footprint`), in
      its order, must lie in the scratchpad, VPARAM column words at or above
      ``vparam_param_base`` (``SPAD_RANGE``);
    * LOAD/STORE: ``dram_addr`` and ``stride`` alignment to the scratchpad's word size in DRAM,
      then the last row's end (``DRAM_RANGE``);
    * an ADD whose output words overlap its residual words without coinciding, a transposed ROPE
      whose output words overlap its table words (``BAD_FIELD``).
    """
    cfg = config
    op = inst.op
    missing = cfg.missing_datapath(op)
    if missing is not None:
        return Fault(ErrorCode.ILLEGAL_OPCODE, missing)
    if op in _UNIT_FAULTS:
        problem = _UNIT_FAULTS[op](cfg, inst)
        if problem is not None:
            return Fault(ErrorCode.BAD_FIELD, problem)
    if op in PIM_OPS:
        problem = pim_problem(cfg, inst)
        if problem is not None:
            return Fault(*problem)
    depths = _depths(cfg)
    for a in footprint(cfg, inst, dram=False).spads:
        depth = depths[a.spad]
        if a.first < a.lo or a.first + a.words > depth:
            where = (f"the column-parameter region {a.lo}..{depth - 1}" if a.lo else
                     f"the scratchpad ({depth} words)")
            return Fault(ErrorCode.SPAD_RANGE, f"{op.name} {a.name} words {_range(a.first, a.words)} "
                         f"leave {where}")
    if op in (Opcode.LOAD, Opcode.STORE):
        wb = cfg.word_bytes(inst.spad)
        for name in ("dram_addr", "stride"):
            v = inst[name]
            if v % wb:
                return Fault(ErrorCode.DRAM_RANGE, f"{op.name} {name} 0x{v:x} is not a multiple of the "
                             f"{inst.spad.name} word size in DRAM ({wb} bytes)")
        end = inst.dram_addr + (inst.rows - 1) * inst.stride + inst.words * wb
        if end > cfg.dram_bytes:
            return Fault(ErrorCode.DRAM_RANGE, f"{op.name} reaches DRAM byte 0x{end - 1:x}, beyond DRAM "
                         f"(0x{cfg.dram_bytes:x} bytes)")
    if (op == Opcode.VEC and inst.func == VecFunc.ADD and inst.act_addr != inst.res_addr
            and abs(inst.act_addr - inst.res_addr) < cfg.cols):
        return Fault(ErrorCode.BAD_FIELD, f"VEC ADD output words {_range(inst.act_addr, cfg.cols)} "
                     f"overlap residual words {_range(inst.res_addr, cfg.cols)} without coinciding")
    # a transposed ROPE writes column j's word before it has read all of its table
    if (op == Opcode.VEC and inst.func in (VecFunc.ROPE_LO, VecFunc.ROPE_HI) and not inst.direct
            and inst.table_addr - cfg.cols < inst.act_addr < inst.table_addr + 2 * cfg.cols):
        return Fault(ErrorCode.BAD_FIELD, f"VEC {inst.func.name} output words "
                     f"{_range(inst.act_addr, cfg.cols)} overlap its table words "
                     f"{_range(inst.table_addr, 2 * cfg.cols)}")
    return None


def _rows_problem(cfg, name, n):
    return f"{name} ({n}) exceeds the array's rows ({cfg.rows})" if n > cfg.rows else None


def _fp16_problem(cfg, what):
    return f"{what} needs FP16 activations; {cfg.pe} has INT8 ones" if cfg.act_format != "fp16" else None


_PARTNER_FUNCS = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)


def _vec_problem(cfg, inst):
    func = inst.func
    if inst.rows > cfg.rows:
        return _rows_problem(cfg, "VEC rows", inst.rows)
    if inst.fmt and cfg.act_format != "fp16":
        return _fp16_problem(cfg, "VEC fmt 1 (FP16 values)")
    if func in (VecFunc.SILU, VecFunc.GLU) and not inst.fmt:
        return f"VEC {func.name} writes FP16 values: fmt must be 1"
    if func in (VecFunc.ROPE_LO, VecFunc.ROPE_HI) and cfg.act_format != "fp16":
        return _fp16_problem(cfg, f"VEC {func.name} (int16 cosine lanes)")
    if func == VecFunc.RES and (inst.fmt or inst.direct):
        return "VEC RES writes ACC: fmt and direct must be 0"
    if inst.bias and func in _PARTNER_FUNCS:
        return (f"VEC {func.name} cannot add a bias: VPARAM words param_addr + cols .. hold its "
                f"partner's multipliers")
    if inst.direct:
        if func == VecFunc.ADD:
            return "VEC ADD cannot write direct (its residual is read by column)"
        if cfg.rows < cfg.cols:
            return f"VEC direct needs rows >= cols (an ACC row fills one ACT word), not {cfg.rows}x{cfg.cols}"
    return None


def _vsoft_problem(cfg, inst):
    if inst.words > cfg.rows:
        return _rows_problem(cfg, "VSOFT words", inst.words)
    if inst.count > inst.words * cfg.cols:
        return f"VSOFT count ({inst.count}) exceeds words * cols ({inst.words * cfg.cols})"
    if inst.pfmt == ProbFormat.FP16 and cfg.act_format != "fp16":
        return _fp16_problem(cfg, "VSOFT pfmt FP16")
    if inst.col and inst.lane >= cfg.rows:
        return f"VSOFT lane ({inst.lane}) is not a lane of the array's {cfg.rows} rows"
    if not inst.col and inst.lane:
        return "VSOFT lane must be 0 unless col is 1"
    return None


def _vnorm_problem(cfg, inst):
    if inst.rows > cfg.rows:
        return _rows_problem(cfg, "VNORM rows", inst.rows)
    if inst.fmt and cfg.act_format != "fp16":
        return _fp16_problem(cfg, "VNORM fmt 1 (FP16 values)")
    if inst.to_acc and inst.fmt:
        return "VNORM to_acc writes ACC: fmt must be 0"
    return None


def _gemm_problem(cfg, inst):
    if not inst.wsrc:
        return None
    if cfg.family == "bitmod":
        return f"GEMM wsrc needs weights with zero points (4-bit nibble passes); {cfg.pe} has none"
    if cfg.rows < cfg.cols:
        return f"GEMM wsrc needs rows >= cols (an ACT word holds a beat's weights), not {cfg.rows}x{cfg.cols}"
    if cfg.wbits != 4 or cfg.scale_bits < 5:
        return (f"GEMM wsrc splits INT8 weights into 4-bit codes scaled by 16: it needs wbits 4 and "
                f"scale_bits >= 5, not {cfg.wbits} and {cfg.scale_bits}")
    if inst.meta_addr:
        return "GEMM wsrc reads no META: meta_addr must be 0"
    return None


_UNIT_FAULTS = {Opcode.VEC: _vec_problem, Opcode.VSOFT: _vsoft_problem, Opcode.VNORM: _vnorm_problem,
                Opcode.GEMM: _gemm_problem}


@functools.lru_cache(maxsize=64)
def _depths(config):
    """Every scratchpad's depth, indexed by Spad (the per-instruction checks' table)."""
    return tuple(config.spad_words(s) for s in Spad)


# -- durations ---------------------------------------------------------------------------------

class Duration(NamedTuple):
    """How long a unit instruction takes: the unit is busy for ``busy`` cycles from its start;
    the instruction completes (its tokens are given) ``tail`` cycles after the last busy one."""
    busy: int
    tail: int


def gemm_cycles(config, groups, wsrc=False):
    """:class:`Duration` of a GEMM of ``groups`` groups: busy for ``groups * group`` beats of
    ``cycles_per_beat`` cycles (1; ``terms`` on BitMoD tiles), twice that with ``wsrc`` (the high,
    then the low nibbles of the INT8 weights); the tail is the drain to the last ACC write
    (:func:`~mixpim.models.tile_array.gemm_tail`: MixPE and baseline ``latency + rows``)."""
    p = array_params(config)
    return Duration((2 if wsrc else 1) * groups * config.group * p.cycles_per_beat, gemm_tail(p))


def vec_cycles(config, rows, func=VecFunc.REQUANT, direct=False, bias=False):
    """:class:`Duration` of a VEC over ``rows`` ACC words, no tail: busy ``reads + columns + writes
    + 3`` cycles, with ``reads`` = ``rows`` (``2 rows`` for GLU, ROPE and RES: the partner or
    residual rows too), ``columns`` = ``cols * vec_passes`` (twice that for GLU and ROPE, and with
    ``bias``: two parameter words per column, the multiplier then the partner's multiplier or
    the bias; each column slot takes one cycle per pass over the token lanes) and ``writes`` =
    ``rows`` for RES and ``direct`` (rows are written after the whole tile is computed; else the
    columns are written as they are computed)."""
    func = VecFunc(func)
    pair = func in _PARTNER_FUNCS
    reads = rows * (2 if pair or func == VecFunc.RES else 1)
    columns = config.cols * (2 if pair or bias else 1) * config.vec_passes
    writes = rows if (direct or func == VecFunc.RES) else 0
    return Duration(reads + columns + writes + VEC_FILL_CYCLES, 0)


def vnorm_cycles(config, inst):
    """:class:`Duration` of a VNORM, no tail: SUM and SQ ``rows + 3`` (one ACC word per cycle);
    NORM ``rows + 2 cols vec_passes + 3`` (two parameter words per column and pass over the
    ``vec_lanes`` token lanes), ``+ rows`` with ``to_acc``."""
    if inst.func != NormFunc.NORM:
        return Duration(inst.rows + VEC_FILL_CYCLES, 0)
    columns = 2 * config.cols * config.vec_passes
    return Duration(inst.rows + columns + (inst.rows if inst.to_acc else 0) + VEC_FILL_CYCLES, 0)


def vsoft_cycles(config, inst):
    """:class:`Duration` of a VSOFT: ``words + 3`` (one ACC word per cycle, pipeline fill); NORM
    adds the division (``SOFT_DIV_CYCLES``, first) and a cycle per ACT word it writes and pass
    over the ``vec_lanes`` lanes of that word after the reads (packed: ``ceil(count / rows) *
    vec_passes``; by column: ``words * cols``, one lane each, so one pass)."""
    d = inst.words + VEC_FILL_CYCLES
    if inst.func == SoftFunc.NORM:
        d += SOFT_DIV_CYCLES + norm_writes(config, inst) * (1 if inst.col else config.vec_passes)
    return Duration(d, 0)


# -- the simulation ----------------------------------------------------------------------------

@dataclass
class TimingResult:
    """Outcome of :func:`simulate`: the status registers and every instruction's cycles.

    Members
    -------
    config : TileConfig
    cycles : int
        Cycles from start to ``done`` inclusive (``done`` in cycle ``cycles - 1``).
    busy : tuple of int, one per :class:`Unit`
        Cycles each unit spent executing (GEMM: its beat cycles; the drain overlaps the next).
    dispatched : int
        Instructions the dispatcher retired: pushed into a queue, or NOP/SYNC/HALT executed.
    error : ErrorCode
    error_pc : int
        The offending instruction (``len(instructions)`` for NO_HALT; the dispatcher's pc for
        DEADLOCK); 0 when ``error`` is OK.
    error_cycle : int
        Cycle the error was raised (-1 when OK).
    message : str
        Human-readable reason ("" when OK).
    dispatch, start, end, complete : int64 arrays (instructions,)
        Per instruction: the cycle it was retired by the dispatcher, started, spent its last busy
        cycle, completed (tokens visible the cycle after). -1 where it never happened; for
        NOP/SYNC/HALT only ``dispatch`` is set.
    executed : tuple of int
        pcs of the unit instructions that started, in (start cycle, pc) order.
    tokens : int array (units, units)
        Final token counters ``tokens[src, dst]``.
    open_rows : int64 array (channels, banks)
        Final open row of each DRAM bank (-1: none).
    events : int
        Cycles the event-driven simulation visited (a measure of its work).
    instructions : tuple
        The program as the dispatcher saw it: raw words it decoded are :class:`Instruction` s
        (words it never reached or could not decode stay integers).
    """
    config: TileConfig
    cycles: int
    busy: tuple
    dispatched: int
    error: ErrorCode
    error_pc: int
    error_cycle: int
    message: str
    dispatch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    complete: np.ndarray
    executed: tuple
    tokens: np.ndarray
    open_rows: np.ndarray
    events: int = 0
    instructions: tuple = field(default=(), repr=False)

    @property
    def ok(self):
        return self.error == ErrorCode.OK

    def of(self, config, instructions):
        """Whether this is :func:`simulate` of ``config`` and ``instructions`` (whose raw words
        it holds decoded where the dispatcher reached them)."""
        if self.config != config:
            return False
        insts = tuple(instructions)
        return self.instructions == insts or len(self.instructions) == len(insts) and all(
            a == b or type(b) is int and isinstance(a, Instruction) and a.encode() == b
            for a, b in zip(self.instructions, insts))

    def utilization(self, unit=Unit.GEMM):
        """``busy[unit] / cycles``."""
        return self.busy[unit] / self.cycles if self.cycles else 0.0

    def summary(self):
        """One line: cycles, busy per unit, dispatched, error."""
        busy = ", ".join(f"{u.name} {self.busy[u]}" for u in Unit)
        err = self.error.name + (f" at pc {self.error_pc}: {self.message}" if not self.ok else "")
        return (f"{self.cycles} cycles; busy {busy}; {self.dispatched} dispatched; error {err}")


class Kind(enum.Enum):
    """What the dispatcher does with an instruction word."""
    NOP = "retire"
    SYNC = "wait for the units, then retire"
    HALT = "wait for the units, then stop"
    UNIT = "push into its unit's queue"
    FAULT = "raise an error"


_KIND_OF = {Opcode.NOP: Kind.NOP, Opcode.SYNC: Kind.SYNC, Opcode.HALT: Kind.HALT}


class Dispatch(NamedTuple):
    """Static facts of one instruction word for the dispatcher and its unit.

    Members
    -------
    kind : Kind
    inst : Instruction or None
        None for a word that does not decode.
    unit : Unit or None
        The executing unit (``Kind.UNIT`` only).
    waits, signals : tuple of Unit
        The units of the ``wait`` and ``signal`` masks.
    duration : Duration or None
        None for LOAD/STORE and PIM instructions: their durations depend on the DRAM state when
        they start.
    fault : Fault or None
        The decode or dispatch-check error (``Kind.FAULT`` only).
    exclusive : bool
        A PIM instruction that may not execute while a LOAD/STORE does, nor a LOAD/STORE while it
        does (:func:`~.pim_timing.pim_exclusive`).
    wait_tokens : tuple of int
        The token counters its waits take: ``src * len(Unit) + unit`` for each unit of ``waits``.
    signal_tokens : tuple of (int, Unit)
        The token counters its signals give, ``unit * len(Unit) + dst``, and ``dst``.
    transfer : tuple or None
        LOAD/STORE: ``(dram_addr, stride, rows, row bytes)`` of :func:`~.dram_timing.dma_cycles`.
    """
    kind: Kind
    inst: Instruction | None
    unit: Unit | None = None
    waits: tuple = ()
    signals: tuple = ()
    duration: Duration | None = None
    fault: Fault | None = None
    exclusive: bool = False
    wait_tokens: tuple = ()
    signal_tokens: tuple = ()
    transfer: tuple | None = None

    @staticmethod
    def of(cfg, word):
        """The :class:`Dispatch` of ``word`` (an Instruction or a 128-bit integer)."""
        inst = word
        if not isinstance(inst, Instruction):
            try:
                inst = decode(word)
            except DecodeError as e:
                return Dispatch(Kind.FAULT, None, fault=Fault(e.code, str(e)))
        if inst.unit is None:
            return Dispatch(_KIND_OF[inst.op], inst)
        fault = check_instruction(cfg, inst)
        if fault is not None:
            return Dispatch(Kind.FAULT, inst, fault=fault)
        duration = transfer = None
        op = inst.op
        if op == Opcode.GEMM:
            duration = gemm_cycles(cfg, inst.groups, inst.wsrc)
        elif op == Opcode.VEC:
            duration = vec_cycles(cfg, inst.rows, inst.func, inst.direct, inst.bias)
        elif op == Opcode.VSOFT:
            duration = vsoft_cycles(cfg, inst)
        elif op == Opcode.VNORM:
            duration = vnorm_cycles(cfg, inst)
        elif op in (Opcode.LOAD, Opcode.STORE):
            transfer = (inst.dram_addr, inst.stride, inst.rows, inst.words * cfg.word_bytes(inst.spad))
        exclusive = op in PIM_OPS and pim_exclusive(cfg, op)
        unit, nu = inst.unit, len(Unit)
        waits, signals = unit_bits(inst.wait), unit_bits(inst.signal)
        return Dispatch(Kind.UNIT, inst, unit, waits, signals, duration, exclusive=exclusive,
                        wait_tokens=tuple(s * nu + unit for s in waits),
                        signal_tokens=tuple((unit * nu + d, d) for d in signals), transfer=transfer)

    def memory_duration(self, cfg, dram, start):
        """Busy cycles of this LOAD/STORE or PIM instruction starting at cycle ``start`` on
        ``dram`` (a :class:`~.dram_timing.DramTiming`, which it updates)."""
        if self.transfer is None:
            return pim_cycles(dram, start, self.inst)
        return dma_cycles(dram, start, *self.transfer)


class _Raised(NamedTuple):
    """An error raised in ``cycle`` by the instruction at ``pc``."""
    cycle: int
    pc: int
    fault: Fault


#: Dispatch of each Instruction met, per configuration (:func:`~.memo.config_memo`).
_DISPATCH = {}


def simulate(config, instructions):
    """Run the cycle model of docs/tile.md on ``instructions`` (no data).

    Arguments
    ---------
    config : TileConfig
    instructions : sequence of Instruction or int
        Instruction ``pc`` is ``instructions[pc]``; raw 128-bit words are decoded when the
        dispatcher reaches them (an illegal word raises ``ILLEGAL_OPCODE`` / ``BAD_FIELD``).

    Returns
    -------
    TimingResult
        Never raises for a bad program and never hangs: every problem of the instruction stream
        ends the run with an error code (docs/tile.md, "Status registers").

    Raises
    ------
    ConfigError
        If ``config`` is not a TileConfig.
    ProgramError
        If an element of ``instructions`` is neither an Instruction nor an integer in
        0..2**128-1 (instruction memory could not hold it).
    """
    if not isinstance(config, TileConfig):
        raise ConfigError(f"config must be a TileConfig, not {type(config).__name__}")
    cfg = config
    insts = tuple(instructions)
    for i, x in enumerate(insts):
        if not isinstance(x, Instruction) and (isinstance(x, bool) or not isinstance(x, int)
                                               or not 0 <= x < 1 << WORD_BITS):
            raise ProgramError(f"instructions[{i}] must be an Instruction or a 128-bit word, "
                               f"not {x!r}")
    n = len(insts)
    nu = len(Unit)
    depth = cfg.queue_depth
    UNIT, NOP, FAULT, HALT = Kind.UNIT, Kind.NOP, Kind.FAULT, Kind.HALT  # locals: faster lookups
    dram = DramTiming(cfg)

    dispatch_at = [-1] * n
    start_at = [-1] * n
    end_at = [-1] * n
    complete_at = [-1] * n
    prepared = [None] * n  # Dispatch of each pc, once the dispatcher has reached it
    seen = {}  # Dispatch of each distinct raw word
    known = config_memo(_DISPATCH, cfg)  # ... and of each Instruction, across runs
    executed = []

    queues = [deque() for _ in Unit]  # entries: (ready cycle, pc)
    free_at = [0] * nu
    DMA = Unit.DMA
    excl_until = 0  # an exclusive PIM instruction executes until this cycle (exclusive)
    inflight = []  # heap of (completion cycle, pc, unit)
    tok = [0] * (nu * nu)  # tok[src * nu + dst]
    busy = [0] * nu
    dispatched = 0
    pc = 0
    t = 0
    events = 0
    error = None  # _Raised, once an error is raised
    done = None

    while True:
        events += 1
        progressed = started = completed = stalled = False
        candidates = []  # _Raised of this cycle; the smallest pc wins

        # 1. the dispatcher examines pc (queue occupancy and idleness as at the cycle's start)
        if error is None:
            if pc >= n:
                candidates.append(_Raised(t, pc, Fault(
                    ErrorCode.NO_HALT, f"the program counter ran past the last instruction "
                    f"({n} instructions) without HALT")))
            else:
                p = prepared[pc]
                if p is None:  # a program repeats instructions (ring buffers): decide each once
                    word = insts[pc]
                    if type(word) is int:
                        p = seen.get(word)
                        if p is None:
                            p = seen[word] = Dispatch.of(cfg, word)
                    else:
                        p = remembered(known, word, lambda: Dispatch.of(cfg, word))
                    prepared[pc] = p
                kind = p.kind
                if kind is UNIT:
                    q = queues[p.unit]
                    if len(q) < depth:
                        q.append((t + 1, pc))
                        dispatch_at[pc] = t
                        dispatched += 1
                        pc += 1
                        progressed = True
                    else:
                        stalled = True
                elif kind is NOP:
                    dispatch_at[pc] = t
                    dispatched += 1
                    pc += 1
                    progressed = True
                elif kind is FAULT:
                    candidates.append(_Raised(t, pc, p.fault))
                elif not inflight and not any(queues):  # SYNC / HALT: everything idle
                    dispatch_at[pc] = t
                    dispatched += 1
                    if kind is HALT:
                        done = t
                        break
                    pc += 1
                    progressed = True
                else:
                    stalled = True

        # 2. units start their heads (a unit may still start in the cycle an error is raised)
        if error is None:
            for u in range(nu):
                q = queues[u]
                if not q or free_at[u] > t:
                    continue
                ready, hpc = q[0]
                if ready > t:
                    continue
                p = prepared[hpc]
                waits = p.wait_tokens
                missing = False
                for k in waits:
                    if not tok[k]:  # a token it waits for has not been given yet
                        missing = True
                        break
                if missing:
                    continue
                # DMA and exclusive PIM instructions never overlap; the DMA goes first in a cycle
                if (u == DMA and excl_until > t) or (p.exclusive and free_at[DMA] > t):
                    continue
                q.popleft()
                for k in waits:
                    tok[k] -= 1
                if p.duration is None:
                    d, tail = p.memory_duration(cfg, dram, t), 0
                else:
                    d, tail = p.duration
                free_at[u] = t + d
                if p.exclusive:
                    excl_until = t + d
                busy[u] += d
                start_at[hpc] = t
                end_at[hpc] = t + d - 1
                c = t + d - 1 + tail
                complete_at[hpc] = c
                heapq.heappush(inflight, (c, hpc, u))
                executed.append(hpc)
                started = True

        # 3. completions at the end of cycle t: tokens visible from t + 1
        executing = bool(inflight)
        while inflight and inflight[0][0] <= t:
            _, cpc, u = heapq.heappop(inflight)
            completed = True
            for k, d in prepared[cpc].signal_tokens:
                tok[k] += 1
                if tok[k] > TOKEN_MAX and error is None:
                    tok[k] = TOKEN_MAX
                    candidates.append(_Raised(t, cpc, Fault(
                        ErrorCode.TOKEN_OVERFLOW, f"token counter {Unit(u).name}->{d.name} would "
                        f"exceed {TOKEN_MAX}")))

        # 4. deadlock: the dispatcher waits and nothing runs or can start
        if error is None and stalled and not executing:
            p = prepared[pc]
            why = (f"waiting for room in the {p.unit.name} queue" if p.kind is Kind.UNIT else
                   f"waiting at {p.inst.op.name} for the units to drain")
            heads = [f"{Unit(u).name} head pc {q[0][1]} waits for tokens"
                     for u, q in enumerate(queues) if q]
            candidates.append(_Raised(t, pc, Fault(
                ErrorCode.DEADLOCK, f"deadlock: the dispatcher is {why}, no unit is executing; "
                + ("; ".join(heads) or "all queues are empty"))))

        if error is None and candidates:
            error = min(candidates, key=lambda c: c.pc)
        if error is not None:  # done in the first cycle >= the error's with nothing executing
            if not inflight:
                done = t + 1 if executing else t
                break
            t = inflight[0][0]  # drain: completions only
            continue

        # next cycle in which something can change
        if progressed or started or completed:
            t += 1
            continue
        nxt = []
        for u, q in enumerate(queues):
            if q:
                p = prepared[q[0][1]]
                for k in p.wait_tokens:
                    if tok[k] == 0:
                        break
                else:
                    gate = excl_until if u == DMA else free_at[DMA] if p.exclusive else 0
                    nxt.append(max(free_at[u], q[0][0], gate))
        if inflight:
            nxt.append(inflight[0][0])
        if not nxt:  # unreachable: a stalled dispatcher with nothing running is a deadlock
            raise AssertionError(f"timing model stuck at cycle {t}, pc {pc}")
        t = max(min(nxt), t + 1)

    if error is None:
        error = _Raised(-1, 0, Fault(ErrorCode.OK, ""))
    # what the dispatcher decoded, so raw words read as Instructions (undecodable ones stay ints)
    decoded = tuple(x if p is None or p.inst is None else p.inst for x, p in zip(insts, prepared))
    return TimingResult(
        config=cfg, cycles=done + 1, busy=tuple(busy), dispatched=dispatched, error=error.fault.code,
        error_pc=error.pc, error_cycle=error.cycle, message=error.fault.message,
        dispatch=np.array(dispatch_at, np.int64), start=np.array(start_at, np.int64),
        end=np.array(end_at, np.int64), complete=np.array(complete_at, np.int64),
        executed=tuple(sorted(executed, key=lambda i: (start_at[i], i))),
        tokens=np.array(tok, np.int64).reshape(nu, nu),
        open_rows=dram.open_rows, events=events, instructions=decoded)
