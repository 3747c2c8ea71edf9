"""Seeded random tile programs: valid instruction mixes and designed errors, for co-simulation.

``random_program(config, seed)`` returns a :class:`RandomProgram`: instructions, DRAM segments
and the error the golden model (:mod:`.executor`) reports for it. The RTL co-simulation runs
many of them and compares the RTL with the golden model in outputs and every status counter.

**Valid programs** (probability ``1 - error_rate``) are ``length`` random instructions ending in
HALT: LOAD (ACT 0.3, WGT 0.27, META 0.13, ACC 0.1, VPARAM 0.2: GELU table words 0..63, token
words, column words), STORE (ACT, ACC), GEMM (1..4 groups, ``accumulate`` 0/1, ``wsrc`` 1 (INT8
weights from ACT words) in a quarter where the configuration has it), the vector unit (VEC 0.5,
VSOFT 0.25, VNORM 0.25 of its draws; all functions, formats and modes, softmax rows and norms
whose passes go on over several instructions: :mod:`.random_vec`), the PIM instructions
(PIM_GBUF, PIM_WRITE, PIM_GEMV, PIM_READ, PIM_ACT: :mod:`.random_pim`; on FP16 configurations
too, where PIM_GBUF converts ACT lanes to INT8), NOP, SYNC (:data:`DRAWN_OPS`; per draw
LOAD 0.32, STORE 0.12, GEMM 0.24, vector unit 0.22, PIM 0.24, NOP 0.06, SYNC 0.04, normalized
over what the configuration has; while a softmax row or a norm is under way, 10 % of the draws
continue it). DMA transfers have 1..4 rows and a stride of
0, shorter than a row (overlapping rows), exactly a row, or with a gap; DRAM addresses are
multiples of the word size, usually not of the bus width. Scratchpad addresses fall mostly in a
small window at the bottom of each scratchpad (sometimes anywhere in it), often at a recently
written address, so data flows from LOADs through GEMMs, VECs and the PIM unit to STOREs and
instructions depend on each other; LOADs sometimes read and STOREs sometimes overwrite the DRAM
bytes PIM instructions use, and PIM instructions the bytes STOREs wrote. Most programs start with
a prologue loading the VPARAM, META, WGT and ACT windows (and in 25 % of them, 60 % on FP16
configurations, the ACC window), so that GEMM and VEC results are rarely all zero.

Dependency tokens come from the compiler's token pass (:class:`mixpim.compiler.tokens.TokenPlanner`)
on each instruction's footprint (:func:`mixpim.models.footprint.footprint`), exactly as for
compiled programs; some random extra dependencies are added through it too. Every wait points
backwards, so the k-th take of ``tok[src][dst]`` pairs with the k-th give, the program cannot
deadlock, and the counters return to 0 at HALT; DRAM conflicts between the DMA and PIM units are
ordered like scratchpad conflicts. The generator then runs the golden executor and,
while it reports a race or a ``TOKEN_OVERFLOW`` (a consumer lagging at run time), inserts a SYNC
before the later instruction and runs again (:func:`insert_syncs`); a valid program always ends
with ``OK`` and no races (checked).

**Error programs** (probability ``error_rate``, built by :class:`~.random_errors.ErrorGen`) are a
valid prefix (checked the same way) followed by one designed error, one of (``variant`` names
it):

================  =========================================================================
ILLEGAL_OPCODE    a raw word with an opcode not in the table: ``pim`` (a reserved opcode of the
                  PIM group, 0x45..0x4f), ``other``; on a tile without the softmax or norm
                  datapath or the PIM unit, ``datapath``: a VSOFT, VNORM or PIM instruction
BAD_FIELD         ``reserved`` / ``unused`` bits set, ``own_token`` bit, ``dispatcher_mask`` on
                  NOP/SYNC/HALT, bad ``spad``, ``func`` beyond the VEC / VSOFT / VNORM table,
                  ``zero_count`` (a count of any unit's instruction; raw words); legal encodings
                  the configuration rejects: ``vec_rows``, ``add_overlap``, ``vsoft_count``,
                  the formats and modes of the vector unit and GEMM ``wsrc``
                  (:data:`~.random_errors.BAD_FIELD_KINDS`, :func:`bad_field_kinds`)
SPAD_RANGE        LOAD/STORE, or any address field of a GEMM, VEC, VSOFT or VNORM footprint
                  (VPARAM multipliers also below the column region), PIM_GBUF (ACT) or PIM_READ
                  (ACC) beyond a scratchpad
DRAM_RANGE        ``dram_addr`` or ``stride`` not a multiple of the word size, or beyond DRAM
TOKEN_OVERFLOW    SYNC, then 8 instructions of one unit (incl. PIM) signalling a unit that never
                  takes; raised when the 8th completes
DEADLOCK          a wait that is never satisfied: on ``pim`` (nothing signals the PIM unit), on a
                  unit that ``never`` signals, or a ``cycle`` of two instructions waiting on each
                  other; then HALT
NO_HALT           the valid prefix without HALT
PIM_RANGE         a PIM channel, bank, row, column, buffer byte, result register, ACT lane, or
                  a GEMV ``len`` / ``col`` / ``gaddr`` not a multiple of ``pim_lanes``
                  (:data:`~.random_pim.PIM_RANGE_KINDS`; only on configurations with PIM)
================  =========================================================================

Decode and dispatch-time errors are followed by a few instructions the tile never reaches and
HALT. ``expected_pc`` is the error's pc where the design fixes it (every code but DEADLOCK).

**DRAM layout** (one segment each): regions for ACT, WGT, META, ACC, VPARAM data and an OUT
region for STOREs, each a multiple of every word size, a few DRAM rows apart, then (with PIM) a
KV region of one or two whole bank rows (every channel and bank) of random bytes. ACT holds
random int8 bytes (FP16 configurations: normal values of random magnitudes, 0.5 % inf/NaN/
subnormal); WGT and META random bytes (codes, zero points, scale mantissas and, with
``group_offset``, signed int24 offsets over their whole range); ACC values of a
moderate size and VPARAM a random GELU table, token words ``(1, 0)`` or small ``(tmult,
tshift)``, and zones of column, softmax and norm parameters sized for the data they scale
(:mod:`.random_vec`; a few words fully random: the ignored bits [22:32] set, extreme shifts).
Loads mostly read their own region, sometimes OUT (stored results) or KV; ACT stores sometimes
overwrite the ACT region; STOREs sometimes overwrite KV.

``python -m mixpim.sim.random_program [N] [preset]`` prints :func:`summary` for seeds 0..N-1.
"""

