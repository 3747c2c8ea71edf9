"""Which memory words each instruction reads and writes: the one definition of an instruction's
footprint.

It is used by the cycle model's dispatch checks (every access must stay inside its scratchpad or
region: ``SPAD_RANGE``), the golden executor's race check (accesses of overlapping instructions on
different units), the compiler's token pass and the random program generator (a conflict between
units needs a token).

A scratchpad access is a run of consecutive words (:class:`SpadAccess`); a DRAM access is runs of
bytes of one length (:class:`DramAccess`): one per row of a LOAD/STORE, one per channel (and
bank) of a PIM_WRITE (PIM_GEMV).
"""

from typing import NamedTuple

import numpy as np

from .config import VPARAM_LUT_WORDS
from .isa import NormFunc, Opcode, SoftFunc, VecFunc
from .pim import gbuf_words, read_words, row_starts
from .softmax import norm_writes
from .units import Spad

__all__ = ["SpadAccess", "DramAccess", "Footprint", "footprint", "dma_spans"]


class SpadAccess(NamedTuple):
    """Words ``first .. first + words - 1`` of scratchpad ``spad``.

    Members
    -------
    spad : Spad
    first, words : int
    write : bool
    name : str
        How dispatch-check messages name the access (``"ACT"``, ``"residual ACT"``, ...).
    lo : int
        The lowest word the access may touch (the VPARAM column-parameter region starts above the
        GELU table and the token multipliers); 0 for the others.
    """
    spad: Spad
    first: int
    words: int
    write: bool
    name: str
    lo: int = 0

    @property
    def end(self):
        """One past the last word."""
        return self.first + self.words


class DramAccess(NamedTuple):
    """``length`` bytes at each address of ``starts`` (int64 array, in transfer order)."""
    starts: np.ndarray
    length: int
    write: bool


class Footprint(NamedTuple):
    """Everything one instruction touches: scratchpad runs (in dispatch-check order) and, for
    LOAD/STORE, PIM_WRITE and PIM_GEMV, its DRAM bytes."""
    spads: tuple
    dram: DramAccess | None = None


def dma_spans(config, inst):
    """``(starts, length)``: the DRAM byte address of each row of a LOAD/STORE (int64 array, in
    transfer order) and the bytes per row."""
    addr, stride, rows = inst.dram_addr, inst.stride, inst.rows
    starts = (np.arange(addr, addr + stride * rows, stride, dtype=np.int64) if stride else
              np.full(rows, addr, np.int64))  # addr + stride * r, r = 0 .. rows - 1
    return starts, inst.words * config.word_bytes(inst.spad)


def footprint(config, inst, *, dram=True):
    """The :class:`Footprint` of ``inst`` on ``config`` (empty for NOP, SYNC and HALT).

    ``dram=False`` leaves out the DRAM rows (they cost an array per instruction; the token pass
    does not need them, see :data:`~mixpim.models.units.DRAM_UNITS`)."""
    cfg = config
    op = inst.op
    if op in (Opcode.LOAD, Opcode.STORE):
        load = op == Opcode.LOAD
        spad = inst.spad
        access = SpadAccess(spad, inst.spad_addr, inst.rows * inst.words, load, _SPAD_NAMES[spad])
        return Footprint((access,), DramAccess(*dma_spans(cfg, inst), not load) if dram else None)
    if op == Opcode.GEMM:
        groups = inst.groups
        beats = groups * cfg.group
        act = SpadAccess(Spad.ACT, inst.act_addr, beats, False, "ACT")
        acc = SpadAccess(Spad.ACC, inst.acc_addr, cfg.rows, True, "ACC")
        if inst.wsrc:
            return Footprint((act, SpadAccess(Spad.ACT, inst.wgt_addr, beats, False, "weight ACT"), acc))
        return Footprint((act, SpadAccess(Spad.WGT, inst.wgt_addr, beats, False, "WGT"),
                          SpadAccess(Spad.META, inst.meta_addr, groups, False, "META"), acc))
    if op == Opcode.VEC:
        return _vec(cfg, inst)
    if op == Opcode.VSOFT:
        return _vsoft(cfg, inst)
    if op == Opcode.VNORM:
        return _vnorm(cfg, inst)
    if op in _PIM_FOOTPRINTS:
        return _PIM_FOOTPRINTS[op](cfg, inst, dram)
    return Footprint(())


_PARTNER = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
_SPAD_NAMES = {s: s.name for s in Spad}


