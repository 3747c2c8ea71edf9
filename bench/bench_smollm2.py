"""SmolLM2-135M teacher-forced on the tile against its float32 reference: one prefill program of
the whole model (compiler/llama_decoder.py: 30 blocks, the final norm and the LM head) over the
first tokens of the kit's evaluation text, run on the golden model. Figures: top-1 agreement of
every next-token prediction with the float32 model (the checkpoint's dequantized weights), and the
perplexity of the text under both.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_smollm2.py [--tokens 256] [--no-tune]
        [--out bench/results/smollm2.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.calibrate import calibrate_llama
from mixpim.compiler.gguf_checkpoint import llama_weights, smollm2_path
from mixpim.compiler.gguf_tokenizer import gguf_tokenizer
from mixpim.compiler.llama_decoder import LlamaCompiler
from mixpim.compiler.llama_float import LlamaFloat
from mixpim.compiler.sample_text import CALIBRATION_TEXT, EVALUATION_TEXT
from mixpim.models.config import preset
from mixpim.models.executor import execute


def _nll(logits, ids):
    """Mean negative log-likelihood of ``ids[1:]`` under ``logits[:-1]`` (float64)."""
    z = logits[:-1].astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--out", default="bench/results/smollm2.json")
    ap.add_argument("--no-tune", action="store_true", help="take each Linear's cost-model plan "
                    "(faster compile; the cycles may be a little higher)")
    args = ap.parse_args()
    path = smollm2_path()
    w = llama_weights(path)
    model, tok = LlamaFloat(w, w.config), gguf_tokenizer(path)
    ids = np.array(tok.encode(EVALUATION_TEXT).ids[:args.tokens])
    t0 = time.time()
    lc = LlamaCompiler(model, preset("llm"), calibrate_llama(model, [tok.encode(CALIBRATION_TEXT).ids]))
    t1 = time.time()
    cl = lc.lower(ids, tune=not args.no_tune)
    t2 = time.time()
    res = execute(cl.program, check_races=False)
    t3 = time.time()
    if not res.ok:
        raise SystemExit(f"the tile stopped with {res.status.error.name} at pc {res.status.error_pc}")
    tile = cl.logits(res)
    ref = model.forward(ids)
    top1 = float((tile[:-1].argmax(1) == ref[:-1].argmax(1)).mean())
    ppl_tile, ppl_ref = float(np.exp(_nll(tile, ids))), float(np.exp(_nll(ref, ids)))
    out = {"tokens": len(ids), "predictions": len(ids) - 1, "top1_agreement": round(top1, 4),
           "perplexity_tile": round(ppl_tile, 3), "perplexity_float32": round(ppl_ref, 3),
           "perplexity_change": round(ppl_tile / ppl_ref - 1, 4), "cycles": res.status.cycles,
           "instructions": len(cl.program.instructions),
           "seconds": {"quantize": round(t1 - t0, 1), "compile": round(t2 - t1, 1),
                       "golden": round(t3 - t2, 1)},
           "tuned": not args.no_tune, "config": "llm", "machine": platform.machine()}
    print(json.dumps(out, indent=1))
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
