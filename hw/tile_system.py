"""The tile with its memory system: what co-simulation runs.

:class:`~.tile.Tile` is the synthesizable part; it ends at its memory port ``bus`` and its PIM
port ``pim``. This wrapper puts the cycle-exact DRAM model (:class:`~.dram.DramModel`) behind
``bus`` and the PIM banks' logic (:class:`~.pim_unit.PimUnit`: global buffers, MAC lanes, result
registers, on the DRAM model's banks) behind ``pim``, resets both in the cycle a run starts
(``start`` while not running: the golden model's cycle 0 is the next one), and adds the DRAM to
the host port
(``HostSel.DRAM``: ``dram_bus_bytes``-byte words, word ``a`` = beat address ``a``), so the
wrapper has exactly the ports of a tile that held its DRAM inside.
"""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring

from .common import ConfigComponent
from .dram import DramModel
from .pim_unit import PimUnit
from .tile import HostSel, Tile

__all__ = ["TileSystem"]

#: Tile members the wrapper does not forward (it connects them to the DRAM model).
_MEMORY_PORTS = ("bus", "pim")


class TileSystem(ConfigComponent):
    """A :class:`~.tile.Tile` and the DRAM model behind its ports.

    Arguments
    ---------
    config : TileConfig
    imem_words : int
        As for :class:`~.tile.Tile`.

    Members
    -------
    Every member of the Tile except ``bus`` and ``pim``, with the same meaning; the host port
    also reaches the DRAM (``HostSel.DRAM``, read latency 1 as for the other memories).

    Raises
    ------
    TypeError, ValueError
        As :class:`~.tile.Tile`.
    """

    def __init__(self, config, imem_words=1024):
        self.tile = Tile(config, imem_words)
        # elaborated with this wrapper: no warning of its own when a cached build skips both
        self.tile._MustUse__silence = True
        super().__init__(config)

    def _members(self, config):
        return {name: member for name, member in self.tile.signature.members.items()
                if name not in _MEMORY_PORTS}

    @property
    def imem_words(self):
        return self.tile.imem_words

    def elaborate(self, platform):
        m = Module()
        tile = self.tile
        begin = Signal()
        m.d.comb += begin.eq(self.start & ~tile.running)
        m.submodules.tile = tile
        dram, banks = DramModel(self._cfg), PimUnit(self._cfg)
        m.submodules.dram = ResetInserter(begin)(dram)
        m.submodules.pim_banks = ResetInserter(begin)(banks)
        wiring.connect(m, tile.bus, dram.bus)
        wiring.connect(m, banks.dram, dram.pim)
        port = tile.pim
        m.d.comb += [banks.start.eq(port.start), banks.i_opcode.eq(port.opcode),
                     banks.i_inst.eq(port.inst), port.busy.eq(banks.busy),
                     port.done.eq(banks.done)]
        wiring.connect(m, banks.r_act, port.r_act)
        wiring.connect(m, banks.w_acc, port.w_acc)

        for name, member in self.signature.members.items():
            if member.flow == wiring.In:
                m.d.comb += getattr(tile, name).eq(getattr(self, name))
            elif name != "host_rdata":
                m.d.comb += getattr(self, name).eq(getattr(tile, name))
        host = dram.host
        to_dram = self.host_sel == HostSel.DRAM
        read_dram = Signal()   # the previous cycle's address was a DRAM word
        m.d.sync += read_dram.eq(to_dram)
        m.d.comb += [host.addr.eq(self.host_addr), host.wdata.eq(self.host_wdata),
                     host.we.eq(self.host_we & ~tile.running & to_dram),
                     self.host_rdata.eq(Mux(read_dram, host.rdata, tile.host_rdata))]
        return m
