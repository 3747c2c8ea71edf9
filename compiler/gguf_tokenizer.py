"""The tokenizer stored in a GGUF file, as a Hugging Face ``tokenizers.Tokenizer``.

A ``gpt2``-model GGUF tokenizer is byte-level BPE: ``tokenizer.ggml.tokens`` is the vocabulary (id =
position), ``tokenizer.ggml.merges`` the merge list (``"a b"``, by priority). The pre-tokenizer is
named by ``tokenizer.ggml.pre``:

* ``smollm`` (SmolLM / SmolLM2): llama.cpp splits with ``\\p{N}`` (every digit alone) and then with
  the GPT-2 regex; the model's Hugging Face ``tokenizer.json`` says the same as
  ``Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]``,
  which is what is built here.
* ``gpt2`` (and ``default``): ``ByteLevel(add_prefix_space=False)`` alone.

Control tokens (``tokenizer.ggml.token_type`` 3, e.g. ``<|im_start|>``, ``<|endoftext|>``) become
special tokens: matched whole in the input, skipped by ``decode(..., skip_special_tokens=True)``.
No BOS is added (there is no post-processor); SmolLM2's metadata says ``add_bos_token`` false.

Problems raise :class:`CheckpointError` naming the file and the metadata key.
"""

from mixpim.compiler.checkpoint import CheckpointError
from mixpim.compiler.gguf_checkpoint import GgufFile

__all__ = ["gguf_tokenizer", "PRE_TOKENIZERS"]

#: Supported values of ``tokenizer.ggml.pre``.
PRE_TOKENIZERS = ("smollm", "gpt2", "default")
_CONTROL = 3  # llama.cpp token type of control tokens


def _pre_tokenizer(pre):
    from tokenizers import pre_tokenizers as pt

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    return byte_level


def gguf_tokenizer(gguf_file):
    """The tokenizer of ``gguf_file`` (a :class:`GgufFile` or a path) as a ``tokenizers.Tokenizer``.

    Raises :class:`CheckpointError` if the tokenizer metadata is missing, inconsistent, or of a
    kind not supported (model other than ``gpt2``, pre-tokenizer not in :data:`PRE_TOKENIZERS`).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models

    g = gguf_file if isinstance(gguf_file, GgufFile) else GgufFile(gguf_file)
    meta, where = g.metadata, str(g.path)

    def get(key, default=None):
        if key in meta:
            return meta[key]
        if default is None:
            raise CheckpointError(f"GGUF file {where!r} has no tokenizer metadata {key!r}")
        return default

    model = get("tokenizer.ggml.model")
    if model != "gpt2":
        raise CheckpointError(f"GGUF file {where!r}: tokenizer model {model!r} is not supported "
                              f"(supported: gpt2, byte-level BPE)")
    pre = get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise CheckpointError(f"GGUF file {where!r}: pre-tokenizer {pre!r} is not supported "
                              f"(supported: {', '.join(PRE_TOKENIZERS)})")
    tokens = get("tokenizer.ggml.tokens")
    types = get("tokenizer.ggml.token_type", [1] * len(tokens))
    if len(types) != len(tokens):
        raise CheckpointError(f"GGUF file {where!r}: {len(types)} token types for {len(tokens)} tokens")
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    if len(vocab) != len(tokens):
        raise CheckpointError(f"GGUF file {where!r}: tokenizer.ggml.tokens repeats "
                              f"{len(tokens) - len(vocab)} tokens")
    merges = []
    for i, m in enumerate(get("tokenizer.ggml.merges")):
        pair = m.split(" ")
        if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab:
            raise CheckpointError(f"GGUF file {where!r}: merge {i} {m!r} is not two known tokens "
                                  f"separated by one space")
        merges.append((pair[0], pair[1]))

    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == _CONTROL])
    return tok
