"""cocotb/Verilator regression of the BitMoD arrays and PE against the golden model.

Every array run asserts (inside the cocotb test) that each output beat equals the golden model's bit
for bit, that the sticky flags match, and (without stalls) that the first-output latency and the
total cycle count equal :func:`mixpim.models.bitmod_gemm.bitmod_timing` exactly.

Five Verilator builds: three arrays covering the 3-bit and 4-bit BitMoD mixtures and the INT8 mode
(FP16 activations, groups of 32/64/128), one array mixing FP4, INT4, FLINT4 and a BitMoD variant
with INT8 activations, and one PE.
"""

import numpy as np
import pytest

from mixpim.compiler.checkpoint import load_tensors, minilm_dir
from mixpim.models.bitmod import BitmodWeights, dtype, quantize, quantize_bitmod
from mixpim.models.bitmod_gemm import BitmodParams, bitmod_timing
from mixpim.models.numerics import FixedScales
from mixpim.models.quant import num_groups
from mixpim.sim.bitmod_cosim import make_bitmod_pe_case, run_bitmod_array, run_bitmod_pe
from mixpim.sim.cli import main
from mixpim.sim.cosim import CosimFailure
from mixpim.sim.designs import make_design, write_rtl
from mixpim.sim.synth import synthesize
from helpers import check_cosim_run, mixed_weights, verilator_lint

W4 = BitmodParams(rows=4, cols=4, group=32, wbits=4)   # FP4_{ER,EA}_{POS,NEG}, 2 cycles per beat
W3 = BitmodParams(rows=3, cols=2, group=64, wbits=3)   # FP3_{ER,EA}_{POS,NEG}, 2 cycles per beat
W8 = BitmodParams(rows=2, cols=3, group=128, wbits=8)  # INT8 (radix-4 Booth), 4 cycles per beat
MIX = BitmodParams(rows=2, cols=2, group=32, wbits=4, types=("FP4", "INT4", "FLINT4", "FP4_EA_NEG"), act_format="int8")
ARRAYS = [pytest.param(W4, id="bitmod4"), pytest.param(W3, id="bitmod3"), pytest.param(W8, id="int8"),
          pytest.param(MIX, id="fp4-int4-flint4-a8")]


def activations(p, rng, m, k):
    if p.act_format == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
        act[0, :3] = -128
        return act
    act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-6, 3, size=(m, k))).astype(np.float16)
    act.view(np.uint16)[0, :4] = [0x0001, 0x8000, 0x7BFF, 0xFBFF]  # subnormal, -0, +-max
    return act


@pytest.mark.parametrize("p", ARRAYS)
def test_array_random_mixture(p):
    rng = np.random.default_rng(1)
    m, n, k = 2 * p.rows + 1, 3 * p.cols - 1, 5 * p.group // 2 + 3  # nothing a multiple of the array
    qw = quantize(mixed_weights(rng, n, k), p.types, p.group, scale_bits=p.scale_bits)
    if len(p.types) > 1:
        assert set(qw.selector.ravel()) == set(range(len(p.types))), "every type of the array is used"
    check_cosim_run(run_bitmod_array(p, activations(p, rng, m, k), qw))


@pytest.fixture(scope="module")
def minilm():
    names = ["encoder.layer.0.attention.self.query.weight", "embeddings.word_embeddings.weight"]
    return load_tensors(minilm_dir(), names)


@pytest.mark.parametrize("p", [pytest.param(W4, id="bitmod4"), pytest.param(W3, id="bitmod3")])
def test_array_minilm_slice(p, minilm):
    """Real weights (8 output features of MiniLM's layer-0 query projection, all 384 inputs) quantized
    with the BitMoD mixture, times real activations (the word embeddings of 5 tokens, in FP16)."""
    w = minilm["encoder.layer.0.attention.self.query.weight"][:8].astype(np.float64)
    act = minilm["embeddings.word_embeddings.weight"][[101, 7592, 2088, 2003, 102]].astype(np.float16)
    qw = quantize_bitmod(w, p.wbits, p.group, scale_bits=p.scale_bits)
    assert len(set(qw.selector.ravel())) >= 3
    run = run_bitmod_array(p, act, qw)
    check_cosim_run(run)
    # the integer result is the product with the dequantized weights, up to FP16 input rounding
    y = np.ldexp(run.rtl_acc.astype(np.float64), -24 - qw.scales.exp[None, :])
    ref = act.astype(np.float64) @ qw.dequantize().T
    assert np.allclose(y, ref, rtol=1e-9, atol=1e-12)


def corner_weights(p, rng, n, k):
    """Codes of the largest magnitudes and the special values (+-3/6/10/16 of the BitMoD variants),
    zeros, all-zero groups (code 0 everywhere, or scale 0), scales 0, 1 and the largest mantissa."""
    ng = num_groups(k, p.group)
    sel = rng.integers(0, len(p.types), size=(n, ng))
    codes = np.zeros((n, ng * p.group), np.uint8)
    for r in range(n):
        for g in range(ng):
            t = dtype(p.types[sel[r, g]])
            vals = [v for v in t.codes if v is not None]
            big = [t.encode(v) for v in {max(vals), min(vals)}]
            pool = big + ([t.special_code] if t.special is not None else []) + [0]
            codes[r, g * p.group:(g + 1) * p.group] = rng.choice(pool, p.group)
    codes[0, :p.group] = 0  # an all-zero group
    mant = rng.choice([0, 1, (1 << p.scale_bits) - 1], size=(n, ng))
    mant[1, 0] = 0  # a group with scale 0
    return BitmodWeights(codes[:, :k].copy(), sel.astype(np.uint8),
                         FixedScales(mant, np.zeros(n, np.int64), p.scale_bits), p.dtypes, p.group)


