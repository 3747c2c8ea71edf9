"""Design-space sweeps (``mixpim sweep SPEC -o DIR``): a grid of tile configurations, models and
workloads, each point a performance report (:func:`~.perf.analyze`), run on a local process pool
or on a Ray cluster; a table of all points and a Pareto plot of throughput against silicon cost.

A SPEC is a JSON or TOML document::

    models = ["llama2-7b", "gpt3-7b"]   # presets or config.json paths
    base = "neupims"                    # the tile preset (or file) the hw values change
    mode = "decode"                     # or "prefill" (then prompt_len = [...])
    batch = [64, 256]                   # decode
    ctx = [512]                         # decode: cached tokens per request (or trace = "sharegpt")
    system = ["plain", "interleaved"]   # decode schedules (or "npu": attention on the array)
    clock_mhz = 1000                    # optional: tokens/s

    [hw]                                # TileConfig fields, each a list of values
    array = [64, 128]                   # rows = cols
    pim_lanes = [8, 16]
    pim_mode = ["single", "dual"]

A scalar stands for a one-value list. **Cost** of a point: its array's MACs times the LUTs,
flip-flops and DSP blocks per MAC of its PE kind, from a synthesis of one PE of that kind with
the kit's own flow (Yosys ``synth_ecp5``, :func:`~.synth.synthesize`; once per kind and sweep).
"""

import csv
import io
import itertools
import json
import tomllib
from dataclasses import dataclass

from ..models.config import ConfigError, TileConfig
from ..models.errors import MixpimError
from .perf import SYSTEMS, Workload, analyze
from .scaleout import map_tasks

__all__ = ["SweepError", "Point", "load_spec", "expand", "pe_costs", "run_points", "MAX_POINTS",
           "table_csv", "pareto", "pareto_png"]

#: Most points a sweep may hold.
MAX_POINTS = 4096
_KEYS = {"models", "base", "mode", "batch", "ctx", "trace", "prompt_len", "system", "clock_mhz", "hw"}


class SweepError(MixpimError, ValueError):
    """A sweep specification or run is wrong (the message says what)."""


@dataclass(frozen=True)
class Point:
    """One point: ``index``, the ``model`` name, the ``hw`` values changed (a tuple of ``(field,
    value)``), the tile ``config``, the ``workload``, the ``system`` and ``clock_mhz``."""

    index: int
    model: str
    hw: tuple
    config: TileConfig
    workload: Workload
    system: str
    clock_mhz: object


