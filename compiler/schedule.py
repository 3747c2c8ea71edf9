"""The list scheduler: one layer's steps, pieces and outputs (:mod:`.steps`) merged into program
order (docs/compiler.md, "Schedule").

Each unit contributes one in-order *stream* of instructions (:class:`Stream`): the GEMMs in step
order (:class:`GemmStream`), the DMA (:class:`DmaStream`: the queued LOADs in need order and the
pending STOREs, residual and token-multiplier loads, the most urgent first, by estimated
deadline) and the VECs in tile order (:class:`VecStream`). :class:`Schedule` keeps an estimated
timeline (``free_at``: the first cycle each unit is free; durations from the timing models:
:func:`~mixpim.models.tile_timing.gemm_cycles`, :func:`~mixpim.models.tile_timing.vec_cycles`
and :func:`~mixpim.models.dram_timing.dma_cycles` on the DMA's own
:class:`~mixpim.models.dram_timing.DramTiming`) and always emits next the instruction that can
start first (ties: the lower :class:`~mixpim.models.units.Unit`), so program order follows
execution order and no unit's queue holds the dispatcher back for work far in the future.

The merge is generic over :data:`STREAMS`: a new unit is one :class:`Stream` class and one
entry there.
"""

import enum
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable, NamedTuple

from mixpim.models.dram_timing import DramTiming, dma_cycles
from mixpim.models.isa import VecFunc
from mixpim.models.tile_timing import gemm_cycles, vec_cycles
from mixpim.models.units import Spad, Unit

from .emit import CompileError
from .rings import Load, Piece, PieceRef, Ring, Transfer
from .steps import LayerSteps

__all__ = ["Candidate", "Stream", "JobKind", "DmaJob", "VecJob", "Batch", "GemmStream", "DmaStream",
           "VecStream", "STREAMS", "Schedule"]


class Candidate(NamedTuple):
    """A stream's next instruction: it can start (estimated) at ``start`` on ``unit``;
    ``emit(start)`` emits it and advances the timeline."""
    start: int
    unit: Unit
    emit: Callable


class Stream:
    """One unit's in-order stream of instructions within a :class:`Schedule`.

    Each round of the merge calls :meth:`prepare` on every stream (in unit order), then
    :meth:`next` on every stream, and emits the earliest candidate. :meth:`prepare` may queue
    work onto other streams (e.g. the DMA transfers a VEC waits for); :meth:`next` changes
    nothing."""

    unit: Unit

    def __init__(self, sched):
        self.sched = sched

    def pending(self):
        """Whether instructions remain to be emitted."""
        raise NotImplementedError

    def prepare(self):
        """Queue what the next instruction needs from other streams (default: nothing)."""

    def next(self):
        """The :class:`Candidate` of the next instruction, or None while it cannot be placed."""
        raise NotImplementedError


# -- GEMM --------------------------------------------------------------------------------------

class AccAlloc(NamedTuple):
    """An allocation of ACC words at ``step``, for ``tiles`` tiles."""
    step: int
    tiles: int


