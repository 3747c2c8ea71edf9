"""The VEC datapath's fixed-point helpers (hw/vec_fixed.py) in the Amaranth simulator against
:mod:`mixpim.models.vec_fixed`: FP16 from fixed point (rounding ties, saturation, subnormals; and
of every int8), fixed point from FP16 (every special pattern and a random sample), and both gates
at the ends of their ranges and in between."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed

from mixpim.hw.vec_fixed import fixed_from_fp16, fp16_from_fixed, gate, gate_rom
from mixpim.models.vec_fixed import PHI_SHIFT, PHI_TABLE, SIGMOID_SHIFT, SIGMOID_TABLE
from mixpim.models import vec_fixed as golden
from helpers import never_elaborated, run

# Y: FP16 ties at every exponent step, the saturation threshold, subnormals, the 48-bit extremes
Y_SPECIAL = sorted({
    0, 1, 2, 3, 4, 5, 7, 8, 1023, 1024, 2047, 2048, 2049, 2050, 2051, 4097, 4098, 4099,
    *((2049 + 2 * k) << s for k in range(3) for s in range(20)),
    65504 << 16, (65504 << 16) + 1, (65520 << 16) - 1, 65520 << 16, (65519 << 16) + 0x8000,
    1 << 40, (1 << 47) - 1,
})
GATE_EDGES = [e + d for e in (1 << 20, -(1 << 20), 1 << 19, -(1 << 19), 0, 1 << 13, 1 << 12)
              for d in range(-3, 4)] + [-(1 << 31), (1 << 31) - 1]


class Helpers(Elaboratable):
    def __init__(self):
        self.y = Signal(signed(48))
        self.y8 = Signal(signed(8))
        self.bits = Signal(16)
        self.v = Signal(signed(32))
        self.phi = Signal()

    def elaborate(self, platform):
        m = Module()
        self.fp16 = fp16_from_fixed(m, self.y)
        self.fp16_int8 = fp16_from_fixed(m, self.y8, 0, name="fp16_int8")
        self.fixed = fixed_from_fp16(m, self.bits)
        m.submodules.rom = rom = gate_rom()
        self.gate = gate(m, rom.read_port(domain="comb"), self.v, self.phi)
        return m


def test_helpers():
    rng = random.Random(3)
    dut = Helpers()
    top = Module()
    top.submodules.dut = dut
    ys = Y_SPECIAL + [rng.randrange(-(1 << 47), 1 << 47) >> rng.randrange(48) for _ in range(1500)]
    ys = [max(min(y, (1 << 47) - 1), -(1 << 47)) for y in ys + [-y for y in ys]]
    bits = sorted(set(rng.sample(range(1 << 16), 3000)) | {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00,
                                                            0x0001, 0x8001, 0x03FF, 0x0400, 0x2400,
                                                            0x23FF, 0x2401, 0x7BFF, 0xFBFF})
    vs = GATE_EDGES + [rng.randrange(-(1 << 31), 1 << 31) >> rng.randrange(32) for _ in range(1000)]

    async def bench(ctx):
        for y in ys:
            ctx.set(dut.y, y)
            assert ctx.get(dut.fp16) == int(golden.fp16_from_fixed([y])[0]), y
        for x in range(-128, 128):
            ctx.set(dut.y8, x)
            assert ctx.get(dut.fp16_int8) == int(np.float16(x).view(np.uint16)), x
        for b in bits:
            ctx.set(dut.bits, b)
            assert ctx.get(dut.fixed) == int(golden.fixed_from_fp16([b])[0]), hex(b)
        for phi, table, s in ((0, SIGMOID_TABLE, SIGMOID_SHIFT), (1, PHI_TABLE, PHI_SHIFT)):
            ctx.set(dut.phi, phi)
            for v in vs:
                ctx.set(dut.v, v)
                assert ctx.get(dut.gate) == int(golden.gate(table, s, np.array([v]))[0]), (phi, v)

    run(top, bench, clock=False)


def test_rejects_frac():
    m = never_elaborated(Module())
    with pytest.raises(ValueError, match="^frac must be in 0..24, not 25$"):
        fp16_from_fixed(m, Signal(signed(8)), 25)
