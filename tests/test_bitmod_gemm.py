"""The BitMoD array's golden model: GEMM semantics, beat stream, term table, widths and cycle model."""

from fractions import Fraction

import numpy as np
import pytest

from mixpim.models.bitmod import DTYPES, MIXTURES, BitmodWeights, quantize, quantize_bitmod, quantize_format
from mixpim.models.bitmod_gemm import (BitmodParams, array_unstream, bitmod_gemm, bitmod_stream, bitmod_timing,
                                       output_to_float, term_table)
from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.numerics import FixedScales
from helpers import exact


def _case(p, m, n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, k)) * rng.uniform(0.1, 4, size=(n, 1))
    w[::2, ::7] *= 5
    qw = quantize(w, p.types, p.group, scale_bits=p.scale_bits)
    if p.act_format == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    else:
        act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-7, 4, size=(m, k))).astype(np.float16)
    return act, qw


def _brute(p, act, qw):
    """The GEMM from first principles with Python ints: FP16 values as exact multiples of 2**-24,
    weight values read from the type tables, scale applied per group."""
    m, k = act.shape
    n = qw.codes.shape[0]
    acc = [[0] * n for _ in range(m)]
    for r in range(m):
        a = [int(Fraction(float(x)) * 2**24) if np.isfinite(x) else 0 for x in act[r]] if p.act_format == "fp16" \
            else [int(x) for x in act[r]]
        for c in range(n):
            total = 0
            for g in range(qw.ngroups):
                t = qw.types[qw.selector[c, g]]
                ks = range(g * qw.group, min(k, (g + 1) * qw.group))
                total += int(qw.scales.mant[c, g]) * sum(a[i] * t.codes[qw.codes[c, i]] for i in ks)
            acc[r][c] = total
    return acc


@pytest.mark.parametrize("kw", [dict(), dict(wbits=3, group=64), dict(wbits=8, group=128),
                                dict(act_format="int8", scale_bits=16), dict(wbits=4, types=("FP4", "INT4", "FLINT4"))],
                         ids=["bitmod4", "bitmod3", "int8", "a8", "fp4-int4-flint4"])
def test_gemm_matches_first_principles(kw):
    p = BitmodParams(**kw)
    act, qw = _case(p, 3, 5, 150, seed=1)
    act_ = act.copy()
    if p.act_format == "fp16":
        act_[1, 3] = np.nan
        act_[2, 0] = -np.inf
    res = bitmod_gemm(p, act_, qw)
    assert [[int(v) for v in row] for row in res.acc] == _brute(p, act_, qw)
    assert list(res.nonfinite) == ([False, True, True] if p.act_format == "fp16" else [False] * 3)


def test_gemm_is_the_product_with_the_dequantized_weights():
    p = BitmodParams(wbits=3)
    act, qw = _case(p, 4, 6, 96, seed=2)
    y = output_to_float(p, bitmod_gemm(p, act, qw), qw)
    ref = act.astype(np.float64) @ qw.dequantize().T
    assert np.allclose(y, ref, rtol=1e-12, atol=1e-300)


def _array_by_terms(p, beats, ntiles):
    """What the array computes from its input beats, cycle by cycle in spirit: each beat's weight as
    the decoder's terms, group sums, scale per group, one accumulator per (row, column) per tile."""
    slots, reserved = term_table(p)
    assert not reserved[beats["sel"], beats["code"]].any()
    sgn = slots[..., 0] * (1 - 2 * slots[..., 1])
    weight = (sgn << slots[..., 2]).sum(axis=2)[beats["sel"], beats["code"]]  # (beats, cols)
    if p.act_format == "fp16":
        from mixpim.models.numerics import fp16_decode
        sig, exp, _ = fp16_decode(beats["act"].astype(np.uint16))
        a_val = sig << (exp - 1)
    else:
        a_val = beats["act"]
    out = []
    per_tile = len(beats["last"]) // ntiles
    for t in range(ntiles):
        sl = slice(t * per_tile, (t + 1) * per_tile)
        prod = a_val[sl, :, None].astype(object) * weight[sl, None, :].astype(object)  # (beats, rows, cols)
        groups = prod.reshape(-1, p.group, p.rows, p.cols).sum(axis=1)
        scale = beats["scale"][sl][::p.group]  # (groups, cols)
        out.append((groups * scale[:, None, :].astype(object)).sum(axis=0))
    return np.concatenate(out)


