"""Vector-unit numerics (models/vector.py): rounding, saturation, each function, VPARAM words,
FP16 conversions and the compiler-side helpers."""

import math

import numpy as np
import pytest

from mixpim.models.config import TileConfig
from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.isa import VecFunc
from mixpim.models.numerics import quantize_act_int8
from mixpim.models.vector import (column_multipliers, fixed_multiplier, fp16_bits_to_int8, gelu, gelu_lut,
                                  int8_to_fp16_bits, pack_lut, pack_vparam, round_shift, sat8, sat32,
                                  token_multipliers, unpack_lut, unpack_vparam, vec_apply, vparam_header)


def test_round_shift_rounds_half_up():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4, 3, -3])
    # (x + 1) >> 1: 5/2 = 2.5 -> 3, -2.5 -> -2, 3, -3, 3.5 -> 4, -3.5 -> -3, 2, -2, 1.5 -> 2, -1.5 -> -1
    assert round_shift(x, 1).tolist() == [3, -2, 3, -3, 4, -3, 2, -2, 2, -1]
    assert round_shift(x, 0).tolist() == x.tolist()
    assert round_shift(np.array([-1, 1, 0]), 63).tolist() == [0, 0, 0]
    assert round_shift(np.array([1 << 62]), 63).tolist() == [1]  # 0.5 -> 1
    # per-element shifts broadcast
    assert round_shift(np.array([[12, 12, 12]]), np.array([0, 2, 3])).tolist() == [[12, 3, 2]]
    with pytest.raises(RangeError):
        round_shift(np.array([1]), 64)


def test_wide_values_use_python_integers_exactly():
    big = np.array([(1 << 80) + 3, -(1 << 80) - 3], dtype=object)
    assert round_shift(big, 1).tolist() == [(1 << 79) + 2, -(1 << 79) - 1]
    # equals the int64 path where both apply
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 40), 1 << 40, size=100)
    s = rng.integers(0, 64, size=100)
    assert round_shift(x, s).tolist() == round_shift(x.astype(object), s).tolist()


def test_saturation():
    assert sat8(np.array([-1000, -129, -128, 0, 127, 128, 1 << 70], dtype=object)).tolist() == \
        [-128, -128, -128, 0, 127, 127, 127]
    assert sat8(np.array([5])).dtype == np.int8
    assert sat32(np.array([1 << 40, -(1 << 40), 5])).tolist() == [(1 << 31) - 1, -(1 << 31), 5]


def ref_element(func, acc, m, s, tm, ts, lut=None, res=0):
    """One element straight from the formulas of docs/tile.md, with Python integers."""
    def rs(x, k):
        return (x + (1 << (k - 1)) >> k) if k else x
    v1 = min(max(rs(acc * m, s), -(1 << 31)), (1 << 31) - 1)
    v = rs(v1 * tm, ts)
    s8 = min(max(v, -128), 127)
    if func == VecFunc.REQUANT:
        return s8
    if func == VecFunc.RELU:
        return min(max(v, 0), 127)
    if func == VecFunc.GELU:
        return int(lut[s8 & 0xFF])
    return min(max(v + res, -128), 127)


@pytest.mark.parametrize("func", list(VecFunc))
def test_vec_apply_matches_the_formulas(func):
    rng = np.random.default_rng(int(func))
    r, c = 5, 6
    acc = rng.integers(-(1 << 44), 1 << 44, size=(r, c))
    acc[0, 0] = (1 << 44) - 1  # v1 saturates to int32 for a large multiplier
    mult = rng.integers(-32768, 32768, size=c)
    shift = rng.integers(20, 45, size=c)
    mult[0], shift[0] = 32767, 0
    tmult = rng.integers(-32768, 32768, size=r)
    tshift = rng.integers(0, 30, size=r)
    lut = rng.integers(-128, 128, size=256).astype(np.int8)
    res = rng.integers(-128, 128, size=(r, c)).astype(np.int8)
    got = vec_apply(func, acc, mult, shift, tmult, tshift, lut=lut, residual=res)
    assert got.dtype == np.int8
    want = [[ref_element(func, int(acc[i, j]), int(mult[j]), int(shift[j]), int(tmult[i]),
                         int(tshift[i]), lut, int(res[i, j])) for j in range(c)] for i in range(r)]
    assert got.tolist() == want
    # the same with accumulators wider than int64 (an FP16 configuration's ACC)
    wide = acc.astype(object) << 20
    got = vec_apply(func, wide, mult, shift, tmult, tshift, lut=lut, residual=res)
    want = [[ref_element(func, int(wide[i, j]), int(mult[j]), int(shift[j]), int(tmult[i]),
                         int(tshift[i]), lut, int(res[i, j])) for j in range(c)] for i in range(r)]
    assert got.tolist() == want


