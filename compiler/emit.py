"""Instruction emission with automatic dependency tokens.

:class:`Emitter` collects unit instructions in program order, takes each one's scratchpad
footprint from :func:`mixpim.models.footprint.footprint` and its tokens from
:class:`~.tokens.TokenPlanner` (the one token algorithm; its module doc gives the argument why the
tokens order every conflict, never deadlock and never overflow). Token pairs the planner could not
prove overflow-free are checked once on the cycle model when the program is built.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

from mixpim.models.errors import MixpimError
from mixpim.models.footprint import SpadAccess, footprint
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad
from mixpim.models.memo import config_memo, remembered
from mixpim.models.program import Program
from mixpim.models.tile_timing import simulate
from mixpim.models.units import DRAM_UNITS

from .tokens import TokenPlanner

__all__ = ["CompileError", "Emitter"]

_DRAM_UNITS = frozenset(DRAM_UNITS)
#: Footprint of each instruction met, per configuration (:func:`~mixpim.models.memo.config_memo`).
_FOOTPRINTS = {}


class CompileError(MixpimError, ValueError):
    """A layer does not fit the tile configuration (the message says what and why)."""


#: Instructions up to which :meth:`Emitter._check_early` runs the cycle model on a program so far.
EARLY_CHECK_MAX = 50_000


@dataclass
class Emitter:
    """Collects instructions and inserts dependency tokens (see the module doc).

    Members
    -------
    config : TileConfig
    body : list of Instruction
        The unit instructions emitted, without tokens (:meth:`instructions` adds them and HALT).
    comments : dict
        ``{pc: comment}`` for the listing.
    label : str
        The operator the next instructions belong to (performance reports; :meth:`operator`):
        ``"L{i}.name"`` inside block i (:meth:`block`), as the layer graph names operators.
    labels : list of str
        Each body instruction's operator (a SYNC the planner inserts takes the next one's).
    scope : str
        ``"L{i}."`` inside :meth:`block` i, else "".
    timing : TimingResult or None
        The cycle model's run of :meth:`instructions` when :meth:`verify_tokens` made one (and
        kept the tokens it ran), else None.
    """

    config: object
    body: list = field(default_factory=list)
    comments: dict = field(default_factory=dict)
    label: str = ""
    labels: list = field(default_factory=list)
    scope: str = ""
    timing: object = None

    def __post_init__(self):
        self.planner = TokenPlanner(self.config)
        self._early = False  # the one early check (:meth:`_check_early`) was made
        self._footprints = config_memo(_FOOTPRINTS, self.config)
        self._fences = {}  # pc -> fence of the instructions that have one (for re-planning)

    @property
    def unproven(self):
        """Token pairs the planner could not prove overflow-free (checked by :meth:`program`)."""
        return self.planner.unproven

    def emit(self, opcode, *, fence=(), comment="", **fields):
        """Append one unit instruction with these operands; returns its pc. ``fence``: words
        ``(spad, first word, words)`` the instruction is ordered after as if it wrote them, without
        recording an access (one wait covering buffers that later instructions will write)."""
        return self.append(Instruction(opcode, **fields), fence=fence, comment=comment)

    def append(self, inst, *, fence=(), comment="", label=None):
        """:meth:`emit` of a built unit instruction ``inst`` (without tokens); ``label`` its
        operator (default :attr:`label`). :class:`CompileError` if the tile lacks the
        instruction's datapath (:meth:`~mixpim.models.config.TileConfig.missing_datapath`)."""
        missing = self.config.missing_datapath(inst.op)
        if missing is not None:
            raise CompileError(f"{self.label or 'the program'}: {missing}")
        if fence:
            fence = tuple(SpadAccess(Spad[space] if isinstance(space, str) else Spad(space), lo, n, True, "fence")
                          for space, lo, n in fence)
        pc = self._plan(inst, fence, self.label if label is None else label)
        if fence:
            self._fences[pc] = fence
        if comment:
            self.comments[pc] = comment
        return pc

    def _plan(self, inst, fence, label):
        """Plan ``inst``'s tokens and append it (after the SYNCs a strict planner put first)."""
        fp = remembered(self._footprints, inst,
                        lambda: footprint(self.config, inst, dram=inst.unit in _DRAM_UNITS))
        pc = self.planner.add(inst.unit, fp.spads, dram=fp.dram, fence=fence)
        if pc > len(self.body):
            self.body.extend([Instruction(Opcode.SYNC)] * (pc - len(self.body)))
            self.labels.extend([label] * (pc - len(self.labels)))
        self.body.append(inst)
        self.labels.append(label)
        return pc

    @contextmanager
    def operator(self, name):
        """Inside the ``with`` block, instructions belong to the operator ``name`` (of the model
        block :meth:`block` set, if any)."""
        outer, self.label = self.label, self.scope + name
        try:
            yield
        finally:
            self.label = outer
            if not self._early and self.planner.unproven:
                self._check_early()

    @contextmanager
    def block(self, i):
        """Inside the ``with`` block, operators are model block i's."""
        outer, self.scope = self.scope, f"L{i}."
        try:
            yield
        finally:
            self.scope = outer

    # -- the four unit instructions -------------------------------------------------------------

    def load(self, spad, spad_addr, dram_addr, words, *, rows=1, stride=0, comment=""):
        return self.emit(Opcode.LOAD, comment=comment, spad=spad, spad_addr=spad_addr,
                         dram_addr=dram_addr, words=words, rows=rows, stride=stride)

    def store(self, spad, spad_addr, dram_addr, words, *, rows=1, stride=0, comment=""):
        return self.emit(Opcode.STORE, comment=comment, spad=spad, spad_addr=spad_addr,
                         dram_addr=dram_addr, words=words, rows=rows, stride=stride)

    def gemm(self, act_addr, wgt_addr, meta_addr, acc_addr, groups, accumulate=0, comment="", fence=()):
        return self.emit(Opcode.GEMM, fence=fence, comment=comment, act_addr=act_addr,
                         wgt_addr=wgt_addr, meta_addr=meta_addr, acc_addr=acc_addr, groups=groups,
                         accumulate=accumulate)

    def vec(self, func, acc_addr, act_addr, param_addr, rows, *, res_addr=0, comment=""):
        """A VEC; it reads ``rows`` ACC words, the column and token multipliers, the GELU table
        (GELU only) and the residual words (ADD only)."""
        return self.emit(Opcode.VEC, comment=comment, func=func, acc_addr=acc_addr,
                         act_addr=act_addr, res_addr=res_addr, param_addr=param_addr, rows=rows)

    # -- output --------------------------------------------------------------------------------

    def instructions(self):
        """The program so far with its tokens, then HALT."""
        t = self.planner
        ins = [inst if inst.wait == w and inst.signal == s else inst.with_tokens(w, s)
               for inst, w, s in zip(self.body, t.waits, t.signals)]
        return ins + [Instruction(Opcode.HALT)]

    def verify_tokens(self):
        """When some token pair escaped the static argument (:mod:`.tokens`), run the cycle model
        once: timing is exact and data-independent, so a clean run proves the counters stay in
        range on this configuration. Raises :class:`CompileError` on ``TOKEN_OVERFLOW``."""
        if not self.unproven:
            return
        t = simulate(self.config, self.instructions())
        if t.error == ErrorCode.TOKEN_OVERFLOW:
            self._replan()
        else:
            self.timing = t
        self.unproven.clear()

    def _check_early(self):
        """Once, at the end of the first operator with an unproven token pair, run the cycle model
        on the program so far (when it is short): should a counter overflow before the last of
        its instructions is dispatched, the whole program would overflow there too (nothing later
        in program order can start before it), so plan strictly from here on (after planning the
        instructions so far again) instead of planning everything twice. The program is the one
        :meth:`verify_tokens` would have made."""
        self._early = True
        if len(self.body) > EARLY_CHECK_MAX or self.planner.strict:
            return
        t = simulate(self.config, self.instructions())
        if t.error == ErrorCode.TOKEN_OVERFLOW and t.dispatched < len(self.body):
            self._replan()
            self.unproven.clear()

    def _replan(self):
        """Plan every token again with a strict planner (SYNCs where the static argument fails)."""
        body, fences, comments, labels = self.body, self._fences, self.comments, self.labels
        self.body, self._fences, self.comments, self.labels = [], {}, {}, []
        self.planner = TokenPlanner(self.config, strict=True)
        for old, inst in enumerate(body):  # unit instructions only: emit() makes no SYNC
            pc = self._plan(inst, fences.get(old, ()), labels[old])
            if old in fences:
                self._fences[pc] = fences[old]
            if old in comments:
                self.comments[pc] = comments[old]

    def operators(self):
        """Each instruction's operator (:attr:`labels`), aligned with :meth:`instructions`."""
        return tuple(self.labels) + ("",)

    def program(self, segments=(), symbols=None):
        self.verify_tokens()
        return Program(self.config, self.instructions(), list(segments), symbols=dict(symbols or {}),
                       comments=dict(self.comments))
