"""Performance reports rendered: ``report.json`` (:func:`report_dict`), ``report.md``
(:func:`render_markdown`) and the plots ``roofline.png``, ``breakdown.png``, ``timeline.png`` and,
comparing systems, ``compare.png`` (:func:`plots`), from :class:`~.perf.PerfResult` s.

Peaks (per cycle): the array ``rows x cols`` MACs; the DMA one bus beat (``dram_bus_bytes``: the
DMA is one in-order engine, docs/tile.md); PIM ``channels x banks x pim_lanes / t_ccd_l`` MACs.
Plots are drawn on matplotlib Figures with the Agg canvas (no display, no global backend).
"""

import io

from ..compiler.graph import layer_graph, linears
from ..models.units import Unit
from .perf import BYTE_KINDS

__all__ = ["peaks", "op_rows", "report_dict", "render_markdown", "plots", "HOW_TO_READ"]

UNITS = tuple(u.name for u in Unit)

HOW_TO_READ = """\
## How to read this report

* **Cycles are exact**: they come from the cycle model the RTL is checked against, run on the
  instructions the compiler emits for this model (timing needs no weights, so the weights are
  blank). The program simulated holds the first few blocks, the final norm and the LM head;
  from the second or third block on every block times exactly like the one before it (every
  instruction the same number of cycles later, checked instruction by instruction), so the other
  blocks add that many cycles each.
* **Per operator** (one layer): *cycles* are charged in program order (each instruction is
  charged the cycles from the end of everything before it to its own completion, waiting
  included), so they add up to the layer's cycles; *busy* is each unit's working time, which
  overlaps between units. The *bound* is the unit busiest for the operator (compute = the array,
  memory = the DMA, PIM, vector).
* **MACs**: *useful* by the model's shapes, *issued* by the hardware (padding to whole tiles and
  row groups, both probability digits of attention on PIM). **Bytes** moved over the DRAM bus
  by the DMA, by the kind of region: weights, scales (group scales, multipliers, norm and
  softmax parameters), activations (inputs, outputs and workspaces), KV cache. PIM reads the KV
  cache inside the banks (*PIM bytes*), without the bus.
* **Intensity** = useful operations (2 per MAC) per byte over the bus; **utilization** = work /
  (busy cycles x peak) of the array, the DMA (bus) and the PIM lanes while that unit works for
  the operator.
* **Systems** (decode): *plain* runs attention on PIM after the projections, *interleaved* splits
  the batch in two and overlaps one half's attention on PIM with the other's projections
  (NeuPIMs), *npu* runs attention on the NPU's array with the KV cache (FP16) in plain DRAM.
  `--compare` names them *npu-only* (npu), *blocked* (plain, single row buffers), *dual* (plain,
  dual row buffers) and *neupims* (interleaved, dual row buffers).
* *other*: the dispatcher's own instructions (SYNC, HALT) and the cycles they wait.
* With a clock, decode: *time per output token* = one step's latency, *tokens/s* = batch /
  step latency; prefill: *time to first token* = the prefill's latency.
"""


def peaks(config):
    """Per-cycle peaks: array MACs, DMA bytes, PIM MACs."""
    c = config
    return {"array_macs": c.rows * c.cols, "dma_bytes": c.dram_bus_bytes,
            "pim_macs": c.dram_channels * c.dram_banks * c.pim_lanes / c.t_ccd_l}


def _bound(busy):
    unit = max(range(len(busy)), key=lambda u: busy[u])
    return {"GEMM": "compute", "DMA": "memory", "PIM": "PIM", "VEC": "vector"}[UNITS[unit]] if busy[unit] else "-"


