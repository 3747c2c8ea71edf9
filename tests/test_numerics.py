"""Activation formats and fixed-point scales (models/numerics.py)."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.numerics import (FP16_EXP_BIAS_SHIFT, FixedScales, fp16_decode, quantize_act_int8,
                                    to_fixed_scales)
from helpers import exact


# -- fp16_decode -------------------------------------------------------------------------------

ALL_BITS = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def test_fp16_decode_every_bit_pattern():
    assert FP16_EXP_BIAS_SHIFT == 25
    sig, exp, nonfinite = fp16_decode(ALL_BITS)
    assert sig.dtype == np.int64 and exp.dtype == np.int64 and nonfinite.dtype == bool
    assert sig.shape == exp.shape == nonfinite.shape == (65536,)
    ref = ALL_BITS.view(np.float16).astype(np.float64)
    finite = np.isfinite(ref)
    assert np.array_equal(nonfinite, ~finite)
    assert int(finite.sum()) == 65536 - 2 * 1024  # 2 infinities + 2046 NaNs
    # the value, exactly (sig * 2**(exp - 25) is exact in float64)
    assert np.array_equal(np.ldexp(sig[finite].astype(np.float64), exp[finite] - 25), ref[finite])
    # ranges
    assert sig.min() == -2047 and sig.max() == 2047
    assert exp.min() == 1 and exp.max() == 30
    assert np.all(sig[nonfinite] == 0) and np.all(exp[nonfinite] == 1)
    # sign: the significand carries it (zeros have none)
    neg = (ALL_BITS >> 15).astype(bool)
    assert np.all(sig[neg & finite] <= 0) and np.all(sig[~neg & finite] >= 0)
    efield = (ALL_BITS >> 10) & 0x1F
    # normals carry the hidden bit, subnormals (and zeros) do not and have exp 1
    normal = (efield > 0) & (efield < 31)
    assert np.all(np.abs(sig[normal]) >= 1024)
    assert np.array_equal(exp[normal], efield[normal].astype(np.int64))
    sub = efield == 0
    assert np.all(np.abs(sig[sub]) < 1024) and np.all(exp[sub] == 1)


def test_fp16_decode_named_values():
    vals = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 2.0**-24, -(2.0**-24), 2.0**-14,
                     2.0**-14 - 2.0**-24, np.inf, -np.inf, np.nan, 1.5], np.float16)
    sig, exp, nf = fp16_decode(vals)
    assert sig.tolist() == [0, 0, 1024, -1024, 2047, -2047, 1, -1, 1024, 1023, 0, 0, 0, 1536]
    assert exp.tolist() == [1, 1, 15, 15, 30, 30, 1, 1, 1, 1, 1, 1, 1, 15]
    assert nf.tolist() == [False] * 10 + [True] * 3 + [False]


def test_fp16_decode_float16_and_uint16_agree_and_keep_shape():
    x = ALL_BITS.reshape(256, 256)
    a = fp16_decode(x)
    b = fp16_decode(x.view(np.float16))
    for u, v in zip(a, b):
        assert u.shape == (256, 256)
        assert np.array_equal(u, v)
    sig, exp, nf = fp16_decode(np.float16(-2.5))
    assert (int(sig), int(exp), bool(nf)) == (-1280, 16, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int64, np.uint8])
def test_fp16_decode_rejects_other_dtypes(dtype):
    msg = f"fp16_decode takes float16 or uint16 bit patterns, not {np.dtype(dtype)}"
    with pytest.raises(TypeError, match=exact(msg)):
        fp16_decode(np.zeros(3, dtype))


# -- quantize_act_int8 -------------------------------------------------------------------------

def test_quantize_act_int8_half_to_even():
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -125.5, 3.5]])
    a, sa = quantize_act_int8(x)
    assert sa.tolist() == [1.0]
    assert a.tolist() == [[127, 0, 2, 2, 0, -2, -2, 126, -126, 4]]


def test_quantize_act_int8_all_zero_token_and_types():
    x = np.array([[0.0, 0.0, -0.0], [1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    a, sa = quantize_act_int8(x)
    assert a.dtype == np.int8 and sa.dtype == np.float32
    assert sa[0] == 1.0 and sa[2] == 1.0 and np.all(a[[0, 2]] == 0)
    assert sa[1] == np.float32(2.0) / np.float32(127)
    assert a[1].tolist() == [64, -127, 32]  # 63.5 -> 64 (even), 31.75 -> 32


def test_quantize_act_int8_negative_extreme_is_minus_127():
    a, sa = quantize_act_int8(np.array([[-3.0, 1.0, 3.0]]))
    assert a.tolist() == [[-127, 42, 127]]
    assert a.min() >= -127


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
                  elements=st.just(0.0) | st.builds(
                      lambda sign, mag: sign * mag, st.sampled_from([-1.0, 1.0]),
                      st.floats(float(np.float32(1e-30)), float(np.float32(1e30)), width=32))))
def test_quantize_act_int8_properties(x):
    a, sa = quantize_act_int8(x)
    assert a.shape == x.shape and sa.shape == (x.shape[0],)
    assert a.dtype == np.int8 and sa.dtype == np.float32
    assert a.min() >= -127 and a.max() <= 127
    absmax = np.abs(x).max(axis=1)
    for m in range(x.shape[0]):
        if absmax[m] == 0:
            assert sa[m] == 1.0 and np.all(a[m] == 0)
            continue
        assert sa[m] == absmax[m] / np.float32(127)
        # the largest element maps to +-127
        assert np.abs(a[m]).max() == 127
        # rint(x / sa) in float32: within half a step of the exact quotient (plus float32 rounding)
        q = x[m].astype(np.float64) / np.float64(sa[m])
        assert np.all(np.abs(q - a[m]) <= 0.5 + 1e-5 * np.maximum(1, np.abs(q)))
        assert np.all(np.sign(a[m]) * np.sign(x[m]) >= 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_act_int8_rejects_nonfinite(bad):
    x = np.ones((2, 4))
    x[1, 2] = bad
    msg = "activations contain inf or NaN; INT8 quantization needs finite values"
    with pytest.raises(RangeError, match=exact(msg)):
        quantize_act_int8(x)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()])
def test_quantize_act_int8_shape_errors(shape):
    msg = f"activations must be a 2-D (tokens, features) array, not shape {shape}"
    with pytest.raises(ShapeError, match=exact(msg)):
        quantize_act_int8(np.ones(shape))


def test_quantize_act_int8_no_tokens():
    a, sa = quantize_act_int8(np.zeros((0, 5)))
    assert a.shape == (0, 5) and sa.shape == (0,)


def test_quantize_act_int8_no_features_is_a_clear_error_or_empty():
    # Regression (fixed bug, models/numerics.py): an (M, 0) array reaches np.max(..., axis=1), which raises numpy's
    # "zero-size array to reduction operation maximum which has no identity" instead of a ShapeError
    # naming the problem (or an empty result).
    try:
        a, sa = quantize_act_int8(np.zeros((2, 0)))
    except ShapeError:
        return
    except ValueError as e:
        pytest.fail(f"quantize_act_int8 on shape (2, 0) leaked a raw numpy error: {e}")
    assert a.shape == (2, 0) and sa.shape == (2,)


def test_quantize_act_int8_tiny_token_keeps_a_positive_scale():
    # Regression (fixed bug, models/numerics.py): sa = max|x| / 127 is computed in float32 and underflows to 0 for a
    # token whose largest magnitude is below ~127 * 2**-150 (e.g. 1e-44, a float32 subnormal). The
    # token then gets sa = 0 (documented: sa > 0 unless the token is all zero, and then sa = 1), its
    # codes come from a division by zero (127 for nonzero values, a NaN cast for zeros, with numpy
    # RuntimeWarnings) and a * sa reconstructs nothing.
    x = np.array([[1e-44, 0.0], [1.0, 0.5]], np.float32)
    with np.errstate(divide="raise", invalid="raise"):
        try:
            a, sa = quantize_act_int8(x)
        except FloatingPointError as e:
            pytest.fail(f"quantize_act_int8 divides by a zero scale for a nonzero token ({e}); "
                        f"sa = max|x|/127 underflowed in float32 for max|x| = 1e-44")
    assert sa[0] > 0, f"nonzero token got scale {sa[0]!r}"
    assert a[0, 1] == 0


def test_quantize_act_int8_beyond_float32_range_is_a_range_error():
    # Regression (fixed bug, minor, models/numerics.py): float64 activations beyond float32's range overflow to inf in
    # the float32 cast (a numpy RuntimeWarning, an exception under -W error) and are then reported as
    # "contain inf or NaN" although the input was finite.
    with np.errstate(over="raise"):
        try:
            quantize_act_int8(np.array([[1e39, 1.0]]))
        except RangeError:
            return
        except FloatingPointError as e:
            pytest.fail(f"finite float64 activation 1e39 overflowed in the float32 cast ({e}) instead of "
                        f"a RangeError saying it is out of float32 range")
    pytest.fail("1e39 does not fit float32 and must be rejected")


# -- FixedScales and to_fixed_scales -----------------------------------------------------------

def test_fixed_scales_validation_and_value():
    fs = FixedScales([[3, 0], [65535, 1]], [2, 16], 16)
    assert fs.mant.dtype == np.int64 and fs.exp.dtype == np.int64 and fs.bits == 16
    assert fs.value().tolist() == [[0.75, 0.0], [65535 / 65536, 1 / 65536]]
    assert FixedScales([[1]], [-3], 4).value().tolist() == [[8.0]]
    msg = "scale mantissas (N, groups) and exponents (N,) disagree: "
    with pytest.raises(ShapeError, match=exact(msg + "(2, 2) vs (3,)")):
        FixedScales(np.zeros((2, 2)), np.zeros(3), 8)
    with pytest.raises(ShapeError, match=exact(msg + "(4,) vs (4,)")):
        FixedScales(np.zeros(4), np.zeros(4), 8)
    with pytest.raises(RangeError, match=exact("scale mantissas must be in 0..255")):
        FixedScales([[256]], [0], 8)
    with pytest.raises(RangeError, match=exact("scale mantissas must be in 0..15")):
        FixedScales([[-1]], [0], 4)


def _check_fixed(s, fs, bits):
    """Exact checks of ``fs = to_fixed_scales(s, bits)``; returns per row whether it carried."""
    s = np.asarray(s, np.float64)
    assert fs.bits == bits and fs.mant.shape == s.shape and fs.exp.shape == s.shape[:1]
    assert fs.mant.min() >= 0 and fs.mant.max() < 1 << bits
    carried = np.zeros(s.shape[0], bool)
    for n in range(s.shape[0]):
        smax, e = s[n].max(), int(fs.exp[n])
        if smax == 0:
            assert e == 0 and np.all(fs.mant[n] == 0)
            continue
        y = np.ldexp(s[n], e)  # exact: scaling by a power of two
        err = np.abs(fs.mant[n] - y)  # in units of 2**-e, exact (both below 2**17)
        assert np.all(err <= 0.5), (s[n], fs.mant[n], e)
        ties = err == 0.5
        assert np.all(fs.mant[n][ties] % 2 == 0), "half to even"
        # the row's largest mantissa uses the top bit, and one more exponent bit would not fit
        assert (1 << (bits - 1)) <= fs.mant[n].max() < (1 << bits)
        assert np.rint(np.ldexp(smax, e + 1)) >= (1 << bits)
        carried[n] = np.ldexp(smax, e) < (1 << (bits - 1))
        if not carried[n]:
            # |s - s_hat| <= 2**-bits * max of the row
            assert np.all(np.ldexp(err, -e) <= np.ldexp(smax, -bits))
        # always: within 2**-bits of the quantized row max, and 2 / (2**(bits+1) - 1) of the real one
        assert np.all(np.ldexp(err, -e) <= np.ldexp(float(fs.mant[n].max()), -e - bits))
        assert np.all(np.ldexp(err, -e) * ((1 << (bits + 1)) - 1) <= 2 * smax)
    return carried


@settings(max_examples=200, deadline=None)
@given(st.integers(4, 16), hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8),
                                      elements=st.floats(0, 1e12) | st.floats(0, 1e-6) | st.just(0.0)))
def test_to_fixed_scales_properties(bits, s):
    fs = to_fixed_scales(s, bits)
    _check_fixed(s, fs, bits)
    assert np.array_equal(fs.value(), np.ldexp(fs.mant.astype(np.float64), -fs.exp[:, None]))


def test_to_fixed_scales_zero_rows_and_extremes():
    s = np.array([[0.0, 0.0], [1e-300, 5e-324], [1e300, 1.0], [0.5, 0.25]])
    fs = to_fixed_scales(s, 8)
    _check_fixed(s, fs, 8)
    assert fs.exp[0] == 0 and fs.mant[0].tolist() == [0, 0]
    assert fs.mant[3].tolist() == [128, 64] and fs.exp[3] == 8
    assert fs.mant[2].tolist() == [int(np.rint(np.ldexp(1e300, int(fs.exp[2])))), 0]


def test_to_fixed_scales_rounding_carry():
    # 15.5 at exponent 0 rounds to 16, which needs 5 bits: the row drops to exponent -1.
    fs = to_fixed_scales(np.array([[15.5, 1.0, 3.0], [15.25, 1.0, 3.0]]), 4)
    assert fs.exp.tolist() == [-1, 0]
    assert fs.mant.tolist() == [[8, 0, 2], [15, 1, 3]]  # 7.75 -> 8, 0.5 -> 0 (even), 1.5 -> 2 (even)
    assert fs.value().tolist() == [[16.0, 0.0, 4.0], [15.0, 1.0, 3.0]]
    carried = _check_fixed([[15.5, 1.0, 3.0], [15.25, 1.0, 3.0]], fs, 4)
    assert carried.tolist() == [True, False]
    # Here a smaller scale of the carried row is off by 1.0 = 1/15.5 of the row max: more than
    # 2**-4 of the real row max (the bound holds against the quantized max 16, and within
    # 2/(2**5 - 1) of the real one). Pinned so a change of carry policy is noticed.
    assert abs(fs.value()[0, 1] - 1.0) / 15.5 > 2.0**-4


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_to_fixed_scales_carry_at_every_width(bits):
    top = (1 << bits) - 0.5  # rounds (half to even) up to 2**bits
    fs = to_fixed_scales(np.array([[top, 1.0]]), bits)
    assert fs.exp.tolist() == [-1]
    assert fs.mant.tolist() == [[1 << (bits - 1), 0]]
    _check_fixed([[top, 1.0]], fs, bits)


def test_to_fixed_scales_errors():
    with pytest.raises(ShapeError, match=exact("scales must be 2-D (rows, groups), not shape (3,)")):
        to_fixed_scales(np.ones(3), 8)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(RangeError, match=exact("scales must be finite and non-negative")):
            to_fixed_scales(np.array([[1.0, bad]]), 8)
