"""The model demo's checkpoint and its golden half: a LLaMA-family GGUF checkpoint loaded once
(:func:`load_model`: float32 model, tokenizer, calibrated scales) and compiled for any tile
configuration (:meth:`DemoModel.compiler`, the weights and scales shared), and the greedy
generation of one prompt on the golden tile (:func:`generate_golden`): the prompt's prefill, then
one decode step per further token, the programs ``mixpim generate`` runs (:mod:`.generate`;
compiled here one after the other, without its compile-ahead process), with every program's
cycles, busy units and wall time.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..compiler.calibrate import calibrate_llama
from ..compiler.gguf_checkpoint import GgufFile, llama_weights, smollm2_path
from ..compiler.gguf_tokenizer import gguf_tokenizer
from ..compiler.llama_cache import layer_caches
from ..compiler.llama_decoder import LlamaCompiler
from ..compiler.llama_float import LlamaFloat
from ..compiler.sample_text import CALIBRATION_TEXT
from ..models.executor import execute
from .demo import DemoError
from .report import unit_status

__all__ = ["DemoModel", "load_model", "GoldenProgram", "Generated", "generate_golden"]


@dataclass
class DemoModel:
    """A checkpoint ready to compile: ``name`` (its file name), ``model``
    (:class:`~mixpim.compiler.llama_float.LlamaFloat`), ``tokenizer`` (anything with
    ``encode(text).ids`` and ``decode(ids)``, such as the GGUF file's own; None: prompts are token
    ids) and ``ranges`` (:func:`~mixpim.compiler.calibrate.calibrate_llama`)."""

    name: str
    model: object
    tokenizer: object
    ranges: object

    def compiler(self, config):
        """A :class:`~mixpim.compiler.llama_decoder.LlamaCompiler` of the model for ``config``."""
        return LlamaCompiler(self.model, config, self.ranges)

    def prompt_ids(self, prompt):
        """The token ids (list of int) of ``prompt``: a text (needs the tokenizer) or token ids."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise DemoError(f"{self.name} has no tokenizer: give the prompt as token ids")
            ids = self.tokenizer.encode(prompt).ids
            if not ids:
                raise DemoError(f"the prompt {prompt!r} has no tokens")
            return [int(i) for i in ids]
        return [int(i) for i in self.model.check_ids(list(prompt), 0)]  # ShapeError if bad

    def text(self, ids):
        """``ids`` decoded (None without a tokenizer)."""
        return None if self.tokenizer is None else self.tokenizer.decode(list(ids))


def load_model(path=None, *, tokenizer=None, calibration=None):
    """The :class:`DemoModel` of the GGUF checkpoint ``path`` (default: the installed
    SmolLM2-135M-Instruct).

    ``tokenizer``: default the file's own, or None if the file has no tokenizer metadata.
    ``calibration``: token id sequences the scales are calibrated on (default: the kit's
    calibration text through the tokenizer; needed when there is no tokenizer).

    Raises :class:`DemoError` (no tokenizer and no calibration) or
    :class:`~mixpim.compiler.checkpoint.CheckpointError` (a missing or bad checkpoint).
    """
    g = GgufFile(smollm2_path() if path is None else path)
    if tokenizer is None and "tokenizer.ggml.model" in g.metadata:
        tokenizer = gguf_tokenizer(g)
    if calibration is None:
        if tokenizer is None:
            raise DemoError(f"{g.path.name} has no tokenizer: give calibration token ids")
        calibration = [tokenizer.encode(CALIBRATION_TEXT).ids]
    w = llama_weights(g)
    model = LlamaFloat(w, w.config)
    return DemoModel(g.path.name, model, tokenizer, calibrate_llama(model, calibration))


@dataclass
class GoldenProgram:
    """One program of a generation: ``kind`` (``prefill`` or ``step``), ``label`` (``prefill``,
    ``step 1``, ...), ``status`` (:func:`~.report.unit_status`: cycles, busy per unit, ...),
    ``instructions`` and ``seconds`` (wall time: compile and golden run)."""

    kind: str
    label: str
    status: dict
    instructions: int
    seconds: float

    def figures(self):
        """A JSON-able dict (``kind``, ``cycles``, ``busy``, ``instructions``, ``seconds``), as
        ``mixpim generate --json`` lists its runs."""
        return {"kind": self.kind, "cycles": self.status["cycles"], "busy": self.status["busy"],
                "instructions": self.instructions, "seconds": round(self.seconds, 1)}


@dataclass
class Generated:
    """A greedy generation on the golden tile: ``ids`` (the new tokens), ``float_ids`` (the
    float32 model's greedy continuation) and ``programs`` (:class:`GoldenProgram`: the prefill,
    then the decode steps)."""

    ids: list = field(default_factory=list)
    float_ids: list = field(default_factory=list)
    programs: list = field(default_factory=list)

    @property
    def equal_tokens(self):
        """How many leading tokens equal the float32 model's."""
        n = 0
        while n < len(self.ids) and self.ids[n] == self.float_ids[n]:
            n += 1
        return n


def generate_golden(dm, compiler, ids, new_tokens, *, say=print):
    """``new_tokens`` greedy tokens after the prompt ``ids`` with ``compiler`` (the whole model of
    ``dm``) on the golden tile: a :class:`Generated`. ``say`` gets one line per program."""
    cfg = compiler.cfg
    caches = layer_caches(cfg, dm.model.config, batch=1, capacity=len(ids) + new_tokens)
    out, data = Generated(), []
    for n in range(new_tokens):
        t0 = time.monotonic()
        if n == 0:
            cl = compiler.lower(ids, logits="last", caches=caches, request=0, tune=False)
        else:
            cl = compiler.lower_step([out.ids[-1]], [len(ids) + n - 1], caches, data)
        res = execute(cl.program, check_races=False)
        if not res.ok:
            raise DemoError(f"the golden tile stopped with {res.status.error.name} at pc "
                            f"{res.status.error_pc}")
        data = [c.segment(res.dram) for c in caches]
        out.ids.append(int(np.argmax(cl.logits(res)[-1])))
        p = GoldenProgram("prefill" if n == 0 else "step", "prefill" if n == 0 else f"step {n}",
                          unit_status(res.status), len(cl.program.instructions), time.monotonic() - t0)
        out.programs.append(p)
        st = p.status
        busy = ", ".join(f"{u} {c / st['cycles']:.0%}" for u, c in st["busy"].items())
        what = f"prefill of {len(ids)} tokens" if n == 0 else f"decode step {n}"
        text = "" if dm.tokenizer is None else f" {dm.text(out.ids[-1:])!r}"
        say(f"  {what}: token {out.ids[-1]}{text}, {st['cycles']:,} cycles (busy {busy}), "
            f"{p.instructions:,} instructions, {p.seconds:.0f} s")
    out.float_ids = [int(i) for i in dm.model.generate(np.asarray(ids), new_tokens)]
    return out
