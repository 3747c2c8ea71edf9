"""What a transformer is: the one description the layer graph, the float references and the
compiler read.

:class:`ModelConfig` is built from a Hugging Face ``config.json`` (:meth:`ModelConfig.from_hf`;
BERT and LLaMA families) or from the metadata of a GGUF file (:meth:`ModelConfig.from_gguf`;
``llama`` architecture). The family fixes the block's structure:

| family | norm | placement | position | FFN | biases |
|---|---|---|---|---|---|
| ``bert`` | LayerNorm | after each residual add (post-norm) | learned, + token type 0 | GELU | yes |
| ``llama`` | RMSNorm | before attention and FFN (pre-norm), and after the last block | RoPE | SwiGLU | no |
| ``gpt`` | LayerNorm | before attention and FFN (pre-norm), and after the last block | learned | ``act`` | yes |

``gpt`` covers GPT-2 / GPT-3 (``model_type`` ``gpt2``; ``act`` ``gelu_new``, the tanh GELU) and
OPT (``model_type`` ``opt``; ``act`` ``relu``); their LM heads are tied to the token embedding.

Every problem raises :class:`ModelError` naming the field.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from mixpim.models.errors import MixpimError, parse_problem

__all__ = ["ModelError", "ModelConfig", "FAMILIES", "ACTIVATIONS"]

#: Model families and their block structure (see the module docstring).
FAMILIES = ("bert", "llama", "gpt")
#: The FFN activation of each family (``gpt``: one of these, from the config).
ACTIVATIONS = {"bert": ("gelu",), "llama": ("silu",), "gpt": ("gelu", "gelu_new", "relu")}


class ModelError(MixpimError, ValueError):
    """A model description is malformed or describes something the kit does not support."""


@dataclass(frozen=True)
class ModelConfig:
    """A transformer's shape and structure.

    Members
    -------
    family : str
        One of :data:`FAMILIES`.
    layers, hidden, heads, kv_heads, ffn, vocab, max_positions : int
        Blocks; model width; attention heads (queries) and key/value heads (``heads`` a multiple
        of ``kv_heads``: grouped-query attention); FFN width; vocabulary; longest sequence.
    norm_eps : float
        The norms' epsilon.
    rope_base : float
        RoPE frequency base (``llama``; 0 otherwise). RoPE turns pairs ``(i, i + head_dim/2)``
        of each head (the "neox" / Hugging Face order).
    act : str
        The FFN activation, one of :data:`ACTIVATIONS` of the family ("": the family's only one).
    """

    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_positions: int
    norm_eps: float
    rope_base: float = 0.0
    act: str = ""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ModelError(f"model family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        acts = ACTIVATIONS[self.family]
        if self.act == "" and len(acts) == 1:
            object.__setattr__(self, "act", acts[0])
        if self.act not in acts:
            raise ModelError(f"a {self.family} model's activation must be one of {', '.join(acts)}, "
                             f"not {self.act!r}")
        for name in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "max_positions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1 << 20:
                raise ModelError(f"model {name} must be an integer in 1..{1 << 20}, not {v!r}")
        if self.hidden % self.heads:
            raise ModelError(f"hidden size {self.hidden} is not a multiple of the {self.heads} heads")
        if self.heads % self.kv_heads:
            raise ModelError(f"{self.heads} heads are not a multiple of the {self.kv_heads} key/value heads")
        if self.family == "llama" and self.head_dim % 2:
            raise ModelError(f"head dimension {self.head_dim} must be even (RoPE turns pairs)")
        if not (isinstance(self.norm_eps, float) and 0 < self.norm_eps < 1):
            raise ModelError(f"norm epsilon must be a number in (0, 1), not {self.norm_eps!r}")
        want_rope = self.family == "llama"
        if want_rope and not (isinstance(self.rope_base, float) and self.rope_base > 1):
            raise ModelError(f"the RoPE base must be a number above 1, not {self.rope_base!r}")
        if not want_rope and self.rope_base:
            raise ModelError(f"a {self.family} model has no RoPE base")

    @property
    def head_dim(self):
        return self.hidden // self.heads

    @property
    def kv_width(self):
        """Width of the K and V projections: ``kv_heads * head_dim``."""
        return self.kv_heads * self.head_dim

    @property
    def gated(self):
        """The FFN is gated (SwiGLU: ``down(silu(gate(x)) * up(x))``)."""
        return self.family == "llama"

    @property
    def pre_norm(self):
        return self.family != "bert"

    @classmethod
    def from_hf(cls, source):
        """From a Hugging Face ``config.json``: a path (file, or a folder holding one) or a dict."""
        if isinstance(source, dict):
            d, where = source, "config"
        else:
            p = Path(source)
            p = p / "config.json" if p.is_dir() else p
            where = str(p)
            try:
                d = json.loads(p.read_text())
            except OSError as e:
                raise ModelError(f"cannot read model config {where!r}: {e.strerror or e}") from None
            except (ValueError, RecursionError) as e:
                raise ModelError(f"model config {where!r} is not valid JSON: {parse_problem(e)}") from None
        if not isinstance(d, dict):
            raise ModelError(f"model config {where!r} must be a JSON object")
        kind = d.get("model_type")

        def get(key, default=None):
            if key in d:
                return d[key]
            if default is None:
                raise ModelError(f"model config {where!r} has no {key!r}")
            return default

        if kind == "bert":
            # "gelu" is the exact (erf) GELU; "gelu_new" is the tanh approximation, not built
            if get("hidden_act") != "gelu":
                raise ModelError(f"model config {where!r}: BERT with activation {d['hidden_act']!r} is not "
                                 f"supported (only the exact 'gelu')")
            if get("position_embedding_type", "absolute") != "absolute":
                raise ModelError(f"model config {where!r}: position_embedding_type "
                                 f"{d['position_embedding_type']!r} is not supported (only 'absolute')")
            heads = get("num_attention_heads")
            return cls("bert", get("num_hidden_layers"), get("hidden_size"), heads, heads,
                       get("intermediate_size"), get("vocab_size"), get("max_position_embeddings"),
                       _float(get("layer_norm_eps"), "layer_norm_eps"))
        if kind == "llama":
            if get("hidden_act", "silu") != "silu":
                raise ModelError(f"model config {where!r}: LLaMA with activation {d['hidden_act']!r} is not supported")
            heads = get("num_attention_heads")
            if d.get("rope_scaling") is not None:
                raise ModelError(f"model config {where!r}: rope_scaling is not supported")
            if d.get("attention_bias") or d.get("mlp_bias"):
                raise ModelError(f"model config {where!r}: biases in attention or MLP are not supported")
            if "head_dim" in d and d["head_dim"] * heads != get("hidden_size"):
                raise ModelError(f"model config {where!r}: head_dim {d['head_dim']} is not "
                                 f"hidden_size / num_attention_heads")
            return cls("llama", get("num_hidden_layers"), get("hidden_size"), heads,
                       get("num_key_value_heads", heads), get("intermediate_size"), get("vocab_size"),
                       get("max_position_embeddings"), _float(get("rms_norm_eps"), "rms_norm_eps"),
                       _float(get("rope_theta", 10000.0), "rope_theta"))
        if kind == "opt":
            if not get("do_layer_norm_before", True):
                raise ModelError(f"model config {where!r}: OPT with the norm after the blocks "
                                 f"(do_layer_norm_before false) is not supported")
            if get("word_embed_proj_dim", get("hidden_size")) != get("hidden_size"):
                raise ModelError(f"model config {where!r}: OPT with an embedding projection "
                                 f"(word_embed_proj_dim != hidden_size) is not supported")
            if not get("enable_bias", True):
                raise ModelError(f"model config {where!r}: OPT without biases is not supported")
            heads = get("num_attention_heads")
            return cls("gpt", get("num_hidden_layers"), get("hidden_size"), heads, heads, get("ffn_dim"),
                       get("vocab_size"), get("max_position_embeddings"), 1e-5, 0.0,
                       _act(get("activation_function"), where))
        if kind == "gpt2":
            h, heads = get("n_embd"), get("n_head")
            inner = d.get("n_inner")
            return cls("gpt", get("n_layer"), h, heads, heads, 4 * h if inner is None else inner,
                       get("vocab_size"), get("n_positions"),
                       _float(get("layer_norm_epsilon"), "layer_norm_epsilon"), 0.0,
                       _act(get("activation_function"), where))
        raise ModelError(f"model config {where!r}: model_type {kind!r} is not supported "
                         f"(supported: bert, llama, opt, gpt2)")

    @classmethod
    def from_gguf(cls, metadata):
        """From GGUF metadata: a dict of key -> value (``general.architecture`` ``llama``)."""
        arch = metadata.get("general.architecture")
        if arch != "llama":
            raise ModelError(f"GGUF architecture {arch!r} is not supported (supported: llama)")

        def get(key):
            try:
                return metadata[f"llama.{key}"]
            except KeyError:
                raise ModelError(f"GGUF metadata has no 'llama.{key}'") from None

        heads = get("attention.head_count")
        cfg = cls("llama", get("block_count"), get("embedding_length"), heads,
                  metadata.get("llama.attention.head_count_kv", heads), get("feed_forward_length"),
                  get("vocab_size"), get("context_length"),
                  _float(get("attention.layer_norm_rms_epsilon"), "layer_norm_rms_epsilon"),
                  _float(metadata.get("llama.rope.freq_base", 10000.0), "rope.freq_base"))
        if any(k.startswith("llama.rope.scaling.") for k in metadata):
            raise ModelError("GGUF RoPE scaling (llama.rope.scaling.*) is not supported")
        rope_dim = metadata.get("llama.rope.dimension_count", cfg.head_dim)
        if rope_dim != cfg.head_dim:
            raise ModelError(f"partial RoPE (dimension {rope_dim} of head dimension {cfg.head_dim}) "
                             f"is not supported")
        return cfg


def _act(v, where):
    if v not in ACTIVATIONS["gpt"]:
        raise ModelError(f"model config {where!r}: activation {v!r} is not supported (supported: "
                         f"{', '.join(ACTIVATIONS['gpt'])})")
    return v


def _float(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ModelError(f"model {name} must be a number, not {v!r}")
    return float(v)
