"""The PE comparison at equal area: MixPE, the dequantize-then-multiply baseline and BitMoD as 8x8
arrays on the GEMM shapes of Llama-2-7B (every projection of a block and the LM head, a 1,024-token
prefill and a 64-request decode step), throughput per LUT (and per DSP block on ECP5).

    .venv/bin/python bench/bench_pe_compare.py [--out bench/results/pe_compare.json]

Cycles: each array's exact cycle model (``models/mixpe.array_timing``,
``models/bitmod_gemm.bitmod_timing``; the RTL arrays equal them cycle for cycle, tests/test_mixpe_rtl.py,
tests/test_bitmod_rtl.py), GEMMs fed back to back. Area: the arrays' synthesis by the kit's own flow,
measured by ``bench/bench_mixpe.py`` (``bench/results/mixpe.json``, ``mixpe-generic.json``) and
``bench/bench_bitmod.py`` (``bench/results/bitmod.json``): the same designs (8x8, 4-bit weights,
group 128; BitMoD with its 4-bit type mixture and 8-bit scales).
"""

import argparse
import json
from pathlib import Path

from mixpim.compiler.model_zoo import model_config
from mixpim.models.bitmod_gemm import BitmodParams, bitmod_timing
from mixpim.models.mixpe import array_timing
from mixpim.sim.designs import make_design

RESULTS = Path(__file__).parent / "results"
DESIGNS = [("mixpe-array", "int8"), ("baseline-array", "int8"), ("mixpe-array", "fp16"),
           ("baseline-array", "fp16"), ("bitmod-array", "fp16")]


def shapes(name, m):
    """``(N, K)`` of every GEMM of one block of ``name`` and its LM head, with ``m`` tokens."""
    mc = model_config(name)
    h, f, kvw = mc.hidden, mc.ffn, mc.kv_width
    return [(m, n, k) for n, k in ((h, h), (kvw, h), (kvw, h), (h, h), (f, h), (f, h), (h, f), (mc.vocab, h))]


def _area(kind, act, target):
    if kind == "bitmod-array":
        row = json.loads((RESULTS / "bitmod.json").read_text())[f"array_{target}"]
        return row["luts"], row["dsp_cells"]
    name, key = ("mixpe.json", "synth_ecp5") if target == "ecp5" else ("mixpe-generic.json", "synth_generic")
    rows = json.loads((RESULTS / name).read_text())[key]
    [row] = [r for r in rows if r["design"] == kind and r["act"] == act and r["rows"] == 8]
    return row["luts"], row["dsp_cells"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/pe_compare.json")
    args = ap.parse_args()
    out = {"model": "llama2-7b", "array": "8x8", "workloads": {}}
    for label, m in (("prefill 1024 tokens", 1024), ("decode 64 requests", 64)):
        gemms = shapes("llama2-7b", m)
        macs = sum(a * b * c for a, b, c in gemms)
        rows = []
        for kind, act in DESIGNS:
            p = make_design(kind, rows=8, cols=8, wbits=4, act=act, group=128).params
            timing = bitmod_timing if isinstance(p, BitmodParams) else array_timing
            cycles = sum(timing(p, a, b, c).total for a, b, c in gemms)
            row = {"design": kind, "act": act, "cycles": cycles, "macs_per_cycle": round(macs / cycles, 3)}
            for target in ("ecp5", "generic"):
                luts, dsps = _area(kind, act, target)
                row[f"luts_{target}"] = luts
                row[f"macs_per_cycle_per_klut_{target}"] = round(1000 * macs / cycles / luts, 4)
                if target == "ecp5":
                    row["dsps_ecp5"] = dsps
                    row["macs_per_cycle_per_dsp_ecp5"] = round(macs / cycles / dsps, 3) if dsps else None
            rows.append(row)
        for r in rows:  # at equal area: throughput per LUT against the same activations' baseline
            base = next(b for b in rows if b["design"] == "baseline-array" and b["act"] == r["act"])
            for target in ("ecp5", "generic"):
                key = f"macs_per_cycle_per_klut_{target}"
                r[f"per_lut_vs_baseline_{target}"] = round(r[key] / base[key], 3)
        out["workloads"][label] = {"macs": macs, "designs": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
