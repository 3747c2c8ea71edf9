"""Every bad `mixpim` input: exit status 2, exactly one stderr line ``mixpim: error: ...`` naming the
problem, no traceback, no warning, and the folder it ran in unchanged (no partial output, no
temporary file, no previous output destroyed). Plus the atomic writer (sim/outputs.py) itself."""

import os
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from safetensors.numpy import save_file

from mixpim.models.config import preset
from mixpim.models.isa import Instruction, Opcode
from mixpim.models.program import FORMAT_VERSION, MAGIC, Program
from mixpim.sim import outputs
from mixpim.sim.cli import main
from mixpim.sim.tile_cosim import RTL_MAX_PES, rtl_size_problem

PRECIOUS = b"an earlier output that must survive\n"
LINEAR = ["compile", "linear", "--m", "1", "--n", "4", "--k", "32"]


def _program_file(config_text, debug=b""):
    """A program file (valid header and CRC) with this raw configuration and debug section."""
    body = bytearray(struct.pack("<I", len(config_text)) + config_text)
    body += struct.pack("<I", 1) + Instruction(Opcode.HALT).encode().to_bytes(16, "little")
    body += struct.pack("<I", 0) + struct.pack("<I", len(debug)) + debug
    return struct.pack("<4sHHII", MAGIC, FORMAT_VERSION, 0, len(body), zlib.crc32(bytes(body))) + bytes(body)


