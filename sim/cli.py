"""The ``mixpim`` command line.

Errors a user can cause (bad options, out-of-range configurations, missing tools, failed
co-simulation) end with one line ``mixpim: error: ...`` and exit status 2 (1 for a co-simulation
mismatch); tracebacks are for bugs only.
"""

import argparse
import json
import sys
from pathlib import Path

from ..models.config import GROUP_SIZES
from ..models.errors import MixpimError
from .designs import DESIGNS, make_design

__all__ = ["main", "CliError"]


class CliError(MixpimError, ValueError):
    """Options that do not go together."""


def _design_options(p, extra=()):
    p.add_argument("design", choices=sorted(DESIGNS) + list(extra), help="what to generate")
    p.add_argument("--rows", type=int, default=4, help="array rows (default 4)")
    p.add_argument("--cols", type=int, default=4, help="array columns (default 4)")
    p.add_argument("--wbits", type=int, default=4, choices=(2, 3, 4, 8),
                   help="widest weight code (default 4; 8 = BitMoD INT8 mode)")
    p.add_argument("--act", default=None, choices=("int8", "fp16"),
                   help="activation format (default int8 for mixpe/baseline, fp16 for bitmod)")
    p.add_argument("--group", type=int, default=32, choices=GROUP_SIZES, help="quantization group size (default 32)")
    p.add_argument("--scale-bits", type=int, default=None,
                   help="scale mantissa bits (default 16 for mixpe/baseline, 8 for bitmod)")
    p.add_argument("--types", help="BitMoD only: comma-separated weight types a group may select "
                   "(default: the BitMoD mixture for 3/4 bits, INT-b otherwise)")


def _design(args):
    types = tuple(t.strip().upper() for t in args.types.split(",")) if args.types else None
    return make_design(args.design, rows=args.rows, cols=args.cols, wbits=args.wbits, act=args.act,
                       group=args.group, scale_bits=args.scale_bits, types=types)


def cmd_rtl(args):
    from .designs import write_rtl, write_tile_rtl
    if args.design == "tile":
        from ..models.config import TileConfig
        verilog, manifest = write_tile_rtl(TileConfig.load(args.config), args.output,
                                           imem_words=args.imem_words)
    else:
        verilog, manifest = write_rtl(_design(args), args.output)
    print(f"wrote {verilog} and {manifest}")


def cmd_synth(args):
    from .synth import synthesize
    design = _design(args)
    if not args.json:
        print(f"synthesizing {design.top} for {args.target} (the first Yosys run compiles its "
              f"WebAssembly, about a minute) ...", file=sys.stderr)
    rep = synthesize(design.component(), design.top, target=args.target, fmax=args.fmax,
                     workdir=args.workdir)
    summary = {"design": args.design, "top": design.top, "target": args.target,
               "config": design.config.to_dict(), "mul_cells": rep.mul_cells, "dsp_cells": rep.dsp_cells,
               "luts": rep.luts, "ffs": rep.ffs, "brams": rep.brams, "fmax_mhz": rep.fmax_mhz,
               "cells": rep.cells, "coarse_cells": rep.coarse_cells}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{design.top} on {args.target}:")
    for key in ("luts", "ffs", "dsp_cells", "mul_cells", "brams"):
        print(f"  {key:10s} {summary[key]}")
    if rep.fmax_mhz is not None:
        print(f"  fmax       {rep.fmax_mhz:.1f} MHz")


def cmd_demo(args):
    from .demo import DemoError, run_demo, run_projection_demo
    if args.projection:  # the array-only demo: one GEMM on the Verilated MixPE array
        if args.config is not None:
            raise DemoError("--projection always runs the array RTL; it takes no --config")
        result = run_projection_demo(args.output, rows=args.rows or 8, cols=args.cols or 8, act=args.act)
        return 0 if result["bit_exact"] and result["cycle_exact"] else 1
    if args.act != "int8":
        raise DemoError("the FFN block needs INT8 activations; --act fp16 runs with --projection")
    default = args.config is None  # the fpga preset with an 8x8 array: a quicker Verilator build
    result = run_demo(args.output, config=args.config or "fpga",
                      rows=args.rows or (8 if default else None), cols=args.cols or (8 if default else None),
                      backend=args.backend)
    return 0 if result["ok"] else 1


