"""The model presets (compiler/model_zoo.py) and the GPT / OPT family (compiler/model_config.py,
graph.py): each preset's shapes give its published parameter count, counted here independently
of the layer graph."""

import json

import pytest

from mixpim.compiler.graph import layer_graph, linears
from mixpim.compiler.model_config import ModelConfig, ModelError
from mixpim.compiler.model_zoo import PRESET_DIR, model_config, model_presets

# published sizes (billions of parameters), from the model cards / papers
PUBLISHED = {"llama2-7b": 6.74, "llama2-13b": 13.0, "llama2-70b": 69.0, "opt-6.7b": 6.7, "opt-13b": 13.0,
             "gpt3-7b": 6.7, "gpt3-13b": 13.0, "gpt3-30b": 30.0, "gpt3-175b": 175.0,
             "smollm2-135m": 0.135, "minilm-l6": 0.0227}


def _parameters(c, untied_head):
    """Weights and biases of the Linears, the embeddings and an untied LM head, by the formulas
    of each architecture (norms left out: under 0.01%)."""
    h, f, kv = c.hidden, c.ffn, c.kv_width
    if c.family == "llama":
        block = h * (h + 2 * kv) + h * h + 3 * h * f
        emb = c.vocab * h
    else:  # bert, gpt: four h x h projections and two FFN matrices, with biases
        block = 4 * h * h + 4 * h + 2 * h * f + f + h
        emb = (c.vocab + c.max_positions) * h
    return c.layers * block + emb + (c.vocab * h if untied_head else 0)


def test_the_presets_give_the_published_sizes():
    assert set(model_presets()) == set(PUBLISHED)
    for name in model_presets():
        c = model_config(name)
        raw = json.loads((PRESET_DIR / f"{name}.json").read_text())
        untied = c.family == "llama" and not raw.get("tie_word_embeddings", False)
        n = _parameters(c, untied)
        assert abs(n / 1e9 / PUBLISHED[name] - 1) < 0.025, (name, n)
        # the layer graph's Linears carry the same weights
        g = layer_graph(c)
        lin = sum(op.k * op.width + op.width * op.bias for op in linears(g) if op.kind == "linear")
        assert lin == n - (c.vocab + (c.max_positions if c.family != "llama" else 0)) * c.hidden - \
            (c.vocab * c.hidden if untied else 0)
    assert model_config("llama2-70b").kv_heads == 8 and model_config("gpt3-30b").heads == 56
    assert model_config("opt-13b").act == "relu" and model_config("gpt3-175b").act == "gelu_new"


def test_gpt_block():
    ops = layer_graph(model_config("opt-6.7b"), layers=1)
    names = [op.name for op in ops]
    assert names == ["embed", "L0.attn_norm", "L0.q_proj", "L0.k_proj", "L0.v_proj", "L0.attention",
                     "L0.o_proj", "L0.attn_residual", "L0.ffn_norm", "L0.up_proj", "L0.relu",
                     "L0.down_proj", "L0.ffn_residual", "final_norm", "lm_head"]
    by = {op.name: op for op in ops}
    assert by["L0.down_proj"].inputs == ("L0.relu",) and by["L0.attn_norm"].inputs == ("embed",)
    assert all(op.bias for op in linears(ops) if op.kind == "linear") and not by["final_norm"].rms
    assert by["lm_head"].width == 50272 and by["L0.up_proj"].width == 16384
    assert layer_graph(model_config("gpt3-7b"), layers=1)[10].kind == "gelu"
    assert model_config("gpt3-7b").pre_norm and not model_config("minilm-l6").pre_norm


def test_refusals(tmp_path):
    opt = json.loads((PRESET_DIR / "opt-6.7b.json").read_text())
    for change, msg in [({"do_layer_norm_before": False}, "do_layer_norm_before false"),
                        ({"word_embed_proj_dim": 512}, "word_embed_proj_dim != hidden_size"),
                        ({"enable_bias": False}, "OPT without biases"),
                        ({"activation_function": "swish"}, "activation 'swish' is not supported")]:
        with pytest.raises(ModelError, match=msg):
            ModelConfig.from_hf({**opt, **change})
    with pytest.raises(ModelError, match="activation must be one of gelu, gelu_new, relu, not 'silu'"):
        ModelConfig("gpt", 1, 64, 2, 2, 256, 100, 64, 1e-5, 0.0, "silu")
    with pytest.raises(ModelError, match="a llama model's activation must be one of silu, not 'relu'"):
        ModelConfig("llama", 1, 64, 2, 2, 256, 100, 64, 1e-5, 10000.0, "relu")
    with pytest.raises(ModelError, match=r"no model preset 'llama3-8b' and no such file \(presets are gpt3-13b, "):
        model_config("llama3-8b")
    with pytest.raises(ModelError, match="a model is a preset name or a config.json path, not 7"):
        model_config(7)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(opt))
    assert model_config(path) == model_config("opt-6.7b") == model_config(tmp_path)
