"""Native (C++ main) co-simulation: cosim.build(main=...) / run_main, the tile's native driver
(sim/tb/tile_main.cpp on the harness of sim/tile_harness.py) and its case and result files."""

from pathlib import Path

import pytest
from test_cosim_infra import Counter

from mixpim.hw.tile import HostSel
from mixpim.hw.tile_system import TileSystem
from mixpim.models.config import preset
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.program import Segment
from mixpim.sim import cosim, tile_cosim
from mixpim.sim.tile_cosim import native_case, native_result, run_programs
from mixpim.sim.tile_harness import harness_top, harness_verilog

COUNTER_MAIN = Path(__file__).parent / "cocotb" / "counter_main.cpp"
TINY = preset("tiny")
HALT = Instruction(Opcode.HALT)


@pytest.fixture(scope="module")
def counter_main():
    return cosim.build(Counter(8), "native_counter", params={"width": 8}, main=COUNTER_MAIN)


def test_run_main(counter_main, tmp_path):
    out = tmp_path / "count"
    cosim.run_main(counter_main, [300, out])
    assert out.read_text() == f"{300 % 256}\n"
    assert cosim.build(Counter(8), "native_counter", params={"width": 8}, main=COUNTER_MAIN).cached


def test_run_main_failures(counter_main, tmp_path):
    with pytest.raises(cosim.CosimFailure, match="exited with code 5") as info:
        cosim.run_main(counter_main, [3, tmp_path / "count", 5])
    assert "counter_main: done" in info.value.log_tail
    assert (info.value.run_dir / "sim.log").is_file()
    with pytest.raises(cosim.CosimFailure, match="timed out"):
        cosim.run_main(counter_main, [-1, tmp_path / "count"], timeout=3)


def test_native_and_cocotb_builds_differ(counter_main):
    cocotb_build = cosim.build(Counter(8), "native_counter", params={"width": 8})
    assert cocotb_build.hash != counter_main.hash


def test_harness():
    with pytest.raises(TypeError, match="tile must be a TileSystem, not str"):
        harness_verilog("tiny", "t")
    tile = TileSystem(TINY, 1024)
    text = harness_verilog(tile, "t")
    tile._MustUse__silence = True  # only its signature was used
    assert text.startswith(f"module {harness_top('t')}(clk, rst, start, length, host_sel,")
    # the ports, and only they, public to VPI (cocotb's dut)
    for line in ("  input [2:0] host_sel /*verilator public_flat_rw*/;",
                 "  output [127:0] busy /*verilator public_flat_rd*/;", "  reg rst_q = 1'd1;",
                 "  reg [16:0] length_q = 17'd0;", "    host_we_q <= host_we;"):
        assert line in text.splitlines()
    assert "  t tile (.clk(clk), .rst(rst_q), .start(start_q), .length(length_q)," in text
    assert ".busy(busy)" in text and ".host_rdata(host_rdata)" in text


def test_case_and_result_files():
    cases = [{"writes": [[0, 3, "ff"], [2, 1, "0"]], "length": 2, "max_cycles": 1010,
              "reads": [[1, 0], [1, 1]]},
             {"writes": [], "length": 1, "max_cycles": 1001, "reads": []}]
    assert native_case(cases) == ("mixpim-tile-case 1 2\nP 2 1010 2 2\n0 3 ff\n2 1 0\n1 0\n1 1\n"
                                  "P 1 1001 0 0\n")
    busy = (7 << 96) | (1 << 32) | 0x2a
    text = f"P 1f {busy:x} 3 0 a 1 0.25\nbeef\n0\nP 2 0 1 6 0 0 0.5\n"
    first, second = native_result(text, cases)
    assert first == {"cycles": 31, "busy": [42, 1, 0, 7], "dispatched": 3, "error": 0,
                     "error_pc": 10, "nonfinite": 1, "sim_seconds": 0.25, "reads": ["beef", "0"]}
    assert second["reads"] == [] and second["error"] == 6 and second["busy"] == [0, 0, 0, 0]
    with pytest.raises(cosim.CosimError, match="malformed result"):
        native_result("beef\n", cases)


def test_unknown_driver():
    with pytest.raises(ValueError, match="driver must be one of cocotb, native, not 'vpi'"):
        run_programs(TINY, [([HALT], [])], driver="vpi")


def _program():
    load = Instruction(Opcode.LOAD, spad=Spad.ACT, spad_addr=3, dram_addr=64, words=2, rows=1,
                       stride=0)
    store = Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=3, dram_addr=256, words=2, rows=1,
                        stride=0)
    return [load, Instruction(Opcode.SYNC), store, HALT], [Segment("dram", 64, bytes(range(16)))]


def test_both_drivers_agree():
    # The same programs through the native driver and the original cocotb one: equal to the
    # golden model, so equal to each other, status and words.
    items = [_program(), ([HALT], [])]
    native = run_programs(TINY, items, driver="native")
    old = run_programs(TINY, items, driver="cocotb")
    for a, b in zip(native, old):
        assert a.ok and b.ok, a.report() + b.report()
        assert a.rtl_status == b.rtl_status and a.words_compared == b.words_compared > 0


def test_native_hang_is_reported(tmp_path):
    # max_cycles too small for the program: the driver must fail, not report a status.
    build = tile_cosim._build(TINY, 1024, None, "native")
    insts, _ = _program()  # the LOAD alone waits for DRAM longer than 3 cycles
    writes = [[HostSel.IMEM.value, pc, format(i.encode(), "x")] for pc, i in enumerate(insts)]
    case = tmp_path / "case"
    case.write_text(native_case([{"writes": writes, "length": len(insts), "max_cycles": 3,
                                  "reads": []}]))
    with pytest.raises(cosim.CosimFailure, match="exited with code 3") as info:
        cosim.run_main(build, [case, tmp_path / "result"])
    assert "no done after 3 cycles" in info.value.log_tail


def test_drop_zero_inits():
    text = ("  reg [7:0] mem [0:2];\n  initial begin\n    mem[0] = 8'h00;\n    mem[1] = 8'h2a;\n"
            "    mem[2] = 8'd0;\n  end\n  always @* begin\n    \\$1 [0] = 1'h0;\n  end\n")
    assert cosim.drop_zero_inits(text) == (
        "  reg [7:0] mem [0:2];\n  initial begin\n    mem[1] = 8'h2a;\n  end\n"
        "  always @* begin\n    \\$1 [0] = 1'h0;\n  end\n")
