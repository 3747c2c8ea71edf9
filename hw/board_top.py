"""An example board top level for the tile on a ULX3S (LFE5U-85F, 25 MHz oscillator): what
``mixpim rtl tile`` writes as ``board_ulx3s.v``, the start of an FPGA engineer's own design.

It instantiates the tile's Verilog module (``TileTop``, written beside it) by name and gives it:

* **its clock** from an ECP5 PLL (``EHXPLLL``, :data:`PLL_PARAMS`): 25 MHz / 3 = 8.33 MHz
  (:data:`TILE_HZ`), since the tile's Fmax on ECP5 is far below the board's 25 MHz
  (docs/results.md); reset while the PLL is not locked or ``rst`` (FIRE2) is pressed,
  synchronised to the tile's clock;

* **the register bus** from the board's USB serial port: a :class:`~.uart.UartRx` /
  :class:`~.uart.UartTx` pair at ``baud`` and a :class:`~.uart_bridge.UartBridge` (one command
  per 32-bit register access), so a host script loads programs and data through the memory
  window and starts and polls the tile (docs/registers.md);
* **a memory on the memory port**: ``mem_beats`` beats of on-chip block RAM at the bottom of
  the DRAM address space (higher addresses wrap), answering each beat in the cycle after its
  request, in place of a DRAM controller;
* **no PIM banks**: the PIM port finishes a PIM instruction in its start cycle and does
  nothing, so the timing and results of programs with PIM instructions differ from the golden
  model's; run programs without them (the banks are DRAM, docs/pim.md);
* ``led[0]``: a heartbeat (clock / 2**24), ``led[1]``: a byte is being received.
"""

from fractions import Fraction

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import check_config
from .tile_csr import TileTop
from .uart import UartRx, UartTx, uart_divisor
from .uart_bridge import UartBridge

__all__ = ["BoardTop", "ULX3S_PINS", "BOARD_MHZ", "PLL_PARAMS", "TILE_HZ"]

#: ULX3S pins of BoardTop's ports (the board's constraints file, ulx3s_v20.lpf): the 25 MHz
#: oscillator, FIRE2 as reset, the FT231X's serial lines as the FPGA sees them, two LEDs.
ULX3S_PINS = {"clk25": "G2", "rst": "T1", "uart_rx": "M1", "uart_tx": "L4",
              "led[0]": "B2", "led[1]": "C2"}
#: The ULX3S oscillator's frequency, MHz.
BOARD_MHZ = 25
#: The PLL's dividers for the tile's clock, 25 MHz / CLKI_DIV * CLKFB_DIV = 8.33 MHz from a 600
#: MHz VCO (CLKOP_DIV times the output): the values Project Trellis's ``ecppll -i 25 -o 8``
#: computes (it warns that 8.33 MHz is below its 10 MHz bound; the ECP5 data sheet's CLKOP range
#: starts at 3.125 MHz).
PLL_PARAMS = {"CLKI_DIV": 3, "CLKFB_DIV": 1, "CLKOP_DIV": 72, "CLKOP_CPHASE": 36,
              "CLKOP_FPHASE": 0}
#: The tile's clock, Hz.
TILE_HZ = Fraction(BOARD_MHZ * 10**6 * PLL_PARAMS["CLKFB_DIV"], PLL_PARAMS["CLKI_DIV"])


