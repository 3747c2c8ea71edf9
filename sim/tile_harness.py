"""The tile behind one register stage on every input: the top level of the native co-simulation.

Verilator evaluates everything that depends combinationally on a top-level input on every
``eval()`` call (its "input combinational" region), whatever changed: for the tile, whose host
port and reset reach every memory port and register, that was a third of the run time, paid twice
per cycle. Behind registers the tile's inputs are internal signals, evaluated only when they
change. The driver (``tb/tile_main.cpp``) sets each input one edge earlier, so the tile sees
every value in the same cycle as with the cocotb driver on the bare tile.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hw.tile import Tile

__all__ = ["TileHarness"]


class TileHarness(wiring.Component):
    """A :class:`~mixpim.hw.tile.Tile` with registered inputs (simulation only).

    Ports: the tile's, with the same names, widths and formats, plus ``clk`` and ``rst`` (In(1)):
    the clock and the tile's synchronous reset. Every input, ``rst`` included,
    reaches the tile one cycle later (registered, 1 cycle); outputs are the tile's (0 cycles). The
    registers start at the tile's idle inputs: ``rst`` 1, everything else 0.

    Raises:
        TypeError: ``tile`` is not a :class:`~mixpim.hw.tile.Tile`.
    """

    def __init__(self, tile):
        if not isinstance(tile, Tile):
            raise TypeError(f"tile must be a Tile, not {type(tile).__name__}")
        self._tile = tile
        members = {"clk": In(1), "rst": In(1)}
        for name, member in tile.signature.members.items():
            members[name] = (In if member.flow == In else Out)(member.shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # No reset of its own: the input registers are plain pipeline stages, and the only reset
        # is the registered one the tile gets.
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.d.comb += ClockSignal("sync").eq(self.clk)
        rst = Signal(init=1, name="rst_q")
        m.d.sync += rst.eq(self.rst)
        m.submodules.tile = ResetInserter(rst)(self._tile)
        for name, member in self._tile.signature.members.items():
            outer, inner = getattr(self, name), getattr(self._tile, name)
            if member.flow == In:
                reg = Signal(member.shape, name=f"{name}_q")
                m.d.sync += reg.eq(outer)
                m.d.comb += inner.eq(reg)
            else:
                m.d.comb += outer.eq(inner)
        return m
