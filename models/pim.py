"""The PIM banks: where PIM data lives, what each PIM instruction computes, and which PIM operands
are legal (docs/pim.md).

Every DRAM channel has a **global buffer** of ``pim_gbuf_bytes`` bytes (the input vector, INT8)
and every bank ``pim_res_regs`` **result registers** (32-bit two's complement accumulators) and
``pim_lanes`` MAC lanes that compute on the bank's open PIM row. PIM data (the KV cache) lives in
ordinary DRAM rows: row ``row`` of bank ``bank`` in channel ``ch`` holds DRAM bytes
:func:`pim_row_addr` ``.. + dram_row_bytes``, so LOAD/STORE and segments reach it too.

* ``PIM_GBUF``: channel ``ch + j`` (j < ``chans``) gets ``len`` bytes at ``gaddr``: lane
  ``lane + j`` of ACT words ``act_addr + j * act_stride + i`` (gather), or the lanes of ACT words
  ``act_addr + j * act_stride ..`` in lane order, ``rows`` per word (packed). A lane is an INT8
  byte, or on FP16 tiles a 16-bit FP16 value converted to INT8 on its way into the buffer
  (:func:`~.vector.fp16_bits_to_int8`: rounded half up, saturated, inf/NaN 0): the vector unit
  writes INT8 queries and probabilities there as FP16 integers (:func:`act_lanes`).
* ``PIM_WRITE``: each channel copies ``len`` buffer bytes from ``gaddr`` into its bank ``bank``,
  row ``row``, from byte ``col``.
* ``PIM_GEMV``: in each channel, each bank ``bank .. bank + banks - 1`` reads ``n * len`` INT8
  bytes of row ``row`` from ``col`` as ``n`` vectors of ``len``; with the buffer's INT8 elements
  from ``gaddr``: **dot** ``res[res + r] (+)= sum_i row[col + r*len + i] * gbuf[gaddr + i]``
  (r < n), **bcast** ``res[res + e] (+)= sum_t gbuf[gaddr + k*n + t] * row[col + t*len + e]``
  (e < len; k = the bank's position in the instruction: each bank takes its own ``n`` buffer
  elements). Products are exact (16 bits), sums wrap at 32 bits like the registers.
* ``PIM_ACT``: no data effect; it opens ``row`` in the PIM row buffers of banks ``bank ..
  bank + banks - 1`` of each channel ahead of a PIM_WRITE / PIM_GEMV (:mod:`.pim_timing`).
* ``PIM_READ``: each channel's values -- the ``n`` registers from ``res`` of banks ``bank ..``,
  bank after bank, or (``reduce``) their sum over the banks, wrapped at 32 bits -- are written
  ``cols`` per ACC word (zero padded) to ACC word ``acc_addr + j * chan_stride + w *
  word_stride``, sign-extended (or wrapped) to ``acc_bits``.
"""

import numpy as np

from .isa import ErrorCode, Opcode
from .vector import fp16_bits_to_int8

__all__ = ["PIM_OPS", "PIM_ACC_BITS", "pim_row_addr", "PimState", "pim_problem", "gbuf_words",
           "gemv_extent", "read_values", "read_words", "row_starts", "act_lanes", "apply_pim"]

#: The PIM unit's opcodes.
PIM_OPS = (Opcode.PIM_GBUF, Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_READ, Opcode.PIM_ACT)
#: Width of a result register (two's complement; sums wrap).
PIM_ACC_BITS = 32


def pim_row_addr(config, ch, bank, row):
    """DRAM byte address of byte 0 of ``row`` in ``bank`` of channel ``ch`` (the address mapping of
    :mod:`.dram_timing`, inverted)."""
    cfg = config
    return ((row * cfg.dram_banks + bank) * cfg.dram_channels + ch) * cfg.dram_row_bytes