class BoardTop(wiring.Component):
    """The board top (module docstring).

    Arguments
    ---------
    config : TileConfig, the tile's (its memory port and register bus widths)
    tile_module : str, the name of the tile's Verilog module (``mixpim rtl tile``'s ``top``)
    imem_words : int, the tile's instruction memory depth
    baud : int, the serial port's rate (at least 4 cycles of :data:`TILE_HZ` per bit)
    mem_beats : int, on-chip memory depth in memory-port beats, a power of two >= 1

    Members
    -------
    clk25 : In(1), the oscillator; rst : In(1), high: reset; uart_rx : In(1), uart_tx : Out(1),
    led : Out(2)

    Raises
    ------
    TypeError, ValueError
        On a configuration that is not a TileConfig, or a rate, clock or depth out of range.
    """

    def __init__(self, config, tile_module, *, imem_words=1024, baud=115_200, mem_beats=1024):
        self._cfg = check_config(config)
        self._divisor = uart_divisor(int(TILE_HZ), baud)
        if isinstance(mem_beats, bool) or not isinstance(mem_beats, int) or mem_beats < 1 \
                or mem_beats & (mem_beats - 1):
            raise ValueError(f"mem_beats must be a power of two >= 1, not {mem_beats!r}")
        self._tile_module, self._mem_beats = tile_module, mem_beats
        top = TileTop(config, imem_words)
        top._MustUse__silence = True      # its signature only: the tile is instantiated by name
        self._tile_sig = top.signature
        super().__init__({"clk25": In(1), "rst": In(1), "uart_rx": In(1, init=1),
                          "uart_tx": Out(1, init=1), "led": Out(2)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain()
        locked = Signal()
        pll = {f"p_{k}": v for k, v in PLL_PARAMS.items()}
        pll |= {f"p_{k}": "DISABLED" for k in ("PLLRST_ENA", "INTFB_WAKE", "STDBY_ENABLE",
                                                "DPHASE_SOURCE")}
        pll |= {f"p_OUTDIVIDER_MUX{x}": f"DIV{x}" for x in "ABCD"}
        pll |= {f"a_{k}": v for k, v in (("FREQUENCY_PIN_CLKI", str(BOARD_MHZ)),
                                         ("FREQUENCY_PIN_CLKOP", f"{float(TILE_HZ) / 1e6:.6f}"),
                                         ("ICP_CURRENT", "12"), ("LPF_RESISTOR", "8"),
                                         ("MFG_ENABLE_FILTEROPAMP", "1"), ("MFG_GMCREF_SEL", "2"))}
        m.submodules.pll = Instance(
            "EHXPLLL", p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP", **pll,
            i_CLKI=self.clk25, o_CLKOP=sync.clk, i_CLKFB=sync.clk, o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        m.submodules.reset = ResetSynchronizer(self.rst | ~locked)
        tile = self._tile_sig.create()
        ports = [("i" if member.flow == In else "o", "__".join(map(str, path)), value)
                 for path, member, value in self._tile_sig.flatten(tile)]
        m.submodules.tile = Instance(self._tile_module, ("i", "clk", ClockSignal()),
                                     ("i", "rst", ResetSignal()), *ports)

        # the register bus from the serial port
        m.submodules.rx = rx = UartRx(self._divisor)
        m.submodules.tx = tx = UartTx(self._divisor)
        m.submodules.bridge = bridge = UartBridge(len(tile.csr.adr))
        wiring.connect(m, rx.data, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)
        wiring.connect(m, bridge.bus, tile.csr)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]

        # the memory port: block RAM, a beat's ack in the cycle after its request
        bus = tile.bus
        beat = len(bus.dat_w)
        m.submodules.mem = mem = Memory(shape=beat, depth=self._mem_beats, init=[])
        wp = mem.write_port(granularity=8)
        rp = mem.read_port()
        index = bus.adr[:ceil_log2(self._mem_beats)]
        ack = Signal()
        req = bus.cyc & bus.stb & ~ack
        m.d.sync += ack.eq(req)
        m.d.comb += [rp.addr.eq(index), rp.en.eq(req), wp.addr.eq(index), wp.data.eq(bus.dat_w),
                     wp.en.eq(Mux(req & bus.we, bus.sel, 0)),
                     bus.ack.eq(ack), bus.dat_r.eq(rp.data)]

        # no PIM banks: a PIM instruction ends in its start cycle (module docstring)
        pim = tile.pim
        m.d.comb += [pim.busy.eq(pim.start), pim.done.eq(pim.start),
                     pim.r_act.en.eq(0), pim.w_acc.en.eq(0)]

        heartbeat = Signal(24)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += [self.led[0].eq(heartbeat[-1]), self.led[1].eq(~rx.rx)]
        return m
