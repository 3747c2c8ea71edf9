"""Dependency tokens: the one algorithm that orders conflicting accesses of different units.

:class:`TokenPlanner` sees a program's instructions in program order, each with its scratchpad
footprint (:func:`mixpim.models.footprint.footprint`). Every new instruction is checked against the
*latest* earlier instruction of every other unit that touches a common word (RAW, WAR and WAW);
for each such unit it waits on that instruction, and that instruction signals the waiting unit.
Because every unit completes its instructions in program order (docs/tile.md: one at a time; a
GEMM's drain has a fixed length), a token from instruction p of unit U implies that every earlier
instruction of U is done, so:

* a wait is only added when p is later than the last instruction of U this unit already waited
  on (``known[U][V]``), directly or through another unit: when V waits on instruction q of W, it
  also knows everything W knew when q was planned (q started after its own waits were met), and
* the k-th token a unit V takes from U is the k-th token U gives V (positional pairing), which
  holds because the waits of V are added in V's program order on increasing U instructions.

All dependencies point backwards in program order, so the in-order dispatcher can never deadlock.
A SYNC (:meth:`TokenPlanner.sync`) completes everything before it, so nothing after it waits on
an earlier instruction. DRAM accesses (of :data:`~mixpim.models.units.DRAM_UNITS`) are tracked
the same way at the granularity of a *row group*: bank row ``r`` of every channel and bank (the
``channels * banks * row_bytes`` bytes from ``r * channels * banks * row_bytes``), each access
covering the row groups from its lowest to its highest byte (neighbouring bank rows share a group
when a DRAM has more than ``_MAX_GROUPS`` rows per bank); coarse (it may order two accesses that
do not share a byte), never missing a conflict, and small enough for any DRAM.

**Token counters never overflow** (at most ``TOKEN_MAX`` tokens in flight from U to V), whatever
the timing: the n-th token U gives V (from instruction ``G_n``) must not complete before the taker
of the (n - TOKEN_MAX)-th token, ``T``, has started. The planner proves this statically for every
new pair: ``G_n`` (or an earlier instruction of U) waited on an instruction of V at or after
``T``, or at least ``queue_depth`` instructions of V lie between ``T`` and ``G_n`` in program order
(the in-order dispatcher cannot reach ``G_n`` before ``T`` has left V's full queue), or a SYNC lies
between them. When none holds, the waiter waits on the first later instruction of U for which
one does (still correct: U completes in order). Pairs for which there is none are listed in
:attr:`TokenPlanner.unproven`; the caller checks them on the cycle model (timing is exact and
independent of data, so a clean run is a proof for that configuration). Should that run overflow,
the caller plans the program again with ``strict=True``: an instruction that would take such a
token is preceded by a SYNC instead (after it, every counter is zero and no wait is needed).
"""

import functools
from bisect import bisect_left, bisect_right
from typing import NamedTuple

import numpy as np

from mixpim.models.units import TOKEN_MAX, Spad, Unit

__all__ = ["TokenPlanner"]


class _Run(NamedTuple):
    """Words (or DRAM row groups) ``first .. end - 1`` of ``spad`` (a Spad, or ``"dram"``)."""
    spad: object
    first: int
    end: int
    write: bool

_UNITS = tuple(Unit)
_UNIT_OF = {u: u for u in Unit}  # Unit(u) for the units and their values (a dict look-up)
_WRITE, _READ = 0, 1  # the kinds of TokenPlanner._last
#: Most DRAM row groups tracked (larger DRAMs merge neighbouring bank rows into one group).
_MAX_GROUPS = 1 << 16


