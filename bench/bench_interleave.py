"""Sub-batch interleaving (NeuPIMs) against the plain decode step: SmolLM2-135M batched decode
steps on the ``llm`` tile, compiled both ways and timed on the cycle model (timing only: the
cycles do not depend on the data), for several batch sizes and context lengths.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_interleave.py [--points 2:128,8:512,...]
        [--out bench/results/interleave.json]

Per point: cycles of each schedule, their ratio (plain / interleaved: above 1 means interleaving
pays), busy cycles per unit and the cycles in which PIM and the GEMM unit were busy at once.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.llama_cache import layer_caches
from mixpim.models.config import preset
from mixpim.models.executor import execute
from mixpim.models.units import Unit
from mixpim.sim.generate import Generator

POINTS = "2:128,4:512,8:512,16:512,16:1024,16:2000"


def _overlap(program, timing):
    busy = {u: np.zeros(timing.cycles + 1, bool) for u in (Unit.GEMM, Unit.PIM)}
    for pc in timing.executed:
        u = program.instructions[pc].unit
        if u in busy:
            busy[u][timing.start[pc]:timing.end[pc] + 1] = True
    return int((busy[Unit.GEMM] & busy[Unit.PIM]).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=POINTS, help=f"batch:context pairs (default {POINTS})")
    ap.add_argument("--out", default="bench/results/interleave.json")
    args = ap.parse_args()
    gen = Generator(preset("llm"))
    lc, mc = gen.compiler, gen.model.config
    rows = []
    for point in args.points.split(","):
        batch, ctx = (int(v) for v in point.split(":"))
        caches = layer_caches(gen.config, mc, batch=batch, capacity=ctx + 1)
        lengths = [ctx - 7 * i for i in range(batch)]  # different lengths, as in a real batch
        row = {"batch": batch, "context": ctx}
        for name, il in (("plain", False), ("interleaved", True)):
            t0 = time.time()
            cl = lc.lower_step(list(range(100, 100 + batch)), lengths, caches, interleave=il)
            t1 = time.time()
            timing = execute(cl.program, timing_only=True).timing
            row[name] = {"cycles": timing.cycles, "instructions": len(cl.program.instructions),
                         "busy": {u.name: int(b) for u, b in zip(Unit, timing.busy)},
                         "pim_gemm_overlap": _overlap(cl.program, timing),
                         "compile_s": round(t1 - t0, 1), "time_s": round(time.time() - t1, 1)}
        row["plain_over_interleaved"] = round(row["plain"]["cycles"] / row["interleaved"]["cycles"], 3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    Path(args.out).write_text(json.dumps({"config": "llm", "model": "SmolLM2-135M", "points": rows,
                                          "machine": platform.machine()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
