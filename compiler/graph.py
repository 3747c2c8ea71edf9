"""The layer graph of a transformer: the operators of each block, in execution order, with their
shapes, built from a :class:`~.model_config.ModelConfig`.

The graph is what the model compiler lowers (one operator at a time onto the tile) and what
performance reports count (MACs and bytes per operator). Tensors are named by the operator that
produces them; ``inputs`` name the tensors an operator reads (``"x"`` is the residual stream
entering block 0, ``"ids"`` the token ids).

Per block (``L{i}.`` prefix):

=========  =====================================================================================
family     operators
=========  =====================================================================================
llama      attn_norm (RMS) -> q_proj, k_proj, v_proj -> rope_q, rope_k -> attention -> o_proj
           -> attn_residual -> ffn_norm (RMS) -> gate_proj, up_proj -> glu -> down_proj
           -> ffn_residual
bert       q_proj, k_proj, v_proj -> attention -> o_proj -> attn_residual -> attn_norm (Layer)
           -> up_proj -> gelu -> down_proj -> ffn_residual -> ffn_norm (Layer)
gpt        attn_norm (Layer) -> q_proj, k_proj, v_proj -> attention -> o_proj -> attn_residual
           -> ffn_norm (Layer) -> up_proj -> gelu or relu -> down_proj -> ffn_residual
=========  =====================================================================================

Before the blocks: ``embed`` (a table lookup; BERT and GPT add learned positions, BERT its
``embed_norm``); after them: llama and gpt ``final_norm`` and ``lm_head`` (tied to the
embedding), bert ``pool`` (mean over the tokens, then L2 normalisation, as sentence-transformers
does).
"""

from dataclasses import dataclass

from .model_config import ModelConfig, ModelError

__all__ = ["OP_KINDS", "Op", "layer_graph", "linears"]

#: Operator kinds.
OP_KINDS = ("embed", "norm", "linear", "rope", "attention", "glu", "gelu", "relu", "residual",
            "lm_head", "pool")


@dataclass(frozen=True)
class Op:
    """One operator.

    Members
    -------
    name : str
        ``"L{i}.q_proj"`` in block ``i``, else the bare name (``"embed"``, ``"lm_head"``).
    kind : str
        One of :data:`OP_KINDS`.
    layer : int or None
        The block, or None outside the blocks.
    inputs : tuple of str
        Names of the tensors read.
    width : int
        Features of the output per token (``N`` of a Linear; the model width for norms and
        residual adds; the query width for attention).
    k : int
        Input features of a Linear (``K``) or the LM head; 0 for the others.
    bias : bool
        A Linear with a bias (BERT, GPT).
    rms : bool
        A norm without mean and bias (RMSNorm).
    """

    name: str
    kind: str
    layer: int | None
    inputs: tuple
    width: int
    k: int = 0
    bias: bool = False
    rms: bool = False

    def __post_init__(self):
        assert self.kind in OP_KINDS, self.kind


def _block_llama(c, i, x):
    p = f"L{i}."
    h, d = c.hidden, c.kv_width

    def op(name, kind, inputs, width, **kw):
        return Op(p + name, kind, i, tuple(p + s if s != x else s for s in inputs), width, **kw)

    return [
        op("attn_norm", "norm", (x,), h, rms=True),
        op("q_proj", "linear", ("attn_norm",), h, k=h),
        op("k_proj", "linear", ("attn_norm",), d, k=h),
        op("v_proj", "linear", ("attn_norm",), d, k=h),
        op("rope_q", "rope", ("q_proj",), h),
        op("rope_k", "rope", ("k_proj",), d),
        op("attention", "attention", ("rope_q", "rope_k", "v_proj"), h),
        op("o_proj", "linear", ("attention",), h, k=h),
        op("attn_residual", "residual", (x, "o_proj"), h),
        op("ffn_norm", "norm", ("attn_residual",), h, rms=True),
        op("gate_proj", "linear", ("ffn_norm",), c.ffn, k=h),
        op("up_proj", "linear", ("ffn_norm",), c.ffn, k=h),
        op("glu", "glu", ("gate_proj", "up_proj"), c.ffn),
        op("down_proj", "linear", ("glu",), h, k=c.ffn),
        op("ffn_residual", "residual", ("attn_residual", "down_proj"), h),
    ], p + "ffn_residual"


