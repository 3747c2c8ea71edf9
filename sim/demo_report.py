"""The model demo's result: the JSON-able dict :func:`model_result` builds from the golden
generation (:class:`~.demo_generation.Generated`) and block 0 on the RTL
(:class:`~.demo_layer.LayerRun`), in the shape :func:`~.report.write_report` renders::

    {
      "title": str, "model": str, "prompt": str or None, "prompt_ids": [int, ...],
      "config": {...},                                  # the whole model's TileConfig
      "generation": {"ids": [int], "text": str or None, "float32_ids": [int],
                     "float32_text": str or None, "equal_tokens": int,
                     "programs": [{"kind", "cycles", "busy", "instructions", "seconds"}, ...]},
      "layer": None or {"config": {...}, "imem_words": int, "seconds": float,
                        "prefill": {...}, "step": {...}},    # LayerProgram.figures()
      "status": {...}, "rtl": None or {"bit_exact", "cycle_exact", "status"},
      "workload": {...}, "accuracy": {...}, "checks": {name: bool}, "ok": bool,
      "summary": [str, ...],
    }

``status`` (and ``rtl``) are block 0's decode step on the golden model (and the RTL), the
program ``cycles.png`` shows; without the RTL, the last whole-model program.
"""

from .report import UNITS

__all__ = ["model_result"]

_YES = {True: "yes", False: "NO"}


def _tile(cfg):
    return (f"{cfg.rows}x{cfg.cols} {cfg.pe} W{cfg.wbits} group {cfg.group}, {cfg.dram_bytes / 2**20:g} MiB DRAM "
            f"({cfg.dram_channels} channels x {cfg.dram_banks} banks, PIM {cfg.pim_mode})")


def _busy(st):
    return ", ".join(f"{u} {st['busy'][u] / max(st['cycles'], 1):.0%}" for u in UNITS if st["busy"][u])


def _text(model, ids):
    text = model.text(ids)
    return f"{ids}" if text is None else f"{text!r} {ids}"


def _generation(model, cfg, ids, gen, out):
    """Fill ``out`` (the result's tables, checks and summary) with the golden generation's figures."""
    mc = model.model.config
    steps = [p for p in gen.programs if p.kind == "step"]
    what = {"prefill": f"{len(ids)} tokens, {mc.layers} blocks and the LM head of the last token block",
            "step": f"1 token, {mc.layers} blocks (attention on PIM) and the LM head"}
    out["workload"].update({
        "model": f"{model.name}: {mc.layers} blocks, hidden {mc.hidden}, {mc.heads} query and "
                 f"{mc.kv_heads} KV heads, FFN {mc.ffn}, vocabulary {mc.vocab}",
        "prompt": _text(model, ids), "golden tile": _tile(cfg)})
    for p in gen.programs:
        out["workload"][f"{p.label} ({what[p.kind]})"] = (
            f"{p.status['cycles']:,} cycles, {p.instructions:,} instructions (busy {_busy(p.status)}; "
            f"{p.seconds:.0f} s)")
    out["accuracy"].update({"tile's tokens": _text(model, gen.ids),
                            "float32 greedy tokens": _text(model, gen.float_ids),
                            "tokens equal to float32 (leading)": f"{gen.equal_tokens} of {len(gen.ids)}"})
    out["checks"]["attention on PIM in every decode step (PIM busy > 0)"] = all(
        p.status["busy"]["PIM"] > 0 for p in steps)
    cycles = f"prefill {gen.programs[0].status['cycles']:,} cycles"
    if steps:
        cycles += (f", decode steps {', '.join(format(p.status['cycles'], ',') for p in steps)} cycles "
                   f"(PIM busy {', '.join(format(p.status['busy']['PIM'], ',') for p in steps)})")
    out["summary"] += [f"prompt {_text(model, ids)} -> the tile: {_text(model, gen.ids)}; float32: "
                       f"{_text(model, gen.float_ids)}: **{gen.equal_tokens} of {len(gen.ids)}** tokens equal",
                       f"whole model on the golden {cfg.rows}x{cfg.cols} tile: {cycles}"]


