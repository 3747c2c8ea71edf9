"""The float32 BERT reference (compiler/bert_float.py): all-MiniLM-L6-v2 sentence embeddings against
the similarities sentence-transformers publishes, the embedding layer against the demo's, the
trace's activations against their definitions, and every rejected input, on the real checkpoint
(loaded once) and on a tiny random BERT."""

import json
import math

import numpy as np
import pytest
from safetensors.numpy import save_file

from mixpim.compiler.bert_float import (BertError, BertFloat, TRACE_LINEARS, bert_weights, max_seq_length,
                                        minilm_tokenizer, sentence_embeddings)
from mixpim.compiler.checkpoint import CheckpointError, minilm_dir
from mixpim.compiler.model_config import ModelConfig
from mixpim.models.errors import MixpimError
from mixpim.models.vector import gelu
from mixpim.sim.demo import minilm_activations

# Published with all-MiniLM-L6-v2, 4 decimals (sentence-transformers docs):
# https://sbert.net/docs/sentence_transformer/usage/usage.html
USAGE = (["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
         [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]])
# https://sbert.net/docs/sentence_transformer/usage/semantic_textual_similarity.html (rows x columns)
STS = (["The new movie is awesome", "The cat sits outside", "A man is playing guitar"],
       ["The dog plays in the garden", "The new movie is so great", "A woman watches TV"],
       [[0.0543, 0.8939, -0.0502], [0.2838, -0.0029, 0.1310], [0.2277, -0.0136, -0.0327]])
# Half a unit of the 4th decimal, plus float32 noise (torch and numpy sum in other orders).
PRINTED = 0.5e-4 + 2e-6

# (anchor, a related sentence, an unrelated one): the related one must be clearly closer.
TRIPLES = [("A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."),
           ("A man is riding a horse.", "A man is riding a white horse on an enclosed ground.",
            "A man is eating pasta."),
           ("A woman is playing violin.", "A man is playing guitar.",
            "A cheetah is running behind its prey."),
           ("Two men pushed carts through the woods.", "Two men are pushing carts in a forest.",
            "A monkey is playing drums.")]


@pytest.fixture(scope="module")
def folder():
    return minilm_dir()


@pytest.fixture(scope="module")
def model(folder):
    return BertFloat.load(folder)


@pytest.fixture(scope="module")
def tok(folder):
    return minilm_tokenizer(folder)


def embed(model, tok, texts):
    return sentence_embeddings(model, tok, texts)


# -- the real checkpoint ----------------------------------------------------------------------------

def test_weights_follow_the_config(model):
    cfg, w = model.config, model.weights
    assert (cfg.family, cfg.layers, cfg.hidden, cfg.heads, cfg.ffn) == ("bert", 6, 384, 12, 1536)
    assert cfg.norm_eps == 1e-12
    assert w.word.shape == (30522, 384) and w.position.shape == (512, 384) and w.token_type.shape == (2, 384)
    assert len(w.layers) == 6
    layer = w.layers[5]
    assert layer.wq.shape == layer.wo.shape == (384, 384) and layer.bk.shape == (384,)
    assert layer.w1.shape == (1536, 384) and layer.b1.shape == (1536,) and layer.w2.shape == (384, 1536)
    assert layer.ln1.weight.shape == layer.ln2.bias.shape == (384,)
    assert all(a.dtype == np.float32 for a in (w.word, layer.wq, layer.b2, layer.ln2.weight))
    with pytest.raises(AttributeError):
        layer.wq = None  # frozen


def test_forward_shape_and_embedding_layer_match_the_demo(model, tok, folder):
    sentence = "Mixed-precision accelerators multiply low-bit weights by shifting and adding."
    x0, tokens = minilm_activations(folder, sentence)
    enc = tok.encode(sentence)
    assert enc.tokens == tokens
    trace = {}
    h = model.forward(enc.ids, trace)
    assert h.shape == (len(tokens), 384) and h.dtype == np.float32 and np.isfinite(h).all()
    np.testing.assert_allclose(trace["layer0.qkv_in"], x0, rtol=0, atol=2e-6)


