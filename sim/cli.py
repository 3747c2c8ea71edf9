"""The ``mixpim`` command line.

Errors a user can cause (bad options, out-of-range configurations, missing tools, failed
co-simulation) end with one line ``mixpim: error: ...`` and exit status 2 (1 for a co-simulation
mismatch); tracebacks are for bugs only. Every file a command writes is written atomically
(:mod:`.outputs`): a failed or interrupted command leaves no partial file and no destroyed
earlier output (docs/decisions.md, "CLI errors and outputs").
"""

import argparse
import json
import math
import os
import sys

from ..models.config import GROUP_SIZES, PRESETS
from ..models.errors import MixpimError
from .designs import DESIGNS, make_design
from .tile_cosim import rtl_size_problem

__all__ = ["main", "CliError"]


class CliError(MixpimError, ValueError):
    """Options that do not go together, or an option value out of range."""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors (``mixpim: error: ...``, exit status 2)."""

    def error(self, message):
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        sys.stderr.write(f"mixpim: error: {command}{message} (see {self.prog} --help)\n")
        sys.exit(2)


def _say(line):
    print(line, file=sys.stderr)


# -- the RTL size limit --------------------------------------------------------------------------

def check_rtl_size(cfg, what, hint="use --backend golden"):
    problem = rtl_size_problem(cfg)
    if problem:
        raise CliError(f"{what}: {problem}; {hint}")


#: Most synthetic weights ``mixpim compile`` draws (float64 while quantizing: 512 MiB).
COMPILE_MAX_WEIGHTS = 1 << 26
_PRESET_NAMES = ", ".join(PRESETS)


# -- option checks -------------------------------------------------------------------------------

def _flag(name):
    return "--" + name.replace("_", "-")


def _given(args, names):
    return [_flag(n) for n in names if getattr(args, n, None) is not None]


def _reject(args, names, why):
    given = _given(args, names)
    if given:
        raise CliError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply: {why}")


def _csv(option, text, *, upper=False):
    """The items of a comma-separated option value; empty values, empty items and repeats are errors."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not text.strip():
        raise CliError(f"{option} is empty; leave it out for the default")
    if any(not t for t in items):
        raise CliError(f"{option} {text!r} has an empty item")
    if upper:
        items = [t.upper() for t in items]
    repeated = sorted({t for t in items if items.count(t) > 1})
    if repeated:
        raise CliError(f"{option} names {', '.join(repeated)} more than once")
    return items


def _at_least(option, value, lo):
    if value is not None and value < lo:
        raise CliError(f"{option} must be at least {lo}, not {value}")


_DESIGN_FIELDS = ("rows", "cols", "wbits", "act", "group", "scale_bits", "types")


def _design_options(p, extra=()):
    # defaults are None so that an option given is told apart from one left out (a design that
    # ignores an option rejects it when given); the defaults below are make_design's
    p.add_argument("design", choices=sorted(DESIGNS) + list(extra), help="what to generate")
    p.add_argument("--rows", type=int, help="array rows (default 4; arrays only)")
    p.add_argument("--cols", type=int, help="array columns (default 4; arrays only)")
    p.add_argument("--wbits", type=int, choices=(2, 3, 4, 8),
                   help="widest weight code (default 4; 8 = BitMoD INT8 mode)")
    p.add_argument("--act", choices=("int8", "fp16"),
                   help="activation format (default int8 for mixpe/baseline, fp16 for bitmod)")
    p.add_argument("--group", type=int, choices=GROUP_SIZES, help="quantization group size (default 32)")
    p.add_argument("--scale-bits", type=int,
                   help="scale mantissa bits (default 16 for mixpe/baseline, 8 for bitmod)")
    p.add_argument("--types", help="BitMoD only: comma-separated weight types a group may select "
                   "(default: the BitMoD mixture for 3/4 bits, INT-b otherwise)")


