"""DRAM model of the tile: byte-addressable storage behind one data bus, with per-bank open rows.

The model charges every bus beat exactly the cycles of docs/tile.md, "DRAM and DMA timing" (the
formula of :class:`mixpim.models.dram_timing.DramBanks`)::

    (row miss ? (bank has an open row ? t_rp : 0) + t_rcd : 0)   only on the first beat of a run
  + (first beat of a run ? t_cl : 0)
  + t_ccd

A run starts at a request with ``first`` set (the first beat of a DMA instruction) and at every
change of DRAM row (``beat // (row_bytes / bus_bytes)``) from the previous beat. The open rows and
the previous beat's DRAM row persist across instructions.

Handshake: a requester raises ``valid`` with a beat and holds it (and the payload) until
``ready``; ``ready`` comes in the beat's last cycle, so a beat costing ``c`` cycles occupies
``c`` cycles of ``valid`` and back-to-back beats leave no gap. The access happens in the ready
cycle: ``rdata`` is valid combinationally in that cycle (asynchronous read: this is a simulation
model, not a memory to synthesize), and a write (``wdata`` bytes where ``wmask`` is set) is
visible from the next cycle.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .common import ConfigComponent, check_config

__all__ = ["DramSignature", "DramModel", "beat_cost_bound"]


def beat_cost_bound(config):
    """Largest cycles one beat can cost: ``t_rp + t_rcd + t_cl + t_ccd``."""
    return config.t_rp + config.t_rcd + config.t_cl + config.t_ccd


class DramSignature(wiring.Signature):
    """The DRAM request bus, seen from the requester (the DMA engine).

    Members
    -------
    valid : Out(1), a beat is requested (held until ``ready``)
    ready : In(1), the beat's access happens in this cycle
    addr : Out(beat address width), beat index: DRAM byte address // ``dram_bus_bytes``
    write : Out(1), 1: write ``wdata`` under ``wmask``; 0: read
    first : Out(1), the first beat of an instruction (always starts a burst run)
    wdata : Out(8 * dram_bus_bytes), byte i of the beat in bits [8i, 8i + 8)
    wmask : Out(dram_bus_bytes), byte write enables
    rdata : In(8 * dram_bus_bytes), the beat's bytes in the ready cycle of a read
    """

    def __init__(self, config):
        bus = check_config(config).dram_bus_bytes
        super().__init__({
            "valid": Out(1),
            "ready": In(1),
            "addr": Out(max(1, ceil_log2(config.dram_bytes // bus))),
            "write": Out(1),
            "first": Out(1),
            "wdata": Out(8 * bus),
            "wmask": Out(bus),
            "rdata": In(8 * bus),
        })


class DramModel(ConfigComponent):
    """DRAM storage, bank state and beat timing of one channel.

    Arguments
    ---------
    config : TileConfig
    image : bytes-like, optional
        Initial contents from byte 0 (the rest is zero); at most ``config.dram_bytes`` bytes.

    Members
    -------
    bus : In(:class:`DramSignature`)
    memory : the ``lib.memory.Memory`` of ``dram_bus_bytes``-byte words (``memory.data`` for
        testbenches)
    open_valid, open_row : per-bank registers (``Array`` of Signals): bank b has row
        ``open_row[b]`` open iff ``open_valid[b]``

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig or ``image`` is not bytes-like.
    ValueError
        If ``image`` is larger than the DRAM.
    """

    def __init__(self, config, image=b""):
        super().__init__(config)
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise TypeError(f"image must be bytes-like, not {type(image).__name__}")
        if len(image) > config.dram_bytes:
            raise ValueError(f"image must fit the DRAM ({config.dram_bytes} bytes), not "
                             f"{len(image)} bytes")
        bus = config.dram_bus_bytes
        depth = config.dram_bytes // bus
        padded = bytes(image) + bytes(-len(image) % bus)
        init = [int.from_bytes(padded[i:i + bus], "little") for i in range(0, len(padded), bus)]
        self.memory = Memory(shape=8 * bus, depth=depth, init=init)
        row_bits = max(1, ceil_log2(config.dram_rows))
        self.open_valid = Array(Signal(name=f"open_valid_{b}") for b in range(config.dram_banks))
        self.open_row = Array(Signal(row_bits, name=f"open_row_{b}") for b in range(config.dram_banks))

    def _members(self, config):
        return {"bus": In(DramSignature(config))}

    def elaborate(self, platform):
        cfg = self._cfg
        bus = self.bus
        m = Module()
        m.submodules.memory = mem = self.memory
        rd = mem.read_port(domain="comb")
        wr = mem.write_port(granularity=8)
        m.d.comb += [
            rd.addr.eq(bus.addr),
            bus.rdata.eq(rd.data),
            wr.addr.eq(bus.addr),
            wr.data.eq(bus.wdata),
        ]

        # beat -> global DRAM row g -> (bank, row within the bank)
        cpr_bits = exact_log2(cfg.dram_row_bytes // cfg.dram_bus_bytes)
        bank_bits = exact_log2(cfg.dram_banks)
        g = Signal(max(1, len(bus.addr) - cpr_bits))
        m.d.comb += g.eq(bus.addr >> cpr_bits)
        bank = Signal(max(1, bank_bits))
        row = Signal.like(self.open_row[0])
        m.d.comb += [bank.eq(g if bank_bits else 0), row.eq(g >> bank_bits)]

        last_g = Signal.like(g)       # DRAM row of the previous beat (any instruction)
        is_open = self.open_valid[bank]
        new_run = bus.first | (g != last_g)
        miss = ~is_open | (self.open_row[bank] != row)
        cost_max = beat_cost_bound(cfg)
        cost = Signal(range(cost_max + 1))
        m.d.comb += cost.eq(cfg.t_ccd + Mux(new_run, cfg.t_cl + Mux(
            miss, cfg.t_rcd + Mux(is_open, cfg.t_rp, 0), 0), 0))

        # ``waiting``: the current beat's cost was taken; ``left`` cycles remain before its ready
        waiting = Signal()
        left = Signal(range(cost_max + 1))
        with m.If(waiting):
            m.d.comb += bus.ready.eq(left == 0)
            m.d.sync += left.eq(left - 1)
        with m.Else():
            m.d.comb += bus.ready.eq(bus.valid & (cost == 1))
            with m.If(bus.valid & (cost != 1)):
                m.d.sync += [waiting.eq(1), left.eq(cost - 2)]

        with m.If(bus.valid & bus.ready):
            m.d.sync += [
                waiting.eq(0),
                last_g.eq(g),
                self.open_valid[bank].eq(1),
                self.open_row[bank].eq(row),
            ]
            m.d.comb += wr.en.eq(Mux(bus.write, bus.wmask, 0))
        return m
