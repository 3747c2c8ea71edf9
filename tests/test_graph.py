"""The layer graph: operators, order, shapes and data flow for the llama and bert families."""

import pytest

from mixpim.compiler.checkpoint import minilm_dir
from mixpim.compiler.graph import OP_KINDS, layer_graph, linears
from mixpim.compiler.model_config import ModelConfig, ModelError

SMOLLM2 = ModelConfig("llama", 30, 576, 9, 3, 1536, 49152, 8192, 1e-5, 100000.0)


def test_llama_block_and_head():
    g = layer_graph(SMOLLM2)
    names = [op.name for op in g]
    assert names[:16] == ["embed", "L0.attn_norm", "L0.q_proj", "L0.k_proj", "L0.v_proj", "L0.rope_q",
                          "L0.rope_k", "L0.attention", "L0.o_proj", "L0.attn_residual", "L0.ffn_norm",
                          "L0.gate_proj", "L0.up_proj", "L0.glu", "L0.down_proj", "L0.ffn_residual"]
    assert names[-2:] == ["final_norm", "lm_head"] and len(g) == 1 + 30 * 15 + 2
    shapes = {op.name: (op.width, op.k) for op in linears(g) if op.layer in (0, None)}
    assert shapes == {"L0.q_proj": (576, 576), "L0.k_proj": (192, 576), "L0.v_proj": (192, 576),
                      "L0.o_proj": (576, 576), "L0.gate_proj": (1536, 576), "L0.up_proj": (1536, 576),
                      "L0.down_proj": (576, 1536), "lm_head": (49152, 576)}
    assert all(op.rms for op in g if op.kind == "norm") and not any(op.bias for op in g)


def test_bert_block_and_pool():
    cfg = ModelConfig.from_hf(minilm_dir())
    g = layer_graph(cfg)
    names = [op.name for op in g]
    assert names[:2] == ["embed", "embed_norm"] and names[-1] == "pool" and len(g) == 2 + 6 * 12 + 1
    assert [op.name for op in g if op.layer == 5 and op.kind == "norm"] == ["L5.attn_norm", "L5.ffn_norm"]
    assert all(op.bias for op in linears(g)) and not any(op.rms for op in g)
    assert {(op.width, op.k) for op in linears(g)} == {(384, 384), (1536, 384), (384, 1536)}


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_every_input_is_produced_before_it_is_read(family):
    cfg = SMOLLM2 if family == "llama" else ModelConfig.from_hf(minilm_dir())
    g = layer_graph(cfg, layers=3)
    seen = {"ids"}
    for op in g:
        assert set(op.inputs) <= seen, op
        assert op.kind in OP_KINDS
        seen.add(op.name)
    assert len({op.name for op in g}) == len(g)
    # each block's residual input is the previous block's output
    first = [op for op in g if op.layer == 1][0 if family == "llama" else 0]
    assert first.inputs == (("L0.ffn_residual",) if family == "llama" else ("L0.ffn_norm",))


def test_layers_argument():
    assert len(layer_graph(SMOLLM2, layers=1)) == 1 + 15 + 2
    for bad in (0, 31, True, 1.0):
        with pytest.raises(ModelError, match="layers must be an integer in 1..30"):
            layer_graph(SMOLLM2, layers=bad)
    with pytest.raises(TypeError, match="ModelConfig"):
        layer_graph({"family": "llama"})
