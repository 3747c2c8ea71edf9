"""cocotb test of an array (MixPE or baseline) against its golden case.

Case fields: ``in_words`` (hex, one payload per beat), ``out_words`` (hex, expected output payloads
in order), ``first_output`` / ``total`` (golden cycle model; -1 to skip), ``stall_seed`` (-1: none;
else random input bubbles and output backpressure from that seed), ``nonfinite``, ``error``
(expected sticky flags), ``max_cycles``.

Cycle counting: a cycle is one rising edge; a transfer happens on the edge where valid and ready
are both high. ``first_output`` is the number of edges from the first input transfer to the first
output transfer; ``total`` counts the edges from the first input transfer to the last output
transfer, both included.
"""

import random
import time

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from common import ints, load_case, save_result, start


@cocotb.test()
async def array_matches_golden(dut):
    case = load_case()
    words = ints(case["in_words"])
    expected = ints(case["out_words"])
    stall_seed = int(case["stall_seed"])
    rng = random.Random(stall_seed) if stall_seed >= 0 else None
    await start(dut)

    got = []
    started = time.perf_counter()
    first_in = first_out = last_out = None
    idx = 0
    cycle = 0
    max_cycles = int(case["max_cycles"])
    while len(got) < len(expected):
        assert cycle < max_cycles, f"no progress: {len(got)} of {len(expected)} outputs after {cycle} cycles"
        give = idx < len(words) and (rng is None or rng.random() < 0.75)
        dut.i_stream__valid.value = int(give)
        if give:
            dut.i_stream__payload.value = words[idx]
        dut.o_stream__ready.value = int(rng is None or rng.random() < 0.75)
        await ReadOnly()
        if give and dut.i_stream__ready.value:
            if first_in is None:
                first_in = cycle
            idx += 1
        if dut.o_stream__valid.value and dut.o_stream__ready.value:
            word = dut.o_stream__payload.value.to_unsigned()
            if first_out is None:
                first_out = cycle
            last_out = cycle
            n = len(got)
            assert word == expected[n], (f"output beat {n} differs from golden: "
                                         f"rtl {word:#x} golden {expected[n]:#x}")
            got.append(word)
        await RisingEdge(dut.clk)
        cycle += 1

    measured = {"first_output": first_out - first_in, "total": last_out - first_in + 1,
                "beats_in": idx, "beats_out": len(got),
                "nonfinite": int(dut.o_nonfinite.value), "error": int(dut.o_error.value),
                "cycles_simulated": cycle, "sim_seconds": time.perf_counter() - started}
    save_result({**measured, "outputs": [format(w, "x") for w in got]})
    assert measured["nonfinite"] == int(case["nonfinite"]), f"nonfinite flag {measured['nonfinite']}"
    assert measured["error"] == int(case["error"]), f"error flag {measured['error']}"
    for key in ("first_output", "total"):
        want = int(case[key])
        if want >= 0:
            assert measured[key] == want, f"{key}: rtl {measured[key]} cycles, golden model {want}"
