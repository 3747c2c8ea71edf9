"""Instruction emission with automatic dependency tokens.

:class:`Emitter` collects instructions in program order together with the scratchpad words each
one reads and writes. Every new instruction is checked against the *latest* earlier instruction of
every other unit that touches a common word (RAW, WAR and WAW); for each such unit it waits on that
instruction, and that instruction signals the waiting unit. Because every unit completes its
instructions in program order (docs/tile.md: one at a time; a GEMM's drain has a fixed length),
a token from instruction p of unit U implies that every earlier instruction of U is done, so:

* a wait is only added when p is later than the last instruction of U this unit already waited
  on (``known[U][V]``), and
* the k-th token a unit V takes from U is the k-th token U gives V (positional pairing), which
  holds because the waits of V are added in V's program order on increasing U instructions.

All dependencies point backwards in program order, so the in-order dispatcher can never deadlock.
DRAM is touched by the DMA unit alone, which runs in order: DRAM needs no tokens.

**Token counters never overflow** (3 bits, at most 7 tokens in flight from U to V), whatever the
timing: the n-th token U gives V (from instruction ``G_n``) must not complete before the taker of
the (n - 7)-th token, ``T_{n-7}``, has started. The emitter proves this statically for every new
pair: either ``G_n`` (or an earlier instruction of U) waited on an instruction of V at or after
``T_{n-7}``, or at least ``queue_depth`` instructions of V lie between ``T_{n-7}`` and ``G_n`` in
program order (the in-order dispatcher cannot reach ``G_n`` before ``T_{n-7}`` has left V's full
queue). When neither holds, the waiter waits on the first later instruction of U for which one
does (still correct: U completes in order). Pairs for which there is none are recorded and
:meth:`program` runs the cycle model once to check them (timing is exact and independent of data,
so a clean run is a proof for that configuration; an overflow raises :class:`CompileError`).
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from mixpim.models.errors import MixpimError
from mixpim.models.isa import Instruction, Opcode, Spad, Unit, UnitMask, VecFunc
from mixpim.models.program import Program
from mixpim.models.tile_timing import TOKEN_MAX

__all__ = ["CompileError", "Emitter"]

_UNIT_OF = {Opcode.LOAD: Unit.DMA, Opcode.STORE: Unit.DMA, Opcode.GEMM: Unit.GEMM, Opcode.VEC: Unit.VEC}
_MASK = {Unit.DMA: UnitMask.DMA, Unit.GEMM: UnitMask.GEMM, Unit.VEC: UnitMask.VEC}
_SPACES = ("ACT", "WGT", "META", "ACC", "VPARAM")
_NU = 3  # units with instructions (DMA, GEMM, VEC)


class CompileError(MixpimError, ValueError):
    """A layer does not fit the tile configuration (the message says what and why)."""


@dataclass
class _Rec:
    opcode: Opcode
    fields: dict
    unit: Unit
    wait: int = 0
    signal: int = 0
    comment: str = ""
    dep: tuple = ()  # dep[src]: latest src pc this unit had waited on, up to this instruction


@dataclass
class Emitter:
    """Collects instructions and inserts dependency tokens (see the module doc)."""

    config: object
    recs: list = field(default_factory=list)

    def __post_init__(self):
        cfg = self.config
        # last_r/last_w[space][unit, word]: pc of the latest instruction of that unit that read /
        # wrote the word (-1: none)
        self._last_r = {s: np.full((_NU, cfg.spad_words(s)), -1, np.int64) for s in _SPACES}
        self._last_w = {s: np.full((_NU, cfg.spad_words(s)), -1, np.int64) for s in _SPACES}
        self._known = np.full((_NU, _NU), -1, np.int64)  # known[src, dst]: latest src pc dst waited on
        self._pcs = [[] for _ in range(_NU)]  # program counters of each unit's instructions
        self._takers = {(s, d): [] for s in range(_NU) for d in range(_NU) if s != d}
        self.unproven = []  # (pc, src, dst) of token pairs the static argument could not cover

    # -- token-overflow guard ------------------------------------------------------------------

    def _safe_giver(self, src, dst, p, pc):
        """The first instruction of unit ``src`` at or after ``p`` (and before ``pc``) that may give
        ``dst`` its next token without any timing letting the counter exceed 7 (module doc)."""
        takers = self._takers[(src, dst)]
        n = len(takers)  # the new token is the (n + 1)-th
        if n < TOKEN_MAX:
            return p
        t = takers[n - TOKEN_MAX]  # T_{n+1-7}: must have started before the giver completes
        depth = self.config.queue_depth
        dpcs = self._pcs[dst]
        spcs = self._pcs[src]
        for q in spcs[bisect_left(spcs, p):]:
            if q >= pc:
                break
            if self.recs[q].dep[dst] >= t:
                return q
            if bisect_left(dpcs, q) - bisect_right(dpcs, t) >= depth:
                return q
        self.unproven.append((pc, src, dst))
        return p

    def emit(self, opcode, *, reads=(), writes=(), fence=(), comment="", **fields):
        """Append one unit instruction; ``reads``/``writes`` are ``(space, first word, words)``.
        ``fence``: words the instruction is ordered after as if it wrote them, without recording an
        access (one wait covering buffers that later instructions will write)."""
        unit = _UNIT_OF[opcode]
        pc = len(self.recs)
        need = np.full(_NU, -1, np.int64)
        for space, lo, n in tuple(writes) + tuple(fence):
            need = np.maximum(need, self._last_w[space][:, lo:lo + n].max(axis=1))
            need = np.maximum(need, self._last_r[space][:, lo:lo + n].max(axis=1))
        for space, lo, n in reads:
            need = np.maximum(need, self._last_w[space][:, lo:lo + n].max(axis=1))
        rec = _Rec(opcode, fields, unit, comment=comment)
        for src in range(_NU):
            if src == unit:
                continue
            p = int(need[src])
            if p > self._known[src, unit]:
                p = self._safe_giver(src, unit, p, pc)
                self._known[src, unit] = p
                self._takers[(src, unit)].append(pc)
                rec.wait |= _MASK[Unit(src)]
                self.recs[p].signal |= _MASK[unit]
        rec.dep = tuple(int(v) for v in self._known[:, unit])
        for space, lo, n in reads:
            self._last_r[space][unit, lo:lo + n] = pc
        for space, lo, n in writes:
            self._last_w[space][unit, lo:lo + n] = pc
        self.recs.append(rec)
        self._pcs[unit].append(pc)
        return pc

    # -- helpers for the four unit instructions -------------------------------------------------

    def load(self, spad, spad_addr, dram_addr, words, *, rows=1, stride=0, comment=""):
        name = Spad(spad).name
        return self.emit(Opcode.LOAD, writes=[(name, spad_addr, rows * words)], comment=comment,
                         spad=spad, spad_addr=spad_addr, dram_addr=dram_addr, words=words, rows=rows,
                         stride=stride)

    def store(self, spad, spad_addr, dram_addr, words, *, rows=1, stride=0, comment=""):
        name = Spad(spad).name
        return self.emit(Opcode.STORE, reads=[(name, spad_addr, rows * words)], comment=comment,
                         spad=spad, spad_addr=spad_addr, dram_addr=dram_addr, words=words, rows=rows,
                         stride=stride)

    def gemm(self, act_addr, wgt_addr, meta_addr, acc_addr, groups, accumulate=0, comment="", fence=()):
        cfg = self.config
        beats = groups * cfg.group
        reads = [("ACT", act_addr, beats), ("WGT", wgt_addr, beats), ("META", meta_addr, groups)]
        return self.emit(Opcode.GEMM, reads=reads, writes=[("ACC", acc_addr, cfg.rows)], fence=fence,
                         comment=comment,
                         act_addr=act_addr, wgt_addr=wgt_addr, meta_addr=meta_addr, acc_addr=acc_addr,
                         groups=groups, accumulate=accumulate)

    def vec(self, func, acc_addr, act_addr, param_addr, rows, *, res_addr=0, comment=""):
        """A VEC; it reads ``rows`` ACC words, the column and token multipliers, the GELU table
        (GELU only) and the residual words (ADD only)."""
        cfg = self.config
        reads = [("ACC", acc_addr, rows), ("VPARAM", param_addr, cfg.cols),
                 ("VPARAM", cfg.vparam_token_base, rows)]
        if int(func) == VecFunc.GELU:
            reads.append(("VPARAM", 0, cfg.vparam_token_base))
        if int(func) == VecFunc.ADD:
            reads.append(("ACT", res_addr, cfg.cols))
        return self.emit(Opcode.VEC, reads=reads, writes=[("ACT", act_addr, cfg.cols)], comment=comment,
                         func=func, acc_addr=acc_addr, act_addr=act_addr, res_addr=res_addr,
                         param_addr=param_addr, rows=rows)

    # -- output --------------------------------------------------------------------------------

    def instructions(self):
        ins = [Instruction(r.opcode, wait=r.wait, signal=r.signal, **r.fields) for r in self.recs]
        return ins + [Instruction(Opcode.HALT)]

    def verify_tokens(self):
        """When some token pair escaped the static argument (module doc), run the cycle model once:
        timing is exact and data-independent, so a clean run proves the counters stay within 3
        bits on this configuration. Raises :class:`CompileError` on ``TOKEN_OVERFLOW``."""
        if not self.unproven:
            return
        from mixpim.models.isa import ErrorCode
        from mixpim.models.tile_timing import simulate
        t = simulate(self.config, self.instructions())
        if t.error == ErrorCode.TOKEN_OVERFLOW:
            raise CompileError(f"internal: token counter overflow at pc {t.error_pc}: {t.message}")
        self.unproven = []

    def program(self, segments=(), symbols=None):
        self.verify_tokens()
        comments = {pc: r.comment for pc, r in enumerate(self.recs) if r.comment}
        return Program(self.config, self.instructions(), list(segments), symbols=dict(symbols or {}),
                       comments=comments)