def test_trace_holds_each_layers_activations(model, tok):
    ids = tok.encode("A man is eating food.").ids
    t, trace = len(ids), {}
    h = model.forward(ids, trace)
    assert trace["embed_ln_in"].shape == (t, 384)
    for i, w in enumerate(model.weights.layers):
        a = {k.split(".", 1)[1]: v for k, v in trace.items() if k.startswith(f"layer{i}.")}
        assert sorted(a) == sorted(["qkv_in", "q", "k", "v", "scores", "probs", "wo_in", "ln1_in", "w1_in",
                                    "w2_in", "ln2_in"])
        assert all(v.dtype == np.float32 for v in a.values())
        assert a["probs"].shape == a["scores"].shape == (12, t, t)
        np.testing.assert_allclose(a["probs"].sum(axis=-1), 1, atol=1e-6)
        np.testing.assert_allclose(a["q"], a["qkv_in"] @ w.wq.T + w.bq, atol=1e-5)
        np.testing.assert_allclose(a["ln1_in"], a["qkv_in"] + a["wo_in"] @ w.wo.T + w.bo, atol=1e-5)
        np.testing.assert_allclose(a["w2_in"], gelu(a["w1_in"] @ w.w1.T + w.b1), atol=1e-5)  # erf GELU
        assert a["w2_in"].shape == (t, 1536)
        nxt = trace[f"layer{i + 1}.qkv_in"] if i < 5 else h
        ln = (a["ln2_in"] - a["ln2_in"].mean(1, keepdims=True)) / a["ln2_in"].std(1, keepdims=True)
        np.testing.assert_allclose(nxt, ln * w.ln2.weight + w.ln2.bias, atol=1e-4)
    assert set(TRACE_LINEARS) <= {k.split(".", 1)[1] for k in trace if k.startswith("layer0.")}


def test_embeddings_have_unit_norm(model, tok):
    texts = ["A man is eating food.", "", "Hello!", "The quick brown fox jumps over the lazy dog."]
    e = embed(model, tok, texts)
    assert e.shape == (4, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)
    assert tok.encode("").tokens == ["[CLS]", "[SEP]"]  # an empty string is a valid input


@pytest.mark.parametrize("anchor, close, far", TRIPLES, ids=[t[0] for t in TRIPLES])
def test_related_sentences_are_closer_than_unrelated_ones(model, tok, anchor, close, far):
    a, c, f = embed(model, tok, [anchor, close, far])
    print(f"\n{anchor!r}: {a @ c:.4f} with {close!r}, {a @ f:.4f} with {far!r}")
    assert a @ c > a @ f + 0.2


def test_reproduces_published_similarities(model, tok):
    texts, want = USAGE
    e = embed(model, tok, texts)
    np.testing.assert_allclose(e @ e.T, want, rtol=0, atol=PRINTED)
    left, right, want = STS
    sim = embed(model, tok, left) @ embed(model, tok, right).T
    print("\nSTS similarities:\n", np.array2string(sim, precision=4))
    np.testing.assert_allclose(sim, want, rtol=0, atol=PRINTED)


def test_deterministic_and_batch_independent(model, tok):
    texts = ["A man is riding a horse.", "A man is eating pasta."]
    e = embed(model, tok, texts)
    assert np.array_equal(e, embed(model, tok, texts))
    assert np.array_equal(e[1:], embed(model, tok, texts[1:]))


def test_long_text_is_truncated_to_max_seq_length(model, tok, folder):
    n = max_seq_length(folder)
    assert n == json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    enc = tok.encode("hello " * 1000)
    assert len(enc.ids) == n and enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert enc.ids == tok.encode("hello " * (n - 2)).ids  # cut to the text that fits exactly
    e = embed(model, tok, ["hello " * 1000])
    assert e.shape == (1, 384) and abs(np.linalg.norm(e[0]) - 1) < 1e-6


@pytest.mark.parametrize("texts, msg", [
    ([], "no texts to embed: the list is empty"),
    ("A man is eating food.", "texts must be a list of strings, not a single string; wrap it in a list"),
    (["ok", 3], r"text 1 is 3 \(int\), not a str")])
def test_rejects_bad_texts(model, tok, texts, msg):
    with pytest.raises(BertError, match="^" + msg + "$") as info:
        embed(model, tok, texts)
    assert isinstance(info.value, MixpimError)


def test_rejects_a_padding_tokenizer(model, folder):
    from tokenizers import Tokenizer
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))  # pads to 128 as shipped
    with pytest.raises(BertError, match="pads its output"):
        embed(model, raw, ["A man is eating food."])


