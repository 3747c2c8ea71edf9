"""The embedded default, end to end: a real MiniLM FFN projection on the MixPE array.

1. Tokenize a sentence with MiniLM's own tokenizer and build the layer-0 input activations from the
   checkpoint's embedding tables (word + position + token type, then the embedding LayerNorm).
2. Quantize the layer's FFN up-projection ``intermediate.dense`` (1536 x 384) to W4, group 128,
   and the activations to INT8 per token (or FP16 for W4A16).
3. Run the GEMM on the golden model and on the Verilated RTL array; the cocotb test asserts every
   output bit and the cycle counts; report accuracy against the float32 product.
"""

import json
import time
from pathlib import Path

import numpy as np

from ..compiler.checkpoint import load_tensors, minilm_dir
from ..models.config import TileConfig
from ..models.mixpe import ArrayParams, array_timing, output_to_float
from ..models.numerics import quantize_act_int8
from ..models.quant import quantize_weights
from .array_cosim import run_array
from .designs import design_for, write_rtl

__all__ = ["DEFAULT_SENTENCE", "minilm_activations", "run_demo"]

DEFAULT_SENTENCE = "Mixed-precision accelerators multiply low-bit weights by shifting and adding."


def minilm_activations(model_dir, sentence):
    """Layer-0 input activations (tokens, 384) float32 of ``sentence``, and its tokens."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer pads every input to 128 tokens
    enc = tok.encode(sentence)
    ids = np.array(enc.ids)
    t = load_tensors(Path(model_dir) / "model.safetensors",
                     ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                      "embeddings.LayerNorm.bias"])
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:len(ids)]
         + t["embeddings.token_type_embeddings.weight"][0])
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    x = (x - mu) / np.sqrt(var + 1e-12) * t["embeddings.LayerNorm.weight"] + t["embeddings.LayerNorm.bias"]
    return x.astype(np.float32), enc.tokens


def _cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run_demo(out_dir="out/demo", *, rows=8, cols=8, act="int8", bits=4, group=128, layer=0,
             sentence=DEFAULT_SENTENCE, say=print):
    """Run the demo; write ``report.md``, ``result.json`` and the design's Verilog into ``out_dir``.

    Returns the result dict (``bit_exact``, ``cycle_exact``, cycles, accuracy, paths).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TileConfig(rows=rows, cols=cols, pe="mixpe-w4a8" if act == "int8" else "mixpe-w4a16",
                     wbits=4, group=group)
    p = ArrayParams.from_config(cfg)
    model = minilm_dir()
    x, tokens = minilm_activations(model, sentence)
    name = f"encoder.layer.{layer}.intermediate.dense.weight"
    w = load_tensors(model / "model.safetensors", [name])[name]
    say(f"MiniLM {name} {w.shape[0]}x{w.shape[1]}, {len(tokens)} tokens of {sentence!r}")

    qw = quantize_weights(w, bits, group, scale_bits=cfg.scale_bits)
    if act == "int8":
        a, sa = quantize_act_int8(x)
    else:
        a, sa = x.astype(np.float16), None
    m, k = a.shape
    n = w.shape[0]
    timing = array_timing(p, m, n, k)
    say(f"array {rows}x{cols} mixpe W{bits}A{8 if act == 'int8' else 16} group {group}: "
        f"{timing.tiles} tiles x {timing.beats_per_tile} beats; golden cycle model: {timing.total} cycles")

    verilog, manifest = write_rtl(design_for(cfg), out / "rtl")
    say(f"RTL: building (or reusing) the Verilator model of {design_for(cfg).top} and running it ...")
    started = time.monotonic()
    run = run_array(cfg, a, qw)
    seconds = time.monotonic() - started

    y = output_to_float(p, run.rtl_acc, qw, sa)
    ref = x.astype(np.float32) @ w.T.astype(np.float32)
    result = {
        "model": "all-MiniLM-L6-v2", "tensor": name, "tokens": tokens, "M": m, "N": n, "K": k,
        "config": cfg.to_dict(), "bit_exact": run.bit_exact, "cycle_exact": run.cycle_exact,
        "cycles_rtl": run.measured, "cycles_golden": run.expected,
        "macs": m * n * k, "pe_utilization": m * n * k / (rows * cols * run.measured["total"]),
        "cosine_vs_float32": _cosine(y, ref), "max_abs_error": float(np.abs(y - ref).max()),
        "rel_error": float(np.linalg.norm(y - ref) / np.linalg.norm(ref)),
        "rtl_seconds": round(seconds, 2), "verilog": str(verilog), "manifest": str(manifest),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(_report(result))
    yes = {True: "yes", False: "NO"}
    say(f"outputs bit-exact (RTL vs golden): {yes[result['bit_exact']]}")
    say(f"cycles exact (RTL vs golden model): {yes[result['cycle_exact']]} "
        f"(RTL {run.measured['total']}, golden {run.expected['total']}; first output after "
        f"{run.measured['first_output']} cycles)")
    say(f"accuracy vs float32: cosine {result['cosine_vs_float32']:.5f}, "
        f"relative error {result['rel_error']:.4f}")
    say(f"output files: {out.resolve()} (report.md, result.json, rtl/)")
    return result


def _report(r):
    c = r["config"]
    return "\n".join([
        "# mixpim demo: MiniLM FFN projection on the MixPE array", "",
        f"- tensor: `{r['tensor']}` ({r['N']}x{r['K']}), {r['M']} tokens",
        f"- array: {c['rows']}x{c['cols']} `{c['pe']}`, {c['wbits']}-bit weights, group {c['group']}",
        f"- outputs bit-exact, RTL vs golden: **{r['bit_exact']}**",
        f"- cycles exact, RTL vs golden cycle model: **{r['cycle_exact']}** "
        f"(RTL {r['cycles_rtl']['total']}, model {r['cycles_golden']['total']})",
        f"- first output after {r['cycles_rtl']['first_output']} cycles; PE utilization "
        f"{r['pe_utilization']:.3f}",
        f"- accuracy vs float32: cosine {r['cosine_vs_float32']:.5f}, relative error {r['rel_error']:.4f}, "
        f"max abs error {r['max_abs_error']:.4f}",
        f"- Verilog: `{r['verilog']}`", "",
    ])
