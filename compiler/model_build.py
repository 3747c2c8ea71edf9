"""The state of one whole-model program being built: :class:`ModelBuild` (emitter, DRAM placement,
memory image, scratchpad slots) and the DRAM layouts of its tensors.

A whole-model program is a chain of *kernels* (a Linear layer, a VEC epilogue, a norm, attention)
that meet in DRAM: every kernel LOADs its inputs from DRAM tensors and STOREs its outputs to new
ones. All kernels emit into one :class:`~.emit.Emitter`, whose token pass orders every scratchpad
conflict between them (and the in-order DMA orders their DRAM traffic), so kernels overlap where
their scratchpad words do not collide. Layouts (``r`` = array rows = ``c`` = cols, one token block
= ``r`` tokens):

* :class:`ActTensor`: FP16 activations, K-major per token block (``kw`` ACT words per block, lane
  i = token i): the input layout of a Linear (:mod:`.operands`) and of attention's Q and K;
* :class:`AccRows`: a Linear's ``out="acc"`` output, row-major (token t, feature block j);
* :class:`ResTensor`: the 32-bit residual stream in ACC words, tile-major (token block, feature
  block, token): a token block's whole hidden vector is one contiguous LOAD;
* :class:`DirectTensor`: V for ``P V``, one ACT word per token (lanes = ``c`` features),
  per feature block all tokens contiguous.
"""

from dataclasses import dataclass

import numpy as np

from mixpim.models.executor import unpack_acc
from mixpim.models.isa import Opcode, Spad
from mixpim.models.program import Segment

from .dram_alloc import DramAllocator
from .emit import CompileError, Emitter

__all__ = ["ActTensor", "AccRows", "ResTensor", "DirectTensor", "Slots", "ModelBuild", "Blank"]


@dataclass(frozen=True)
class Blank:
    """The contents of a constant region when only its size is known: a program built for timing
    alone (the cycle model never reads data, :mod:`.llama_shapes`). ``len`` is the byte size; the
    region is allocated like any constant but puts nothing in the memory image."""

    nbytes: int

    def __len__(self):
        return self.nbytes


@dataclass(frozen=True)
class ActTensor:
    """``m`` tokens x ``k`` features, K-major FP16 ACT words: token block i, feature f at byte
    ``base + (i * kw + f) * act_word_bytes``. With ``copies`` > 1 the tensor holds its
    ``k / copies`` features that many times side by side (the input of a two-plane Linear,
    :mod:`.nibble_planes`); producers write every copy (:meth:`ModelBuild.store_act`)."""

    base: int
    m: int
    k: int
    kw: int
    copies: int = 1

    @property
    def span(self):
        """Features of one copy."""
        return self.k // self.copies

    def addr(self, cfg, block, feature=0):
        return self.base + (block * self.kw + feature) * cfg.act_word_bytes


@dataclass(frozen=True)
class AccRows:
    """A Linear's accumulators, row-major: token t, feature block j at ``base + (t * nb + j) *
    acc_word_bytes`` (``m`` rows)."""

    base: int
    m: int
    nb: int

    def addr(self, cfg, token, fblock):
        return self.base + (token * self.nb + fblock) * cfg.acc_word_bytes


