"""Yosys resource reports and ECP5 place-and-route Fmax."""

import json
import re

import pytest
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mixpim.sim import synth
from mixpim.sim.synth import SynthError, synthesize
from helpers import never_elaborated


class Multiplier(wiring.Component):
    """Registered 8x8 -> 16 product written with ``*``."""

    a: In(8)
    b: In(8)
    p: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.p.eq(self.a * self.b)
        return m


class ShiftAddMultiplier(wiring.Component):
    """The same product as a sum of shifted partial products, without ``*``."""

    a: In(8)
    b: In(8)
    p: Out(16)

    def elaborate(self, platform):
        m = Module()
        acc = 0
        for i in range(8):
            acc = acc + Mux(self.b[i], self.a << i, 0)
        m.d.sync += self.p.eq(acc)
        return m


def test_generic_counts_multipliers():
    mul = synthesize(Multiplier(), "mul8", target="generic")
    shift_add = synthesize(ShiftAddMultiplier(), "shift_add8", target="generic")
    assert mul.mul_cells >= 1
    assert shift_add.mul_cells == 0
    for report in (mul, shift_add):
        assert report.ffs == 16
        assert report.luts > 0
        assert report.dsp_cells == 0 and report.fmax_mhz is None
        assert report.workdir is None
    assert "$mul" in mul.coarse_cells and "$mul" not in shift_add.coarse_cells


def test_ecp5_resources_and_fmax(tmp_path):
    report = synthesize(ShiftAddMultiplier(), "shift_add8", target="ecp5", workdir=tmp_path,
                        fmax=True, fmax_target_mhz=50)
    log = (tmp_path / "nextpnr.log").read_text()
    assert "at 50.00 MHz)" in log and "timing cost" in log  # the target reached nextpnr
    assert report.mul_cells == 0 and report.dsp_cells == 0
    assert report.ffs == report.cells["TRELLIS_FF"] == 16
    assert report.luts == report.cells["LUT4"] > 0
    assert set(report.fmax_by_clock) == {"clk"}
    assert 20 < report.fmax_mhz < 1000
    assert (tmp_path / "report.json").is_file() and report.workdir == tmp_path.resolve()
    assert report.fits is True and report.over() == []
    assert report.global_resets == {}   # no reset net large enough for a global
    used, available = report.utilisation["TRELLIS_FF"]
    assert used > report.ffs and available == 83640  # the harness's scan chains are placed too
    json.dumps(report.to_dict())


class ManyMultipliers(wiring.Component):
    """200 different registered products: more than the LFE5U-85F's 156 multiplier blocks."""

    a: In(8)
    b: In(8)
    p: Out(17)

    def elaborate(self, platform):
        m = Module()
        acc = 0
        for k in range(200):
            acc = acc ^ (self.a * (self.b + k))
        m.d.sync += self.p.eq(acc)
        return m


def test_ecp5_placement_for_wirelength(tmp_path):
    """timing_driven=False reaches nextpnr as --no-tmdriv: its annealer then weighs no timing."""
    report = synthesize(ShiftAddMultiplier(), "shift_add8", target="ecp5", workdir=tmp_path,
                        fmax=True, timing_driven=False)
    costs = re.findall(r"timing cost = (\d+)", (tmp_path / "nextpnr.log").read_text())
    assert costs and set(costs) == {"0"} and report.fmax_mhz > 20