def gbuf_words(config, inst):
    """ACT words one channel of a ``PIM_GBUF`` reads: ``len`` (gather) or ``ceil(len / rows)``
    (``rows`` lanes per word, one buffer byte each, INT8 or FP16 tile alike)."""
    return -(-inst.len // config.rows) if inst.packed else inst.len


def gemv_extent(inst):
    """``(buffer elements, result registers)`` a ``PIM_GEMV`` uses: ``(len, n)`` for dot,
    ``(banks * n, len)`` for bcast (each bank its own ``n`` elements)."""
    return (inst.banks * inst.n, inst.len) if inst.bcast else (inst.len, inst.n)


def read_values(inst):
    """Values per channel a ``PIM_READ`` writes: ``n`` (reduce) or ``banks * n``."""
    return inst.n if inst.reduce else inst.banks * inst.n


def read_words(config, inst):
    """ACC words per channel a ``PIM_READ`` writes: its values, ``cols`` per word."""
    return -(-read_values(inst) // config.cols)


def _span(lo, n):
    return f"{lo}..{lo + n - 1}"


def pim_problem(config, inst):
    """``(ErrorCode, message)`` for the first PIM operand of ``inst`` out of range on ``config``,
    or None (docs/pim.md, "Errors"); scratchpad ranges are the footprint's (``SPAD_RANGE``)."""
    cfg = config
    op = inst.op
    name = op.name
    bad = ErrorCode.PIM_RANGE
    if inst.ch + inst.chans > cfg.dram_channels:
        return bad, (f"{name} channels {_span(inst.ch, inst.chans)} leave the DRAM's "
                     f"{cfg.dram_channels} channels")
    if op in (Opcode.PIM_GEMV, Opcode.PIM_READ, Opcode.PIM_ACT) and \
            inst.bank + inst.banks > cfg.dram_banks:
        return bad, (f"{name} banks {_span(inst.bank, inst.banks)} leave the channel's "
                     f"{cfg.dram_banks} banks")
    if op == Opcode.PIM_WRITE and inst.bank >= cfg.dram_banks:
        return bad, f"{name} bank {inst.bank} is beyond the channel's {cfg.dram_banks} banks"
    if op in (Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_ACT) and inst.row >= cfg.dram_rows:
        return bad, f"{name} row {inst.row} is beyond the banks' {cfg.dram_rows} rows"
    gbuf, row_bytes = cfg.pim_gbuf_bytes, cfg.dram_row_bytes
    if op == Opcode.PIM_GBUF:
        if inst.gaddr + inst.len > gbuf:
            return bad, f"{name} buffer bytes {_span(inst.gaddr, inst.len)} leave the {gbuf}-byte buffer"
        if not inst.packed and inst.lane + inst.chans > cfg.rows:
            return bad, (f"{name} ACT lanes {_span(inst.lane, inst.chans)} leave the {cfg.rows} lanes "
                         f"of an ACT word")
    elif op == Opcode.PIM_WRITE:
        if inst.col + inst.len > row_bytes:
            return bad, f"{name} row bytes {_span(inst.col, inst.len)} leave the {row_bytes}-byte row"
        if inst.gaddr + inst.len > gbuf:
            return bad, f"{name} buffer bytes {_span(inst.gaddr, inst.len)} leave the {gbuf}-byte buffer"
    elif op == Opcode.PIM_GEMV:
        lanes = cfg.pim_lanes
        for field in ("len", "col") + (() if inst.bcast else ("gaddr",)):
            if inst[field] % lanes:
                return bad, f"{name} {field} {inst[field]} is not a multiple of pim_lanes ({lanes})"
        if inst.col + inst.n * inst.len > row_bytes:
            return bad, (f"{name} row bytes {_span(inst.col, inst.n * inst.len)} leave the "
                         f"{row_bytes}-byte row")
        elems, regs = gemv_extent(inst)
        if inst.gaddr + elems > gbuf:
            return bad, f"{name} buffer bytes {_span(inst.gaddr, elems)} leave the {gbuf}-byte buffer"
        if inst.res + regs > cfg.pim_res_regs:
            return bad, (f"{name} result registers {_span(inst.res, regs)} leave the "
                         f"{cfg.pim_res_regs} registers")
    elif op == Opcode.PIM_READ and inst.res + inst.n > cfg.pim_res_regs:
        return bad, (f"{name} result registers {_span(inst.res, inst.n)} leave the "
                     f"{cfg.pim_res_regs} registers")
    return None


def _wrap32(v):
    v = np.asarray(v, np.int64) & 0xFFFFFFFF
    return np.where(v >= 1 << 31, v - (1 << 32), v)


class PimState:
    """The PIM unit's own state: ``gbuf`` uint8 (channels, pim_gbuf_bytes) and ``res`` int64
    (channels, banks, pim_res_regs), values in the int32 range; all zero after reset."""

    def __init__(self, config):
        cfg = config
        self.gbuf = np.zeros((cfg.dram_channels, cfg.pim_gbuf_bytes), np.uint8)
        self.res = np.zeros((cfg.dram_channels, cfg.dram_banks, cfg.pim_res_regs), np.int64)


def row_starts(config, inst, banks):
    """DRAM byte address (int64 (chans, banks)) of byte ``col`` of ``row`` in each of ``banks``
    banks from ``bank`` of each channel of a PIM_WRITE (``banks`` 1) or PIM_GEMV."""
    ch = inst.ch + np.arange(inst.chans, dtype=np.int64)
    bank = inst.bank + np.arange(banks, dtype=np.int64)
    return pim_row_addr(config, ch[:, None], bank[None, :], inst.row) + inst.col


def _rows(cfg, inst, banks, nbytes):
    """DRAM byte indices (chans, banks, nbytes) of the row segments of ``inst``."""
    return row_starts(cfg, inst, banks)[:, :, None] + np.arange(nbytes, dtype=np.int64)


def act_lanes(config, words):
    """The INT8 values (int8 (words, rows)) a PIM_GBUF takes from ACT words (uint8 (words,
    act_word_bytes)): the bytes of an INT8 tile; on an FP16 tile each little-endian 16-bit lane
    converted by :func:`~.vector.fp16_bits_to_int8`."""
    w = np.ascontiguousarray(words, np.uint8)
    if config.act_format == "int8":
        return w.view(np.int8)
    return fp16_bits_to_int8(w.view("<u2")).astype(np.int8)


def apply_pim(config, state, dram, act, acc, wrap_acc, inst):
    """Apply PIM instruction ``inst`` to ``state`` (:class:`PimState`), ``dram`` (uint8 array),
    ``act`` (ACT words, uint8 (words, act_word_bytes)) and ``acc`` (ACC, (words, cols));
    ``wrap_acc(values)`` wraps integers to ``acc_bits``."""
    cfg = config
    op = inst.op
    chans = range(inst.chans)
    if op == Opcode.PIM_GBUF:
        for j in chans:
            base = inst.act_addr + j * inst.act_stride
            if inst.packed:  # the words' lanes in lane order
                vals = act_lanes(cfg, act[base:base + gbuf_words(cfg, inst)]).reshape(-1)[:inst.len]
            else:
                vals = act_lanes(cfg, act[base:base + inst.len])[:, inst.lane + j]
            state.gbuf[inst.ch + j, inst.gaddr:inst.gaddr + inst.len] = vals.view(np.uint8)
    elif op == Opcode.PIM_WRITE:
        idx = _rows(cfg, inst, 1, inst.len)[:, 0]
        dram[idx] = state.gbuf[inst.ch:inst.ch + inst.chans, inst.gaddr:inst.gaddr + inst.len]
    elif op == Opcode.PIM_GEMV:
        n, length = inst.n, inst.len
        seg = dram[_rows(cfg, inst, inst.banks, n * length)].view(np.int8).astype(np.int64)
        seg = seg.reshape(inst.chans, inst.banks, n, length)
        elems = gemv_extent(inst)[0]
        g = state.gbuf[inst.ch:inst.ch + inst.chans, inst.gaddr:inst.gaddr + elems]
        g = g.view(np.int8).astype(np.int64)
        if inst.bcast:  # (chans, banks, len): bank k's n elements against its n row vectors
            out = np.einsum("cbtl,cbt->cbl", seg, g.reshape(inst.chans, inst.banks, n))
        else:  # (chans, banks, n): one dot product per row vector
            out = np.einsum("cbrl,cl->cbr", seg, g)
        regs = slice(inst.res, inst.res + out.shape[2])
        dst = state.res[inst.ch:inst.ch + inst.chans, inst.bank:inst.bank + inst.banks, regs]
        state.res[inst.ch:inst.ch + inst.chans, inst.bank:inst.bank + inst.banks, regs] = \
            _wrap32(out + dst if inst.accumulate else out)
    elif op == Opcode.PIM_READ:
        cols = cfg.cols
        vals = state.res[inst.ch:inst.ch + inst.chans, inst.bank:inst.bank + inst.banks,
                         inst.res:inst.res + inst.n]
        vals = _wrap32(vals.sum(axis=1)) if inst.reduce else vals.reshape(inst.chans, -1)
        words = -(-vals.shape[1] // cols)
        padded = np.zeros((inst.chans, words * cols), np.int64)
        padded[:, :vals.shape[1]] = vals
        padded = wrap_acc(padded.reshape(inst.chans, words, cols))
        for j in chans:  # in order: where words coincide, the later write wins
            for w in range(words):
                acc[inst.acc_addr + j * inst.chan_stride + w * inst.word_stride] = padded[j, w]
    elif op != Opcode.PIM_ACT:  # PIM_ACT only times the row buffers
        raise ValueError(f"{op.name} is not a PIM instruction")
