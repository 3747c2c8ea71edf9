"""Compiler (compiler/): a quantized Linear layer lowered to a tile program runs on the golden
executor bit-exact against mixpe_gemm, race-free, with DMA overlapping the GEMMs."""

import numpy as np
import pytest

from mixpim.compiler import (TUNE_BUDGET, TUNE_PLANS, CompileError, compile_linear, ffn_reference,
                             lower_ffn, lower_linear, plan_linear, schedule_linear)
from mixpim.models.config import TileConfig, preset
from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.executor import execute
from mixpim.models.isa import Opcode, Unit
from mixpim.models.mixpe import ArrayParams, mixpe_gemm
from mixpim.models.program import Program
from mixpim.models.quant import quantize_weights

TINY = preset("tiny")
FPGA = preset("fpga")
A16 = TileConfig(rows=2, cols=3, pe="mixpe-w4a16", group=32, wbits=3, scale_bits=12,
                 act_words=256, wgt_words=256, meta_words=64, acc_words=64, vparam_words=128,
                 dram_banks=4, dram_rows=256, dram_row_bytes=256, dram_bus_bytes=8)


def weights(cfg, n, k, seed=0):
    rng = np.random.default_rng(seed)
    return quantize_weights(rng.normal(size=(n, k)), cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)


def run_checked(cl):
    res = execute(cl.program)
    assert res.ok, res.timing.message
    assert res.races == ()
    return res


@pytest.mark.parametrize("cfg, m, n, k", [
    (TINY, 1, 4, 32),        # one tile, one group
    (TINY, 7, 13, 70),       # ragged in every dimension
    (TINY, 9, 10, 300),      # K split into chunks that accumulate
    (TINY, 4, 3, 5),         # K shorter than a group, N shorter than the array
    (FPGA, 5, 37, 300),
    (FPGA, 33, 20, 129),
    (A16, 5, 7, 70),         # FP16 activations, 3-bit weights, odd columns
], ids=lambda v: v if isinstance(v, int) else None)
def test_linear_acc_bit_exact(cfg, m, n, k):
    qw = weights(cfg, n, k)
    cl = lower_linear(cfg, (m, k), qw, seed=m + n)
    res = run_checked(cl)
    want = mixpe_gemm(ArrayParams.from_config(cfg), cl.act, qw).acc
    assert cl.layout.output(res).tolist() == want.tolist()
    # every word the program stores is part of the output
    assert [(s.base, s.size) for s in res.outputs] == \
        [(cl.layout.y, m * cl.layout.nb * cfg.acc_word_bytes)]


@pytest.mark.parametrize("order", ["act", "wgt"])
@pytest.mark.parametrize("chunk", [None, 1])
def test_loop_orders_and_chunks_agree(order, chunk):
    cfg = TINY
    qw = weights(cfg, 11, 100, seed=1)
    cl = lower_linear(cfg, (10, 100), qw, seed=2, order=order, chunk_groups=chunk)
    assert cl.layout.order == order
    res = run_checked(cl)
    assert np.array_equal(cl.layout.output(res), cl.reference())


@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("cfg, m, n, k", [(TINY, 7, 13, 70), (TINY, 9, 6, 300), (FPGA, 20, 40, 300)],
                         ids=["tiny-7x13x70", "tiny-9x6x300", "fpga-20x40x300"])
def test_linear_requant_bit_exact_and_accurate(cfg, m, n, k, per_token):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(m, k)) * rng.uniform(0.5, 2, size=(m, 1))
    if per_token:
        xs = np.abs(x).max(axis=1) / 127
    else:
        xs = float(np.abs(x).max() / 127)
    act = np.clip(np.rint(x / np.reshape(xs, (-1, 1))), -127, 127).astype(np.int8)
    qw = weights(cfg, n, k, seed=6)
    cl = lower_linear(cfg, act, qw, out="int8", x_scale=xs)
    res = run_checked(cl)
    y = cl.layout.output(res)
    assert y.tolist() == cl.reference().tolist()  # vec_apply(REQUANT, mixpe_gemm(...))
    ref = x @ qw.dequantize().T
    cos = (y.reshape(-1) * 1.0) @ ref.reshape(-1) / np.linalg.norm(y) / np.linalg.norm(ref)
    assert cos > 0.995