def _design(args):
    kind = args.design
    if kind.endswith("-pe"):
        _reject(args, ("rows", "cols"), f"{kind} is a single PE (it has no rows or columns)")
    if DESIGNS[kind][0] != "bitmod":
        _reject(args, ("types",), f"--types selects BitMoD weight types; {kind} takes none")
    types = _csv("--types", args.types, upper=True)
    given = {n: getattr(args, n) for n in ("rows", "cols", "wbits", "act", "group", "scale_bits")
             if getattr(args, n) is not None}
    return make_design(kind, **given, types=None if types is None else tuple(types))


def _tile_args(args):
    """``(config, imem_words, config name)`` of ``mixpim rtl tile`` / ``mixpim synth tile``."""
    from ..hw.tile import MAX_IMEM_WORDS
    from ..models.config import TileConfig
    _reject(args, _DESIGN_FIELDS, "the tile takes its array from --config")
    imem = 1024 if args.imem_words is None else args.imem_words
    if not 1 <= imem <= MAX_IMEM_WORDS:
        raise CliError(f"--imem-words must be in 1..{MAX_IMEM_WORDS}, not {imem}")
    name = "tiny" if args.config is None else args.config
    cfg = TileConfig.load(name)
    check_rtl_size(cfg, f"configuration {name}",
                   "larger configurations (such as npu128) are for the golden/timing model only")
    return cfg, imem, name


def _not_tile(args):
    _reject(args, ("config", "imem_words"), f"{args.design} is not the tile (--config and "
            f"--imem-words are for the tile design)")


def cmd_rtl(args):
    from .designs import write_rtl
    if args.design == "tile":
        from .tile_rtl import write_tile_rtl
        cfg, imem, name = _tile_args(args)
        paths = write_tile_rtl(cfg, args.output, imem_words=imem, config_name=name, say=_say)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        return
    _not_tile(args)
    design = _design(args)
    verilog, manifest = write_rtl(design, args.output, say=_say)
    print(f"wrote {verilog} and {manifest}")


def cmd_synth(args):
    from .outputs import check_output_dir, existing_outputs
    from .synth import (DEFAULT_SEED, FMAX_TARGET_MHZ, MAX_SEED, PLACERS, ROUTERS, WORKDIR_FILES,
                        synthesize)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CliError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.freq is not None and not (math.isfinite(args.freq) and args.freq > 0):
        raise CliError(f"--freq must be a positive number of MHz, not {args.freq:g}")
    freq = FMAX_TARGET_MHZ if args.freq is None else args.freq
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise CliError(f"--seed must be from 0 to {MAX_SEED} (nextpnr's seed), not {args.seed}")
    pnr = {"placer": args.placer or PLACERS[0], "router": args.router or ROUTERS[0],
           "seed": DEFAULT_SEED if args.seed is None else args.seed}
    if args.design == "tile":
        from ..hw.tile_csr import TileTop
        from .tile_rtl import tiletop_name
        cfg, imem, name = _tile_args(args)
        top, config, make = tiletop_name(cfg, imem), cfg, lambda: TileTop(cfg, imem)
        # classic ABC maps the tile's LUTs: ABC9 dies on it in the WebAssembly Yosys
        extra = {"config_name": name, "imem_words": imem, "lut_mapper": "abc"}
    else:
        _not_tile(args)
        design = _design(args)
        top, config, make, extra = design.top, design.config, design.component, {}
    if args.workdir is not None:
        check_output_dir(args.workdir, "work directory")
        names = [n.replace("NAME", top) for n in WORKDIR_FILES]
        replaced = existing_outputs(args.workdir, names)
        if replaced:
            _say(f"mixpim: replacing {', '.join(replaced)} in {args.workdir}")
    if not args.json:
        print(f"synthesizing {top} for {args.target} (the first Yosys run compiles its "
              f"WebAssembly, about a minute) ...", file=sys.stderr)
    rep = synthesize(make(), top, target=args.target, fmax=args.fmax, workdir=args.workdir,
                     fmax_target_mhz=freq, timing_driven=not args.no_tmdriv, **pnr,
                     timeout=args.timeout,
                     abc9=extra.get("lut_mapper") != "abc", by_module=args.by_module)
    summary = {"design": args.design, "top": top, "target": args.target, **extra,
               "config": config.to_dict(), "mul_cells": rep.mul_cells, "dsp_cells": rep.dsp_cells,
               "luts": rep.luts, "ffs": rep.ffs, "brams": rep.brams, "lutram_cells": rep.lutram_cells,
               "fmax_mhz": rep.fmax_mhz, "seconds": rep.seconds, "cells": rep.cells,
               "coarse_cells": rep.coarse_cells, "flattened": rep.flattened}
    if args.by_module:
        summary["by_module"] = rep.by_module
    if args.fmax:
        summary.update(device="LFE5U-85F", fits=rep.fits, target_mhz=freq,
                       timing_driven=not args.no_tmdriv, **pnr,
                       utilisation={k: {"used": u, "available": a}
                                    for k, (u, a) in rep.utilisation.items()},
                       global_resets=rep.global_resets)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{top} on {args.target} ({rep.seconds:.0f} s):")
    for key in ("luts", "ffs", "dsp_cells", "mul_cells", "brams", "lutram_cells"):
        print(f"  {key:12s} {summary[key]}")
    if rep.fmax_mhz is not None:
        print(f"  fmax         {rep.fmax_mhz:.1f} MHz (target {freq:g} MHz)")
    if not rep.flattened:
        print("  mapped module by module: flattening needs more than the WebAssembly Yosys' 4 GiB")
    if rep.fits is False:
        print(f"  does not fit the LFE5U-85F (no Fmax): {', '.join(rep.over())}")
    for net, ffs in rep.global_resets.items():
        print(f"  global reset {net} ({ffs} flip-flops)")
    if args.by_module:
        _print_modules(rep.by_module)


