"""Golden MixPE GEMM, streaming, timing and widths (models/mixpe.py) against independent references."""

import itertools
import re
from fractions import Fraction

import numpy as np
import pytest

from mixpim.models.config import TileConfig
from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.mixpe import (ArrayParams, GemmResult, activation_values, array_stream, array_timing,
                                 array_unstream, group_sums, mixpe_gemm, output_to_float)
from mixpim.models.numerics import FixedScales, fp16_decode, quantize_act_int8
from mixpim.models.quant import QuantizedWeights, quantize_weights
from helpers import exact, params


# -- independent reference ---------------------------------------------------------------------

def ref_act_value(x, fmt):
    """(a_val, nonfinite) of one activation, without numpy's decoder: units of 2**-24 for FP16."""
    if fmt == "int8":
        return int(x), False
    f = float(np.float16(x))
    if f != f or f in (float("inf"), float("-inf")):
        return 0, True
    v = Fraction(f) * (1 << 24)
    assert v.denominator == 1
    return int(v), False


def ref_gemm(act, qw, fmt):
    """acc[m, n] = sum_g sm[n, g] * sum_{k in g} a_val[m, k] * (q[n, k] - z[n, g]) with Python ints."""
    m_, k_ = act.shape
    n_ = qw.codes.shape[0]
    acc = [[0] * n_ for _ in range(m_)]
    flags = [False] * m_
    vals = [[None] * k_ for _ in range(m_)]
    for m in range(m_):
        for k in range(k_):
            vals[m][k], nf = ref_act_value(act[m, k], fmt)
            flags[m] |= nf
    for m in range(m_):
        for n in range(n_):
            total = 0
            for g in range(qw.ngroups):
                part = 0
                for k in range(g * qw.group, min((g + 1) * qw.group, k_)):
                    part += vals[m][k] * (int(qw.codes[n, k]) - int(qw.zeros[n, g]))
                total += int(qw.scales.mant[n, g]) * part
            acc[m][n] = total
    return acc, flags


def random_case(rng, fmt, m, n, k, bits=4, group=32, symmetric=False, specials=False):
    w = rng.normal(size=(n, k)) * rng.uniform(0.1, 3, size=(n, 1))
    qw = quantize_weights(w, bits, group, symmetric=symmetric)
    if fmt == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    else:
        act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-6, 4, size=(m, k))).astype(np.float16)
        if specials:
            bits16 = act.view(np.uint16)
            for v in (0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF):
                bits16[rng.integers(m), rng.integers(k)] = v
    return act, qw


def as_int_lists(acc):
    return [[int(v) for v in row] for row in acc]


# -- mixpe_gemm --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["int8", "fp16"])
@pytest.mark.parametrize("bits, group, symmetric, k", [(4, 32, False, 70), (3, 64, True, 64),
                                                      (2, 128, False, 130), (4, 32, True, 5)])
def test_gemm_matches_reference(fmt, bits, group, symmetric, k):
    rng = np.random.default_rng(k * 7 + bits)
    act, qw = random_case(rng, fmt, 3, 4, k, bits, group, symmetric, specials=True)
    p = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", group=group, rows=4)
    res = mixpe_gemm(p, act, qw)
    assert isinstance(res, GemmResult)
    assert res.acc.shape == (3, 4) and res.nonfinite.shape == (3,)
    assert res.acc.dtype == (np.int64 if fmt == "int8" else object)
    acc, flags = ref_gemm(act, qw, fmt)
    assert as_int_lists(res.acc) == acc
    assert res.nonfinite.tolist() == flags == [False] * 3


def test_gemm_fp16_every_special_value():
    # One token per kind of special value, K = 2 groups; weights all centered at +-1.
    specials = {"+0": 0x0000, "-0": 0x8000, "min subnormal": 0x0001, "-max subnormal": 0x83FF,
                "min normal": 0x0400, "max": 0x7BFF, "-max": 0xFBFF, "+inf": 0x7C00, "-inf": 0xFC00,
                "qnan": 0x7E00, "snan": 0x7C01, "-nan": 0xFFFF}
    rng = np.random.default_rng(3)
    k = 64
    base = rng.normal(size=(len(specials), k)).astype(np.float16).view(np.uint16)
    for i, v in enumerate(specials.values()):
        base[i, rng.integers(k)] = v
    act = base.view(np.float16)
    qw = quantize_weights(rng.normal(size=(3, k)), 4, 32)
    p = params(pe="baseline-w4a16")
    res = mixpe_gemm(p, act, qw)
    acc, flags = ref_gemm(act, qw, "fp16")
    assert as_int_lists(res.acc) == acc
    assert flags == [False] * 7 + [True] * 5
    assert res.nonfinite.tolist() == flags
    # a non-finite activation counts as 0: the same token with that element zeroed gives the same acc
    zeroed = act.copy()
    zeroed[~np.isfinite(act)] = 0
    assert as_int_lists(mixpe_gemm(p, zeroed, qw).acc) == acc
    assert not mixpe_gemm(p, zeroed, qw).nonfinite.any()


