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
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.isa import Instruction, Opcode, Spad, Unit, UnitMask
from mixpim.models.program import Program

__all__ = ["Emitter"]

_UNIT_OF = {Opcode.LOAD: Unit.DMA, Opcode.STORE: Unit.DMA, Opcode.GEMM: Unit.GEMM, Opcode.VEC: Unit.VEC}
_MASK = {Unit.DMA: UnitMask.DMA, Unit.GEMM: UnitMask.GEMM, Unit.VEC: UnitMask.VEC}
_SPACES = ("ACT", "WGT", "META", "ACC", "VPARAM")


@dataclass
class _Rec:
    opcode: Opcode
    fields: dict
    unit: Unit
    wait: int = 0
    signal: int = 0
    comment: str = ""


@dataclass
class Emitter:
    """Collects instructions and inserts dependency tokens (see the module doc)."""

    config: object
    recs: list = field(default_factory=list)

    def __post_init__(self):
        cfg = self.config
        # last_r/last_w[space][unit, word]: pc of the latest instruction of that unit that read /
        # wrote the word (-1: none)
        self._last_r = {s: np.full((3, cfg.spad_words(s)), -1, np.int64) for s in _SPACES}
        self._last_w = {s: np.full((3, cfg.spad_words(s)), -1, np.int64) for s in _SPACES}
        self._known = np.full((3, 3), -1, np.int64)  # known[src, dst]: latest src pc dst waited on

    def emit(self, opcode, *, reads=(), writes=(), comment="", **fields):
        """Append one unit instruction; ``reads``/``writes`` are ``(space, first word, words)``."""
        unit = _UNIT_OF[opcode]
        pc = len(self.recs)
        need = np.full(3, -1, np.int64)
        for space, lo, n in writes:
            need = np.maximum(need, self._last_w[space][:, lo:lo + n].max(axis=1))
            need = np.maximum(need, self._last_r[space][:, lo:lo + n].max(axis=1))
        for space, lo, n in reads:
            need = np.maximum(need, self._last_w[space][:, lo:lo + n].max(axis=1))
        rec = _Rec(opcode, fields, unit, comment=comment)
        for src in range(3):
            if src == unit:
                continue
            p = int(need[src])
            if p > self._known[src, unit]:
                self._known[src, unit] = p
                rec.wait |= _MASK[Unit(src)]
                self.recs[p].signal |= _MASK[unit]
        for space, lo, n in reads:
            self._last_r[space][unit, lo:lo + n] = pc
        for space, lo, n in writes:
            self._last_w[space][unit, lo:lo + n] = pc
        self.recs.append(rec)
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

    def gemm(self, act_addr, wgt_addr, meta_addr, acc_addr, groups, accumulate=0, comment=""):
        cfg = self.config
        beats = groups * cfg.group
        reads = [("ACT", act_addr, beats), ("WGT", wgt_addr, beats), ("META", meta_addr, groups)]
        return self.emit(Opcode.GEMM, reads=reads, writes=[("ACC", acc_addr, cfg.rows)], comment=comment,
                         act_addr=act_addr, wgt_addr=wgt_addr, meta_addr=meta_addr, acc_addr=acc_addr,
                         groups=groups, accumulate=accumulate)

    def vec(self, func, acc_addr, act_addr, param_addr, rows, *, res_addr=0, comment=""):
        cfg = self.config
        reads = [("ACC", acc_addr, rows), ("VPARAM", param_addr, cfg.cols),
                 ("VPARAM", 0, cfg.vparam_param_base)]
        if int(func) == 3:  # ADD reads its residual
            reads.append(("ACT", res_addr, cfg.cols))
        return self.emit(Opcode.VEC, reads=reads, writes=[("ACT", act_addr, cfg.cols)], comment=comment,
                         func=func, acc_addr=acc_addr, act_addr=act_addr, res_addr=res_addr,
                         param_addr=param_addr, rows=rows)

    # -- output --------------------------------------------------------------------------------

    def instructions(self):
        ins = [Instruction(r.opcode, wait=r.wait, signal=r.signal, **r.fields) for r in self.recs]
        return ins + [Instruction(Opcode.HALT)]

    def program(self, segments=(), symbols=None):
        comments = {pc: r.comment for pc, r in enumerate(self.recs) if r.comment}
        return Program(self.config, self.instructions(), list(segments), symbols=dict(symbols or {}),
                       comments=comments)
