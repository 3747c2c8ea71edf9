"""Exact cycle model of the tile: dispatcher, unit queues, dependency tokens, DRAM banks, errors.

This is the one timing model of the tile (docs/tile.md, "Cycle model rules"): the golden executor
(:mod:`.executor`) calls :func:`simulate` and then applies each instruction's effect in the order
the model starts them; timing-only runs (paper-scale configurations, full-size models) call
:func:`simulate` directly. Timing never depends on data, only on the instructions and the
configuration, so both uses share every line of it.

The simulation is event driven: it visits only cycles in which something can change (a dispatch,
a start, a completion, the cycle after one), so a GEMM of thousands of beats or a DMA of
thousands of bus beats costs a handful of Python steps. DMA durations are computed per DRAM-row
piece, vectorized over the pieces of a transfer.
"""

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .config import TileConfig
from .errors import ConfigError
from .isa import WORD_BITS, DecodeError, ErrorCode, Instruction, Opcode, Unit, VecFunc, decode
from .mixpe import ArrayParams
from .program import ProgramError

__all__ = ["DMA_SETUP_CYCLES", "VEC_FILL_CYCLES", "TOKEN_MAX", "NUM_UNITS",
           "check_instruction", "dma_spans", "DramBanks", "gemm_cycles", "vec_cycles",
           "TimingResult", "simulate"]

#: Fixed cycles of every LOAD/STORE on top of its bus beats.
DMA_SETUP_CYCLES = 2
#: VEC duration is rows + cols + VEC_FILL_CYCLES.
VEC_FILL_CYCLES = 3
#: Largest value of a 3-bit token counter.
TOKEN_MAX = 7
NUM_UNITS = len(Unit)
_NO_ROW = -1


# -- dispatch-time checks ----------------------------------------------------------------------

def _range(lo, n):
    return f"{lo}..{lo + n - 1}"


def check_instruction(config, inst):
    """The configuration-dependent error of ``inst`` at dispatch, or None.

    Returns ``(ErrorCode, message)``. Order of the checks (the first failing one is reported):

    * LOAD/STORE: scratchpad words (``SPAD_RANGE``); ``dram_addr`` and ``stride`` alignment to
      the scratchpad's word size in DRAM, then the last row's end (``DRAM_RANGE``).
    * GEMM: ACT, WGT, META, ACC ranges in that order (``SPAD_RANGE``).
    * VEC: ``rows`` > array rows (``BAD_FIELD``); ACC, ACT output, ADD residual, VPARAM column
      ranges (``SPAD_RANGE``; column words must lie at or above ``vparam_param_base``); an ADD
      whose output words overlap its residual words without coinciding (``BAD_FIELD``).
    """
    cfg = config
    op = inst.op
    o = inst.operands
    if op in (Opcode.LOAD, Opcode.STORE):
        spad = o["spad"]
        depth = cfg.spad_words(spad)
        n = o["rows"] * o["words"]
        if o["spad_addr"] + n > depth:
            return (ErrorCode.SPAD_RANGE, f"{op.name} {spad.name} words {_range(o['spad_addr'], n)} "
                    f"leave the scratchpad ({depth} words)")
        wb = cfg.word_bytes(spad)
        for name in ("dram_addr", "stride"):
            v = o[name]
            if v % wb:
                return (ErrorCode.DRAM_RANGE, f"{op.name} {name} 0x{v:x} is not a multiple of the "
                        f"{spad.name} word size in DRAM ({wb} bytes)")
        end = o["dram_addr"] + (o["rows"] - 1) * o["stride"] + o["words"] * wb
        if end > cfg.dram_bytes:
            return (ErrorCode.DRAM_RANGE, f"{op.name} reaches DRAM byte 0x{end - 1:x}, beyond DRAM "
                    f"(0x{cfg.dram_bytes:x} bytes)")
        return None
    if op == Opcode.GEMM:
        groups = o["groups"]
        k = groups * cfg.group
        for name, addr, n, depth in (("ACT", o["act_addr"], k, cfg.act_words),
                                     ("WGT", o["wgt_addr"], k, cfg.wgt_words),
                                     ("META", o["meta_addr"], groups, cfg.meta_words),
                                     ("ACC", o["acc_addr"], cfg.rows, cfg.acc_words)):
            if addr + n > depth:
                return (ErrorCode.SPAD_RANGE, f"GEMM {name} words {_range(addr, n)} leave the "
                        f"scratchpad ({depth} words)")
        return None
    if op == Opcode.VEC:
        rows, func = o["rows"], o["func"]
        act_addr, res_addr, param_addr = o["act_addr"], o["res_addr"], o["param_addr"]
        if rows > cfg.rows:
            return (ErrorCode.BAD_FIELD, f"VEC rows ({rows}) exceeds the array's rows ({cfg.rows})")
        checks = [("ACC", o["acc_addr"], rows, cfg.acc_words),
                  ("ACT", act_addr, cfg.cols, cfg.act_words)]
        if func == VecFunc.ADD:
            checks.append(("residual ACT", res_addr, cfg.cols, cfg.act_words))
        for name, addr, n, depth in checks:
            if addr + n > depth:
                return (ErrorCode.SPAD_RANGE, f"VEC {name} words {_range(addr, n)} leave the "
                        f"scratchpad ({depth} words)")
        base = cfg.vparam_param_base
        if param_addr < base or param_addr + cfg.cols > cfg.vparam_words:
            return (ErrorCode.SPAD_RANGE, f"VEC VPARAM words {_range(param_addr, cfg.cols)} "
                    f"leave the column-parameter region {base}..{cfg.vparam_words - 1}")
        if func == VecFunc.ADD and act_addr != res_addr and abs(act_addr - res_addr) < cfg.cols:
            return (ErrorCode.BAD_FIELD, f"VEC ADD output words {_range(act_addr, cfg.cols)} "
                    f"overlap residual words {_range(res_addr, cfg.cols)} without coinciding")
        return None
    return None


