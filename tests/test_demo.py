"""The demos and their reports (sim/report.py): the model demo (sim/demo_model.py) on a small GGUF
checkpoint, its whole model on the golden tile and block 0 on the Verilated tile; MiniLM's layer-0
FFN block (sim/demo.py, ``demo --ffn``) on the golden tile, at least 0.99 cosine against float32,
with report, JSON, PNG and program."""

import dataclasses
import json
import re
import sys
import types

import numpy as np
import pytest
from helpers import TINY16, WHOLE_MODEL_IMEM
from tiny_gguf import Letters

from mixpim.compiler.emit import CompileError
from mixpim.models.errors import ShapeError
from mixpim.models.program import Program
from mixpim.sim import report
from mixpim.sim.cli import main
from mixpim.sim.demo import DemoError, run_demo
from mixpim.sim.demo_generation import load_model
from mixpim.sim.demo_model import MODEL_DEMO_FILES, run_model_demo

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


# -- the model demo on a small GGUF checkpoint (tests/tiny_gguf.py) ------------------------------

IDS = [3, 17, 22, 5, 9, 28, 1]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-block checkpoint without a tokenizer, calibrated on token ids."""
    from tiny_gguf import write_tiny_llama
    path = write_tiny_llama(tmp_path_factory.mktemp("checkpoint") / "tiny.gguf", layers=2)
    return load_model(path, calibration=[IDS, [4, 8, 15, 16, 23], list(range(20))])


def test_model_demo_golden_and_rtl(tmp_path, tiny_llama):
    """The whole flow: the whole model generates on the golden llm tile, block 0 runs on the
    Verilated TINY16 tile (the build every whole-model RTL test shares)."""
    result = run_model_demo(tmp_path, prompt=IDS, new_tokens=3, model=tiny_llama, rtl_config=TINY16,
                            imem_words=WHOLE_MODEL_IMEM, say=quiet)
    assert result["ok"] and all(result["checks"].values()) and len(result["checks"]) == 8
    g = result["generation"]
    assert len(g["ids"]) == 3 and g["ids"] == g["float32_ids"] and g["equal_tokens"] == 3
    assert [p["kind"] for p in g["programs"]] == ["prefill", "step", "step"]
    assert all(p["cycles"] > p["busy"]["DMA"] > 0 and p["instructions"] > 0 for p in g["programs"])
    assert all(p["busy"]["PIM"] > 0 for p in g["programs"][1:])  # attention on PIM in every step
    layer = result["layer"]
    assert layer["config"] == TINY16.to_dict() and layer["imem_words"] == WHOLE_MODEL_IMEM
    for kind in ("prefill", "step"):
        f = layer[kind]
        assert f["bit_exact"] and f["cycle_exact"] and f["rtl"] == f["golden"] and f["rtl"]["error"] == "OK"
        # a 4x4 tile gives the 16x16 llm tile's block output bit for bit
        assert f["same_as_golden_config"] and f["max_difference_vs_golden_config"] == 0
        assert 0 < f["golden_config_cycles"] < f["rtl"]["cycles"]  # 16x16 is faster than 4x4
        assert f["cosine_vs_float32_min"] > 0.99
    assert layer["step"]["rtl"]["busy"]["PIM"] > 0 and layer["prefill"]["rtl"]["cycles"] > 0
    assert result["rtl"]["status"] == layer["step"]["rtl"] and result["status"] == layer["step"]["golden"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MODEL_DEMO_FILES)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["generation"] == g and saved["layer"] == layer and saved["prompt_ids"] == IDS
    text = (tmp_path / "report.md").read_text()
    assert "| | golden | RTL |" in text and "cycles exact (RTL vs golden): yes" in text
    assert "generation.png" in text and f"{layer['step']['rtl']['cycles']:,}" in text
    assert_png(tmp_path / "cycles.png")
    assert_png(tmp_path / "generation.png")


def test_model_demo_text_prompt_on_golden(tmp_path, tiny_llama):
    dm = dataclasses.replace(tiny_llama, tokenizer=Letters())
    result = run_model_demo(tmp_path, prompt="hello", new_tokens=2, model=dm, rtl=False, say=quiet)
    g = result["generation"]
    assert result["ok"] and result["layer"] is None and result["rtl"] is None
    assert result["prompt"] == "hello" and result["prompt_ids"] == [7, 4, 11, 11, 14]
    assert g["text"] == Letters().decode(g["ids"]) and g["float32_text"] == Letters().decode(g["float32_ids"])
    assert result["status"]["cycles"] == g["programs"][-1]["cycles"]
    assert "'hello'" in (tmp_path / "report.md").read_text()
    assert_png(tmp_path / "generation.png")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prompt=" "), DemoError, "the prompt must be a non-empty string"),
    (dict(prompt=[]), DemoError, "the prompt must be a non-empty string or list of token ids"),
    (dict(prompt="hello"), DemoError, "tiny.gguf has no tokenizer: give the prompt as token ids"),
    (dict(prompt=[3, 40]), ShapeError, "token id 40 is out of range 0..39"),
    (dict(prompt=IDS * 9, new_tokens=2), DemoError, "63 tokens and 2 new tokens need 65 positions; at most 64"),
    (dict(prompt=IDS * 3, rtl=True, rtl_config=TINY16), DemoError,
     "the prompt's 21 tokens and a decode step do not fit the RTL tile's prefill of 16 tokens (4x4 array)"),
    (dict(new_tokens=0), DemoError, "new_tokens must be a positive integer, not 0"),
    (dict(new_tokens=True), DemoError, "new_tokens must be a positive integer, not True"),
    (dict(imem_words=0), DemoError, "imem_words must be an integer in 1..65536, not 0"),
    (dict(rtl=True, rtl_config=TINY16.replace(rows=32, cols=32)), DemoError, "32x32 array"),
    (dict(config="fpga"), CompileError, "whole models run on FP16-activation"),
])
def test_model_demo_rejects_bad_arguments(tmp_path, tiny_llama, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        run_model_demo(tmp_path / "out", model=tiny_llama, say=quiet, **{"prompt": IDS, "rtl": False, **kwargs})
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_tokenizer_needs_calibration_ids(tmp_path):
    from tiny_gguf import write_tiny_llama
    with pytest.raises(DemoError, match="tiny.gguf has no tokenizer: give calibration token ids"):
        load_model(write_tiny_llama(tmp_path / "tiny.gguf"))


@pytest.mark.parametrize("argv, kwargs, status", [
    ([], dict(prompt="The capital of France is", new_tokens=3, rtl=True), 0),
    (["--prompt", "Hi", "--max-new-tokens", "2", "--backend", "golden"],
     dict(prompt="Hi", new_tokens=2, rtl=False), 1),
])
def test_cli_model_demo_options(tmp_path, monkeypatch, argv, kwargs, status):
    """`mixpim demo` (no --ffn/--projection) is the model demo; its exit status is 1 when a check fails."""
    from mixpim.sim import demo_model
    calls = []

    def run(out_dir, **kw):
        calls.append((out_dir, kw))
        return {"ok": status == 0}
    monkeypatch.setattr(demo_model, "run_model_demo", run)
    assert main(["demo", "-o", str(tmp_path), *argv]) == status
    assert calls == [(str(tmp_path), kwargs)]


# -- the FFN demo (demo --ffn) -------------------------------------------------------------------

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
    assert main(["demo", "--ffn", "--backend", "golden", "-o", str(tmp_path), "--rows", "8", "--cols", "8"]) == 0
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
    assert main(["demo", "--ffn", "-o", str(tmp_path), "--act", "fp16"]) == 2
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


def test_unit_cycles_of_many_runs(tmp_path):
    """A bar group per run, however many (a generation's steps)."""
    runs = {f"step {i}": {"cycles": 100 + i, "busy": (50, 60 + i, 5, i)} for i in range(8)}
    assert_png(report.plot_unit_cycles(tmp_path / "steps.png", runs))