def _layer(layer, out):
    """Fill ``out`` with block 0's figures on the RTL; returns the ``layer`` entry of the result."""
    c = layer.config
    entry = {"config": c.to_dict(), "imem_words": layer.imem_words, "seconds": round(layer.seconds, 1)}
    out["workload"]["RTL tile"] = f"{_tile(c)}, {layer.imem_words} instruction words"
    for p in layer.programs:
        f = entry[p.kind] = p.figures()
        name = f"block 0 {p.kind}"
        out["workload"][f"{name} on the RTL"] = (f"{f['rtl']['cycles']:,} cycles, {p.instructions:,} "
                                                 f"instructions (busy {_busy(f['rtl'])}; on the golden "
                                                 f"tile {p.golden_config_cycles:,} cycles)")
        out["accuracy"][f"{name}: cosine vs float32 (smallest over tokens)"] = p.cosine
        out["checks"].update({f"{name}: RTL == golden outputs (bit-exact)": f["bit_exact"],
                              f"{name}: RTL == golden cycles": f["cycle_exact"],
                              f"{name}: same output as on the golden tile (bit for bit)": p.same_as_golden_config})
    step = entry["step"]
    out["checks"]["block 0 step: attention on PIM in the RTL (PIM busy > 0)"] = step["rtl"]["busy"]["PIM"] > 0
    exact = all(p.run.ok for p in layer.programs)
    same = all(p.same_as_golden_config for p in layer.programs)
    out["summary"].append(
        f"block 0 on the Verilated {c.rows}x{c.cols} tile ({c.dram_bytes / 2**20:g} MiB DRAM): prefill "
        f"{entry['prefill']['rtl']['cycles']:,} and decode step {step['rtl']['cycles']:,} cycles, RTL == golden "
        f"bit- and cycle-exact: **{_YES[exact]}**; the same output as on the golden tile: {_YES[same]}; "
        f"cosine vs float32 >= {min(p.cosine for p in layer.programs):.5f}")
    out.update(status=step["golden"], rtl={"bit_exact": step["bit_exact"], "cycle_exact": step["cycle_exact"],
                                           "status": step["rtl"]})
    return entry


def model_result(model, cfg, prompt, ids, gen, layer):
    """The result dict (module doc) of ``model`` (:class:`~.demo_generation.DemoModel`) on the
    tile ``cfg``: the prompt (text or ids) and its ``ids``, ``gen`` and ``layer`` (None: no RTL)."""
    out = {"workload": {}, "accuracy": {}, "checks": {}, "summary": [], "status": gen.programs[-1].status,
           "rtl": None}
    _generation(model, cfg, ids, gen, out)
    entry = None if layer is None else _layer(layer, out)
    out["summary"] += [f"`{k}`: {_YES[v]}" for k, v in out["checks"].items()]
    shown = "block 0's decode step, golden and RTL" if layer else "the last program"
    out["summary"].append(f"cycles below and in `cycles.png`: {shown}; the whole model's programs: "
                          "![busy cycles per unit](generation.png)")
    return {
        "title": f"mixpim demo: {model.name} on the NPU+PIM tile" + (" (block 0 on the RTL)" if layer else ""),
        "model": model.name, "prompt": prompt if isinstance(prompt, str) else None, "prompt_ids": list(ids),
        "config": cfg.to_dict(),
        "generation": {"ids": gen.ids, "text": model.text(gen.ids), "float32_ids": gen.float_ids,
                       "float32_text": model.text(gen.float_ids), "equal_tokens": gen.equal_tokens,
                       "programs": [p.figures() for p in gen.programs]},
        "layer": entry, **out, "ok": all(out["checks"].values()),
    }