class GemmStream(Stream):
    """The GEMMs in step order; each allocates its tiles' ACC words (one piece per
    ``acc_group``) and hands finished tiles to the DMA (``out="acc"``) or the VEC stream."""

    unit = Unit.GEMM

    def __init__(self, sched):
        super().__init__(sched)
        steps = sched.steps
        self.next_step = 0
        self.durations = [gemm_cycles(sched.cfg, st.groups) for st in steps]
        self.cum = list(accumulate((d.busy for d in self.durations), initial=0))
        # when the words of an ACC group are next needed: the allocation that wraps around the
        # ring onto them (their STORE's deadline)
        self.acc_allocs = [AccAlloc(s, len(st.acc_group)) for s, st in enumerate(steps) if st.acc_group]
        self.acc_index = {a.step: k for k, a in enumerate(self.acc_allocs)}
        self.acc_of = {}  # tile -> PieceRef of its ACC words

    def pending(self):
        return self.next_step < len(self.sched.steps)

    def projected(self, step):
        """Estimated start of GEMM ``step`` if the array never waits from now on."""
        free = self.sched.free_at[Unit.GEMM]
        if step <= self.next_step:
            return free
        return free + self.cum[step] - self.cum[self.next_step]

    def blocked(self):
        """Whether the next GEMM waits for ACC words (or no GEMM is left)."""
        if not self.pending():
            return True
        st = self.sched.steps[self.next_step]
        return bool(st.acc_group) and self._acc_fit(st) is None

    def _acc_fit(self, st):
        return self.sched.rings["ACC"].fit(self.sched.cfg.rows * len(st.acc_group))

    def _reuse_step(self, k, slots):
        """Step of the ACC allocation that wraps around the ring onto allocation ``k``'s words."""
        allocs = self.acc_allocs
        room = slots - allocs[k].tiles
        for a in allocs[k + 1:]:
            room -= a.tiles
            if room < 0:
                return a.step
        return len(self.sched.steps)

    def next(self):
        if not self.pending():
            return None
        st = self.sched.steps[self.next_step]
        t = self.sched.free_at[Unit.GEMM]
        for ld in st.deps:
            if ld.done is None:
                return None
            t = max(t, ld.done + 1)
        fit = None
        if st.acc_group:
            fit = self._acc_fit(st)
            if fit is None:
                return None
            for p in fit.way:
                t = max(t, p.free_at + 1)
        return Candidate(t, self.unit, lambda t: self._emit(t, st, fit))

    def _emit(self, t, st, fit):
        s = self.sched
        em, cfg, lay, plan = s.em, s.cfg, s.lay, s.plan
        r = cfg.rows
        fence = ()
        group = st.acc_group
        if group:
            slot = Piece("ACC", r * len(group))
            s.rings["ACC"].commit(slot, fit)
            slot.uses = len(group)
            slot.last = self._reuse_step(self.acc_index[self.next_step], plan.acc_slots)
            if len(group) > 1:  # the group's first GEMM waits once for every slot it reuses
                fence = (("ACC", slot.addr, slot.words),)
            for k, key in enumerate(group):
                self.acc_of[key] = PieceRef(slot, k * r)
        tile = st.tile
        acc = self.acc_of[tile]
        part = st.groups < min(plan.gc, lay.groups - st.ch * plan.gc)
        em.gemm(st.x.piece.addr + st.x.off, st.w.piece.addr + st.w.off,
                st.meta.piece.addr + st.meta.off, acc.piece.addr + acc.off, st.groups,
                accumulate=int(not st.first), fence=fence,
                comment=f"tile ({tile[0]}, {tile[1]}) chunk {st.ch}"
                        + (f" {st.groups} groups" if part else ""))
        dur = self.durations[self.next_step]
        done = t + dur.busy - 1 + dur.tail
        s.free_at[Unit.GEMM] = t + dur.busy
        step = self.next_step
        self.next_step += 1
        for p in (st.x.piece, st.w.piece, st.meta.piece):
            if p.last == step:
                p.free, p.free_at = True, done
        if st.last:
            del self.acc_of[tile]
            if lay.out == "acc":
                i, j = tile
                tokens = min(r, lay.m - i * r)
                store = Transfer(False, Spad.ACC, acc.piece.addr + acc.off,
                                 lay.y + (i * r * lay.nb + j) * s.acc_word_bytes, 1, tokens,
                                 lay.nb * s.acc_word_bytes, f"Y tile ({i}, {j})")
                s.streams[Unit.DMA].push(DmaJob(JobKind.STORE, done + 1, store, piece=acc.piece,
                                                deadline_step=acc.piece.last))
            else:
                s.streams[Unit.VEC].push(VecJob(tile, acc, st.block, done + 1))


# -- DMA ---------------------------------------------------------------------------------------

class JobKind(enum.Enum):
    """What a pending DMA job (:class:`DmaJob`) moves."""
    STORE = "store"  # an ACC tile's accumulators to Y (out="acc")
    OUT = "out"  # a VEC batch's int8 outputs to Y
    TOKENS = "tokens"  # a token block's multipliers into VPARAM, before its first VEC
    RESIDUAL = "residual"  # a batch's residual words into its output words (VEC ADD)


@dataclass(eq=False)
class DmaJob:
    """A DMA transfer queued by another stream: ``kind``, earliest start ``ready``, the
    instruction's ``transfer``; ``piece``: the ACC piece a STORE releases, the output piece an OUT
    frees; ``deadline_step``: (STORE, OUT) the step whose allocation wraps around the ring onto
    its words; ``done``: estimated completion once emitted."""
    kind: JobKind
    ready: int
    transfer: Transfer
    piece: Piece = None
    deadline_step: int = -1
    done: int = None


