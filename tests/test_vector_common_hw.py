"""``sat_round_shift`` (hw/vector_common.py), the narrow shifter the vector unit's requantize
steps use, in the Amaranth simulator against :func:`mixpim.models.vector.round_shift` and a
saturation: every shift, around each shift's saturation thresholds and rounding ties, and a
random sample, for the operand widths the tile uses (63 x 32: VSOFT and VEC; 33 x 24: VNORM's
``d``; 64 x 32: VNORM's ``mu``) and an operand narrower than the result."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed

from mixpim.hw.vector_common import sat_round_shift
from mixpim.models.vector import SHIFT_MAX, round_shift
from helpers import run


class Dut(Elaboratable):
    def __init__(self, width, bits):
        self.x = Signal(signed(width))
        self.s = Signal(range(SHIFT_MAX + 1))
        self.bits = bits

    def elaborate(self, platform):
        m = Module()
        self.y = sat_round_shift(m, self.x, self.s, self.bits, "y")
        return m


def _expected(x, s, bits):
    r = int(round_shift([x], s)[0])
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, r))


@pytest.mark.parametrize("width, bits", [(63, 32), (33, 24), (64, 32), (6, 8)])
def test_sat_round_shift(width, bits):
    rng = random.Random(width * 100 + bits)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    cases = []
    for s in range(SHIFT_MAX + 1):
        edges = {0, 1, -1, lo, hi}
        for t in (1 << (s + bits - 1), 1 << max(s - 1, 0), 1 << (s + bits)):   # thresholds, ties
            edges |= {sign * t + d for sign in (1, -1) for d in range(-3, 4)}
        edges |= {rng.randint(lo, hi) >> rng.randrange(width) for _ in range(8)}
        cases += [(x, s) for x in sorted(edges) if lo <= x <= hi]
    dut = Dut(width, bits)
    top = Module()
    top.submodules.dut = dut

    async def bench(ctx):
        for x, s in cases:
            ctx.set(dut.x, x)
            ctx.set(dut.s, s)
            assert ctx.get(dut.y) == _expected(x, s, bits), (x, s)

    run(top, bench, clock=False)
