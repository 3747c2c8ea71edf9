"""A float32 numpy reference of the LLaMA-family decoder (SmolLM2 and alike).

The model the compiler and the hardware are checked against, written from the definition, not from
any engine: per block (pre-norm)

    x = x + Wo · attention(RoPE(Wq · rms(x)), RoPE(Wk · rms(x)), Wv · rms(x))
    x = x + W_down · (silu(W_gate · rms(x)) * (W_up · rms(x)))

then a final RMSNorm and the tied LM head (the embedding). ``rms(x) = x / sqrt(mean(x²) + eps) * w``.
RoPE turns pairs ``(i, i + head_dim/2)`` of each head by ``pos * base^(-2i/head_dim)`` (the
Hugging Face / "neox" order; :func:`~mixpim.compiler.gguf_checkpoint.llama_weights` gives Wq and Wk in
that order). Attention is causal and grouped-query: query head ``h`` reads KV head
``h // (heads // kv_heads)``.

:meth:`LlamaFloat.forward` takes an optional :class:`KVCache` so that decoding continues a prefill
one token at a time, and an optional ``trace(layer, name, array)`` callback that sees the
activations entering each Linear (for calibrating quantization scales); a callback that returns an
array replaces the activation with it (number-format studies: ``bench/bench_formats.py``).
Everything is float32.
"""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.errors import ShapeError

from .blas import one_blas_thread

__all__ = ["LlamaFloat", "KVCache", "TRACE_POINTS", "rms_norm", "silu"]

#: Names passed to the ``trace`` callback, per block (``layer`` 0..L-1), then ``"final_norm"``
#: with ``layer`` None. Arrays: ``attn_in``, ``attn_out``, ``ffn_in``, ``ffn_act`` (T, width): the
#: inputs of Wq/Wk/Wv, Wo, W_gate/W_up and W_down; ``q`` (heads, T, hd), ``k``, ``v``
#: (kv_heads, T, hd): queries and keys after RoPE, values (the new positions only); ``probs``
#: (kv_heads, heads // kv_heads, T, S): attention probabilities over all S keys;
#: ``attn_residual`` (T, hidden): the stream after the attention's residual add; ``residual``
#: (T, hidden): the block's output.
TRACE_POINTS = ("attn_in", "q", "k", "v", "probs", "attn_out", "attn_residual", "ffn_in", "ffn_act",
                "residual")


def rms_norm(x, w, eps):
    """``x / sqrt(mean(x^2) + eps) * w`` over the last axis, float32."""
    ms = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float32)
    return (x / np.sqrt(ms + np.float32(eps))) * w


def silu(x):
    """``x * sigmoid(x)``, without overflow for large negative x."""
    half = np.float32(0.5)
    return x * (half + half * np.tanh(half * x))


@dataclass
class KVCache:
    """Keys (after RoPE) and values of the positions seen so far: per layer (kv_heads, length, hd).

    Make one with :meth:`LlamaFloat.new_cache`; :meth:`LlamaFloat.forward` appends to it."""

    layers: int
    length: int = 0
    k: list = field(default_factory=list)
    v: list = field(default_factory=list)


