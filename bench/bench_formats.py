"""Which number formats a quantized LLM needs: SmolLM2-135M teacher-forced on 256 tokens of
English with each activation site rounded to a candidate format (the weights are the checkpoint's
Q4_1 values, dequantized exactly), against the float32 reference. This is the measurement behind
the activation formats of docs/numerics.md and docs/decisions.md ("Whole models").

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_formats.py [--out bench/results/formats.json]

Formats (fake quantization in float64, round half to even):

* ``int8``: static per-tensor INT8, scale = max|x| / 127 over the calibration text (per layer);
* ``int8-token``: dynamic per-token INT8 (per token and head for q, k, v);
* ``int8-chan``: static per-channel INT8 (k, v: one scale per head dimension, calibrated);
* ``fp16``: IEEE half precision;
* ``pN``: probabilities on a grid of 1/N (``p127`` is INT8 probabilities).

Two weight studies, activations exact: the Q4_1 weights on the tile's integer zero-point grid,
``w = d (q - z)`` with ``z = round(-m / d)`` (Q4_1's minimum ``m`` is not an integer multiple of
``d``), and the tile's exact form with group offsets (``TileConfig.group_offset``): the weights
as ``Q4_1Weights.to_quantized()`` dequantizes them, ``d q + om 2**-e`` with the offset mantissas'
rounding included.

Sites: ``attn_in`` (input of Wq/Wk/Wv), ``attn_out`` (input of Wo), ``ffn_in`` (input of
W_gate/W_up), ``ffn_act`` (input of W_down), ``q``, ``k``, ``v`` (after RoPE), ``probs``.
Figures: top-1 agreement of the next-token prediction with the float reference, and perplexity of
the text (the float reference's own perplexity for comparison).
"""

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.gguf_checkpoint import LINEARS, llama_weights, smollm2_path
from mixpim.compiler.gguf_tokenizer import gguf_tokenizer
from mixpim.compiler.llama_float import LlamaFloat
from mixpim.compiler.sample_text import CALIBRATION_TEXT, EVALUATION_TEXT

PROJ = ("attn_in", "attn_out", "ffn_in", "ffn_act")
ALL_INT8 = dict.fromkeys(PROJ + ("q", "k", "v"), "int8") | {"probs": "p127"}
FP16_PROJ = dict.fromkeys(PROJ, "fp16")
#: (label, {site: format}) in the order of the report.
STUDIES = (
    ("all INT8 static per tensor, INT8 probabilities", ALL_INT8),
    ("only attn_in INT8 static", {"attn_in": "int8"}),
    ("only ffn_in INT8 static", {"ffn_in": "int8"}),
    ("only ffn_act INT8 static", {"ffn_act": "int8"}),
    ("only ffn_act INT8 per token", {"ffn_act": "int8-token"}),
    ("all INT8 per token, INT8 probabilities", dict.fromkeys(PROJ + ("q", "k", "v"), "int8-token")
     | {"probs": "p127"}),
    ("only probabilities INT8 (p127)", {"probs": "p127"}),
    ("projections FP16", FP16_PROJ),
    ("projections FP16, k v INT8 per channel, probabilities FP16 (prefill on the NPU)",
     FP16_PROJ | {"k": "int8-chan", "v": "int8-chan", "probs": "fp16"}),
    ("projections FP16, q INT8, k v INT8 per channel, probabilities p127",
     FP16_PROJ | {"q": "int8", "k": "int8-chan", "v": "int8-chan", "probs": "p127"}),
    ("projections FP16, q INT8, k v INT8 per channel, probabilities p16383 (decode on PIM)",
     FP16_PROJ | {"q": "int8", "k": "int8-chan", "v": "int8-chan", "probs": "p16383"}),
)


def _q8(x, scale):
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.rint(x / scale), -127, 127) * scale


class Calibration:
    """Trace callback recording max|x| per (layer, site): per tensor, and per channel for k, v."""

    def __init__(self):
        self.tensor, self.channel = {}, {}

    def __call__(self, layer, name, x):
        x = np.abs(np.asarray(x, np.float64))
        key = (layer, name)
        self.tensor[key] = max(self.tensor.get(key, 0.0), float(x.max()))
        if name in ("k", "v"):  # (kv_heads, T, hd) -> (kv_heads, 1, hd)
            self.channel[key] = np.maximum(self.channel.get(key, 0.0), x.max(axis=1, keepdims=True))


