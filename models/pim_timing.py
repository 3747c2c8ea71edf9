"""Cycles of the PIM instructions (docs/pim.md, "Timing"): the one PIM timing formula, used by
the cycle model (:mod:`.tile_timing`), the RTL PIM unit's checks and the compiler's scheduler.

A PIM instruction starting in cycle s spends ``PIM_SETUP_CYCLES`` before its first access, like
a LOAD/STORE. Its banks' PIM row buffers (:attr:`~.dram_timing.DramTiming.pim_rows`: the normal
ones in single mode; with ``pim_row_buffers`` 2, row ``r`` in buffer ``r % 2`` of its bank) follow
the DRAM rules of :mod:`.dram_timing`, except that the banks of one bank group are activated
together by one command (a ``G_ACT``, counted once in the channel's four-activation window): per
channel, bank group by bank group, the banks whose buffer holds another row are precharged
(``t_ras`` after their activation, after their last access) and activated as early as allowed
from s (``t_rp``; one command per cycle, four per ``t_faw``), ready ``t_rcd`` later; a buffer that
holds the row already is ready ``t_rcd`` after its activation (at once unless a ``PIM_ACT``
issued it ahead).

* ``PIM_GBUF``: ``2 + max(ACT words read, beats * t_ccd_s) + t_cl``, where the ACT words read are
  one channel's (``len``, or ``ceil(len / rows)`` packed) when ``act_stride`` is 0 (every
  channel takes its bytes from the same words) and ``chans`` times that otherwise, and ``beats =
  ceil(len / dram_bus_bytes)`` per channel bus (the channels' buses work in parallel). Both
  count values, one buffer byte each: on an FP16 tile an ACT lane holds 16 bits but enters the
  buffer as one INT8 byte, so an FP16 tile's PIM timing is an INT8 tile's.
* ``PIM_WRITE``: per channel, the bus-sized chunks of the row it touches are written one per
  ``t_ccd_l`` from ``max(s + 2, activation + t_rcd)``; busy until the last channel's last chunk
  plus ``t_cl``.
* ``PIM_GEMV``: every bank of every channel opens the row; the MAC steps run in lock step from
  ``c0 = max(s + 2, every bank's activation + t_rcd)``, one per ``t_ccd_l`` (the bank's column
  rate), ``n * len / pim_lanes`` of them; busy through the last step.
* ``PIM_ACT``: the G_ACTs as above, issued (recorded) in the row state; busy
  ``PIM_SETUP_CYCLES + 1`` cycles whenever they happen.
* ``PIM_READ``: ``2 + max(ACC words written, beats * t_ccd_s) + t_cl``: ``chans * ceil(values /
  cols)`` ACC words through one write port, ``ceil(4 * values / dram_bus_bytes)`` beats per
  channel bus.

:func:`pim_exclusive` says which PIM instructions and LOAD/STORE block each other.
"""

from .isa import Opcode
from .pim import PIM_ACC_BITS, gbuf_words, read_values, read_words

__all__ = ["PIM_SETUP_CYCLES", "pim_exclusive", "pim_cycles"]

#: Cycles from a PIM instruction's start to its first access, at the earliest.
PIM_SETUP_CYCLES = 2


def pim_exclusive(config, op):
    """Whether PIM instruction ``op`` and a LOAD/STORE may not execute at the same time: in single
    mode every PIM instruction (the banks have one row buffer; the memory is in PIM mode or in
    normal mode; a PIM_ACT's activations outlast it), in dual mode those that use the channels'
    data buses (PIM_GBUF, PIM_READ)."""
    return config.pim_mode == "single" or op in (Opcode.PIM_GBUF, Opcode.PIM_READ)


def _ceil(a, b):
    return -(-a // b)


def pim_cycles(dram, start, inst):
    """Busy cycles of PIM instruction ``inst`` starting at cycle ``start`` on ``dram`` (a
    :class:`~.dram_timing.DramTiming`, whose PIM row state it updates)."""
    cfg = dram.cfg
    op = inst.op
    first = start + PIM_SETUP_CYCLES
    if op == Opcode.PIM_GBUF:
        reads = gbuf_words(cfg, inst) * (1 if inst.act_stride == 0 else inst.chans)
        beats = _ceil(inst.len, cfg.dram_bus_bytes)
        return PIM_SETUP_CYCLES + max(reads, beats * cfg.t_ccd_s) + cfg.t_cl
    if op == Opcode.PIM_READ:
        writes = inst.chans * read_words(cfg, inst)
        beats = _ceil(read_values(inst) * PIM_ACC_BITS // 8, cfg.dram_bus_bytes)
        return PIM_SETUP_CYCLES + max(writes, beats * cfg.t_ccd_s) + cfg.t_cl
    rs = dram.pim_rows
    nb, ng = cfg.dram_banks, cfg.dram_bank_groups
    row, lo = inst.row, inst.bank
    hi = lo + (1 if op == Opcode.PIM_WRITE else inst.banks)
    banks = range(lo, hi)
    open_rows, t_act, t_rcd = rs.open_rows, rs.t_act, cfg.t_rcd
    bufs = rs.buffers
    sub = row % bufs  # the buffer of a bank that holds row (RowState.entry)
    ready = {}  # per channel: when every bank it uses has the row open
    for ch in range(inst.ch, inst.ch + inst.chans):
        r = first
        for group in range(ng):  # one G_ACT per bank group, in group order
            idxs = []
            for b in range(lo + (group - lo) % ng, hi, ng):  # the group's banks, in order
                idx = (ch * nb + b) * bufs + sub
                if open_rows[idx] != row:
                    idxs.append(idx)
                elif t_act[idx] + t_rcd > r:  # open, perhaps still opening (a PIM_ACT's)
                    r = t_act[idx] + t_rcd
            if idxs:
                r = max(r, rs.activate_group(ch, idxs, row, start) + t_rcd)
        ready[ch] = r
    if op == Opcode.PIM_ACT:  # the G_ACTs are issued; the unit does not wait for them
        return PIM_SETUP_CYCLES + 1
    if op == Opcode.PIM_WRITE:  # each channel writes its one bank on its own
        bus = cfg.dram_bus_bytes
        chunks = (inst.col + inst.len - 1) // bus - inst.col // bus + 1
        last = start
        for ch, r in ready.items():
            end = r + (chunks - 1) * cfg.t_ccd_l
            rs.t_last[rs.entry(ch * nb + inst.bank, inst.row)] = end
            last = max(last, end)
        return last + cfg.t_cl + 1 - start
    # PIM_GEMV: the MAC steps of every bank in lock step
    steps = inst.n * inst.len // cfg.pim_lanes
    last = max(ready.values()) + (steps - 1) * cfg.t_ccd_l
    t_last = rs.t_last
    for ch in ready:
        for bank in banks:
            t_last[(ch * nb + bank) * bufs + sub] = last
    return last + 1 - start