class DmaOption(NamedTuple):
    """A transfer the DMA could take next: a queued :class:`~.rings.Load` (``fit``: where its
    piece goes, if it has no words yet) or a :class:`DmaJob`."""
    deadline: int
    ready: int
    item: object
    fit: object


class DmaStream(Stream):
    """The DMA: the queued LOADs (in need order) and the pending jobs, the most urgent first."""

    unit = Unit.DMA

    def __init__(self, sched):
        super().__init__(sched)
        self.loads = sched.work.loads()
        self.next_load = 0
        self.jobs = []
        self.dram = DramTiming(sched.cfg)

    def pending(self):
        return bool(self.jobs) or self.next_load < len(self.loads)

    def push(self, job):
        self.jobs.append(job)

    def next(self):
        """Among the next queued load and the pending jobs, the earliest deadline (a job that
        unblocks a unit: now), unless it must wait and another fits before."""
        s = self.sched
        gemm, vec = s.streams[Unit.GEMM], s.streams[Unit.VEC]
        options = []
        now = s.free_at[Unit.DMA]
        gemm_blocked = out_blocked = None  # gemm.blocked(), vec.out_blocked(): asked when needed
        if self.next_load < len(self.loads):
            ld = self.loads[self.next_load]
            p = ld.piece
            ready, fit = now, None
            if p.addr is None:
                fit = s.rings[p.space].fit(p.words)
                if fit is not None:
                    for q in fit.way:
                        ready = max(ready, q.free_at + 1)
            if p.addr is not None or fit is not None:
                options.append(DmaOption(gemm.projected(ld.need), ready, ld, fit))
        for job in self.jobs:
            kind = job.kind
            if kind is JobKind.STORE and gemm_blocked is None:
                gemm_blocked = gemm.blocked()
            elif kind is JobKind.OUT and out_blocked is None:
                out_blocked = vec.out_blocked()
            if kind in (JobKind.TOKENS, JobKind.RESIDUAL) \
                    or (kind is JobKind.STORE and gemm_blocked) \
                    or (kind is JobKind.OUT and out_blocked):
                deadline = -1
            else:  # when the ring wraps onto its words
                deadline = gemm.projected(job.deadline_step)
            options.append(DmaOption(deadline, max(now, job.ready), job, None))
        if not options:
            return None
        options.sort(key=lambda o: (o.deadline, o.ready))
        pick = options[0]
        if pick.ready > now:  # it must wait: another that can go now and finish in time goes first
            for o in options[1:]:
                if o.ready <= now and now + self._estimate(o.item) <= pick.ready:
                    pick = o
                    break
        return Candidate(pick.ready, self.unit, lambda t: self._emit(t, pick.item, pick.fit))

    def _estimate(self, item):
        """Cycles of a queued load started now (on a copy of the DRAM state); jobs never fill gaps."""
        if not isinstance(item, Load):
            return 1 << 30
        return dma_cycles(self.dram.copy(), self.sched.free_at[Unit.DMA], item.dram, item.stride,
                          item.rows, item.words * self.sched.cfg.word_bytes(item.piece.spad))

    def _transfer(self, t, tr):
        """Emit one LOAD/STORE starting (estimated) at ``t``; returns its estimated completion."""
        s = self.sched
        d = dma_cycles(self.dram, t, tr.dram, tr.stride if tr.rows > 1 else 0, tr.rows,
                       tr.row_bytes(s.cfg))
        fn = s.em.load if tr.load else s.em.store
        fn(tr.spad, tr.spad_addr, tr.dram, tr.words, rows=tr.rows, stride=tr.stride,
           comment=tr.comment)
        s.free_at[Unit.DMA] = t + d
        return t + d - 1

    def _emit(self, t, item, fit):
        if isinstance(item, Load):
            p = item.piece
            if p.addr is None:
                self.sched.rings[p.space].commit(p, fit)
            item.done = self._transfer(t, item.transfer())
            self.next_load += 1
            return
        self.jobs.remove(item)
        item.done = done = self._transfer(t, item.transfer)
        if item.kind == JobKind.STORE:
            item.piece.release(done)
        elif item.kind == JobKind.OUT:
            item.piece.free, item.piece.free_at = True, done


# -- VEC ---------------------------------------------------------------------------------------

