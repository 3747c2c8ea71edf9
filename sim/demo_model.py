"""``mixpim demo`` (the default): a real LLM on the NPU+PIM tile, the whole story in a few minutes.

SmolLM2-135M-Instruct (the installed GGUF checkpoint; its Q4_1 and Q8_0 codes exactly) greedily
continues a prompt:

1. **Golden, whole model** (:mod:`.demo_generation`): the prompt's prefill (every block and the LM
   head in one program), then one decode step per further token (attention on PIM against the KV
   cache in the DRAM banks), each on the golden executor and its exact cycle model; the tokens
   are compared with the float32 model's greedy continuation.
2. **RTL, one whole layer** (:mod:`.demo_layer`): block 0 of the same model on the Verilated tile,
   the prompt's prefill through the block and one decode step of the first generated token:
   RTL == golden bit- and cycle-exact, the same output bits as on the golden configuration, and
   the cosine against float32.
3. **Outputs**, checked before the work and written at the end in one batch: ``report.md``,
   ``result.json``, ``cycles.png`` (block 0's decode step, golden and RTL, and when each unit is
   busy; without the RTL the last whole-model program) and ``generation.png`` (busy cycles per
   unit of the whole model's prefill, first and last decode step).
"""

import io
import time

from ..compiler.model_build import ModelBuild
from ..hw.tile import MAX_IMEM_WORDS
from ..models.config import TileConfig
from .demo import DemoError
from .demo_generation import generate_golden, load_model
from .demo_layer import RTL_ARRAY, run_layer
from .demo_report import model_result
from .outputs import check_outputs
from .report import plot_unit_cycles, unit_timeline, write_report
from .tile_cosim import rtl_size_problem

__all__ = ["DEFAULT_PROMPT", "DEFAULT_NEW_TOKENS", "MODEL_DEMO_FILES", "run_model_demo"]

DEFAULT_PROMPT = "The capital of France is"
#: New tokens by default: the prefill and two decode steps (each about 40 s on the golden model).
DEFAULT_NEW_TOKENS = 3
#: The files :func:`run_model_demo` writes into its output folder (all at the end, as one batch).
MODEL_DEMO_FILES = ("report.md", "result.json", "cycles.png", "generation.png")


def _check(prompt, new_tokens, config, rtl, rtl_config, imem_words):
    """The arguments of :func:`run_model_demo`, checked: ``(config, rtl_config)`` as TileConfigs
    (``rtl_config`` None without the RTL, else by default ``config`` with an
    :data:`~.demo_layer.RTL_ARRAY` square array)."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DemoError("the prompt must be a non-empty string (or token ids)")
    elif not isinstance(prompt, (list, tuple)) or not prompt:
        raise DemoError(f"the prompt must be a non-empty string or list of token ids, not {prompt!r}")
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise DemoError(f"new_tokens must be a positive integer, not {new_tokens!r}")
    if imem_words is not None and (isinstance(imem_words, bool) or not isinstance(imem_words, int)
                                   or not 1 <= imem_words <= MAX_IMEM_WORDS):
        raise DemoError(f"imem_words must be an integer in 1..{MAX_IMEM_WORDS}, not {imem_words!r}")
    cfg = ModelBuild.check(config if isinstance(config, TileConfig) else TileConfig.load(config))
    if new_tokens >= cfg.rows * cfg.cols:  # the prompt's tokens come on top
        raise DemoError(f"{new_tokens} new tokens do not fit one prefill of {cfg.rows * cfg.cols} "
                        f"positions with the prompt")
    if not rtl:
        return cfg, None
    if rtl_config is None:
        rtl_config = cfg.replace(rows=RTL_ARRAY, cols=RTL_ARRAY)
    if not isinstance(rtl_config, TileConfig):
        rtl_config = TileConfig.load(rtl_config)
    ModelBuild.check(rtl_config)
    problem = rtl_size_problem(rtl_config)
    if problem:
        raise DemoError(f"the RTL configuration is too large to simulate: {problem}")
    return cfg, rtl_config


def _prompt_ids(model, prompt, new_tokens, cfg, rtl_cfg):
    """The prompt's token ids, checked to fit a prefill on ``cfg`` with ``new_tokens`` after it
    and, with the RTL, block 0's prefill and decode step on ``rtl_cfg``."""
    ids = model.prompt_ids(prompt)
    limit = min(model.model.config.max_positions, cfg.rows * cfg.cols)
    if len(ids) + new_tokens > limit:
        raise DemoError(f"the prompt's {len(ids)} tokens and {new_tokens} new tokens need "
                        f"{len(ids) + new_tokens} positions; at most {limit} fit (the model's context "
                        f"and one prefill of {cfg.rows * cfg.cols} tokens)")
    if rtl_cfg is not None and len(ids) >= rtl_cfg.rows * rtl_cfg.cols:
        raise DemoError(f"the prompt's {len(ids)} tokens and a decode step do not fit the RTL tile's "
                        f"prefill of {rtl_cfg.rows * rtl_cfg.cols} tokens ({rtl_cfg.rows}x{rtl_cfg.cols} array)")
    return ids


