"""Tile array utilization of compiled Linear layers, and the speed of the timing-only model.

    .venv/bin/python bench/bench_tile.py [--backend golden|rtl] [--out bench/results/tile_util.json]
                                         [--skip-speed] [--no-check]

Utilization is MACs / (PEs x cycles) = M*N*K / (rows*cols*cycles) of the whole compiled program
(``compile_linear``: loads, GEMMs, VEC and stores, from start to HALT), for ``out="acc"``
(accumulators stored) and ``out="int8"`` (VEC requantization, int8 stored). The benchmark set has
M, N >= 4 x the array's rows / cols and K >= 4 groups on the ``tiny`` (4x4, group 32, 8-byte DRAM
bus) and ``fpga`` (16x16, group 128, 16-byte bus) presets: the smallest such shape (exactly 4x in
every dimension: the start and the end of the program weigh most), a non-square mid-size one, and a
large one (MiniLM FFN sizes on fpga). A few smaller, non-4x shapes are listed for reference.

``--backend golden`` (default) measures with the golden cycle model (``execute(program,
timing_only=True)``; the RTL is cycle-exact to it) and, unless ``--no-check``, also runs each
program functionally: bit-exact against the numpy reference, no races. ``--backend rtl`` runs each
program on the tile RTL (Verilator, ``mixpim.sim.tile_cosim.run_tile``) and reports its status
registers; it needs the simulator toolchain and takes minutes.

The speed section times the timing-only model on a full-size 4096 -> 11008 projection (M = 16 and
128 tokens) on ``fpga`` and ``npu128``: the instruction stream comes from ``schedule_linear``
(shape only: no operands, no memory image), then ``execute(program, timing_only=True)``.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.linear import lower_linear, schedule_linear
from mixpim.models.config import preset
from mixpim.models.executor import execute
from mixpim.models.isa import Unit
from mixpim.models.quant import quantize_weights

#: (preset, M, N, K): M, N >= 4 x rows / cols, K >= 4 groups.
BENCH_SET = [
    ("tiny", 16, 16, 128), ("tiny", 32, 64, 256), ("tiny", 64, 64, 512),
    ("fpga", 64, 64, 512), ("fpga", 64, 256, 1024), ("fpga", 128, 384, 1536),
]
#: Reference shapes below 4x (decode-like M, ragged): not part of the >= 90 % target.
REFERENCE_SET = [
    ("tiny", 1, 64, 256), ("tiny", 16, 64, 256), ("tiny", 7, 13, 70),
    ("fpga", 1, 384, 384), ("fpga", 16, 1536, 384), ("fpga", 64, 384, 1536), ("fpga", 128, 384, 384),
]
#: (preset, M, N, K) of the timing-only speed runs.
SPEED_SET = [("fpga", 16, 11008, 4096), ("fpga", 128, 11008, 4096),
             ("npu128", 16, 11008, 4096), ("npu128", 128, 11008, 4096)]
UNITS = (Unit.DMA, Unit.GEMM, Unit.VEC)


def measure(program, backend="golden"):
    """``{"cycles", "busy": {unit: cycles}, "ok"}`` of ``program`` on the golden cycle model or the
    RTL (``backend="rtl"``: ``mixpim.sim.tile_cosim.run_tile``, imported here so the golden bench
    needs no simulator; ``ok`` then also means bit- and cycle-exact against the golden model)."""
    if backend == "golden":
        st = execute(program, timing_only=True).status
        return {"cycles": st.cycles, "busy": {u.name: st.busy[u] for u in UNITS},
                "ok": st.error == 0}
    if backend == "rtl":
        try:
            from mixpim.sim.tile_cosim import run_tile
        except ImportError as e:  # pragma: no cover - depends on the installation
            sys.exit(f"--backend rtl needs the tile co-simulation (mixpim.sim.tile_cosim): {e}")
        run = run_tile(program)
        st = run.rtl_status
        return {"cycles": int(st["cycles"]), "busy": {u.name: int(st["busy"][u]) for u in UNITS},
                "ok": bool(run.ok), "sim_seconds": round(run.sim_seconds, 2)}
    raise ValueError(f"backend must be 'golden' or 'rtl', not {backend!r}")


def _weights(cfg, n, k, seed):
    rng = np.random.default_rng(seed)
    return quantize_weights(rng.normal(size=(n, k)), cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)


def util_rows(shapes, backend, check, target=True):
    rows = []
    for name, m, n, k in shapes:
        cfg = preset(name)
        qw = _weights(cfg, n, k, seed=m + n + k)
        for out in ("acc", "int8"):
            t0 = time.monotonic()
            cl = lower_linear(cfg, (m, k), qw, seed=1, out=out,
                              x_scale=1.0 / 64 if out == "int8" else None)
            compile_s = time.monotonic() - t0
            prog = cl.program
            meas = measure(prog, backend)
            exact = None
            if check and backend == "golden":
                res = execute(prog)
                exact = bool(res.ok and res.races == ()
                             and np.array_equal(cl.layout.output(res), cl.reference()))
            p = cl.layout.plan
            util = m * n * k / (cfg.rows * cfg.cols * meas["cycles"])
            row = {"preset": name, "M": m, "N": n, "K": k, "out": out, "four_x": target,
                   "plan": f"{p.outer} {p.bm}x{p.bn} gc{p.gc}", "instructions": len(prog.instructions),
                   "cycles": meas["cycles"], "busy": meas["busy"], "utilization": round(util, 4),
                   "ok": meas["ok"], "bit_exact_race_free": exact, "compile_s": round(compile_s, 2)}
            if "sim_seconds" in meas:
                row["sim_seconds"] = meas["sim_seconds"]
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(r):
    b = r["busy"]
    shape = f"{r['M']}x{r['N']}x{r['K']}"
    exact = r["bit_exact_race_free"]
    if "sim_seconds" in r:  # RTL: bit- and cycle-exact against the golden model
        exact = r["ok"]
    check = {True: "yes", False: "NO", None: "-"}[exact]
    return (f"| {r['preset']} | {shape} | {r['out']} | {r['plan']} | {r['instructions']} | {r['cycles']} "
            f"| {b['DMA']} | {b['GEMM']} | {b['VEC']} | {100 * r['utilization']:.1f}% | {check} |")


HEADER = ("| preset | M x N x K | out | plan | instructions | cycles | DMA busy | GEMM busy | VEC busy "
          "| utilization | checked |\n|---|---|---|---|---|---|---|---|---|---|---|")
CHECKED = {"golden": "checked: bit-exact against the numpy reference and race-free (executor)",
           "rtl": "checked: RTL outputs and status registers equal the golden model's"}


def speed_rows():
    rows = []
    for name, m, n, k in SPEED_SET:
        cfg = preset(name)
        for out in ("acc", "int8"):
            t0 = time.monotonic()
            prog = schedule_linear(cfg, m, n, k, out=out)
            t1 = time.monotonic()
            res = execute(prog, timing_only=True)
            t2 = time.monotonic()
            st = res.status
            ni = len(prog.instructions)
            row = {"preset": name, "M": m, "N": n, "K": k, "out": out, "instructions": ni,
                   "compile_s": round(t1 - t0, 2), "timing_s": round(t2 - t1, 2),
                   "instructions_per_s": round(ni / (t2 - t1)), "cycles": st.cycles,
                   "cycles_per_s": round(st.cycles / (t2 - t1)), "events": res.timing.events,
                   "utilization": round(m * n * k / (cfg.rows * cfg.cols * st.cycles), 4),
                   "dma_busy": round(st.busy[Unit.DMA] / st.cycles, 4), "ok": st.error == 0}
            rows.append(row)
            print(f"| {name} | {m}x{n}x{k} | {out} | {ni} | {row['compile_s']} s | {row['timing_s']} s "
                  f"| {row['instructions_per_s']} | {st.cycles} | {100 * row['utilization']:.1f}% "
                  f"| {100 * row['dma_busy']:.1f}% |", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("golden", "rtl"), default="golden")
    ap.add_argument("--out", default="bench/results/tile_util.json")
    ap.add_argument("--skip-speed", action="store_true", help="skip the timing-only speed runs")
    ap.add_argument("--no-check", action="store_true", help="skip the functional (bit-exact) runs")
    args = ap.parse_args()
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
              "command": " ".join(["bench/bench_tile.py"] + sys.argv[1:]), "backend": args.backend}
    print(f"Linear layers, {args.backend} model (utilization = M*N*K / (rows*cols*cycles); "
          f"{CHECKED[args.backend]})")
    print(HEADER)
    result["bench"] = util_rows(BENCH_SET, args.backend, not args.no_check)
    result["reference"] = util_rows(REFERENCE_SET, args.backend, not args.no_check, target=False)
    worst = min(r["utilization"] for r in result["bench"])
    print(f"\nbenchmark set (M, N >= 4x array, K >= 4 groups): lowest utilization {100 * worst:.1f}%")
    if not args.skip_speed:
        print("\nTiming-only model on a 4096 -> 11008 projection (schedule_linear + execute(timing_only=True))")
        print("| preset | M x N x K | out | instructions | compile | timing model | instructions/s "
              "| cycles | utilization | DMA busy |\n|---|---|---|---|---|---|---|---|---|---|")
        result["speed"] = speed_rows()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    bad = [r for r in result["bench"] + result["reference"]
           if not r["ok"] or r["bit_exact_race_free"] is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
