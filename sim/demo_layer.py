"""The model demo's RTL half: one whole real layer of the model on the Verilated tile.

Block 0 (RMSNorm, QKV, RoPE, causal attention, O, residual, RMSNorm, SwiGLU FFN, residual) runs
as two programs that end with the residual stream after the block in DRAM (``logits="none"``:
:meth:`~mixpim.compiler.llama_decoder.CompiledLlama.hidden`):

* ``prefill``: the prompt through the block; it also writes the prompt's keys and values into the
  block's KV cache in the PIM banks;
* ``step``: one decode step of the next token (the golden generation's first) through the block,
  attention on PIM against that cache.

Both run on the tile RTL and the golden model in one simulator process
(:func:`~.tile_cosim.run_programs`), which compares every status register and the DRAM words the
programs store. The same two programs are also compiled for the golden configuration (the whole
model's, the ``llm`` preset) and run on the golden model: the block output on the RTL
configuration must equal it bit for bit. Finally the block output is compared with the float32
model's (trace point ``residual`` of layer 0): the cosine per token, the smallest reported.

The RTL's tile is by default the golden configuration with an 8x8 array (:data:`RTL_ARRAY`):
the Verilog of the 16x16 FP16 tile with the DRAM the block needs was not generated after 21
minutes and 11 GB (stopped), while the 8x8 tile takes about 3.5 minutes to generate and 11.5 to
Verilate (once; the build is cached), and gives the same block output bit for bit. Its DRAM is
cut, as :func:`~.tile_cosim.run_programs` does for every large DRAM
(:func:`~.tile_cosim.rtl_config`), to the power-of-two rows per bank that hold everything the
programs touch: one block's weights, KV cache and workspaces need 3.7 MB of the 512 MiB, so the
Verilated DRAM is 4 MiB; banks, row size and timing are unchanged, so every cycle is the same.
"""

import time
from dataclasses import dataclass

import numpy as np

from ..compiler.llama_cache import layer_caches
from ..models.executor import execute
from .demo import DemoError
from .report import unit_status
from .tile_cosim import imem_words_for, rtl_config, run_programs

__all__ = ["LayerProgram", "LayerRun", "run_layer"]

#: The two programs of the block, in order.
KINDS = ("prefill", "step")
#: Rows and columns of the RTL's array by default (module doc).
RTL_ARRAY = 8


@dataclass
class LayerProgram:
    """One program of the block: ``kind`` (:data:`KINDS`), ``instructions``, ``run`` (the
    :class:`~.tile_cosim.TileRun`: ``.bit_exact``, ``.cycle_exact``, ``.golden``,
    ``.rtl_status``, ``.sim_seconds``), ``same_as_golden_config`` (its block output equals the golden
    configuration's bit for bit), ``max_difference`` (the largest absolute difference of those
    outputs), ``golden_config_cycles`` (the program's cycles on the golden configuration) and
    ``cosine`` (the smallest per-token cosine against float32)."""

    kind: str
    instructions: int
    run: object
    same_as_golden_config: bool
    max_difference: float
    golden_config_cycles: int
    cosine: float

    def figures(self):
        """A JSON-able dict: exactness, golden and RTL status, the comparisons."""
        return {"instructions": self.instructions, "bit_exact": bool(self.run.bit_exact),
                "cycle_exact": bool(self.run.cycle_exact), "golden": unit_status(self.run.golden.status),
                "rtl": unit_status(self.run.rtl_status), "same_as_golden_config": self.same_as_golden_config,
                "max_difference_vs_golden_config": self.max_difference,
                "golden_config_cycles": self.golden_config_cycles, "cosine_vs_float32_min": self.cosine,
                "rtl_seconds": round(self.run.sim_seconds, 1)}


@dataclass
class LayerRun:
    """Block 0 on the RTL: ``config`` (the RTL's TileConfig), ``imem_words`` (its instruction
    memory), ``programs`` (:class:`LayerProgram` per :data:`KINDS`), ``seconds`` (wall time of the
    RTL build, if any, and run)."""

    config: object
    imem_words: int
    programs: list
    seconds: float