def test_double_buffering_overlaps_dma_and_gemm():
    cfg = FPGA
    qw = weights(cfg, 64, 512)
    prog = compile_linear(cfg, (16, 512), qw, seed=0)
    res = execute(prog, timing_only=True)
    t = res.timing
    assert t.error == 0
    busy = t.busy
    assert t.cycles < busy[Unit.DMA] + busy[Unit.GEMM]
    # some LOAD runs while a GEMM streams
    ins = prog.instructions
    loads = [p for p, i in enumerate(ins) if i.op == Opcode.LOAD]
    gemms = [p for p, i in enumerate(ins) if i.op == Opcode.GEMM]
    overlap = any(t.start[lp] <= t.end[gp] and t.start[gp] <= t.end[lp] for lp in loads for gp in gemms)
    assert overlap


def test_program_round_trip(tmp_path):
    cfg = TINY
    qw = weights(cfg, 6, 70)
    prog = compile_linear(cfg, (5, 70), qw, seed=3)
    path = tmp_path / "linear.mxp"
    prog.save(path)
    again = Program.load(path)
    assert again.instructions == prog.instructions
    a, b = execute(prog), execute(again)
    assert np.array_equal(a.dram, b.dram) and a.status == b.status
    assert set(prog.symbols) >= {"x", "w", "meta", "y"}


def test_explicit_activations_and_seeded_shapes():
    cfg = TINY
    qw = weights(cfg, 4, 40)
    p1 = compile_linear(cfg, (3, 40), qw, seed=9)
    p2 = compile_linear(cfg, (3, 40), qw, seed=9)
    assert p1.to_bytes() == p2.to_bytes()
    with pytest.raises(ShapeError, match="K=40"):
        compile_linear(cfg, np.zeros((3, 41), np.int8), qw)


def test_errors_for_layers_that_do_not_fit():
    cfg = TINY.replace(acc_headroom=1)  # at most 2 groups
    with pytest.raises(CompileError, match="accumulator headroom"):
        compile_linear(cfg, (2, 65), weights(cfg, 4, 65))
    cfg = TINY.replace(act_words=32, wgt_words=32)  # one group: no room for two buffers
    with pytest.raises(CompileError, match="double-buffer one group"):
        compile_linear(cfg, (8, 32), weights(cfg, 4, 32))  # two token blocks to stream
    compile_linear(cfg, (4, 32), weights(cfg, 4, 32))  # one piece of each operand: no double buffer
    cfg = TINY
    with pytest.raises(CompileError, match="DRAM"):
        compile_linear(cfg, (4, 32), weights(cfg, 40000, 32))
    with pytest.raises(CompileError, match="order"):
        compile_linear(cfg, (4, 32), weights(cfg, 4, 32), order="diagonal")
    with pytest.raises(CompileError, match="INT8"):
        compile_linear(A16, (2, 32), weights(A16, 3, 32), out="int8")


def utilization(cfg, m, n, k, cycles):
    """MACs / (PEs x cycles): the array's share of the whole program's time."""
    return m * n * k / (cfg.rows * cfg.cols * cycles)


@pytest.mark.parametrize("out", ["acc", "int8"])
@pytest.mark.parametrize("m, n, k", [(16, 16, 128), (16, 32, 256), (32, 16, 128)])
def test_linear_utilization_at_four_times_the_array(m, n, k, out):
    """M, N >= 4 x rows / cols and K >= 4 groups on tiny: >= 90 % of the cycles the array is busy
    (the golden cycle model is the RTL's), and the program is still bit-exact and race-free."""
    cfg = TINY
    qw = weights(cfg, n, k, seed=3)
    cl = lower_linear(cfg, (m, k), qw, seed=4, out=out)
    res = run_checked(cl)
    assert np.array_equal(cl.layout.output(res), cl.reference())
    assert utilization(cfg, m, n, k, res.status.cycles) >= 0.90


def block_sizes(total):
    """Blocks per side the tuner considers: the powers of two below ``total``, and ``total``."""
    return sorted({1 << e for e in range(total.bit_length()) if 1 << e < total} | {total})