@pytest.mark.parametrize("ids, msg", [
    ([], "a sequence must have 1..512 tokens, not 0"),
    ([101] * 513, "a sequence must have 1..512 tokens, not 513"),
    ([[101, 102]], "token ids must be a 1-D sequence of integers, not an array of shape [1, 2] and "
                   "dtype int64"),
    ([101.0, 102.0], "token ids must be a 1-D sequence of integers, not an array of shape [2] and "
                     "dtype float64"),
    ([101, 30522], "token id 30522 at position 1 is outside the vocabulary 0..30521"),
    ([-1], "token id -1 at position 0 is outside the vocabulary 0..30521")])
def test_rejects_bad_ids(model, ids, msg):
    with pytest.raises(BertError) as info:
        model.forward(ids)
    assert str(info.value) == msg


# -- a tiny random BERT -----------------------------------------------------------------------------

TINY = dict(model_type="bert", hidden_act="gelu", num_hidden_layers=2, hidden_size=8, num_attention_heads=2,
            intermediate_size=16, vocab_size=30, max_position_embeddings=16, layer_norm_eps=1e-12)


def tiny_tensors(prefix=""):
    rng = np.random.default_rng(0)
    shapes = {"embeddings.word_embeddings.weight": (30, 8), "embeddings.position_embeddings.weight": (16, 8),
              "embeddings.token_type_embeddings.weight": (2, 8), "embeddings.LayerNorm.weight": (8,),
              "embeddings.LayerNorm.bias": (8,)}
    for i in range(2):
        for name, shape in [("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
                            ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
                            ("attention.output.LayerNorm", None), ("intermediate.dense", (16, 8)),
                            ("output.dense", (8, 16)), ("output.LayerNorm", None)]:
            shapes[f"encoder.layer.{i}.{name}.weight"] = shape or (8,)
            shapes[f"encoder.layer.{i}.{name}.bias"] = (shape or (8,))[:1]
    return {prefix + k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def write_tiny(path, tensors):
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(TINY))
    save_file(tensors, str(path / "model.safetensors"))
    return path


def test_tiny_bert_loads_with_or_without_the_bert_prefix(tmp_path):
    ids = [1, 5, 29, 0]
    plain = BertFloat.load(write_tiny(tmp_path / "a", tiny_tensors()))
    prefixed = BertFloat.load(write_tiny(tmp_path / "b", tiny_tensors("bert.")))
    h = plain.forward(ids)
    assert h.shape == (4, 8) and np.array_equal(h, prefixed.forward(ids))
    # A one-token sequence attends only to itself.
    trace = {}
    plain.forward([7], trace)
    assert trace["layer1.probs"].shape == (2, 1, 1) and np.all(trace["layer1.probs"] == 1)


def test_tiny_bert_rejects_missing_and_misshapen_tensors(tmp_path):
    t = tiny_tensors()
    del t["encoder.layer.1.output.LayerNorm.bias"]
    with pytest.raises(CheckpointError, match="tensor 'encoder.layer.1.output.LayerNorm.bias' is not in"):
        bert_weights(write_tiny(tmp_path / "a", t))
    t = tiny_tensors()
    t["encoder.layer.0.intermediate.dense.weight"] = t["encoder.layer.0.intermediate.dense.weight"].T.copy()
    folder = write_tiny(tmp_path / "b", t)
    with pytest.raises(CheckpointError) as info:
        bert_weights(folder)
    assert str(info.value) == (f"tensor 'encoder.layer.0.intermediate.dense.weight' in {str(folder)!r} has "
                               f"shape [8, 16]; the model config needs 16 x 8")


def test_rejects_a_llama_config(tmp_path):
    cfg = ModelConfig("llama", 1, 8, 2, 2, 16, 30, 16, 1e-5, 10000.0)
    with pytest.raises(BertError, match="^a llama model is not a BERT encoder$"):
        bert_weights(write_tiny(tmp_path, tiny_tensors()), cfg)


def test_missing_sentence_config_is_a_checkpoint_error(tmp_path):
    folder = write_tiny(tmp_path, tiny_tensors())
    with pytest.raises(CheckpointError, match="sentence_bert_config.json"):
        minilm_tokenizer(folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 17}))
    with pytest.raises(CheckpointError, match=r"max_seq_length must be an integer in 2\.\.16 .*, not 17$"):
        max_seq_length(folder)
    assert math.isclose(BertFloat.load(folder).config.norm_eps, 1e-12)
