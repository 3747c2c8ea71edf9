"""A GPT-family decoder (GPT-2/3, OPT: :class:`~.model_config.ModelConfig` family ``gpt``) known
only by its shapes: :class:`GptShapes`, the timing-only programs of
:class:`~.llama_shapes.LlamaShapes` with a GPT block (for performance reports).

The kernels are the verified ones of the LLaMA decoder and the BERT encoder, composed as a
pre-norm GPT block::

    LayerNorm -> QKV (one Linear, biases) -> Q FP16 (prefill) or INT8 (decode, for PIM), K and V
    INT8 (one VEC epilogue, no RoPE) -> causal attention (prefill on the NPU, decode on PIM) ->
    O Linear -> RES + LayerNorm -> up Linear -> GELU or ReLU epilogue (FP16) -> down Linear ->
    RES (+ the next block's LayerNorm)

Learned positions are added by the host with the embedding rows (as the embedding itself is
gathered by the host), so they cost the tile nothing. No GPT checkpoint ships with the kit: these
programs are timed, not run on data (the LLaMA decoder's arithmetic is what the tests check
against float).
"""

import numpy as np

from mixpim.models.isa import VecFunc

from .llama_shapes import LlamaShapes
from .model_kernels import TileOut, epilogue, linear_acc

__all__ = ["GptShapes"]


class GptShapes(LlamaShapes):
    """:class:`~.llama_shapes.LlamaShapes` of a ``gpt``-family ``model_config``: LayerNorm,
    projection biases, GELU / ReLU, no RoPE."""

    family = "gpt"

    def __init__(self, model_config, config):
        super().__init__(model_config, config)
        self.rms, self.bias = False, True

    def _positions(self):
        self.rope = None  # learned positions come with the embedding rows
        self.inv_freq = np.zeros(self.hd // 2)

    def _qk_epilogue(self, b, y, q, k, prm, step, table):
        """Queries FP16 (prefill) or INT8 for PIM (``step``) and keys INT8, with their biases
        (values: :meth:`_values`); no RoPE."""
        c, h, kvw = self.cfg.cols, self.mc.hidden, self.mc.kv_width
        outs = [TileOut(prm + j * 2 * c * 4, VecFunc.REQUANT, int(not step), True, q, j * c) for j in range(h // c)]
        outs += [TileOut(prm + (h // c + j) * 2 * c * 4, VecFunc.REQUANT, 0, True, k, j * c) for j in range(kvw // c)]
        with b.operator("qk_quant"):
            epilogue(b, self.reg, y, outs)

    def _ffn_hidden(self, b, i, x2, tune, tag):
        """up Linear, then GELU (or ReLU) into FP16 hidden activations."""
        mc, B, p, c = self.mc, self.blocks[i], f"l{i}", self.cfg.cols
        with b.operator("up_proj"):
            y = linear_acc(b, f"{p}.up", x2, B.gate_up, out=f"{tag}up.y", tune=tune)
        hid = b.act(f"{tag}h", x2.m, mc.ffn)
        act = "relu" if mc.act == "relu" else "gelu"
        prm = b.region(f"{p}.up.params", len(B.glu_params), 4, B.glu_params)
        with b.operator(act):
            epilogue(b, self.reg, y, [TileOut(prm + j * 2 * c * 4, VecFunc[act.upper()], 1, True, hid, j * c)
                                      for j in range(mc.ffn // c)])
        return hid
