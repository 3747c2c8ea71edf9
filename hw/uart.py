"""A UART (8 data bits, no parity, 1 stop bit), the board top's link to a host computer.

Bits are ``divisor`` clock cycles long (``clk_hz // baud``, at least 4). The receiver samples each
bit in its middle, counted from the falling edge of the start bit (the line is synchronised by
two flip-flops first); a frame whose stop bit is low is dropped. Both ends are ``lib.stream``
ports of one byte: the transmitter takes a byte while idle and sends it in ``10 * divisor``
cycles; the receiver offers each byte until it is taken (a byte that arrives before replaces it).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "uart_divisor"]


def uart_divisor(clk_hz, baud):
    """Clock cycles per bit; ``ValueError`` below 4 (too few to sample a bit's middle)."""
    for name, value in (("clk_hz", clk_hz), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if clk_hz // baud < 4:
        raise ValueError(f"a {clk_hz} Hz clock gives {clk_hz // baud} cycles per bit at {baud} "
                         f"baud; at least 4 are needed")
    return clk_hz // baud


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer >= 4, not {divisor!r}")
    return divisor


class UartTx(wiring.Component):
    """Transmitter. ``data`` : In(stream.Signature(8)), ``tx`` : Out(1) (idle high)."""

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10)                  # start bit, 8 data bits LSB first, stop bit
        bits = Signal(range(11))            # bits left to send
        timer = Signal(range(self._divisor))
        m.d.comb += self.data.ready.eq(bits == 0)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(0, self.data.payload, 1)), bits.eq(10), timer.eq(0)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1),
                             timer.eq(self._divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 1):
                    m.d.sync += bits.eq(bits - 1)
        return m


class UartRx(wiring.Component):
    """Receiver. ``rx`` : In(1, init 1), ``data`` : Out(stream.Signature(8))."""

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        sync_ = Signal(2, init=0b11)
        m.d.sync += sync_.eq(Cat(self.rx, sync_[0]))
        line = sync_[1]
        bits = Signal(range(10))            # 0: idle; else bits left, the stop bit last
        timer = Signal(range(self._divisor + self._divisor // 2))
        shift = Signal(8)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(bits == 0):
            with m.If(~line):               # a start bit: sample the first data bit's middle
                m.d.sync += [bits.eq(9), timer.eq(self._divisor + self._divisor // 2 - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [bits.eq(bits - 1), timer.eq(self._divisor - 1)]
            with m.If(bits != 1):
                m.d.sync += shift.eq(Cat(shift[1:], line))
            with m.Elif(line):              # a high stop bit: the byte is good
                m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
        return m
