"""The model description: from Hugging Face config.json and GGUF metadata, and its errors."""

import json

import pytest

from mixpim.compiler.checkpoint import minilm_dir
from mixpim.compiler.model_config import ModelConfig, ModelError

LLAMA = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9,
         "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
         "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
         "hidden_act": "silu"}


def test_minilm_config_json():
    cfg = ModelConfig.from_hf(minilm_dir())
    assert (cfg.family, cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads, cfg.ffn, cfg.vocab) == \
        ("bert", 6, 384, 12, 12, 1536, 30522)
    assert (cfg.head_dim, cfg.norm_eps, cfg.rope_base, cfg.gated, cfg.pre_norm) == (32, 1e-12, 0.0, False, False)


def test_llama_config_dict():
    cfg = ModelConfig.from_hf(LLAMA)
    assert (cfg.head_dim, cfg.kv_width, cfg.gated, cfg.pre_norm, cfg.rope_base) == (64, 192, True, True, 1e5)


def test_gguf_metadata():
    meta = {"general.architecture": "llama", "llama.block_count": 30, "llama.embedding_length": 576,
            "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3,
            "llama.feed_forward_length": 1536, "llama.vocab_size": 49152, "llama.context_length": 8192,
            "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 100000.0,
            "llama.rope.dimension_count": 64}
    assert ModelConfig.from_gguf(meta) == ModelConfig.from_hf(LLAMA)
    with pytest.raises(ModelError, match="partial RoPE"):
        ModelConfig.from_gguf({**meta, "llama.rope.dimension_count": 32})
    with pytest.raises(ModelError, match="RoPE scaling"):
        ModelConfig.from_gguf({**meta, "llama.rope.scaling.type": "linear"})
    with pytest.raises(ModelError, match="architecture 'gpt2'"):
        ModelConfig.from_gguf({**meta, "general.architecture": "gpt2"})
    with pytest.raises(ModelError, match="no 'llama.block_count'"):
        ModelConfig.from_gguf({k: v for k, v in meta.items() if k != "llama.block_count"})


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt_neox"}, "model_type 'gpt_neox' is not supported"),
    ({"hidden_act": "relu"}, "activation 'relu'"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
    ({"attention_bias": True}, "biases"),
    ({"head_dim": 128}, "head_dim 128"),
    ({"num_key_value_heads": 2}, "not a multiple of the 2 key/value heads"),
    ({"hidden_size": 577}, "not a multiple of the 9 heads"),
    ({"num_hidden_layers": 0}, "layers must be an integer"),
    ({"num_hidden_layers": True}, "layers must be an integer"),
    ({"rms_norm_eps": "small"}, "rms_norm_eps must be a number"),
    ({"rope_theta": 1.0}, "RoPE base must be a number above 1"),
])
def test_llama_config_errors(change, message):
    with pytest.raises(ModelError, match=message):
        ModelConfig.from_hf({**LLAMA, **change})


def test_bert_config_errors(tmp_path):
    d = json.loads((minilm_dir() / "config.json").read_text())
    with pytest.raises(ModelError, match="only the exact 'gelu'"):
        ModelConfig.from_hf({**d, "hidden_act": "gelu_new"})
    with pytest.raises(ModelError, match="position_embedding_type 'relative_key'"):
        ModelConfig.from_hf({**d, "position_embedding_type": "relative_key"})
    with pytest.raises(ModelError, match="no 'intermediate_size'"):
        ModelConfig.from_hf({k: v for k, v in d.items() if k != "intermediate_size"})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        ModelConfig.from_hf(tmp_path)
    bad.write_text("[1, 2]")
    with pytest.raises(ModelError, match="must be a JSON object"):
        ModelConfig.from_hf(bad)
    with pytest.raises(ModelError, match="cannot read model config"):
        ModelConfig.from_hf(tmp_path / "missing.json")
