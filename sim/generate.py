"""``mixpim generate``: greedy decoding of SmolLM2-135M on the tile (golden model).

A batch of prompts is one batched decode: each prompt is prefilled by its own program (the whole
prompt through every block on the NPU; its keys and values go into its request's KV cache rows in
the PIM banks; the LM head of the last token), then every step is one program for the whole batch
(each request's newest token through every block, attention on PIM against the caches, which gain
the new keys and values). The host only picks the next tokens (argmax of the logits), gathers
their embedding rows into DRAM and carries the caches' DRAM from one program to the next.

A step's instructions depend only on the requests' lengths, which grow by one each step, so a
second process compiles the next steps (for placeholder tokens) while this one runs the current
step on the golden model; each compiled step then gets its tokens' embedding rows and the caches
(:meth:`~mixpim.compiler.llama_decoder.LlamaCompiler.retarget`): the same program, bit for bit,
as compiling it after the step before. The compile process starts before the prompts' prefills,
and sends a step back without its weight images (~117 MB for SmolLM2): both processes hold the
compiler's same :meth:`~mixpim.compiler.llama_decoder.LlamaCompiler.constants`, so the pickle
names them by index (``persistent_id``).
"""

import gc
import io
import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..compiler.blas import one_blas_thread
from ..compiler.calibrate import calibrate_llama
from ..compiler.gguf_checkpoint import GgufFile, llama_weights, smollm2_path
from ..compiler.gguf_tokenizer import gguf_tokenizer
from ..compiler.llama_cache import layer_caches
from ..compiler.llama_decoder import CompiledLlama, LlamaCompiler
from ..compiler.llama_float import LlamaFloat
from ..compiler.model_build import ModelBuild
from ..compiler.sample_text import CALIBRATION_TEXT
from ..models.errors import MixpimError
from ..models.executor import execute
from ..models.isa import Instruction, decode
from ..models.tile_timing import simulate
from .report import unit_status

__all__ = ["GenerateError", "Run", "Generation", "Generator"]

#: Steps compiled ahead of the one running (each is a whole program in memory).
LOOKAHEAD = 2
_WORKER = {}  # the compiler and caches the forked compile process inherits


class _Pickler(pickle.Pickler):
    """Names the compiler's constant images (``ids``: object id -> index) instead of copying
    them, and sends instructions as their 128-bit words."""

    def __init__(self, file, ids):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.ids = ids
        self.words = {}  # id -> persistent id of the instructions met (the program, its timing)

    def persistent_id(self, obj):
        t = type(obj)
        if t is int:
            return None
        if t is bytes:
            return self.ids.get(id(obj))
        if not isinstance(obj, Instruction):
            return None
        pid = self.words.get(id(obj))
        if pid is None:
            pid = self.words[id(obj)] = ("i", obj.encode())
        return pid


class _Unpickler(pickle.Unpickler):
    """The other end of :class:`_Pickler`; ``decoded`` (word -> :class:`Instruction`) keeps the
    instructions of earlier steps: a step's words are nearly all those of the step before."""

    def __init__(self, file, constants, decoded):
        super().__init__(file)
        self.constants, self.decoded = constants, decoded

    def persistent_load(self, pid):
        if type(pid) is int:
            return self.constants[pid]
        inst = self.decoded.get(pid[1])
        if inst is None:
            inst = self.decoded[pid[1]] = decode(pid[1])
        return inst


