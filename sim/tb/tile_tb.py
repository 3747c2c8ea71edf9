"""cocotb driver of the tile: load, run and read back a batch of programs through the host port.

The ``dut`` is the tile behind registered inputs (:func:`mixpim.sim.tile_harness.harness_verilog`):
whatever the driver sets after an edge reaches the tile one edge later, so the tile sees the
driver's inputs one cycle late, all alike, and a host read's word is out two edges after its
address. Python wakes per host word and once per program run (``done`` or the cycle limit, a
timer), never per cycle: the clock is cocotb's C++ (GPI) clock.

The case (JSON, ``$MIXPIM_CASE``) gives the number of ``units`` (of the ``busy`` status vector)
and lists programs; for each: ``writes`` ([sel, addr, hex]: memory
words to set before the run, program included), ``length``, ``max_cycles`` and ``reads``
([sel, addr]: words to read back after ``done``). The driver records, per program, the status
registers and the words read (``$MIXPIM_RESULT``); the comparison with the golden model is made
by :mod:`mixpim.sim.tile_cosim`, which reports every difference. A program that does not raise
``done`` within ``max_cycles`` fails the test (the RTL must never hang).
"""

import json
import os
import time

import cocotb
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

from common import save_result, start

async def host_write(dut, writes):
    dut.host_we.value = 1
    for sel, addr, word in writes:
        dut.host_sel.value = sel
        dut.host_addr.value = addr
        dut.host_wdata.value = int(word, 16)
        await RisingEdge(dut.clk)
    dut.host_we.value = 0


async def host_read(dut, reads):
    """Pipelined: the address of read i goes out in one cycle, the harness registers it at the
    next edge, the tile's word is out after the one after (so each edge brings one word)."""
    out = []
    if reads:
        dut.host_sel.value, dut.host_addr.value = reads[0]
    for i in range(len(reads) + 1):
        await RisingEdge(dut.clk)
        if i + 1 < len(reads):
            dut.host_sel.value, dut.host_addr.value = reads[i + 1]
        await ReadOnly()
        if i:
            out.append(format(_u(dut.host_rdata), "x"))
    await RisingEdge(dut.clk)  # leave the read-only phase
    return out


def _u(handle):
    value = handle.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


def status(dut, units):
    busy = _u(dut.busy)
    width = len(dut.busy) // units
    return {"cycles": _u(dut.cycles),
            "busy": [(busy >> (width * u)) & ((1 << width) - 1) for u in range(units)],
            "dispatched": _u(dut.dispatched), "error": _u(dut.error),
            "error_pc": _u(dut.error_pc), "nonfinite": _u(dut.nonfinite)}


@cocotb.test()
async def tile_runs_programs(dut):
    with open(os.environ["MIXPIM_CASE"]) as f:
        case = json.load(f)
    dut.start.value = 0
    dut.host_we.value = 0
    dut.length.value = 0
    await start(dut)
    results = []
    for prog in case["programs"]:
        await host_write(dut, prog["writes"])
        dut.length.value = prog["length"]
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        began = time.perf_counter()
        await First(RisingEdge(dut.done), Timer(10 * prog["max_cycles"], unit="ns"))
        seconds = time.perf_counter() - began
        await ReadOnly()
        assert dut.done.value, (f"program {len(results)}: no done after {prog['max_cycles']} cycles "
                                f"(the tile hangs)")
        result = status(dut, case["units"])
        await RisingEdge(dut.clk)
        result["reads"] = await host_read(dut, prog["reads"])
        result["sim_seconds"] = seconds
        results.append(result)
    save_result({"programs": results})
