"""Speed of the tile's RTL co-simulation (cocotb + Verilator), before and after, in one run.

    .venv/bin/python bench/bench_cosim.py [--before REV] [--out bench/results/cosim.json]
                                          [--skip-16] [--skip-build] [--native]

"Before" is the code of revision ``REV`` (default :data:`BEFORE`, the last revision with the old
co-simulation: a bare tile, a Python wake-up every cycle, cocotb's default build), checked out
into a temporary git worktree; "after" is this checkout. Each side runs in its own process (the
same measuring code, :func:`measure`, on that side's ``mixpim``) with its own build cache, so
both are measured on the same machine in the same run. Every program must be bit- and
cycle-exact against the golden model on both sides (the bench fails otherwise).

Figures per side:
  * cycles/s: golden cycles of a compiled 64x64x512 Linear / ``sim_seconds`` (the run from
    ``start`` to ``done``, without loading and reading back), on ``tiny`` (4x4), ``fpga`` cut to
    8x8 and the 16x16 ``fpga`` preset (``--skip-16`` leaves it out); also the whole
    ``run_programs`` wall time (golden model, loading, reading back, comparing; builds cached);
  * build seconds of the 8x8 tile: the cocotb build (Verilator and the C++ compiler) in a clean
    build root that holds only the tile's Verilog (its generation is not part of the time);
  * with ``--native``, "after" also runs the native C++ driver (``driver="native"``).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The revision "before" is measured on: main before the co-simulation changes of issue 12.
BEFORE = "0b7863f"
#: (preset, array, M, N, K) of the speed runs: compiled Linear layers, int8 outputs; ``array``:
#: the preset's array cut to that many rows and columns (None: the preset's own).
RUNS = [("tiny", None, 64, 64, 512), ("fpga", 8, 64, 64, 512)]
RUN_16 = ("fpga", None, 64, 64, 512)
#: The tile of the build-time figure: ``fpga`` cut to 8x8.
BUILD_ARRAY = 8
ROOT = Path(__file__).resolve().parent.parent


def _program(name, array, m, n, k):
    import numpy as np

    from mixpim.compiler.linear import lower_linear
    from mixpim.models.config import preset
    from mixpim.models.quant import quantize_weights
    cfg = preset(name)
    if array is not None:
        cfg = cfg.replace(rows=array, cols=array)
    rng = np.random.default_rng(m + n + k)
    qw = quantize_weights(rng.normal(size=(n, k)), cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    return cfg, lower_linear(cfg, (m, k), qw, seed=1, out="int8", x_scale=1.0 / 64).program


def speed(run, driver):
    from mixpim.models.isa import Instruction, Opcode
    from mixpim.sim.tile_cosim import imem_words_for, run_programs
    cfg, prog = _program(*run)
    imem = imem_words_for(len(prog.instructions))
    t0 = time.monotonic()
    # A one-instruction program first: the build (if missing) and the Verilog index, untimed.
    run_programs(cfg, [([Instruction(Opcode.HALT)], [])], driver=driver, imem_words=imem)
    prepare = time.monotonic() - t0
    t0 = time.monotonic()
    [r] = run_programs(cfg, [prog], driver=driver)
    wall = time.monotonic() - t0
    cycles = r.golden.status.cycles
    row = {"preset": run[0], "rows": cfg.rows, "cols": cfg.cols, "M": run[2], "N": run[3],
           "K": run[4], "driver": driver, "cycles": cycles, "sim_seconds": round(r.sim_seconds, 4),
           "cycles_per_s": round(cycles / r.sim_seconds), "run_programs_seconds": round(wall, 2),
           "words_compared": r.words_compared, "exact": r.ok,
           "generate_and_build_seconds": round(prepare, 1)}
    print(f"  {run[0]} {cfg.rows}x{cfg.cols} {driver}: {cycles} cycles in {r.sim_seconds:.3f} s = "
          f"{row['cycles_per_s']:,} cycles/s; run_programs {wall:.1f} s; exact {r.ok} "
          f"(generate + build {prepare:.0f} s)", file=sys.stderr, flush=True)
    return row


def build_time(array=BUILD_ARRAY):
    """A clean cocotb build of the ``array`` x ``array`` tile of :data:`RUNS` (after its speed
    run: its Verilog is in the build cache, and is all the clean build root gets)."""
    from mixpim.sim import cosim, tile_cosim
    from mixpim.sim.tile_cosim import imem_words_for, rtl_config
    run = next(r for r in RUNS if r[1] == array)
    cfg, prog = _program(*run)
    cfg = rtl_config(cfg, [(prog.instructions, prog.segments)])
    imem = imem_words_for(len(prog.instructions))
    with tempfile.TemporaryDirectory(prefix="bench_cosim-") as tmp:
        shutil.copytree(cosim.default_build_root() / "verilog", Path(tmp) / "verilog")
        t0 = time.monotonic()
        built = tile_cosim._build(cfg, imem, tmp, "cocotb")
        seconds = time.monotonic() - t0
    assert not built.cached
    print(f"  {array}x{array} clean cocotb build: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"config": f"{run[0]} {array}x{array}", "imem_words": imem, "build_seconds": round(seconds, 1)}


def measure(runs, drivers, skip_build):
    """One side's figures (run in that side's process)."""
    import mixpim.sim
    out = {"mixpim": str(Path(mixpim.sim.__file__).resolve().parent.parent), "speed": []}
    for run in runs:
        out["speed"] += [speed(run, d) for d in drivers]
    if not skip_build:
        out["build"] = build_time()
    return out


def _side(label, pythonpath, args):
    """Run :func:`measure` in a child process with ``pythonpath`` first; its JSON result."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
        env["MIXPIM_BUILD_DIR"] = str(Path(pythonpath).parent / "build" / "sim")
    cmd = [sys.executable, __file__, "--child", "--runs", json.dumps(args["runs"]),
           "--drivers", ",".join(args["drivers"])] + (["--skip-build"] if args["skip_build"] else [])
    print(f"{label}:", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def _worktree(rev, tmp):
    """A worktree of ``rev`` under ``tmp`` and a directory that makes it importable as
    ``mixpim`` (the package maps its subpackages from the repository's top-level folders)."""
    tree = Path(tmp) / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev],
                   check=True)
    shim = Path(tmp) / "shim"
    (shim / "mixpim").mkdir(parents=True)
    shutil.copy(tree / "src" / "mixpim" / "__init__.py", shim / "mixpim" / "__init__.py")
    for sub in ("models", "hw", "compiler", "sim"):
        (shim / "mixpim" / sub).symlink_to(tree / sub)
    return tree, shim


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help=f"revision of 'before' (default {BEFORE})")
    ap.add_argument("--out", default="bench/results/cosim.json")
    ap.add_argument("--skip-build", action="store_true", help="skip the 8x8 build-time figure")
    ap.add_argument("--skip-16", action="store_true", help="skip the 16x16 fpga tile")
    ap.add_argument("--native", action="store_true", help="'after' also with the native driver")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--runs", help=argparse.SUPPRESS)
    ap.add_argument("--drivers", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure([tuple(r) for r in json.loads(args.runs)], args.drivers.split(","),
                                 args.skip_build)))
        return 0

    runs = RUNS + ([] if args.skip_16 else [RUN_16])
    load = os.getloadavg()[0]
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_at_start": load},
              "command": " ".join(["bench/bench_cosim.py"] + sys.argv[1:]), "before_rev": args.before}
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    result["after_rev"] = rev + (" (with uncommitted changes)" if subprocess.run(
        ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"]).returncode else "")
    with tempfile.TemporaryDirectory(prefix="bench_cosim-") as tmp:
        tree, shim = _worktree(args.before, tmp)
        try:
            result["before"] = _side(f"before ({args.before})", shim,
                                     {"runs": runs, "drivers": ["cocotb"], "skip_build": args.skip_build})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    result["after"] = _side(f"after ({result['after_rev']})", None,
                            {"runs": runs, "drivers": ["cocotb"] + (["native"] if args.native else []),
                             "skip_build": args.skip_build})
    result["machine"]["load_at_end"] = os.getloadavg()[0]
    result["speedup"] = [
        {"tile": f"{b['preset']} {b['rows']}x{b['cols']}", "before": b["cycles_per_s"],
         "after": a["cycles_per_s"], "x": round(a["cycles_per_s"] / b["cycles_per_s"], 1)}
        for b, a in zip(result["before"]["speed"],
                        [r for r in result["after"]["speed"] if r["driver"] == "cocotb"])]
    for s in result["speedup"]:
        print(f"{s['tile']}: {s['before']:,} -> {s['after']:,} cycles/s ({s['x']}x)")
    if not args.skip_build:
        print(f"8x8 build: {result['before']['build']['build_seconds']} s -> "
              f"{result['after']['build']['build_seconds']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    rows = result["before"]["speed"] + result["after"]["speed"]
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