#: ``mixpim synth --by-module`` prints modules down to this depth below the top (JSON: all).
_MODULE_DEPTH = 3


def _print_modules(by_module):
    """The per-module table of ``mixpim synth --by-module``: the top and its modules down to
    :data:`_MODULE_DEPTH`, each with its submodules' resources included."""
    keys = ("luts", "ffs", "dsp_cells", "brams", "lutram_cells")
    print(f"  {'module (submodules included)':40s}" + "".join(f"{k:>13s}" for k in keys))
    for path, res in by_module.items():
        if path.count(".") < _MODULE_DEPTH:
            label = "(top)" if not path else "  " * (path.count(".") + 1) + path.rsplit(".", 1)[-1]
            print(f"  {label:40s}" + "".join(f"{res[k]:>13,}" for k in keys))


def cmd_demo(args):
    from .demo import DemoError
    for name in ("rows", "cols", "max_new_tokens"):
        _at_least(_flag(name), getattr(args, name), 1)
    if args.ffn and args.projection:
        raise DemoError("--ffn and --projection are two demos: give one of them")
    if args.ffn or args.projection:
        _reject(args, ("prompt", "max_new_tokens"), "for the SmolLM2 demo only (the default, without "
                f"{'--ffn' if args.ffn else '--projection'})")
        return _projection_demo(args) if args.projection else _ffn_demo(args)
    _reject(args, ("config", "rows", "cols", "act"), "for --ffn and --projection only (the default "
            "demo runs SmolLM2 on the llm preset)")
    from .demo_model import DEFAULT_NEW_TOKENS, DEFAULT_PROMPT, run_model_demo
    result = run_model_demo(args.output, prompt=DEFAULT_PROMPT if args.prompt is None else args.prompt,
                            new_tokens=DEFAULT_NEW_TOKENS if args.max_new_tokens is None else args.max_new_tokens,
                            rtl=(args.backend or "rtl") == "rtl")
    return 0 if result["ok"] else 1


