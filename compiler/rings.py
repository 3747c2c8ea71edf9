"""Scratchpad buffers of the scheduler: :class:`Piece` (a contiguous buffer), :class:`Load` (a
queued LOAD filling part of one), :class:`Transfer` (the operands of one LOAD or STORE) and
:class:`Ring` (round-robin allocation of pieces in a range of one scratchpad)."""

from dataclasses import dataclass
from typing import NamedTuple

from mixpim.models.units import Spad

__all__ = ["SPACES", "Piece", "PieceRef", "Transfer", "Load", "Fit", "Ring"]

#: The scratchpad of each space a ring allocates in: the operand scratchpads, ``"OUT"`` (VEC
#: outputs at the top of ACT) and ``"HDR"`` (the GELU table and token multipliers in VPARAM).
SPACES = {**{s.name: s for s in Spad}, "OUT": Spad.ACT, "HDR": Spad.VPARAM}


class Piece:
    """A contiguous scratchpad buffer filled by zero or more LOADs; ``last``: the last step
    (GEMM) using it; ``free``: every user emitted, ``free_at``: estimated cycle its last user
    completes (a new occupant of its words starts after that); ``uses``: users not yet emitted
    (ACC tiles and column multipliers, released one by one)."""

    __slots__ = ("space", "words", "loads", "last", "addr", "free", "free_at", "uses")

    def __init__(self, space, words):
        self.space, self.words = space, words
        self.loads = []
        self.last = -1
        self.addr = None
        self.free = False
        self.free_at = 0
        self.uses = 0

    @property
    def spad(self):
        return SPACES[self.space]

    def release(self, done):
        """One user, completing (estimated) at cycle ``done``, is emitted; the last frees it."""
        self.uses -= 1
        self.free_at = max(self.free_at, done)
        if self.uses == 0:
            self.free = True


class PieceRef(NamedTuple):
    """Words ``off`` onwards of ``piece``."""
    piece: Piece
    off: int


@dataclass(frozen=True)
class Transfer:
    """The operands of one LOAD (``load``) or STORE: ``rows`` rows of ``words`` scratchpad words
    from ``spad_addr`` on, at DRAM ``dram + r * stride``."""
    load: bool
    spad: Spad
    spad_addr: int
    dram: int
    words: int
    rows: int
    stride: int
    comment: str

    def row_bytes(self, cfg):
        """DRAM bytes of one row."""
        return self.words * cfg.word_bytes(self.spad)


class Load:
    """One queued LOAD of a piece: needed by step ``need``; ``off`` words into the piece."""

    __slots__ = ("piece", "need", "off", "dram", "words", "rows", "stride", "comment", "done")

    def __init__(self, piece, need, off, dram, words, rows, stride, comment):
        self.piece, self.need, self.off, self.dram = piece, need, off, dram
        self.words, self.rows, self.stride, self.comment = words, rows, stride, comment
        self.done = None  # estimated completion cycle once emitted

    def transfer(self):
        """Its :class:`Transfer` (once the piece has its words)."""
        p = self.piece
        return Transfer(True, p.spad, p.addr + self.off, self.dram, self.words, self.rows,
                        self.stride, self.comment)


class Fit(NamedTuple):
    """Where a ring's next piece goes: word ``pos``, taking the words of the free pieces ``way``."""
    pos: int
    way: list


class Ring:
    """Round-robin allocation of contiguous pieces in words ``[lo, hi)`` of one scratchpad. A
    piece may take the words of pieces that are free (the emitter orders the new writes after
    their last readers)."""

    def __init__(self, lo, hi):
        self.lo, self.hi, self.head = lo, hi, lo
        self.live = []

    def fit(self, words):
        """The :class:`Fit` of the next allocation of ``words`` words, or None while one of the
        pieces in the way is still in use (or the ring is too small)."""
        if words > self.hi - self.lo:
            return None
        pos = self.head if self.head + words <= self.hi else self.lo
        way = [p for p in self.live if p.addr < pos + words and pos < p.addr + p.words]
        if any(not p.free for p in way):
            return None
        return Fit(pos, way)

    def commit(self, piece, fit):
        """Give ``piece`` the words of ``fit`` (a :meth:`fit` result)."""
        piece.addr = fit.pos
        self.head = fit.pos + piece.words
        self.live = [p for p in self.live if p not in fit.way] + [piece]
