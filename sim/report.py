"""Reports of tile runs: ``report.md``, ``result.json`` and a per-unit cycle chart ``cycles.png``.

Used by ``mixpim demo`` and meant for ``mixpim run``. The input is a JSON-able result dict; every
section except ``status`` is optional::

    {
      "title": str,
      "summary": [str, ...],                     # bullet lines, markdown
      "status": {"cycles": int, "busy": {"DMA": int, "GEMM": int, "VEC": int, "PIM": int},
                 "dispatched": int, "error": str, "error_pc": int},   # see unit_status()
      "races": int,
      "workload": {name: value, ...},            # rendered as a table
      "accuracy": {name: value, ...},            # rendered as a table
      "rtl": {"bit_exact": bool, "cycle_exact": bool, "status": {...}},
      "files": {name: path, ...},
    }

The chart needs no display: it is drawn on a matplotlib :class:`~matplotlib.figure.Figure` with
the Agg canvas, so importing this module never changes pyplot's global backend.
"""

import io
import json
import os
from pathlib import Path

import numpy as np

from ..models.errors import MixpimError
from ..models.isa import ErrorCode, Unit
from .outputs import atomic_write, check_output_dir, write_files

__all__ = ["ReportError", "unit_status", "unit_timeline", "plot_unit_cycles", "render_markdown",
           "write_report"]

UNITS = tuple(u.name for u in Unit)  # DMA, GEMM, VEC, PIM: the order of ``busy``
_COLORS = {"DMA": "tab:blue", "GEMM": "tab:orange", "VEC": "tab:green", "PIM": "tab:purple"}


class ReportError(MixpimError, ValueError):
    """A result dict is missing what a report needs."""


def unit_status(status):
    """The status registers as a JSON-able dict.

    ``status`` is a golden :class:`~mixpim.models.executor.Status` (or ``TimingResult``), or a
    dict with ``cycles``, ``busy`` (a sequence in :class:`~mixpim.models.isa.Unit` order, or a
    dict by unit name), ``dispatched``, ``error`` and ``error_pc`` (the RTL's ``rtl_status``).
    Returns ``{"cycles", "busy": {unit name: cycles}, "dispatched", "error" (name), "error_pc"}``.
    """
    get = status.get if isinstance(status, dict) else lambda k, d=None: getattr(status, k, d)
    cycles, busy = get("cycles"), get("busy")
    if cycles is None or busy is None:
        raise ReportError(f"a status needs cycles and busy, not {status!r}")
    if not isinstance(busy, dict):
        busy = dict(zip(UNITS, busy))
    error = get("error", 0)
    if not isinstance(error, str):
        error = ErrorCode(error).name if error in set(ErrorCode) else str(error)
    return {"cycles": int(cycles), "busy": {u: int(busy.get(u, 0)) for u in UNITS},
            "dispatched": int(get("dispatched", 0) or 0), "error": error,
            "error_pc": int(get("error_pc", 0) or 0)}


def unit_timeline(timing):
    """Per unit the busy intervals ``[(start, length), ...]`` of a golden
    :class:`~mixpim.models.tile_timing.TimingResult` (GEMM: beats; its drain overlaps)."""
    out = {u: [] for u in UNITS}
    for pc in timing.executed:
        unit = timing.instructions[pc].unit
        s, e = int(timing.start[pc]), int(timing.end[pc])
        out[Unit(unit).name].append((s, e - s + 1))
    return out