import math
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..compiler.tokens import TokenPlanner
from ..models.config import VPARAM_LUT_WORDS, TileConfig, preset
from ..models.executor import run
from ..models.footprint import footprint
from ..models.isa import OPCODE_FORMATS, ErrorCode, Instruction, Opcode, Spad, Unit
from ..models.pim import PIM_OPS
from ..models.program import Program, ProgramError, Segment
from ..models.units import DRAM_UNITS, QUEUED_UNITS, SPADS
from .random_errors import BAD_FIELD_KINDS, HALT, SYNC, ErrorGen
from .random_pim import PimGen, pim_features
from .random_vec import VecGen, vec_features

__all__ = ["RandomProgram", "random_program", "random_programs", "insert_syncs", "summary",
           "dma_gemm_overlap", "bad_field_kinds", "ERROR_KINDS", "DRAWN_OPS", "BAD_FIELD_KINDS"]

#: Designed errors, in the order :func:`random_program` draws them (uniformly).
ERROR_KINDS = (ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_FIELD, ErrorCode.SPAD_RANGE,
               ErrorCode.DRAM_RANGE, ErrorCode.TOKEN_OVERFLOW, ErrorCode.DEADLOCK, ErrorCode.NO_HALT,
               ErrorCode.PIM_RANGE)

#: The opcodes the generator draws operands for.
DRAWN_OPS = (Opcode.NOP, Opcode.SYNC, Opcode.HALT, Opcode.LOAD, Opcode.STORE, Opcode.GEMM,
             Opcode.VEC, Opcode.VSOFT, Opcode.VNORM) + PIM_OPS