def _projection_demo(args):
    """``demo --projection``: one GEMM on the Verilated MixPE array."""
    from ..models.config import TileConfig
    from .demo import DemoError
    from .demo_projection import run_projection_demo
    if args.config is not None:
        raise DemoError("--projection always runs the array RTL; it takes no --config")
    if args.backend == "golden":
        raise DemoError("--projection runs the Verilated array and compares it with the golden "
                        "model; it has no golden-only mode (leave out --backend, or use --ffn "
                        "for the golden FFN demo)")
    rows, cols = (8 if v is None else v for v in (args.rows, args.cols))
    act = args.act or "int8"
    cfg = TileConfig(rows=rows, cols=cols, group=128, pe="mixpe-w4a8" if act == "int8" else "mixpe-w4a16")
    check_rtl_size(cfg, "--projection", "choose a smaller --rows/--cols")
    result = run_projection_demo(args.output, rows=rows, cols=cols, act=act)
    return 0 if result["bit_exact"] and result["cycle_exact"] else 1


def _ffn_demo(args):
    """``demo --ffn``: MiniLM's layer-0 FFN block on the tile."""
    from .demo import DemoError, demo_config, run_demo
    if args.act not in (None, "int8"):
        raise DemoError("the FFN block needs INT8 activations; --act fp16 runs with --projection")
    backend = args.backend or "rtl"
    # default: the fpga preset with an 8x8 array and a smaller memory system: a quicker build
    default = args.config is None
    rows = 8 if default and args.rows is None else args.rows
    cols = 8 if default and args.cols is None else args.cols
    cfg = demo_config(args.config or "fpga", rows, cols, small_memory=default)
    if backend == "rtl":
        check_rtl_size(cfg, f"configuration {args.config or 'fpga'}")
    result = run_demo(args.output, config=cfg, backend=backend)
    return 0 if result["ok"] else 1


def cmd_quant(args):
    from ..compiler.checkpoint import minilm_dir
    from .quant import parse_formats, quant_report, format_table
    formats = parse_formats(_csv("--formats", args.formats))
    if args.checkpoint == "":
        raise CliError("--checkpoint is empty; leave it out for the installed MiniLM")
    path = args.checkpoint or minilm_dir() / "model.safetensors"
    tensors = _csv("--tensors", args.tensors)
    report = quant_report(path, formats, args.group, tensors=tensors, scale_bits=args.scale_bits)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report, per_layer=args.per_layer))


def cmd_compile(args):
    import numpy as np

    from ..compiler import lower_linear
    from ..models.config import TileConfig
    from ..models.program import listing
    from ..models.tile_array import quantize_for
    from .outputs import check_output_file, write_files
    for name in ("m", "n", "k"):
        _at_least(f"--{name}", getattr(args, name), 1)
    _at_least("--seed", args.seed, 0)
    out = check_output_file(args.output, "program file")
    lst = out.with_suffix(".lst")
    if os.path.realpath(lst) == os.path.realpath(out):
        raise CliError(f"-o {args.output}: the listing is written next to the program as "
                       f"{lst.name}, which would overwrite the program; give the program another "
                       f"name (e.g. {out.with_suffix('.mxpm').name})")
    check_output_file(lst, "listing")
    cfg = TileConfig.load(args.config)
    codes = args.n * args.k // 2  # 4-bit codes, two per byte, at least
    if codes > cfg.dram_bytes or args.m * args.k > cfg.dram_bytes:
        raise CliError(f"linear {args.m}x{args.n}x{args.k} does not fit the {cfg.dram_bytes}-byte "
                       f"DRAM of configuration {args.config}: the weights alone need {codes} bytes, "
                       f"the activations {args.m * args.k}")
    if args.n * args.k > COMPILE_MAX_WEIGHTS:
        raise CliError(f"--n {args.n} x --k {args.k} = {args.n * args.k} synthetic weights; `mixpim "
                       f"compile` draws at most {COMPILE_MAX_WEIGHTS} (e.g. 8192x8192): compile real "
                       f"weights with mixpim.compiler.lower_linear")
    rng = np.random.default_rng(args.seed)
    try:
        w = rng.normal(size=(args.n, args.k))
    except MemoryError:
        raise CliError(f"not enough memory for {args.n}x{args.k} synthetic weights") from None
    qw = quantize_for(cfg, w)  # BitMoD tiles: the tile's mixture
    compiled = lower_linear(cfg, (args.m, args.k), qw, seed=args.seed, out=args.out_format)
    prog = compiled.program
    # program and listing (same folder) as one batch: a failure replaces neither
    write_files(out.parent, {out.name: prog.to_bytes(), lst.name: listing(prog)}, say=_say)
    print(f"linear {args.m}x{args.n}x{args.k} on {args.config}: {len(prog.instructions)} instructions, "
          f"{sum(len(s.data) for s in prog.segments)} bytes of memory image")
    print(f"wrote {out} and {lst}")