def test_gemm_fp16_real_value():
    # acc * 2**-e * 2**-24 is the exact product with the dequantized weights (up to float rounding)
    rng = np.random.default_rng(5)
    act, qw = random_case(rng, "fp16", 4, 6, 100)
    p = params(pe="mixpe-w4a16")
    res = mixpe_gemm(p, act, qw)
    ref = act.astype(np.float64) @ qw.dequantize().T
    assert np.allclose(output_to_float(p, res, qw), ref, rtol=1e-12, atol=0)
    assert np.allclose(output_to_float(p, res.acc, qw), ref, rtol=1e-12, atol=0)


def test_gemm_int8_real_value():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 96))
    a, sa = quantize_act_int8(x)
    qw = quantize_weights(rng.normal(size=(5, 96)), 3, 32, symmetric=True)
    p = params(pe="baseline-w4a8")
    res = mixpe_gemm(p, a, qw)
    ref = (a.astype(np.float64) * sa.astype(np.float64)[:, None]) @ qw.dequantize().T
    assert np.allclose(output_to_float(p, res, qw, sa), ref, rtol=1e-12, atol=1e-12)


def test_gemm_narrower_weights_and_scales_than_the_array():
    rng = np.random.default_rng(8)
    w = rng.normal(size=(3, 64))
    qw = quantize_weights(w, 2, 32, scale_bits=6)
    a = rng.integers(-128, 128, size=(2, 64)).astype(np.int8)
    acc, _ = ref_gemm(a, qw, "int8")
    assert as_int_lists(mixpe_gemm(params(wbits=4, scale_bits=16), a, qw).acc) == acc


def test_gemm_int8_accepts_minus_128_and_other_integer_dtypes():
    qw = QuantizedWeights(np.full((1, 32), 15, np.uint8), np.zeros((1, 1), np.int64),
                          FixedScales([[1]], [0], 16), 4, 32, False)
    for a in (np.full((1, 32), -128, np.int8), np.full((1, 32), -128, np.int64),
              np.full((1, 32), -128, np.int16)):
        assert mixpe_gemm(params(), a, qw).acc.tolist() == [[-128 * 15 * 32]]
    assert mixpe_gemm(params(), np.full((1, 32), 127, np.uint8), qw).acc.tolist() == [[127 * 15 * 32]]


def test_activation_values():
    a_val, nf = activation_values(np.array([[1, -128, 127]], np.int8), "int8")
    assert a_val.dtype == np.int64 and a_val.tolist() == [[1, -128, 127]] and not nf.any()
    a_val, nf = activation_values(np.array([[1.0, -2.0**-24, np.inf, 65504]], np.float16), "fp16")
    assert a_val.tolist() == [[1 << 24, -1, 0, 65504 << 24]] and nf.tolist() == [[False, False, True, False]]
    with pytest.raises(ValueError, match=exact("activation format must be 'int8' or 'fp16', not 'bf16'")):
        activation_values(np.zeros((1, 1)), "bf16")


def test_group_sums_pads_the_last_group():
    a = np.arange(1, 41, dtype=np.int64)[None]  # 1..40
    wc = np.ones((2, 40), np.int64)
    wc[1] = -1
    assert group_sums(a, wc, 32).tolist() == [[[528, 292], [-528, -292]]]


# -- errors ------------------------------------------------------------------------------------

