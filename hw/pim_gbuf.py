"""The PIM global buffers: one of ``pim_gbuf_bytes`` bytes per DRAM channel (docs/pim.md).

A buffer is accessed as up to :func:`gbuf_access_bytes` (``A``) consecutive bytes from any byte
address, the same address in every channel: a ``PIM_GBUF`` writes up to an ACT word's ``rows``
lanes (one INT8 byte each; an FP16 tile's lanes are converted before they get here), a
``PIM_WRITE`` reads up to a bus word's, a dot ``PIM_GEMV`` ``pim_lanes`` of them (``pim_lanes
<= dram_bus_bytes``); and as one byte per bank (``e_addr[b]``, the same in every channel): a
bcast ``PIM_GEMV`` broadcasts its own element to each bank. An access past the buffer's end
wraps to its start (the dispatch checks keep legal instructions inside).

Each buffer is one :class:`~amaranth.lib.memory.Memory` of bytes with ``A`` write ports and
``A + dram_banks`` combinational read ports (this is the simulation side of the tile: the banks
are DRAM, never synthesized). Memories are Verilog arrays, which Verilator indexes directly; a
buffer of flip-flops read through multiplexers was most of the tile's Verilog and of its
simulated cycles (docs/decisions.md, "FPGA-ready tile"). The buffers read as zero after reset
(the tile resets the PIM unit at a run's start and the golden model's buffers start at zero,
:class:`mixpim.models.pim.PimState`): a memory cannot be cleared at once, so each byte has a
valid bit, a flip-flop cleared by reset and set by a write of the byte, and a byte whose bit is
clear reads 0 (:func:`valid_read`).

Read: combinational (latency 0). Write: at the clock edge.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .common import ConfigComponent

__all__ = ["gbuf_access_bytes", "valid_read", "GlobalBuffers"]


def gbuf_access_bytes(config):
    """``A``: the most bytes one access touches (a power of two): an ACT word's ``rows`` lanes, a
    byte each (a packed ``PIM_GBUF`` writes one word per cycle; FP16 lanes arrive converted to
    INT8) or a bus word's (a ``PIM_WRITE`` chunk), at most the buffer."""
    most = max(config.rows, config.dram_bus_bytes)
    return min(1 << ceil_log2(most), config.pim_gbuf_bytes)


def valid_read(m, memory, valid, addr):
    """A new combinational read port of ``memory`` at ``addr`` (cut to the port's address
    width): its data where bit ``addr`` of ``valid`` (one bit per entry) is set, else 0."""
    port = memory.read_port(domain="comb")
    addr = addr[:len(port.addr)]
    m.d.comb += port.addr.eq(addr)
    return Mux(valid.bit_select(addr, 1), port.data, 0)


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
        a, size = gbuf_access_bytes(cfg), cfg.pim_gbuf_bytes
        ls = exact_log2(size)
        m = Module()
        # byte k of an access is at address + k, wrapping at the end (distinct bytes: A <= size)
        r_addr = [(self.r_addr + k)[:ls] for k in range(a)]
        w_addr = [(self.w_addr + k)[:ls] for k in range(a)]
        w_first = Signal(a)                                    # the bytes written
        m.d.comb += w_first.eq(Cat(*(k < self.w_len for k in range(a))))
        w_set = w_first << self.w_addr                         # their valid bits, then the wrap
        for ch in range(cfg.dram_channels):
            mem = m.submodules[f"gbuf_{ch}"] = Memory(shape=8, depth=size, init=[])
            valid = Signal(size, name=f"gbuf_valid_{ch}")
            m.d.comb += self.r_data[ch].eq(Cat(*(valid_read(m, mem, valid, x) for x in r_addr)))
            for b in range(cfg.dram_banks):
                m.d.comb += self.e_data[ch][b].eq(valid_read(m, mem, valid, self.e_addr[b]))
            for k in range(a):
                port = mem.write_port()
                m.d.comb += [port.addr.eq(w_addr[k]), port.en.eq(self.w_en[ch] & w_first[k]),
                             port.data.eq(self.w_data[ch].word_select(k, 8))]
            with m.If(self.w_en[ch]):
                m.d.sync += valid.eq(valid | w_set[:size] | w_set[size:])
        return m