def cmd_run(args):
    from ..models.executor import execute
    from ..models.isa import Unit
    from ..models.program import Program
    if args.backend == "rtl" and args.timing_only:
        raise CliError("--timing-only is a golden-model mode; the RTL always runs the data")
    prog = Program.load(args.program)
    rtl = None
    if args.backend == "rtl":
        from .tile_cosim import run_tile
        check_rtl_size(prog.config, f"{args.program}: its configuration")
        print(f"{args.program}: building (or reusing) the Verilator model of the tile ...", file=sys.stderr)
        rtl = run_tile(prog)
        res = rtl.golden
    else:
        res = execute(prog, timing_only=args.timing_only)
    st = res.status
    print(f"{args.program}: {len(prog.instructions)} instructions on the "
          f"{'RTL tile and the golden model' if rtl else 'golden model'}"
          f"{' (timing only)' if args.timing_only else ''}")
    print(f"  status    {st.error.name} (pc {st.error_pc})")
    cols = "  golden" + ("       rtl" if rtl else "")
    print(f"  {'':10s}{cols}")

    def row(name, golden, measured=None, share=None):
        text = f"  {name:10s}{golden:>8d}" + (f"{measured:>10d}" if rtl else "")
        print(text + (f"  ({share:.1%})" if share is not None else ""))
    rs = rtl.rtl_status if rtl else {}
    row("cycles", st.cycles, rs.get("cycles"))
    for u in Unit:
        row(f"busy {u.name}", st.busy[u], rs["busy"][u] if rtl else None, st.busy[u] / max(st.cycles, 1))
    row("dispatched", st.dispatched, rs.get("dispatched"))
    if not args.timing_only:
        print(f"  outputs   {len(res.outputs)} DRAM range(s), {sum(len(o.data) for o in res.outputs)} bytes; "
              f"races {len(res.races)}")
    if rtl:
        yes = {True: "yes", False: "NO"}
        print(f"  RTL vs golden: outputs bit-exact {yes[rtl.bit_exact]} ({rtl.words_compared} words "
              f"compared), cycle-exact {yes[rtl.cycle_exact]}; simulated in {rtl.sim_seconds:.2f} s")
        if not rtl.ok:
            print(rtl.report()[:4000])
            return 1
    return 0 if res.ok else 1


def cmd_embed(args):
    from ..models.config import TileConfig
    from .embed import MODEL_PRESET, Encoder
    from .progress import progress
    cfg = TileConfig.load(MODEL_PRESET if args.config is None else args.config)
    if args.backend == "rtl":
        check_rtl_size(cfg, "--config")
    enc = Encoder(cfg)
    out = []
    with progress(f"embedding on the {args.backend} tile", len(args.text)) as step:
        for text in args.text:
            out.append(enc.embed(text, backend=args.backend))
            step()
    if args.json:
        print(json.dumps({
            "embeddings": [[round(float(x), 7) for x in e.vector] for e in out],
            "texts": [e.text for e in out], "tokens": [e.tokens for e in out],
            "cosine_vs_float32": [round(e.cosine, 6) for e in out],
            "cycles": [e.cycles for e in out], "busy": [e.busy for e in out],
            "instructions": [e.instructions for e in out], "backend": args.backend,
            "rtl_exact": None if args.backend == "golden" else all(e.rtl.ok for e in out)}))
    else:
        for e in out:
            busy = ", ".join(f"{u} {c / max(e.cycles, 1):.0%}" for u, c in e.busy.items())
            print(f"{e.text!r}: {e.tokens} tokens, {e.instructions} instructions, {e.cycles:,} cycles "
                  f"(busy {busy}); cosine vs float32 {e.cosine:.5f}")
            if e.rtl is not None:
                print(f"  RTL vs golden: bit-exact {e.rtl.bit_exact}, cycle-exact {e.rtl.cycle_exact}")
    return 0 if all(e.rtl is None or e.rtl.ok for e in out) else 1