@dataclass(eq=False)
class VecJob:
    """A finished tile waiting for its VEC: ``tile``, its ACC words ``acc``, its ``block``, ready
    at ``ready``; ``prepared`` once its output words are allocated and the DMA jobs it ``waits``
    for are queued."""
    tile: tuple
    acc: PieceRef
    block: tuple
    ready: int
    prepared: bool = False
    waits: list = field(default_factory=list)


@dataclass(eq=False)
class Batch:
    """The output words of one token block and feature-block group: ``piece`` in the OUT ring,
    ``left`` VECs still to write it, usable from cycle ``ready``."""
    piece: Piece
    left: int
    ready: int


class VecStream(Stream):
    """The VECs in tile order, each writing into its batch's output words; a full batch becomes
    one STORE (an OUT job). Per-token multipliers are loaded per token block."""

    unit = Unit.VEC

    def __init__(self, sched):
        super().__init__(sched)
        self.jobs = []
        self.batches = {}  # (i, block) -> Batch
        self.tok_block = None  # token block whose multipliers are in VPARAM (per_token)
        self.last_done = -1
        # when the words of a batch are next needed: the step of the batch that wraps around the
        # ring onto them (their STORE's deadline)
        self.batch_steps = []  # step of each batch's first tile, in VEC order
        seen = set()
        for s, st in enumerate(sched.steps):
            if st.last and (st.i, st.block) not in seen:
                seen.add((st.i, st.block))
                self.batch_steps.append(s)
        self.batch_count = 0

    def pending(self):
        return bool(self.jobs)

    def push(self, job):
        self.jobs.append(job)

    def _batch_words(self, block):
        return len(self.sched.work.j_groups[block[1]]) * self.sched.cfg.cols

    def out_blocked(self):
        """Whether the next VEC waits for output words."""
        return bool(self.jobs) and not self.jobs[0].prepared and \
            self.sched.rings["OUT"].fit(self._batch_words(self.jobs[0].block)) is None

    def prepare(self):
        """Allocate the next VEC's output words and queue the residual and token-multiplier
        loads it waits for (urgent DMA jobs)."""
        if not self.jobs or self.jobs[0].prepared:
            return
        job = self.jobs[0]
        s = self.sched
        lay, cfg, dma = s.lay, s.cfg, s.streams[Unit.DMA]
        i = job.tile[0]
        key = (i, job.block)
        waits = []
        if key not in self.batches:
            fit = s.rings["OUT"].fit(self._batch_words(job.block))
            if fit is None:
                return
            piece = Piece("OUT", self._batch_words(job.block))
            s.rings["OUT"].commit(piece, fit)
            J = s.work.j_groups[job.block[1]]
            batch = self.batches[key] = Batch(piece, len(J),
                                              max([q.free_at + 1 for q in fit.way], default=0))
            if lay.res >= 0:  # the residual goes where the output will be: ADD works in place
                ab, c = cfg.act_word_bytes, cfg.cols
                res = Transfer(True, Spad.ACT, piece.addr,
                               lay.res + (i * lay.res_block_words + J[0] * c) * ab, len(J) * c, 1, 0,
                               f"residual block {i} features {J[0]}..{J[-1]}")
                waits.append(DmaJob(JobKind.RESIDUAL, batch.ready, res))
                dma.push(waits[-1])
        if s.per_token and self.tok_block != i:
            base, tb, vb = cfg.vparam_param_base, cfg.vparam_token_base, cfg.vparam_word_bytes
            if self.tok_block is None:  # the first block with the table
                tokens = Transfer(True, Spad.VPARAM, 0, lay.token_mults + i * base * vb, base, 1, 0,
                                  f"token multipliers {i}")
            else:
                tokens = Transfer(True, Spad.VPARAM, tb, lay.token_mults + (i * base + tb) * vb, cfg.rows,
                                  1, 0, f"token multipliers {i}")
            waits.append(DmaJob(JobKind.TOKENS, self.last_done + 1, tokens))
            dma.push(waits[-1])
            self.tok_block = i
        job.prepared = True
        job.waits = waits

    def next(self):
        """Once the next VEC's output words, residual, column and token multipliers are (being)
        loaded: its candidate."""
        if not self.jobs or not self.jobs[0].prepared:
            return None
        job = self.jobs[0]
        s = self.sched
        t = max(s.free_at[Unit.VEC], job.ready)
        for w in job.waits:
            if w.done is None:  # not emitted yet
                return None
            t = max(t, w.done + 1)
        t = max(t, self.batches[(job.tile[0], job.block)].ready)
        par = s.work.param_of(job.block, job.tile[1]).piece
        loads = par.loads + (s.work.hdr.loads if s.work.hdr is not None else [])
        if any(ld.done is None for ld in loads):
            return None
        t = max(t, max(ld.done for ld in loads) + 1)
        return Candidate(t, self.unit, lambda t: self._emit(t, job))

    def _emit(self, t, job):
        s = self.sched
        em, lay, cfg = s.em, s.lay, s.cfg
        i, j = job.tile
        key = (i, job.block)
        batch = self.batches[key]
        J = s.work.j_groups[job.block[1]]
        o = batch.piece.addr + (j - J[0]) * cfg.cols
        par = s.work.param_of(job.block, j)
        tokens = min(cfg.rows, lay.m - i * cfg.rows)
        em.vec(s.vec_func, job.acc.piece.addr + job.acc.off, o, par.piece.addr + par.off, tokens,
               res_addr=o if lay.res >= 0 else 0,
               comment=f"{VecFunc(s.vec_func).name.lower()} tile ({i}, {j})")
        dur = vec_cycles(cfg, tokens)
        done = t + dur.busy - 1 + dur.tail
        s.free_at[Unit.VEC] = t + dur.busy
        self.last_done = done
        self.jobs.pop(0)
        job.acc.piece.release(done)
        par.piece.release(done)
        batch.left -= 1
        if batch.left == 0:
            nring = max(1, (s.plan.out_words // batch.piece.words))
            k = self.batch_count + nring - 1
            reuse = self.batch_steps[k] if k < len(self.batch_steps) else len(s.steps)
            self.batch_count += 1
            c, ab = cfg.cols, cfg.act_word_bytes
            out = Transfer(False, Spad.ACT, batch.piece.addr,
                           lay.y + (i * lay.y_block_words + J[0] * c) * ab, len(J) * c, 1, 0,
                           f"Y block {i} features {J[0]}..{J[-1]}")
            s.streams[Unit.DMA].push(DmaJob(JobKind.OUT, done + 1, out, piece=batch.piece,
                                            deadline_step=reuse))
            del self.batches[key]


# -- the merge ---------------------------------------------------------------------------------

#: The stream of each unit, in :class:`~mixpim.models.units.Unit` order (which breaks ties).
STREAMS = {Unit.DMA: DmaStream, Unit.GEMM: GemmStream, Unit.VEC: VecStream}
assert list(STREAMS) == sorted(STREAMS)


class Schedule:
    """Steps (GEMMs), pieces and outputs of one layer (:class:`~.steps.LayerSteps`), then their
    emission into ``em`` in program order by :meth:`run` (see the module doc).

    ``act_base``: ACT words below it are left alone; ``vec_func``: the VECs' function
    (``out="int8"``); ``per_token``: token multipliers reloaded per token block."""

    def __init__(self, em, lay, plan, per_token, act_base, vec_func):
        self.em, self.lay, self.plan = em, lay, plan
        self.per_token, self.vec_func = per_token, vec_func
        cfg = self.cfg = lay.config
        self.acc_word_bytes = cfg.acc_word_bytes
        act_top = cfg.act_words - plan.out_words
        self.rings = {"ACT": Ring(act_base, act_top), "WGT": Ring(0, cfg.wgt_words),
                      "META": Ring(0, cfg.meta_words), "ACC": Ring(0, plan.acc_slots * cfg.rows),
                      "OUT": Ring(act_top, cfg.act_words),
                      "VPARAM": Ring(cfg.vparam_param_base, cfg.vparam_words)}
        self.work = LayerSteps(lay, plan, per_token)
        self.steps = self.work.steps

    def run(self):
        """Emit every instruction of the layer, earliest estimated start first."""
        self.free_at = {u: 0 for u in STREAMS}  # estimated first cycle each unit is free
        self.streams = {}
        for unit, cls in STREAMS.items():
            self.streams[unit] = cls(self)
        streams = list(self.streams.values())
        while any(st.pending() for st in streams):
            for st in streams:
                st.prepare()
            cands = [c for c in (st.next() for st in streams) if c is not None]
            if not cands:
                raise CompileError("internal: the schedule is stuck (scratchpad rings too small "
                                   "for the plan)")
            pick = min(cands)  # by (start, unit): the streams' units differ, so emit is never compared
            pick.emit(pick.start)
        del self.streams  # (they point back here: freed now, not by the cycle collector)
