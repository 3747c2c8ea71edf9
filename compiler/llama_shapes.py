"""A LLaMA-family decoder known only by its shapes (:class:`LlamaShapes`): the programs of
:class:`~.llama_decoder.LlamaCompiler` for a :class:`~.model_config.ModelConfig` without a
checkpoint, for timing alone (performance reports, :mod:`mixpim.sim.perf`).

The cycle model never reads data (docs/tile.md), so a program whose constant regions are
:class:`~.model_build.Blank` (sizes, no contents) times exactly as the same program with weights.
Instructions that depend on values are built from neutral ones: unit scales (the decode
attention's query and value scales), a residual stream in units of ``2**-16``. The LM head is a
plain 4-bit Linear over the final norm's output (the SmolLM2 compiler's two 4-bit planes of a
Q8_0 head are a property of that checkpoint, not of the shape).
"""

import re

import numpy as np

from .llama_decoder import LlamaCompiler, _Block
from .llama_kernels import RopeLayout
from .model_build import Blank, ModelBuild
from .model_kernels import Regions, blank_linear
from .model_config import ModelError

__all__ = ["LlamaShapes"]

_BLOCK = re.compile(r"l\d+\.")
#: The residual stream's unit (``2**-RES_FRAC``) and the norms' shift in a blank program.
RES_FRAC, QSHIFT = 16, 8


def _params(cfg, n):
    """A blank VPARAM image of ``n`` columns (``2 cols`` words per feature block)."""
    return Blank(-(-n // cfg.cols) * 2 * cfg.cols * 4)


def _norm(cfg, hidden):
    return (Blank(8), _params(cfg, hidden), _params(cfg, hidden))


def block_key(name):
    """A region's placement key (:class:`~.dram_alloc.DramAllocator`): a block's constant
    ``l{i}.name`` is keyed ``name``, so every block's constants land in the same channels and
    banks (a program of L blocks then times as ``T(1) + (L - 1) (T(2) - T(1))``)."""
    m = _BLOCK.match(name)
    if m:
        return name[m.end():]
    # the final norm takes the place of the next block's norm1 after the last block
    return "norm1." + name[len("final_norm."):] if name.startswith("final_norm.") else name


class LlamaShapes(LlamaCompiler):
    """:class:`~.llama_decoder.LlamaCompiler` of ``model_config`` (a ``llama``-family
    :class:`~.model_config.ModelConfig`) on ``config`` (an FP16 square tile) without weights:
    :meth:`lower` and :meth:`lower_step` build programs whose constants are blank."""

    family = "llama"

    def __init__(self, model_config, config):
        mc = model_config
        if mc.family != self.family:
            raise ModelError(f"a {self.family}-family model is needed here, not {mc.family!r}")
        cfg = ModelBuild.check(config)
        self.model, self.cfg, self.mc = None, cfg, mc
        self.linear_memo = {}
        self.dram_key = block_key
        self.restart_slots = True
        self.rms, self.bias = True, False
        self.hd = mc.head_dim
        self.reg = Regions.of(cfg, mc.hidden)
        self.res_frac, self.qshift = RES_FRAC, QSHIFT
        self._positions()
        h, kvw, f = mc.hidden, mc.kv_width, mc.ffn
        up = 2 * f if mc.gated else f
        block = _Block(
            qkv=blank_linear(cfg, h + 2 * kvw, h), o=blank_linear(cfg, h, h),
            gate_up=blank_linear(cfg, up, h), down=blank_linear(cfg, h, f),
            qkv_params=_params(cfg, h + 2 * kvw), o_params=_params(cfg, h), glu_params=_params(cfg, f),
            down_params=_params(cfg, h), ctx=_params(cfg, h),
            norm1=_norm(cfg, h), norm2=_norm(cfg, h), step_params=_params(cfg, h + 2 * kvw),
            q_scale=np.ones(mc.heads), v_scale=np.ones(kvw))
        self.blocks = [block] * mc.layers
        self.final_norm = _norm(cfg, h)
        self.head_copies = 1
        self.lm_head = blank_linear(cfg, mc.vocab, h)

    def _positions(self):
        """RoPE's layout and the table's frequencies."""
        self.rope = RopeLayout.of(self.cfg, self.hd)
        self.inv_freq = self.rope.freqs(self.mc.rope_base ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd))

    def check_ids(self, ids, start):
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ModelError(f"token ids must be a non-empty 1-D sequence, not shape {list(ids.shape)}")
        if start + ids.size > self.mc.max_positions:
            raise ModelError(f"{start} cached + {ids.size} new positions exceed the model's "
                             f"{self.mc.max_positions}")
        return ids

    def embed_image(self, ids):
        cfg = self.cfg
        blocks = -(-len(ids) // cfg.rows) * -(-self.mc.hidden // cfg.cols)
        return Blank(blocks * cfg.rows * cfg.acc_word_bytes)