def corner_activations(p, rng, m, k, specials=True):
    if p.act_format == "int8":
        return rng.choice([-128, 127, 0], size=(m, k)).astype(np.int8)
    pool = np.array([0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x0000, 0x8000], np.uint16)
    bits = rng.choice(pool, size=(m, k))
    if specials:
        bits[1, 5], bits[1, 9], bits[2, 0] = 0x7C00, 0xFE00, 0xFC00  # +inf, NaN, -inf: taken as 0, flagged
    return bits.view(np.float16)


@pytest.mark.parametrize("p", ARRAYS)
def test_array_corners(p):
    rng = np.random.default_rng(2)
    m, n, k = p.rows + 2, p.cols + 1, 2 * p.group + 5
    qw = corner_weights(p, rng, n, k)
    specials = [t.special_code for t in p.dtypes if t.special is not None]
    for sc in specials:
        assert (qw.codes == sc).any()
    run = run_bitmod_array(p, corner_activations(p, rng, m, k), qw)
    check_cosim_run(run)
    if p.act_format == "fp16":
        assert run.measured["nonfinite"] == 1 and run.golden.nonfinite[1] and run.golden.nonfinite[2]
        assert not run.golden.nonfinite[0]


@pytest.mark.parametrize("p", [pytest.param(W4, id="bitmod4"), pytest.param(W8, id="int8")])
def test_array_bubbles_and_backpressure(p):
    rng = np.random.default_rng(3)
    m, n, k = 2 * p.rows, 2 * p.cols, p.group + 7
    qw = quantize(mixed_weights(rng, n, k), p.types, p.group, scale_bits=p.scale_bits)
    check_cosim_run(run_bitmod_array(p, activations(p, rng, m, k), qw, stall_seed=11))


@pytest.mark.parametrize("perturb", ["output", "cycles"])
def test_comparison_catches_a_perturbed_golden(perturb):
    rng = np.random.default_rng(4)
    qw = quantize_bitmod(mixed_weights(rng, 4, 40), 4, 32)
    with pytest.raises(CosimFailure, match="differs from golden" if perturb == "output" else "total: rtl"):
        run_bitmod_array(W4, activations(W4, rng, 3, 40), qw, perturb=perturb)


def test_same_gemm_at_3_4_and_8_bits():
    """One GEMM (the same float weights and FP16 activations) at 3-bit, 4-bit and INT8 weights: the
    RTL cycle counts equal the golden formula exactly in every mode."""
    rng = np.random.default_rng(5)
    m, n, k = 5, 6, 256
    w = mixed_weights(rng, n, k)
    act = activations(W4, rng, m, k)
    seen = {}
    for p in (W3, W4, W8):
        qw = quantize(w, p.types, p.group, scale_bits=p.scale_bits)
        run = run_bitmod_array(p, act, qw)
        check_cosim_run(run)
        tm = bitmod_timing(p, m, n, k)
        assert run.measured["first_output"] == tm.first_output == (tm.beats_per_tile - 1) * p.terms + p.latency
        assert run.measured["total"] == tm.total == \
            (tm.tiles * tm.beats_per_tile - 1) * p.terms + p.latency + (p.rows - 1) * p.scale_bits + 1
        seen[p.wbits] = (p.terms, run.measured["first_output"], run.measured["total"])
    # the figures quoted in docs/bitmod.md
    assert seen == {3: (2, 523, 3100), 4: (2, 525, 2086), 8: (4, 1036, 6165)}


@pytest.mark.parametrize("extremes", [False, True], ids=["random", "extremes"])
def test_pe(extremes):
    case = make_bitmod_pe_case(W4, groups=6, tile_groups=2, seed=3, extremes=extremes)
    assert run_bitmod_pe(W4, case)["results"] == 6


@pytest.mark.parametrize("kind,kw", [
    ("bitmod-array", dict(rows=3, cols=3, wbits=3)),                  # rows not a power of two
    ("bitmod-array", dict(rows=1, cols=33, wbits=2, act="int8")),     # 1 cycle per beat, 3 scale slots
    ("bitmod-array", dict(rows=1, cols=1, wbits=8)),
    ("bitmod-pe", dict(wbits=8)),
], ids=["3x3-w3", "1x33-int2-a8", "1x1-int8", "pe-int8"])
def test_rtl_passes_verilator_lint(tmp_path, kind, kw):
    verilog, _ = write_rtl(make_design(kind, **kw), tmp_path)
    verilator_lint(verilog)


def test_no_multiplier_anywhere(capsys):
    # the whole array: decoders, bit-serial PEs, bit-serial dequantizers
    d = make_design("bitmod-array", rows=2, cols=2, wbits=8)
    assert synthesize(d.component(), d.top).mul_cells == 0
    assert main(["synth", "bitmod-pe", "--act", "fp16", "--scale-bits", "8", "--json"]) == 0
    assert '"mul_cells": 0' in capsys.readouterr().out
