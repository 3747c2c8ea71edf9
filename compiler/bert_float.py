"""A float32 numpy reference of a BERT encoder and of its sentence-transformers embeddings.

The quantized programs the compiler builds for all-MiniLM-L6-v2 are judged against this model, and
their activation scales are calibrated on what it computes, so it is written from the equations,
independent of torch, sentence-transformers and the simulator. It follows Hugging Face ``BertModel``
(the ``bert`` family of :class:`~.model_config.ModelConfig`): embeddings ``word[id] + position[t] +
token_type[0]`` then LayerNorm; per layer, multi-head self-attention and an exact (erf) GELU FFN,
each added to its input and then LayerNorm'd (post-norm). One sequence at a time, without padding,
so no attention mask is needed. Everything is float32, as in PyTorch, except the erf of the GELU
(float64 ``math.erf``, rounded to float32).

A sentence embedding (:func:`sentence_embeddings`) is the mean of the last hidden states over all
of the sentence's tokens, [CLS] and [SEP] included, then L2-normalised: sentence-transformers'
``Pooling`` (mean tokens) and ``Normalize`` modules.

``forward(ids, trace)`` records, per layer ``i``, these activations under ``f"layer{i}.{name}"``
(``T`` tokens, ``d`` hidden, ``f`` FFN width, ``H`` heads), plus ``"embed_ln_in"``, the (T, d)
sum of the three embeddings that enters the embedding LayerNorm:

| name | shape | what |
|---|---|---|
| ``qkv_in`` | (T, d) | the layer's input; input of the query, key and value Linears |
| ``q``, ``k``, ``v`` | (T, d) | outputs of those Linears (bias added), heads side by side |
| ``scores`` | (H, T, T) | ``q k^T / sqrt(head_dim)`` per head, the softmax input |
| ``probs`` | (H, T, T) | attention probabilities (rows sum to 1) |
| ``wo_in`` | (T, d) | ``probs @ v``, heads concatenated; input of the attention output Linear |
| ``ln1_in`` | (T, d) | ``qkv_in`` + attention output; input of the first LayerNorm |
| ``w1_in`` | (T, d) | the first LayerNorm's output; input of the intermediate Linear |
| ``w2_in`` | (T, f) | GELU of the intermediate Linear: the FFN hidden, input of the output Linear |
| ``ln2_in`` | (T, d) | ``w1_in`` + FFN output; input of the second LayerNorm |

:data:`TRACE_LINEARS` names the Linear weights each ``*_in`` activation feeds.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixpim.models.errors import MixpimError

from .blas import one_blas_thread
from .checkpoint import CheckpointError, load_tensors, tensor_index
from .model_config import ModelConfig

__all__ = ["BertError", "Norm", "BertLayerWeights", "BertWeights", "TRACE_LINEARS", "bert_weights",
           "BertFloat", "max_seq_length", "minilm_tokenizer", "sentence_embeddings"]

#: Trace name of a Linear's input -> the :class:`BertLayerWeights` fields of the Linears it feeds.
TRACE_LINEARS = {"qkv_in": ("wq", "wk", "wv"), "wo_in": ("wo",), "w1_in": ("w1",), "w2_in": ("w2",)}


class BertError(MixpimError, ValueError):
    """Bad input to the float BERT: token ids, texts, a tokenizer or a model description."""


@dataclass(frozen=True)
class Norm:
    """A LayerNorm's parameters, (d,) float32: ``weight`` (scale) and ``bias``."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class BertLayerWeights:
    """One encoder layer, float32, Linear weights (out, in) as in PyTorch.

    ``wq``/``bq``, ``wk``/``bk``, ``wv``/``bv`` (d, d)/(d,): attention query, key, value;
    ``wo``/``bo`` (d, d)/(d,): attention output; ``ln1``: LayerNorm after attention;
    ``w1``/``b1`` (f, d)/(f,): intermediate; ``w2``/``b2`` (d, f)/(d,): output; ``ln2``: LayerNorm
    after the FFN."""

    wq: np.ndarray
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray
    wo: np.ndarray
    bo: np.ndarray
    ln1: Norm
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    ln2: Norm


@dataclass(frozen=True)
class BertWeights:
    """A BERT encoder, float32: ``word`` (vocab, d), ``position`` (max_positions, d) and
    ``token_type`` (types, d) embedding tables, ``embed_ln`` (their LayerNorm) and ``layers`` (a
    tuple of :class:`BertLayerWeights`)."""

    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    embed_ln: Norm
    layers: tuple


# Checkpoint names (after the optional "bert." prefix): embeddings, and per layer under
# "encoder.layer.{i}.". A Norm field names a LayerNorm module (".weight" and ".bias").
_EMBED = {"word": "embeddings.word_embeddings.weight", "position": "embeddings.position_embeddings.weight",
          "token_type": "embeddings.token_type_embeddings.weight", "embed_ln": "embeddings.LayerNorm"}