def _compile_step(lengths):
    """In the compile process: a plain decode step for ``lengths`` with placeholder tokens; its
    program, where its logits are and its cycle model (which needs no data), pickled without
    the compiler's constants (the LM head's weights stay out of the pickle too)."""
    cl = _WORKER["compiler"].lower_step([0] * len(lengths), lengths, _WORKER["caches"])
    timing = cl.timing or simulate(cl.program.config, cl.program.instructions)
    f = io.BytesIO()
    _Pickler(f, _WORKER["ids"]).dump((cl.program, cl.logits_at, timing))
    return f.getvalue()


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
        g = GgufFile(smollm2_path() if path is None else path)
        w = llama_weights(g)
        model, tokenizer = LlamaFloat(w, w.config), gguf_tokenizer(g)
        self._setup(model, tokenizer, config, calibrate_llama(model, [tokenizer.encode(CALIBRATION_TEXT).ids]))

    @classmethod
    def of(cls, model, tokenizer, config, ranges):
        """A generator of a loaded ``model`` (:class:`~mixpim.compiler.llama_float.LlamaFloat`)
        with ``tokenizer`` (``encode(text).ids``, ``decode(ids)``) and calibration ``ranges``
        (:func:`~mixpim.compiler.calibrate.calibrate_llama`)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, ModelBuild.check(config), ranges)
        return self

    def _setup(self, model, tokenizer, config, ranges):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.compiler = LlamaCompiler(model, config, ranges)

    def _run(self, cl, kind, runs, timing=None):
        res = execute(cl.program, check_races=False, timing=timing)
        if not res.ok:
            raise GenerateError(f"the tile stopped with {res.status.error.name} at pc {res.status.error_pc}")
        st = res.status
        runs.append(Run(kind, st.cycles, unit_status(st)["busy"],
                        len(cl.program.instructions)))
        return res

    @one_blas_thread  # (BLAS threads would only compete with the compile process)
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
        data, lengths = [], [len(prompt) for prompt in ids]
        steps = max_new_tokens - 1
        pool = self._compile_pool(caches, steps)
        try:
            # the first steps compile while the prompts prefill
            ahead = [self._submit(pool, lengths, k) for k in range(min(LOOKAHEAD, steps))]
            for r, prompt in enumerate(ids):
                cl = self.compiler.lower(prompt, logits="last", caches=caches, request=r, cache_data=data,
                                         tune=False)
                res = self._run(cl, "prefill", out.runs)
                data = [c.segment(res.dram) for c in caches]
                out.ids[r].append(int(np.argmax(cl.logits(res)[-1])))
                step_done()
            for k in range(steps):
                cl, timing = self._compiled(ahead.pop(0), len(ids))
                if k + LOOKAHEAD < steps:
                    ahead.append(self._submit(pool, lengths, k + LOOKAHEAD))
                cl = self.compiler.retarget(cl, [g[-1] for g in out.ids], data)
                res = self._run(cl, "step", out.runs, timing)
                data = [c.segment(res.dram) for c in caches]
                logits = cl.logits(res)
                for r, g in enumerate(out.ids):
                    g.append(int(np.argmax(logits[r])))
                step_done()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        out.text = [self.tokenizer.decode(g) for g in out.ids]
        return out

    def _compile_pool(self, caches, steps):
        """One forked process that compiles decode steps (it inherits the compiler), or None
        when there is at most one step or no fork (the steps are then compiled here)."""
        constants = self.compiler.constants()
        _WORKER.clear()
        _WORKER.update(compiler=self.compiler, caches=caches, constants=constants,
                       ids={id(b): i for i, b in enumerate(constants)}, decoded={})
        if steps < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        # (gc.freeze: the collector leaves alone what the process inherits, the compiler's heap)
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=gc.freeze)

    @staticmethod
    def _submit(pool, lengths, k):
        """Step k's compilation (lengths ``lengths`` + k): in ``pool``, or here (None)."""
        if pool is not None:
            return pool.submit(_compile_step, [n + k for n in lengths])
        done = Future()
        done.set_result(_compile_step([n + k for n in lengths]))
        return done

    def _compiled(self, future, m):
        program, logits_at, timing = _Unpickler(io.BytesIO(future.result()), _WORKER["constants"],
                                                _WORKER["decoded"]).load()
        return CompiledLlama(program, logits_at, self.compiler.lm_head.qw, m, self.model.config.vocab), timing

    def reference(self, prompt_ids, max_new_tokens):
        """The float32 model's greedy continuation of ``prompt_ids`` (token ids)."""
        return self.model.generate(prompt_ids, max_new_tokens)

