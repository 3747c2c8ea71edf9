"""cocotb tests for the co-simulation infrastructure (tests/test_cosim_infra.py runs them).

The DUT is the counter of test_cosim_infra.py: ``en`` in, ``count`` out. Stimulus and expected
values come from the .npz file named by MIXPIM_VECTORS (arrays ``en`` and ``expected``).
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.en.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def counter_matches_vectors(dut):
    vectors = np.load(os.environ["MIXPIM_VECTORS"])
    await _reset(dut)
    # Inputs change and outputs are checked on falling edges, half a cycle from the active edge.
    for cycle, (en, expected) in enumerate(zip(vectors["en"], vectors["expected"])):
        got = dut.count.value.to_unsigned()
        assert got == expected, f"cycle {cycle}: count is {got}, expected {expected}"
        dut.en.value = int(en)
        await FallingEdge(dut.clk)


@cocotb.test()
async def waits_forever(dut):
    """Never finishes while the clock runs: only the runner's timeout ends it."""
    Clock(dut.clk, 10, unit="ns").start()
    await Event().wait()