def test_gemm_shape_errors():
    qw = quantize_weights(np.ones((2, 40)), 4, 32)
    p = params()
    with pytest.raises(ShapeError, match=exact("activations must be 2-D (tokens, K), not shape (40,)")):
        mixpe_gemm(p, np.zeros(40, np.int8), qw)
    with pytest.raises(ShapeError, match=exact("activations have K=41 but weights have K=40")):
        mixpe_gemm(p, np.zeros((3, 41), np.int8), qw)
    with pytest.raises(ShapeError, match=exact("weights are quantized in groups of 32, the array uses 64")):
        mixpe_gemm(params(group=64), np.zeros((3, 40), np.int8), qw)
    with pytest.raises(ShapeError, match=exact("activations have K=41 but weights have K=40")):
        array_stream(p, np.zeros((3, 41), np.int8), qw)


def test_gemm_width_errors():
    rng = np.random.default_rng(0)
    qw = quantize_weights(rng.normal(size=(2, 32)), 4, 32)
    a = np.zeros((1, 32), np.int8)
    with pytest.raises(RangeError, match=exact("4-bit weights do not fit the array's 3-bit codes")):
        mixpe_gemm(params(wbits=3), a, qw)
    with pytest.raises(RangeError, match=exact("16-bit scales do not fit the array's 8-bit scales")):
        mixpe_gemm(params(scale_bits=8), a, qw)
    with pytest.raises(RangeError, match=exact("4-bit weights do not fit the array's 2-bit codes")):
        array_stream(params(wbits=2), a, qw)
    for bad in (np.full((1, 32), 128, np.int16), np.full((1, 32), -129, np.int16), np.zeros((1, 32))):
        with pytest.raises(RangeError, match=exact("INT8 activations must be integers in -128..127")):
            mixpe_gemm(params(), bad, qw)
    with pytest.raises(RangeError, match="FP16 activations must be float16 \\(or uint16 bit patterns\\), not float32"):
        mixpe_gemm(params(pe="mixpe-w4a16"), np.zeros((1, 32), np.float32), qw)
    broken = QuantizedWeights(qw.codes, qw.zeros[:, :0], qw.scales, 4, 32, False)
    with pytest.raises(ShapeError, match=re.escape("zero points have shape (2, 0), expected (2, 1)")):
        mixpe_gemm(params(), a, broken)


def extreme_weights(n_groups, sign, group=32, scale_bits=16):
    """Weights with |q - z| = 15 and the largest scale mantissa: wc = 15 * sign per element."""
    k = n_groups * group
    codes = np.full((1, k), 15 if sign > 0 else 0, np.uint8)
    zeros = np.full((1, n_groups), 0 if sign > 0 else 15, np.int64)
    return QuantizedWeights(codes, zeros, FixedScales(np.full((1, n_groups), (1 << scale_bits) - 1), [0], scale_bits),
                            4, group, False)


