"""Speed of the tile's RTL co-simulation (cocotb + Verilator), before and after, in one run.

    .venv/bin/python bench/bench_cosim.py [--before REV] [--out bench/results/cosim.json]
                                          [--skip-16] [--skip-build] [--limit MIN]

"Before" is the code of revision ``REV`` (default :data:`BEFORE`, the last revision with the old
co-simulation: a bare tile, a Python wake-up every cycle, cocotb's default build), checked out
into a temporary git worktree; "after" is this checkout. Each figure is taken in its own process
(the same measuring code, :func:`measure`, on that side's ``mixpim``; "before" with its own
build cache, ``build/bench-before``), so both sides are measured on the same machine in the same
run. A process that runs longer than ``--limit`` minutes (default 25: Verilog generation, build
and run) is stopped and recorded as such. Every program must be bit- and cycle-exact against
the golden model on both sides (the bench fails otherwise).

Figures per side:
  * cycles/s: golden cycles of a compiled 64x64x512 Linear / ``sim_seconds`` (the run from
    ``start`` to ``done``, without loading and reading back; the fastest of :data:`REPEAT`
    runs), on ``tiny`` (4x4), ``fpga`` cut to 8x8 and the 16x16 ``fpga`` preset (``--skip-16``
    leaves it out); also the whole ``run_programs`` wall time (golden model, loading, reading
    back, comparing; builds cached);
  * build seconds of the 8x8 tile: the cocotb build (Verilator and the C++ compiler) in a clean
    build root that holds only the tile's Verilog (its generation is not part of the time);
  * "after" runs each program with both drivers: cocotb (the regression's) and the native C++
    driver (``driver="native"``: the same cycle-by-cycle protocol without VPI; the same checks).
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
#: Timed runs of each program; the figure is the fastest (as ``timeit`` reports): on a shared
#: machine single runs of the same build varied by 25%.
REPEAT = 3
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
    runs, walls = [], []
    for _ in range(REPEAT):
        t0 = time.monotonic()
        [r] = run_programs(cfg, [prog], driver=driver)
        walls.append(time.monotonic() - t0)
        runs.append(r)
    best = min(r.sim_seconds for r in runs)
    cycles = runs[0].golden.status.cycles
    exact = all(r.ok for r in runs)
    row = {"preset": run[0], "rows": cfg.rows, "cols": cfg.cols, "M": run[2], "N": run[3],
           "K": run[4], "driver": driver, "cycles": cycles, "sim_seconds": round(best, 4),
           "sim_seconds_all": [round(r.sim_seconds, 4) for r in runs],
           "cycles_per_s": round(cycles / best), "run_programs_seconds": round(min(walls), 2),
           "words_compared": runs[0].words_compared, "exact": exact,
           "generate_and_build_seconds": round(prepare, 1)}
    print(f"  {run[0]} {cfg.rows}x{cfg.cols} {driver}: {cycles} cycles in {best:.3f} s (best of "
          f"{REPEAT}: {', '.join(f'{r.sim_seconds:.3f}' for r in runs)}) = "
          f"{row['cycles_per_s']:,} cycles/s; run_programs {min(walls):.1f} s; exact {exact} "
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
    return {"config": f"{run[0]} {array}x{array}", "imem_words": imem,
            "build_seconds": round(seconds, 1)}


def measure(task):
    """One figure (in that side's process): ``["speed", run, driver]`` or ``["build"]``."""
    import mixpim.sim
    out = speed(tuple(task[1]), task[2]) if task[0] == "speed" else build_time()
    return {**out, "mixpim": str(Path(mixpim.sim.__file__).resolve().parent.parent)}


def _side(label, pythonpath, tasks, limit):
    """Each of ``tasks`` (:func:`measure`) in a child process with ``pythonpath`` first (None:
    this checkout), stopped after ``limit`` seconds; their results (a stopped one:
    ``{"task", "stopped_after_s"}``)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
        env["MIXPIM_BUILD_DIR"] = str(ROOT / "build" / "bench-before" / "sim")
    print(f"{label}:", file=sys.stderr, flush=True)
    out = []
    for task in tasks:
        cmd = [sys.executable, __file__, "--child", json.dumps(task)]
        try:
            done = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE,
                                  text=True, timeout=limit)
            out.append(json.loads(done.stdout))
        except subprocess.TimeoutExpired:
            print(f"  {task}: stopped after {limit / 60:g} minutes", file=sys.stderr, flush=True)
            out.append({"task": task, "stopped_after_s": limit})
    return out


def _speeds(side, driver="cocotb"):
    """The speed figures of ``driver`` in one side's results, measured or stopped (not the
    build figure)."""
    return [r for r in side if r.get("task", ["speed"])[0] == "speed" and "build_seconds" not in r
            and r.get("driver", r.get("task", [None, None, "cocotb"])[-1]) == driver]


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
    ap.add_argument("--limit", type=float, default=25.0, help="minutes per figure (default 25)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
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
    limit = args.limit * 60
    build = [] if args.skip_build else [["build"]]
    after = [["speed", r, d] for r in runs for d in ("cocotb", "native")]
    result["after"] = _side(f"after ({result['after_rev']})", None, after + build, limit)
    with tempfile.TemporaryDirectory(prefix="bench_cosim-") as tmp:
        tree, shim = _worktree(args.before, tmp)
        try:
            result["before"] = _side(f"before ({args.before})", shim,
                                     [["speed", r, "cocotb"] for r in runs] + build, limit)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    result["machine"]["load_at_end"] = os.getloadavg()[0]
    out = Path(args.out)   # first: the figures are kept whatever the summary does
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    def fig(r):
        return f"{r['cycles_per_s']:,} cycles/s" if "cycles_per_s" in r else \
            f"stopped after {r['stopped_after_s'] / 60:g} min"

    before, after = _speeds(result["before"]), _speeds(result["after"])
    for b, a, n in zip(before, after, _speeds(result["after"], "native")):
        tile = "?" if "preset" not in a else f"{a['preset']} {a['rows']}x{a['cols']}"
        print(f"{tile}: cocotb {fig(b)} -> {fig(a)}; native {fig(n)}")
    for label in ("before", "after"):
        for r in result[label]:
            if "build_seconds" in r:
                print(f"{label}: {r['config']} clean cocotb build {r['build_seconds']} s")
    print(f"wrote {out}")
    rows = [r for r in result["before"] + result["after"] if "exact" in r]
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