def test_vec_apply_by_hand():
    acc = np.array([[1000, -1000, 300, 255]])
    ones, zeros = np.ones(1, np.int64), np.zeros(1, np.int64)
    mult, shift = np.array([1, 1, 1, 1]), np.array([3, 3, 0, 1])
    # 1000/8 = 125, -1000/8 = -125, 300 -> sat 127, 255/2 = 127.5 -> 128 -> sat 127
    assert vec_apply("REQUANT", acc, mult, shift, ones, zeros).tolist() == [[125, -125, 127, 127]]
    assert vec_apply(VecFunc.RELU, acc, mult, shift, ones, zeros).tolist() == [[125, 0, 127, 127]]
    lut = np.arange(256).astype(np.uint8).view(np.int8)[::-1].copy()  # lut[b] = int8(255 - b)
    # indices 125, -125 & 0xff = 131, 127, 127 -> 255 - b read as int8
    assert vec_apply(VecFunc.GELU, acc, mult, shift, ones, zeros, lut=lut).tolist() == \
        [[int(np.int8(np.uint8(130))), int(np.int8(np.uint8(124))), -128, -128]]
    res = np.array([[10, -10, -100, 1]], np.int8)
    assert vec_apply(VecFunc.ADD, acc, mult, shift, ones, zeros, residual=res).tolist() == [[127, -128, 127, 127]]
    # the token multiplier x 3 >> 2 on v1 = 125, -125, 300, 128 (v1 is not saturated to int8):
    # 377 >> 2 = 94, -373 >> 2 = -94, 902 >> 2 = 225 -> 127, 386 >> 2 = 96
    assert vec_apply("REQUANT", acc, mult, shift, np.array([3]), np.array([2])).tolist() == [[94, -94, 127, 96]]


def test_vec_apply_rejects_bad_shapes():
    acc = np.zeros((2, 3), np.int64)
    with pytest.raises(ShapeError, match="mult must have shape"):
        vec_apply("REQUANT", acc, [1, 1], [0, 0, 0], [1, 1], [0, 0])
    with pytest.raises(ShapeError, match="GELU needs a 256-entry table"):
        vec_apply("GELU", acc, [1] * 3, [0] * 3, [1, 1], [0, 0])
    with pytest.raises(ShapeError, match="ADD needs a residual"):
        vec_apply("ADD", acc, [1] * 3, [0] * 3, [1, 1], [0, 0])
    with pytest.raises(RangeError, match="mult must be int16"):
        vec_apply("REQUANT", acc, [1 << 15] * 3, [0] * 3, [1, 1], [0, 0])


def test_vparam_words():
    data = pack_vparam([1, -1, 32767, -32768], [0, 63, 7, 1])
    assert len(data) == 16
    assert data[:4] == b"\x01\x00\x00\x00" and data[4:8] == b"\xff\xff\x3f\x00"
    assert data[8:12] == b"\xff\x7f\x07\x00" and data[12:16] == b"\x00\x80\x01\x00"
    m, s = unpack_vparam(data)
    assert m.tolist() == [1, -1, 32767, -32768] and s.tolist() == [0, 63, 7, 1]
    # bits 22..31 are ignored
    assert [x.tolist() for x in unpack_vparam(b"\x05\x00\xc2\xff")] == [[5], [2]]
    with pytest.raises(RangeError):
        pack_vparam([0], [64])
    with pytest.raises(RangeError):
        pack_vparam([40000], [0])
    lut = np.arange(-128, 128).astype(np.int8)
    assert unpack_lut(pack_lut(lut)).tolist() == lut.tolist()
    cfg = TileConfig(rows=3)
    head = vparam_header(cfg)
    assert len(head) == (64 + 3) * 4
    assert [x.tolist() for x in unpack_vparam(head[256:])] == [[1, 1, 1], [0, 0, 0]]