def load_spec(text, fmt):
    """The spec dict of ``text`` (``fmt`` ``"json"`` or ``"toml"``)."""
    try:
        spec = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise SweepError(f"the sweep spec is not valid {fmt.upper()}: {e}") from None
    if not isinstance(spec, dict):
        raise SweepError("the sweep spec must be a table of keys")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SweepError(f"unknown sweep keys {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    return spec


def _values(spec, key, default=None, kind=None):
    v = spec.get(key, default)
    vals = list(v) if isinstance(v, list) else [v]
    if kind is not None and any(isinstance(x, bool) or not isinstance(x, kind) for x in vals):
        raise SweepError(f"{key} must be {'integers' if kind is int else kind.__name__}, not {v!r}")
    if not vals:
        raise SweepError(f"{key} is an empty list")
    return vals


def expand(spec):
    """The :class:`Point` s of a spec, in grid order."""
    from ..compiler.model_zoo import model_config
    from .workload import DEFAULT_TRACE, load_trace
    if "models" not in spec:
        raise SweepError("the sweep spec needs models = [...]")
    base = TileConfig.load(spec.get("base", "neupims"))
    mode = spec.get("mode", "decode")
    if mode not in ("decode", "prefill"):
        raise SweepError(f"mode must be decode or prefill, not {mode!r}")
    hw = spec.get("hw", {})
    if not isinstance(hw, dict):
        raise SweepError("hw must be a table of TileConfig fields")
    fields = set(TileConfig.__dataclass_fields__) | {"array"}
    bad = sorted(set(hw) - fields)
    if bad:
        raise SweepError(f"hw has no field {', '.join(bad)}")
    hw_grid = [tuple(zip(hw, combo)) for combo in itertools.product(*(_values(hw, k) for k in hw))]
    if mode == "prefill":
        for k in ("batch", "ctx", "trace"):
            if k in spec:
                raise SweepError(f"{k} applies to mode decode, not prefill")
        loads = [Workload("prefill", (p,)) for p in _values(spec, "prompt_len", kind=int)]
        systems = _values(spec, "system", "plain")
    else:
        if "prompt_len" in spec:
            raise SweepError("prompt_len applies to mode prefill, not decode")
        if ("ctx" in spec) == ("trace" in spec):
            raise SweepError("mode decode needs ctx = [...] or trace = FILE (one of them)")
        batches = _values(spec, "batch", 1, kind=int)
        if "ctx" in spec:
            loads = [Workload("decode", (c,) * b) for b in batches for c in _values(spec, "ctx", kind=int)]
        else:
            trace = load_trace(DEFAULT_TRACE if spec["trace"] == "sharegpt" else spec["trace"])
            if max(batches) > len(trace):
                raise SweepError(f"batch {max(batches)} exceeds the trace's {len(trace)} requests")
            loads = [Workload("decode", tuple(n - 1 for n in trace[:b])) for b in batches]
        systems = _values(spec, "system", "plain")
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SweepError(f"system must be one of {', '.join(SYSTEMS)}, not {bad[0]!r}")
    clocks = _values(spec, "clock_mhz", None)
    models = [(m, model_config(m)) for m in _values(spec, "models", kind=str)]
    n = len(models) * len(hw_grid) * len(loads) * len(systems) * len(clocks)
    if n > MAX_POINTS:
        raise SweepError(f"the sweep has {n} points; at most {MAX_POINTS}")
    points = []
    for (name, mc), combo, wl, system, clock in itertools.product(models, hw_grid, loads, systems, clocks):
        changes = {}
        for k, v in combo:
            changes.update({"rows": v, "cols": v} if k == "array" else {k: v})
        try:
            cfg = base.replace(**changes)
        except (ConfigError, TypeError) as e:
            raise SweepError(f"hw {dict(combo)}: {e}") from None
        points.append(Point(len(points), name, combo, cfg, wl, system, clock))
    return points, {name: mc for name, mc in models}


def pe_costs(kinds):
    """``{pe kind: {"luts", "ffs", "dsps"} per MAC}``: one PE of each kind synthesized for ECP5."""
    from .designs import make_design
    from .synth import synthesize
    out = {}
    for kind in sorted(set(kinds)):
        family, act = kind.split("-")[0], "fp16" if kind.endswith("a16") else "int8"
        d = make_design(f"{family}-pe", wbits=4, act=act, group=128)
        rep = synthesize(d.component(), d.top, target="ecp5")
        out[kind] = {"luts": rep.luts, "ffs": rep.ffs, "dsps": rep.dsp_cells}
    return out


def _run_point(point, model):
    """A point's report row and its report (JSON-able), or its error."""
    from .perf_report import report_dict
    try:
        r = analyze(model, point.config, point.workload, system=point.system)
    except MixpimError as e:
        return {"error": str(e)}, None
    rep = report_dict(r, hw=json.dumps(dict(point.hw)), clock_mhz=point.clock_mhz)
    return {"cycles": r.cycles}, rep


def run_points(points, models, *, jobs=None, ray_address=None, done=None):
    """``[(row, report)]`` of every point (:func:`~.scaleout.map_tasks`: local processes or Ray)."""
    return map_tasks(_run_point, [(p, models[p.model]) for p in points], jobs=jobs,
                     ray_address=ray_address, done=done)


def row_of(point, result, costs):
    """The table row of ``point`` with its result row (module doc: cost)."""
    cfg, wl = point.config, point.workload
    c = costs[cfg.pe]
    macs = cfg.rows * cfg.cols
    row = {"point": point.index, "model": point.model, **{k: v for k, v in point.hw}, "pe": cfg.pe,
           "array": f"{cfg.rows}x{cfg.cols}", "mode": wl.mode, "batch": wl.batch,
           "mean_len": round(sum(wl.lengths) / wl.batch, 1), "system": point.system,
           "clock_mhz": point.clock_mhz, "luts": macs * c["luts"], "ffs": macs * c["ffs"],
           "dsps": macs * c["dsps"], "cycles": result.get("cycles"), "error": result.get("error", "")}
    tokens = wl.batch if wl.mode == "decode" else wl.lengths[0]
    row["tokens_per_kcycle"] = round(1000 * tokens / row["cycles"], 6) if row["cycles"] else None
    row["tokens_per_s"] = (round(tokens / (row["cycles"] / (point.clock_mhz * 1e6)), 2)
                           if row["cycles"] and point.clock_mhz else None)
    return row


def table_csv(rows):
    """The rows as CSV text (columns: the union of the rows' keys, in first-seen order)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def pareto(rows):
    """Indices of the rows no other row beats in both throughput and LUTs (per model and
    workload: points are compared with their own kind)."""
    ok = [r for r in rows if r["cycles"]]
    front = []
    for r in ok:
        peers = [q for q in ok if (q["model"], q["mode"], q["batch"]) == (r["model"], r["mode"], r["batch"])]
        if not any(q["tokens_per_kcycle"] >= r["tokens_per_kcycle"] and q["luts"] <= r["luts"] and
                   (q["tokens_per_kcycle"], q["luts"]) != (r["tokens_per_kcycle"], r["luts"]) for q in peers):
            front.append(r["point"])
    return front


def pareto_png(rows):
    """PNG bytes: throughput against LUTs, the Pareto points joined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    front = set(pareto(rows))
    groups = {}
    for r in rows:
        if r["cycles"]:
            groups.setdefault(f"{r['model']} {r['mode']} b{r['batch']}", []).append(r)
    for i, (label, rs) in enumerate(groups.items()):
        ax.scatter([r["luts"] for r in rs], [r["tokens_per_kcycle"] for r in rs], color=f"C{i}", label=label)
        f = sorted((r for r in rs if r["point"] in front), key=lambda r: r["luts"])
        ax.plot([r["luts"] for r in f], [r["tokens_per_kcycle"] for r in f], color=f"C{i}")
    ax.set(xscale="log", xlabel="array LUTs (ECP5 synthesis of the PE kind x MACs)",
           ylabel="tokens per 1,000 cycles", title="Sweep: throughput vs silicon cost (Pareto front joined)")
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()