def _write(out, result, model, gen, layer, say):
    """Write the report, the JSON and both charts into ``out`` in one batch; print the summary."""
    result["files"] = {"whole-model chart": "generation.png"}  # write_report adds its own
    charts = io.BytesIO()  # the prefill, the first and the last decode step (steps differ little)
    shown = {p.label: p.status for p in gen.programs[:2] + gen.programs[2:][-1:]}
    plot_unit_cycles(charts, shown, title=f"{model.name} on the golden tile: busy cycles per unit")
    timeline = unit_timeline(layer.programs[-1].run.golden.timing) if layer else None
    # every output file in one batch, only now that the run is complete (docs/decisions.md)
    write_report(result, out, timeline=timeline, say=say, files={"generation.png": charts.getvalue()})
    for line in result["summary"]:
        if "![" not in line:  # the chart's link is for report.md
            say(line.replace("**", "").replace("`", ""))
    say(f"output files: {out.resolve()} ({', '.join(MODEL_DEMO_FILES)})")


def run_model_demo(out_dir="out/demo", *, prompt=DEFAULT_PROMPT, new_tokens=DEFAULT_NEW_TOKENS, model=None,
                   config="llm", rtl=True, rtl_config=None, imem_words=None, say=print):
    """Generate on the golden tile, run block 0 on the RTL; write the report into ``out_dir``.

    Arguments
    ---------
    out_dir : str or Path
    prompt : str or list of int
        A text (needs the model's tokenizer) or token ids.
    new_tokens : int
        Tokens to generate: the prefill gives the first, each decode step one more.
    model : DemoModel, optional
        :func:`~.demo_generation.load_model` of a checkpoint (default: the installed SmolLM2-135M).
    config : str or TileConfig
        The whole model's tile (default the ``llm`` preset: 16x16 W4A16, group 32 with offsets).
    rtl : bool
        Run block 0 on the tile RTL (False: the golden model alone).
    rtl_config : str or TileConfig, optional
        The RTL's tile (default ``config`` with an 8x8 array, :data:`~.demo_layer.RTL_ARRAY`); a
        DRAM over 1 MiB is cut to what block 0 touches (:func:`~.tile_cosim.rtl_config`).
    imem_words : int, optional
        At least this many instruction words in the RTL (a build shared with other runs).
    say : callable
        Progress lines (``print``; ``lambda s: None`` for quiet).

    Returns
    -------
    dict
        The result written to ``result.json`` (:func:`~.demo_report.model_result`): ``generation``
        (ids, texts, every program's figures), ``layer`` (None without the RTL), ``checks``
        (name -> bool), ``ok`` (every check passed), ``accuracy``, ``workload``, ``seconds``.

    Raises
    ------
    DemoError
        Bad arguments, a prompt too long for the tile, an RTL configuration too large.
    CheckpointError, ConfigError, CompileError, ShapeError, ToolchainError
        A missing or bad checkpoint; a bad configuration; token ids out of range; no Verilator.
    """
    cfg, rtl_cfg = _check(prompt, new_tokens, config, rtl, rtl_config, imem_words)
    out = check_outputs(out_dir, MODEL_DEMO_FILES)  # before minutes of work; created when written
    if rtl:
        from .toolchain import find_verilator
        find_verilator()  # no Verilator: fail now, not after the generation
    seconds = {}
    t0 = time.monotonic()
    if model is None:
        say("loading SmolLM2-135M-Instruct (the installed GGUF checkpoint), calibrating its scales ...")
        model = load_model()
    ids = _prompt_ids(model, prompt, new_tokens, cfg, rtl_cfg)
    mc = model.model.config
    compiler = model.compiler(cfg)
    seconds["load and quantize"] = time.monotonic() - t0

    t0 = time.monotonic()
    say(f"golden: {model.name}, {mc.layers} blocks on the {cfg.rows}x{cfg.cols} {cfg.pe} tile: "
        f"{len(ids)} prompt tokens, {new_tokens} new (the prefill, then a decode step per token) ...")
    gen = generate_golden(model, compiler, ids, new_tokens, say=say)
    seconds["golden generation"] = time.monotonic() - t0
    layer = None
    if rtl:
        t0 = time.monotonic()
        layer = run_layer(model, compiler, rtl_cfg, ids, gen.ids[0], imem_words=imem_words, say=say)
        seconds["RTL layer (compile, Verilator build, run)"] = time.monotonic() - t0

    result = model_result(model, cfg, prompt, ids, gen, layer)
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    _write(out, result, model, gen, layer, say)
    return result