_UNIT_OPS = {u: tuple(op for op, fmt in OPCODE_FORMATS.items()
                     if fmt.unit == u and op in DRAWN_OPS) for u in QUEUED_UNITS}
_LOAD_SPADS = tuple(s for s, info in SPADS.items() if Unit.DMA in info.writers)
_STORE_SPADS = tuple(s for s, info in SPADS.items() if Unit.DMA in info.readers)
#: How often a LOAD fills each scratchpad.
_LOAD_P = [{Spad.ACT: 0.3, Spad.WGT: 0.27, Spad.META: 0.13, Spad.ACC: 0.1, Spad.VPARAM: 0.2}[s]
           for s in _LOAD_SPADS]


@dataclass(frozen=True)
class RandomProgram:
    """One generated program and the outcome it was designed for.

    Members
    -------
    config : TileConfig
    seed : int
    instructions : tuple of Instruction or int
        Instruction ``pc`` is ``instructions[pc]``; an int is a raw 128-bit word that does not
        decode (most ILLEGAL_OPCODE and BAD_FIELD programs; a :class:`Program` cannot hold it).
    segments : tuple of Segment
        DRAM contents (the scratchpads start as zeros).
    expected_error : ErrorCode
        ``OK`` for a valid program; the golden model reports exactly this code.
    expected_pc : int or None
        The ``error_pc`` the golden model reports (0 for OK), or None where the design does not
        fix it (DEADLOCK: the dispatcher's pc when it is detected).
    variant : str
        ``"ok"`` or ``"<CODE>:<variant>"``, e.g. ``"BAD_FIELD:reserved"``.
    """
    config: TileConfig
    seed: int
    instructions: tuple
    segments: tuple
    expected_error: ErrorCode
    expected_pc: int | None
    variant: str

    @property
    def words(self):
        """The 128-bit instruction words (what instruction memory is loaded with)."""
        return tuple(i if isinstance(i, int) else i.encode() for i in self.instructions)

    @property
    def has_raw_words(self):
        return any(isinstance(i, int) for i in self.instructions)

    def program(self):
        """The :class:`Program`; :class:`ProgramError` if it holds raw words."""
        if self.has_raw_words:
            raise ProgramError(f"random program {self.seed} ({self.variant}) holds raw words; "
                               f"use .words or .run()")
        return Program(self.config, self.instructions, self.segments)

    def run(self, **kwargs):
        """The golden :class:`~mixpim.models.executor.Result` (``executor.run`` on the parts)."""
        return run(self.config, self.instructions, self.segments, **kwargs)


def random_program(config, seed, *, length=None, error_rate=0.15, errors=None):
    """A random program for ``config``, fully determined by ``seed``.

    Arguments
    ---------
    config : TileConfig
    seed : int
        Seeds ``numpy.random.default_rng``.
    length : int or None
        Instructions to generate including the final HALT (default: random in 10..60); repairs
        add a few SYNCs. Error programs put their error at a random point of this length.
    error_rate : float
        Probability of a designed error instead of a valid program.
    errors : iterable of ErrorCode or None
        The designed errors to draw from (default: every one the configuration can raise).

    Returns
    -------
    RandomProgram

    Raises
    ------
    ValueError
        If DRAM is too small for the layout, or (a generator bug) the golden model does not
        report the designed outcome.
    """
    if not isinstance(config, TileConfig):
        raise TypeError(f"config must be a TileConfig, not {type(config).__name__}")
    rng = np.random.default_rng(seed)
    gen = _Gen(config, rng)
    n = int(rng.integers(10, 61)) if length is None else int(length)
    if rng.random() >= error_rate:
        body = gen.valid_body(n - 1)
        insts, code, pc, variant = body + [HALT], ErrorCode.OK, 0, "ok"
    else:
        kinds = gen.error_kinds()
        if errors is not None:
            kinds = tuple(k for k in kinds if k in set(errors))
            if not kinds:
                raise ValueError(f"none of {errors} is a designed error on this configuration")
        code = kinds[int(rng.integers(len(kinds)))]
        cut = int(rng.integers(0, max(n - 1, 1)))
        prefix = gen.valid_body(cut)
        insts, pc, variant = gen.error_program(code, prefix, max(n - 1 - cut, 1))
        variant = f"{code.name}:{variant}"
    rp = RandomProgram(config, seed, tuple(insts), tuple(gen.segments), code, pc, variant)
    r = rp.run()
    got = (r.status.error, r.status.error_pc if pc is not None else None)
    if got != (code, pc) or r.races:
        raise ValueError(f"random_program(seed={seed}) designed {variant} at pc {pc} but the golden "
                         f"model reports {r.status.error.name} at pc {r.status.error_pc} "
                         f"({r.timing.message}), races {r.races[:3]}")
    return rp