def _batch_prompts(args):
    """The prompts of ``generate``: PROMPT, or the lines of ``--batch-file`` (blank lines skipped)."""
    if (args.prompt is None) == (args.batch_file is None):
        raise CliError("give a PROMPT or --batch-file FILE (one prompt per line), not both or neither")
    if args.prompt is not None:
        return [args.prompt]
    from .inputs import read_text_input
    path = args.batch_file
    prompts = [line for line in read_text_input(path, "batch file").splitlines() if line.strip()]
    if not prompts:
        raise CliError(f"batch file {path!r} holds no prompts")
    return prompts


def cmd_generate(args):
    from ..models.config import TileConfig
    from .embed import MODEL_PRESET
    from .generate import Generator
    from .progress import progress
    prompts = _batch_prompts(args)
    _at_least("--max-new-tokens", args.max_new_tokens, 1)
    if args.backend == "rtl":
        raise CliError("--backend rtl: a whole SmolLM2 run is beyond the RTL co-simulation's speed "
                       "today (whole decoder layers run on the Verilated tile in the tests); use golden")
    cfg = TileConfig.load(MODEL_PRESET if args.config is None else args.config)
    gen = Generator(cfg)
    with progress("prefill and decode on the golden tile", len(prompts) + args.max_new_tokens - 1) as step:
        out = gen.generate(prompts, args.max_new_tokens, step_done=step)
    runs = [{"kind": r.kind, "cycles": r.cycles, "busy": r.busy, "instructions": r.instructions}
            for r in out.runs]
    if args.json:
        print(json.dumps({"requests": [{"prompt": p, "prompt_ids": pi, "ids": g, "text": t}
                                       for p, pi, g, t in zip(prompts, out.prompt_ids, out.ids, out.text)],
                          "runs": runs, "backend": args.backend}))
        return 0
    for p, t in zip(prompts, out.text):
        print(f"{p!r} -> {t!r}")
    for n, r in enumerate(out.runs):
        busy = ", ".join(f"{u} {c / max(r.cycles, 1):.0%}" for u, c in r.busy.items())
        print(f"  {r.kind:7s} {n:3d}: {r.cycles:>12,d} cycles, {r.instructions:,} instructions (busy {busy})")
    return 0


def _model_options(p, backend_help, config_needs, json_what):
    """``--backend``, ``--config`` and ``--json`` of the whole-model commands."""
    p.add_argument("--backend", default="golden", choices=("golden", "rtl"), help=backend_help)
    p.add_argument("--config", default=None, help=f"a preset or a .json/.toml file with {config_needs} "
                   "(default llm)")
    p.add_argument("--json", action="store_true", help=f"print {json_what} as JSON")


def _tile_options(p):
    p.add_argument("--config", help="tile only: a preset (tiny, fpga; npu128 is too large for RTL) or a "
                   ".json/.toml file (default tiny)")
    p.add_argument("--imem-words", type=int, help="tile only: instruction memory depth (default 1024)")


