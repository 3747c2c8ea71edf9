"""``mixpim report``: a performance report of a model on a tile configuration (:mod:`.perf`,
:mod:`.perf_report`), with ``--compare`` the NeuPIMs comparison's systems side by side; ``mixpim
sweep``: a grid of such reports (:mod:`.sweep`)."""

import json
import sys

from ..models.errors import MixpimError
from .perf import SYSTEMS, PerfError, Workload, analyze
from .scaleout import map_tasks

__all__ = ["add_report_parser", "cmd_report", "add_sweep_parser", "cmd_sweep", "COMPARE_SYSTEMS"]

#: ``--compare`` systems: how each runs a batched decode step (PIM row-buffer mode, schedule).
COMPARE_SYSTEMS = {
    "npu-only": ("single", "npu"),  # attention on the array, the KV cache in plain DRAM
    "blocked": ("single", "plain"),
    "dual": ("dual", "plain"),  # dual row buffers alone, no interleaving
    "neupims": ("dual", "interleaved"),
}


def add_report_parser(sub):
    """The ``report`` subcommand of the ``mixpim`` parser's subparsers ``sub``."""
    p = sub.add_parser("report", help="a cycle-exact performance report of a whole model (per operator: "
                       "cycles, MACs, bytes, bound, utilization; roofline, breakdown and timeline plots)")
    p.add_argument("model", help="a model preset (llama2-7b, smollm2-135m, ...) or a config.json path")
    p.add_argument("--hw", default="neupims", help="a tile preset or a .json/.toml configuration "
                   "(default neupims)")
    p.add_argument("--mode", required=True, choices=("prefill", "decode"), help="what to time")
    p.add_argument("--batch", type=int, help="decode: requests in the step (default 1; with --trace "
                   "the trace's first B requests)")
    p.add_argument("--ctx", type=int, help="decode: tokens every request has cached")
    p.add_argument("--trace", help="decode: a CSV with a seq_len column, one request per line, each "
                   "timed at the step that decodes its last token (seq_len - 1 cached); 'sharegpt': "
                   "the 512 ShareGPT-derived lengths shipped with the kit")
    p.add_argument("--prompt-len", type=int, help="prefill: the prompt's tokens")
    p.add_argument("--system", choices=SYSTEMS, default=None,
                   help="decode: plain (default: attention on PIM), NeuPIMs' sub-batch interleaving, or npu "
                   "(attention on the array, no PIM)")
    p.add_argument("--compare", help="decode: comma-separated systems to run side by side: "
                   + ", ".join(COMPARE_SYSTEMS))
    p.add_argument("--clock-mhz", type=float, help="clock for latencies and tokens/s")
    p.add_argument("-o", "--output", required=True, help="output folder (report.md, report.json, PNGs)")
    p.add_argument("--json", action="store_true", help="also print report.json to stdout")
    p.set_defaults(func=cmd_report)


def _workload(args):
    """The :class:`~.perf.Workload` the options describe, and the trace's name."""
    from .workload import DEFAULT_TRACE, batch_lengths, load_trace
    decode_only = {"--batch": args.batch, "--ctx": args.ctx, "--trace": args.trace,
                   "--compare": args.compare, "--system": args.system}
    if args.mode == "prefill":
        given = [k for k, v in decode_only.items() if v is not None]
        if given:
            raise PerfError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --mode "
                            f"decode, not prefill")
        if args.prompt_len is None or args.prompt_len < 1:
            raise PerfError("--mode prefill needs --prompt-len P (at least 1)")
        return Workload("prefill", (args.prompt_len,)), None
    if args.prompt_len is not None:
        raise PerfError("--prompt-len applies to --mode prefill, not decode")
    if (args.ctx is None) == (args.trace is None):
        raise PerfError("--mode decode needs --ctx L or --trace FILE (one of them)")
    batch = 1 if args.batch is None else args.batch
    if batch < 1:
        raise PerfError(f"--batch must be at least 1, not {batch}")
    if args.ctx is not None:
        if args.ctx < 0:
            raise PerfError(f"--ctx must be at least 0, not {args.ctx}")
        return Workload("decode", (args.ctx,) * batch), None
    path = DEFAULT_TRACE if args.trace == "sharegpt" else args.trace
    trace = load_trace(path)
    lengths = batch_lengths(trace, batch) if args.batch is not None else trace
    # a request of seq_len tokens is timed at the step that decodes its last token
    return Workload("decode", tuple(n - 1 for n in lengths)), str(args.trace)


def _systems(args, cfg):
    """``{name: (config, system)}`` to run: the one asked for, or those of ``--compare``."""
    if args.compare is None:
        return {args.system or "plain": (cfg, args.system or "plain")}
    if args.system is not None:
        raise PerfError("--system and --compare do not go together (--compare names the systems)")
    names = [t.strip() for t in args.compare.split(",")]
    bad = [n for n in names if n not in COMPARE_SYSTEMS]
    if bad or not names or len(set(names)) != len(names):
        raise PerfError(f"--compare takes distinct names of {', '.join(COMPARE_SYSTEMS)}, not {args.compare!r}")
    return {n: (cfg.in_pim_mode(COMPARE_SYSTEMS[n][0]), COMPARE_SYSTEMS[n][1]) for n in names}


def _analyze(model, config, workload, system):
    """:func:`~.perf.analyze`, or its error's message (in a worker process)."""
    try:
        return analyze(model, config, workload, system=system)
    except MixpimError as e:
        return str(e)


