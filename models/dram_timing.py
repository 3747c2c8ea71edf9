"""DRAM timing: channels x banks with per-bank row state, the one DRAM timing formula.

The memory is ``dram_channels`` channels of ``dram_banks`` banks (docs/tile.md, "DRAM"). Address
mapping of a byte address ``a``: ``g = a // row_bytes`` is the global DRAM row; channel
``g % channels``, bank ``(g // channels) % banks``, row ``g // (channels * banks)``, column
``a % row_bytes``. Consecutive rows of the address space rotate over the channels, then over the
banks, so a stream opens each row in another bank while the previous one transfers.

Time is absolute (cycles since the run's start): every bank remembers its open row, when it was
activated and when it was last accessed; every channel when its last column command was and in
which bank group, and its last four activations. A transfer's beats are column commands issued in
transfer order; a beat whose bank has another row open needs a precharge and an activation, which
are issued as early as the bank allows, ahead of the transfer (look-ahead from the instruction's
start), so activations of one bank overlap transfers of another:

* precharge at ``max(start, t_act + t_ras, t_last + 1)`` (a bank with no open row needs none);
* activation at ``max(precharge + t_rp, the channel's last activation + 1,
  its fourth-last activation + t_faw)`` (with no open row: ``max(start, ...)``);
* column command at ``max(previous beat + 1, start + DMA_SETUP_CYCLES, activation + t_rcd,
  the channel's last column command + (t_ccd_l if the same bank group else t_ccd_s))``.

A LOAD/STORE is busy from its start to its last column command plus ``t_cl`` (the data). The
cycle model (:mod:`.tile_timing`), the RTL DRAM model (``hw/dram.py``) and the compiler's
scheduler all use :func:`dma_cycles`.
"""

import numpy as np

__all__ = ["DMA_SETUP_CYCLES", "NO_ROW", "NEVER", "RowState", "DramTiming", "dma_cycles",
           "dram_location"]

#: Fixed cycles from a LOAD/STORE's start to its first column command, at the earliest.
DMA_SETUP_CYCLES = 2
#: Open row of a bank with none open (after reset).
NO_ROW = -1
#: Time of an event that never happened: far enough in the past to satisfy every constraint.
NEVER = -(1 << 40)


def dram_location(config, addr):
    """``(channel, bank, row, column)`` of DRAM byte address ``addr``."""
    cfg = config
    g, col = divmod(addr, cfg.dram_row_bytes)
    g, ch = divmod(g, cfg.dram_channels)
    row, bank = divmod(g, cfg.dram_banks)
    return ch, bank, row, col