def plot_unit_cycles(path, runs, *, timeline=None, title=None):
    """Write a PNG: busy cycles per unit against the total, one bar group per run.

    Arguments
    ---------
    path : str or Path
    runs : dict
        ``{label: status}`` (``status`` as :func:`unit_status` accepts), e.g. golden and RTL.
    timeline : dict, optional
        ``{unit name: [(start, length), ...]}`` (:func:`unit_timeline`): adds a lower panel
        showing when each unit was busy.
    title : str, optional

    Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise ReportError("plot_unit_cycles needs at least one run")
    runs = {label: unit_status(s) for label, s in runs.items()}
    units = [u for u in UNITS if any(r["busy"][u] for r in runs.values())]
    rows = ["total"] + units
    fig = Figure(figsize=(8, 5.5 if timeline else 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if timeline else 1, 1, squeeze=False)[:, 0]
    ax = axes[0]
    height = 0.8 / len(runs)
    y = np.arange(len(rows))
    for i, (label, st) in enumerate(runs.items()):
        values = [st["cycles"]] + [st["busy"][u] for u in units]
        bars = ax.barh(y + i * height - 0.4 + height / 2, values, height,
                       color=["0.6"] + [_COLORS[u] for u in units],
                       alpha=1.0 - 0.7 * i / max(len(runs) - 1, 2),  # 1.0 .. 0.3, any number of runs
                       edgecolor="black", linewidth=0.5, label=label)
        for bar, v in zip(bars, values):
            share = f" ({v / st['cycles']:.0%})" if st["cycles"] and bar is not bars[0] else ""
            ax.annotate(f"{v:,}{share}" + (f"  {label}" if len(runs) > 1 else ""),
                        (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, rows)
    ax.invert_yaxis()
    ax.set_xlabel("cycles")
    top = max(r["cycles"] for r in runs.values())
    ax.set_xlim(0, top * 1.35 or 1)
    ax.set_title(title or "busy cycles per unit")
    if timeline:
        tl = axes[1]
        names = [u for u in UNITS if timeline.get(u)]
        for k, u in enumerate(names):
            tl.broken_barh(timeline[u], (k - 0.4, 0.8), facecolors=_COLORS[u], linewidth=0)
        tl.set_yticks(range(len(names)), names)
        tl.invert_yaxis()
        tl.set_xlim(0, top or 1)
        tl.set_xlabel("cycle")
        tl.set_title("when each unit is busy (golden cycle model)")
    if isinstance(path, (str, os.PathLike)):
        atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"), what="chart")
        return Path(path)
    fig.savefig(path, dpi=110, format="png")  # a binary file object
    return path


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(d):
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in d.items()]
    return lines


def render_markdown(result):
    """The markdown report of a result dict (module doc)."""
    if "status" not in result:
        raise ReportError("a result needs a status")
    st = unit_status(result["status"])
    out = [f"# {result.get('title', 'mixpim run')}", ""]
    out += [f"- {line}" for line in result.get("summary", ())]
    if result.get("summary"):
        out.append("")
    if result.get("workload"):
        out += ["## Workload", ""] + _table(result["workload"]) + [""]
    if result.get("accuracy"):
        out += ["## Accuracy", ""] + _table(result["accuracy"]) + [""]
    where = f" at pc {st['error_pc']}" if st["error"] != "OK" else ""
    races = f", {result['races']} races" if "races" in result else ""
    out += ["## Cycles", "",
            f"Status {st['error']}{where}, {st['dispatched']:,} instructions dispatched{races}.", ""]
    rtl = result.get("rtl")
    rst = unit_status(rtl["status"]) if rtl and rtl.get("status") else None
    head = "| | golden |" + (" RTL |" if rst else "")
    out += [head, "|---|---|" + ("---|" if rst else ""),
            f"| total | {st['cycles']:,} |" + (f" {rst['cycles']:,} |" if rst else "")]
    for u in UNITS:
        if st["busy"][u] or (rst and rst["busy"][u]):
            share = st["busy"][u] / st["cycles"] if st["cycles"] else 0
            row = f"| {u} busy | {st['busy'][u]:,} ({share:.1%}) |"
            if rst:
                row += f" {rst['busy'][u]:,} |"
            out.append(row)
    out.append("")
    if rtl:
        out += ["## RTL", "", f"- outputs bit-exact (RTL vs golden): {_fmt(bool(rtl.get('bit_exact')))}",
                f"- cycles exact (RTL vs golden): {_fmt(bool(rtl.get('cycle_exact')))}", ""]
    if result.get("files"):
        out += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in result["files"].items()] + [""]
    return "\n".join(out)


def write_report(result, out_dir, *, timeline=None, files=None, say=None):
    """Write ``report.md``, ``result.json`` and ``cycles.png`` of ``result`` into ``out_dir``.

    ``timeline`` (:func:`unit_timeline`) adds the busy-over-time panel to the chart. ``files``
    (relative name -> bytes or text) are written in the same batch. Every file is written
    atomically and the batch only once all of it is ready (:func:`mixpim.sim.outputs.write_files`),
    so a failure leaves ``out_dir`` as it was; ``say`` gets one line naming the files replaced.
    Returns the three paths ``{"report", "json", "plot"}``; ``result["files"]`` gains them
    (relative names).
    """
    out = check_output_dir(out_dir)
    result.setdefault("files", {}).update({"report": "report.md", "result": "result.json",
                                           "cycles chart": "cycles.png"})
    runs = {"golden": result["status"]} if "status" in result else {}
    if result.get("rtl") and result["rtl"].get("status"):
        runs["RTL"] = result["rtl"]["status"]
    png = io.BytesIO()
    plot_unit_cycles(png, runs, timeline=timeline, title=result.get("title"))
    text = render_markdown(result)
    contents = {"report.md": text + "\n![busy cycles per unit](cycles.png)\n",
                "result.json": json.dumps(result, indent=2, default=_json_default) + "\n",
                "cycles.png": png.getvalue(), **(files or {})}
    write_files(out, contents, say=say)
    return {"report": out / "report.md", "json": out / "result.json", "plot": out / "cycles.png"}


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON serializable")