def cmd_report(args):
    from ..compiler.model_zoo import model_config
    from ..models.config import TileConfig
    from .outputs import check_output_dir, write_files
    from .perf_report import plots, render_markdown, report_dict
    from .progress import progress
    mc = model_config(args.model)
    if mc.family not in ("llama", "gpt"):
        raise PerfError(f"{args.model} is a {mc.family} encoder; reports time decoders (LLaMA and GPT "
                        f"families)")
    cfg = TileConfig.load(args.hw)
    if args.clock_mhz is not None and not 0 < args.clock_mhz < float("inf"):
        raise PerfError(f"--clock-mhz must be positive and finite, not {args.clock_mhz}")
    workload, trace = _workload(args)
    systems = _systems(args, cfg)
    out = check_output_dir(args.output)
    with progress(f"timing {args.model} on {args.hw}", len(systems)) as step:  # one process a system
        runs = map_tasks(_analyze, [(mc, c, workload, system) for c, system in systems.values()], done=step)
    results, reports = {}, {}
    for name, run in zip(systems, runs):
        if isinstance(run, str):
            raise PerfError(f"{name}: {run}" if len(systems) > 1 else run)
        results[name] = run
        reports[name] = report_dict(run, hw=args.hw, clock_mhz=args.clock_mhz, trace=trace)
    main = list(systems)[-1]
    report = dict(reports[main])
    compare = reports if len(reports) > 1 else None
    if compare:
        report["compare"] = {n: {"cycles": r["cycles"], "latency": r["latency"],
                                 "ratio": r["cycles"] / reports[main]["cycles"]} for n, r in reports.items()}
    files = {"report.md": render_markdown(report, compare).encode(),
             "report.json": json.dumps(report, indent=1).encode()}
    for name, r in reports.items():  # every compared system's own report, beside the main one
        if compare and name != main:
            files[f"report-{name}.md"] = render_markdown(r).encode()
            files[f"report-{name}.json"] = json.dumps(r, indent=1).encode()
    files.update(plots(report, results[main], compare))
    write_files(out, files)
    if args.json:
        print(json.dumps(report))
    else:
        for n, r in reports.items():
            lat = r["latency"]
            if workload.mode == "decode":  # throughput: tokens/s with a clock, else per million cycles
                extra = (f", {lat['tokens_per_s']:,.1f} tokens/s" if lat else
                         f", {1e6 * workload.batch / r['cycles']:.3g} tokens per million cycles")
            else:
                extra = "" if lat is None else f", time to first token {lat['time_to_first_token_ms']:.3f} ms"
            if compare:
                extra += f" (throughput {reports[main]['cycles'] / r['cycles']:.2f}x {main})"
            print(f"{n}: {r['cycles']:,} cycles{extra}")
        print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0


def add_sweep_parser(sub):
    """The ``sweep`` subcommand."""
    p = sub.add_parser("sweep", help="a grid of tile configurations, models and workloads, each point a "
                       "performance report; a table of all points and a Pareto plot (throughput vs LUTs)")
    p.add_argument("spec", help="the grid: a .json or .toml file (see docs/results.md, 'Sweeps')")
    p.add_argument("-o", "--output", required=True, help="output folder (points.csv, points.json, "
                   "pareto.png, points/N.json and .md)")
    p.add_argument("--jobs", type=int, help="local processes (default: the CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the points as Ray tasks on the cluster at "
                   "ADDRESS ('local': a Ray instance on this machine)")
    p.add_argument("--json", action="store_true", help="print points.json to stdout")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args):
    from pathlib import Path

    from .inputs import read_text_input
    from .outputs import check_output_dir, write_files
    from .perf_report import render_markdown
    from .progress import progress
    from .sweep import SweepError, expand, load_spec, pareto, pareto_png, pe_costs, row_of, run_points, table_csv
    fmt = Path(args.spec).suffix.lower().lstrip(".")
    if fmt not in ("json", "toml"):
        raise SweepError(f"the sweep spec {args.spec!r} must be a .json or .toml file")
    if args.jobs is not None and args.jobs < 1:
        raise SweepError(f"--jobs must be at least 1, not {args.jobs}")
    if args.jobs is not None and args.ray is not None:
        raise SweepError("--jobs and --ray do not go together (Ray schedules the points itself)")
    spec = load_spec(read_text_input(args.spec, "sweep spec"), fmt)
    points, models = expand(spec)
    out = check_output_dir(args.output)
    costs = pe_costs(p.config.pe for p in points)
    where = "on Ray" if args.ray is not None else "locally"
    with progress(f"sweeping {len(points)} points {where}", len(points)) as step:
        results = run_points(points, models, jobs=args.jobs, ray_address=args.ray, done=step)
    rows = [row_of(p, r, costs) for p, (r, _) in zip(points, results)]
    front = pareto(rows)
    files = {"points.csv": table_csv(rows).encode(),
             "points.json": json.dumps({"points": rows, "pareto": front, "pe_costs": costs}, indent=1).encode(),
             "pareto.png": pareto_png(rows)}
    for p, (_, rep) in zip(points, results):
        if rep is not None:
            files[f"points/{p.index}.json"] = json.dumps(rep, indent=1).encode()
            files[f"points/{p.index}.md"] = render_markdown(rep).encode()
    write_files(out, files)
    if args.json:
        print(json.dumps({"points": rows, "pareto": front}))
    else:
        for r in rows:
            what = f"{r['cycles']:,} cycles" if r["cycles"] else f"error: {r['error']}"
            hw = "".join(f" {k}={v}" for k, v in points[r["point"]].hw)
            print(f"point {r['point']}: {r['model']}{hw} {r['system']} batch {r['batch']}: {what}, "
                  f"{r['luts']:,} LUTs{' (Pareto)' if r['point'] in front else ''}")
    return 0 if all(r["cycles"] for r in rows) else 1