@dataclass(frozen=True)
class ResTensor:
    """The residual stream, ``m`` tokens x ``nb`` feature blocks of ACC words, tile-major: token
    block i, feature block j, row t at ``base + ((i * nb + j) * rows + t) * acc_word_bytes``."""

    base: int
    m: int
    nb: int

    def addr(self, cfg, block, fblock=0):
        return self.base + (block * self.nb + fblock) * cfg.rows * cfg.acc_word_bytes

    def read(self, cfg, result, frac):
        """The values (m, nb * cols) float64 from an executor ``result``: ACC words in units of
        ``2**-frac``."""
        r, mb = cfg.rows, -(-self.m // cfg.rows)
        raw = result.read(self.base, mb * self.nb * r * cfg.acc_word_bytes)
        acc = np.asarray(unpack_acc(cfg, raw), np.float64).reshape(mb, self.nb, r, cfg.cols)
        return np.ldexp(acc.transpose(0, 2, 1, 3).reshape(mb * r, self.nb * cfg.cols)[:self.m], -frac)


@dataclass(frozen=True)
class DirectTensor:
    """Token rows as ACT words (lanes = ``cols`` features), feature block f, token t at
    ``base + (f * mpad + t) * act_word_bytes``; ``mpad`` tokens per feature block (a whole number
    of groups, so ``P V`` streams whole groups)."""

    base: int
    m: int
    mpad: int

    def addr(self, cfg, fblock, token=0):
        return self.base + (fblock * self.mpad + token) * cfg.act_word_bytes


@dataclass
class Slots:
    """``count`` rotating slots of ``size`` words from word ``base`` of one scratchpad: a kernel
    takes the next slot for each piece, so consecutive pieces can be in flight at once (the token
    pass orders a slot's reuse after its last reader)."""

    base: int
    size: int
    count: int
    taken: int = 0

    @property
    def end(self):
        return self.base + self.size * self.count

    def take(self):
        addr = self.base + (self.taken % self.count) * self.size
        self.taken += 1
        return addr


class ModelBuild:
    """One program being built for ``config``: ``em`` (:class:`~.emit.Emitter`), ``dram``
    (:class:`~.dram_alloc.DramAllocator`), ``segments`` (the memory image). ``linear_memo``: a
    dict a compiler keeps across its programs, in which the Linears keep their recorded
    instruction streams by layout (:func:`~.model_kernels.linear_acc`), or None; ``dram_key``:
    the :class:`~.dram_alloc.DramAllocator`'s ``key``."""

    def __init__(self, config, linear_memo=None, dram_key=None):
        cfg = self.check(config)
        self.cfg = cfg
        self.em = Emitter(cfg)
        self.linear_config = cfg  # what the Linears plan their scratchpads with (interleave.py)
        self.linear_memo = linear_memo
        self.dram = DramAllocator(cfg, dram_key)
        self.segments = []
        self._zeros = None
        self._work = {}
        self._consts = {}  # name -> (base, data) of the regions with contents

    @staticmethod
    def check(config):
        """``config`` if whole models can run on it, else :class:`CompileError` saying why."""
        if config.act_format != "fp16":
            raise CompileError(f"whole models run on FP16-activation (W4A16) tiles, not {config.pe}")
        if config.rows != config.cols:
            raise CompileError(f"whole models need a square array, not {config.rows}x{config.cols}")
        return config

    def region(self, name, nbytes, word_bytes, data=None):
        """A DRAM region; ``data`` (bytes) its initial contents. A region without data is a
        workspace: asking again for one of the same name and size returns the same region
        (every block reuses its temporaries; the in-order DMA is the only DRAM user, so a STORE
        after a LOAD in program order cannot overtake it). Asking again for a region of the same
        name, size and contents returns it too (constants shared by sub-batches). ``data`` a
        :class:`Blank`: a constant of that size whose contents are not in the image."""
        key = (name, int(nbytes), word_bytes)
        if data is None and key in self._work:
            return self._work[key]
        blank = isinstance(data, Blank)
        if data is not None and name in self._consts:
            base, old = self._consts[name]
            if old == (key, data if blank else bytes(data)):
                return base
        if name in self.dram.symbols:
            raise CompileError(f"internal: DRAM region {name!r} allocated twice")
        base = self.dram.alloc(name, max(int(nbytes), 1), word_bytes)
        if data is not None:
            if len(data) > nbytes:
                raise CompileError(f"internal: {name} holds {len(data)} bytes in a {nbytes}-byte region")
            if not blank:
                data = bytes(data)
                self.segments.append(Segment("dram", base, data))
            self._consts[name] = (base, (key, data))
        else:
            self._work[key] = base
        return base

    def act(self, name, m, k, copies=1):
        """A new :class:`ActTensor` of ``m`` x ``k`` features, ``copies`` times (K padded to whole
        groups; a copy of several must be whole groups)."""
        cfg = self.cfg
        if copies > 1 and k % cfg.group:
            raise CompileError(f"internal: {name}: {k} features do not make whole groups of {cfg.group}")
        kw = -(-k * copies // cfg.group) * cfg.group
        mb = -(-m // cfg.rows)
        base = self.region(name, mb * kw * cfg.act_word_bytes, cfg.act_word_bytes)
        return ActTensor(base, m, k * copies, kw, copies)

    def acc_rows(self, name, m, n):
        cfg = self.cfg
        nb = -(-n // cfg.cols)
        return AccRows(self.region(name, m * nb * cfg.acc_word_bytes, cfg.acc_word_bytes), m, nb)

    def res(self, name, m, n, data=None):
        cfg = self.cfg
        nb = -(-n // cfg.cols)
        mb = -(-m // cfg.rows)
        size = mb * nb * cfg.rows * cfg.acc_word_bytes
        return ResTensor(self.region(name, size, cfg.acc_word_bytes, data), m, nb)

    def direct(self, name, m, n):
        cfg = self.cfg
        mpad = -(-m // cfg.group) * cfg.group
        nb = -(-n // cfg.cols)
        return DirectTensor(self.region(name, nb * mpad * cfg.act_word_bytes, cfg.act_word_bytes), m, mpad)

    def zeros(self, spad_word_bytes, words):
        """The DRAM address of at least ``words`` zero words of ``spad_word_bytes`` (one shared,
        explicitly zeroed region; a larger request later gets a larger one, ``zeros2`` ...)."""
        nbytes = spad_word_bytes * words
        if self._zeros is None or self._zeros[1] < nbytes:
            size = max(nbytes, 4096)
            n = 1 if self._zeros is None else self._zeros[2] + 1
            self._zeros = (self.region("zeros" if n == 1 else f"zeros{n}", size, 64, bytes(size)), size, n)
        return self._zeros[0]

    # -- instructions ---------------------------------------------------------------------------

    def load(self, spad, spad_addr, dram_addr, words, rows=1, stride=0, comment=""):
        return self.em.load(spad, spad_addr, dram_addr, words, rows=rows, stride=stride, comment=comment)

    def store(self, spad, spad_addr, dram_addr, words, rows=1, stride=0, comment=""):
        return self.em.store(spad, spad_addr, dram_addr, words, rows=rows, stride=stride, comment=comment)

    def store_act(self, spad_addr, tensor, block, feature, words, comment=""):
        """STORE ``words`` ACT words (features ``feature ..`` of token block ``block``) into every
        copy of the :class:`ActTensor` ``tensor``."""
        for c in range(tensor.copies):
            self.store(Spad.ACT, spad_addr, tensor.addr(self.cfg, block, feature + c * tensor.span),
                       words, comment=comment)

    def operator(self, name):
        """A context: the instructions emitted inside belong to the operator ``name``."""
        return self.em.operator(name)

    def block(self, i):
        """A context: the operators inside are model block i's (``"L{i}."``)."""
        return self.em.block(i)

    def op(self, opcode, comment="", **fields):
        return self.em.emit(Opcode[opcode] if isinstance(opcode, str) else opcode, comment=comment, **fields)

    def program(self, symbols=None):
        syms = dict(self.dram.symbols)
        syms.update(symbols or {})
        return self.em.program(self.segments, symbols=syms)


def int32_words(values):
    """int32 VPARAM words (bytes) of ``values`` (a bias or ``eps``)."""
    v = np.asarray(values, np.int64)
    if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
        raise CompileError("internal: a bias does not fit 32 bits")
    return v.astype("<i4").tobytes()