def test_ecp5_placer_router_and_seed(tmp_path, monkeypatch, capsys):
    """--placer, --router and --seed of `mixpim synth` reach nextpnr's command line."""
    from mixpim.sim.cli import main
    commands, run_tool = [], synth._run_tool
    def record(cmd, *args):
        commands.append(cmd)
        return run_tool(cmd, *args)
    monkeypatch.setattr(synth, "_run_tool", record)
    assert main(["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--placer", "static",
                 "--router", "router2", "--seed", "7", "--json", "--workdir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["placer"], summary["router"], summary["seed"]) == ("static", "router2", 7)
    nextpnr = " ".join(commands[-1])
    assert "--placer static" in nextpnr and "--router router2" in nextpnr and "--seed 7" in nextpnr
    log = (tmp_path / "nextpnr.log").read_text()
    assert "Running Static placer" in log and "HeAP" not in log
    assert "Running router2" in log and summary["fmax_mhz"] > 20


def test_a_tool_stopped_from_outside(tmp_path):
    """A tool killed by a signal (an operator, a job limit) says so, not "failed": its log just
    stops."""
    log = tmp_path / "tool.log"
    log.write_text("Info: routing\nInfo:     12000 |  ...\n")
    with pytest.raises(synth.SynthError) as err:
        synth._run_tool(["sh", "-c", "kill -TERM $$"], tmp_path, log, "nextpnr-ecp5")
    assert str(err.value).startswith(f"nextpnr-ecp5 was stopped by SIGTERM (work directory {tmp_path}); "
                                     "the end of its log:\n")
    assert "12000" in str(err.value)


def test_ecp5_design_too_large(tmp_path):
    """A design the device cannot hold is a result: fits False, no Fmax, what is over."""
    report = synthesize(ManyMultipliers(), "many_mul", target="ecp5", workdir=tmp_path, fmax=True,
                        abc9=False)
    assert report.dsp_cells == 200
    assert report.fits is False and report.fmax_mhz is None and report.fmax_by_clock == {}
    assert report.utilisation["MULT18X18D"] == (200, 156)
    assert report.over() == ["MULT18X18D 200/156 (128%)"]
    for kind, (_used, available) in report.utilisation.items():  # the device table, from nextpnr
        assert synth.ECP5_85F_CELLS.get(kind, available) == available, kind


def test_too_large_to_flatten(tmp_path, monkeypatch):
    """When flattening runs out of the WebAssembly Yosys' memory (forced here: the flat script
    fails and the crash reads as out of memory), the design is mapped module by module and its
    counts are compared with the device: a result, not an error."""
    monkeypatch.setattr(synth, "_yosys_script", lambda *args: "no_such_command\n")
    monkeypatch.setattr(synth, "_out_of_memory", lambda out: True)
    report = synthesize(ManyMultipliers(), "many_mul", target="ecp5", workdir=tmp_path, fmax=True,
                        by_module=True)
    assert report.flattened is False and report.fits is False and report.fmax_mhz is None
    assert report.dsp_cells == 200 and report.mul_cells == 200 and report.luts > 0
    assert report.utilisation["MULT18X18D"] == (200, 156)
    assert report.utilisation["TRELLIS_COMB"][0] >= report.luts
    assert report.by_module[""]["dsp_cells"] == 200
    assert not (tmp_path / "nextpnr.log").exists()
    assert "No such command" in (tmp_path / "yosys_flat.log").read_text()   # the flat run's log
    with pytest.raises(SynthError, match="would fit the LFE5U-85F; place and route needs"):
        synthesize(Multiplier(), "mul8", target="ecp5", workdir=tmp_path, fmax=True)
    pair = synthesize(Pair(), "pair", target="ecp5", by_module=True)    # counts only
    assert pair.flattened is False and pair.luts == pair.by_module[""]["luts"] > 0
    assert not any(kind.startswith("pair") for kind in pair.cells)   # no submodule instances


class ClearedShiftRegister(wiring.Component):
    """1,024 flip-flops that ``clear`` resets in one cycle, as the tile's START resets its units."""

    clear: In(1)
    d: In(1)
    q: Out(1)

    def elaborate(self, platform):
        m = Module()
        bits = Signal(1024)
        with m.If(self.clear):
            m.d.sync += bits.eq(0)
        with m.Else():
            m.d.sync += bits.eq(Cat(self.d, bits[:-1]))
        m.d.comb += self.q.eq(bits[-1])
        return m


def test_ecp5_reset_on_a_global(tmp_path):
    """The reset of 1,024 flip-flops reaches nextpnr through a DCCA, which it routes on a global
    network (decision 15 of docs/decisions.md); small designs keep their resets in the fabric."""
    report = synthesize(ClearedShiftRegister(), "cleared", target="ecp5", workdir=tmp_path,
                        fmax=True, abc9=False)
    ((net, ffs),) = report.global_resets.items()
    assert ffs >= 1024 and report.fits is True and report.fmax_mhz > 20
    assert report.utilisation["DCCA"][0] == 2       # the clock's and the reset's
    assert "using global" in (tmp_path / "nextpnr.log").read_text()


class Pair(wiring.Component):
    """A Multiplier and a ShiftAddMultiplier side by side, as submodules."""

    a: In(8)
    b: In(8)
    p: Out(16)
    q: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = Multiplier()
        m.submodules.sa = sa = ShiftAddMultiplier()
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b), sa.a.eq(self.a), sa.b.eq(self.b),
                     self.p.eq(mul.p), self.q.eq(sa.p)]
        return m


