"""SmolLM2-135M greedy generation on the golden tile against the float32 model: the prompt's
prefill, then one decode step per new token (attention on PIM, the KV cache in the banks), token
by token compared with the float32 model's greedy continuation; wall-clock time of compiling and
running each program (the issue's target: 24 tokens in under 2 minutes on 2 cores).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_generate.py [--tokens 24]
        [--out bench/results/generate.json]
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
from mixpim.sim.generate import Generator

PROMPT = "The capital of France is"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--out", default="bench/results/generate.json")
    args = ap.parse_args()
    t0 = time.time()
    gen = Generator(preset("llm"))
    setup = time.time() - t0
    lc, mc = gen.compiler, gen.model.config
    ids = gen.tokenizer.encode(PROMPT).ids
    caches = layer_caches(gen.config, mc, batch=1, capacity=len(ids) + args.tokens)
    out, runs, data = [], [], []
    for step in range(args.tokens):
        t = time.time()
        cl = (lc.lower(ids, logits="last", caches=caches, request=0, tune=False) if step == 0
              else lc.lower_step([out[-1]], [len(ids) + step - 1], caches, data))
        t1 = time.time()
        res = execute(cl.program, check_races=False)
        t2 = time.time()
        data = [c.segment(res.dram) for c in caches]
        out.append(int(np.argmax(cl.logits(res)[-1])))
        runs.append({"kind": "prefill" if step == 0 else "step", "cycles": res.status.cycles,
                     "compile_s": round(t1 - t, 2), "run_s": round(t2 - t1, 2)})
        print(runs[-1], flush=True)
    ref = gen.reference(ids, args.tokens)
    agree = [a == b for a, b in zip(out, ref)]
    first_diff = agree.index(False) if not all(agree) else None
    result = {"prompt": PROMPT, "tokens": args.tokens, "ids": out, "float32_ids": ref,
              "text": gen.tokenizer.decode(out), "float32_text": gen.tokenizer.decode(ref),
              "equal_tokens": sum(agree), "first_difference": first_diff,
              "setup_s": round(setup, 1), "total_s": round(time.time() - t0, 1), "runs": runs,
              "config": "llm", "machine": platform.machine()}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
