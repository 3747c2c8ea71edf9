"""``mixpim demo --ffn``: MiniLM's layer-0 FFN block compiled to one tile program (the first demo;
the default ``mixpim demo`` is SmolLM2 on the tile, :mod:`.demo_model`).

1. Tokenize a sentence with MiniLM's own tokenizer and build the layer-0 input activations from the
   checkpoint's embedding tables (word + position + token type, then the embedding LayerNorm).
2. Compile the FFN block ``Y = X + GELU(X W1^T) W2^T`` of the layer (``intermediate.dense``
   1536 x 384 and ``output.dense`` 384 x 1536, W4 group 128, INT8 activations with per-token
   scales; no biases) with :func:`~mixpim.compiler.lower_ffn` into one program.
3. Run it on the golden executor (or, with ``backend="rtl"``, on the tile RTL, which also runs the
   golden model and compares), check it against the compiler's numpy reference, and compare the
   result with the float32 block; write ``ffn.mxpm`` (program), ``ffn.lst`` (listing),
   ``report.md``, ``result.json`` and ``cycles.png`` (:mod:`.report`).

Also the demos' shared pieces: :class:`DemoError`, :func:`cosine`, and MiniLM's inputs
(:func:`minilm_activations`, :func:`ffn_weights`), which tests and :mod:`.attention_data` use.
The array-only demo (``--projection``) is :mod:`.demo_projection`.
"""

import time
from pathlib import Path

import numpy as np

from ..compiler.checkpoint import load_tensors, minilm_dir
from ..compiler.ffn import ffn_reference, lower_ffn
from ..models.config import TileConfig
from ..models.errors import MixpimError
from ..models.executor import execute
from ..models.program import listing
from .outputs import check_outputs
from .report import unit_status, unit_timeline, write_report

__all__ = ["DEFAULT_SENTENCE", "BACKENDS", "DemoError", "cosine", "minilm_activations", "ffn_weights",
           "DEMO_MEMORY", "demo_config", "run_demo"]

DEFAULT_SENTENCE = "Mixed-precision accelerators multiply low-bit weights by shifting and adding."
BACKENDS = ("golden", "rtl")
#: The files :func:`run_demo` writes into its output folder (all at the end, as one batch).
DEMO_FILES = ("report.md", "result.json", "cycles.png", "ffn.mxpm", "ffn.lst")
#: The accuracy the demo is meant to reach (cosine vs float32); reported, not enforced.
TARGET_COSINE = 0.99


class DemoError(MixpimError, ValueError):
    """Bad demo arguments, or a backend that is not available."""


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


