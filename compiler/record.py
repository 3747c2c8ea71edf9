"""Recorded instruction streams: kernels emit into a :class:`Recorder` instead of a program's
:class:`~.emit.Emitter`, and the :class:`Call` s are emitted into a program later (with their
tokens planned there, as for any instruction). Sub-batch interleaving merges two recorded streams
(:mod:`.interleave`); :func:`~.model_kernels.linear_acc` re-emits a Linear's recorded stream in
every program of a compiler that uses the same layout (a decode step repeats all its Linears)."""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from mixpim.models.isa import Instruction

from .emit import Emitter

__all__ = ["Call", "Recorder", "record"]


class Call(NamedTuple):
    """One recorded unit instruction (no tokens), its ``fence``, ``comment`` and operator
    ``label`` (:meth:`~.emit.Emitter.emit`)."""
    inst: Instruction
    fence: tuple
    comment: str
    label: str


@dataclass
class Recorder:
    """Stands in for an :class:`~.emit.Emitter`: records the unit instructions kernels emit."""

    config: object
    calls: list = field(default_factory=list)
    label: str = ""
    scope: str = ""

    def emit(self, opcode, *, fence=(), comment="", **fields):
        return self.append(Instruction(opcode, **fields), fence=fence, comment=comment)

    def append(self, inst, *, fence=(), comment="", label=None):
        self.calls.append(Call(inst, tuple(fence), comment, self.label if label is None else label))
        return len(self.calls) - 1  # no kernel uses the pc; the program has its own

    load, store, gemm, vec = Emitter.load, Emitter.store, Emitter.gemm, Emitter.vec
    operator, block = Emitter.operator, Emitter.block
    _early = True  # no token check here: the program that emits the calls plans their tokens


@contextmanager
def record(b):
    """Inside the block, ``b`` (:class:`~.model_build.ModelBuild`) emits into a list of
    :class:`Call` s (yielded) instead of its program; DRAM regions are allocated as usual."""
    real, rec = b.em, Recorder(b.cfg, label=b.em.label, scope=b.em.scope)
    b.em = rec
    try:
        yield rec.calls
    finally:
        b.em = real