def _compile(compiler, model_config, ids, token):
    """Block 0's prefill of ``ids`` (and its golden result) and decode step of ``token`` at
    position ``len(ids)``, compiled by ``compiler``: ``(prefill, result, step)``."""
    caches = layer_caches(compiler.cfg, model_config, batch=1, capacity=len(ids) + 1)[:1]
    pre = compiler.lower(ids, layers=1, logits="none", caches=caches, tune=False)
    res = execute(pre.program, check_races=False)
    if not res.ok:
        raise DemoError(f"block 0's prefill stopped with {res.status.error.name} at pc {res.status.error_pc}")
    step = compiler.lower_step([token], [len(ids)], caches, [caches[0].segment(res.dram)], layers=1,
                               logits="none")
    return pre, res, step


def _golden_outputs(compiler, model_config, ids, token):
    """Block 0's output after each program (:data:`KINDS`) compiled by ``compiler`` and run on the
    golden model, and their cycles: ``([prefill, step], [cycles, cycles])``."""
    pre, res, step = _compile(compiler, model_config, ids, token)
    runs = [(pre, res), (step, execute(step.program, check_races=False))]
    return [c.hidden(r) for c, r in runs], [r.status.cycles for _, r in runs]


def _float_block0(model, ids):
    """The float32 model's residual stream after block 0, (tokens, hidden)."""
    seen = {}

    def trace(layer, name, a):
        if layer == 0 and name == "residual":
            seen["x"] = a.astype(np.float64)
    model.forward(ids, trace=trace)
    return seen["x"]


def _min_cosine(a, b):
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def run_layer(dm, golden, config, ids, token, *, imem_words=None, say=print):
    """Block 0 of ``dm`` (:class:`~.demo_generation.DemoModel`) on the tile RTL: a :class:`LayerRun`.

    ``golden``: the LlamaCompiler of the golden configuration; ``config``: the RTL's (within the
    RTL size limit; by default the golden one with a :data:`RTL_ARRAY` square array, and a large
    DRAM is cut to what the block touches, module doc); ``ids``: the prompt; ``token``: the decode
    step's token; ``imem_words``: at least this instruction memory (so that the Verilator build
    can be shared with other runs).
    """
    mc = dm.model.config
    want, golden_cycles = _golden_outputs(golden, mc, ids, token)
    rtl = golden if config == golden.cfg else dm.compiler(config)
    pre, _, step = _compile(rtl, mc, ids, token)
    compiled = [pre, step]
    cfg = rtl_config(config, [(c.program.instructions, c.program.segments) for c in compiled])  # Verilated
    imem = max(imem_words_for(max(len(c.program.instructions) for c in compiled)), imem_words or 0)
    say(f"RTL: block 0 on the Verilated {cfg.rows}x{cfg.cols} {cfg.pe} tile ({cfg.dram_bytes / 2**20:g} MiB "
        f"DRAM, {imem} instruction words): the prefill of {len(ids)} tokens ({len(pre.program.instructions):,} "
        f"instructions) and a decode step ({len(step.program.instructions):,}); building (the first "
        f"time: minutes) or reusing the Verilator model ...")
    t0 = time.monotonic()
    runs = run_programs(config, [c.program for c in compiled], imem_words=imem)
    seconds = time.monotonic() - t0
    ref = _float_block0(dm.model, list(ids) + [token])
    programs = []
    refs = (ref[:len(ids)], ref[len(ids):])
    for kind, c, run, w, g, r in zip(KINDS, compiled, runs, want, golden_cycles, refs):
        got = c.hidden(run.golden)
        programs.append(LayerProgram(kind, len(c.program.instructions), run, bool(np.array_equal(got, w)),
                                     float(np.abs(got - w).max()), g, _min_cosine(got, r)))
    yes = {True: "yes", False: "NO"}
    for p in programs:
        rs = unit_status(p.run.rtl_status)
        say(f"  {p.kind}: RTL == golden bit-exact {yes[p.run.bit_exact]}, cycle-exact "
            f"{yes[p.run.cycle_exact]} ({rs['cycles']:,} cycles, PIM busy {rs['busy']['PIM']:,}); "
            f"== the {golden.cfg.rows}x{golden.cfg.cols} golden configuration's output "
            f"{yes[p.same_as_golden_config]}; cosine vs float32 >= {p.cosine:.5f}")
    return LayerRun(cfg, imem, programs, seconds)