def build_parser():
    parser = _Parser(prog="mixpim", description="LLM-accelerator co-design kit: RTL, "
                                     "golden model, co-simulation, synthesis.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rtl", help="write Verilog and a manifest of a design (a PE, an array, or the "
                       "tile behind its register bus, with registers.md and tile_regs.h)")
    _design_options(p, extra=("tile",))
    _tile_options(p)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=cmd_rtl)

    from .synth import DEFAULT_SEED, FMAX_TARGET_MHZ, PLACERS, ROUTERS, TARGETS, TOOL_TIMEOUT
    p = sub.add_parser("synth", help="synthesize a design with Yosys and report its cells")
    _design_options(p, extra=("tile",))
    _tile_options(p)
    p.add_argument("--target", default="generic", choices=TARGETS,
                   help="generic 4-LUTs, Lattice ECP5, or Xilinx 7-series (default generic)")
    p.add_argument("--fmax", action="store_true", help="also place and route (ECP5: LFE5U-85F) and "
                   "report Fmax")
    p.add_argument("--freq", type=float, metavar="MHZ", help="with --fmax, the clock frequency "
                   f"nextpnr aims for and checks (default {FMAX_TARGET_MHZ:g})")
    p.add_argument("--no-tmdriv", action="store_true", help="with --fmax, place for wirelength "
                   "alone (nextpnr's --no-tmdriv): less to route on a nearly full device, for a "
                   "lower Fmax")
    p.add_argument("--placer", choices=PLACERS, help="with --fmax, nextpnr's placer (default "
                   f"{PLACERS[0]}; static spreads a large design over the whole die)")
    p.add_argument("--router", choices=ROUTERS, help="with --fmax, nextpnr's router (default "
                   f"{ROUTERS[0]})")
    p.add_argument("--seed", type=int, metavar="N", help="with --fmax, nextpnr's placement "
                   f"seed (default {DEFAULT_SEED}; a seed gives the same placement every time)")
    p.add_argument("--by-module", action="store_true", help="also map without flattening and "
                   "report each module's resources (a second mapping run)")
    p.add_argument("--workdir", help="keep Yosys scripts, logs and netlists here")
    p.add_argument("--timeout", type=float, default=TOOL_TIMEOUT, metavar="SECONDS",
                   help=f"seconds each tool run (Yosys, nextpnr) may take (default {TOOL_TIMEOUT:g}; "
                   "an 8x8 tile's place and route takes hours)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_synth)

    from .quant import DEFAULT_FORMATS
    p = sub.add_parser("quant", help="quantize a safetensors checkpoint; error per format and layer")
    p.add_argument("--checkpoint", help="a .safetensors file (default: the installed all-MiniLM-L6-v2)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated formats (default {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--group", type=int, default=128, choices=GROUP_SIZES)
    p.add_argument("--scale-bits", type=int, default=8, help="scale mantissa bits (default 8)")
    p.add_argument("--tensors", help="comma-separated tensor names (default: every Linear weight)")
    p.add_argument("--per-layer", action="store_true", help="one table row per layer and format")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_quant)

    p = sub.add_parser("compile", help="compile a quantized Linear layer (seeded synthetic weights) "
                       "to a tile program file and listing")
    p.add_argument("layer", choices=("linear",))
    p.add_argument("--config", default="tiny", help=f"a preset ({_PRESET_NAMES}) or a .json/.toml file")
    p.add_argument("--m", type=int, required=True, help="tokens")
    p.add_argument("--n", type=int, required=True, help="output features")
    p.add_argument("--k", type=int, required=True, help="input features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-format", default="acc", choices=("acc", "int8"),
                   help="store accumulators or INT8 requantized outputs (default acc)")
    p.add_argument("-o", "--output", required=True, help="program file to write (.mxpm)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a program file on the golden model (status, cycles per unit)")
    p.add_argument("program")
    p.add_argument("--backend", default="golden", choices=("golden", "rtl"),
                   help="golden model, or the tile RTL on Verilator compared with it (default golden)")
    p.add_argument("--timing-only", action="store_true", help="cycle model only, no data")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("embed", help="MiniLM sentence embeddings computed on the tile (all 6 layers), "
                       "with the cosine against the float32 model")
    p.add_argument("text", nargs="+", help="texts to embed")
    _model_options(p, "golden model (default), or the tile RTL on Verilator compared with it",
                   "FP16 activations and a square array", "the embeddings and figures")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("generate", help="SmolLM2-135M greedy decoding on the tile: prefill, then "
                       "batched decode steps with attention on PIM")
    p.add_argument("prompt", nargs="?", help="the prompt (or --batch-file)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate (default 16)")
    p.add_argument("--batch-file", help="a UTF-8 file of prompts, one per line: one batched decode")
    _model_options(p, "golden model (default); rtl is refused for whole models today",
                   "FP16 activations, group 32 and group offsets", "the ids, texts and cycles")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="the embedded default: SmolLM2-135M on the NPU+PIM tile, the whole "
                       "model on the golden model and its block 0 on the Verilated tile RTL; report, "
                       "cycle charts, tokens and accuracy vs float32 (--ffn, --projection: the MiniLM demos)")
    p.add_argument("-o", "--output", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--prompt", default=None, help="the prompt (default 'The capital of France is')")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens to generate (default 3: the prefill and 2 decode steps)")
    p.add_argument("--backend", default=None, choices=("golden", "rtl"),
                   help="rtl (default): also run block 0 on the Verilated 8x8 tile (the first run builds "
                   "it, about 15 minutes); golden: the golden model alone. --ffn: the FFN block on the tile RTL "
                   "compared with the golden model, or the golden model alone")
    p.add_argument("--ffn", action="store_true",
                   help="instead: MiniLM's layer-0 FFN block compiled and run on the tile")
    p.add_argument("--projection", action="store_true",
                   help="instead: the FFN up-projection alone as one GEMM on the Verilated MixPE array "
                   "(always RTL: --backend golden is an error)")
    p.add_argument("--config", default=None, help=f"--ffn: a preset ({_PRESET_NAMES}) or a .json/.toml "
                   "file (default: the fpga preset with an 8x8 array, W4 group 128, one DRAM channel "
                   "of 4 banks and minimal PIM buffers)")
    p.add_argument("--rows", type=int, default=None,
                   help="--ffn, --projection: override the array rows (--projection: default 8)")
    p.add_argument("--cols", type=int, default=None,
                   help="--ffn, --projection: override the array columns (--projection: default 8)")
    p.add_argument("--act", default=None, choices=("int8", "fp16"),
                   help="--ffn, --projection: activations (default int8; fp16: --projection only)")
    p.set_defaults(func=cmd_demo)

    from .perf_cli import add_report_parser, add_sweep_parser
    add_report_parser(sub)
    add_sweep_parser(sub)
    from .fuzz import add_fuzz_parser
    add_fuzz_parser(sub)
    return parser