class RowState:
    """Row buffers (``buffers`` per bank; entry ``(ch * banks + bank) * buffers + row % buffers``
    holds the rows of that parity, :meth:`entry`) and each channel's activation history: the state
    activations and precharges depend on.

    Members
    -------
    buffers : int
        Row buffers per bank: 1, or 2 for PIM row buffers of ``pim_row_buffers`` 2.
    open_rows, t_act, t_last : list of int
        Per entry: the open row (:data:`NO_ROW` for none), the cycle of its activation and of the
        last column access to it (:data:`NEVER` before the first).
    acts : list of list of int
        Per channel: the cycles of its last four activations, oldest first.
    """

    def __init__(self, config, buffers=1):
        n = config.dram_channels * config.dram_banks * buffers
        self.cfg = config
        self.buffers = buffers
        self.open_rows = [NO_ROW] * n
        self.t_act = [NEVER] * n
        self.t_last = [NEVER] * n
        self.acts = [[NEVER] * 4 for _ in range(config.dram_channels)]

    def copy(self):
        new = RowState.__new__(RowState)
        new.cfg, new.buffers = self.cfg, self.buffers
        new.open_rows, new.t_act, new.t_last = list(self.open_rows), list(self.t_act), list(self.t_last)
        new.acts = [list(w) for w in self.acts]
        return new

    def entry(self, bank, row):
        """The entry of bank ``bank`` (``ch * banks + bank``) that holds ``row``."""
        return bank * self.buffers + row % self.buffers

    def ready(self, idx, start):
        """When entry ``idx``'s open row can be accessed from ``start`` on: ``t_rcd`` after its
        activation (which a ``PIM_ACT`` may have issued ahead)."""
        return max(start, self.t_act[idx] + self.cfg.t_rcd)

    def activate(self, ch, idx, row, start):
        """Open ``row`` in entry ``idx`` of channel ``ch`` (precharging another open row) as early
        as the rules allow, not before ``start``; returns the activation cycle."""
        return self.activate_group(ch, (idx,), row, start)

    def activate_group(self, ch, idxs, row, start):
        """Open ``row`` in the entries ``idxs`` of channel ``ch`` with one command (one bank: a
        normal activation; several: a PIM ``G_ACT`` over banks of one bank group): an entry with
        another row open is precharged at ``max(start, t_act + t_ras, t_last + 1)``; the command
        comes at the latest of the entries' earliest cycles (``t_rp`` after a precharge, else
        ``start``) and the channel's window (one per cycle, four per ``t_faw``), counted once in
        it; returns the activation cycle."""
        cfg = self.cfg
        open_rows, t_act = self.open_rows, self.t_act
        earliest = start
        for idx in idxs:
            if open_rows[idx] != NO_ROW:
                pre = max(start, t_act[idx] + cfg.t_ras, self.t_last[idx] + 1)
                earliest = max(earliest, pre + cfg.t_rp)
        w = self.acts[ch]
        act = max(earliest, w[3] + 1, w[0] + cfg.t_faw)
        del w[0]
        w.append(act)
        for idx in idxs:
            open_rows[idx] = row
            t_act[idx] = act
        return act

    def open_rows_array(self):
        """The open rows as an int64 array (channels, banks), or (channels, banks, buffers) with
        two buffers per bank."""
        cfg = self.cfg
        shape = (cfg.dram_channels, cfg.dram_banks) + ((self.buffers,) if self.buffers > 1 else ())
        return np.array(self.open_rows, np.int64).reshape(shape)


