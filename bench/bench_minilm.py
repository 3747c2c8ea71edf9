"""MiniLM sentence embeddings on the tile against the float32 reference: all six encoder layers
compiled to one program per sentence (compiler/bert_encoder.py) and run on the golden model, for
eight varied sentences (none of them from the calibration text), with 8-bit two-plane weights
(the default) and, for comparison, 4-bit weights in every Linear.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_minilm.py [--out bench/results/minilm.json]

Figures per sentence: tokens, instructions, cycles, and the cosine of the tile's embedding
against sentence-transformers' (mean pooling, L2 normalisation) computed by the float32 model.
"""

import argparse
import json
import platform
import time
from pathlib import Path

from mixpim.compiler.bert_encoder import BertCompiler
from mixpim.models.config import preset
from mixpim.sim.embed import MODEL_PRESET, Encoder

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "Mixed-precision accelerators multiply low-bit weights by shifting and adding.",
    "What is the capital city of France?",
    "I can't believe the train was late again this morning!",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The stock market fell sharply after the announcement, 3.5% in one hour.",
    "Ein kleiner Hund spielt im Garten mit einem roten Ball.",
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/minilm.json")
    args = ap.parse_args()
    cfg = preset(MODEL_PRESET)
    enc = Encoder(cfg)
    runs = {}
    for name, planes in (("w8-planes", None), ("w4", ())):
        if planes is not None:
            enc.compiler = BertCompiler(enc.model, cfg, enc.compiler.cal, planes=planes)
        rows = []
        for s in SENTENCES:
            t = time.time()
            e = enc.embed(s)
            rows.append({"text": s, "tokens": e.tokens, "instructions": e.instructions,
                         "cycles": e.cycles, "cosine": round(e.cosine, 5),
                         "seconds": round(time.time() - t, 1)})
            print(f"{name:9s} {e.cosine:.5f} {e.tokens:3d} tokens {e.cycles:>10,d} cycles  {s}", flush=True)
        runs[name] = rows
    out = {"config": MODEL_PRESET, "machine": platform.machine(), "runs": runs}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
