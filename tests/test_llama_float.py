"""The float32 LLaMA reference on SmolLM2-135M-Instruct: greedy continuations, KV-cache decoding
against a full forward, the RoPE convention against GGUF's, tracing, and the GGUF tokenizer."""

import numpy as np
import pytest

from mixpim.compiler.gguf_checkpoint import GgufFile, llama_weights, smollm2_path
from mixpim.compiler.gguf_tokenizer import gguf_tokenizer
from mixpim.compiler.llama_float import TRACE_POINTS, LlamaFloat, rms_norm
from mixpim.models.errors import ShapeError

PROMPT = "The capital of France is"
PROMPT_IDS = [504, 3575, 282, 4649, 314]


@pytest.fixture(scope="module")
def g():
    return GgufFile(smollm2_path())


@pytest.fixture(scope="module")
def model(g):
    return LlamaFloat(llama_weights(g), g.config)


@pytest.fixture(scope="module")
def tok(g):
    return gguf_tokenizer(g)


def test_paris(model, tok):
    ids = tok.encode(PROMPT).ids
    assert ids == PROMPT_IDS
    text = tok.decode(model.generate(ids, 8))
    assert text.startswith(" Paris"), text


def test_counting(model, tok):
    # Unlike " Paris", this continuation fails if Wq/Wk keep GGUF's row order (checked by hand:
    # that model continues " 2, 3, 2, 2").
    out = model.generate(tok.encode("1, 2, 3, 4, 5,").ids, 9)
    assert tok.decode(out) == " 6, 7, 8,", tok.decode(out)


def test_incremental_decoding_equals_full_forward(model, tok):
    ids = tok.encode("Once upon a time, in a small village by the sea, there").ids
    full = model.forward(ids)
    cache = model.new_cache()
    parts = [model.forward(ids[:6], cache), model.forward(ids[6:8], cache)]
    parts += [model.forward([t], cache) for t in ids[8:]]
    assert cache.length == len(ids)
    step = np.concatenate(parts)
    assert step.shape == full.shape == (len(ids), 49152) and step.dtype == np.float32
    np.testing.assert_allclose(step, full, rtol=0, atol=2e-3 * np.abs(full).max())
    assert np.array_equal(step.argmax(1), full.argmax(1))
    assert np.array_equal(model.logits_teacher_forced(ids), full)


def test_generate_is_greedy(model):
    ids = PROMPT_IDS
    out = model.generate(ids, 4)
    logits = model.logits_teacher_forced(ids + out[:-1])
    assert out == [int(i) for i in logits[len(ids) - 1:].argmax(1)]
    assert model.generate(ids, 0) == []
    assert model.generate(ids, 8, stop_ids=(out[1],)) == out[:2]


def test_rope_matches_ggml_interleaved_order(g, model):
    # GGML's "normal" RoPE turns pairs (2i, 2i+1) of the file's Wq rows; ours turns (i, i + hd/2)
    # of the un-permuted rows: the same rotated vectors up to the row order, so the same scores.
    c, b = g.config, model.weights.blocks[3]
    hd, t = c.head_dim, 7
    h = rms_norm(np.random.default_rng(0).standard_normal((t, c.hidden)).astype(np.float32),
                 b.attn_norm, c.norm_eps)
    cos, sin = model._rope_tables(np.arange(t))
    ours = model._rope((h @ b.wq.T).reshape(t, c.heads, hd).transpose(1, 0, 2), cos, sin)
    raw = (h @ g.dequantized("blk.3.attn_q.weight").T).reshape(t, c.heads, hd // 2, 2)
    theta = np.arange(t)[:, None] * c.rope_base ** (-np.arange(0, hd, 2) / hd)
    x0, x1 = raw[..., 0], raw[..., 1]
    ggml = np.stack([x0 * np.cos(theta)[:, None] - x1 * np.sin(theta)[:, None],
                     x0 * np.sin(theta)[:, None] + x1 * np.cos(theta)[:, None]], axis=-1)
    ggml = ggml.reshape(t, c.heads, 2 * (hd // 2)).transpose(1, 0, 2)  # (2i + j) order
    hf_order = ggml.reshape(c.heads, t, hd // 2, 2).swapaxes(2, 3).reshape(c.heads, t, hd)
    np.testing.assert_allclose(ours, hf_order, rtol=0, atol=1e-4 * np.abs(ours).max())


def test_trace(model):
    seen = {}

    def trace(layer, name, a):
        seen[layer, name] = a.shape

    model.forward([504, 3575, 282], trace=trace)
    c = model.config
    assert len(seen) == c.layers * len(TRACE_POINTS) + 1
    assert seen[0, "attn_in"] == (3, 576) and seen[29, "ffn_act"] == (3, 1536)
    assert seen[5, "q"] == (9, 3, 64) and seen[5, "k"] == (3, 3, 64)
    assert seen[None, "final_norm"] == (3, 576)
    assert seen[5, "probs"] == (3, 3, 3, 3)


def test_trace_may_replace_an_activation(model):
    ids = [504, 3575, 282]
    ref = model.forward(ids)
    same = model.forward(ids, trace=lambda layer, name, a: a.copy())
    np.testing.assert_array_equal(same, ref)
    # no FFN contributions at all: a different model
    cut = model.forward(ids, trace=lambda layer, name, a: 0 * a if name == "ffn_act" else None)
    assert cut.shape == ref.shape and not np.allclose(cut, ref, atol=1e-2)


def test_forward_runs_on_one_blas_thread(model):
    """Whatever the process's BLAS threads, the float model sums in one order (compiler/blas.py):
    its results, and the calibration ranges taken from them, do not depend on the machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    inside = []
    with threadpool_limits(limits=2, user_api="blas"):
        model.forward([504, 3575], trace=lambda layer, name, a: inside.append(threads()) and None)
        assert threads() == {2}
    assert inside and all(t == {1} for t in inside)


def test_bad_input(model):
    with pytest.raises(ShapeError, match="49152 is out of range"):
        model.forward([1, 49152])
    with pytest.raises(ShapeError, match="non-empty 1-D integer"):
        model.forward([])
    with pytest.raises(ShapeError, match="exceed the model's 8192"):
        model.forward(np.zeros(8193, dtype=int))


TEXTS = [
    "Hello, world! How are you doing today?",
    "The year 2024 had 366 days; pi is about 3.14159 and 1,000,000 is a million.",
    "  leading spaces, trailing spaces   \tand\ttabs\n\nand\r\nnewlines\n",
    "Café naïve résumé — «quotes» and emoji 😀👍🏽, 日本語のテキスト, Россия, مرحبا",
    "def f(x):\n    return x ** 2  # comment\n",
    "I'm sure they'll say it's fine, don't you think? We've SEEN it.",
]


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trip(tok, text):
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert all(0 <= i < 49152 for i in ids)


def test_tokenizer_details(tok):
    # smollm pre-tokenizer: every digit alone (llama.cpp's \p{N} pass; HF's Digits(individual_digits)).
    assert tok.encode("12345").tokens == ["1", "2", "3", "4", "5"]
    assert tok.encode("Call 123 please").tokens == ["Call", "Ġ", "1", "2", "3", "Ġplease"]
    # Control tokens are special: matched whole, skipped on request; no BOS is added.
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>").ids
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 5
    assert tok.decode(ids, skip_special_tokens=True) == "user\nHi"
    assert tok.encode("Hi").ids == [tok.token_to_id("Hi")]
    assert tok.get_vocab_size() == 49152