class LlamaFloat:
    """The float32 decoder of ``weights`` (:class:`~mixpim.compiler.gguf_checkpoint.LlamaWeights`)
    described by ``config`` (:class:`~mixpim.compiler.model_config.ModelConfig`, family llama)."""

    def __init__(self, weights, config):
        if config.family != "llama":
            raise ShapeError(f"LlamaFloat runs llama-family models, not {config.family!r}")
        c, hd = config, config.head_dim
        if weights.embed.shape != (c.vocab, c.hidden) or len(weights.blocks) != c.layers:
            raise ShapeError(f"weights (embedding {list(weights.embed.shape)}, {len(weights.blocks)} "
                             f"blocks) do not match the config ({c.vocab}x{c.hidden}, {c.layers} blocks)")
        want = {"wq": (c.hidden, c.hidden), "wk": (c.kv_width, c.hidden), "wv": (c.kv_width, c.hidden),
                "wo": (c.hidden, c.hidden), "w_gate": (c.ffn, c.hidden), "w_up": (c.ffn, c.hidden),
                "w_down": (c.hidden, c.ffn), "attn_norm": (c.hidden,), "ffn_norm": (c.hidden,)}
        for i, b in enumerate(weights.blocks):
            for name, shape in want.items():
                if getattr(b, name).shape != shape:
                    raise ShapeError(f"block {i} {name} has shape {list(getattr(b, name).shape)}, "
                                     f"the config needs {list(shape)}")
        self.weights, self.config = weights, config
        self._inv_freq = c.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        self._scale = np.float32(1 / np.sqrt(hd))

    def new_cache(self):
        """An empty :class:`KVCache` for this model."""
        return KVCache(self.config.layers)

    def _rope_tables(self, positions):
        """cos and sin (T, head_dim) float32: angle ``pos * theta_i`` repeated for both halves."""
        ang = np.outer(positions, self._inv_freq)
        ang = np.concatenate([ang, ang], axis=1)
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    @staticmethod
    def _rope(x, cos, sin):
        """RoPE of x (heads, T, hd): ``x * cos + rotate_half(x) * sin``."""
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rot * sin

    def check_ids(self, ids, start):
        """``ids`` as an array, checked to continue ``start`` cached positions (ShapeError)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ShapeError(f"token ids must be a non-empty 1-D integer sequence, not {ids.dtype} "
                             f"shape {list(ids.shape)}")
        bad = (ids < 0) | (ids >= self.config.vocab)
        if bad.any():
            raise ShapeError(f"token id {int(ids[bad][0])} is out of range 0..{self.config.vocab - 1}")
        if start + ids.size > self.config.max_positions:
            raise ShapeError(f"{start} cached + {ids.size} new positions exceed the model's "
                             f"{self.config.max_positions}")
        return ids

    @one_blas_thread
    def forward(self, ids, cache=None, trace=None):
        """Logits (T, vocab) float32 for token ``ids`` (T,).

        With ``cache`` (:class:`KVCache`), ``ids`` continue the positions already in it and their
        keys/values are appended. ``trace(layer, name, array)`` is called at each of
        :data:`TRACE_POINTS` (arrays are the model's own: do not modify them); if it returns an
        array (same shape), the forward goes on with that instead."""
        c, w = self.config, self.weights
        start = cache.length if cache is not None else 0
        if cache is not None and cache.layers != c.layers:
            raise ShapeError(f"the KV cache has {cache.layers} layers, the model {c.layers}")
        ids = self.check_ids(ids, start)
        t, hd, kvh = ids.size, c.head_dim, c.kv_heads
        group = c.heads // kvh
        cos, sin = self._rope_tables(np.arange(start, start + t))
        # Causal mask over all keys (cached and new): key j is visible to query i iff j <= start + i.
        total = start + t
        mask = np.arange(total)[None, :] > np.arange(start, total)[:, None]

        def emit(layer, name, a):
            b = None if trace is None else trace(layer, name, a)
            return a if b is None else np.asarray(b, np.float32)

        x = w.embed[ids]
        for i, b in enumerate(w.blocks):
            h = emit(i, "attn_in", rms_norm(x, b.attn_norm, c.norm_eps))
            q = self._rope((h @ b.wq.T).reshape(t, c.heads, hd).transpose(1, 0, 2), cos, sin)
            k = self._rope((h @ b.wk.T).reshape(t, kvh, hd).transpose(1, 0, 2), cos, sin)
            v = (h @ b.wv.T).reshape(t, kvh, hd).transpose(1, 0, 2)
            q, k, v = emit(i, "q", q), emit(i, "k", k), emit(i, "v", v)
            if cache is not None:
                if start:
                    k = np.concatenate([cache.k[i], k], axis=1)
                    v = np.concatenate([cache.v[i], v], axis=1)
                    cache.k[i], cache.v[i] = k, v
                else:
                    cache.k.append(k)
                    cache.v.append(v)
            # Grouped-query attention: (kv_heads, group, T, hd) queries against (kv_heads, 1, S, hd).
            qg = q.reshape(kvh, group, t, hd)
            s = (qg @ k[:, None].transpose(0, 1, 3, 2)) * self._scale
            s = np.where(mask, np.float32(-np.inf), s)
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            p = emit(i, "probs", p / p.sum(axis=-1, keepdims=True))
            o = (p @ v[:, None]).reshape(c.heads, t, hd).transpose(1, 0, 2).reshape(t, c.hidden)
            o = emit(i, "attn_out", o)
            x = emit(i, "attn_residual", x + o @ b.wo.T)
            h = emit(i, "ffn_in", rms_norm(x, b.ffn_norm, c.norm_eps))
            a = silu(h @ b.w_gate.T) * (h @ b.w_up.T)
            a = emit(i, "ffn_act", a)
            x = x + a @ b.w_down.T
            x = emit(i, "residual", x)
        if cache is not None:
            cache.length = total
        x = emit(None, "final_norm", rms_norm(x, w.norm, c.norm_eps))
        return x @ w.embed.T

    def logits_teacher_forced(self, ids):
        """Logits (T, vocab) of every position of ``ids`` in one pass: row i predicts ids[i + 1]."""
        return self.forward(ids)

    def generate(self, ids, max_new_tokens, stop_ids=()):
        """Greedy continuation of ``ids``: a list of up to ``max_new_tokens`` new ids (stopping
        after any id in ``stop_ids``). Prefills once, then decodes one token at a time."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ShapeError(f"max_new_tokens must be a non-negative integer, not {max_new_tokens!r}")
        cache, out = self.new_cache(), []
        if max_new_tokens == 0:
            return out
        logits = self.forward(ids, cache)
        while True:
            nxt = int(np.argmax(logits[-1]))
            out.append(nxt)
            if len(out) == max_new_tokens or nxt in stop_ids:
                return out
            logits = self.forward([nxt], cache)
