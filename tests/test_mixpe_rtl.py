"""cocotb/Verilator regression of the MixPE and baseline PEs and arrays against the golden model.

Every array run asserts (inside the cocotb test) that each output beat equals the golden model's
bit for bit and that the first-output latency and total cycle count equal the golden cycle model.
"""

import numpy as np
import pytest

from mixpim.models.config import TileConfig
from mixpim.models.mixpe import ArrayParams
from mixpim.models.numerics import FixedScales, quantize_act_int8
from mixpim.models.quant import QuantizedWeights, num_groups, quantize_weights
from mixpim.sim.array_cosim import make_pe_case, run_array, run_pe
from mixpim.sim.cosim import CosimFailure
from helpers import check_cosim_run


def _operands(cfg, m, n, k, *, seed, bits=None, symmetric=False):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, k)) * rng.uniform(0.2, 3.0, size=(n, 1))
    x = rng.normal(size=(m, k)) * 2.0
    qw = quantize_weights(w, bits or cfg.wbits, cfg.group, scale_bits=cfg.scale_bits, symmetric=symmetric)
    act = quantize_act_int8(x)[0] if cfg.act_format == "int8" else x.astype(np.float16)
    return act, qw


def _extreme_operands(cfg, m, n, k, *, seed):
    """Operands at the ends of every range: activations -128/127 (FP16: +-max, subnormals, +-0),
    codes and zero points 0 or 2**wbits - 1, scales 0, 1 or the largest mantissa, and whole groups
    of all-negative weights (code 0, zero point at the top)."""
    rng = np.random.default_rng(seed)
    top = (1 << cfg.wbits) - 1
    ng = num_groups(k, cfg.group)
    codes = rng.choice([0, top], size=(n, k)).astype(np.uint8)
    zeros = rng.choice([0, top], size=(n, ng)).astype(np.int64)
    neg = rng.random((n, ng)) < 0.3
    zeros[neg] = top
    codes[np.repeat(neg, cfg.group, axis=1)[:, :k]] = 0
    mant = rng.choice([0, 1, (1 << cfg.scale_bits) - 1], size=(n, ng))
    qw = QuantizedWeights(codes, zeros, FixedScales(mant, np.zeros(n, np.int64), cfg.scale_bits),
                          cfg.wbits, cfg.group, False)
    if cfg.act_format == "int8":
        act = rng.choice([-128, 127], size=(m, k)).astype(np.int8)
    else:
        pool = np.array([0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x0000, 0x8000], np.uint16)
        act = rng.choice(pool, size=(m, k)).view(np.float16)
    return act, qw


ARRAYS = [
    # (config, M, N, K): several R x C, group sizes, activation formats; M, N, K not multiples
    pytest.param(TileConfig(rows=2, cols=3, pe="mixpe-w4a8", group=32), 5, 7, 70, id="mixpe-a8-2x3-g32"),
    pytest.param(TileConfig(rows=4, cols=4, pe="mixpe-w4a8", group=64), 9, 6, 150, id="mixpe-a8-4x4-g64"),
    pytest.param(TileConfig(rows=8, cols=8, pe="mixpe-w4a8", group=128), 8, 16, 256, id="mixpe-a8-8x8-g128"),
    pytest.param(TileConfig(rows=3, cols=5, pe="mixpe-w4a16", group=32), 4, 11, 100, id="mixpe-a16-3x5-g32"),
    pytest.param(TileConfig(rows=4, cols=4, pe="mixpe-w4a16", group=128), 5, 5, 200, id="mixpe-a16-4x4-g128"),
    pytest.param(TileConfig(rows=2, cols=2, pe="mixpe-w4a8", wbits=2, group=32), 3, 3, 64, id="mixpe-a8-2x2-w2"),
    pytest.param(TileConfig(rows=4, cols=4, pe="baseline-w4a8", group=64), 9, 6, 150, id="baseline-a8-4x4-g64"),
    pytest.param(TileConfig(rows=3, cols=5, pe="baseline-w4a16", group=32), 4, 11, 100, id="baseline-a16-3x5-g32"),
]


@pytest.mark.parametrize("cfg,m,n,k", ARRAYS)
def test_array_random(cfg, m, n, k):
    check_cosim_run(run_array(cfg, *_operands(cfg, m, n, k, seed=1)))


@pytest.mark.parametrize("cfg,m,n,k", ARRAYS)
def test_array_extremes(cfg, m, n, k):
    check_cosim_run(run_array(cfg, *_extreme_operands(cfg, m, n, k, seed=2)))


@pytest.mark.parametrize("bits,symmetric", [(2, False), (3, False), (3, True), (4, True)])
def test_array_narrow_weights_on_4bit_hardware(bits, symmetric):
    cfg = TileConfig(rows=4, cols=4, pe="mixpe-w4a8", group=64)
    check_cosim_run(run_array(cfg, *_operands(cfg, 6, 9, 130, seed=bits, bits=bits, symmetric=symmetric)))


@pytest.mark.parametrize("cfg", [TileConfig(rows=2, cols=3, pe="mixpe-w4a8", group=32),
                                 TileConfig(rows=3, cols=5, pe="mixpe-w4a16", group=32)], ids=["a8", "a16"])
def test_array_with_bubbles_and_backpressure(cfg):
    check_cosim_run(run_array(cfg, *_operands(cfg, 7, 8, 96, seed=5), stall_seed=11))


def test_array_fp16_nonfinite_flag():
    cfg = TileConfig(rows=3, cols=5, pe="mixpe-w4a16", group=32)
    act, qw = _operands(cfg, 4, 5, 64, seed=6)
    act[1, 3] = np.inf
    act[2, 40] = np.nan
    run = run_array(cfg, act, qw)
    check_cosim_run(run)
    assert run.measured["nonfinite"] == 1 and list(run.golden.nonfinite) == [False, True, True, False]


@pytest.mark.parametrize("perturb", ["output", "cycles"])
def test_comparison_catches_a_perturbed_golden(perturb):
    cfg = TileConfig(rows=2, cols=3, pe="mixpe-w4a8", group=32)
    with pytest.raises(CosimFailure, match="differs from golden" if perturb == "output" else "total: rtl"):
        run_array(cfg, *_operands(cfg, 3, 4, 40, seed=7), perturb=perturb)


PES = [
    pytest.param(TileConfig(rows=1, cols=1, pe="mixpe-w4a8", group=32), id="mixpe-a8-g32"),
    pytest.param(TileConfig(rows=1, cols=1, pe="mixpe-w4a16", group=64), id="mixpe-a16-g64"),
    pytest.param(TileConfig(rows=1, cols=1, pe="baseline-w4a8", group=32), id="baseline-a8-g32"),
    pytest.param(TileConfig(rows=1, cols=1, pe="baseline-w4a16", group=32), id="baseline-a16-g32"),
]


@pytest.mark.parametrize("cfg", PES)
@pytest.mark.parametrize("extremes", [False, True], ids=["random", "extremes"])
def test_pe(cfg, extremes):
    case = make_pe_case(ArrayParams.from_config(cfg), groups=6, tile_groups=2, seed=3, extremes=extremes)
    measured = run_pe(cfg, case)
    assert measured["results"] == 6 if cfg.family == "mixpe" else measured["results"] == 3