def _block_bert(c, i, x):
    p = f"L{i}."
    h = c.hidden

    def op(name, kind, inputs, width, **kw):
        return Op(p + name, kind, i, tuple(p + s if s != x else s for s in inputs), width, **kw)

    return [
        op("q_proj", "linear", (x,), h, k=h, bias=True),
        op("k_proj", "linear", (x,), h, k=h, bias=True),
        op("v_proj", "linear", (x,), h, k=h, bias=True),
        op("attention", "attention", ("q_proj", "k_proj", "v_proj"), h),
        op("o_proj", "linear", ("attention",), h, k=h, bias=True),
        op("attn_residual", "residual", (x, "o_proj"), h),
        op("attn_norm", "norm", ("attn_residual",), h),
        op("up_proj", "linear", ("attn_norm",), c.ffn, k=h, bias=True),
        op("gelu", "gelu", ("up_proj",), c.ffn),
        op("down_proj", "linear", ("gelu",), h, k=c.ffn, bias=True),
        op("ffn_residual", "residual", ("attn_norm", "down_proj"), h),
        op("ffn_norm", "norm", ("ffn_residual",), h),
    ], p + "ffn_norm"


def _block_gpt(c, i, x):
    p = f"L{i}."
    h = c.hidden

    def op(name, kind, inputs, width, **kw):
        return Op(p + name, kind, i, tuple(p + s if s != x else s for s in inputs), width, **kw)

    act = "relu" if c.act == "relu" else "gelu"
    return [
        op("attn_norm", "norm", (x,), h),
        op("q_proj", "linear", ("attn_norm",), h, k=h, bias=True),
        op("k_proj", "linear", ("attn_norm",), h, k=h, bias=True),
        op("v_proj", "linear", ("attn_norm",), h, k=h, bias=True),
        op("attention", "attention", ("q_proj", "k_proj", "v_proj"), h),
        op("o_proj", "linear", ("attention",), h, k=h, bias=True),
        op("attn_residual", "residual", (x, "o_proj"), h),
        op("ffn_norm", "norm", ("attn_residual",), h),
        op("up_proj", "linear", ("ffn_norm",), c.ffn, k=h, bias=True),
        op(act, act, ("up_proj",), c.ffn),
        op("down_proj", "linear", (act,), h, k=c.ffn, bias=True),
        op("ffn_residual", "residual", ("attn_residual", "down_proj"), h),
    ], p + "ffn_residual"


_BLOCKS = {"bert": _block_bert, "llama": _block_llama, "gpt": _block_gpt}


def layer_graph(config, *, layers=None):
    """The operators of ``config`` (a :class:`ModelConfig`) in execution order (a tuple of
    :class:`Op`): the embedding, ``layers`` blocks (default all), then the head.

    Raises
    ------
    ModelError
        If ``layers`` is not in 1..config.layers.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, not {type(config).__name__}")
    n = config.layers if layers is None else layers
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= config.layers:
        raise ModelError(f"layers must be an integer in 1..{config.layers}, not {layers!r}")
    h = config.hidden
    bert = config.family == "bert"
    ops = [Op("embed", "embed", None, ("ids",), h)]
    x = "embed"
    if bert:
        ops.append(Op("embed_norm", "norm", None, ("embed",), h))
        x = "embed_norm"
    block = _BLOCKS[config.family]
    for i in range(n):
        more, x = block(config, i, x)
        ops += more
    if bert:
        ops.append(Op("pool", "pool", None, (x,), h))
    else:
        ops += [Op("final_norm", "norm", None, (x,), h, rms=config.family == "llama"),
                Op("lm_head", "lm_head", None, ("final_norm",), config.vocab, k=h)]
    return tuple(ops)


def linears(graph):
    """The operators of ``graph`` that multiply by a weight matrix (Linear layers and the LM
    head)."""
    return tuple(op for op in graph if op.kind in ("linear", "lm_head"))