def random_programs(config, seeds, **kwargs):
    """:func:`random_program` for each seed in ``seeds`` (an iterable, or N for 0..N-1)."""
    for seed in range(seeds) if isinstance(seeds, int) else seeds:
        yield random_program(config, seed, **kwargs)


def insert_syncs(config, instructions, segments=()):
    """``instructions`` (a list ending in HALT whose waits all point backwards, so it cannot
    deadlock) with SYNCs inserted until the golden model finds no race and no TOKEN_OVERFLOW.

    Each round runs the executor and puts a SYNC before the later instruction (in program order)
    of the first race, or before the instruction whose completion overflowed a counter (a
    consumer lagging at run time; at most 7 tokens per counter outstanding in program order make
    this converge). Returns a new list.

    Raises
    ------
    ValueError
        If the program ends with another error, or the repairs do not converge.
    """
    prog = list(instructions)
    for _ in range(2 * len(prog) + 10):
        r = run(config, prog, segments)
        if r.races:
            prog.insert(max(r.races[0].first, r.races[0].second), SYNC)
        elif r.status.error == ErrorCode.TOKEN_OVERFLOW:
            prog.insert(r.status.error_pc, SYNC)
        elif r.status.error == ErrorCode.OK:
            return prog
        else:
            raise ValueError(f"program fails with {r.status.error.name}: {r.timing.message}")
    raise ValueError("insert_syncs: repairs did not converge")


# -- the generator -----------------------------------------------------------------------------

def _lcm(*xs):
    out = 1
    for x in xs:
        out = out * x // math.gcd(out, x)
    return out