class TokenPlanner:
    """Token masks for a program built in program order (see the module doc).

    Arguments
    ---------
    config : TileConfig
        Scratchpad depths and the queue depth.

    Members
    -------
    waits, signals : list of int
        The ``wait`` / ``signal`` mask of every pc so far (a signal bit is added when a later
        instruction waits on this one).
    unproven : list of (pc, src, dst)
        Token pairs the static overflow argument could not cover (never with ``strict``).
    strict : bool
        Put a SYNC before an instruction that would take an unproven token (:meth:`add` then
        returns a pc past the SYNCs it planned).
    """

    def __init__(self, config, *, strict=False):
        self.config = config
        self.strict = strict
        nu = len(Unit)
        # last[spad][kind, unit, word]: pc of the latest instruction of that unit that wrote
        # (kind _WRITE) / read (kind _READ) the word (-1: none)
        self._last = {s: np.full((2, nu, config.spad_words(s)), -1, np.int64) for s in Spad}
        # the same per DRAM row group (module doc), keyed "dram"; at most _MAX_GROUPS of them
        per = -(-config.dram_rows // _MAX_GROUPS)
        groups = -(-config.dram_rows // per)
        self._last["dram"] = np.full((2, nu, groups), -1, np.int64)
        self._group_bytes = per * config.dram_channels * config.dram_banks * config.dram_row_bytes
        # known[dst][src]: the latest pc of src that dst waited on (directly or through another unit)
        self._known = [[-1] * nu for _ in Unit]
        self._pcs = [[] for _ in Unit]  # program counters of each unit's instructions
        self._takers = {(s, d): [] for s in Unit for d in Unit if s != d}
        self._dep = []  # per pc: known[:, unit] after it (None for dispatcher instructions)
        self._syncs = []  # pcs of the SYNCs
        self.waits, self.signals = [], []
        self.unproven = []

    @property
    def pc(self):
        """The pc the next instruction gets."""
        return len(self.waits)

    def _barrier(self):
        return self._syncs[-1] if self._syncs else -1

    def _safe_giver(self, src, dst, p, pc):
        """The first instruction of unit ``src`` at or after ``p`` (and before ``pc``) that may give
        ``dst`` its next token without any timing letting the counter overflow (module doc)."""
        takers = self._takers[(src, dst)]
        n = len(takers)  # the new token is the (n + 1)-th
        if n < TOKEN_MAX:
            return p
        t = takers[n - TOKEN_MAX]  # must have started before the giver completes
        depth = self.config.queue_depth
        dpcs = self._pcs[dst]
        spcs = self._pcs[src]
        i = bisect_right(self._syncs, t)
        sync_after_t = self._syncs[i] if i < len(self._syncs) else pc  # first SYNC after t
        for q in spcs[bisect_left(spcs, p):]:
            if q >= pc:
                break
            if sync_after_t < q or self._dep[q][dst] >= t:
                return q
            if bisect_left(dpcs, q) - bisect_right(dpcs, t) >= depth:
                return q
        return None

    def _needs_sync(self, unit, need, pc):
        """Whether (``strict``) some wait of the instruction at ``pc`` has no provable giver: the
        loop of :meth:`add` on a copy of what ``unit`` knows."""
        known, barrier = list(self._known[unit]), self._barrier()
        for src, p in zip(_UNITS, need.tolist()):
            if src != unit and p > max(known[src], barrier):
                g = self._safe_giver(src, unit, p, pc)
                if g is None:
                    return True
                known[src] = g
                self._inherit(known, unit, g)
        return False

    def _inherit(self, known, unit, p):
        """``known`` (what ``unit`` knows) after a wait on ``p``: what p's unit knew when p was
        planned holds once p is done (transitivity)."""
        for v, q in enumerate(self._dep[p]):
            if v != unit and q > known[v]:
                known[v] = q

    def _dram_runs(self, dram):
        """The row-group run of a :class:`~mixpim.models.footprint.DramAccess` as an access."""
        gb = self._group_bytes
        lo = int(dram.starts.min()) // gb
        hi = (int(dram.starts.max()) + dram.length - 1) // gb + 1
        return _Run("dram", lo, hi, dram.write)

    def add(self, unit, accesses, *, dram=None, fence=(), after=None):
        """Plan the tokens of the next instruction and return its pc.

        Arguments
        ---------
        unit : Unit
            The unit that executes it.
        accesses : iterable of SpadAccess
            Its scratchpad footprint.
        dram : DramAccess, optional
            Its DRAM bytes (LOAD, STORE, PIM_WRITE, PIM_GEMV).
        fence : iterable of SpadAccess
            Words it is ordered after as if it wrote them, without recording an access (one wait
            covering buffers that later instructions will write).
        after : dict Unit -> pc, optional
            Extra dependencies: wait for (at least) these instructions of other units.
        """
        unit = _UNIT_OF[unit] if unit in _UNIT_OF else Unit(unit)
        pc = len(self.waits)
        accesses = list(accesses)  # each with spad, first, end and write, as a _Run
        if dram is not None:
            accesses.append(self._dram_runs(dram))
        # per unit, the latest pc that wrote a word this instruction touches, or read one it writes
        # (RAW, WAR, WAW); a fence counts as a write
        last, top = self._last, np.maximum.reduce
        seen = [top(last[a.spad][:, :, a.first:a.end], axis=(0, 2), initial=-1) if a.write else
                top(last[a.spad][_WRITE, :, a.first:a.end], axis=1, initial=-1) for a in accesses]
        seen += [top(last[a.spad][:, :, a.first:a.end], axis=(0, 2), initial=-1) for a in fence]
        need = functools.reduce(np.maximum, seen) if seen else np.full(len(Unit), -1, np.int64)
        for src, p in (after or {}).items():
            need[src] = max(need[src], p)
        if self.strict and self._needs_sync(unit, need, pc):
            pc = self.sync() + 1
        barrier = self._barrier()
        wait = 0
        known = self._known[unit]
        for src, p in zip(_UNITS, need.tolist()):
            if src == unit:
                continue
            if p > max(known[src], barrier):
                g = self._safe_giver(src, unit, p, pc)
                if g is None:
                    self.unproven.append((pc, src, unit))
                p = p if g is None else g
                known[src] = p
                self._takers[(src, unit)].append(pc)
                wait |= 1 << src
                self.signals[p] |= 1 << unit
                self._inherit(known, unit, p)
        self._dep.append(tuple(known))
        for a in accesses:
            last[a.spad][_WRITE if a.write else _READ, unit, a.first:a.end] = pc
        self.waits.append(wait)
        self.signals.append(0)
        self._pcs[unit].append(pc)
        return pc

    def sync(self):
        """A SYNC at the next pc: everything before it completes first. Returns its pc."""
        pc = self.pc
        self._syncs.append(pc)
        self._dep.append(None)
        self.waits.append(0)
        self.signals.append(0)
        return pc

    def nop(self):
        """A NOP (or HALT) at the next pc: no tokens. Returns its pc."""
        pc = self.pc
        self._dep.append(None)
        self.waits.append(0)
        self.signals.append(0)
        return pc
