"""``mixpim fuzz``: large randomized RTL-vs-golden regressions on the sweep engine's scale-out
(:mod:`.scaleout`: local processes or Ray tasks). Seeded random programs
(:func:`~.random_program.random_program`: valid ones and ones designed to raise each error code)
run in batches on the Verilated tile (:func:`~.tile_cosim.run_programs`: one simulator session
per batch, every batch on one shared cached build) and on the golden model; a program passes when
RTL equals golden bit for bit and cycle for cycle and the golden model reports the error code the
program was designed for."""

import json

from ..models.errors import MixpimError

__all__ = ["FuzzError", "fuzz_batch", "add_fuzz_parser", "cmd_fuzz", "MAX_PROGRAMS"]

#: Most programs one ``fuzz`` run takes.
MAX_PROGRAMS = 1_000_000


class FuzzError(MixpimError, ValueError):
    """Bad ``fuzz`` options."""


def fuzz_batch(config, seeds, imem_words, build_root):
    """One batch of seeded random programs on the RTL tile and golden: a result dict per seed."""
    from .random_program import random_program
    from .tile_cosim import run_programs
    progs = [random_program(config, s) for s in seeds]
    runs = run_programs(config, [(p.instructions, p.segments) for p in progs], imem_words=imem_words,
                        build_root=build_root)
    out = []
    for p, r in zip(progs, runs):
        got = r.golden.status.error
        out.append({"seed": p.seed, "variant": p.variant, "error": got.name, "bit_exact": r.bit_exact,
                    "cycle_exact": r.cycle_exact, "designed": got == p.expected_error,
                    "cycles": r.golden.status.cycles, "differences": r.report()[:4000]})
    return out


def add_fuzz_parser(sub):
    """The ``fuzz`` subcommand."""
    p = sub.add_parser("fuzz", help="randomized RTL-vs-golden regression: seeded random programs on the "
                       "Verilated tile and the golden model (bit and cycle exact), locally or on Ray")
    p.add_argument("--programs", type=int, required=True, help="how many programs")
    p.add_argument("--config", default="tiny", help="a tile preset or file small enough for RTL (default tiny)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--batch", type=int, default=50, help="programs per simulator session (default 50)")
    p.add_argument("--jobs", type=int, help="local processes (default: the CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the batches as Ray tasks on the cluster at ADDRESS "
                   "('local': a Ray instance on this machine)")
    p.add_argument("-o", "--output", help="write fuzz.json (every program's result) into this folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_fuzz)


def cmd_fuzz(args):
    from ..models.config import TileConfig
    from .cosim import default_build_root
    from .outputs import check_output_dir, write_files
    from .progress import progress
    from .random_program import random_program
    from .scaleout import map_tasks
    from .tile_cosim import imem_words_for, rtl_size_problem
    for name, v, lo, hi in (("--programs", args.programs, 1, MAX_PROGRAMS), ("--batch", args.batch, 1, 10_000),
                            ("--seed", args.seed, 0, 2 ** 63 - 1)):
        if not lo <= v <= hi:
            raise FuzzError(f"{name} must be in {lo}..{hi:,}, not {v}")
    if args.jobs is not None and args.jobs < 1:
        raise FuzzError(f"--jobs must be at least 1, not {args.jobs}")
    if args.jobs is not None and args.ray is not None:
        raise FuzzError("--jobs and --ray do not go together (Ray schedules the batches itself)")
    cfg = TileConfig.load(args.config)
    problem = rtl_size_problem(cfg)
    if problem:
        raise FuzzError(f"--config: {problem}; fuzz runs the RTL tile")
    out = None if args.output is None else check_output_dir(args.output)
    seeds = list(range(args.seed, args.seed + args.programs))
    # one instruction memory for every batch: they all share one Verilator build
    imem = imem_words_for(max(len(random_program(cfg, s).instructions) for s in seeds))
    root = default_build_root()
    batches = [(cfg, seeds[i:i + args.batch], imem, root) for i in range(0, len(seeds), args.batch)]
    where = "on Ray" if args.ray is not None else "locally"
    with progress(f"{len(seeds)} random programs on the RTL tile {where}", len(batches)) as step:
        results = [r for b in map_tasks(fuzz_batch, batches, jobs=args.jobs, ray_address=args.ray, done=step)
                   for r in b]
    bad = [r for r in results if not (r["bit_exact"] and r["cycle_exact"] and r["designed"])]
    codes = {}
    for r in results:
        codes[r["error"]] = codes.get(r["error"], 0) + 1
    summary = {"programs": len(results), "config": args.config, "first_seed": args.seed, "failed": len(bad),
               "failed_seeds": [r["seed"] for r in bad][:100], "error_codes": codes,
               "cycles": sum(r["cycles"] for r in results)}
    if out is not None:
        write_files(out, {"fuzz.json": json.dumps({"summary": summary, "programs": results}, indent=1).encode()})
    if args.json:
        print(json.dumps(summary))
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(codes.items()))
        print(f"{len(results)} programs ({kinds}): "
              + ("RTL == golden, bit and cycle exact, every designed error code" if not bad else
                 f"{len(bad)} FAILED (seeds {', '.join(map(str, summary['failed_seeds'][:10]))})"))
        for r in bad[:3]:
            print(f"seed {r['seed']} ({r['variant']}): {r['differences'].splitlines()[0] if r['differences'] else 'error code ' + r['error']}")
    return 0 if not bad else 1