def test_by_module(tmp_path):
    report = synthesize(Pair(), "pair", target="ecp5", workdir=tmp_path, by_module=True)
    assert set(report.by_module) == {"", "mul", "sa"}
    mul, sa, top = report.by_module["mul"], report.by_module["sa"], report.by_module[""]
    assert mul["dsp_cells"] == 1 and sa["dsp_cells"] == 0 and sa["luts"] > 0
    assert mul["ffs"] == sa["ffs"] == 16
    assert top == {k: mul[k] + sa[k] for k in top}  # the top's own cells: none
    assert (tmp_path / "modules.json").is_file()
    assert synthesize(Multiplier(), "mul8", target="generic").by_module == {}
    with pytest.raises(ValueError, match="by_module=True needs target='ecp5' or 'xilinx'"):
        synthesize(never_elaborated(Multiplier()), "m", by_module=True)


def test_ecp5_maps_product_to_dsp(tmp_path):
    report = synthesize(Multiplier(), "mul8", target="ecp5", workdir=tmp_path)
    assert report.mul_cells == 1
    assert report.dsp_cells == report.cells["MULT18X18D"] == 1


def test_xilinx_resources(tmp_path):
    report = synthesize(Multiplier(), "mul8", target="xilinx", workdir=tmp_path)
    assert report.mul_cells == 1
    assert report.dsp_cells == report.cells["DSP48E1"] == 1
    shift_add = synthesize(ShiftAddMultiplier(), "shift_add8", target="xilinx")
    assert shift_add.dsp_cells == 0 and shift_add.ffs == shift_add.cells["FDRE"] == 16
    assert shift_add.luts == sum(n for t, n in shift_add.cells.items() if t.startswith("LUT")) > 0
    assert shift_add.brams == 0 and shift_add.fmax_mhz is None


@pytest.mark.parametrize("target, ff", [("ecp5", "TRELLIS_FF"), ("xilinx", "FDRE")])
def test_classic_abc_lut_mapping(tmp_path, target, ff):
    """``abc9=False`` (the tile's flow) maps the same design to the same flip-flops and DSPs."""
    report = synthesize(ShiftAddMultiplier(), "shift_add8", target=target, abc9=False, workdir=tmp_path)
    assert "abc -lut" in (tmp_path / "synth.ys").read_text()
    assert "abc9" not in (tmp_path / "synth.ys").read_text()
    assert report.ffs == report.cells[ff] == 16 and report.luts > 0 and report.dsp_cells == 0
    assert synthesize(Multiplier(), "mul8", target=target, abc9=False).dsp_cells == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="target must be one of generic, ecp5, xilinx, not 'gowin'"):
        synthesize(never_elaborated(Multiplier()), "m", target="gowin")
    with pytest.raises(ValueError, match="fmax=True needs target='ecp5'"):
        synthesize(never_elaborated(Multiplier()), "m", target="generic", fmax=True)
    with pytest.raises(ValueError, match="fmax_target_mhz must be a positive number, not 0"):
        synthesize(never_elaborated(Multiplier()), "m", target="ecp5", fmax=True, fmax_target_mhz=0)
    with pytest.raises(ValueError, match="placer must be one of heap, static, not 'sa'"):
        synthesize(never_elaborated(Multiplier()), "m", target="ecp5", fmax=True, placer="sa")
    with pytest.raises(ValueError, match="router must be one of router1, router2, not 'r3'"):
        synthesize(never_elaborated(Multiplier()), "m", target="ecp5", fmax=True, router="r3")
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2147483647, not -1"):
        synthesize(never_elaborated(Multiplier()), "m", target="ecp5", fmax=True, seed=-1)


def test_yosys_error_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "_yosys_script", lambda *args: "no_such_command\n")
    with pytest.raises(SynthError, match="No such command"):
        synthesize(Multiplier(), "mul8", workdir=tmp_path)


def test_tool_error_is_one_line(tmp_path, monkeypatch, capsys):
    """The CLI prints a tool failure as one line naming the log's own error, not its tail."""
    from mixpim.sim.cli import main
    monkeypatch.setattr(synth, "_yosys_script", lambda *args: "no_such_command\n")
    assert main(["synth", "mixpe-pe", "--json", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mixpim: error: Yosys failed")
    assert "No such command" in err and "; " not in err


def test_wasm_crash_is_named(tmp_path):
    out = tmp_path / "yosys.out"
    out.write_text("Traceback ...\nCaused by:\n    thrown Wasm exception\n")
    assert "most likely out of memory" in synth._crash_hint(out)
    out.write_text("ERROR: Module `x' not found\n")
    assert synth._crash_hint(out) == ""