def fake_quant(formats, cal):
    """A trace callback rounding each site of ``formats`` to its format."""
    def hook(layer, name, x):
        fmt = formats.get(name)
        if fmt is None:
            return None
        x = np.asarray(x, np.float64)
        if fmt == "fp16":
            return x.astype(np.float16)
        if fmt == "int8":
            return _q8(x, cal.tensor[(layer, name)] / 127)
        if fmt == "int8-chan":
            return _q8(x, cal.channel[(layer, name)] / 127)
        if fmt == "int8-token":
            return _q8(x, np.abs(x).max(axis=-1, keepdims=True) / 127)
        if fmt.startswith("p"):
            n = int(fmt[1:])
            return np.rint(x * n) / n
        raise ValueError(fmt)
    return hook


def integer_zero_points(weights):
    """``weights`` with every Linear ``d * (q - round(-m / d))`` instead of ``d * q + m``."""
    blocks = []
    for i, b in enumerate(weights.blocks):
        new = {}
        for name in LINEARS:
            q = weights.quantized(i, name)
            d = np.repeat(q.d, 32, axis=1)
            z = np.rint(-np.repeat(q.m, 32, axis=1) / np.where(d == 0, 1, d))
            new[name] = (d * (q.q - z)).astype(np.float32)
        blocks.append(dataclasses.replace(b, **new))
    return dataclasses.replace(weights, blocks=tuple(blocks))


def group_offset_weights(weights):
    """``weights`` with every Linear as the tile holds it with group offsets (``to_quantized``)."""
    blocks = []
    for i, b in enumerate(weights.blocks):
        new = {name: weights.quantized(i, name).to_quantized().dequantize().astype(np.float32)
               for name in LINEARS}
        blocks.append(dataclasses.replace(b, **new))
    return dataclasses.replace(weights, blocks=tuple(blocks))


def score(logits, ids, ref_top):
    lg = logits[:-1].astype(np.float64)
    m = lg.max(axis=1)
    lse = np.log(np.exp(lg - m[:, None]).sum(axis=1)) + m
    ppl = float(np.exp(np.mean(lse - lg[np.arange(len(lg)), ids[1:]])))
    return float(np.mean(lg.argmax(axis=1) == ref_top)), ppl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/formats.json")
    args = ap.parse_args(argv)
    t0 = time.time()
    path = smollm2_path()
    weights = llama_weights(path)
    model = LlamaFloat(weights, weights.config)
    tok = gguf_tokenizer(path)
    ids = np.array(tok.encode(EVALUATION_TEXT).ids[:257])
    cal = Calibration()
    model.forward(np.array(tok.encode(CALIBRATION_TEXT).ids), trace=cal)
    ref = model.forward(ids)
    ref_top = ref[:-1].argmax(axis=1)
    _, ref_ppl = score(ref, ids, ref_top)
    rows = []
    print(f"float32 reference: perplexity {ref_ppl:.3f} over {len(ids) - 1} predictions")
    print(f"{'top-1':>7} {'ppl':>8} {'ppl/ref':>8}  formats")
    for label, formats in STUDIES:
        agree, ppl = score(model.forward(ids, trace=fake_quant(formats, cal)), ids, ref_top)
        rows.append(dict(label=label, formats=formats, top1_agreement=agree, perplexity=ppl,
                         perplexity_ratio=ppl / ref_ppl))
        print(f"{agree:7.1%} {ppl:8.3f} {ppl / ref_ppl:8.3f}  {label}")
    for label, transform in (
            ("weights with Q4_1 zero points rounded to integers (activations exact)", integer_zero_points),
            ("weights Q4_1 exact with group offsets (activations exact)", group_offset_weights)):
        agree, ppl = score(LlamaFloat(transform(weights), weights.config).forward(ids), ids, ref_top)
        rows.append(dict(label=label, formats={}, top1_agreement=agree, perplexity=ppl,
                         perplexity_ratio=ppl / ref_ppl))
        print(f"{agree:7.1%} {ppl:8.3f} {ppl / ref_ppl:8.3f}  {label}")
    out = dict(model="SmolLM2-135M-Instruct Q4_1", predictions=len(ids) - 1, float_perplexity=ref_ppl,
               studies=rows, seconds=round(time.time() - t0, 1), machine=platform.machine())
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({out['seconds']} s)")


if __name__ == "__main__":
    main()
