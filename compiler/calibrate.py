"""Activation calibration: the ranges static scales are chosen from, measured by running the float
reference on sample text (docs/decisions.md, "Whole models").

The whole-model path quantizes only where the hardware needs integers (FP16 activations go into
the projections unscaled), so calibration records:

* ``residual``: the largest ``|x|`` of the residual stream anywhere (its 32-bit fixed-point unit
  is chosen from it);
* per block, the keys and values that become the INT8 KV cache: ``k`` the largest ``|k|`` per KV
  head and RoPE pair ``(i, i + d/2)`` (RoPE turns a pair into itself, so a pair shares one scale),
  ``v`` per KV head and channel; ``q`` the largest ``|q|`` per query head (the INT8 query of
  decode attention on PIM, after the keys' scales are folded into it: ``q_folded``).

Ranges are maxima over all tokens of all texts (no percentile: clipping the largest values costs
more than the coarser step, as measured for MiniLM's FFN in docs/compiler.md).
"""

from dataclasses import dataclass

import numpy as np

from .llama_float import LlamaFloat

__all__ = ["BlockRanges", "Ranges", "calibrate_llama"]


@dataclass(frozen=True)
class BlockRanges:
    """Ranges of one block (float64 arrays).

    Members
    -------
    k : (kv_heads, head_dim // 2)
        Largest ``|k|`` of each RoPE pair of each KV head.
    v : (kv_heads, head_dim)
        Largest ``|v|`` per channel.
    q : (heads,)
        Largest ``|q|`` per query head.
    q_folded : (heads,)
        Largest ``|q * s_k|`` per query head, ``s_k = k / 127`` of the head's KV head and pair
        (the query of an INT8 dot product with the INT8 keys).
    """

    k: np.ndarray
    v: np.ndarray
    q: np.ndarray
    q_folded: np.ndarray


@dataclass(frozen=True)
class Ranges:
    """Calibrated ranges of a model: ``residual`` (float) and ``blocks`` (tuple of
    :class:`BlockRanges`), ``tokens`` (how many tokens were seen)."""

    residual: float
    blocks: tuple
    tokens: int


def _pairs(k):
    """max over tokens and over the two halves: (kv, T, d) -> (kv, d/2)."""
    half = k.shape[-1] // 2
    a = np.abs(k).max(axis=1)
    return np.maximum(a[:, :half], a[:, half:])


def calibrate_llama(model, texts_ids):
    """:class:`Ranges` of ``model`` (a :class:`~.llama_float.LlamaFloat`) over the token id
    sequences ``texts_ids`` (each run as one prompt)."""
    if not isinstance(model, LlamaFloat):
        raise TypeError(f"model must be a LlamaFloat, not {type(model).__name__}")
    c = model.config
    group = c.heads // c.kv_heads
    seen = {}
    tokens = 0

    def trace(layer, name, a):
        if layer is None or name not in ("q", "k", "v", "attn_residual", "residual"):
            return None
        a = np.abs(np.asarray(a, np.float64))
        if name == "q":  # (heads, T, d): keep whole for the folded range
            seen.setdefault((layer, "qs"), []).append(a)
            new = a.max(axis=(1, 2))
        elif name == "k":
            new = _pairs(a)
        elif name == "v":
            new = a.max(axis=1)
        else:
            new = np.array(a.max())
            name = "residual"
        key = (layer, name)
        seen[key] = new if key not in seen else np.maximum(seen[key], new)
        return None

    for ids in texts_ids:
        ids = np.asarray(ids)
        tokens += ids.size
        seen.setdefault("embed", 0.0)
        seen["embed"] = max(seen["embed"], float(np.abs(model.weights.embed[ids]).max()))
        model.forward(ids, trace=trace)
    blocks = []
    residual = seen.get("embed", 0.0)
    for i in range(c.layers):
        k, v, q = seen[i, "k"], seen[i, "v"], seen[i, "q"]
        s_k = np.repeat(np.concatenate([k, k], axis=1) / 127, group, axis=0)  # (heads, d)
        folded = np.zeros(c.heads)
        for qs in seen[i, "qs"]:
            folded = np.maximum(folded, (qs * s_k[:, None, :]).max(axis=(1, 2)))
        residual = max(residual, float(seen[i, "residual"]))
        blocks.append(BlockRanges(k, v, q, folded))
    return Ranges(residual, tuple(blocks), tokens)