# -- durations ---------------------------------------------------------------------------------

def dma_spans(config, inst):
    """``(starts, length)``: the DRAM byte address of each of the instruction's rows (int64
    array, in transfer order) and the bytes per row."""
    wb = config.word_bytes(inst.spad)
    starts = inst.dram_addr + inst.stride * np.arange(inst.rows, dtype=np.int64)
    return starts, inst.words * wb


class DramBanks:
    """DRAM bank state (the open row of each bank) and the DMA beat-cost formula.

    Arguments
    ---------
    config : TileConfig

    Members
    -------
    open_rows : int64 array (banks,)
        Open row of each bank, -1 for none (after reset).
    """

    def __init__(self, config):
        self.cfg = config
        self.open_rows = np.full(config.dram_banks, _NO_ROW, dtype=np.int64)

    def _pieces(self, starts, length):
        """Global DRAM row index and beat count of every (transfer row, DRAM row) piece."""
        cfg = self.cfg
        bus, cpr = cfg.dram_bus_bytes, cfg.dram_row_bytes // cfg.dram_bus_bytes
        c0 = starts // bus
        c1 = (starts + length - 1) // bus
        g0, g1 = c0 // cpr, c1 // cpr
        npieces = g1 - g0 + 1
        if len(starts) == 1 and npieces[0] == 1:
            return g0, c1 - c0 + 1
        row = np.repeat(np.arange(len(starts)), npieces)
        first = np.cumsum(npieces) - npieces
        g = g0[row] + (np.arange(len(row)) - first[row])
        beats = np.minimum(c1[row], (g + 1) * cpr - 1) - np.maximum(c0[row], g * cpr) + 1
        return g, beats

    def transfer_rows(self, addr, stride, rows, length):
        """Cycles of a DMA's bus beats (rows of ``length`` bytes at ``addr + r * stride``),
        without the setup cycles; updates the open rows. Same result as :meth:`transfer`."""
        bus = self.cfg.dram_bus_bytes
        if rows == 1 or (stride == length and addr % bus == 0 and length % bus == 0):
            return self._contiguous(addr, rows * length)
        return self.transfer(addr + stride * np.arange(rows, dtype=np.int64), length)

    def _contiguous(self, addr, length):
        # One span: its pieces are consecutive DRAM rows g0..g1, each a new run. Only a bank's
        # first piece can find its row open; later pieces of a bank are misses with precharge.
        cfg = self.cfg
        bus, rb, nb = cfg.dram_bus_bytes, cfg.dram_row_bytes, cfg.dram_banks
        c0, c1 = addr // bus, (addr + length - 1) // bus
        g0, g1 = c0 * bus // rb, c1 * bus // rb
        pieces = g1 - g0 + 1
        cycles = (c1 - c0 + 1) * cfg.t_ccd + pieces * cfg.t_cl
        cycles += (pieces - min(pieces, nb)) * (cfg.t_rcd + cfg.t_rp)
        open_rows = self.open_rows
        for g in range(g0, g0 + min(pieces, nb)):
            b, r = g % nb, g // nb
            o = int(open_rows[b])
            if o != r:
                cycles += cfg.t_rcd + (cfg.t_rp if o != _NO_ROW else 0)
        for g in range(max(g0, g1 - nb + 1), g1 + 1):  # the last piece of each bank stays open
            open_rows[g % nb] = g // nb
        return cycles

    def transfer(self, starts, length):
        """Cycles of the bus beats moving ``length`` bytes at each address in ``starts`` (in
        order), without the setup cycles; updates the open rows."""
        cfg = self.cfg
        g, beats = self._pieces(np.asarray(starts, dtype=np.int64), length)
        nb = cfg.dram_banks
        bank, drow = g % nb, g // nb
        if len(g) <= 16:  # short transfers: a plain loop beats numpy's call overhead
            cycles = int(beats.sum()) * cfg.t_ccd
            open_rows = self.open_rows
            prev = None
            for gi, b, r in zip(g.tolist(), bank.tolist(), drow.tolist()):
                if gi != prev:
                    cycles += cfg.t_cl
                    o = int(open_rows[b])
                    if o != r:
                        cycles += cfg.t_rcd + (cfg.t_rp if o != _NO_ROW else 0)
                        open_rows[b] = r
                prev = gi
            return cycles
        run = np.ones(len(g), bool)
        run[1:] = g[1:] != g[:-1]
        # the row open in each piece's bank just before it: the previous piece of that bank in
        # this transfer, or the bank's state before the transfer
        order = np.argsort(bank, kind="stable")
        sb, sr = bank[order], drow[order]
        before_sorted = np.empty(len(g), np.int64)
        before_sorted[1:] = sr[:-1]
        head = np.ones(len(g), bool)
        head[1:] = sb[1:] != sb[:-1]
        before_sorted[head] = self.open_rows[sb[head]]
        before = np.empty_like(before_sorted)
        before[order] = before_sorted
        miss = before != drow
        cycles = (int(beats.sum()) * cfg.t_ccd + int(run.sum()) * cfg.t_cl
                  + int(miss.sum()) * cfg.t_rcd + int((miss & (before != _NO_ROW)).sum()) * cfg.t_rp)
        last = np.ones(len(g), bool)
        last[:-1] = sb[1:] != sb[:-1]
        self.open_rows[sb[last]] = sr[last]
        return cycles