class DramTiming:
    """The DRAM's timing state: the banks' normal row buffers (:class:`RowState`), their PIM row
    buffers and each channel's column-command history; :meth:`transfer` times a DMA's beats.

    Members
    -------
    rows : RowState
        The normal row buffers (the DMA's).
    pim_rows : RowState
        The PIM row buffers: a second :class:`RowState` of ``pim_row_buffers`` buffers per bank in
        ``pim_mode`` "dual", the same object as ``rows`` in "single" (one row buffer per bank,
        docs/pim.md).
    t_col, bg_col : list of int
        Per channel: the cycle of its last column command and that command's bank group (-1
        before the first).
    """

    def __init__(self, config):
        self.cfg = config
        self.rows = RowState(config)
        self.pim_rows = (RowState(config, config.pim_row_buffers) if config.pim_mode == "dual"
                         else self.rows)
        self.t_col = [NEVER] * config.dram_channels
        self.bg_col = [-1] * config.dram_channels

    def copy(self):
        new = DramTiming.__new__(DramTiming)
        new.cfg, new.rows = self.cfg, self.rows.copy()
        new.pim_rows = new.rows if self.pim_rows is self.rows else self.pim_rows.copy()
        new.t_col, new.bg_col = list(self.t_col), list(self.bg_col)
        return new

    @property
    def open_rows(self):
        """Open row of every bank, int64 array (channels, banks)."""
        return self.rows.open_rows_array()

    def _pieces(self, addr, stride, rows, length):
        """Global DRAM row and beat count of every (transfer row, DRAM row) piece, in order, as
        two lists; consecutive pieces in one DRAM row are merged (the later beats are hits)."""
        cfg = self.cfg
        bus, cpr = cfg.dram_bus_bytes, cfg.dram_row_bytes // cfg.dram_bus_bytes
        if rows == 1 or (stride == length and addr % bus == 0 and length % bus == 0):
            # one contiguous run: whole DRAM rows between a partial first and last
            c0, c1 = addr // bus, (addr + rows * length - 1) // bus
            g0, g1 = c0 // cpr, c1 // cpr
            if g0 == g1:
                return [g0], [c1 - c0 + 1]
            beats = [cpr] * (g1 - g0 + 1)
            beats[0] = (g0 + 1) * cpr - c0
            beats[-1] = c1 - g1 * cpr + 1
            return list(range(g0, g1 + 1)), beats
        rows_, beats = [], []
        for a in range(addr, addr + stride * rows, stride) if stride else [addr] * rows:
            c0 = a // bus  # the row's first and last bus beat
            c1 = (a + length - 1) // bus
            for g in range(c0 // cpr, c1 // cpr + 1):
                m = min(c1, (g + 1) * cpr - 1) - max(c0, g * cpr) + 1
                if rows_ and rows_[-1] == g:
                    beats[-1] += m
                else:
                    rows_.append(g)
                    beats.append(m)
        return rows_, beats

    def transfer(self, start, addr, stride, rows, length):
        """The cycle of the last column command of a transfer starting at cycle ``start``:
        ``rows`` rows of ``length`` bytes at ``addr + r * stride``, each row the bus beats
        (bus-aligned chunks) it touches, in order. Updates the state."""
        cfg = self.cfg
        nch, nb, ng = cfg.dram_channels, cfg.dram_banks, cfg.dram_bank_groups
        t_rcd, t_ccd_s, t_ccd_l = cfg.t_rcd, cfg.t_ccd_s, cfg.t_ccd_l
        t_ras, t_rp, t_faw = cfg.t_ras, cfg.t_rp, cfg.t_faw
        rs = self.rows
        open_rows, t_act, t_last, acts = rs.open_rows, rs.t_act, rs.t_last, rs.acts
        t_col, bg_col = self.t_col, self.bg_col
        prev = start + DMA_SETUP_CYCLES - 1
        # RowState.activate of one entry and ready, inlined: this loop runs once per DRAM row a
        # transfer touches, the cycle model's and the scheduler's hottest path
        for g, m in zip(*self._pieces(addr, stride, rows, length)):
            gc, ch = divmod(g, nch)
            r, bank = divmod(gc, nb)
            idx = ch * nb + bank
            bg = bank % ng
            col = prev + 1
            if open_rows[idx] != r:
                earliest = start
                if open_rows[idx] != NO_ROW:
                    pre = t_act[idx] + t_ras
                    if start > pre:
                        pre = start
                    if t_last[idx] + 1 > pre:
                        pre = t_last[idx] + 1
                    if pre + t_rp > earliest:
                        earliest = pre + t_rp
                w = acts[ch]
                act = earliest
                if w[3] + 1 > act:
                    act = w[3] + 1
                if w[0] + t_faw > act:
                    act = w[0] + t_faw
                del w[0]
                w.append(act)
                open_rows[idx] = r
                t_act[idx] = act
                if act + t_rcd > col:
                    col = act + t_rcd
            elif t_act[idx] + t_rcd > col:  # a row a PIM_ACT opened ahead (single mode) may still be opening
                col = t_act[idx] + t_rcd
            tc = t_col[ch] + (t_ccd_l if bg_col[ch] == bg else t_ccd_s)
            if tc > col:
                col = tc
            prev = col + (m - 1) * t_ccd_l
            t_col[ch] = prev
            bg_col[ch] = bg
            t_last[idx] = prev
        return prev


def dma_cycles(dram, start, dram_addr, stride, rows, row_bytes):
    """Busy cycles of one LOAD/STORE starting at cycle ``start`` (``rows`` rows of ``row_bytes``
    bytes, ``stride`` apart from ``dram_addr``) on ``dram`` (a :class:`DramTiming`, which it
    updates): from the start to the last column command plus ``t_cl``."""
    return dram.transfer(start, dram_addr, stride, rows, row_bytes) + dram.cfg.t_cl + 1 - start
