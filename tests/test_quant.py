"""Group-wise INT2/3/4 weight quantization (models/quant.py)."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixpim.models.errors import ConfigError, RangeError, ShapeError
from mixpim.models.numerics import FixedScales, to_fixed_scales
from mixpim.models.quant import QuantizedWeights, num_groups, quantize_weights
from helpers import exact


def reference(w, bits, group, symmetric, scale_bits=16):
    """Straightforward per-group quantization with Python scalars (round() is half to even)."""
    n, k = w.shape
    ng = -(-k // group)
    s = np.zeros((n, ng))
    lo = np.zeros((n, ng))
    for r in range(n):
        for g in range(ng):
            vals = [float(v) for v in w[r, g * group:(g + 1) * group]]
            if symmetric:
                s[r, g] = max(abs(v) for v in vals) / ((1 << (bits - 1)) - 1)
            else:
                lo[r, g] = min(min(vals), 0.0)
                s[r, g] = (max(max(vals), 0.0) - lo[r, g]) / ((1 << bits) - 1)
    fs = to_fixed_scales(s, scale_bits)
    sv = fs.value()
    codes = np.zeros((n, k), np.int64)
    zeros = np.zeros((n, ng), np.int64)
    for r in range(n):
        for g in range(ng):
            if symmetric:
                z, lo_c, hi_c = 1 << (bits - 1), 1, (1 << bits) - 1
            else:
                z = min(max(round(-lo[r, g] / sv[r, g]), 0), (1 << bits) - 1) if sv[r, g] > 0 else 0
                lo_c, hi_c = 0, (1 << bits) - 1
            zeros[r, g] = z
            for kk in range(g * group, min((g + 1) * group, k)):
                if sv[r, g] > 0:
                    codes[r, kk] = min(max(round(float(w[r, kk]) / sv[r, g]) + z, lo_c), hi_c)
                else:
                    codes[r, kk] = z
    return codes, zeros, fs, s


def check_bound(w, qw, s):
    """|w - w_hat| <= sv/2 + qmax * |s - sv| per group (half a step, plus what rounding the scale
    to its fixed-point mantissa can cost at the clipped ends of the range)."""
    qmax = (1 << (qw.bits - 1)) - 1 if qw.symmetric else (1 << qw.bits) - 1
    sv = qw.scales.value()
    k = w.shape[1]
    bound = sv / 2 + qmax * np.abs(s - sv)
    bound = np.repeat(bound, qw.group, axis=1)[:, :k]
    err = np.abs(w - qw.dequantize())
    slack = 1e-12 * np.maximum(np.abs(w), np.repeat(sv, qw.group, axis=1)[:, :k])
    assert np.all(err <= bound + slack), np.max(err - bound)
    return err


CASES = [(bits, group, sym) for bits in (2, 3, 4) for group in (32, 64, 128) for sym in (False, True)]


@pytest.mark.parametrize("bits, group, symmetric", CASES)
def test_quantize_matches_reference(bits, group, symmetric):
    rng = np.random.default_rng(bits * 1000 + group + symmetric)
    k = 2 * group + 17  # a short last group
    w = rng.normal(size=(5, k)) * rng.uniform(0.01, 10, size=(5, 1))
    w[1, :group] = 0.0  # all-zero group
    w[2, group:2 * group] = -np.abs(w[2, group:2 * group])  # all-negative group
    w[3, :group] = np.abs(w[3, :group])  # all-positive group
    qw = quantize_weights(w, bits, group, symmetric=symmetric)
    codes, zeros, fs, s = reference(w, bits, group, symmetric)

    assert (qw.bits, qw.group, qw.symmetric) == (bits, group, symmetric)
    assert qw.codes.dtype == np.uint8 and qw.codes.shape == (5, k) and qw.shape == (5, k)
    assert qw.zeros.dtype == np.int64 and qw.zeros.shape == (5, 3) and qw.ngroups == 3
    assert np.array_equal(qw.codes, codes)
    assert np.array_equal(qw.zeros, zeros)
    assert np.array_equal(qw.scales.mant, fs.mant) and np.array_equal(qw.scales.exp, fs.exp)
    assert qw.scales.bits == 16

    top = (1 << bits) - 1
    assert qw.codes.max() <= top and qw.zeros.min() >= 0 and qw.zeros.max() <= top
    if symmetric:
        assert qw.codes.min() >= 1
        assert np.all(qw.zeros == 1 << (bits - 1))
        c = qw.centered()
        assert np.abs(c).max() <= (1 << (bits - 1)) - 1
    # centered / dequantize are consistent with the fields
    zfull = np.repeat(qw.zeros, group, axis=1)[:, :k]
    assert np.array_equal(qw.centered(), qw.codes.astype(np.int64) - zfull)
    sfull = np.repeat(qw.scales.value(), group, axis=1)[:, :k]
    assert np.array_equal(qw.dequantize(), sfull * qw.centered())

    check_bound(w, qw, s)
    # the all-zero group: scale 0, every code at the zero point, exact zeros back
    assert qw.scales.mant[1, 0] == 0
    assert np.all(qw.codes[1, :group] == qw.zeros[1, 0])
    assert np.all(qw.dequantize()[1, :group] == 0)
    if not symmetric:
        assert qw.zeros[1, 0] == 0
        # all-negative group: codes at or below the zero point, which sits at the top
        assert np.all(qw.codes[2, group:2 * group] <= qw.zeros[2, 1])
        assert qw.zeros[2, 1] >= top - 1
        # all-positive group: zero point 0
        assert qw.zeros[3, 0] == 0
    assert np.all(qw.dequantize()[2, group:2 * group] <= 0)
    assert np.all(qw.dequantize()[3, :group] >= 0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_exact_zeros_stay_zero(symmetric):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(4, 64))
    w[rng.random(w.shape) < 0.3] = 0.0
    qw = quantize_weights(w, 3, 32, symmetric=symmetric)
    assert np.all(qw.dequantize()[w == 0] == 0)


@settings(max_examples=150, deadline=None)
@given(bits=st.sampled_from([2, 3, 4]), group=st.sampled_from([32, 64, 128]), symmetric=st.booleans(),
       n=st.integers(1, 4), k=st.integers(1, 300), scale_bits=st.integers(4, 16),
       seed=st.integers(0, 2**32 - 1), spread=st.floats(0, 8))
def test_quantize_properties(bits, group, symmetric, n, k, scale_bits, seed, spread):
    rng = np.random.default_rng(seed)
    # rows whose groups differ a lot in magnitude exercise the shared per-row scale exponent
    w = rng.normal(size=(n, k)) * 10.0 ** rng.uniform(-spread, spread, size=(n, k))
    qw = quantize_weights(w, bits, group, scale_bits=scale_bits, symmetric=symmetric)
    codes, zeros, fs, s = reference(w, bits, group, symmetric, scale_bits)
    assert qw.ngroups == num_groups(k, group) == -(-k // group)
    assert np.array_equal(qw.codes, codes) and np.array_equal(qw.zeros, zeros)
    assert qw.scales.bits == scale_bits and qw.scales.mant.max() < 1 << scale_bits
    qw.check()
    check_bound(w, qw, s)


def test_bound_is_half_a_step_when_scales_are_exact():
    # scales that are exact in 16 bits: the error is at most half a step, nothing more
    w = np.array([[-1.5, -0.5, 0.0, 0.25, 0.75, 1.5] + [0.0] * 26])
    qw = quantize_weights(w, 2, 32)  # s = 3 / 3 = 1
    assert qw.scales.value().tolist() == [[1.0]]
    assert qw.zeros.tolist() == [[2]]  # rint(1.5) = 2 (even)
    assert qw.codes[0, :6].tolist() == [0, 2, 2, 2, 3, 3]  # -1.5->-2 clipped to 0; 0.25->0; 0.75->1; 1.5->2 clip 3
    assert np.max(np.abs(w - qw.dequantize())) <= 0.5


def test_all_zero_matrix():
    for sym in (False, True):
        qw = quantize_weights(np.zeros((3, 40)), 4, 32, symmetric=sym)
        assert np.all(qw.scales.mant == 0) and np.all(qw.scales.exp == 0)
        assert np.all(qw.centered() == 0) and np.all(qw.dequantize() == 0)
        assert np.all(qw.zeros == (8 if sym else 0))


def test_short_k():
    qw = quantize_weights(np.array([[1.0, -2.0, 3.0]]), 4, 128)
    assert qw.zeros.shape == (1, 1) and qw.codes.shape == (1, 3)
    codes, zeros, fs, s = reference(np.array([[1.0, -2.0, 3.0]]), 4, 128, False)
    assert np.array_equal(qw.codes, codes) and np.array_equal(qw.zeros, zeros)


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 5, 8, 0, None, "4", True, 4.0])
def test_bad_bits(bits):
    with pytest.raises(ConfigError, match=exact(f"weight bits must be 2, 3 or 4, not {bits!r}")):
        quantize_weights(np.ones((2, 32)), bits, 32)


@pytest.mark.parametrize("group", [16, 0, 256, None, "32", 32.0, True])
def test_bad_group(group):
    with pytest.raises(ConfigError, match=exact(f"group must be one of (32, 64, 128), not {group!r}")):
        quantize_weights(np.ones((2, 32)), 4, group)


@pytest.mark.parametrize("shape", [(32,), (2, 2, 32), (0, 32), (2, 0), ()])
def test_bad_shape(shape):
    with pytest.raises(ShapeError, match=exact(f"weights must be a non-empty 2-D (out, in) array, not shape {shape}")):
        quantize_weights(np.ones(shape), 4, 32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights(bad):
    w = np.ones((2, 40))
    w[1, 39] = bad
    with pytest.raises(RangeError, match=exact("weights contain inf or NaN")):
        quantize_weights(w, 4, 32)


def test_scale_bits_zero_is_rejected():
    # Regression (fixed bug, models/quant.py): scale_bits is not validated. scale_bits=0 silently turns every scale
    # mantissa into 0, so every weight dequantizes to 0 (DESIGN.md: nothing is silently truncated).
    w = np.random.default_rng(0).normal(size=(2, 32))
    try:
        qw = quantize_weights(w, 4, 32, scale_bits=0)
    except ConfigError:
        return
    if not np.any(qw.dequantize() != 0):
        pytest.fail("quantize_weights(scale_bits=0) accepted a zero-width scale and zeroed every weight; "
                    "it must raise a ConfigError naming scale_bits")


def test_check_rejects_inconsistent_fields():
    fs = FixedScales(np.ones((2, 2)), np.zeros(2), 8)
    codes = np.zeros((2, 40), np.uint8)
    QuantizedWeights(codes, np.zeros((2, 2), np.int64), fs, 4, 32, False).check()
    msg = "zero points have shape (2, 1), expected (2, 2) for 2x40 weights in groups of 32"
    with pytest.raises(ShapeError, match=exact(msg)):
        QuantizedWeights(codes, np.zeros((2, 1), np.int64), fs, 4, 32, False).check()
    fs3 = FixedScales(np.ones((2, 3)), np.zeros(2), 8)
    with pytest.raises(ShapeError, match=exact("scales have shape (2, 3), expected (2, 2)")):
        QuantizedWeights(codes, np.zeros((2, 2), np.int64), fs3, 4, 32, False).check()
    msg = exact("codes and zero points must be in 0..7 for 3-bit weights")
    with pytest.raises(RangeError, match=msg):
        QuantizedWeights(codes + 8, np.zeros((2, 2), np.int64), fs, 3, 32, False).check()
    with pytest.raises(RangeError, match=msg):
        QuantizedWeights(codes, np.full((2, 2), 8, np.int64), fs, 3, 32, False).check()
    with pytest.raises(RangeError, match=msg):
        QuantizedWeights(codes, np.full((2, 2), -1, np.int64), fs, 3, 32, False).check()
