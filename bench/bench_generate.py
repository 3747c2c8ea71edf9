"""SmolLM2-135M greedy generation on the golden tile against the float32 model, as `mixpim
generate` runs it (:meth:`Generator.generate`: the prompt's prefill, then one decode step per new
token with attention on PIM, the next steps compiled in a second process): the tokens compared
one by one with the float32 model's greedy continuation, the wall clock of set-up (checkpoint,
calibration, quantization) and of each program (the issue's target: 24 tokens in under 2
minutes on 2 cores).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_generate.py [--tokens 24]
        [--out bench/results/generate.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

from mixpim.models.config import preset
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
    done = [time.time()]
    g = gen.generate([PROMPT], args.tokens, step_done=lambda: done.append(time.time()))
    runs = [{"kind": r.kind, "cycles": r.cycles, "wall_s": round(b - a, 2)}
            for r, a, b in zip(g.runs, done, done[1:])]
    total = time.time() - t0
    out = g.ids[0]
    ref = gen.reference(g.prompt_ids[0], args.tokens)
    agree = [a == b for a, b in zip(out, ref)]
    first_diff = agree.index(False) if not all(agree) else None
    steps = sorted(r["wall_s"] for r in runs if r["kind"] == "step")
    result = {"prompt": PROMPT, "tokens": args.tokens, "ids": out, "float32_ids": ref,
              "text": gen.tokenizer.decode(out), "float32_text": gen.tokenizer.decode(ref),
              "equal_tokens": sum(agree), "first_difference": first_diff,
              "setup_s": round(setup, 1), "generate_s": round(done[-1] - done[0], 1),
              "total_s": round(total, 1), "step_median_s": steps[len(steps) // 2] if steps else None,
              "runs": runs, "config": "llm", "machine": platform.machine()}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
