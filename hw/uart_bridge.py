"""Host commands from a UART to a 32-bit Wishbone initiator: the board top's way into the tile's
register map (docs/registers.md) from a host computer's serial port.

Commands (bytes, multi-byte values little-endian; ``addr`` is a 16-bit *word* address, a
register's byte offset / 4):

* ``0x77`` (``"w"``), ``addr``, 4 data bytes: write the word; the reply, after the bus's ``ack``,
  is ``0x77``;
* ``0x72`` (``"r"``), ``addr``: read the word; the reply is its 4 bytes.

The host sends a command after the previous one's reply (nothing is buffered while a reply is
sent). Another byte where a command is expected is dropped. An access holds ``cyc`` and ``stb``
until ``ack`` (the tile's CSR bridge answers in the next cycle), with every ``sel`` bit set.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone

__all__ = ["UartBridge", "CMD_READ", "CMD_WRITE"]

CMD_WRITE, CMD_READ = 0x77, 0x72


class UartBridge(wiring.Component):
    """The command interpreter (module docstring).

    Arguments
    ---------
    addr_width : int, the bus's word address bits, 1..16

    Members
    -------
    rx : In(stream.Signature(8)), bytes from the host (a :class:`~.uart.UartRx`)
    tx : Out(stream.Signature(8)), reply bytes (to a :class:`~.uart.UartTx`)
    bus : Out(wishbone.Signature(addr_width=addr_width, data_width=32, granularity=8))
    """

    def __init__(self, addr_width):
        if isinstance(addr_width, bool) or not isinstance(addr_width, int) \
                or not 1 <= addr_width <= 16:
            raise ValueError(f"addr_width must be an integer in 1..16, not {addr_width!r}")
        super().__init__({
            "rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
            "bus": Out(wishbone.Signature(addr_width=addr_width, data_width=32, granularity=8)),
        })

    def elaborate(self, platform):
        m = Module()
        write = Signal()
        frame = Signal(48)              # the address and data bytes, byte k at bits 8k..8k+7
        count = Signal(range(7))        # argument bytes received, then reply bytes left
        reply = Signal(32)
        bus = self.bus
        m.d.comb += [bus.adr.eq(frame[:16]), bus.dat_w.eq(frame[16:]), bus.sel.eq(0b1111),
                     bus.we.eq(write)]
        with m.FSM():
            with m.State("CMD"):
                m.d.comb += self.rx.ready.eq(1)
                cmd = self.rx.payload
                with m.If(self.rx.valid & ((cmd == CMD_WRITE) | (cmd == CMD_READ))):
                    m.d.sync += [write.eq(cmd == CMD_WRITE), count.eq(0)]
                    m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [frame.word_select(count, 8).eq(self.rx.payload),
                                 count.eq(count + 1)]
                    with m.If(count == Mux(write, 5, 1)):
                        m.next = "BUS"
            with m.State("BUS"):
                m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1)]
                with m.If(bus.ack):
                    m.d.sync += [reply.eq(Mux(write, CMD_WRITE, bus.dat_r)),
                                 count.eq(Mux(write, 1, 4))]
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(reply[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [reply.eq(reply >> 8), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.next = "CMD"
        return m