_LAYER = {"wq": "attention.self.query.weight", "bq": "attention.self.query.bias",
          "wk": "attention.self.key.weight", "bk": "attention.self.key.bias",
          "wv": "attention.self.value.weight", "bv": "attention.self.value.bias",
          "wo": "attention.output.dense.weight", "bo": "attention.output.dense.bias",
          "ln1": "attention.output.LayerNorm",
          "w1": "intermediate.dense.weight", "b1": "intermediate.dense.bias",
          "w2": "output.dense.weight", "b2": "output.dense.bias", "ln2": "output.LayerNorm"}
_NORMS = ("embed_ln", "ln1", "ln2")


def _tensors(field, name):
    """The checkpoint tensors of a weights field: a Norm field names a LayerNorm module."""
    return (name + ".weight", name + ".bias") if field in _NORMS else (name,)


def bert_weights(folder, config=None):
    """The :class:`BertWeights` of the checkpoint in ``folder`` (``model.safetensors``; names as in
    Hugging Face ``BertModel``, optionally prefixed ``bert.``), checked against ``config`` (default:
    the folder's ``config.json``).

    Raises :class:`CheckpointError` for a missing or misshapen tensor, :class:`BertError` if the
    config is not a BERT."""
    config = ModelConfig.from_hf(folder) if config is None else config
    if config.family != "bert":
        raise BertError(f"a {config.family} model is not a BERT encoder")
    index = tensor_index(folder)
    prefix = "bert." if _EMBED["word"] not in index and "bert." + _EMBED["word"] in index else ""
    d, f = config.hidden, config.ffn
    # Expected shapes (None: any size); other w* fields are (d, d), the rest (d,).
    shape_of = {"word": (config.vocab, d), "position": (config.max_positions, d),
                "token_type": (None, d), "w1": (f, d), "b1": (f,), "w2": (d, f)}
    # (field, checkpoint name of the field, where it goes): embeddings, then layer by layer.
    entries = [(k, prefix + v, None) for k, v in _EMBED.items()]
    entries += [(k, f"{prefix}encoder.layer.{i}.{v}", i)
                for i in range(config.layers) for k, v in _LAYER.items()]

    t = load_tensors(folder, [n for k, name, _ in entries for n in _tensors(k, name)])
    for k, name, _ in entries:
        want = shape_of.get(k, (d, d) if k.startswith("w") else (d,))
        for n in _tensors(k, name):
            got = t[n].shape
            if len(got) != len(want) or any(w not in (None, g) for w, g in zip(want, got)) or 0 in got:
                need = " x ".join("n" if w is None else str(w) for w in want)
                raise CheckpointError(f"tensor {n!r} in {str(folder)!r} has shape {list(got)}; the "
                                      f"model config needs {need}")

    def value(k, name):
        return Norm(t[name + ".weight"], t[name + ".bias"]) if k in _NORMS else t[name]
    embed = {k: value(k, name) for k, name, i in entries if i is None}
    layers = [{} for _ in range(config.layers)]
    for k, name, i in entries:
        if i is not None:
            layers[i][k] = value(k, name)
    return BertWeights(**embed, layers=tuple(BertLayerWeights(**layer) for layer in layers))


def _layer_norm(x, norm, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mu).mean(axis=-1, keepdims=True)  # biased, as torch's LayerNorm
    return (x - mu) / np.sqrt(var + np.float32(eps)) * norm.weight + norm.bias


_ERF = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf; math.erf is accurate to float64