def cosine(a, b):
    """The cosine of ``a`` and ``b`` as flat vectors (float64)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ffn_weights(model_dir, layer):
    """``(w1, w2)`` float32: the FFN weights of encoder ``layer`` (``intermediate.dense`` (f, d) and
    ``output.dense`` (d, f))."""
    names = [f"encoder.layer.{layer}.intermediate.dense.weight", f"encoder.layer.{layer}.output.dense.weight"]
    t = load_tensors(Path(model_dir) / "model.safetensors", names)
    return t[names[0]], t[names[1]]


#: The memory system of the demo's default tile. The FFN block uses neither a second DRAM channel
#: nor the PIM unit, and the fpga preset's full memory system (2 channels x 8 banks, 1 KiB PIM
#: buffers) makes the Verilated 8x8 tile about 2.5x larger (20 MB of Verilog, a build of more than
#: 20 minutes); one channel of 4 banks and the smallest PIM buffers keep it near the size it had
#: before the PIM unit (docs/decisions.md, "Memory system and PIM").
DEMO_MEMORY = dict(dram_channels=1, dram_banks=4, dram_bank_groups=2, pim_gbuf_bytes=16,
                   pim_res_regs=1, pim_lanes=1)


def demo_config(config, rows, cols, *, small_memory=False):
    """The demo's TileConfig: ``config`` (a preset name, a file or a TileConfig) with ``rows`` and
    ``cols`` replaced where given (not None), and with :data:`DEMO_MEMORY` if ``small_memory``."""
    cfg = config if isinstance(config, TileConfig) else TileConfig.load(config)
    changes = {k: v for k, v in (("rows", rows), ("cols", cols)) if v is not None}
    if small_memory:  # the same DRAM bytes in fewer banks
        fewer = cfg.dram_channels * cfg.dram_banks // (DEMO_MEMORY["dram_channels"]
                                                       * DEMO_MEMORY["dram_banks"])
        changes.update(DEMO_MEMORY, dram_rows=cfg.dram_rows * max(fewer, 1))
    return cfg.replace(**changes) if changes else cfg


def run_demo(out_dir="out/demo", *, config="fpga", rows=None, cols=None, layer=0, sentence=DEFAULT_SENTENCE,
             backend="golden", say=print):
    """Compile and run MiniLM's FFN block; write the program and the report into ``out_dir``.

    Arguments
    ---------
    out_dir : str or Path
    config : str or TileConfig
        A preset name (default ``"fpga"``: 16x16 MixPE, W4 group 128), a ``.json``/``.toml`` file
        or a configuration; INT8 activations.
    rows, cols : int, optional
        Override the configuration's array size.
    layer : int
        The encoder layer whose FFN weights are used (its input is always the embedding output).
    sentence : str
    backend : ``"golden"`` or ``"rtl"``
        ``"rtl"`` runs the program on the tile RTL (:func:`mixpim.sim.tile_cosim.run_tile`), which
        also runs the golden model and compares outputs and cycles.
    say : callable
        Progress lines (``print``; ``lambda s: None`` for quiet).

    Returns
    -------
    dict
        The result written to ``result.json``: ``accuracy`` (``cosine_vs_float32``, ``rel_error``,
        ...), ``status`` (golden cycles and busy cycles per unit), ``checks`` (name -> bool),
        ``ok`` (every check passed), ``rtl`` (None on golden), ``workload``, ``scales``, ``files``.

    Raises
    ------
    DemoError
        Unknown backend or empty sentence.
    CheckpointError, ConfigError, CompileError
        No MiniLM checkpoint; a bad configuration; a configuration the block does not fit.
    """
    if backend not in BACKENDS:
        raise DemoError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not isinstance(sentence, str) or not sentence.strip():
        raise DemoError("the sentence must be a non-empty string")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise DemoError(f"layer must be a non-negative integer, not {layer!r}")
    cfg = demo_config(config, rows, cols)
    out = check_outputs(out_dir, DEMO_FILES)  # before minutes of work; created when written
    seconds = {}

    t0 = time.monotonic()
    model = minilm_dir()
    x, tokens = minilm_activations(model, sentence)
    w1, w2 = ffn_weights(model, layer)
    (f, d), m = w1.shape, x.shape[0]
    say(f"MiniLM layer {layer} FFN block ({d} -> {f} -> {d}), {m} tokens of {sentence!r}")
    cf = lower_ffn(cfg, x, w1, w2)
    prog = cf.program
    seconds["compile"] = time.monotonic() - t0
    image = sum(len(s.data) for s in prog.segments)
    say(f"compiled for {cfg.rows}x{cfg.cols} {cfg.pe} W{cfg.wbits} group {cfg.group}: "
        f"{len(prog.instructions)} instructions, {image:,} bytes of memory image (-> ffn.mxpm)")

    t0 = time.monotonic()
    rtl = None
    if backend == "rtl":
        # ---- RTL backend: the one place the tile RTL plugs in ------------------------------------
        # run_tile(program) runs the program on the tile RTL and on the golden executor; it returns
        # .bit_exact, .cycle_exact, .rtl_status (cycles, busy[4], dispatched, error, error_pc) and
        # .golden (the executor Result), which the rest of the demo reads like a golden run.
        from .tile_cosim import run_tile
        say("RTL: building (or reusing) the Verilator model of the tile and running the program ...")
        run = run_tile(prog)
        golden = run.golden
        rtl = {"bit_exact": bool(run.bit_exact), "cycle_exact": bool(run.cycle_exact),
               "status": unit_status(run.rtl_status)}
        # ------------------------------------------------------------------------------------------
    else:
        golden = execute(prog)
    seconds[backend] = time.monotonic() - t0

    y = cf.output(golden)
    yf = cf.dequantize(y)
    ref = ffn_reference(x, w1, w2).astype(np.float64)
    # the W4 weights alone (float activations): the floor the int8 activations add to
    ref_w4 = ffn_reference(x, cf.qw1.dequantize(), cf.qw2.dequantize())
    st = unit_status(golden.status)
    checks = {"golden status OK": golden.ok, "no races": not golden.races,
              "golden == numpy reference (bit-exact)": bool(np.array_equal(y, cf.reference()))}
    if rtl is not None:
        checks["RTL == golden outputs (bit-exact)"] = rtl["bit_exact"]
        checks["RTL == golden cycles"] = rtl["cycle_exact"]
    accuracy = {
        "reference": "float32 x + gelu(x W1^T) W2^T (no biases)",
        "cosine_vs_float32": cosine(yf, ref),
        "rel_error": float(np.linalg.norm(yf - ref) / np.linalg.norm(ref)),
        "max_abs_error": float(np.abs(yf - ref).max()),
        "cosine_w4_weights_float_activations": cosine(ref_w4, ref),
        "target_cosine": TARGET_COSINE,
    }
    macs = 2 * m * d * f
    e = cf.extra
    result = {
        "title": f"mixpim demo: MiniLM layer {layer} FFN block on the tile ({backend})",
        "model": "all-MiniLM-L6-v2", "layer": layer, "sentence": sentence, "tokens": tokens,
        "backend": backend, "config": cfg.to_dict(),
        "workload": {
            "block": f"Y = X + GELU(X W1^T) W2^T, layer {layer}, no biases",
            "tokens (M)": m, "d_model": d, "d_ff": f, "MACs": macs,
            "array": f"{cfg.rows}x{cfg.cols} {cfg.pe}, W{cfg.wbits} group {cfg.group}",
            "instructions": len(prog.instructions), "memory image bytes": image,
            "GEMM utilization (MACs / array MACs x cycles)": macs / (cfg.rows * cfg.cols * st["cycles"]),
        },
        "scales": {"x_scale": [float(cf.x_scale.min()), float(cf.x_scale.max())],
                   "out_scale": [float(cf.out_scale.min()), float(cf.out_scale.max())],
                   "s_h": e["s_h"], "s_g": e["s_g"]},
        "accuracy": accuracy, "status": st, "races": len(golden.races), "checks": checks,
        "ok": all(checks.values()), "rtl": rtl,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "files": {"program": "ffn.mxpm", "listing": "ffn.lst"},
    }
    yes = {True: "yes", False: "NO"}
    result["summary"] = [f"`{k}`: {yes[v]}" for k, v in checks.items()] + [
        f"accuracy vs float32: cosine **{accuracy['cosine_vs_float32']:.5f}** (target >= {TARGET_COSINE}), "
        f"relative error {accuracy['rel_error']:.4f}; W4 weights with float activations: cosine "
        f"{accuracy['cosine_w4_weights_float_activations']:.5f}",
        f"{st['cycles']:,} cycles on the golden cycle model"]
    t0 = time.monotonic()
    # every output file in one batch, only now that the run is complete (docs/decisions.md)
    write_report(result, out, timeline=unit_timeline(golden.timing), say=say,
                 files={"ffn.mxpm": prog.to_bytes(), "ffn.lst": listing(prog)})
    result["seconds"]["report"] = round(time.monotonic() - t0, 3)

    busy = ", ".join(f"{u} {v / st['cycles']:.0%}" for u, v in st["busy"].items() if v)
    say(f"golden: {st['error']}, {st['cycles']:,} cycles (busy {busy}), races {len(golden.races)}, "
        f"bit-exact vs numpy reference: {yes[checks['golden == numpy reference (bit-exact)']]}")
    if rtl is not None:
        say(f"RTL: outputs bit-exact {yes[rtl['bit_exact']]}, cycles exact {yes[rtl['cycle_exact']]} "
            f"(RTL {rtl['status']['cycles']:,}, golden {st['cycles']:,})")
    say(f"accuracy vs float32: cosine {accuracy['cosine_vs_float32']:.5f}, relative error "
        f"{accuracy['rel_error']:.4f} (W4 weights alone: cosine "
        f"{accuracy['cosine_w4_weights_float_activations']:.5f})")
    say(f"output files: {out.resolve()} (report.md, result.json, cycles.png, ffn.mxpm, ffn.lst)")
    return result