def _inputs(d):
    """The bad inputs, and files a failed command must leave alone, in folder ``d``."""
    (d / "file").write_bytes(PRECIOUS)
    (d / "folder").mkdir()
    (d / "folder" / "keep.txt").write_bytes(PRECIOUS)
    (d / "prog.mxpm").write_bytes(PRECIOUS)       # an earlier program ...
    (d / "prog.lst").mkdir()                      # ... whose listing path is a folder
    (d / "X.lst").write_bytes(PRECIOUS)
    (d / "not-utf8.json").write_bytes(b'{"rows": "\xff"}')
    (d / "bigint.json").write_text('{"rows": ' + "1" * 5000 + "}")
    (d / "deep.json").write_text('{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (d / "bigint.toml").write_text("rows = " + "1" * 5000 + "\n")
    (d / "deep.toml").write_text("rows = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (d / "nested.json").write_text('{"rows": ' + "[" * 900 + "]" * 900 + "}")
    (d / "long-string.json").write_text('{"pe": "' + "x" * 3000 + '"}')
    (d / "long-int.json").write_text('{"rows": ' + "9" * 4000 + "}")
    good = preset("tiny").to_json().encode()
    (d / "cfg-bigint.mxpm").write_bytes(_program_file(b'{"rows": ' + b"1" * 5000 + b"}"))
    (d / "cfg-deep.mxpm").write_bytes(_program_file(b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    (d / "cfg-not-utf8.mxpm").write_bytes(_program_file(b'{"rows": "\xff"}'))
    deep = b"[" * 100_000 + b"]" * 100_000
    (d / "dbg-deep.mxpm").write_bytes(_program_file(good, b'{"symbols": {"a": ' + deep + b'}, "comments": {}}'))
    (d / "dbg-nested.mxpm").write_bytes(_program_file(
        good, b'{"symbols": {"a": ' + b"[" * 900 + b"]" * 900 + b'}, "comments": {}}'))
    (d / "dbg-bigint.mxpm").write_bytes(_program_file(good, b'{"symbols": {"a": ' + b"1" * 5000
                                                      + b'}, "comments": {}}'))
    Program(preset("npu128"), [Instruction(Opcode.HALT)]).save(d / "npu128.mxpm")
    (d / "demo-out" / "report.md").mkdir(parents=True)  # an output file's name taken by a folder
    (d / "rtl-out" / "mixpe_pe_w4_int8_g32_s16_h12.v").mkdir(parents=True)
    (d / "tile-out" / "registers.md").mkdir(parents=True)   # one of `rtl tile`'s files taken ...
    (d / "tile-out" / "manifest.json").write_bytes(PRECIOUS)  # ... so an earlier one must survive
    rng = np.random.default_rng(0)
    save_file({"l.0.dense.weight": rng.normal(size=(8, 64)).astype(np.float32),
               "l.0.LayerNorm.weight": np.ones(64, np.float32),  # a norm scale: not a Linear weight
               "l.0.flat.weight": rng.normal(size=(512,)).astype(np.float32)}, str(d / "flat.safetensors"))
    save_file({"l.0.dense.weight": rng.normal(size=(8, 64)).astype(np.float32),
               "l.0.cube.weight": rng.normal(size=(2, 8, 64)).astype(np.float32)}, str(d / "cube.safetensors"))
    w = rng.normal(size=(8, 64)).astype(np.float32)
    w[1, 3], w[5, 0] = np.nan, np.inf
    save_file({"l.0.dense.weight": w}, str(d / "nan.safetensors"))


def _snapshot(d):
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


# (id, argv, words the message must contain (case-insensitive))
CASES = [
    # -- output paths --------------------------------------------------------------------------
    ("rtl-o-proc", ["rtl", "mixpe-pe", "-o", "/proc/mixpim-out"], ["/proc/mixpim-out"]),
    ("rtl-o-dev-null", ["rtl", "mixpe-pe", "-o", "/dev/null"], ["/dev/null", "not a folder"]),
    ("rtl-o-file", ["rtl", "mixpe-pe", "-o", "file"], ["'file'", "not a folder"]),
    ("rtl-tile-o-file", ["rtl", "tile", "-o", "file"], ["'file'", "not a folder"]),
    ("rtl-o-empty", ["rtl", "mixpe-pe", "-o", ""], ["empty"]),
    ("demo-o-file", ["demo", "--backend", "golden", "-o", "file"], ["'file'", "not a folder"]),
    ("demo-o-proc", ["demo", "--backend", "golden", "-o", "/proc/mixpim-demo"], ["/proc/mixpim-demo"]),
    ("synth-workdir-proc", ["synth", "mixpe-pe", "--workdir", "/proc/mixpim-wd"], ["/proc/mixpim-wd"]),
    ("synth-workdir-file", ["synth", "mixpe-pe", "--workdir", "file"], ["work directory", "not a folder"]),
    ("compile-o-dev-null", [*LINEAR, "-o", "/dev/null"], ["/dev/null", "not a regular file"]),
    ("compile-o-proc", [*LINEAR, "-o", "/proc/mixpim.mxpm"], ["/proc"]),
    ("compile-o-folder", [*LINEAR, "-o", "folder"], ["'folder'", "folder"]),
    ("compile-listing-is-folder", [*LINEAR, "-o", "prog.mxpm"], ["prog.lst", "folder"]),
    ("compile-o-lst", [*LINEAR, "-o", "X.lst"], ["X.lst", "listing", "overwrite"]),
    ("demo-output-file-is-folder", ["demo", "--backend", "golden", "-o", "demo-out"],
     ["demo-out/report.md", "folder"]),
    ("rtl-output-file-is-folder", ["rtl", "mixpe-pe", "-o", "rtl-out"], ["rtl-out/mixpe_pe", "folder"]),
    # -- configuration files -------------------------------------------------------------------
    ("config-not-utf8", [*LINEAR, "--config", "not-utf8.json", "-o", "new.mxpm"], ["not-utf8.json", "UTF-8"]),
    ("config-bigint-json", [*LINEAR, "--config", "bigint.json", "-o", "new.mxpm"], ["JSON", "digits"]),
    ("config-deep-json", [*LINEAR, "--config", "deep.json", "-o", "new.mxpm"], ["JSON", "nested"]),
    ("config-nested-json", [*LINEAR, "--config", "nested.json", "-o", "new.mxpm"], ["rows", "single value"]),
    ("config-bigint-toml", [*LINEAR, "--config", "bigint.toml", "-o", "new.mxpm"], ["TOML", "digits"]),
    ("config-deep-toml", [*LINEAR, "--config", "deep.toml", "-o", "new.mxpm"], ["TOML", "nested"]),
    ("config-long-string", [*LINEAR, "--config", "long-string.json", "-o", "new.mxpm"], ["pe", "3000-character"]),
    ("config-long-int", [*LINEAR, "--config", "long-int.json", "-o", "new.mxpm"], ["rows", "4000-digit"]),
    ("config-device", [*LINEAR, "--config", "/dev/zero", "-o", "new.mxpm"], ["/dev/zero", "larger"]),
    ("config-folder", [*LINEAR, "--config", "folder", "-o", "new.mxpm"], ["folder", "directory"]),
    ("rtl-tile-config-deep", ["rtl", "tile", "--config", "deep.json", "-o", "new"], ["nested"]),
    ("demo-config-bigint", ["demo", "--ffn", "--backend", "golden", "--config", "bigint.toml", "-o", "new"],
     ["digits"]),
    # -- program files -------------------------------------------------------------------------
    ("run-cfg-bigint", ["run", "cfg-bigint.mxpm"], ["configuration", "digits"]),
    ("run-cfg-deep", ["run", "cfg-deep.mxpm"], ["configuration", "nested"]),
    ("run-cfg-not-utf8", ["run", "cfg-not-utf8.mxpm"], ["configuration", "UTF-8"]),
    ("run-dbg-deep", ["run", "dbg-deep.mxpm"], ["debug", "nested"]),
    ("run-dbg-nested", ["run", "dbg-nested.mxpm"], ["debug", "symbol a", "list"]),
    ("run-dbg-bigint", ["run", "dbg-bigint.mxpm"], ["debug", "digits"]),
    ("run-rtl-cfg-deep", ["run", "cfg-deep.mxpm", "--backend", "rtl"], ["configuration", "nested"]),
    ("run-rtl-cfg-bigint", ["run", "cfg-bigint.mxpm", "--backend", "rtl"], ["configuration", "digits"]),
    ("run-folder", ["run", "folder"], ["folder", "directory"]),
    ("run-device", ["run", "/dev/zero"], ["/dev/zero", "device"]),
    # -- RTL size limit --------------------------------------------------------------------------
    ("run-rtl-npu128", ["run", "npu128.mxpm", "--backend", "rtl"], ["128x128", "RTL", "--backend golden"]),
    ("demo-rtl-npu128", ["demo", "--ffn", "--config", "npu128", "-o", "new"],
     ["128x128", "RTL", "--backend golden"]),
    ("rtl-tile-npu128", ["rtl", "tile", "--config", "npu128", "-o", "new"], ["128x128", "RTL"]),
    ("demo-projection-too-big", ["demo", "--projection", "--rows", "32", "--cols", "32", "-o", "new"],
     ["32x32", "RTL"]),
    # -- option values ---------------------------------------------------------------------------
    ("imem-words-0", ["rtl", "tile", "--imem-words", "0", "-o", "new"], ["--imem-words", "0"]),
    ("imem-words-negative", ["rtl", "tile", "--imem-words", "-5", "-o", "new"], ["--imem-words", "-5"]),
    ("imem-words-huge", ["rtl", "tile", "--imem-words", "100000000", "-o", "new"], ["--imem-words", "100000000"]),
    ("compile-seed-negative", ["compile", "linear", "--m", "1", "--n", "4", "--k", "32", "--seed", "-1",
                               "-o", "new.mxpm"], ["--seed", "-1"]),
    ("compile-m-0", ["compile", "linear", "--m", "0", "--n", "4", "--k", "32", "-o", "new.mxpm"], ["--m"]),
    ("compile-n-negative", ["compile", "linear", "--m", "1", "--n", "-3", "--k", "32", "-o", "new.mxpm"], ["--n"]),
    ("compile-too-big", ["compile", "linear", "--m", "1", "--n", "100000", "--k", "100000", "-o", "new.mxpm"],
     ["DRAM", "100000"]),
    ("compile-too-many-weights", ["compile", "linear", "--config", "npu128", "--m", "1", "--n", "16384",
                                  "--k", "16384", "-o", "new.mxpm"], ["synthetic weights", "16384"]),
    ("demo-rows-0", ["demo", "--ffn", "--backend", "golden", "--rows", "0", "-o", "new"], ["--rows", "0"]),
    ("demo-cols-0", ["demo", "--ffn", "--backend", "golden", "--cols", "0", "-o", "new"], ["--cols", "0"]),
    ("demo-projection-rows-0", ["demo", "--projection", "--rows", "0", "-o", "new"], ["--rows", "0"]),
    ("demo-projection-golden", ["demo", "--projection", "--backend", "golden", "-o", "new"],
     ["--projection", "golden"]),
    ("demo-ffn-and-projection", ["demo", "--ffn", "--projection", "-o", "new"], ["--ffn", "--projection"]),
    ("demo-ffn-prompt", ["demo", "--ffn", "--prompt", "x", "-o", "new"], ["--prompt", "SmolLM2"]),
    ("demo-projection-tokens", ["demo", "--projection", "--max-new-tokens", "2", "-o", "new"],
     ["--max-new-tokens", "SmolLM2"]),
    ("demo-model-rows", ["demo", "--rows", "8", "-o", "new"], ["--rows", "--ffn"]),
    ("demo-model-config", ["demo", "--config", "fpga", "--act", "int8", "-o", "new"],
     ["--config", "--act", "llm"]),
    ("demo-new-tokens-0", ["demo", "--max-new-tokens", "0", "-o", "new"], ["--max-new-tokens", "0"]),
    ("demo-new-tokens-too-many", ["demo", "--backend", "golden", "--max-new-tokens", "256", "-o", "new"],
     ["256 new tokens", "256 positions"]),
    ("demo-prompt-blank", ["demo", "--prompt", " ", "-o", "new"], ["prompt", "non-empty"]),
    ("rtl-int-not-int", ["rtl", "mixpe-array", "--rows", "four", "-o", "new"], ["--rows", "four"]),
    # -- options a design ignores, empty lists ----------------------------------------------------
    ("pe-rows", ["rtl", "mixpe-pe", "--rows", "5", "-o", "new"], ["--rows", "mixpe-pe"]),
    ("pe-cols", ["rtl", "bitmod-pe", "--cols", "2", "-o", "new"], ["--cols", "bitmod-pe"]),
    ("synth-pe-rows", ["synth", "baseline-pe", "--rows", "2"], ["--rows", "baseline-pe"]),
    ("array-config", ["rtl", "mixpe-array", "--config", "fpga", "-o", "new"], ["--config", "tile"]),
    ("array-imem", ["rtl", "mixpe-array", "--imem-words", "64", "-o", "new"], ["--imem-words", "tile"]),
    ("tile-wbits", ["rtl", "tile", "--wbits", "3", "-o", "new"], ["--wbits", "--config"]),
    ("rtl-tile-output-taken", ["rtl", "tile", "-o", "tile-out"], ["registers.md", "tile-out"]),
    ("rtl-tile-o-under-file", ["rtl", "tile", "-o", "file/sub"], ["file"]),
    ("synth-tile-unknown-config", ["synth", "tile", "--config", "nosuch", "--target", "ecp5"],
     ["nosuch", "presets"]),
    ("synth-tile-bad-target", ["synth", "tile", "--target", "gowin"], ["--target", "gowin"]),
    ("synth-tile-fmax-xilinx", ["synth", "tile", "--target", "xilinx", "--fmax"], ["--fmax", "ecp5", "xilinx"]),
    ("synth-tile-fmax-generic", ["synth", "tile", "--fmax"], ["--fmax", "ecp5"]),
    ("synth-tile-rows", ["synth", "tile", "--rows", "2", "--target", "ecp5"], ["--rows", "--config"]),
    ("synth-tile-npu128", ["synth", "tile", "--config", "npu128", "--target", "ecp5"], ["128x128", "RTL"]),
    ("synth-tile-imem-0", ["synth", "tile", "--imem-words", "0"], ["--imem-words", "0"]),
    ("synth-array-config", ["synth", "mixpe-array", "--config", "tiny"], ["--config", "tile"]),
    ("synth-tile-workdir-file", ["synth", "tile", "--workdir", "file"], ["file"]),
    ("synth-timeout-0", ["synth", "tile", "--timeout", "0"], ["--timeout", "positive"]),
    ("synth-timeout-nan", ["synth", "mixpe-pe", "--timeout", "nan"], ["--timeout", "nan"]),
    ("synth-timeout-inf", ["synth", "mixpe-pe", "--timeout", "inf"], ["--timeout", "inf"]),
    ("synth-timeout-word", ["synth", "mixpe-pe", "--timeout", "long"], ["--timeout", "long"]),
    ("synth-no-tmdriv-no-fmax", ["synth", "tile", "--target", "ecp5", "--no-tmdriv"], ["--no-tmdriv", "--fmax"]),
    ("synth-freq-no-fmax", ["synth", "tile", "--target", "ecp5", "--freq", "12"], ["--freq", "--fmax"]),
    ("synth-freq-0", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--freq", "0"], ["--freq", "positive"]),
    ("synth-freq-nan", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--freq", "nan"], ["--freq", "nan"]),
    ("synth-placer-no-fmax", ["synth", "tile", "--target", "ecp5", "--placer", "static"], ["--placer", "--fmax"]),
    ("synth-router-no-fmax", ["synth", "tile", "--target", "ecp5", "--router", "router2"], ["--router", "--fmax"]),
    ("synth-placer-bad", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--placer", "sa"], ["--placer", "sa"]),
    ("synth-router-bad", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--router", "r3"], ["--router", "r3"]),
    ("synth-seed-no-fmax", ["synth", "tile", "--target", "ecp5", "--seed", "2"], ["--seed", "--fmax"]),
    ("synth-seed-negative", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--seed", "-1"], ["--seed", "-1"]),
    ("synth-seed-large", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--seed", "2147483648"], ["--seed", "2147483648"]),
    ("synth-seed-word", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--seed", "x"], ["--seed", "x"]),
    ("synth-freq-word", ["synth", "mixpe-pe", "--target", "ecp5", "--fmax", "--freq", "fast"], ["--freq", "fast"]),
    ("types-not-bitmod", ["rtl", "mixpe-array", "--types", "INT4", "-o", "new"], ["--types", "mixpe-array"]),
    ("types-empty", ["rtl", "bitmod-pe", "--types", "", "-o", "new"], ["--types", "empty"]),
    ("types-empty-item", ["rtl", "bitmod-pe", "--types", "int4,,fp4", "-o", "new"], ["--types", "empty"]),
    ("tensors-empty", ["quant", "--tensors", ""], ["--tensors", "empty"]),
    ("tensors-repeated", ["quant", "--tensors", "a.weight,a.weight"], ["--tensors", "a.weight"]),
    ("formats-empty", ["quant", "--formats", ""], ["--formats", "empty"]),
    ("formats-trailing-comma", ["quant", "--formats", "int4-asym,"], ["--formats", "empty"]),
    ("checkpoint-empty", ["quant", "--checkpoint", ""], ["--checkpoint", "empty"]),
    # -- checkpoints -----------------------------------------------------------------------------
    ("quant-1d-weight", ["quant", "--group", "32", "--checkpoint", "flat.safetensors"],
     ["l.0.flat.weight", "[512]", "flat.safetensors"]),
    ("quant-3d-weight", ["quant", "--group", "32", "--checkpoint", "cube.safetensors"],
     ["l.0.cube.weight", "[2, 8, 64]", "cube.safetensors"]),
    ("quant-3d-weight-named", ["quant", "--group", "32", "--checkpoint", "cube.safetensors", "--tensors",
                               "l.0.cube.weight"], ["l.0.cube.weight", "(2, 8, 64)", "cube.safetensors"]),
    ("quant-nan", ["quant", "--group", "32", "--checkpoint", "nan.safetensors"],
     ["l.0.dense.weight", "nan.safetensors", "2 non-finite"]),
    ("quant-device", ["quant", "--checkpoint", "/dev/zero"], ["/dev/zero"]),
    ("quant-folder-without-model", ["quant", "--checkpoint", "folder"], ["model.safetensors"]),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(tmp_path, monkeypatch, capfd, argv, words):
    _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as e:  # argparse
            status = e.code
    out, err = capfd.readouterr()
    assert status == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixpim: error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    for word in words:
        assert word.lower() in err.lower(), (word, err)
    assert len(err) < 600, err  # a message, not a dump of the input
    assert not [w for w in caught if not issubclass(w.category, DeprecationWarning)], \
        [str(w.message) for w in caught]
    assert _snapshot(tmp_path) == before  # nothing written, nothing replaced, no temporary file left


@pytest.mark.parametrize("argv, words", [
    (["rtl", "mixpe-pe", "--rows", "5", "-o", "new"], ["--rows"]),
    (["rtl", "mixpe-array", "--rows", "x", "-o", "new"], ["--rows", "invalid int"]),
    ([*LINEAR, "--config", "deep.json", "-o", "new.mxpm"], ["nested"]),
    ([*LINEAR, "-o", "/dev/null"], ["/dev/null"]),
    (["run", "cfg-bigint.mxpm", "--backend", "rtl"], ["digits"]),
])
def test_the_installed_command_prints_one_line(tmp_path, argv, words):
    """The same through a separate interpreter, as a user runs it (argparse's errors included)."""
    _inputs(tmp_path)
    before = _snapshot(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mixpim.sim.cli", *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("mixpim: error: "), r.stderr
    assert all(w in r.stderr for w in words), r.stderr
    assert _snapshot(tmp_path) == before


def test_interrupt_is_one_line(monkeypatch, capsys):
    import mixpim.sim.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_run", interrupted)
    assert cli.main(["run", "x.mxpm"]) == 130
    assert capsys.readouterr().err == "mixpim: interrupted\n"


# -- the RTL size limit ------------------------------------------------------------------------

def test_rtl_size_limit():
    assert rtl_size_problem(preset("tiny")) is None and rtl_size_problem(preset("fpga")) is None
    assert "PEs" in rtl_size_problem(preset("npu128"))
    assert RTL_MAX_PES == 16 * 16
    big_spads = preset("fpga").replace(act_words=65536)
    assert "scratchpads" in rtl_size_problem(big_spads)


# -- sim/outputs.py ------------------------------------------------------------------------------

def test_atomic_write_replaces_whole_files(tmp_path):
    p = tmp_path / "out.bin"
    assert outputs.atomic_write(p, b"one") == p and p.read_bytes() == b"one"
    outputs.atomic_write(p, "twö")
    assert p.read_text(encoding="utf-8") == "twö"
    outputs.atomic_write(p, lambda f: f.write(b"three"))
    assert p.read_bytes() == b"three" and os.listdir(tmp_path) == ["out.bin"]
    assert oct(p.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_write_failure_keeps_the_previous_file(tmp_path, exc):
    p = tmp_path / "out.bin"
    p.write_bytes(PRECIOUS)

    def half(f):
        f.write(b"partial")
        raise exc
    with pytest.raises(type(exc)):
        outputs.atomic_write(p, half)
    assert p.read_bytes() == PRECIOUS and os.listdir(tmp_path) == ["out.bin"]


def test_write_files_is_one_batch(tmp_path):
    (tmp_path / "a.txt").write_bytes(PRECIOUS)

    def fail(f):
        raise RuntimeError("second file fails")
    with pytest.raises(RuntimeError):
        outputs.write_files(tmp_path, {"a.txt": "new a", "b.txt": fail})
    assert sorted(os.listdir(tmp_path)) == ["a.txt"] and (tmp_path / "a.txt").read_bytes() == PRECIOUS
    said = []
    paths = outputs.write_files(tmp_path, {"a.txt": "new a", "sub/b.txt": b"b"}, say=said.append)
    assert paths["sub/b.txt"].read_bytes() == b"b" and (tmp_path / "a.txt").read_text() == "new a"
    assert said == [f"mixpim: replaced a.txt in {tmp_path}"]


@pytest.mark.parametrize("where, words", [
    ("/dev/null", ["not a regular file"]), ("/proc/mixpim-x", ["/proc"]), ("", ["empty"]),
    ("{tmp}", ["folder"]), ("{tmp}/file/x", ["not a folder"]),
])
def test_atomic_write_refuses(tmp_path, where, words):
    (tmp_path / "file").write_bytes(PRECIOUS)
    with pytest.raises(outputs.OutputError) as e:
        outputs.atomic_write(where.format(tmp=tmp_path), b"x")
    assert all(w in str(e.value) for w in words), str(e.value)
    assert (tmp_path / "file").read_bytes() == PRECIOUS


def test_check_output_dir_creates_nothing(tmp_path):
    assert outputs.check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path) == []
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(outputs.OutputError, match="existing file, not a folder"):
        outputs.check_output_dir(tmp_path / "f")
    with pytest.raises(outputs.OutputError, match="not a folder"):
        outputs.check_output_dir(tmp_path / "f" / "sub")


def test_program_save_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "p.mxpm"
    p.write_bytes(PRECIOUS)
    prog = Program(preset("tiny"), [Instruction(Opcode.HALT)])

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(Exception, match="No space left on device"):
        prog.save(p)
    assert p.read_bytes() == PRECIOUS and os.listdir(tmp_path) == ["p.mxpm"]
    monkeypatch.undo()
    prog.save(p)
    assert Program.load(p) == prog
    from mixpim.models.program import ProgramError
    with pytest.raises(ProgramError, match="not a regular file"):
        prog.save("/dev/null")


def test_result_json_of_a_failed_demo_is_not_written(tmp_path, monkeypatch):
    """A demo that fails after compiling (here: the report cannot be rendered) writes nothing."""
    from mixpim.sim import report
    (tmp_path / "result.json").write_bytes(PRECIOUS)

    def broken(*a, **k):
        raise report.ReportError("broken chart")
    monkeypatch.setattr(report, "plot_unit_cycles", broken)
    from mixpim.sim.demo import run_demo
    with pytest.raises(report.ReportError):
        run_demo(tmp_path, say=lambda s: None)
    assert os.listdir(tmp_path) == ["result.json"] and (tmp_path / "result.json").read_bytes() == PRECIOUS