def gemm_cycles(config, inst, latency=None):
    """``(D, tail)`` of a GEMM: busy for ``D = groups * group`` cycles; completes ``tail`` cycles
    after its last busy cycle (``latency + rows``: the drain, then the ACC write)."""
    if latency is None:
        latency = ArrayParams.from_config(config).latency
    return inst.groups * config.group, latency + config.rows


def vec_cycles(config, inst):
    """Duration of a VEC: ``rows + cols + 3``."""
    return inst.rows + config.cols + VEC_FILL_CYCLES


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
    tokens : int array (4, 4)
        Final token counters ``tokens[src, dst]``.
    open_rows : int64 array (banks,)
        Final open row of each DRAM bank (-1: none).
    events : int
        Cycles the event-driven simulation visited (a measure of its work).
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

    def utilization(self, unit=Unit.GEMM):
        """``busy[unit] / cycles``."""
        return self.busy[unit] / self.cycles if self.cycles else 0.0

    def summary(self):
        """One line: cycles, busy per unit, dispatched, error."""
        busy = ", ".join(f"{u.name} {self.busy[u]}" for u in Unit)
        err = self.error.name + (f" at pc {self.error_pc}: {self.message}" if not self.ok else "")
        return (f"{self.cycles} cycles; busy {busy}; {self.dispatched} dispatched; error {err}")


