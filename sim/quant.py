"""Quantization error reports over a checkpoint's Linear layers (backs ``mixpim quant``).

For every weight matrix and format the report holds the mean squared error and the relative
Frobenius error ``||W - W_hat||_F / ||W||_F`` of the weights the hardware computes with
(:meth:`dequantize` of :mod:`mixpim.models.bitmod` / :mod:`mixpim.models.quant`), the stored bits
per weight, and for mixtures the share of groups that chose each type. "overall" pools all layers:
MSE over all weights, relative error over the concatenated weights, bits per weight as total
bits / total weights, shares over all groups.
"""

from collections.abc import Mapping

import numpy as np

from mixpim.compiler.checkpoint import linear_weights, load_tensors, tensor_index
from mixpim.models import bitmod
from mixpim.models.errors import ConfigError, RangeError, ShapeError

__all__ = ["FORMAT_NAMES", "DEFAULT_FORMATS", "parse_formats", "quant_report", "format_table"]

#: Every format name ``quant_report`` accepts.
FORMAT_NAMES = tuple(bitmod.ASYM_FORMATS) + tuple(bitmod.FORMATS)

#: The comparison ``mixpim quant`` runs when no formats are given.
DEFAULT_FORMATS = ("int4-asym", "int3-asym", "fp4", "fp3", "flint4", "bitmod4", "bitmod3")


def parse_formats(formats):
    """A tuple of format names from a comma-separated string or a sequence; :class:`ConfigError`
    naming the known formats for an unknown one."""
    if isinstance(formats, str):
        formats = [f for f in (s.strip() for s in formats.split(",")) if f]
    names = tuple(formats)
    if not names:
        raise ConfigError("no formats given; formats are " + ", ".join(FORMAT_NAMES))
    for f in names:
        if f not in FORMAT_NAMES:
            raise ConfigError(f"unknown weight format {f!r}; formats are {', '.join(FORMAT_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"formats repeat: {', '.join(names)}")
    return names


def _types_of(fmt):
    return bitmod.FORMATS.get(fmt, ())


def quant_report(checkpoint, formats, group, *, tensors=None, scale_bits=8, progress=None):
    """Quantize weight matrices to each format and measure the error.

    Arguments
    ---------
    checkpoint : path of a safetensors file (or of a directory holding ``model.safetensors``), or a
        mapping name -> 2-D array of weights already in memory
    formats : names from :data:`FORMAT_NAMES` (a sequence or a comma-separated string)
    group : 32, 64 or 128
    tensors : names of the matrices to report; default :func:`~mixpim.compiler.checkpoint.linear_weights`
    scale_bits : scale mantissa width for every format (default 8)
    progress : callable ``(index, count, name)``, called before each matrix

    Returns
    -------
    dict, JSON-serializable::

        {"checkpoint": str, "group": int, "scale_bits": int, "formats": [str],
         "num_weights": int,
         "layers": [{"name": str, "shape": [N, K],
                     "results": {fmt: {"mse", "rel_error", "bits_per_weight", "type_share"}}}],
         "overall": {fmt: {"mse", "rel_error", "bits_per_weight", "type_share"}}}

    ``type_share`` maps type name -> fraction of groups for mixtures and is ``None`` otherwise.
    """
    fmts = parse_formats(formats)
    if isinstance(checkpoint, Mapping):
        source = "<in-memory tensors>"
        names = list(tensors) if tensors is not None else linear_weights(
            {k: np.asarray(v) for k, v in checkpoint.items()}, source=source)
        missing = [n for n in names if n not in checkpoint]
        if missing:
            raise ConfigError(f"tensor {missing[0]!r} is not among the given tensors")
        arrays = {n: checkpoint[n] for n in names}
    else:
        source = str(checkpoint)
        names = list(tensors) if tensors is not None else linear_weights(tensor_index(checkpoint),
                                                                          source=source)
        arrays = load_tensors(checkpoint, names)
    if not names:
        raise ConfigError(f"no weight matrices to quantize in {source}")

    acc = {f: {"sse": 0.0, "norm2": 0.0, "n": 0, "bits": 0.0, "groups": {}} for f in fmts}
    layers = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(i, len(names), name)
        w = np.asarray(arrays[name])
        if w.ndim != 2:
            raise ShapeError(f"tensor {name!r} has shape {w.shape} in {source}; only 2-D weight "
                             f"matrices can be quantized")
        if w.dtype.kind == "f":
            bad = ~np.isfinite(w)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise RangeError(f"tensor {name!r} in {source} holds {int(bad.sum())} non-finite "
                                 f"value(s) (NaN or inf; the first at index {first}, {w[first]}); "
                                 f"only finite weights can be quantized")
        w64 = w.astype(np.float64)
        norm2 = float(np.square(w64).sum())
        results = {}
        for f in fmts:
            q = bitmod.quantize_format(w64, f, group, scale_bits=scale_bits)
            sse = float(np.square(w64 - q.dequantize()).sum())
            bpw = bitmod.bits_per_weight(f, w.shape, group, scale_bits=scale_bits)
            share = None
            if len(_types_of(f)) > 1:
                counts = q.type_counts()
                total = sum(counts.values())
                share = {t: c / total for t, c in counts.items()}
                for t, c in counts.items():
                    acc[f]["groups"][t] = acc[f]["groups"].get(t, 0) + c
            results[f] = {"mse": sse / w.size, "rel_error": _rel(sse, norm2),
                          "bits_per_weight": bpw, "type_share": share}
            a = acc[f]
            a["sse"] += sse
            a["norm2"] += norm2
            a["n"] += w.size
            a["bits"] += bpw * w.size
        layers.append({"name": name, "shape": list(w.shape), "results": results})

    overall = {}
    for f, a in acc.items():
        total = sum(a["groups"].values())
        overall[f] = {"mse": a["sse"] / a["n"], "rel_error": _rel(a["sse"], a["norm2"]),
                      "bits_per_weight": a["bits"] / a["n"],
                      "type_share": {t: c / total for t, c in a["groups"].items()} if total else None}
    return {"checkpoint": source, "group": group, "scale_bits": scale_bits, "formats": list(fmts),
            "num_weights": acc[fmts[0]]["n"], "layers": layers, "overall": overall}


def _rel(sse, norm2):
    return float(np.sqrt(sse / norm2)) if norm2 > 0 else (0.0 if sse == 0 else float("inf"))


def _share_text(share):
    if not share:
        return "—"
    return ", ".join(f"{t} {100 * s:.1f}%" for t, s in share.items())


def format_table(report, *, per_layer=False):
    """Markdown table of a :func:`quant_report`: one row per format (overall), or with
    ``per_layer`` one row per matrix with the relative error of every format."""
    fmts = report["formats"]
    if per_layer:
        lines = ["| layer | shape | " + " | ".join(fmts) + " |", "|---" * (len(fmts) + 2) + "|"]
        for layer in report["layers"]:
            cells = [f"{layer['results'][f]['rel_error']:.4f}" for f in fmts]
            lines.append(f"| {layer['name']} | {layer['shape'][0]}x{layer['shape'][1]} | "
                         + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    lines = ["| format | bits/weight | MSE | rel. error | groups per type |",
             "|---|---|---|---|---|"]
    for f in fmts:
        r = report["overall"][f]
        lines.append(f"| {f} | {r['bits_per_weight']:.4f} | {r['mse']:.4e} | {r['rel_error']:.4f} | "
                     f"{_share_text(r['type_share'])} |")
    return "\n".join(lines) + "\n"
