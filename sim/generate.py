"""``mixpim generate``: greedy decoding of SmolLM2-135M on the tile (golden model).

A batch of prompts is one batched decode: each prompt is prefilled by its own program (the whole
prompt through every block on the NPU; its keys and values go into its request's KV cache rows in
the PIM banks; the LM head of the last token), then every step is one program for the whole batch
(each request's newest token through every block, attention on PIM against the caches, which gain
the new keys and values). The host only picks the next tokens (argmax of the logits), gathers
their embedding rows into DRAM and carries the caches' DRAM from one program to the next.
"""

from dataclasses import dataclass, field

import numpy as np

from ..compiler.calibrate import calibrate_llama
from ..compiler.gguf_checkpoint import llama_weights, smollm2_path
from ..compiler.gguf_tokenizer import gguf_tokenizer
from ..compiler.llama_cache import layer_caches
from ..compiler.llama_decoder import LlamaCompiler
from ..compiler.llama_float import LlamaFloat
from ..compiler.model_build import ModelBuild
from ..compiler.sample_text import CALIBRATION_TEXT
from ..models.errors import MixpimError
from ..models.executor import execute
from .report import unit_status

__all__ = ["GenerateError", "Run", "Generation", "Generator"]


class GenerateError(MixpimError, ValueError):
    """Bad generation input, or a run on the tile that failed."""


@dataclass
class Run:
    """One program's figures: ``kind`` (``prefill`` of a request, or ``step``), ``cycles``, busy
    cycles per unit, ``instructions``."""

    kind: str
    cycles: int
    busy: dict
    instructions: int


@dataclass
class Generation:
    """A batch's result: per request the prompt's ``prompt_ids``, the generated ``ids`` and
    ``text``; ``runs`` (:class:`Run`, in order: the prefills, then the steps)."""

    prompt_ids: list
    ids: list
    text: list
    runs: list = field(default_factory=list)


class Generator:
    """SmolLM2-135M-Instruct (the installed GGUF, or ``path``) compiled for ``config``."""

    def __init__(self, config, path=None):
        ModelBuild.check(config)
        path = smollm2_path() if path is None else path
        w = llama_weights(path)
        self.model, self.tokenizer, self.config = LlamaFloat(w, w.config), gguf_tokenizer(path), config
        ranges = calibrate_llama(self.model, [self.tokenizer.encode(CALIBRATION_TEXT).ids])
        self.compiler = LlamaCompiler(self.model, config, ranges)

    def _run(self, cl, kind, runs):
        res = execute(cl.program, check_races=False)
        if not res.ok:
            raise GenerateError(f"the tile stopped with {res.status.error.name} at pc {res.status.error_pc}")
        st = res.status
        runs.append(Run(kind, st.cycles, unit_status(st)["busy"],
                        len(cl.program.instructions)))
        return res

    def generate(self, prompts, max_new_tokens, *, step_done=lambda: None):
        """Greedy continuations of the texts ``prompts`` (one batch), ``max_new_tokens`` each;
        ``step_done()`` is called after every program (progress)."""
        mc, cfg = self.model.config, self.config
        if not 1 <= len(prompts) <= cfg.rows:
            raise GenerateError(f"a batch holds 1..{cfg.rows} prompts (one ACT lane each), "
                                f"not {len(prompts)}")
        ids = [self.tokenizer.encode(p).ids for p in prompts]
        for p, i in zip(prompts, ids):
            if not i:
                raise GenerateError(f"prompt {p!r} has no tokens")
        capacity = max(len(i) for i in ids) + max_new_tokens
        limit = min(mc.max_positions, cfg.rows * cfg.cols)
        if capacity > limit:
            raise GenerateError(f"prompt and new tokens need {capacity} positions; at most {limit} fit "
                                f"(the model's context and one prefill of {cfg.rows * cfg.cols} tokens)")
        caches = layer_caches(cfg, mc, batch=len(ids), capacity=capacity)
        out = Generation(ids, [[] for _ in ids], [])
        data, lengths = [], []
        for r, prompt in enumerate(ids):
            cl = self.compiler.lower(prompt, logits="last", caches=caches, request=r, cache_data=data,
                                     tune=False)
            res = self._run(cl, "prefill", out.runs)
            data = [c.segment(res.dram) for c in caches]
            out.ids[r].append(int(np.argmax(cl.logits(res)[-1])))
            lengths.append(len(prompt))
            step_done()
        for _ in range(max_new_tokens - 1):
            cl = self.compiler.lower_step([g[-1] for g in out.ids], lengths, caches, data)
            res = self._run(cl, "step", out.runs)
            data = [c.segment(res.dram) for c in caches]
            logits = cl.logits(res)
            for r, g in enumerate(out.ids):
                g.append(int(np.argmax(logits[r])))
            lengths = [n + 1 for n in lengths]
            step_done()
        out.text = [self.tokenizer.decode(g) for g in out.ids]
        return out

    def reference(self, prompt_ids, max_new_tokens):
        """The float32 model's greedy continuation of ``prompt_ids`` (token ids)."""
        return self.model.generate(prompt_ids, max_new_tokens)
