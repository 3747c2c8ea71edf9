"""Shift-and-add multiplication of an operand by a narrow two's complement weight.

``a * w = sum_{i < n-1} w[i] * (a << i) - w[n-1] * (a << (n-1))`` for an n-bit signed ``w``: n
partial products selected by the weight bits and summed. Written with shifts, multiplexers and
adders only, so synthesis has no multiplier cell to infer (see docs/mixpe.md for the proof).
"""

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["shift_add", "ShiftAddMultiplier"]


def shift_add(a, w):
    """An expression equal to ``a * w`` (``w`` read as two's complement), with no ``*``."""
    n = len(w)
    if n < 2:
        raise ValueError(f"the weight needs a sign bit and at least one magnitude bit, not {n} bits")
    total = Mux(w[0], a, 0)
    for i in range(1, n - 1):
        total = total + Mux(w[i], a << i, 0)
    return total - Mux(w[n - 1], a << (n - 1), 0)


class ShiftAddMultiplier(wiring.Component):
    """Combinational ``o_p = i_a * i_w`` by shift and add.

    Arguments
    ---------
    a_width : int
        Width of the signed operand ``i_a``.
    w_width : int
        Width of the signed weight ``i_w`` (2..8).

    Members
    -------
    i_a : In(signed(a_width))
    i_w : In(signed(w_width))
    o_p : Out(signed(a_width + w_width)); latency 0 cycles.
    """

    def __init__(self, a_width, w_width):
        if not isinstance(a_width, int) or a_width < 1:
            raise TypeError(f"a_width must be a positive integer, not {a_width!r}")
        if not isinstance(w_width, int) or not 2 <= w_width <= 8:
            raise TypeError(f"w_width must be an integer in 2..8, not {w_width!r}")
        super().__init__({
            "i_a": In(signed(a_width)),
            "i_w": In(signed(w_width)),
            "o_p": Out(signed(a_width + w_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o_p.eq(shift_add(self.i_a, self.i_w))
        return m
