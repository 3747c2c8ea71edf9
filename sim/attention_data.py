"""Real attention inputs for decode attention: MiniLM's query, key and value vectors.

A decode step needs, per request, a query and a new key and value (the request's last token) and
a cache of earlier keys and values. :func:`minilm_attention_batch` takes them from
all-MiniLM-L6-v2: each sentence is one request, its tokens' layer-``layer`` projections are the
cache and the last token is the new one, so a batch of sentences of different lengths is a batch
of requests with different context lengths.
"""

from pathlib import Path

import numpy as np

from ..compiler.attention import AttentionBatch
from ..compiler.checkpoint import load_tensors, minilm_dir
from .demo import minilm_activations

__all__ = ["MINILM_HEADS", "MINILM_HEAD_DIM", "ATTENTION_SENTENCES", "minilm_attention_batch"]

#: all-MiniLM-L6-v2: 12 heads of 32 (hidden 384).
MINILM_HEADS = 12
MINILM_HEAD_DIM = 32

#: Four sentences of different lengths (5, 15, 16 and 17 cached tokens after tokenization).
ATTENTION_SENTENCES = (
    "The cat sat.",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "PIM banks compute attention next to the data while the array runs projections.",
    "Hello world, this is a longer sentence with several more words in it today.",
)


def minilm_attention_batch(sentences=ATTENTION_SENTENCES, *, heads=MINILM_HEADS, layer=0):
    """An :class:`~mixpim.compiler.attention.AttentionBatch` of the first ``heads`` heads of
    MiniLM's layer ``layer`` (float32, biases included), one request per sentence."""
    model = minilm_dir()
    prefix = f"encoder.layer.{layer}.attention.self"
    names = [f"{prefix}.{p}.{w}" for p in ("query", "key", "value") for w in ("weight", "bias")]
    t = load_tensors(Path(model) / "model.safetensors", names)
    width = heads * MINILM_HEAD_DIM
    q, kn, vn, kc, vc = [], [], [], [], []
    for sentence in sentences:
        x, _ = minilm_activations(model, sentence)
        proj = [(x @ t[names[2 * k]].T + t[names[2 * k + 1]])[:, :width].reshape(-1, heads, MINILM_HEAD_DIM)
                for k in range(3)]
        q.append(proj[0][-1])
        kn.append(proj[1][-1])
        vn.append(proj[2][-1])
        kc.append(proj[1][:-1])
        vc.append(proj[2][:-1])
    return AttentionBatch(np.stack(q).astype(np.float32), np.stack(kn).astype(np.float32),
                          np.stack(vn).astype(np.float32), tuple(kc), tuple(vc))
