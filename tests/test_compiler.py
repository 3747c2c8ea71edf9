"""Compiler (compiler/): a quantized Linear layer lowered to a tile program runs on the golden
executor bit-exact against mixpe_gemm, race-free, with DMA overlapping the GEMMs."""

import numpy as np
import pytest

from mixpim.compiler import CompileError, compile_linear, ffn_reference, lower_ffn, lower_linear
from mixpim.models.config import TileConfig, preset
from mixpim.models.errors import ShapeError
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
        compile_linear(cfg, (2, 32), weights(cfg, 4, 32))
    cfg = TINY
    with pytest.raises(CompileError, match="DRAM"):
        compile_linear(cfg, (4, 32), weights(cfg, 40000, 32))
    with pytest.raises(CompileError, match="order"):
        compile_linear(cfg, (4, 32), weights(cfg, 4, 32), order="diagonal")
    with pytest.raises(CompileError, match="INT8"):
        compile_linear(A16, (2, 32), weights(A16, 3, 32), out="int8")


# -- FFN block ---------------------------------------------------------------------------------

def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


@pytest.mark.parametrize("cfg, m, d, f", [(TINY, 6, 40, 70), (FPGA, 9, 64, 256)], ids=["tiny", "fpga"])
def test_ffn_random_bit_exact_and_close_to_float(cfg, m, d, f):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(m, d))
    w1 = rng.normal(size=(f, d)) / np.sqrt(d)
    w2 = rng.normal(size=(d, f)) / np.sqrt(f)
    cf = lower_ffn(cfg, x, w1, w2)
    res = execute(cf.program)
    assert res.ok, res.timing.message
    assert res.races == ()
    y = cf.output(res)
    assert y.tolist() == cf.reference().tolist()
    assert cosine(y * cf.x_scale, ffn_reference(x, w1, w2)) > 0.995


def test_ffn_minilm_layer0():
    ck = pytest.importorskip("mixpim.compiler.checkpoint")
    try:
        path = ck.minilm_dir() / "model.safetensors"
    except ck.CheckpointError as e:
        pytest.skip(str(e))
    names = ["encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.output.dense.weight"]
    t = ck.load_tensors(path, names)
    x = np.random.default_rng(0).normal(size=(8, 384)).astype(np.float32)
    cf = lower_ffn(FPGA, x, t[names[0]], t[names[1]])
    res = execute(cf.program)
    assert res.ok and res.races == ()
    y = cf.output(res)
    assert y.tolist() == cf.reference().tolist()
    assert cosine(y * cf.x_scale, ffn_reference(x, t[names[0]], t[names[1]])) > 0.97