def _gelu(x):
    """Exact GELU ``x/2 (1 + erf(x/sqrt 2))`` of a float32 array, float32."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _ERF(x64 / math.sqrt(2.0)).astype(np.float64))).astype(np.float32)


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class BertFloat:
    """The float32 BERT encoder of ``weights`` (:class:`BertWeights`) shaped by ``config``
    (:class:`ModelConfig`, family ``bert``). :meth:`load` builds one from a checkpoint folder."""

    def __init__(self, weights, config):
        if config.family != "bert":
            raise BertError(f"a {config.family} model is not a BERT encoder")
        if len(weights.layers) != config.layers or weights.word.shape != (config.vocab, config.hidden):
            raise BertError(f"weights of {len(weights.layers)} layers with embedding table "
                            f"{list(weights.word.shape)} do not match the config ({config.layers} "
                            f"layers, vocab {config.vocab}, hidden {config.hidden})")
        self.weights = weights
        self.config = config

    @classmethod
    def load(cls, folder):
        """The model of a Hugging Face BERT folder (``config.json``, ``model.safetensors``)."""
        config = ModelConfig.from_hf(folder)
        return cls(bert_weights(folder, config), config)

    @one_blas_thread
    def forward(self, ids, trace=None):
        """Last hidden states (T, d) float32 of one sequence of token ``ids`` (token type 0).

        ``trace``, a dict, receives the intermediate activations (module docstring).
        Raises :class:`BertError` if ``ids`` is not a non-empty 1-D sequence of at most
        ``max_positions`` integers in ``0..vocab-1``."""
        ids = self.check_ids(ids)
        w, eps = self.weights, self.config.norm_eps
        x = w.word[ids] + w.position[:len(ids)] + w.token_type[0]
        if trace is not None:
            trace["embed_ln_in"] = x
        x = _layer_norm(x, w.embed_ln, eps)
        for i, layer in enumerate(w.layers):
            x = self._layer(x, layer, trace, f"layer{i}.")
        return x

    def _layer(self, x, w, trace, prefix):
        (t, d), h, eps = x.shape, self.config.heads, self.config.norm_eps
        q, k, v = (x @ wm.T + b for wm, b in ((w.wq, w.bq), (w.wk, w.bk), (w.wv, w.bv)))

        def heads(y):  # (T, d) -> (H, T, head_dim)
            return y.reshape(t, h, d // h).transpose(1, 0, 2)
        scores = heads(q) @ heads(k).transpose(0, 2, 1) / np.float32(math.sqrt(d // h))
        probs = _softmax(scores)
        ctx = (probs @ heads(v)).transpose(1, 0, 2).reshape(t, d)
        r1 = x + (ctx @ w.wo.T + w.bo)
        y = _layer_norm(r1, w.ln1, eps)
        hidden = _gelu(y @ w.w1.T + w.b1)
        r2 = y + (hidden @ w.w2.T + w.b2)
        if trace is not None:
            trace.update({prefix + name: a for name, a in (
                ("qkv_in", x), ("q", q), ("k", k), ("v", v), ("scores", scores), ("probs", probs),
                ("wo_in", ctx), ("ln1_in", r1), ("w1_in", y), ("w2_in", hidden), ("ln2_in", r2))})
        return _layer_norm(r2, w.ln2, eps)

    def check_ids(self, ids):
        """``ids`` as an int64 array; :class:`BertError` (as :meth:`forward` raises) if invalid."""
        a = np.asarray(ids)
        cfg = self.config
        if a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
            raise BertError(f"token ids must be a 1-D sequence of integers, not an array of shape "
                            f"{list(a.shape)} and dtype {a.dtype}")
        if not 1 <= a.size <= cfg.max_positions:
            raise BertError(f"a sequence must have 1..{cfg.max_positions} tokens, not {a.size}")
        bad = (a < 0) | (a >= cfg.vocab)
        if bad.any():
            i = int(np.argmax(bad))
            raise BertError(f"token id {int(a[i])} at position {i} is outside the vocabulary "
                            f"0..{cfg.vocab - 1}")
        return a.astype(np.int64)


def max_seq_length(folder):
    """The ``max_seq_length`` of a sentence-transformers folder (``sentence_bert_config.json``):
    longer inputs are truncated to it. Raises :class:`CheckpointError` if the file is missing or
    the value is not an integer in 2..max_position_embeddings."""
    path = Path(folder) / "sentence_bert_config.json"
    try:
        n = json.loads(path.read_text())["max_seq_length"]
    except OSError as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    except (ValueError, RecursionError, TypeError, KeyError) as e:
        raise CheckpointError(f"{str(path)!r} is not a JSON object with an integer 'max_seq_length' "
                              f"({type(e).__name__}: {e})") from None
    limit = ModelConfig.from_hf(folder).max_positions
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= limit:
        raise CheckpointError(f"{str(path)!r}: max_seq_length must be an integer in 2..{limit} (the "
                              f"model's positions), not {n!r}")
    return n


def minilm_tokenizer(folder):
    """The ``tokenizers.Tokenizer`` of a sentence-transformers folder (``tokenizer.json``), set up
    as sentence-transformers uses it: no padding (the shipped file pads to 128), truncation to
    :func:`max_seq_length` tokens ([CLS] and [SEP] included)."""
    from tokenizers import Tokenizer

    n = max_seq_length(folder)
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"tokenizer {str(path)!r} does not exist")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise CheckpointError(f"cannot read tokenizer {str(path)!r}: {e}") from None
    tok.no_padding()
    tok.enable_truncation(n)
    return tok


def sentence_embeddings(model, tokenizer, texts):
    """Sentence embeddings (n, d) float32 of the list ``texts``: per text, the L2-normalised mean
    of ``model``'s last hidden states over all its tokens ([CLS] and [SEP] included).

    ``tokenizer`` must not pad (see :func:`minilm_tokenizer`). An empty string is valid (its
    tokens are [CLS] [SEP]). Raises :class:`BertError` for an empty list, a bare string, a
    non-string item or a padding tokenizer."""
    if isinstance(texts, str):
        raise BertError("texts must be a list of strings, not a single string; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise BertError("no texts to embed: the list is empty")
    for i, s in enumerate(texts):
        if not isinstance(s, str):
            raise BertError(f"text {i} is {s!r} ({type(s).__name__}), not a str")
    if tokenizer.padding is not None:
        raise BertError("the tokenizer pads its output, which would average [PAD] tokens in; call "
                        "its no_padding() or use minilm_tokenizer()")
    out = np.empty((len(texts), model.config.hidden), np.float32)
    for i, s in enumerate(texts):
        mean = model.forward(tokenizer.encode(s).ids).mean(axis=0)
        out[i] = mean / max(np.linalg.norm(mean), np.float32(1e-12))  # torch F.normalize's eps
    return out
