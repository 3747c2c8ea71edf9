"""``mixpim demo --projection``: the earlier array-only demo, MiniLM's FFN up-projection as one GEMM
on the Verilated MixPE array (no tile), kept for the array and W4A16. Writes ``report.md``,
``result.json`` and the design's Verilog (``rtl/``)."""

import json
import time

import numpy as np

from ..compiler.checkpoint import load_tensors, minilm_dir
from ..models.config import TileConfig
from .demo import DEFAULT_SENTENCE, cosine, minilm_activations
from .outputs import check_output_dir, check_outputs, write_files

__all__ = ["run_projection_demo"]


def run_projection_demo(out_dir="out/demo-projection", *, rows=8, cols=8, act="int8", bits=4, group=128,
                        layer=0, sentence=DEFAULT_SENTENCE, say=print):
    """The array-only demo: the FFN up-projection as one GEMM on the Verilated MixPE array (no tile);
    write ``report.md``, ``result.json`` and the design's Verilog into ``out_dir``.

    Returns the result dict (``bit_exact``, ``cycle_exact``, cycles, accuracy, paths).
    """
    from ..models.mixpe import ArrayParams, array_timing, output_to_float
    from ..models.numerics import quantize_act_int8
    from ..models.quant import quantize_weights
    from .array_cosim import run_array
    from .designs import design_for, rtl_files

    out = check_outputs(out_dir, ("result.json", "report.md"))  # created when the results are written
    check_output_dir(out / "rtl")
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

    design = design_for(cfg)
    verilog_files = {f"rtl/{name}": text for name, text in rtl_files(design).items()}
    verilog, manifest = (out / name for name in verilog_files)
    say(f"RTL: building (or reusing) the Verilator model of {design.top} and running it ...")
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
        "cosine_vs_float32": cosine(y, ref), "max_abs_error": float(np.abs(y - ref).max()),
        "rel_error": float(np.linalg.norm(y - ref) / np.linalg.norm(ref)),
        "rtl_seconds": round(seconds, 2), "verilog": str(verilog), "manifest": str(manifest),
    }
    write_files(out, {"result.json": json.dumps(result, indent=2) + "\n",
                      "report.md": _projection_report(result), **verilog_files}, say=say)
    yes = {True: "yes", False: "NO"}
    say(f"outputs bit-exact (RTL vs golden): {yes[result['bit_exact']]}")
    say(f"cycles exact (RTL vs golden model): {yes[result['cycle_exact']]} "
        f"(RTL {run.measured['total']}, golden {run.expected['total']}; first output after "
        f"{run.measured['first_output']} cycles)")
    say(f"accuracy vs float32: cosine {result['cosine_vs_float32']:.5f}, "
        f"relative error {result['rel_error']:.4f}")
    say(f"output files: {out.resolve()} (report.md, result.json, rtl/)")
    return result


def _projection_report(r):
    c = r["config"]
    return "\n".join([
        "# mixpim demo --projection: MiniLM FFN up-projection on the MixPE array", "",
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
