"""The tile's memory port: a Wishbone B4 classic bus, one beat per transfer, block cycles.

The synthesizable tile ends here (docs/tile.md, "Memory port"); behind it sits a memory system:
in co-simulation the cycle-exact DRAM model (:class:`~.dram.DramModel`), on an FPGA a memory
controller (or a Wishbone-to-AXI bridge in front of one). Member names follow the Wishbone B4
specification and amaranth-soc's ``wishbone.Signature``, so the port connects to either.

Protocol, seen from the master (the DMA engine):

* ``cyc`` is high for the whole of one LOAD or STORE's transfer (a Wishbone block cycle) and
  low between instructions: a rising ``cyc`` marks an instruction's first beat, which the master
  presents exactly ``DMA_SETUP_CYCLES`` after the instruction started (the timing model's
  look-ahead starts there, docs/tile.md "DRAM").
* ``stb`` requests one beat (held, with ``adr``, ``we``, ``dat_w``, ``sel``, until ``ack``);
  the next beat is requested in the cycle after the previous ``ack``.
* ``ack`` completes the beat in its cycle: a read's ``dat_r`` is valid in that cycle, a write
  takes ``dat_w`` where ``sel`` is set. The slave may hold ``ack`` off for any number of cycles
  (the DRAM model: until the beat's column command).

Widths: ``adr`` is a beat address (DRAM byte address // ``dram_bus_bytes``, :func:`beat_bits`);
``dat_w``/``dat_r`` are ``8 * dram_bus_bytes`` bits (byte i in bits [8i, 8i + 8)); ``sel`` has
one bit per byte (granularity 8).
"""

from amaranth.utils import ceil_log2

from . import wishbone
from .common import check_config

__all__ = ["beat_bits", "MemBusSignature"]


def beat_bits(config):
    """Width of a beat address (DRAM byte address // ``dram_bus_bytes``)."""
    return max(1, ceil_log2(config.dram_bytes // config.dram_bus_bytes))


class MemBusSignature(wishbone.Signature):
    """The memory port, seen from the master (module docstring): a :class:`~.wishbone.Signature`
    of :func:`beat_bits` address bits, ``8 * dram_bus_bytes`` data bits and byte granularity.

    Members
    -------
    cyc : Out(1), an instruction's transfer is in progress
    stb : Out(1), a beat is requested
    we : Out(1), 1: write ``dat_w`` under ``sel``; 0: read
    adr : Out(:func:`beat_bits`), beat address
    dat_w : Out(8 * dram_bus_bytes)
    sel : Out(dram_bus_bytes), byte enables of a write
    ack : In(1), the beat completes in this cycle (it may come in the request's first cycle)
    dat_r : In(8 * dram_bus_bytes), a read beat's bytes in its ``ack`` cycle
    """

    def __init__(self, config):
        bus = check_config(config).dram_bus_bytes
        super().__init__(addr_width=beat_bits(config), data_width=8 * bus, granularity=8)
