"""The PIM global buffers: one of ``pim_gbuf_bytes`` bytes per DRAM channel (docs/pim.md).

A buffer is accessed as up to :func:`gbuf_access_bytes` (``A``) consecutive bytes from any byte
address, the same address in every channel: a ``PIM_GBUF`` writes up to an ACT word's ``rows``
lanes (one INT8 byte each; an FP16 tile's lanes are converted before they get here), a
``PIM_WRITE`` reads up to a bus word's, a dot ``PIM_GEMV`` ``pim_lanes`` of them (``pim_lanes
<= dram_bus_bytes``); and as one byte per bank (``e_addr[b]``, the same in every channel): a
bcast ``PIM_GEMV`` broadcasts its own element to each bank. So each buffer is ``A`` byte lanes,
lane ``b`` holding the bytes at addresses
``b (mod A)``, ``pim_gbuf_bytes / A`` of them: an access at ``addr`` reaches byte ``k`` in lane
``(addr + k) % A``, entry ``(addr + k) // A``, i.e. every lane once, and rotates the lanes by
``addr % A``. An access past the buffer's end wraps to its start (the dispatch checks keep legal
instructions inside).

The bytes are flip-flops, zero after reset: the tile resets the PIM unit at a run's start and the
golden model's buffers start at zero (:class:`mixpim.models.pim.PimState`).

Read: combinational (latency 0). Write: at the clock edge.
"""

from amaranth.hdl import Array, Cat, Module, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .common import ConfigComponent

__all__ = ["gbuf_access_bytes", "GlobalBuffers"]


def gbuf_access_bytes(config):
    """``A``: the most bytes one access touches (a power of two): an ACT word's ``rows`` lanes, a
    byte each (a packed ``PIM_GBUF`` writes one word per cycle; FP16 lanes arrive converted to
    INT8) or a bus word's (a ``PIM_WRITE`` chunk), at most the buffer."""
    most = max(config.rows, config.dram_bus_bytes)
    return min(1 << ceil_log2(most), config.pim_gbuf_bytes)


class GlobalBuffers(ConfigComponent):
    """Every channel's global buffer (module docstring).

    Arguments
    ---------
    config : TileConfig

    Members
    -------
    r_addr : In(range(pim_gbuf_bytes)), first byte read
    r_data : Out(ArrayLayout(8 * A, dram_channels)), per channel: bytes ``r_addr ..
        r_addr + A - 1`` (byte ``k`` in bits ``8k ..``), combinational
    w_addr : In(range(pim_gbuf_bytes)), first byte written
    w_len : In(range(A + 1)), bytes written: ``w_data`` bytes ``0 .. w_len - 1``
    w_en : In(dram_channels), the channels written
    w_data : In(ArrayLayout(8 * A, dram_channels)), per channel
    e_addr : In(ArrayLayout(range(pim_gbuf_bytes), dram_banks)), one byte address per bank
    e_data : Out(ArrayLayout(ArrayLayout(8, dram_banks), dram_channels)), per channel and bank:
        byte ``e_addr[bank]``, combinational
    """

    def _members(self, config):
        a, nch = gbuf_access_bytes(config), config.dram_channels
        return {
            "r_addr": In(range(config.pim_gbuf_bytes)),
            "r_data": Out(data.ArrayLayout(unsigned(8 * a), nch)),
            "w_addr": In(range(config.pim_gbuf_bytes)),
            "w_len": In(range(a + 1)),
            "w_en": In(nch),
            "w_data": In(data.ArrayLayout(unsigned(8 * a), nch)),
            "e_addr": In(data.ArrayLayout(range(config.pim_gbuf_bytes), config.dram_banks)),
            "e_data": Out(data.ArrayLayout(data.ArrayLayout(unsigned(8), config.dram_banks),
                                           nch)),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        a = gbuf_access_bytes(cfg)
        la = exact_log2(a)
        depth = cfg.pim_gbuf_bytes // a
        m = Module()

        def entries(addr):
            """Per lane: the entry an access from ``addr`` reaches, and the lane rotation."""
            off = addr[:la]
            # lane b is one entry further when off > b (never for the last lane: no constant
            # comparison, which Verilator's lint flags)
            return [(addr[la:] + (off > b))[:exact_log2(depth)] if b < a - 1 else
                    addr[la:][:exact_log2(depth)] for b in range(a)], off

        r_entry, r_off = entries(self.r_addr)
        w_entry, w_off = entries(self.w_addr)
        for ch in range(cfg.dram_channels):
            store = [[Signal(8, name=f"gbuf_{ch}_{b}_{e}") for e in range(depth)]
                     for b in range(a)]
            lanes = [Array(entries_) for entries_ in store]
            # one byte per bank: address e * A + b is lane b, entry e
            flat = Array(store[x % a][x // a] for x in range(cfg.pim_gbuf_bytes))
            for b in range(cfg.dram_banks):
                m.d.comb += self.e_data[ch][b].eq(flat[self.e_addr[b]])
            # read: lane (off + k) % A is byte k
            raw = Cat(*(lanes[b][r_entry[b]] for b in range(a)))
            m.d.comb += self.r_data[ch].eq(Cat(raw, raw).bit_select(r_off * 8, 8 * a))
            # write: lane b takes byte (b - off) % A of the data, if it is one of the first w_len
            wd = self.w_data[ch]
            for b in range(a):
                k = (b - w_off)[:la]
                with m.If(self.w_en[ch] & (k < self.w_len)):
                    m.d.sync += lanes[b][w_entry[b]].eq(wd.word_select(k, 8))
        return m