class _Gen(ErrorGen):
    """Random instruction fields, the DRAM layout and the token bookkeeping of one program."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        g, r, c = cfg.group, cfg.rows, cfg.cols
        # address windows: small, so instructions share words (and need tokens)
        self.win = {Spad.ACT: min(cfg.act_words, max(4 * g, 2 * c)), Spad.WGT: min(cfg.wgt_words, 4 * g),
                    Spad.META: min(cfg.meta_words, 16), Spad.ACC: min(cfg.acc_words, 8 * r)}
        self.recent = {s: [] for s in Spad}  # word addresses recently written, to read back
        self.vec = VecGen(self)  # the vector unit's operands, VPARAM zones, ACC magnitudes
        self.win[Spad.VPARAM] = min(cfg.vparam_words, self.vec.top)
        # most words one DMA moves (keeps programs a few thousand cycles long)
        self.max_n = {Spad.ACT: min(self.win[Spad.ACT], 2 * g), Spad.WGT: min(self.win[Spad.WGT], 2 * g),
                      Spad.META: min(self.win[Spad.META], 8), Spad.ACC: min(self.win[Spad.ACC], 2 * r),
                      Spad.VPARAM: self.win[Spad.VPARAM]}
        self.can_vec, self.can_soft, self.can_norm = self.vec.can_vec, self.vec.can_soft, self.vec.can_norm
        self.stored = []  # (DRAM address, bytes) of the STOREs, for PIM instructions to use
        self.pim = PimGen(self)
        self.can_pim = self.pim.ok
        self._layout()

    def error_kinds(self):
        """The designed errors this configuration can raise (no PIM_RANGE without PIM)."""
        return tuple(k for k in ERROR_KINDS if k != ErrorCode.PIM_RANGE or self.can_pim)

    # -- DRAM layout and contents --------------------------------------------------------------

    def _layout(self):
        cfg, rng = self.cfg, self.rng
        wb = {s: cfg.word_bytes(s) for s in Spad}
        align = _lcm(*wb.values())
        gaps = [int(rng.integers(0, 3)) * cfg.dram_row_bytes  # spread over rows
                for _ in range(len(_LOAD_SPADS) + 1)]
        for factor in (4, 2, 1):
            size = {s: factor * self.win[s] * wb[s] for s in _LOAD_SPADS}
            size["OUT"] = factor * max(self.max_n[s] * wb[s] for s in Spad)
            size = {k: -(-v // align) * align for k, v in size.items()}
            if sum(size.values()) + sum(gaps) + len(size) * align <= cfg.dram_bytes:
                break
        else:
            raise ValueError(f"DRAM ({cfg.dram_bytes} bytes) is too small for a random program")
        self.region, self.segments, at = {}, [], 0
        for (name, n), gap in zip(size.items(), gaps):
            at = -(-(at + gap) // align) * align
            self.region[name] = (at, n)
            self.segments.append(Segment("dram", at, self._contents(name, n)))
            at += n
        kv = self.pim.kv_region(at)  # whole bank rows of PIM data
        if kv is not None:
            self.region["KV"] = kv
            self.segments.append(Segment("dram", kv[0], self._contents("KV", kv[1])))

    def _contents(self, name, n):
        cfg, rng = self.cfg, self.rng
        if name == Spad.ACT and cfg.act_format == "fp16":
            x = rng.normal(size=n // 2) * np.exp2(rng.integers(-4, 8, size=n // 2))
            bits = x.astype(np.float16).view(np.uint16)
            odd = rng.random(n // 2) < 0.005  # inf, NaN, subnormals
            bits[odd] = rng.choice([0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8200], size=int(odd.sum()))
            return bits.astype("<u2").tobytes()
        if name == Spad.VPARAM:
            return self.vec.vparam_bytes(n)
        if name == Spad.ACC:
            return self.vec.acc_bytes(n)
        return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()

    # -- random operands -----------------------------------------------------------------------

    def _int(self, lo, hi):
        """Uniform in lo..hi inclusive."""
        return int(self.rng.integers(lo, hi + 1))

    def _depth(self, spad):
        """Address range: the window, sometimes the whole scratchpad."""
        return self.cfg.spad_words(spad) if self.rng.random() < 0.1 else self.win[spad]

    def _addr(self, spad, hi, lo=0, p=0.6):
        """An address in lo..hi: often one recently written (data flows), else uniform."""
        near = [a for a in self.recent[spad][-4:] if lo <= a <= hi]
        return int(self.rng.choice(near)) if near and self.rng.random() < p else self._int(lo, hi)

    def _wrote(self, spad, addr):
        self.recent[spad].append(addr)
        return addr

    def _count(self, m):
        """A word count in 1..m: often small, sometimes whole groups."""
        x = self.rng.random()
        if x < 0.4:
            return self._int(1, min(4, m))
        if x < 0.6 and m >= self.cfg.group:
            return self.cfg.group * self._int(1, m // self.cfg.group)
        return self._int(1, m)

    def fields(self, op, spad=None):
        """The operands of a random legal ``op``."""
        if op in (Opcode.LOAD, Opcode.STORE):
            return self._dma(op, spad)
        if op in PIM_OPS:
            f = self.pim.fields(op)
            if op == Opcode.PIM_READ:  # sums of int8 products
                self.vec.wrote(Instruction(op, **f), self.vec.S)
            return f
        if op == Opcode.VEC:
            return self.vec.vec()
        if op == Opcode.VSOFT:
            return self.vec.vsoft()
        if op == Opcode.VNORM:
            return self.vec.vnorm()
        return self._gemm()

    def _gemm(self, wsrc=None):
        """A GEMM of 1..4 groups; ``wsrc`` 1 (INT8 weights from ACT words) in a quarter of them
        where the configuration has it."""
        cfg, rng = self.cfg, self.rng
        g = min(1 + int(rng.choice(4, p=[0.6, 0.3, 0.05, 0.05])), self.win[Spad.META],
                self.win[Spad.ACT] // cfg.group, self.win[Spad.WGT] // cfg.group)
        k = g * cfg.group
        if wsrc is None:
            wsrc = int(self.vec.can_wsrc and rng.random() < 0.25)
        f = dict(act_addr=self._addr(Spad.ACT, self._depth(Spad.ACT) - k),
                 wgt_addr=self._addr(Spad.ACT if wsrc else Spad.WGT,
                                     self._depth(Spad.ACT if wsrc else Spad.WGT) - k),
                 meta_addr=0 if wsrc else self._addr(Spad.META, self._depth(Spad.META) - g),
                 acc_addr=self._wrote(Spad.ACC, self._addr(Spad.ACC, self._depth(Spad.ACC) - cfg.rows)),
                 groups=g, accumulate=self._int(0, 1), wsrc=wsrc)
        self.vec.wrote_acc(f["acc_addr"], cfg.rows, self.vec.W if wsrc else self.vec.G,
                           add=bool(f["accumulate"]))
        return f

    def _dma(self, op, spad=None):
        cfg, rng = self.cfg, self.rng
        if spad is None:
            spad = (Spad(rng.choice(_LOAD_SPADS, p=_LOAD_P)) if op == Opcode.LOAD
                    else _STORE_SPADS[self._int(0, len(_STORE_SPADS) - 1)])
        wb = cfg.word_bytes(spad)
        lo, hi = 0, self._depth(spad)
        if spad == Spad.VPARAM:  # the GELU table, the token words, the column words, or anywhere
            lo, hi = ((0, VPARAM_LUT_WORDS), (VPARAM_LUT_WORDS, cfg.vparam_param_base),
                      (cfg.vparam_param_base, hi), (0, hi))[self._int(0, 3)]
        m = min(self.max_n[spad], hi - lo)
        w = self._count(m)
        r = self._int(1, min(4, m // w))
        n = r * w
        spad_addr = self._addr(spad, hi - n, lo)
        if op == Opcode.LOAD:
            self._wrote(spad, spad_addr)
        if r == 1:
            step = (0, w, self._int(0, 3 * w))[self._int(0, 2)]
        else:  # 0: every row at one address; < w: rows overlap; w: contiguous; > w: a gap
            step = (0, self._int(1, max(w - 1, 1)), w, w + self._int(1, 8))[
                int(rng.choice(4, p=[0.15, 0.2, 0.4, 0.25]))]
        # own region, the OUT region, or the KV rows PIM instructions use (not VPARAM words)
        x, kv = rng.random(), "KV" in self.region and spad != Spad.VPARAM
        if op == Opcode.LOAD:
            name = spad if x < 0.85 else "KV" if kv and x < 0.93 else "OUT"
        else:
            name = spad if spad == Spad.ACT and x < 0.2 else "KV" if kv and x < 0.35 else "OUT"
        base, size = self.region[name]
        first = -base % wb  # the KV rows need not be aligned to the word size
        span = (r - 1) * step * wb + w * wb
        if span > size - first:
            step, span = w, n * wb
        off = first + wb * self._int(0, (size - first - span) // wb)
        if name == Spad.VPARAM and rng.random() < 0.7 and 4 * spad_addr + span <= size:
            off = 4 * spad_addr  # VPARAM words from their own place in the region
        addr = base + off
        if kv and self.pim.touched and rng.random() < 0.25:  # bytes a PIM_WRITE / GEMV used
            a = self.pim.touched[-self._int(1, min(4, len(self.pim.touched)))]
            if a - a % wb + span <= cfg.dram_bytes:
                addr = a - a % wb
        if op == Opcode.STORE:
            self.stored.append((addr, span))
        elif spad == Spad.ACC:  # ACC values of the ACC region, or (from elsewhere) of any size
            self.vec.wrote_acc(spad_addr, n, self.vec.L if name == Spad.ACC else self.vec.G)
        return dict(spad=spad, spad_addr=spad_addr, dram_addr=addr, words=w, rows=r, stride=step * wb)

    # -- valid bodies with tokens --------------------------------------------------------------

    def valid_body(self, n):
        """``n`` random instructions (no HALT) with tokens; with HALT they run OK, race-free."""
        prog = insert_syncs(self.cfg, self._tokens(self._draw(n)) + [HALT], self.segments)
        return prog[:-1]

    def _draw(self, n):
        """``n`` random ``(op, fields)``; None fields for NOP/SYNC."""
        rng = self.rng
        # PIM_GBUF stands for a PIM instruction, chosen by the PIM generator
        ops = [Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.VEC, Opcode.PIM_GBUF, Opcode.NOP,
               Opcode.SYNC]
        p = np.array([0.32, 0.12, 0.24, 0.22 if self.can_vec or self.can_soft else 0,
                      0.24 if self.can_pim else 0, 0.06, 0.04])
        out = []
        # usually a prologue: the GELU table, token and column words, then data for the GEMMs
        # (and, mostly on FP16 configurations, ACC values that VNORM does not saturate)
        acc = 0.6 if self.vec.fp16 else 0.25
        for spad, prob in ((Spad.VPARAM, 0.9), (Spad.META, 0.9), (Spad.WGT, 0.8), (Spad.ACT, 0.8),
                           (Spad.ACC, acc)):
            if len(out) < n and rng.random() < prob:
                w = self.win[spad]  # the whole window
                f = dict(spad=spad, spad_addr=self._wrote(spad, 0), dram_addr=self.region[spad][0],
                         words=w, rows=1, stride=0)
                if spad == Spad.ACC:
                    self.vec.wrote_acc(0, w, self.vec.L)
                out.append((Opcode.LOAD, f))
        while len(out) < n:
            op = Opcode(rng.choice(ops, p=p / p.sum()))
            if len(out) < 3 and rng.random() < 0.5:
                op = Opcode.LOAD  # programs usually start by loading data
            if op == Opcode.VEC and not self.recent[Spad.ACC] and rng.random() < 0.8:
                op = Opcode.GEMM  # mostly a GEMM result to work on
            if op == Opcode.PIM_GBUF:
                op = self.pim.op()
            if op == Opcode.VEC:
                op = self._vec_op()
            pending = [o for o, plan in ((Opcode.VSOFT, self.vec.soft_plan),
                                         (Opcode.VNORM, self.vec.norm_plan)) if plan]
            if pending and rng.random() < 0.1:  # go on with a softmax row or a norm
                op = pending[self._int(0, len(pending) - 1)]
            out.append((op, None if op in (Opcode.NOP, Opcode.SYNC) else self.fields(op)))
        return out

    def _tokens(self, drawn):
        """Instructions with the tokens of the compiler's token pass, plus random extra
        dependencies (module doc), as a list."""
        cfg, rng = self.cfg, self.rng
        planner = TokenPlanner(cfg)
        latest = {}  # latest pc of each unit
        insts = []
        for op, f in drawn:
            if f is None:
                planner.sync() if op == Opcode.SYNC else planner.nop()
                insts.append(Instruction(op))
                continue
            inst = Instruction(op, **f)
            u = inst.unit
            after = {}
            if rng.random() < 0.15:  # a random extra dependency on another unit
                s = Unit(int(rng.choice([x for x in QUEUED_UNITS if x != u])))
                if s in latest:
                    after[s] = latest[s]
            fp = footprint(cfg, inst, dram=u in DRAM_UNITS)
            latest[u] = planner.add(u, fp.spads, dram=fp.dram, after=after)
            insts.append(inst)
        return [i if i.unit is None else i.with_tokens(planner.waits[pc], planner.signals[pc])
                for pc, i in enumerate(insts)]

    def _vec_op(self):
        """VEC, VSOFT or VNORM (0.5, 0.25, 0.25; VSOFT and VNORM 0.35 while a row or a norm
        goes on)."""
        v = self.vec
        w = np.array([0.5 * self.can_vec, (0.25 + 0.1 * bool(v.soft_plan)) * self.can_soft,
                      (0.25 + 0.1 * bool(v.norm_plan)) * self.can_norm])
        return (Opcode.VEC, Opcode.VSOFT, Opcode.VNORM)[int(self.rng.choice(3, p=w / w.sum()))]

    def _unit_inst(self, unit, **tokens):
        ops = [op for op in _UNIT_OPS[unit] if self._usable(op)]
        op = ops[self._int(0, len(ops) - 1)]
        return Instruction(op, **tokens, **self.fields(op))

    def _units(self):
        return [u for u in QUEUED_UNITS if (u != Unit.VEC or self.can_vec)
                and (u != Unit.PIM or self.can_pim)]

    def _usable(self, op):
        """Whether ``op``'s operands can be drawn (VEC needs an ACT scratchpad of a whole
        output); PIM instructions are drawn on every configuration with a PIM unit (raw words,
        FP16 errors)."""
        return op in DRAWN_OPS and (op != Opcode.VEC or self.can_vec) and (
            op != Opcode.VSOFT or self.can_soft) and (op != Opcode.VNORM or self.can_norm) and (
            op not in PIM_OPS or self.cfg.pim_unit)


# -- summary -----------------------------------------------------------------------------------

def summary(config, seeds, **kwargs):
    """A text summary of the programs for ``seeds``: instruction and error mix, golden cycles."""
    ops, funcs, spads, errors, strides, pim, vec = (Counter() for _ in range(7))
    cycles, overlap, lengths = [], 0, []
    progs = list(random_programs(config, seeds, **kwargs))
    for rp in progs:
        r = rp.run()
        errors[rp.expected_error.name] += 1
        lengths.append(len(rp.instructions))
        cycles.append(r.status.cycles)
        overlap += dma_gemm_overlap(r)
        for i in rp.instructions:
            if isinstance(i, int):
                ops["raw word"] += 1
                continue
            ops[i.op.name] += 1
            if i.op == Opcode.VEC:
                funcs[i.func.name] += 1
            pim.update(pim_features(i))
            vec.update(vec_features(i))
            if i.op in (Opcode.LOAD, Opcode.STORE):
                spads[f"{i.op.name} {i.spad.name}"] += 1
                if i.rows > 1:
                    row = i.words * config.word_bytes(i.spad)
                    strides["0" if i.stride == 0 else "< row" if i.stride < row else
                            "= row" if i.stride == row else "> row"] += 1

    def line(title, counter):
        return f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))

    n = len(progs)
    return "\n".join([
        f"{n} random programs on {config.rows}x{config.cols} {config.pe}, group {config.group}, "
        f"PIM {config.pim_mode}: {sum(lengths)} instructions, length mean {np.mean(lengths):.1f} "
        f"max {max(lengths)}",
        line("opcodes", ops), line("VEC funcs", funcs), line("vector unit", vec), line("PIM", pim),
        line("DMA spads", spads),
        line("multi-row strides", strides), line("designed errors", errors),
        f"variants: {len({rp.variant for rp in progs})} distinct",
        f"golden cycles: mean {np.mean(cycles):.0f}, max {max(cycles)}",
        f"DMA and GEMM overlap in {overlap} of {n} programs"])


def bad_field_kinds(config):
    """The ``BAD_FIELD`` variants the generator designs on ``config``
    (:data:`~.random_errors.BAD_FIELD_KINDS` less those the configuration cannot express)."""
    return set(_Gen(config, np.random.default_rng(0)).bad_field_kinds())


def dma_gemm_overlap(result):
    """Whether some DMA instruction executed while a GEMM was busy (start..end cycles)."""
    t = result.timing
    spans = {Unit.DMA: [], Unit.GEMM: []}
    for pc in t.executed:
        inst = t.instructions[pc]
        if inst.unit in spans:
            spans[inst.unit].append((int(t.start[pc]), int(t.end[pc])))
    return any(a <= d and c <= b for a, b in spans[Unit.DMA] for c, d in spans[Unit.GEMM])


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(summary(preset(sys.argv[2] if len(sys.argv) > 2 else "tiny"), count))