def cmd_quant(args):
    from ..compiler.checkpoint import minilm_dir
    from .quant import parse_formats, quant_report, format_table
    formats = parse_formats(args.formats)
    path = args.checkpoint or minilm_dir() / "model.safetensors"
    tensors = [t.strip() for t in args.tensors.split(",")] if args.tensors else None
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
    from ..models.quant import quantize_weights
    cfg = TileConfig.load(args.config)
    rng = np.random.default_rng(args.seed)
    qw = quantize_weights(rng.normal(size=(args.n, args.k)), cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    compiled = lower_linear(cfg, (args.m, args.k), qw, seed=args.seed, out=args.out_format)
    prog = compiled.program
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    prog.save(out)
    lst = out.with_suffix(".lst")
    lst.write_text(listing(prog))
    print(f"linear {args.m}x{args.n}x{args.k} on {args.config}: {len(prog.instructions)} instructions, "
          f"{sum(len(s.data) for s in prog.segments)} bytes of memory image")
    print(f"wrote {out} and {lst}")


def cmd_run(args):
    from ..models.executor import execute
    from ..models.isa import Unit
    from ..models.program import Program
    prog = Program.load(args.program)
    if args.backend == "rtl" and args.timing_only:
        raise CliError("--timing-only is a golden-model mode; the RTL always runs the data")
    rtl = None
    if args.backend == "rtl":
        from .tile_cosim import run_tile
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


def build_parser():
    parser = argparse.ArgumentParser(prog="mixpim", description="LLM-accelerator co-design kit: RTL, "
                                     "golden model, co-simulation, synthesis.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rtl", help="write Verilog and a manifest of a design (a PE, an array, or the tile)")
    _design_options(p, extra=("tile",))
    p.add_argument("--config", default="tiny", help="tile only: a preset (tiny, fpga, npu128) or a "
                   ".json/.toml file (default tiny)")
    p.add_argument("--imem-words", type=int, default=1024, help="tile only: instruction memory depth")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=cmd_rtl)

    p = sub.add_parser("synth", help="synthesize a design with Yosys and report its cells")
    _design_options(p)
    p.add_argument("--target", default="generic", choices=("generic", "ecp5"))
    p.add_argument("--fmax", action="store_true", help="also place and route (ECP5) and report Fmax")
    p.add_argument("--workdir", help="keep Yosys scripts, logs and netlists here")
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
    p.add_argument("--config", default="tiny", help="a preset (tiny, fpga, npu128) or a .json/.toml file")
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

    p = sub.add_parser("demo", help="the embedded default: MiniLM's layer-0 FFN block compiled and run on "
                       "the tile; report, cycle chart and accuracy vs float32")
    p.add_argument("-o", "--output", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--config", default=None, help="a preset (tiny, fpga, npu128) or a .json/.toml file "
                   "(default: the fpga preset with an 8x8 array, W4 group 128)")
    p.add_argument("--rows", type=int, default=None,
                   help="override the array rows (--projection: default 8)")
    p.add_argument("--cols", type=int, default=None,
                   help="override the array columns (--projection: default 8)")
    p.add_argument("--backend", default="rtl", choices=("golden", "rtl"),
                   help="the tile RTL on Verilator compared with the golden model (default; the first "
                   "run Verilates the tile, a few minutes), or the golden model alone")
    p.add_argument("--projection", action="store_true",
                   help="instead: the FFN up-projection alone as one GEMM on the Verilated MixPE array")
    p.add_argument("--act", default="int8", choices=("int8", "fp16"),
                   help="activations (fp16: --projection only)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    from .cosim import CosimError
    from .synth import SynthError
    from .toolchain import ToolchainError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fmax", False) and args.target != "ecp5":
        parser.error("--fmax needs --target ecp5")
    try:
        return args.func(args) or 0
    except (MixpimError, ToolchainError, SynthError) as e:
        print(f"mixpim: error: {e}", file=sys.stderr)
        return 2
    except CosimError as e:
        print(f"mixpim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