@pytest.mark.parametrize("kw", [dict(rows=2, cols=3), dict(rows=3, cols=2, wbits=8, act_format="int8")])
def test_stream_and_terms_reproduce_the_gemm(kw):
    p = BitmodParams(**kw)
    m, n, k = 5, 7, 70
    act, qw = _case(p, m, n, k, seed=3)
    beats = bitmod_stream(p, act, qw)
    ntiles = 3 * 3 if p.rows == 2 else 2 * 4
    assert len(beats["last"]) == ntiles * 96 and beats["last"].sum() == ntiles
    assert beats["act"].shape == (ntiles * 96, p.rows) and beats["code"].shape == (ntiles * 96, p.cols)
    rows = _array_by_terms(p, beats, ntiles)
    got = array_unstream(p, rows, m, n)
    assert [[int(v) for v in r] for r in got] == [[int(v) for v in r] for r in bitmod_gemm(p, act, qw).acc]


def test_stream_maps_single_types_to_the_array_selector():
    p = BitmodParams()  # FP4_ER_POS, FP4_ER_NEG, FP4_EA_POS, FP4_EA_NEG
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 64))
    act = rng.normal(size=(2, 64)).astype(np.float16)
    for fmt, sel in [("fp4-ea-pos", 2), ("fp4-er-neg", 1)]:
        qw = quantize_format(w, fmt, 32)
        assert (bitmod_stream(p, act, qw)["sel"][:, :3] == sel).all()
        single = quantize(w, fmt.upper().replace("-", "_"), 32)
        assert np.array_equal(bitmod_gemm(p, act, qw).acc, bitmod_gemm(p, act, single).acc)
    with pytest.raises(RangeError, match=exact("the weights use FP4, which this array does not have "
                                               "(types FP4_ER_POS, FP4_ER_NEG, FP4_EA_POS, FP4_EA_NEG)")):
        bitmod_stream(p, act, quantize_format(w, "fp4", 32))


def test_operand_errors():
    p = BitmodParams()
    rng = np.random.default_rng(5)
    qw = quantize_bitmod(rng.normal(size=(3, 64)), 4, 32)
    act = rng.normal(size=(2, 64)).astype(np.float16)
    with pytest.raises(ShapeError, match=exact("activations have K=63 but weights have K=64")):
        bitmod_gemm(p, act[:, :63], qw)
    with pytest.raises(ShapeError, match=exact("activations must be 2-D (tokens, K), not shape (64,)")):
        bitmod_gemm(p, act[0], qw)
    with pytest.raises(ShapeError, match=exact("weights are quantized in groups of 64, the array uses 32")):
        bitmod_gemm(p, act, quantize_bitmod(rng.normal(size=(3, 64)), 4, 64))
    with pytest.raises(RangeError, match=exact("16-bit scales do not fit the array's 8-bit scales")):
        bitmod_gemm(p, act, quantize_bitmod(rng.normal(size=(3, 64)), 4, 32, scale_bits=16))
    with pytest.raises(TypeError, match=exact("FP16 activations must be a float16 array, not float64")):
        bitmod_gemm(p, act.astype(np.float64), qw)
    with pytest.raises(RangeError, match="INT8 activations must be integers in -128..127"):
        bitmod_gemm(BitmodParams(act_format="int8"), act, qw)
    with pytest.raises(TypeError, match=exact("params must be a BitmodParams, not None")):
        bitmod_gemm(None, act, qw)
    with pytest.raises(TypeError, match=exact("weights must be BitmodWeights, not ndarray")):
        bitmod_gemm(p, act, np.zeros((3, 64)))


