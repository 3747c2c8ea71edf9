"""A small random LLaMA-family checkpoint written as a real GGUF file (``gguf.GGUFWriter``, Q4_1
projections and a Q8_0 tied embedding, as SmolLM2 ships), for tests that need whole decoder
layers at shapes the tiny tile and its RTL can run."""

import types

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

Q4_1, Q8_0 = GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0


def write_tiny_llama(path, *, hidden=32, heads=1, kv_heads=1, ffn=64, vocab=40, layers=1, positions=64,
                     seed=0):
    """Write the checkpoint to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_embedding_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_feed_forward_length(ffn)
    w.add_context_length(positions)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)

    def quant(name, shape, kind, scale):
        x = (rng.normal(size=shape) * scale).astype(np.float32)
        w.add_tensor(name, quantize(x, kind), raw_dtype=kind)

    def norm(name):
        w.add_tensor(name, (1 + rng.normal(size=hidden) * 0.1).astype(np.float32))
    kvw = hidden // heads * kv_heads
    quant("token_embd.weight", (vocab, hidden), Q8_0, 1.0)
    for i in range(layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight")
        quant(p + "attn_q.weight", (hidden, hidden), Q4_1, 0.3)
        quant(p + "attn_k.weight", (kvw, hidden), Q4_1, 0.3)
        quant(p + "attn_v.weight", (kvw, hidden), Q4_1, 0.3)
        quant(p + "attn_output.weight", (hidden, hidden), Q4_1, 0.2)
        norm(p + "ffn_norm.weight")
        quant(p + "ffn_gate.weight", (ffn, hidden), Q4_1, 0.3)
        quant(p + "ffn_up.weight", (ffn, hidden), Q4_1, 0.3)
        quant(p + "ffn_down.weight", (hidden, ffn), Q4_1, 0.2)
    norm("output_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


class Letters:
    """A stand-in tokenizer for the tiny checkpoints (they have none): the letters a..z are the
    ids 0..25."""

    def encode(self, text):
        return types.SimpleNamespace(ids=[ord(c) - ord("a") for c in text])

    def decode(self, ids):
        return "".join(chr(ord("a") + i) if i < 26 else "?" for i in ids)
