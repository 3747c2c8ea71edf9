"""Performance reports at paper scale (`mixpim report`, sim/perf.py): how long a report takes
(the issue's target: a Llama-2-7B decode step at batch 256 and a 1,024-token prefill, each in
under 30 s on 2 cores) and the NeuPIMs comparison (the NPU alone with attention on its array,
blocked NPU+PIM, and dual row buffers with sub-batch interleaving) on GPT-3 7B/13B/30B and
Llama-2-7B at batch 256 and 512 with the ShareGPT request lengths.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_perf.py [--quick] [--out bench/results/perf.json]

``--quick``: the two timed reports only.
"""

import argparse
import json
import platform
import time
from pathlib import Path

from mixpim.compiler.model_zoo import model_config
from mixpim.models.config import preset
from mixpim.models.errors import MixpimError
from mixpim.sim.perf import Workload, analyze
from mixpim.sim.perf_cli import COMPARE_SYSTEMS
from mixpim.sim.workload import batch_lengths, load_trace

CLOCK_MHZ = 1000  # NeuPIMs' NPU clock


def timed_report(name, workload):
    """Wall time and cycles of one report (one system, as `mixpim report` without --compare)."""
    t0 = time.perf_counter()
    r = analyze(model_config(name), preset("neupims"), workload)
    wall = time.perf_counter() - t0
    return {"model": name, "mode": workload.mode, "batch": workload.batch, "wall_s": round(wall, 1),
            "cycles": r.cycles, "simulated_blocks": r.blocks, "instructions": r.instructions,
            "compile_s": round(r.seconds["compile"], 1), "simulate_s": round(r.seconds["simulate"], 1)}


def comparison(name, batch):
    """NPU-only, blocked and NeuPIMs on one decode step of the first ``batch`` ShareGPT requests."""
    lengths = tuple(n - 1 for n in batch_lengths(load_trace(), batch))
    out = {"model": name, "batch": batch}
    for system in ("npu-only", "blocked", "neupims"):
        mode, schedule = COMPARE_SYSTEMS[system]
        t0 = time.perf_counter()
        try:
            r = analyze(model_config(name), preset("neupims").in_pim_mode(mode), Workload("decode", lengths),
                        system=schedule)
        except MixpimError as e:  # e.g. the simulated blocks and caches exceed the 4 GiB DRAM
            out["error"] = str(e)
            print(json.dumps(out), flush=True)
            return out
        busy = {}
        for st in r.total_ops().values():
            for u, v in zip(("DMA", "GEMM", "VEC", "PIM"), st.busy):
                busy[u] = busy.get(u, 0) + v
        out[system] = {"cycles": r.cycles, "tokens_per_s": round(batch / (r.cycles / (CLOCK_MHZ * 1e6)), 1),
                       "busy": busy, "wall_s": round(time.perf_counter() - t0, 1)}
    out["neupims_over_npu_only"] = round(out["npu-only"]["cycles"] / out["neupims"]["cycles"], 3)
    out["neupims_over_blocked"] = round(out["blocked"]["cycles"] / out["neupims"]["cycles"], 3)
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench/results/perf.json")
    args = ap.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "clock_mhz": CLOCK_MHZ,
           "timed": [timed_report("llama2-7b", Workload("decode", (1024,) * 256)),
                     timed_report("llama2-7b", Workload("prefill", (1024,)))]}
    print(json.dumps(res["timed"]), flush=True)
    if not args.quick:
        res["neupims"] = [comparison(m, b) for b in (256, 512)
                          for m in ("gpt3-7b", "gpt3-13b", "gpt3-30b", "llama2-7b")]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
