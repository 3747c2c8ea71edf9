"""Speed of the tile's RTL co-simulation, before and after the native driver, in one run.

    .venv/bin/python bench/bench_cosim.py [--out bench/results/cosim.json] [--skip-build]

"Before" is the original way, still selectable: ``run_programs(..., driver="cocotb")`` (the
cocotb driver ``sim/tb/tile_tb.py`` over VPI, a cocotb ``Clock``, one Python ``await`` per host
word, Verilator flags :data:`mixpim.sim.cosim.BUILD_ARGS` and ``OPT_SLOW=-O0`` with Verilator's
default ``-Os``). "After" is ``driver="native"`` (``sim/tb/tile_main.cpp`` on
:func:`~mixpim.sim.tile_harness.harness_verilog`, flags :data:`~mixpim.sim.cosim.NATIVE_ARGS` /
:data:`~mixpim.sim.cosim.NATIVE_MAKE_ARGS`). Both runs of a program must be bit- and cycle-exact
against the golden model (the bench fails otherwise).

Figures:
  * cycles/s: golden cycles of a compiled Linear / ``sim_seconds`` (the run from ``start`` to
    ``done``, without loading and reading back), on ``tiny`` (4x4) and ``fpga`` cut to 8x8 (and
    the 16x16 ``fpga`` itself with ``--fpga16``); also the
    whole ``run_programs`` wall time (golden model, loading, reading back, comparing; builds cached).
  * build seconds of the 8x8 tile (``fpga`` with an 8x8 array): Verilator and the C++ compiler in
    a clean build directory (the Verilog, the cached build's, is not part of the time), both ways.

Builds of the runs come from the build cache (``$MIXPIM_BUILD_DIR``); a missing one is built first.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.linear import lower_linear
from mixpim.hw.tile_system import TileSystem
from mixpim.models.config import preset
from mixpim.models.isa import Instruction, Opcode
from mixpim.models.quant import quantize_weights
from mixpim.sim import cosim, tile_cosim
from mixpim.sim.tile_cosim import NATIVE_MAIN, imem_words_for, rtl_config, run_programs, tile_top
from mixpim.sim.tile_harness import harness_top, harness_verilog
from mixpim.sim.toolchain import find_verilator

#: (preset, array, M, N, K) of the speed runs: compiled Linear layers, int8 outputs; ``array``:
#: the preset's array cut to that many rows and columns (None: the preset's own).
RUNS = [("tiny", None, 64, 64, 512), ("fpga", 8, 64, 64, 512)]
#: With ``--fpga16``: the 16x16 ``fpga`` tile itself (its Verilog alone took more than 30 minutes
#: and 15 GB to generate on the 2-core, 23 GB development machine; stopped).
RUN_16 = ("fpga", None, 64, 64, 512)
DRIVERS = ("cocotb", "native")
HALT = Instruction(Opcode.HALT)
#: The 8x8 tile of the build-time figure.
BUILD_ARRAY = 8


def _program(name, array, m, n, k):
    cfg = preset(name)
    if array is not None:
        cfg = cfg.replace(rows=array, cols=array)
    rng = np.random.default_rng(m + n + k)
    qw = quantize_weights(rng.normal(size=(n, k)), cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    return cfg, lower_linear(cfg, (m, k), qw, seed=1, out="int8", x_scale=1.0 / 64).program


def speed(name, array, m, n, k):
    cfg, prog = _program(name, array, m, n, k)
    imem = imem_words_for(len(prog.instructions))
    rows = {}
    for driver in DRIVERS:
        # A one-instruction program first: the build (if missing) and the Verilog index, untimed.
        run_programs(cfg, [([HALT], [])], driver=driver, imem_words=imem)
        t0 = time.monotonic()
        [run] = run_programs(cfg, [prog], driver=driver)
        wall = time.monotonic() - t0
        cycles = run.golden.status.cycles
        rows[driver] = {"cycles": cycles, "sim_seconds": round(run.sim_seconds, 4),
                        "cycles_per_s": round(cycles / run.sim_seconds),
                        "run_programs_seconds": round(wall, 2), "words_compared": run.words_compared,
                        "exact": run.ok}
        print(f"{name} {cfg.rows}x{cfg.cols} {m}x{n}x{k} {driver:7s}: {cycles} cycles in {run.sim_seconds:.3f} s = "
              f"{cycles / run.sim_seconds:,.0f} cycles/s; run_programs {wall:.1f} s; "
              f"{run.words_compared} words compared; exact {run.ok}", flush=True)
    rows["speedup"] = round(rows["native"]["cycles_per_s"] / rows["cocotb"]["cycles_per_s"], 1)
    return {"preset": name, "M": m, "N": n, "K": k, "rows": cfg.rows, "cols": cfg.cols, **rows}


def build_time(array=BUILD_ARRAY):
    """Clean builds of the ``array`` x ``array`` tile of :data:`RUNS` (after its speed run, so its
    Verilog is in the build cache)."""
    name_, _, m, n, k = next(r for r in RUNS if r[1] == array)
    cfg, prog = _program(name_, array, m, n, k)
    cfg = rtl_config(cfg, [(prog.instructions, prog.segments)])
    imem = imem_words_for(len(prog.instructions))
    name = tile_top(cfg, imem)
    verilator = find_verilator()
    out = {"config": f"{name_} {array}x{array}", "imem_words": imem}
    built = tile_cosim._build(cfg, imem, None, "cocotb")  # cached: the speed run's
    text = built.verilog.read_text()
    tile = TileSystem(cfg, imem)  # for the harness's ports only
    tile._MustUse__silence = True
    out["verilog_mb"] = round(len(text) / 1e6, 1)
    with tempfile.TemporaryDirectory(prefix="bench_cosim-") as tmp:
        for driver in DRIVERS:
            build_dir = Path(tmp) / driver
            build_dir.mkdir()
            verilog = build_dir / f"{name}.v"
            verilog.write_text(text)
            kw = {}
            if driver == "native":
                harness = build_dir / f"{harness_top(name)}.v"
                harness.write_text(harness_verilog(tile, name))
                kw = dict(main=NATIVE_MAIN, top=harness_top(name), extra=[harness])
            t0 = time.monotonic()
            cosim.verilate(verilator, name, build_dir, verilog, **kw)
            seconds = time.monotonic() - t0
            out[driver] = {"build_seconds": round(seconds, 1)}
            print(f"8x8 build {driver:7s}: {seconds:.1f} s (clean build directory)", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/cosim.json")
    ap.add_argument("--skip-build", action="store_true", help="skip the 8x8 build-time figure")
    ap.add_argument("--fpga16", action="store_true", help="also the 16x16 fpga tile (hours, 15+ GB)")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_at_start": load},
              "command": " ".join(["bench/bench_cosim.py"] + sys.argv[1:])}
    result["speed"] = [speed(*r) for r in RUNS + ([RUN_16] if args.fpga16 else [])]
    if not args.skip_build:
        result["build_8x8"] = build_time()
    result["machine"]["load_at_end"] = os.getloadavg()[0] if load is not None else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all(r[d]["exact"] for r in result["speed"] for d in DRIVERS) else 1


if __name__ == "__main__":
    sys.exit(main())