_DISPATCHER_OPS = (Opcode.NOP, Opcode.SYNC, Opcode.HALT)
_BITS = tuple(tuple(u for u in range(NUM_UNITS) if m >> u & 1) for m in range(1 << NUM_UNITS))


def _prepare(cfg, inst, latency):
    """Static facts of one instruction word for the dispatcher: a tuple
    ``(kind, inst, unit, wait_srcs, signal_dsts, D, tail, error, dma)``; kind 0 NOP, 1 SYNC,
    2 HALT, 3 unit instruction, 4 error (``error`` = (code, message)); ``dma`` = the arguments
    of :meth:`DramBanks.transfer_rows` for LOAD/STORE."""
    if not isinstance(inst, Instruction):
        try:
            inst = decode(inst)
        except DecodeError as e:
            return (4, None, None, (), (), 0, 0, (e.code, str(e)), None)
    op = inst.op
    if op in _DISPATCHER_OPS:
        return (_DISPATCHER_OPS.index(op), inst, None, (), (), 0, 0, None, None)
    err = check_instruction(cfg, inst)
    if err is not None:
        return (4, inst, None, (), (), 0, 0, err, None)
    u = int(inst.unit)
    wait = _BITS[inst.wait]
    signal = _BITS[inst.signal]
    dma = None
    if op == Opcode.GEMM:
        d, tail = gemm_cycles(cfg, inst, latency)
    elif op == Opcode.VEC:
        d, tail = vec_cycles(cfg, inst), 0
    else:  # DMA: from the DRAM state when it starts
        o = inst.operands
        d, tail = None, 0
        dma = (o["dram_addr"], o["stride"], o["rows"], o["words"] * cfg.word_bytes(o["spad"]))
    return (3, inst, u, wait, signal, d, tail, None, dma)


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
    latency = ArrayParams.from_config(cfg).latency
    depth = cfg.queue_depth
    banks = DramBanks(cfg)

    dispatch_at = [-1] * n
    start_at = [-1] * n
    end_at = [-1] * n
    complete_at = [-1] * n
    prepared = [None] * n
    executed = []

    queues = [deque() for _ in range(NUM_UNITS)]  # entries: (ready cycle, pc)
    free_at = [0] * NUM_UNITS
    inflight = []  # heap of (completion cycle, pc, unit)
    tok = [0] * (NUM_UNITS * NUM_UNITS)  # tok[src * 4 + dst]
    busy = [0] * NUM_UNITS
    dispatched = 0
    pc = 0
    t = 0
    events = 0
    error = None  # (cycle, pc, code, message)
    done = None

    while True:
        events += 1
        progressed = started = completed = stalled = False
        candidates = []

        # 1. the dispatcher examines pc (queue occupancy and idleness as at the cycle's start)
        if error is None:
            if pc >= n:
                candidates.append((pc, ErrorCode.NO_HALT, f"the program counter ran past the last "
                                   f"instruction ({n} instructions) without HALT"))
            else:
                p = prepared[pc]
                if p is None:
                    p = prepared[pc] = _prepare(cfg, insts[pc], latency)
                kind = p[0]
                if kind == 3:
                    q = queues[p[2]]
                    if len(q) < depth:
                        q.append((t + 1, pc))
                        dispatch_at[pc] = t
                        dispatched += 1
                        pc += 1
                        progressed = True
                    else:
                        stalled = True
                elif kind == 0:
                    dispatch_at[pc] = t
                    dispatched += 1
                    pc += 1
                    progressed = True
                elif kind == 4:
                    candidates.append((pc, p[7][0], p[7][1]))
                elif not inflight and not any(queues):  # SYNC / HALT: everything idle
                    dispatch_at[pc] = t
                    dispatched += 1
                    if kind == 2:
                        done = t
                        break
                    pc += 1
                    progressed = True
                else:
                    stalled = True

        # 2. units start their heads (a unit may still start in the cycle an error is raised)
        if error is None:
            for u in range(NUM_UNITS):
                q = queues[u]
                if not q or free_at[u] > t:
                    continue
                ready, hpc = q[0]
                if ready > t:
                    continue
                p = prepared[hpc]
                blocked = False
                for s in p[3]:
                    if tok[s * NUM_UNITS + u] == 0:
                        blocked = True
                        break
                if blocked:
                    continue
                q.popleft()
                for s in p[3]:
                    tok[s * NUM_UNITS + u] -= 1
                d = p[5]
                if d is None:
                    d = DMA_SETUP_CYCLES + banks.transfer_rows(*p[8])
                free_at[u] = t + d
                busy[u] += d
                start_at[hpc] = t
                end_at[hpc] = t + d - 1
                c = t + d - 1 + p[6]
                complete_at[hpc] = c
                heapq.heappush(inflight, (c, hpc, u))
                executed.append(hpc)
                started = True

        # 3. completions at the end of cycle t: tokens visible from t + 1
        executing = bool(inflight)
        while inflight and inflight[0][0] <= t:
            _, cpc, u = heapq.heappop(inflight)
            completed = True
            for d in prepared[cpc][4]:
                k = u * NUM_UNITS + d
                tok[k] += 1
                if tok[k] > TOKEN_MAX and error is None:
                    tok[k] = TOKEN_MAX
                    candidates.append((cpc, ErrorCode.TOKEN_OVERFLOW,
                                       f"token counter {Unit(u).name}->{Unit(d).name} would exceed "
                                       f"{TOKEN_MAX}"))

        # 4. deadlock: the dispatcher waits and nothing runs or can start
        if error is None and stalled and not executing:
            p = prepared[pc]
            why = (f"waiting for room in the {Unit(p[2]).name} queue" if p[0] == 3 else
                   f"waiting at {Opcode(p[1].op).name} for the units to drain")
            heads = [f"{Unit(u).name} head pc {q[0][1]} waits for tokens"
                     for u, q in enumerate(queues) if q]
            candidates.append((pc, ErrorCode.DEADLOCK, f"deadlock: the dispatcher is {why}, no unit "
                               f"is executing; " + ("; ".join(heads) or "all queues are empty")))

        if error is None and candidates:
            epc, code, msg = min(candidates, key=lambda c: c[0])
            error = (t, epc, code, msg)
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
        for u in range(NUM_UNITS):
            q = queues[u]
            if q:
                p = prepared[q[0][1]]
                for s in p[3]:
                    if tok[s * NUM_UNITS + u] == 0:
                        break
                else:
                    nxt.append(max(free_at[u], q[0][0]))
        if inflight:
            nxt.append(inflight[0][0])
        if not nxt:  # unreachable: a stalled dispatcher with nothing running is a deadlock
            raise AssertionError(f"timing model stuck at cycle {t}, pc {pc}")
        t = max(min(nxt), t + 1)

    if error is None:
        code, epc, ecycle, msg = ErrorCode.OK, 0, -1, ""
    else:
        ecycle, epc, code, msg = error
    return TimingResult(
        config=cfg, cycles=done + 1, busy=tuple(busy), dispatched=dispatched, error=code,
        error_pc=epc, error_cycle=ecycle, message=msg,
        dispatch=np.array(dispatch_at, np.int64), start=np.array(start_at, np.int64),
        end=np.array(end_at, np.int64), complete=np.array(complete_at, np.int64),
        executed=tuple(sorted(executed, key=lambda i: (start_at[i], i))),
        tokens=np.array(tok, np.int64).reshape(NUM_UNITS, NUM_UNITS),
        open_rows=banks.open_rows.copy(), events=events, instructions=insts)
