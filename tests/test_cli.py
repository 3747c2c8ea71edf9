"""The `mixpim` command line as a user runs it: real Verilator lint, real Yosys, real checkpoint."""

import json
import subprocess
import sys

import pytest

from mixpim.sim.cli import main
from mixpim.sim.toolchain import find_verilator, verilator_env


def _mixpim(*args):
    return subprocess.run([sys.executable, "-m", "mixpim.sim.cli", *args], capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize("design,opts", [
    ("mixpe-array", ["--rows", "8", "--cols", "8"]),
    ("mixpe-array", ["--rows", "3", "--cols", "5", "--act", "fp16", "--group", "64"]),
    ("baseline-array", ["--rows", "4", "--cols", "2", "--wbits", "3"]),
    ("mixpe-pe", ["--act", "fp16"]),
    ("baseline-pe", []),
])
def test_rtl_output_passes_verilator_lint(tmp_path, design, opts):
    assert main(["rtl", design, *opts, "-o", str(tmp_path)]) == 0
    (verilog,) = tmp_path.glob("*.v")
    manifest = json.loads(verilog.with_suffix(".json").read_text())
    assert manifest["design"] == design and manifest["top"] == verilog.stem
    v = find_verilator()
    lint = subprocess.run([str(v.executable), "--lint-only", str(verilog)], capture_output=True, text=True,
                          env=verilator_env(v), timeout=300)
    assert lint.returncode == 0, lint.stderr[-3000:]


def test_rtl_tile_files(tmp_path):
    """`mixpim rtl tile`: TileTop's Verilog (lint-clean), the register documents of its
    configuration, and a manifest whose hashes and ports describe the files written."""
    from mixpim.hw.tile_csr import TileTop
    from mixpim.models.config import preset
    from mixpim.models.regmap import regmap
    from mixpim.sim.regmap_doc import c_header, markdown
    from mixpim.sim.verilog import content_hash
    (tmp_path / "notes.txt").write_text("kept")
    assert main(["rtl", "tile", "--config", "tiny", "--imem-words", "64", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (verilog,) = tmp_path.glob("tiletop_*.v")
    assert manifest["design"] == "tile" and manifest["top"] == verilog.stem and manifest["imem_words"] == 64
    assert verilog.stem.startswith("tiletop_r4c4_") and (tmp_path / "notes.txt").read_text() == "kept"
    rm = regmap(preset("tiny"), 64)
    assert (tmp_path / "registers.md").read_text() == markdown(rm, "tiny") + "\n"
    assert (tmp_path / "tile_regs.h").read_text() == c_header(rm, "tiny")
    for name, digest in manifest["hashes"].items():
        assert content_hash((tmp_path / name).read_text()) == digest, name
    assert set(manifest["hashes"]) == {verilog.name, "registers.md", "tile_regs.h", "board_ulx3s.v",
                                       "ulx3s.lpf", "build_ulx3s.sh"}
    ports = {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]}
    assert ports["csr__adr"] == ("input", rm.addr_bits) and ports["csr__dat_r"] == ("output", 32)
    top = TileTop(preset("tiny"), 64)
    for part in (top, top.tile, top._csr):   # built for its signature, never elaborated
        part._MustUse__silence = True
    assert len(ports) == 2 + len(list(top.signature.flatten(top)))
    text = verilog.read_text()
    assert all(f"{d} {'' if w == 1 else f'[{w - 1}:0] '}{n};" in text for n, (d, w) in ports.items())
    assert manifest["register_map"]["size_bytes"] == rm.size
    v = find_verilator()
    lint = subprocess.run([str(v.executable), "--lint-only", str(verilog)], capture_output=True, text=True,
                          env=verilator_env(v), timeout=300)
    assert lint.returncode == 0, lint.stderr[-3000:]


@pytest.mark.parametrize("args,message", [
    (["rtl", "mixpe-array", "--rows", "300", "-o", "x"], "rows must be an integer in 1..256, not 300"),
    (["rtl", "mixpe-array", "--rows", "64", "--group", "32", "-o", "x"], "rows (64) must not exceed group (32)"),
    (["rtl", "mixpe-array", "--scale-bits", "20", "-o", "x"], "scale_bits must be an integer in 4..16, not 20"),
    (["quant", "--formats", "fp9"], "unknown weight format 'fp9'"),
    (["quant", "--tensors", "no.such.weight"], "tensor 'no.such.weight' is not in"),
])
def test_bad_input_is_one_line(args, message):
    r = _mixpim(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("mixpim: error: ") and message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["rtl", "nosuch-design", "-o", "x"], ["synth", "mixpe-pe", "--fmax"],
                                  ["synth", "mixpe-pe", "--by-module"],
                                  ["rtl", "mixpe-pe"], ["rtl", "mixpe-pe", "--act", "bf16", "-o", "x"]])
def test_bad_options_are_argparse_errors(args):
    r = _mixpim(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr.splitlines()[-1]


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    r = _mixpim("quant", "--checkpoint", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("mixpim: error: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("design,multipliers", [("mixpe-pe", 0), ("baseline-pe", 2)])
def test_synth_counts_multipliers(design, multipliers):
    r = _mixpim("synth", design, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["mul_cells"] == multipliers
    assert rep["luts"] > 0 and rep["ffs"] > 0


def test_synth_by_module():
    r = _mixpim("synth", "mixpe-array", "--rows", "2", "--cols", "2", "--target", "ecp5", "--by-module")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("module (submodules included)" in ln for ln in lines)
    top = next(ln for ln in lines if ln.strip().startswith("(top)")).split()
    assert int(top[1].replace(",", "")) > 0  # the top's LUTs, its modules included
    assert any(ln.strip().startswith("core ") for ln in lines)


def test_quant_on_minilm_json():
    r = _mixpim("quant", "--formats", "int4-asym,bitmod4", "--tensors",
                "encoder.layer.0.intermediate.dense.weight", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert "bitmod4" in json.dumps(rep) and "int4-asym" in json.dumps(rep)


def test_compile_then_run_on_the_golden_model(tmp_path):
    prog = tmp_path / "linear.mxpm"
    r = _mixpim("compile", "linear", "--config", "tiny", "--m", "5", "--n", "9", "--k", "70", "-o", str(prog))
    assert r.returncode == 0, r.stderr
    assert prog.is_file() and "GEMM" in prog.with_suffix(".lst").read_text()
    r = _mixpim("run", str(prog))
    assert r.returncode == 0, r.stderr
    assert "status    OK" in r.stdout and "races 0" in r.stdout
    cycles = int(r.stdout.split("cycles")[1].split()[0])
    assert cycles > 0


def test_compile_then_run_on_the_rtl(tmp_path):
    prog = tmp_path / "linear.mxpm"
    r = _mixpim("compile", "linear", "--config", "tiny", "--m", "6", "--n", "5", "--k", "40",
                "--out-format", "int8", "-o", str(prog))
    assert r.returncode == 0, r.stderr
    r = _mixpim("run", str(prog), "--backend", "rtl")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bit-exact yes" in r.stdout and "cycle-exact yes" in r.stdout
    golden, rtl = r.stdout.split("cycles")[1].split()[:2]
    assert golden == rtl and int(rtl) > 0


def test_run_rtl_has_no_timing_only_mode(tmp_path):
    prog = tmp_path / "linear.mxpm"
    assert _mixpim("compile", "linear", "--m", "1", "--n", "4", "--k", "32", "-o", str(prog)).returncode == 0
    r = _mixpim("run", str(prog), "--backend", "rtl", "--timing-only")
    assert r.returncode == 2 and r.stderr.startswith("mixpim: error: --timing-only")
    assert "Traceback" not in r.stderr


def test_run_rejects_a_corrupt_program(tmp_path):
    bad = tmp_path / "bad.mxpm"
    bad.write_bytes(b"MXPM" + bytes(40))
    r = _mixpim("run", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("mixpim: error: ") and "Traceback" not in r.stderr


# -- outputs: atomic, and a run into an existing folder says what it replaces -------------------

def test_rtl_into_an_existing_folder_names_what_it_replaces(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["rtl", "mixpe-pe", "-o", str(tmp_path)]) == 0
    first = capsys.readouterr()
    assert "replaced" not in first.err
    (verilog,) = tmp_path.glob("*.v")
    verilog.write_text("stale")
    assert main(["rtl", "mixpe-pe", "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    manifest = verilog.with_suffix(".json").name
    assert len(err) == 1 and "replaced" in err[0] and verilog.name in err[0] and manifest in err[0]
    assert verilog.read_text().startswith("// Generated by mixpim")
    assert (tmp_path / "notes.txt").read_text() == "mine"  # files the command does not write stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.txt", verilog.name, manifest])


def test_compile_replaces_program_and_listing_together(tmp_path):
    prog = tmp_path / "sub" / "linear.mxpm"
    args = ["compile", "linear", "--m", "2", "--n", "4", "--k", "32", "-o", str(prog)]
    r = _mixpim(*args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _mixpim(*args[:-2], "--seed", "3", "-o", str(prog))
    assert r.returncode == 0 and "replaced linear.mxpm, linear.lst" in r.stderr
    from mixpim.models.program import Program
    assert len(Program.load(prog).instructions) > 0 and "GEMM" in prog.with_suffix(".lst").read_text()
    assert sorted(p.name for p in prog.parent.iterdir()) == ["linear.lst", "linear.mxpm"]


def test_demo_golden_into_an_existing_folder(tmp_path, capsys):
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "mine.txt").write_text("mine")
    assert main(["demo", "--ffn", "--backend", "golden", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "replaced result.json in" in out
    assert json.loads((tmp_path / "result.json").read_text())["backend"] == "golden"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["cycles.png", "ffn.lst", "ffn.mxpm", "mine.txt", "report.md", "result.json"])


def test_embed_json():
    """`mixpim embed --json`: the embedding of a sentence on the golden tile (all six MiniLM
    layers), unit length, close to the float32 model's."""
    r = _mixpim("embed", "The quick brown fox jumps over the lazy dog.", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    [e] = out["embeddings"]
    assert len(e) == 384 and abs(sum(x * x for x in e) - 1) < 1e-5
    assert out["tokens"] == [12] and out["backend"] == "golden" and out["rtl_exact"] is None
    assert out["cosine_vs_float32"][0] > 0.99 and out["cycles"][0] > 0


def test_embed_refuses_an_int8_tile():
    r = _mixpim("embed", "x", "--config", "fpga")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "mixpim: error: whole models run on FP16-activation (W4A16) tiles, not mixpe-w4a8\n"


def test_generate_json():
    """`mixpim generate --json`: SmolLM2 greedy decoding on the golden tile (a prefill, then a
    decode step with attention on PIM) gives the float32 model's tokens."""
    r = _mixpim("generate", "The capital of France is", "--max-new-tokens", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    [req] = out["requests"]
    from mixpim.compiler.gguf_checkpoint import llama_weights, smollm2_path
    from mixpim.compiler.llama_float import LlamaFloat
    w = llama_weights(smollm2_path())
    assert req["ids"] == LlamaFloat(w, w.config).generate(req["prompt_ids"], 2)
    assert req["text"].startswith(" Paris")
    assert [run["kind"] for run in out["runs"]] == ["prefill", "step"]
    assert all(run["cycles"] > 0 and run["busy"]["GEMM"] > 0 for run in out["runs"])


def test_generate_refuses_bad_input(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    for args, msg in ((["--batch-file", str(empty)], f"batch file {str(empty)!r} holds no prompts"),
                      (["x", "--batch-file", str(empty)], "give a PROMPT or --batch-file FILE (one prompt "
                       "per line), not both or neither"),
                      (["x", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, not 0")):
        r = _mixpim("generate", *args)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"mixpim: error: {msg}\n")