def test_fp16_conversions():
    y = np.arange(-128, 128)
    bits = int8_to_fp16_bits(y)
    assert bits.view(np.float16).astype(np.int64).tolist() == y.tolist()
    assert fp16_bits_to_int8(bits).tolist() == y.tolist()
    vals = np.array([0.5, -0.5, 1.5, -1.5, 2.5, 0.49, 127.4, 127.5, 1000, -1000, np.inf, np.nan,
                     6e-8, -0.0], np.float16)
    # round half up: 0.5 -> 1, -0.5 -> 0, 1.5 -> 2, -1.5 -> -1, 2.5 -> 3; saturate; inf/NaN -> 0
    assert fp16_bits_to_int8(vals.view(np.uint16)).tolist() == \
        [1, 0, 2, -1, 3, 0, 127, 127, 127, -128, 0, 0, 0, 0]


def test_fixed_multiplier():
    m, s = fixed_multiplier([1.0, 0.5, 3.0, 1e-3, -0.3, 0.0, 32767.0, 2.0 ** -70, 0.99999])
    assert m.tolist()[:3] == [16384, 16384, 24576] and s.tolist()[:3] == [14, 15, 13]
    assert m[5] == 0 and s[5] == 0
    assert (m[6], s[6]) == (32767, 0)
    assert (m[7], s[7]) == (0, 0)  # below 2**-64: zero
    assert (m[8], s[8]) == (16384, 14)  # rounding carried to 2**15: one bit less
    assert (np.abs(m) <= 32767).all() and ((0 <= s) & (s <= 63)).all()
    val = np.ldexp(m.astype(float), -s)
    assert abs(val[3] / 1e-3 - 1) < 2 ** -14 and abs(val[4] / -0.3 - 1) < 2 ** -14
    with pytest.raises(RangeError):
        fixed_multiplier(40000.0)
    with pytest.raises(RangeError):
        fixed_multiplier(float("nan"))


def test_requantization_helpers_are_accurate():
    # a W4A8 output column: real value acc * 2**-e * sa; per-token input scales carried by the
    # token multipliers with 8 fraction bits in between
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 64)) * rng.uniform(0.1, 3, size=(4, 1))
    a, sa = quantize_act_int8(x)
    exp = np.array([20, 24, 18])
    acc = rng.integers(-(1 << 24), 1 << 24, size=(4, 3))
    real = acc * np.ldexp(1.0, -exp)[None, :] * sa[:, None]
    out_scale = float(np.abs(real).max() / 127)
    ref = float(sa.max())
    mult, shift = column_multipliers(exp, ref, out_scale, frac_bits=8)
    tm, ts = token_multipliers(sa, ref_scale=ref, frac_bits=8)
    y = vec_apply("REQUANT", acc, mult, shift, tm, ts)
    assert np.abs(y * out_scale - real).max() <= 0.52 * out_scale
    # FP16: acc in units of 2**-24
    mult, shift = column_multipliers(exp, None, out_scale, act="fp16")
    assert np.allclose(np.ldexp(mult.astype(float), -shift), np.ldexp(2.0 ** -24 / out_scale, -exp), rtol=2 ** -14)


def test_gelu_lut():
    lut = gelu_lut(0.05, 0.04)
    assert lut.dtype == np.int8 and lut.shape == (256,)
    x = np.arange(256).astype(np.uint8).view(np.int8).astype(np.int64)
    assert (lut == np.clip(np.rint(gelu(x * 0.05) / 0.04), -128, 127)).all()
    assert lut[0] == 0 and lut[100] == 125  # gelu(5.0) = 4.99999857 -> 124.99996 -> 125
    assert lut[0x80] == 0  # x = -128: gelu(-6.4) ~ -5e-10
    assert abs(gelu(np.array([1.0]))[0] - 0.8413447460685429) < 1e-12
    assert math.isclose(gelu(np.array([-1.0]))[0], -0.15865525393145707)
    with pytest.raises(RangeError):
        gelu_lut(0, 1)