def op_rows(result, ops, useful):
    """One JSON-able row per operator of ``ops`` (``{name: OpStats}``) with ``useful`` MACs."""
    pk = peaks(result.config)
    rows = []
    for name, st in ops.items():
        busy = dict(zip(UNITS, st.busy))
        mac = useful.get(name, 0)
        bus = st.bus_bytes
        rows.append({
            "operator": name, "cycles": st.cycles, "busy": busy, "instructions": st.instructions,
            "useful_macs": mac, "array_macs": st.array_macs, "pim_macs": st.pim_macs,
            "bytes": dict(st.bytes), "pim_bytes": st.pim_bytes,
            "intensity": round(2 * mac / bus, 3) if bus and mac else None, "bound": _bound(st.busy),
            "util_array": round(st.array_macs / (busy["GEMM"] * pk["array_macs"]), 4) if busy["GEMM"] else None,
            "util_dram_bus": round(bus / (busy["DMA"] * pk["dma_bytes"]), 4) if busy["DMA"] else None,
            "util_pim": round(st.pim_macs / (busy["PIM"] * pk["pim_macs"]), 4) if busy["PIM"] else None})
    return rows


def _capacity(result):
    """What the whole model keeps in DRAM: its weights (``wbits`` codes and one META entry per
    group and column, every Linear and the LM head) and the KV cache (INT8 keys and values in
    the PIM banks; FP16 for attention on the array, the ``npu`` system)."""
    mc, cfg, wl = result.model, result.config, result.workload
    wbytes = sum(op.width * (op.k * cfg.wbits // 8 + -(-op.k // cfg.group) * cfg.meta_entry_bytes)
                 for op in linears(layer_graph(mc)))
    ctx = sum(wl.lengths) + wl.batch if wl.mode == "decode" else wl.lengths[0]
    kv = 2 * mc.layers * mc.kv_width * ctx * (2 if result.system == "npu" else 1)
    return {"weights_bytes": wbytes, "kv_cache_bytes": kv, "dram_bytes": cfg.dram_bytes,
            "fits": wbytes + kv <= cfg.dram_bytes}


def _totals(result):
    out = dict.fromkeys(BYTE_KINDS, 0)
    for st in result.total_ops().values():
        for k in BYTE_KINDS:
            out[k] += st.bytes[k]
    return out


def latency(result, clock_mhz):
    """The clock-dependent figures (None without a clock)."""
    if clock_mhz is None:
        return None
    wl = result.workload
    ms = result.cycles / (clock_mhz * 1e3)
    if wl.mode == "decode":
        return {"clock_mhz": clock_mhz, "step_ms": ms, "time_per_output_token_ms": ms,
                "tokens_per_s": wl.batch / (ms / 1e3)}
    return {"clock_mhz": clock_mhz, "prefill_ms": ms, "time_to_first_token_ms": ms,
            "prompt_tokens_per_s": wl.lengths[0] / (ms / 1e3)}


def report_dict(result, *, hw="", clock_mhz=None, trace=None):
    """The JSON-able report of ``result`` (``hw`` names the tile configuration, ``trace`` the
    request lengths' source)."""
    mc, cfg, wl = result.model, result.config, result.workload
    useful = result.useful_macs
    lens = wl.lengths
    return {
        "model": {"family": mc.family, "layers": mc.layers, "hidden": mc.hidden, "heads": mc.heads,
                  "kv_heads": mc.kv_heads, "ffn": mc.ffn, "vocab": mc.vocab},
        "hw": hw, "config": cfg.to_dict(),
        "workload": {"mode": wl.mode, "batch": wl.batch, "trace": trace,
                     "lengths": {"min": min(lens), "mean": sum(lens) / len(lens), "max": max(lens)}},
        "system": result.system,
        "cycles": result.cycles, "simulated_cycles": result.simulated, "simulated_blocks": result.blocks,
        "cycles_per_block": result.layer_cycles, "instructions_simulated": result.instructions,
        "peaks_per_cycle": peaks(cfg), "latency": latency(result, clock_mhz),
        "layer": op_rows(result, result.layer_ops, useful),
        "outside_layers": op_rows(result, result.outside_ops, useful),
        "model_totals": op_rows(result, result.total_ops(), {k: v * mc.layers if k != "lm_head" else v
                                                             for k, v in useful.items()}),
        "bytes_by_kind": _totals(result), "capacity": _capacity(result),
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1%}" if v <= 1.5 else f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(rows, total=None):
    head = ("| operator | cycles | share | busy GEMM / VEC / DMA / PIM | useful MACs | issued MACs "
            "(array / PIM) | bytes W / S / A / KV | intensity | bound | util array / bus / PIM |")
    out = [head, "|" + "---|" * 10]
    total = total or sum(r["cycles"] for r in rows) or 1
    for r in rows:
        b, by = r["busy"], r["bytes"]
        out.append(f"| {r['operator']} | {r['cycles']:,} | {r['cycles'] / total:.1%} | "
                   f"{b['GEMM']:,} / {b['VEC']:,} / {b['DMA']:,} / {b['PIM']:,} | {r['useful_macs']:,} | "
                   f"{r['array_macs']:,} / {r['pim_macs']:,} | {by['weights']:,} / {by['scales']:,} / "
                   f"{by['activations']:,} / {by['kv_cache']:,} | {_fmt(r['intensity'])} | {r['bound']} | "
                   f"{_fmt(r['util_array'])} / {_fmt(r['util_dram_bus'])} / {_fmt(r['util_pim'])} |")
    return "\n".join(out)


def render_markdown(report, compare=None):
    """``report.md`` of a :func:`report_dict` (``compare``: ``{system: report}`` side by side)."""
    m, w = report["model"], report["workload"]
    lens = w["lengths"]
    lines = [f"# Performance report: {m['family']} {m['layers']} layers x {m['hidden']} on {report['hw']}",
             "",
             f"- Workload: **{w['mode']}**, batch {w['batch']}, "
             + (f"prompt {lens['max']} tokens" if w["mode"] == "prefill" else
                f"cached tokens per request min {lens['min']:,} / mean {lens['mean']:,.1f} / max {lens['max']:,}")
             + (f" (trace {w['trace']})" if w["trace"] else ""),
             f"- System: {report['system']}",
             f"- Cycles: **{report['cycles']:,}** for the whole model (simulated {report['simulated_blocks']} "
             f"blocks + head: {report['simulated_cycles']:,} cycles, {report['instructions_simulated']:,} "
             f"instructions; each further block {report['cycles_per_block']:,} cycles)"]
    lat = report["latency"]
    if lat and w["mode"] == "decode":
        lines.append(f"- At {lat['clock_mhz']:g} MHz: step {lat['step_ms']:.3f} ms = time per output token; "
                     f"**{lat['tokens_per_s']:,.1f} tokens/s**")
    elif lat:
        lines.append(f"- At {lat['clock_mhz']:g} MHz: time to first token **{lat['time_to_first_token_ms']:.3f} ms**"
                     f" ({lat['prompt_tokens_per_s']:,.0f} prompt tokens/s)")
    cap = report["capacity"]
    lines.append(f"- DRAM: weights {cap['weights_bytes']:,} B + KV cache {cap['kv_cache_bytes']:,} B "
                 f"{'fit' if cap['fits'] else 'do not fit'} in {cap['dram_bytes']:,} B"
                 + ("" if cap["fits"] else " (the timing is one tile's; a real system would shard the "
                    "model; the simulated program holds the caches of one block, or of one request block "
                    "when even those do not fit)"))
    pk = report["peaks_per_cycle"]
    lines.append(f"- Peaks per cycle: array {pk['array_macs']:,} MACs, DMA {pk['dma_bytes']} B, "
                 f"PIM {pk['pim_macs']:,.0f} MACs")
    if compare:
        lines += ["", "## Systems compared", "", "| system | cycles | cycles / this | throughput / this |" +
                  (" tokens/s |" if lat else ""), "|---|---|---|---|" + ("---|" if lat else "")]
        for name, r in compare.items():
            tps = f" {r['latency']['tokens_per_s']:,.1f} |" if r.get("latency") else ""
            lines.append(f"| {name} | {r['cycles']:,} | {r['cycles'] / report['cycles']:.3f} | "
                         f"{report['cycles'] / r['cycles']:.2f}x |{tps}")
    lines += ["", "## One layer (steady state)", "", _table(report["layer"], report["cycles_per_block"] or None),
              "", "## Outside the layers (first norm, final norm, LM head)", "",
              _table(report["outside_layers"]), "", "## Whole model", "",
              _table(report["model_totals"], report["cycles"]), "",
              "Plots: `roofline.png`, `breakdown.png`, `timeline.png`" + (", `compare.png`" if compare else "")
              + ".", "", HOW_TO_READ]
    return "\n".join(lines)


def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plots(report, result, compare=None):
    """``{file name: PNG bytes}``: the roofline, the per-operator breakdown, one layer's timeline
    and (``compare``: ``{system: report}``) the systems side by side."""
    out = {}
    pk = report["peaks_per_cycle"]
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    xs = [0.01, 1e4]
    ax.plot(xs, [min(2 * pk["array_macs"], x * pk["dma_bytes"]) for x in xs], "k-", label="array / DMA roof")
    for r in report["layer"] + report["outside_layers"]:
        busiest = max(r["busy"].values())
        if r["useful_macs"] and r["intensity"] and busiest:
            ax.scatter(r["intensity"], 2 * r["useful_macs"] / busiest, label=r["operator"])
    ax.axhline(2 * pk["pim_macs"], color="tab:purple", ls="--", label="PIM roof")
    ax.set(xscale="log", yscale="log", xlabel="useful ops per DRAM bus byte",
           ylabel="ops per cycle (useful / busiest unit's cycles)", title="Roofline (one layer and the head)")
    ax.legend(fontsize=7, ncol=2)
    out["roofline.png"] = _png(fig)

    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    rows = report["layer"]
    ax.barh([r["operator"] for r in rows], [r["cycles"] for r in rows], color="tab:gray")
    ax.set(xlabel="cycles charged (one layer)", title="Per-operator cycles")
    ax.invert_yaxis()
    out["breakdown.png"] = _png(fig)

    fig = _figure(9, 3.5)
    ax = fig.add_subplot()
    ops = sorted({name for spans in result.timeline.values() for _, _, name in spans})
    from matplotlib import colormaps
    palette = colormaps["tab20"]
    cmap = {n: palette(i % 20) for i, n in enumerate(ops)}
    t0 = min((s for spans in result.timeline.values() for s, _, _ in spans), default=0)
    for y, unit in enumerate(("GEMM", "VEC", "DMA", "PIM")):
        spans = result.timeline.get(unit, [])
        ax.broken_barh([(s - t0, e - s + 1) for s, e, _ in spans], (y - 0.4, 0.8),
                       facecolors=[cmap[n] for _, _, n in spans])
    ax.set(yticks=range(4), yticklabels=["NPU array", "vector", "DMA", "PIM"], xlabel="cycle (from the layer's start)",
           title="One layer's timeline")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=cmap[n], label=n) for n in ops], fontsize=6, ncol=4, loc="upper center",
              bbox_to_anchor=(0.5, -0.25))
    out["timeline.png"] = _png(fig)

    if compare:
        fig = _figure(6, 3.5)
        ax = fig.add_subplot()
        names = list(compare)
        bars = ax.bar(names, [compare[n]["cycles"] for n in names], color=[f"C{i}" for i in range(len(names))])
        # throughput relative to this report's system (the last named)
        ax.bar_label(bars, [f"{report['cycles'] / compare[n]['cycles']:.2f}x" for n in names], fontsize=8)
        ax.set(ylabel="cycles per decode step (whole model)",
               title=f"Systems compared (labels: throughput relative to {names[-1]})")
        out["compare.png"] = _png(fig)
    return out