def ranked_plans(cfg, m, n, k, out, per_token):
    """Every plan that fits, each pinned through ``plan_linear``, in the cost model's order
    (lowest estimate first; ties: fewer chunks, smaller blocks, ``act`` outer first)."""
    g = -(-k // cfg.group)
    mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
    plans = []
    for order in ("act", "wgt"):
        for gc in sorted({-(-g // chunks) for chunks in range(1, g + 1)}):
            for bm in block_sizes(mb):
                for bn in block_sizes(nb):
                    try:
                        plans.append(plan_linear(cfg, m, n, k, out=out, per_token=per_token,
                                                 order=order, chunk_groups=gc, block=(bm, bn)))
                    except CompileError:
                        continue
    return sorted(plans, key=lambda p: (round(p.estimate), -p.gc, p.bm * p.bn, p.outer != "act"))


def cycles(prog):
    return execute(prog, timing_only=True).status.cycles


A16_DEEP = A16.replace(queue_depth=8)
TINY_Q1 = TINY.replace(queue_depth=1)


@pytest.mark.parametrize("cfg, m, n, k, out, per_token", [
    (TINY, 9, 10, 300, "acc", False),
    (TINY, 13, 9, 200, "int8", True),
    (TINY_Q1, 6, 9, 130, "int8", False),
    (A16_DEEP, 5, 8, 130, "acc", False),
    (FPGA, 40, 40, 300, "int8", False),
], ids=["tiny-acc", "tiny-per-token", "queue-1", "a16-queue-8", "fpga-int8"])
def test_every_plan_is_bit_exact_and_race_free(cfg, m, n, k, out, per_token):
    """Whatever plan the tuner could pick (block shape, chunking, loop order), the schedule is
    correct: tokens order every conflicting access and never overflow."""
    qw = weights(cfg, n, k, seed=7)
    xs = np.linspace(0.5, 2, m) if per_token else (1.0 if out == "int8" else None)
    plans = ranked_plans(cfg, m, n, k, out, per_token)
    assert len(plans) > 3
    for plan in plans[::max(1, len(plans) // 8)]:
        cl = lower_linear(cfg, (m, k), qw, seed=8, out=out, x_scale=xs, order=plan.outer,
                          chunk_groups=plan.gc, block=(plan.bm, plan.bn), tune=False)
        assert (cl.layout.plan.bm, cl.layout.plan.bn, cl.layout.plan.gc) == (plan.bm, plan.bn, plan.gc)
        res = run_checked(cl)
        assert np.array_equal(cl.layout.output(res), cl.reference()), plan


@pytest.mark.parametrize("cfg, m, n, k, out, per_token", [
    (TINY, 7, 13, 70, "acc", False), (TINY, 9, 6, 300, "int8", True), (FPGA, 20, 40, 300, "int8", False),
    (A16, 5, 7, 70, "acc", False)])
def test_schedule_linear_builds_the_same_instructions(cfg, m, n, k, out, per_token):
    """The shape-only path (no operands, for full-size layers) emits exactly the program's
    instructions and symbols."""
    xs = np.linspace(0.5, 2, m) if per_token else (1.0 if out == "int8" else None)
    prog = compile_linear(cfg, (m, k), weights(cfg, n, k), seed=1, out=out, x_scale=xs)
    shape_only = schedule_linear(cfg, m, n, k, out=out, per_token=per_token)
    assert shape_only.instructions == prog.instructions
    assert shape_only.symbols == prog.symbols and shape_only.segments == ()


TUNE_SHAPES = [
    (TINY, 7, 13, 70, "int8", False), (TINY, 33, 20, 129, "int8", False),
    (TINY, 16, 16, 128, "acc", False), (FPGA, 9, 10, 300, "acc", False),
    (FPGA, 20, 40, 300, "int8", True), (FPGA, 64, 64, 512, "int8", False),
]


@pytest.mark.parametrize("cfg, m, n, k, out, per_token", TUNE_SHAPES,
                         ids=[f"{'tiny' if c is TINY else 'fpga'}-{m}x{n}x{k}-{o}{'-tok' if t else ''}"
                              for c, m, n, k, o, t in TUNE_SHAPES])
def test_tuning_picks_the_fastest_of_the_best_estimates(cfg, m, n, k, out, per_token):
    """The tuned schedule takes exactly as many cycles as the fastest of the cost model's
    ``TUNE_PLANS`` best plans, each scheduled alone (pinned, untuned) and run on the cycle model."""
    ranked = ranked_plans(cfg, m, n, k, out, per_token)
    assert ranked[0] == plan_linear(cfg, m, n, k, out=out, per_token=per_token)
    best = ranked[:TUNE_PLANS]
    progs = [schedule_linear(cfg, m, n, k, out=out, per_token=per_token, order=p.outer,
                             chunk_groups=p.gc, block=(p.bm, p.bn), tune=False) for p in best]
    # the instruction budget does not cut these candidates short (its estimate stays within a
    # few times the real instruction counts)
    assert 3 * sum(len(prog.instructions) for prog in progs) <= TUNE_BUDGET
    tuned = cycles(schedule_linear(cfg, m, n, k, out=out, per_token=per_token))
    assert tuned == min(cycles(prog) for prog in progs)


@pytest.mark.parametrize("cfg, m, n, k, out", [
    (TINY, 7, 13, 70, "int8"), (FPGA, 64, 64, 512, "int8"), (FPGA, 9, 10, 300, "acc"),
], ids=["tiny-7x13x70-int8", "fpga-64x64x512-int8", "fpga-9x10x300-acc"])
def test_tuning_beats_the_cost_models_first_choice(cfg, m, n, k, out):
    """Shapes (found by experiment) where the cost model's first plan is not the fastest: the
    tuned schedule is strictly faster than the untuned one."""
    untuned = cycles(schedule_linear(cfg, m, n, k, out=out, tune=False))
    tuned = cycles(schedule_linear(cfg, m, n, k, out=out))
    assert tuned < untuned


# -- FFN block ---------------------------------------------------------------------------------

def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def run_ffn(cf):
    res = execute(cf.program)
    assert res.ok, res.timing.message
    assert res.races == ()
    y = cf.output(res)
    assert y.tolist() == cf.reference().tolist()
    return y


@pytest.mark.parametrize("cfg, m, d, f", [(TINY, 6, 40, 70), (FPGA, 9, 64, 256)], ids=["tiny", "fpga"])
def test_ffn_random_bit_exact_and_close_to_float(cfg, m, d, f):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(m, d)) * rng.uniform(0.3, 3, size=(m, 1))  # tokens of different ranges
    w1 = rng.normal(size=(f, d)) / np.sqrt(d)
    w2 = rng.normal(size=(d, f)) / np.sqrt(f)
    cf = lower_ffn(cfg, x, w1, w2)
    y = run_ffn(cf)
    assert cosine(cf.dequantize(y), ffn_reference(x, w1, w2)) > 0.995
    assert cf.x_scale.shape == cf.out_scale.shape == (m,)
    assert "x_res" in cf.program.symbols  # per-token output scales differ from the input's


def test_ffn_given_scales_share_the_residual():
    cfg = TINY
    rng = np.random.default_rng(1)
    x, w1, w2 = rng.normal(size=(5, 40)), rng.normal(size=(70, 40)) / 7, rng.normal(size=(40, 70)) / 9
    cf = lower_ffn(cfg, x, w1, w2, x_scale=0.05, out_scale=0.05)  # per tensor, one copy of X
    assert "x_res" not in cf.program.symbols and np.array_equal(cf.act, cf.res)
    run_ffn(cf)
    scales = np.linspace(0.02, 0.06, 5)
    cf = lower_ffn(cfg, x, w1, w2, x_scale=scales)  # given input scales, calibrated output scales
    assert np.array_equal(cf.x_scale, scales)
    run_ffn(cf)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(x_scale=np.ones(4)), ShapeError, r"x_scale must be a float or have shape \(5,\)"),
    (dict(out_scale=-1.0), RangeError, "out_scale must be positive"),
    (dict(x_scale=np.array([1, 1, np.nan, 1, 1])), RangeError, "x_scale must be positive and finite"),
])
def test_ffn_rejects_bad_scales(kwargs, error, message):
    rng = np.random.default_rng(2)
    x, w1, w2 = rng.normal(size=(5, 40)), rng.normal(size=(70, 40)), rng.normal(size=(40, 70))
    with pytest.raises(error, match=message):
        lower_ffn(TINY, x, w1, w2, **kwargs)


def test_ffn_minilm_layer0_real_sentence():
    """The issue's acceptance: MiniLM's layer-0 FFN on a tokenized sentence, >= 0.99 cosine vs
    float32 (per-tensor scales, the first version: 0.935 on this sentence)."""
    ck = pytest.importorskip("mixpim.compiler.checkpoint")
    from mixpim.sim.demo import DEFAULT_SENTENCE, ffn_weights, minilm_activations
    try:
        model = ck.minilm_dir()
    except ck.CheckpointError as e:
        pytest.skip(str(e))
    x, _ = minilm_activations(model, DEFAULT_SENTENCE)
    w1, w2 = ffn_weights(model, 0)
    cf = lower_ffn(FPGA, x, w1, w2)
    y = run_ffn(cf)
    assert cosine(cf.dequantize(y), ffn_reference(x, w1, w2)) >= 0.99
    # the old per-tensor, shared-residual scheme on the same data stays far below
    s = float(max(np.abs(x).max(), np.abs(ffn_reference(x, w1, w2)).max()) / 127)
    old = lower_ffn(FPGA, x, w1, w2, x_scale=s, out_scale=s)
    assert cosine(old.dequantize(run_ffn(old)), ffn_reference(x, w1, w2)) < 0.95
