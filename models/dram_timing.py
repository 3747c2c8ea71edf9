"""DRAM bank state and the cost of a DMA's bus beats: the one DRAM timing formula.

The cycle model (:mod:`.tile_timing`) charges every LOAD/STORE ``DMA_SETUP_CYCLES`` plus what
:meth:`DramBanks.transfer_rows` returns; the RTL DRAM model (``hw/dram.py``) is cycle-exact against
it and the compiler's scheduler estimates its DMA timeline with it (docs/tile.md, "DRAM").

Per transfer row the bytes are cut into pieces, one per DRAM row touched; a piece costs one
``t_ccd`` per bus beat and ``t_cl`` once, plus ``t_rcd`` when its bank has another row open (and
``t_rp`` when that bank had a row open at all). The last piece of each bank stays open.
"""

import numpy as np

__all__ = ["DMA_SETUP_CYCLES", "NO_ROW", "DramBanks", "dma_cycles"]

#: Fixed cycles of every LOAD/STORE on top of its bus beats.
DMA_SETUP_CYCLES = 2
#: ``open_rows`` value of a bank with no open row (after reset).
NO_ROW = -1


class DramBanks:
    """DRAM bank state (the open row of each bank) and the DMA beat-cost formula.

    Arguments
    ---------
    config : TileConfig

    Members
    -------
    open_rows : int64 array (banks,)
        Open row of each bank, -1 for none (after reset).
    """

    def __init__(self, config):
        self.cfg = config
        self.open_rows = np.full(config.dram_banks, NO_ROW, dtype=np.int64)

    def _pieces(self, starts, length):
        """Global DRAM row index and beat count of every (transfer row, DRAM row) piece."""
        cfg = self.cfg
        bus, cpr = cfg.dram_bus_bytes, cfg.dram_row_bytes // cfg.dram_bus_bytes
        c0 = starts // bus
        c1 = (starts + length - 1) // bus
        g0, g1 = c0 // cpr, c1 // cpr
        npieces = g1 - g0 + 1
        if len(starts) == 1 and npieces[0] == 1:
            return g0, c1 - c0 + 1
        row = np.repeat(np.arange(len(starts)), npieces)
        first = np.cumsum(npieces) - npieces
        g = g0[row] + (np.arange(len(row)) - first[row])
        beats = np.minimum(c1[row], (g + 1) * cpr - 1) - np.maximum(c0[row], g * cpr) + 1
        return g, beats

    def transfer_rows(self, addr, stride, rows, length):
        """Cycles of a DMA's bus beats (rows of ``length`` bytes at ``addr + r * stride``),
        without the setup cycles; updates the open rows. Same result as :meth:`transfer`."""
        bus = self.cfg.dram_bus_bytes
        if rows == 1 or (stride == length and addr % bus == 0 and length % bus == 0):
            return self._contiguous(addr, rows * length)
        return self.transfer(addr + stride * np.arange(rows, dtype=np.int64), length)

    def _contiguous(self, addr, length):
        # One span: its pieces are consecutive DRAM rows g0..g1, each a new run. Only a bank's
        # first piece can find its row open; later pieces of a bank are misses with precharge.
        cfg = self.cfg
        bus, rb, nb = cfg.dram_bus_bytes, cfg.dram_row_bytes, cfg.dram_banks
        c0, c1 = addr // bus, (addr + length - 1) // bus
        g0, g1 = c0 * bus // rb, c1 * bus // rb
        pieces = g1 - g0 + 1
        cycles = (c1 - c0 + 1) * cfg.t_ccd + pieces * cfg.t_cl
        cycles += (pieces - min(pieces, nb)) * (cfg.t_rcd + cfg.t_rp)
        open_rows = self.open_rows
        for g in range(g0, g0 + min(pieces, nb)):
            b, r = g % nb, g // nb
            o = int(open_rows[b])
            if o != r:
                cycles += cfg.t_rcd + (cfg.t_rp if o != NO_ROW else 0)
        for g in range(max(g0, g1 - nb + 1), g1 + 1):  # the last piece of each bank stays open
            open_rows[g % nb] = g // nb
        return cycles

    def transfer(self, starts, length):
        """Cycles of the bus beats moving ``length`` bytes at each address in ``starts`` (in
        order), without the setup cycles; updates the open rows."""
        cfg = self.cfg
        g, beats = self._pieces(np.asarray(starts, dtype=np.int64), length)
        nb = cfg.dram_banks
        bank, drow = g % nb, g // nb
        if len(g) <= 16:  # short transfers: a plain loop beats numpy's call overhead
            cycles = int(beats.sum()) * cfg.t_ccd
            open_rows = self.open_rows
            prev = None
            for gi, b, r in zip(g.tolist(), bank.tolist(), drow.tolist()):
                if gi != prev:
                    cycles += cfg.t_cl
                    o = int(open_rows[b])
                    if o != r:
                        cycles += cfg.t_rcd + (cfg.t_rp if o != NO_ROW else 0)
                        open_rows[b] = r
                prev = gi
            return cycles
        run = np.ones(len(g), bool)
        run[1:] = g[1:] != g[:-1]
        # the row open in each piece's bank just before it: the previous piece of that bank in
        # this transfer, or the bank's state before the transfer
        order = np.argsort(bank, kind="stable")
        sb, sr = bank[order], drow[order]
        before_sorted = np.empty(len(g), np.int64)
        before_sorted[1:] = sr[:-1]
        head = np.ones(len(g), bool)
        head[1:] = sb[1:] != sb[:-1]
        before_sorted[head] = self.open_rows[sb[head]]
        before = np.empty_like(before_sorted)
        before[order] = before_sorted
        miss = before != drow
        cycles = (int(beats.sum()) * cfg.t_ccd + int(run.sum()) * cfg.t_cl
                  + int(miss.sum()) * cfg.t_rcd + int((miss & (before != NO_ROW)).sum()) * cfg.t_rp)
        last = np.ones(len(g), bool)
        last[:-1] = sb[1:] != sb[:-1]
        self.open_rows[sb[last]] = sr[last]
        return cycles


def dma_cycles(banks, dram_addr, stride, rows, row_bytes):
    """Busy cycles of one LOAD/STORE (``rows`` rows of ``row_bytes`` bytes, ``stride`` apart from
    ``dram_addr``) on ``banks``, whose open rows it updates: ``DMA_SETUP_CYCLES`` plus the bus
    beats."""
    return DMA_SETUP_CYCLES + banks.transfer_rows(dram_addr, stride, rows, row_bytes)
