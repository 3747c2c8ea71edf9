"""cocotb test of one PE against its golden case.

Case fields: ``ports`` (names of the PE's input ports), ``inputs`` (hex, cycles x ports),
``res`` (hex, the expected ``o_res`` word after each cycle's edge; the word packs valid, tlast and
value as :func:`mixpim.hw.layouts.result_layout`; only words with the valid bit set are compared
in full, others by their valid bit).
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from common import ints, load_case, save_result, start


@cocotb.test()
async def pe_matches_golden(dut):
    case = load_case()
    ports = [str(p) for p in case["ports"]]
    inputs = [ints(row) for row in case["inputs"]]
    expected = ints(case["res"])
    await start(dut)
    results = 0
    for cycle, row in enumerate(inputs):
        for port, value in zip(ports, row):
            getattr(dut, port).value = value
        await RisingEdge(dut.clk)
        await ReadOnly()
        word = dut.o_res.value.to_unsigned()
        want = expected[cycle]
        if want & 1:
            results += 1
            assert word == want, f"cycle {cycle}: o_res rtl {word:#x} golden {want:#x}"
        else:
            assert word & 1 == 0, f"cycle {cycle}: o_res valid in rtl, not in golden"
        await FallingEdge(dut.clk)
    save_result({"results": results, "cycles": len(inputs)})
