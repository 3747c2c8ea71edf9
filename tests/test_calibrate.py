"""Calibration of the whole-model path on SmolLM2: the ranges of the residual stream and of the
INT8 KV cache, measured on the shipped calibration text."""

import numpy as np
import pytest

from mixpim.compiler.calibrate import calibrate_llama
from mixpim.compiler.gguf_checkpoint import llama_weights, smollm2_path
from mixpim.compiler.gguf_tokenizer import gguf_tokenizer
from mixpim.compiler.llama_float import LlamaFloat
from mixpim.compiler.sample_text import CALIBRATION_TEXT


@pytest.fixture(scope="module")
def model():
    w = llama_weights(smollm2_path())
    return LlamaFloat(w, w.config)


@pytest.fixture(scope="module")
def ranges(model):
    tok = gguf_tokenizer(smollm2_path())
    ids = tok.encode(CALIBRATION_TEXT).ids[:64]
    return calibrate_llama(model, [ids[:40], ids[40:]])


def test_shapes_and_maxima(model, ranges):
    c = model.config
    assert ranges.tokens == 64 and len(ranges.blocks) == c.layers
    b = ranges.blocks[3]
    assert b.k.shape == (3, 32) and b.v.shape == (3, 64) and b.q.shape == (9,) and b.q_folded.shape == (9,)
    # the ranges are the maxima the model computes: recompute block 3 directly
    seen = {}

    def trace(layer, name, a):
        if layer == 3 and name in ("k", "v"):
            seen.setdefault(name, []).append(np.abs(a).max(axis=1))
    tok = gguf_tokenizer(smollm2_path())
    ids = tok.encode(CALIBRATION_TEXT).ids[:64]
    model.forward(ids[:40], trace=trace)
    model.forward(ids[40:], trace=trace)
    k = np.maximum(*seen["k"])
    np.testing.assert_allclose(b.k, np.maximum(k[:, :32], k[:, 32:]), rtol=1e-6)
    np.testing.assert_allclose(b.v, np.maximum(*seen["v"]), rtol=1e-6)
    # the folded query range is at most the query range times the largest key scale
    assert np.all(b.q_folded <= b.q * b.k.max() / 127 * (1 + 1e-6))


def test_residual_range_covers_every_block(ranges):
    assert 1 < ranges.residual < 32768  # fits 32-bit fixed point with 16 fraction bits
    assert all(np.all(b.k > 0) and np.all(b.v > 0) for b in ranges.blocks)


def test_rejects_other_models():
    with pytest.raises(TypeError, match="LlamaFloat"):
        calibrate_llama(object(), [[1, 2]])