def _one_line(error):
    """``error``'s message on one line (a multi-line message keeps every line, joined by '; ')."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _tool_error(error):
    """A Yosys or nextpnr failure on one line: what failed (its message's first line, which names
    the work directory holding the whole log), then the log's last ``ERROR`` line, else its last
    line."""
    first, *tail = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    errors = [line for line in tail if line.startswith("ERROR")]
    return " ".join([first, *(errors or tail)[-1:]])


def main(argv=None):
    from .cosim import CosimError
    from .synth import SynthError
    from .toolchain import ToolchainError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fmax", False) and args.target != "ecp5":
        parser.error(f"--fmax needs --target ecp5 (the only target with place and route; "
                     f"{args.target} reports resources only)")
    if getattr(args, "freq", None) is not None and not args.fmax:
        parser.error("--freq needs --fmax (it is the place-and-route target frequency)")
    if getattr(args, "no_tmdriv", False) and not args.fmax:
        parser.error("--no-tmdriv needs --fmax (it is a placement option)")
    for option in ("placer", "router", "seed"):   # synth's (compile has a --seed of its own)
        if getattr(args, option, None) is not None and not getattr(args, "fmax", True):
            parser.error(f"--{option} needs --fmax (it is a place-and-route option)")
    if getattr(args, "by_module", False) and args.target == "generic":
        parser.error("--by-module needs --target ecp5 or xilinx (Yosys' generic LUT mapping "
                     "fails on an unflattened design)")
    try:
        return args.func(args) or 0
    except SynthError as e:
        print(f"mixpim: error: {_tool_error(e)}", file=sys.stderr)
        return 2
    except (MixpimError, ToolchainError) as e:
        print(f"mixpim: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except CosimError as e:
        print(f"mixpim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
        print("mixpim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
