"""The demo (sim/demo.py) and its reports (sim/report.py): MiniLM's layer-0 FFN block compiled and
run on the golden tile, at least 0.99 cosine against float32, with report, JSON, PNG and program."""

import json
import sys
import types

import numpy as np
import pytest

from mixpim.models.program import Program
from mixpim.sim import report
from mixpim.sim.cli import main
from mixpim.sim.demo import DemoError, run_demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def minilm():
    from mixpim.compiler import checkpoint
    return checkpoint.minilm_dir()  # installed with the pinned requirements: never skipped


def quiet(_line):
    pass


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and b"IHDR" in data[:16] and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    from matplotlib.image import imread
    img = imread(path)  # decodes: a real, complete PNG
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_ffn_demo_on_golden(tmp_path, minilm):
    result = run_demo(tmp_path, say=quiet)
    for name in ("report.md", "result.json", "cycles.png", "ffn.mxpm", "ffn.lst"):
        assert (tmp_path / name).is_file(), name
    assert result["ok"] and all(result["checks"].values()) and result["rtl"] is None
    acc = result["accuracy"]
    assert acc["cosine_vs_float32"] >= 0.99  # the acceptance (0.977 with per-tensor scales)
    assert acc["cosine_vs_float32"] <= acc["cosine_w4_weights_float_activations"]
    assert result["workload"]["tokens (M)"] == len(result["tokens"]) == 18
    st = result["status"]
    assert st["error"] == "OK" and result["races"] == 0
    assert 0 < st["busy"]["GEMM"] < st["cycles"] and st["busy"]["DMA"] > 0 and st["busy"]["VEC"] > 0
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["accuracy"]["cosine_vs_float32"] == acc["cosine_vs_float32"]
    assert saved["status"] == st
    text = (tmp_path / "report.md").read_text()
    assert f"{acc['cosine_vs_float32']:.5f}" in text and f"{st['cycles']:,}" in text and "cycles.png" in text
    assert_png(tmp_path / "cycles.png")
    prog = Program.load(tmp_path / "ffn.mxpm")
    assert len(prog.instructions) == result["workload"]["instructions"]
    assert "GEMM" in (tmp_path / "ffn.lst").read_text()


def test_demo_cli_with_array_override(tmp_path, minilm, capsys):
    # golden: Verilating the demo's 8x8 tile would take a fifth of the suite's time budget; `make
    # demo` runs it on the RTL (docs/decisions.md, "Tests")
    assert main(["demo", "--backend", "golden", "-o", str(tmp_path), "--rows", "8", "--cols", "8"]) == 0
    out = capsys.readouterr().out
    assert "8x8" in out and "cosine 0.99" in out
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["rows"] == 8 and result["accuracy"]["cosine_vs_float32"] >= 0.99


def test_rtl_backend_is_one_pluggable_call(tmp_path, minilm, monkeypatch):
    """backend="rtl" calls mixpim.sim.tile_cosim.run_tile(program) and reports what it returns (a
    stand-in here: the golden run, with the RTL off by 7 cycles)."""
    from mixpim.models.executor import execute
    calls = []

    def run_tile(program):
        calls.append(program)
        g = execute(program)
        st = g.status
        return types.SimpleNamespace(bit_exact=True, cycle_exact=False, golden=g, rtl_status={
            "cycles": st.cycles + 7, "busy": list(st.busy), "dispatched": st.dispatched, "error": 0,
            "error_pc": 0})

    monkeypatch.setitem(sys.modules, "mixpim.sim.tile_cosim", types.SimpleNamespace(run_tile=run_tile))
    result = run_demo(tmp_path, backend="rtl", say=quiet)
    assert len(calls) == 1 and isinstance(calls[0], Program)
    assert result["rtl"]["bit_exact"] and not result["rtl"]["cycle_exact"]
    assert result["rtl"]["status"]["cycles"] == result["status"]["cycles"] + 7
    assert not result["ok"] and not result["checks"]["RTL == golden cycles"]
    text = (tmp_path / "report.md").read_text()
    assert "| | golden | RTL |" in text and "cycles exact (RTL vs golden): **NO**" in text
    assert_png(tmp_path / "cycles.png")


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="verilog"), "backend must be one of golden, rtl"),
    (dict(sentence="  "), "non-empty"),
    (dict(layer=-1), "non-negative"),
])
def test_demo_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(DemoError, match=message):
        run_demo(tmp_path, say=quiet, **kwargs)


def test_cli_demo_fp16_needs_projection(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--act", "fp16"]) == 2
    assert "--projection" in capsys.readouterr().err


# -- reports -----------------------------------------------------------------------------------

def test_report_from_plain_dicts(tmp_path):
    result = {"title": "a run", "status": {"cycles": 100, "busy": [60, 80, 5, 0], "dispatched": 9,
                                          "error": 0, "error_pc": 0},
              "rtl": {"bit_exact": True, "cycle_exact": True,
                      "status": {"cycles": 100, "busy": [60, 80, 5, 0], "dispatched": 9, "error": 0,
                                 "error_pc": 0}},
              "accuracy": {"cosine": np.float64(0.5)}}
    paths = report.write_report(result, tmp_path / "r")
    text = paths["report"].read_text()
    assert "| GEMM busy | 80 (80.0%) | 80 |" in text and "PIM" not in text.split("## RTL")[0]
    assert "Status OK," in text
    assert json.loads(paths["json"].read_text())["accuracy"]["cosine"] == 0.5
    assert_png(paths["plot"])


def test_unit_status_forms():
    want = {"cycles": 10, "busy": {"DMA": 1, "GEMM": 2, "VEC": 3, "PIM": 0}, "dispatched": 4,
            "error": "DEADLOCK", "error_pc": 5}
    assert report.unit_status({"cycles": 10, "busy": (1, 2, 3, 0), "dispatched": 4, "error": 6,
                               "error_pc": 5}) == want
    assert report.unit_status(types.SimpleNamespace(**want)) == want
    with pytest.raises(report.ReportError, match="cycles and busy"):
        report.unit_status({"busy": [1]})
    with pytest.raises(report.ReportError, match="at least one run"):
        report.plot_unit_cycles("x.png", {})