@pytest.mark.parametrize("fmt", ["int8", "fp16"])
@pytest.mark.parametrize("headroom", [1, 2, 3])
def test_accumulator_holds_2_to_the_headroom_worst_case_groups(fmt, headroom):
    p = params(acc_headroom=headroom, pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16")
    ng = 1 << headroom
    lim = 1 << (p.acc_bits - 1)
    a_ext = {"int8": np.int8(-128), "fp16": np.float16(-65504)}[fmt]
    for sign in (1, -1):
        qw = extreme_weights(ng, sign)
        act = np.full((1, ng * 32), a_ext)
        acc = int(mixpe_gemm(p, act, qw).acc[0, 0])
        expected = -sign * ng * 32 * p.act_val_max * 15 * 65535
        assert acc == expected and -lim <= acc < lim
        acc_ref, _ = ref_gemm(act, qw, fmt)
        assert acc_ref == [[expected]]
    # the worst-case group count that does not fit raises
    worst = p.psum_max * 65535
    over = -(-lim // worst)  # smallest group count reaching +lim
    assert over > ng
    qw = extreme_weights(over, -1)
    act = np.full((1, over * 32), a_ext)
    msg = (f"the accumulator ({p.acc_bits} bits) would overflow for K={over * 32}; "
           f"raise acc_headroom or split K")
    with pytest.raises(RangeError, match=exact(msg)):
        mixpe_gemm(p, act, qw)


def test_overflow_of_a_prefix_is_caught():
    # The running sum leaves the accumulator's range even though the final value would fit.
    p = params(acc_headroom=1)
    lim = 1 << (p.acc_bits - 1)
    worst = p.psum_max * 65535
    ng_up = -(-lim // worst)
    qw_up = extreme_weights(ng_up, -1)
    qw_down = extreme_weights(ng_up, 1)
    codes = np.concatenate([qw_up.codes, qw_down.codes], axis=1)
    zeros = np.concatenate([qw_up.zeros, qw_down.zeros], axis=1)
    qw = QuantizedWeights(codes, zeros, FixedScales(np.full((1, 2 * ng_up), 65535), [0], 16), 4, 32, False)
    act = np.full((1, 2 * ng_up * 32), -128, np.int8)
    assert ref_gemm(act, qw, "int8")[0] == [[0]]
    with pytest.raises(RangeError, match="would overflow"):
        mixpe_gemm(p, act, qw)


# -- streaming ---------------------------------------------------------------------------------

def gemm_from_beats(p, beats):
    """Recompute the output beats from the input beats alone, the way the array is specified:
    per tile (ended by ``last``), per group of ``group`` beats, sum a_val * (code - zero), scale by the
    group's (constant) scale, accumulate. Returns (tiles * rows, cols) Python ints."""
    act, code, zero, scale, last = (beats[k] for k in ("act", "code", "zero", "scale", "last"))
    out = []
    start = 0
    for end in np.flatnonzero(last):
        n_beats = end + 1 - start
        assert n_beats % p.group == 0
        acc = [[0] * p.cols for _ in range(p.rows)]
        for g0 in range(start, end + 1, p.group):
            sl = slice(g0, g0 + p.group)
            assert np.all(zero[sl] == zero[g0]) and np.all(scale[sl] == scale[g0])
            for i in range(p.rows):
                for j in range(p.cols):
                    part = 0
                    for b in range(g0, g0 + p.group):
                        if p.act_format == "int8":
                            a = int(act[b, i])
                        else:
                            a, _ = ref_act_value(np.uint16(act[b, i]).view(np.float16), "fp16")
                        part += a * (int(code[b, j]) - int(zero[b, j]))
                    acc[i][j] += int(scale[g0, j]) * part
        out.extend(acc)
        start = end + 1
    assert start == len(last)
    return np.array(out, dtype=object).reshape(-1, p.cols)


@pytest.mark.parametrize("pe", ["mixpe-w4a8", "baseline-w4a16"])
@pytest.mark.parametrize("m, n, k", [(3, 5, 40), (2, 3, 32), (1, 1, 1), (5, 2, 70)])
def test_stream_unstream_round_trip(pe, m, n, k):
    p = params(rows=2, cols=3, pe=pe)
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    act, qw = random_case(rng, p.act_format, m, n, k, specials=p.act_format == "fp16" and k > 8)
    beats = array_stream(p, act, qw)
    mb, nb, kp = -(-m // 2), -(-n // 3), -(-k // 32) * 32
    assert set(beats) == {"act", "code", "zero", "scale", "last"}
    assert beats["act"].shape == (mb * nb * kp, 2) and beats["code"].shape == (mb * nb * kp, 3)
    assert beats["zero"].shape == beats["scale"].shape == beats["code"].shape
    assert beats["last"].dtype == bool and beats["last"].shape == (mb * nb * kp,)
    assert np.flatnonzero(beats["last"]).tolist() == [t * kp + kp - 1 for t in range(mb * nb)]
    for key in ("act", "code", "zero", "scale"):
        assert beats[key].dtype == np.int64
    if p.act_format == "fp16":
        assert beats["act"].min() >= 0 and beats["act"].max() < 1 << 16
    else:
        assert beats["act"].min() >= -128 and beats["act"].max() <= 127
    out = gemm_from_beats(p, beats)
    assert out.shape == (mb * nb * 2, 3)
    got = array_unstream(p, out, m, n)
    assert got.shape == (m, n)
    assert as_int_lists(got) == as_int_lists(mixpe_gemm(p, act, qw).acc)


def test_stream_layout_by_hand():
    # 1 token block x 2 feature blocks, K = 33 (2 groups): tile (0, 0) then tile (0, 1)
    p = params(rows=2, cols=1)
    act = np.arange(66, dtype=np.int8).reshape(2, 33)
    codes = (np.arange(66).reshape(2, 33) % 16).astype(np.uint8)
    zeros = np.array([[3, 4], [5, 6]])
    qw = QuantizedWeights(codes, zeros, FixedScales([[10, 11], [12, 13]], [0, 0], 16), 4, 32, False)
    b = array_stream(p, act, qw)
    assert len(b["last"]) == 128 and b["last"][[63, 127]].all() and b["last"].sum() == 2
    assert b["act"][0].tolist() == [0, 33] and b["act"][32].tolist() == [32, 65]
    assert b["act"][33].tolist() == [0, 0]  # padded K
    assert b["act"][64].tolist() == [0, 33]  # the second tile repeats the activations
    assert b["code"][5, 0] == 5 and b["code"][64 + 5, 0] == codes[1, 5]
    assert b["zero"][0, 0] == 3 and b["zero"][32, 0] == 4 and b["zero"][64 + 40, 0] == 6
    assert b["code"][40, 0] == 4  # padded K: code = zero point, so q - z = 0
    assert b["scale"][0, 0] == 10 and b["scale"][63, 0] == 11 and b["scale"][96, 0] == 13


def test_stream_pads_rows_and_columns_with_zeros():
    p = params(rows=4, cols=4)
    act = np.ones((1, 32), np.int8)
    qw = quantize_weights(np.ones((1, 32)), 4, 32)
    b = array_stream(p, act, qw)
    assert np.all(b["act"][:, 1:] == 0)
    assert np.all(b["code"][:, 1:] == 0) and np.all(b["zero"][:, 1:] == 0) and np.all(b["scale"][:, 1:] == 0)


def test_unstream_placement_and_errors():
    p = params(rows=2, cols=2)
    # M = 3, N = 3: 2 x 2 tiles, row-major over (token block, feature block)
    beats = np.arange(16).reshape(8, 2)
    got = array_unstream(p, beats, 3, 3)
    assert got.tolist() == [[0, 1, 4], [2, 3, 6], [8, 9, 12]]
    with pytest.raises(ShapeError, match=exact("expected 8 output beats of 2 values, got shape (7, 2)")):
        array_unstream(p, beats[:7], 3, 3)
    with pytest.raises(ShapeError, match=exact("expected 8 output beats of 2 values, got shape (16,)")):
        array_unstream(p, beats.reshape(-1), 3, 3)


# -- timing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, mnk, expected", [
    # tiles, beats/tile, latency, first_output = beats - 1 + latency, total = tiles * beats + latency + rows - 1
    (dict(rows=2, cols=3), (3, 5, 40), (4, 64, 7, 70, 264)),
    (dict(rows=2, cols=3, pe="baseline-w4a8"), (3, 5, 40), (4, 64, 5, 68, 262)),
    (dict(rows=4, cols=4, group=128), (4, 4, 128), (1, 128, 8, 135, 139)),
    (dict(rows=1, cols=1), (1, 1, 1), (1, 32, 5, 36, 37)),
    (dict(rows=16, cols=16, group=64, pe="baseline-w4a16"), (17, 33, 65), (6, 128, 18, 145, 801)),
])
def test_array_timing_by_hand(kw, mnk, expected):
    t = array_timing(params(**kw), *mnk)
    assert (t.tiles, t.beats_per_tile, t.latency, t.first_output, t.total) == expected


def test_array_timing_errors():
    p = params()
    assert array_timing(p, np.int64(4), 4, 32).tiles == 1
    for name, args in (("M", (0, 1, 1)), ("N", (1, -2, 1)), ("K", (1, 1, 1.5)), ("M", ("4", 1, 1))):
        bad = args["MNK".index(name)]
        with pytest.raises(ShapeError, match=exact(f"{name} must be a positive integer, not {bad!r}")):
            array_timing(p, *args)


# -- widths ------------------------------------------------------------------------------------

def fits(lo, hi, bits):
    return -(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1


def minimal(lo, hi, bits):
    return fits(lo, hi, bits) and not fits(lo, hi, bits - 1)


WIDTH_CASES = list(itertools.product(["int8", "fp16"], [2, 3, 4], [32, 64, 128], [4, 11, 16], [1, 12, 24]))


@pytest.mark.parametrize("act, wbits, group, scale_bits, headroom", WIDTH_CASES)
def test_widths_are_minimal_and_sufficient(act, wbits, group, scale_bits, headroom):
    p = params(pe="mixpe-w4a8" if act == "int8" else "mixpe-w4a16", wbits=wbits, group=group,
               scale_bits=scale_bits, acc_headroom=headroom)
    # operand ranges from first principles
    wc_lo, wc_hi = -((1 << wbits) - 1), (1 << wbits) - 1  # codes and zero points in 0 .. 2**wbits - 1
    if act == "int8":
        a_lo, a_hi = -128, 127
    else:
        top = int(Fraction(65504) * (1 << 24))  # largest finite FP16, in units of 2**-24
        a_lo, a_hi = -top, top
    corners = [a * w for a in (a_lo, a_hi) for w in (wc_lo, wc_hi)]
    prod = (min(corners), max(corners))
    psum = (group * prod[0], group * prod[1])
    smax = (1 << scale_bits) - 1
    scaled = (psum[0] * smax, psum[1] * smax)
    acc = (scaled[0] << headroom, scaled[1] << headroom)

    assert minimal(wc_lo, wc_hi, p.wc_bits) and p.wc_max == wc_hi
    if act == "int8":
        assert p.act_bits == 8 and minimal(a_lo, a_hi, 8)
    else:
        assert p.act_bits == 12 and minimal(-2047, 2047, p.act_bits)
    assert max(abs(a_lo), a_hi) == p.act_val_max
    assert minimal(*prod, p.prod_bits), (prod, p.prod_bits)
    assert minimal(*psum, p.psum_bits), (psum, p.psum_bits)
    assert max(-psum[0], psum[1]) == p.psum_max
    assert minimal(*scaled, p.scaled_bits), (scaled, p.scaled_bits)
    assert minimal(*acc, p.acc_bits), (acc, p.acc_bits)
    assert p.acc_bits == p.scaled_bits + headroom


def test_params_from_config_and_latency():
    cfg = TileConfig(rows=3, cols=5, pe="baseline-w4a16", wbits=3, group=64, scale_bits=9, acc_headroom=7)
    p = ArrayParams.from_config(cfg)
    assert (p.rows, p.cols, p.wbits, p.group, p.scale_bits, p.acc_headroom, p.act_format, p.family) == \
        (3, 5, 3, 64, 9, 7, "fp16", "baseline")
    assert p.latency == 5 + 2
    assert ArrayParams.from_config(cfg.replace(pe="mixpe-w4a8")).latency == 5 + 4
    assert ArrayParams.from_config(TileConfig(rows=4, cols=4, group=32)).scale_fifo_depth == 3
    assert ArrayParams.from_config(TileConfig(rows=32, cols=33, group=32)).scale_fifo_depth == 5
    assert ArrayParams.from_config(TileConfig(rows=1, cols=31, group=32)).scale_fifo_depth == 3


def test_fp16_decode_agrees_with_reference_value():
    # the golden decoder and the test's Fraction-based reference agree on every finite pattern
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    sig, exp, nf = fp16_decode(bits)
    a_val = sig << (exp - 1)
    f = bits.view(np.float16).astype(np.float64)
    fin = np.isfinite(f)
    assert np.array_equal(a_val[fin].astype(np.float64), np.ldexp(f[fin], 24))
    assert np.all(a_val[~fin] == 0)


def test_array_stream_validates_activations_like_mixpe_gemm():
    # Regression (fixed bug, models/mixpe.py): array_stream checks the weights but not the activations. INT8 values
    # out of range (300) or non-integers (1.7) are silently passed into the beats, where pack()
    # masks 300 to 44 and 1.7 became 1; a float32 array for an FP16 array or a 1-D array fail
    # with raw numpy errors. mixpe_gemm rejects each of these with a named error.
    qw = quantize_weights(np.ones((2, 32)), 4, 32)
    cases = [
        (params(), np.full((1, 32), 300)),
        (params(), np.full((1, 32), -129)),
        (params(), np.full((1, 32), 1.7)),
        (params(pe="mixpe-w4a16"), np.ones((1, 32), np.float32)),
        (params(), np.ones(32, np.int8)),
    ]
    problems = []
    for p, act in cases:
        with pytest.raises((RangeError, ShapeError, TypeError)) as gemm_err:
            mixpe_gemm(p, act, qw)
        try:
            array_stream(p, act, qw)
        except gemm_err.type:
            continue
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(f"{p.act_format} {act.dtype} {act.shape} max={act.max()}: {type(e).__name__}: {e}")
        else:
            problems.append(f"{p.act_format} {act.dtype} {act.shape} max={act.max()}: accepted silently")
    assert not problems, ("array_stream must reject the activations mixpe_gemm rejects, with the same "
                          "error type:\n" + "\n".join(problems))