def _vec(cfg, inst):
    rows, func, cols, base = inst.rows, inst.func, cfg.cols, cfg.vparam_param_base
    out = [SpadAccess(Spad.ACC, inst.acc_addr, rows, False, "ACC")]
    if func == VecFunc.RES:
        out.append(SpadAccess(Spad.ACC, inst.res_addr, rows, True, "residual ACC"))
    else:
        out.append(SpadAccess(Spad.ACT, inst.act_addr, rows if inst.direct else cols, True, "ACT"))
    if func == VecFunc.ADD:
        out.append(SpadAccess(Spad.ACT, inst.res_addr, cols, False, "residual ACT"))
    if func in _PARTNER:
        out.append(SpadAccess(Spad.ACC, inst.res_addr, rows, False, "partner ACC"))
    two = func in _PARTNER or inst.bias  # the partner's multipliers or the biases follow
    out.append(SpadAccess(Spad.VPARAM, inst.param_addr, cols * (2 if two else 1), False, "VPARAM", base))
    out.append(SpadAccess(Spad.VPARAM, cfg.vparam_token_base, rows, False, "token VPARAM"))
    if func == VecFunc.GELU and not inst.fmt:
        out.append(SpadAccess(Spad.VPARAM, 0, VPARAM_LUT_WORDS, False, "GELU table"))
    if func in (VecFunc.ROPE_LO, VecFunc.ROPE_HI):
        out.append(SpadAccess(Spad.ACT, inst.table_addr, 2 * cols, False, "RoPE table ACT"))
    return Footprint(tuple(out))


def _vsoft(cfg, inst):
    count, base = inst.count, cfg.vparam_param_base
    if inst.col:  # words rows apart: one run covering them (conservative for conflicts)
        acc = SpadAccess(Spad.ACC, inst.acc_addr, (inst.words - 1) * cfg.rows + 1, False, "ACC")
    else:
        acc = SpadAccess(Spad.ACC, inst.acc_addr, inst.words, False, "ACC")
    out = [acc, SpadAccess(Spad.VPARAM, inst.kparam, count, False, "score VPARAM", base)]
    if inst.func == SoftFunc.NORM:
        out += [SpadAccess(Spad.VPARAM, inst.vparam, count, False, "V VPARAM", base),
                SpadAccess(Spad.ACT, inst.act_addr, norm_writes(cfg, inst), True, "ACT")]
    return Footprint(tuple(out))


def _vnorm(cfg, inst):
    rows, base = inst.rows, cfg.vparam_param_base
    out = [SpadAccess(Spad.ACC, inst.acc_addr, rows, False, "ACC")]
    if inst.func != NormFunc.SUM and not inst.rms:
        out.append(SpadAccess(Spad.VPARAM, inst.nparam, 1, False, "norm VPARAM", base))
    if inst.func == NormFunc.NORM:
        out.append(SpadAccess(Spad.VPARAM, inst.nparam, 2, False, "norm VPARAM", base))
        out.append(SpadAccess(Spad.VPARAM, inst.param_addr, 2 * cfg.cols, False, "VPARAM", base))
        if inst.to_acc:
            out.append(SpadAccess(Spad.ACC, inst.act_addr, rows, True, "output ACC"))
        else:
            out.append(SpadAccess(Spad.ACT, inst.act_addr, cfg.cols, True, "ACT"))
    return Footprint(tuple(out))


def _pim_dram(cfg, inst, banks, length, write):
    """The row segments of a PIM_WRITE / PIM_GEMV: ``length`` bytes from ``col`` of ``row`` in
    ``banks`` banks from ``bank`` of every channel, in ascending address order (bank by bank)."""
    return DramAccess(row_starts(cfg, inst, banks).T.reshape(-1), length, write)


def _pim_gbuf(cfg, inst, dram):
    words = gbuf_words(cfg, inst)
    chans = 1 if inst.act_stride == 0 else inst.chans
    return Footprint(tuple(SpadAccess(Spad.ACT, inst.act_addr + j * inst.act_stride, words, False,
                                      "ACT") for j in range(chans)))


def _pim_write(cfg, inst, dram):
    return Footprint((), _pim_dram(cfg, inst, 1, inst.len, True) if dram else None)


def _pim_gemv(cfg, inst, dram):
    return Footprint((), _pim_dram(cfg, inst, inst.banks, inst.n * inst.len, False) if dram else None)


def _pim_read(cfg, inst, dram):
    words = read_words(cfg, inst)
    out = []
    for j in range(inst.chans):
        first = inst.acc_addr + j * inst.chan_stride
        if inst.word_stride == 1:
            out.append(SpadAccess(Spad.ACC, first, words, True, "ACC"))
        else:
            out += [SpadAccess(Spad.ACC, first + w * inst.word_stride, 1, True, "ACC")
                    for w in range(words)]
    return Footprint(tuple(out))


_PIM_FOOTPRINTS = {Opcode.PIM_GBUF: _pim_gbuf, Opcode.PIM_WRITE: _pim_write,
                   Opcode.PIM_GEMV: _pim_gemv, Opcode.PIM_READ: _pim_read}