def test_accumulator_overflow_is_an_error():
    p = BitmodParams(wbits=8, acc_headroom=1)
    k = 4 * p.group
    qw = BitmodWeights(np.full((1, k), 127, np.uint8), np.zeros((1, 4), np.uint8),
                       FixedScales(np.full((1, 4), 255), np.zeros(1, np.int64), 8), p.dtypes, p.group)
    act = np.full((1, k), 65504, np.float16)
    with pytest.raises(RangeError, match=exact(f"the accumulator ({p.acc_bits} bits) would overflow for "
                                               f"K={k}; raise acc_headroom or split K")):
        bitmod_gemm(p, act, qw)
    assert bitmod_gemm(p, act[:, :2 * p.group], BitmodWeights(
        qw.codes[:, :2 * p.group], qw.selector[:, :2], FixedScales(qw.scales.mant[:, :2], qw.scales.exp, 8),
        p.dtypes, p.group)).acc[0, 0] == 2 * 255 * 127 * p.group * (2047 << 29)


def test_term_table():
    for w in range(2, 9):
        types = MIXTURES.get(w, (f"INT{w}",))
        p = BitmodParams(wbits=w, rows=1)
        slots, reserved = term_table(p)
        assert slots.shape == (4, 1 << w, p.terms, 3) and reserved.shape == (4, 1 << w)
        sgn = slots[..., 0] * (1 - 2 * slots[..., 1])
        values = (sgn << slots[..., 2]).sum(axis=2)
        for s in range(4):
            for c in range(1 << w):
                v = DTYPES[types[s]].codes[c] if s < len(types) else None
                assert reserved[s, c] == (v is None)
                assert values[s, c] == (0 if v is None else v)
    # mixing types of different cycle counts pads the shorter ones with zero terms
    assert BitmodParams(wbits=4, types=("FP4", "INT4")).terms == 2


def test_widths():
    p = BitmodParams()  # FP4 mixture, FP16, group 32, 8-bit scales
    assert (p.terms, p.max_shift, p.shift_bits, p.value_max, p.term_sum_max) == (2, 4, 3, 16, 16)
    assert p.prod_bits == (2047 << 33).bit_length() + 1 == 45
    assert p.psum_bits == (32 * (2047 << 29) * 16).bit_length() + 1 == 50
    assert p.scaled_bits == 58 and p.acc_bits == 70
    q = BitmodParams(wbits=8)
    assert (q.terms, q.max_shift, q.value_max, q.term_sum_max) == (4, 7, 127, 127)
    assert BitmodParams(act_format="int8").psum_bits == (32 * 128 * 16).bit_length() + 1


def test_timing_formula():
    p = BitmodParams(rows=4, cols=4, group=32, wbits=4)  # T = 2, S = 8
    tm = bitmod_timing(p, 9, 7, 150)
    assert (tm.tiles, tm.beats_per_tile, tm.cycles_per_beat, tm.latency, tm.row_interval) == (6, 160, 2, 15, 8)
    assert tm.first_output == 159 * 2 + 15
    assert tm.total == (6 * 160 - 1) * 2 + 15 + 3 * 8 + 1
    q = BitmodParams(rows=2, cols=3, group=128, wbits=8)  # T = 4
    assert bitmod_timing(q, 2, 3, 128).total == 127 * 4 + (4 + 3 + 1 + 8) + 8 + 1
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ShapeError, match=exact(f"M must be a positive integer, not {bad!r}")):
            bitmod_timing(p, bad, 1, 1)


def test_params_round_trip_and_defaults():
    p = BitmodParams(wbits=3, types=["fp3-ea-pos", "FP3_ER_NEG"], act_format="int8")
    assert p.types == ("FP3_EA_POS", "FP3_ER_NEG") and p.family == "bitmod"
    assert BitmodParams(**p.to_dict()) == p
    assert BitmodParams(wbits=8).types == ("INT8",) and BitmodParams(wbits=4).types == MIXTURES[4]
