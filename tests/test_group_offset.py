"""Group offsets (``TileConfig.group_offset``): the exact Q4_1 mapping ``w = s (q - z) + om 2**-e``.

The golden term (``mixpe_gemm`` with offsets) against an independent integer reference, its widths
and range checks, the fixed-point rounding of scales and offsets (``to_fixed_offsets``,
``from_scale_offset``) and the Q4_1 conversion against ``Q4_1Weights.dequantize``, META words with
offsets, and the golden executor's GEMM through them. The RTL is checked in tests/test_hw_sim.py
(arrays), tests/test_gemm_unit.py and tests/test_tile_rtl.py (the FP16 tile).
"""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixpim.compiler.gguf_checkpoint import Q4_1Weights
from mixpim.compiler.operands import weight_blocks
from mixpim.models.config import TileConfig, preset
from mixpim.models.errors import ConfigError, RangeError, ShapeError
from mixpim.models.executor import pack_act, pack_meta, pack_wgt, unpack_meta, unpack_offsets
from mixpim.models.isa import Instruction, Opcode
from mixpim.models.mixpe import array_stream, mixpe_gemm
from mixpim.models.numerics import FixedScales, to_fixed_offsets
from mixpim.models.program import Segment
from mixpim.models.quant import QuantizedWeights, from_scale_offset, quantize_weights
from helpers import exact, golden_run, params


# -- independent reference ---------------------------------------------------------------------

def ref_a_val(x, fmt):
    """An activation's value: INT8 as is, FP16 exactly in units of 2**-24 (0 for inf/NaN)."""
    if fmt == "int8":
        return int(x)
    f = float(np.float16(x))
    if f != f or abs(f) == float("inf"):
        return 0
    v = Fraction(f) * (1 << 24)
    assert v.denominator == 1
    return int(v)


def ref_gemm(act, qw, fmt):
    """``acc[m][n] = sum_g (sm * sum_k a (q - z) + om * sum_k a)`` with Python ints, from the fields."""
    m_, k_ = act.shape
    n_ = qw.codes.shape[0]
    a = [[ref_a_val(act[m, k], fmt) for k in range(k_)] for m in range(m_)]
    acc = [[0] * n_ for _ in range(m_)]
    for m, n in itertools.product(range(m_), range(n_)):
        for g in range(qw.ngroups):
            ks = range(g * qw.group, min((g + 1) * qw.group, k_))
            isum = sum(a[m][k] * (int(qw.codes[n, k]) - int(qw.zeros[n, g])) for k in ks)
            asum = sum(a[m][k] for k in ks)
            acc[m][n] += int(qw.scales.mant[n, g]) * isum + int(qw.offsets[n, g]) * asum
    return acc


def random_offset_weights(rng, n, k, group=32, bits=4, scale_bits=16):
    """Random codes, zero points, scale mantissas and offsets at full width (zero points too: the
    array keeps ``q - z`` with offsets)."""
    ng = -(-k // group)
    ob = scale_bits + 8
    offsets = rng.integers(-(1 << (ob - 1)), 1 << (ob - 1), size=(n, ng))
    offsets[:, 0] = rng.choice([-(1 << (ob - 1)), (1 << (ob - 1)) - 1, 0], size=n)  # the extremes
    return QuantizedWeights(
        rng.integers(0, 1 << bits, size=(n, k)).astype(np.uint8), rng.integers(0, 1 << bits, size=(n, ng)),
        FixedScales(rng.integers(0, 1 << scale_bits, size=(n, ng)), rng.integers(-4, 30, size=n), scale_bits),
        bits, group, False, offsets)


def random_act(rng, fmt, m, k):
    if fmt == "int8":
        return rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-6, 4, size=(m, k))).astype(np.float16)
    bits = act.view(np.uint16)
    for v in (0x0001, 0x8000, 0x7BFF, 0xFBFF, 0x7C00, 0x7E00):  # subnormal, -0, +-max, inf, NaN
        bits[rng.integers(m), rng.integers(k)] = v
    return act


def as_ints(acc):
    return [[int(v) for v in row] for row in acc]


# -- the golden term ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(["int8", "fp16"]), group=st.sampled_from([32, 64, 128]),
       m=st.integers(1, 3), n=st.integers(1, 3), k=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_gemm_with_offsets_matches_integer_reference(fmt, group, m, n, k, seed):
    rng = np.random.default_rng(seed)
    qw = random_offset_weights(rng, n, k, group)
    act = random_act(rng, fmt, m, k)
    p = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", group=group, rows=1,
               group_offset=True)
    res = mixpe_gemm(p, act, qw)
    assert as_ints(res.acc) == ref_gemm(act, qw, fmt)
    # the same weights without offsets differ by exactly sum_g om * A
    plain = mixpe_gemm(p, act, QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, group, False))
    zero_off = QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, group, False, np.zeros_like(qw.offsets))
    assert as_ints(mixpe_gemm(p, act, zero_off).acc) == as_ints(plain.acc)


@pytest.mark.parametrize("fmt", ["int8", "fp16"])
def test_gemm_with_offsets_is_the_exact_real_product(fmt):
    # acc * 2**-e (FP16: * 2**-24) equals the float64 product of the dequantized weights and the
    # activations, computed independently with exact rationals
    rng = np.random.default_rng(5)
    n, k, m = 3, 70, 2
    qw = from_scale_offset(rng.integers(0, 16, (n, k)), rng.uniform(0.001, 0.1, (n, 3)),
                           rng.normal(size=(n, 3)) * 0.3, 32)
    act = random_act(rng, fmt, m, k)[:, :]
    if fmt == "fp16":
        act = np.where(np.isfinite(act), act, np.float16(1.5))
    p = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", rows=2, group_offset=True)
    acc = mixpe_gemm(p, act, qw).acc
    w = [[Fraction(float(x)) for x in row] for row in qw.dequantize()]
    a = [[Fraction(float(x)) for x in row] for row in act.astype(np.float64)]
    for i, j in itertools.product(range(m), range(n)):
        exact_val = sum(a[i][kk] * w[j][kk] for kk in range(k))
        unit = Fraction(1, 2 ** int(qw.scales.exp[j])) * (Fraction(1, 1 << 24) if fmt == "fp16" else 1)
        assert int(acc[i, j]) * unit == exact_val


def test_widths_with_offsets_are_minimal_and_sufficient():
    for fmt, group, sb, hr in itertools.product(["int8", "fp16"], [32, 128], [4, 16], [1, 12]):
        p = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", group=group, scale_bits=sb,
                   acc_headroom=hr, group_offset=True)
        q = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", group=group, scale_bits=sb,
                   acc_headroom=hr)
        a_lo, a_hi = (-128, 127) if fmt == "int8" else (-(65504 << 24), 65504 << 24)
        ob = sb + 8
        assert p.offset_bits == ob
        a_sum = (group * a_lo, group * a_hi)
        assert -(1 << (p.gsum_bits - 1)) <= a_sum[0] and a_sum[1] < 1 << (p.gsum_bits - 1)
        assert max(-a_lo, a_hi) >= 1 << (p.act_val_bits - 2)  # a_val needs every bit of act_val_bits
        oprod = max(abs(x * y) for x in a_sum for y in (-(1 << (ob - 1)), (1 << (ob - 1)) - 1))
        assert oprod < 1 << (p.offset_prod_bits - 1) and oprod >= 1 << (p.offset_prod_bits - 3)
        term = group * max(-a_lo, a_hi) * 15 * ((1 << sb) - 1) + oprod
        assert term < 1 << (p.term_bits - 1) and term >= 1 << (p.term_bits - 3)
        assert p.acc_bits == p.term_bits + hr and p.acc_bits == TileConfig(
            pe=p.family + ("-w4a8" if fmt == "int8" else "-w4a16"), group=group, scale_bits=sb,
            acc_headroom=hr, group_offset=True).acc_bits
        # without offsets nothing changes
        assert (q.term_bits, q.acc_bits, q.latency) == (q.scaled_bits, q.scaled_bits + hr, p.latency)


@pytest.mark.parametrize("fmt", ["int8", "fp16"])
def test_accumulator_bounds_worst_case_offsets(fmt):
    # 2**headroom groups of the largest sm * I and om * A, both of the same sign, fit exactly;
    # one more group overflows (RangeError, before the hardware would wrap)
    hr = 2
    p = params(pe="mixpe-w4a8" if fmt == "int8" else "mixpe-w4a16", acc_headroom=hr, group_offset=True)
    a = {"int8": np.int8(-128), "fp16": np.float16(-65504)}[fmt]
    lim = 1 << (p.acc_bits - 1)

    def weights(ng):
        k = 32 * ng
        return QuantizedWeights(np.zeros((1, k), np.uint8), np.full((1, ng), 15), FixedScales(
            np.full((1, ng), 65535), [0], 16), 4, 32, False, np.full((1, ng), -(1 << 23)))
    act = np.full((1, 32 << hr), a)
    acc = int(mixpe_gemm(p, act, weights(1 << hr)).acc[0, 0])
    assert acc == ref_gemm(act, weights(1 << hr), fmt)[0][0] and 0 < acc < lim
    worst = acc >> hr
    over = -(-lim // worst)
    with pytest.raises(RangeError, match="would overflow"):
        mixpe_gemm(p, np.full((1, 32 * over), a), weights(over))


def test_offset_checks():
    rng = np.random.default_rng(1)
    qw = random_offset_weights(rng, 2, 64)
    a = np.zeros((1, 64), np.int8)
    msg = ("the weights have group offsets but the array has no offset term "
           "(TileConfig.group_offset is False)")
    with pytest.raises(RangeError, match=exact(msg)):
        mixpe_gemm(params(), a, qw)
    with pytest.raises(RangeError, match=exact(msg)):
        array_stream(params(), a, qw)
    big = QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, 32, False, qw.offsets * 0 + (1 << 23))
    with pytest.raises(RangeError, match=exact("group offset mantissas must fit 24 bits (-8388608..8388607)")):
        mixpe_gemm(params(group_offset=True), a, big)
    narrow = params(group_offset=True, scale_bits=8)  # 16-bit offsets, and 16-bit scales refused first
    small = QuantizedWeights(qw.codes, qw.zeros, FixedScales(qw.scales.mant >> 8, qw.scales.exp, 8), 4, 32,
                             False, np.full((2, 2), 1 << 15))
    with pytest.raises(RangeError, match=exact("group offset mantissas must fit 16 bits (-32768..32767)")):
        mixpe_gemm(narrow, a, small)
    with pytest.raises(ShapeError, match=exact("offsets have shape (2, 1), expected (2, 2)")):
        QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, 32, False, qw.offsets[:, :1]).check()
    with pytest.raises(RangeError, match=exact("offsets must be integer mantissas, not float64")):
        QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, 32, False, qw.offsets * 1.0).check()


def test_stream_carries_offsets_per_group():
    p = params(rows=2, cols=3, group_offset=True)
    rng = np.random.default_rng(2)
    qw = random_offset_weights(rng, 4, 40)  # 2 feature blocks, K padded to 64
    beats = array_stream(p, np.ones((3, 40), np.int8), qw)
    assert beats["offset"].shape == (2 * 2 * 64, 3)
    first = beats["offset"][:64]  # tile (0, 0): features 0..2
    assert first[:32].tolist() == [list(qw.offsets[:3, 0])] * 32
    assert first[32:].tolist() == [list(qw.offsets[:3, 1])] * 32
    assert (beats["offset"][64:128, 1:] == 0).all()  # padded features
    plain = array_stream(p, np.ones((3, 40), np.int8), QuantizedWeights(qw.codes, qw.zeros, qw.scales,
                                                                        4, 32, False))
    assert (plain["offset"] == 0).all()
    assert "offset" not in array_stream(params(rows=2, cols=3), np.ones((3, 40), np.int8), plain_qw(qw))


def plain_qw(qw):
    return QuantizedWeights(qw.codes, qw.zeros, qw.scales, qw.bits, qw.group, qw.symmetric)


# -- fixed point: scales and offsets at one exponent per row ----------------------------------

def test_to_fixed_offsets_by_hand():
    # scales 1 and 0.5, offsets -3.25 and 0.75: row exponent 15 (largest scale 1 -> 2**15)
    fs, om = to_fixed_offsets([[1.0, 0.5]], [[-3.25, 0.75]], 16, 24)
    assert fs.exp.tolist() == [15] and fs.mant.tolist() == [[1 << 15, 1 << 14]]
    assert om.tolist() == [[-3.25 * 2**15, 0.75 * 2**15]]
    # an offset 300 times the largest scale does not fit 24 bits at exponent 15: the row drops to
    # the exponent that puts it in [2**22, 2**23)
    fs, om = to_fixed_offsets([[1.0]], [[300.0]], 16, 24)
    assert fs.exp.tolist() == [14] and om.tolist() == [[300 << 14]] and fs.mant.tolist() == [[1 << 14]]
    # zero scales: the exponent comes from the offsets; all zero: exponent 0
    fs, om = to_fixed_offsets([[0.0, 0.0], [0.0, 0.0]], [[0.5, -0.25], [0.0, 0.0]], 16, 24)
    assert fs.exp.tolist() == [23, 0] and om.tolist() == [[1 << 22, -(1 << 21)], [0, 0]]
    # rounding half to even at the last bit (units of 2**-15 here)
    fs, om = to_fixed_offsets([[1.0, 1.0, 1.0]], [[2.0**-15 + 2.0**-16, 2.0**-16, -5 * 2.0**-16]], 16, 24)
    assert om.tolist() == [[2, 0, -2]]  # 1.5 -> 2, 0.5 -> 0, -2.5 -> -2
    # a carry out of the top: 1 - 2**-25 at exponent 23 rounds to 2**23, so the row takes 22
    fs, om = to_fixed_offsets([[0.0]], [[1 - 2.0**-25]], 16, 24)
    assert (fs.exp.tolist(), om.tolist()) == ([22], [[1 << 22]])
    with pytest.raises(ShapeError, match=exact("offsets have shape (1, 1), the scales (1, 2)")):
        to_fixed_offsets([[1.0, 1.0]], [[1.0]], 16, 24)
    with pytest.raises(RangeError, match=exact("offsets must be finite")):
        to_fixed_offsets([[1.0]], [[np.nan]], 16, 24)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 4), groups=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       scale_bits=st.sampled_from([8, 12, 16]), spread=st.floats(0, 12))
def test_from_scale_offset_error_bound(n, groups, seed, scale_bits, spread):
    # |dequantize() - (d q + m)| <= (q + 1) / 2 units 2**-e, the offset alone <= half a unit; the
    # unit is <= 2**-(scale_bits - 1) of the row's largest scale unless offsets lowered e
    rng = np.random.default_rng(seed)
    k = groups * 32
    d = rng.uniform(0, 1, (n, groups)) * 2.0 ** rng.uniform(-spread, 0, (n, groups))
    m = rng.normal(size=(n, groups)) * 8 * d * 2.0 ** rng.uniform(-spread, 4, (n, groups))
    q = rng.integers(0, 16, (n, k))
    qw = from_scale_offset(q, d, m, 32, scale_bits=scale_bits)
    qw.check()
    assert (qw.zeros == 0).all() and qw.offsets.dtype == np.int64
    assert np.abs(qw.offsets).max() < 1 << (scale_bits + 7)
    ref = np.repeat(d, 32, axis=1) * q + np.repeat(m, 32, axis=1)
    unit = np.ldexp(1.0, -qw.scales.exp)[:, None]
    err = np.abs(qw.dequantize() - ref)
    assert (err <= (q + 1) / 2 * unit * (1 + 1e-12)).all()
    off_err = np.abs(np.ldexp(qw.offsets.astype(float), -qw.scales.exp[:, None]) - m)
    assert (off_err <= unit / 2).all()
    fits = np.abs(m).max(axis=1) / d.max(axis=1) < 2 ** 7  # the offsets fit at the scales' exponent
    # (a rounding carry of the largest mantissa to 2**scale_bits costs a little more)
    top = d.max(axis=1)[fits] * 2.0 ** -(scale_bits - 1) / (1 - 2.0 ** -(scale_bits + 1))
    assert (unit[fits, 0] <= top).all()


def test_from_scale_offset_errors():
    q = np.zeros((2, 64), np.int64)
    with pytest.raises(ShapeError, match=exact("scales have shape (2, 1), expected (2, 2) for 2x64 codes in groups of 32")):
        from_scale_offset(q, np.ones((2, 1)), np.ones((2, 2)), 32)
    with pytest.raises(ShapeError, match=exact("offsets have shape (2,), expected (2, 2) for 2x64 codes in groups of 32")):
        from_scale_offset(q, np.ones((2, 2)), np.ones(2), 32)
    with pytest.raises(RangeError, match=exact("codes must be integers in 0..15")):
        from_scale_offset(q + 16, np.ones((2, 2)), np.ones((2, 2)), 32)
    with pytest.raises(ConfigError, match=exact("group must be one of (32, 64, 128), not 16")):
        from_scale_offset(q, np.ones((2, 4)), np.ones((2, 4)), 16)
    with pytest.raises(RangeError, match=exact("scales must be finite and non-negative")):
        from_scale_offset(q, -np.ones((2, 2)), np.ones((2, 2)), 32)


def q4_1_block_matrix(rng, n, k):
    """Q4_1-like weights: fp16 d >= 0 and m (usually about -8 d, sometimes a group of one sign)."""
    d = (rng.uniform(0.2, 1, (n, k // 32)) * 0.02).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(0, 15, d.shape) + rng.normal(size=d.shape) * 0.01 * (rng.random(d.shape) < 0.1))
    m = m.astype(np.float16).astype(np.float32)
    return Q4_1Weights(d, m, rng.integers(0, 16, (n, k)).astype(np.uint8))


def test_q4_1_conversion():
    rng = np.random.default_rng(7)
    w = q4_1_block_matrix(rng, 16, 256)
    qw = w.to_quantized()
    assert (qw.group, qw.bits, qw.symmetric) == (32, 4, False) and (qw.zeros == 0).all()
    assert np.array_equal(qw.codes, w.q)
    exact_w = np.repeat(w.d.astype(np.float64), 32, axis=1) * w.q + np.repeat(w.m.astype(np.float64), 32, axis=1)
    unit = np.ldexp(1.0, -qw.scales.exp)[:, None]
    err = np.abs(qw.dequantize() - exact_w)
    assert (err <= (w.q + 1) / 2 * unit).all() and (unit[:, 0] <= w.d.max(axis=1) * 2.0**-15).all()
    # Q4_1Weights.dequantize() is d q + m rounded to float32: within that rounding as well
    f32 = w.dequantize().astype(np.float64)
    assert (np.abs(qw.dequantize() - f32) <= err + np.abs(f32) * 2.0**-24).all()
    # FP16 scales and offsets within 2**5 of the row's largest scale are exact at 16 bits
    w2 = Q4_1Weights(w.d, (-8 * w.d).astype(np.float16).astype(np.float32), w.q)
    assert np.array_equal(w2.to_quantized().dequantize(),
                          np.repeat(w2.d.astype(np.float64), 32, axis=1) * w2.q
                          + np.repeat(w2.m.astype(np.float64), 32, axis=1))


def test_q4_1_conversion_smollm2_is_exact():
    # On SmolLM2 every scale and offset is a multiple of its row's unit: the conversion is exact
    pytest.importorskip("gguf")
    from mixpim.compiler.gguf_checkpoint import GgufFile, smollm2_path
    from mixpim.compiler.checkpoint import CheckpointError
    try:
        g = GgufFile(smollm2_path())
    except CheckpointError as e:
        pytest.skip(str(e))
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight"):
        w = g.q4_1(name)
        exact_w = (np.repeat(w.d.astype(np.float64), 32, axis=1) * w.q
                   + np.repeat(w.m.astype(np.float64), 32, axis=1))
        assert np.array_equal(w.to_quantized().dequantize(), exact_w), name


# -- META words, the executor and the compiler's operand packing -------------------------------

def test_meta_words_with_offsets():
    cfg = TileConfig(cols=2, group_offset=True)
    z, s, o = [[1, 15]], [[0x1234, 0xFFFF]], [[-1, (1 << 23) - 1]]
    data = pack_meta(cfg, z, s, o)
    assert data == bytes([0x34, 0x12, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 15, 0xFF, 0xFF, 0x7F])
    assert [x.tolist() for x in unpack_meta(cfg, data)] == [z, s]
    assert unpack_offsets(cfg, data).tolist() == o
    assert pack_meta(cfg, z, s) == pack_meta(cfg, z, s, [[0, 0]])  # offsets default to 0
    plain = TileConfig(cols=2)
    assert pack_meta(plain, z, s) == bytes([0x34, 0x12, 1, 0xFF, 0xFF, 15])  # unchanged: 3 bytes
    assert unpack_offsets(plain, pack_meta(plain, z, s)).tolist() == [[0, 0]]
    with pytest.raises(ShapeError, match=exact("group offsets need a configuration with group_offset; "
                                               "this one's META entries have no offset")):
        pack_meta(plain, z, s, o)
    with pytest.raises(ShapeError, match=exact("offset mantissas must be in -8388608..8388607")):
        pack_meta(cfg, z, s, [[0, 1 << 23]])


@pytest.mark.parametrize("pe", ["mixpe-w4a8", "mixpe-w4a16", "baseline-w4a16"])
def test_executor_gemm_with_offsets(pe):
    # one GEMM on a group_offset tile equals mixpe_gemm of the decoded weights; an offset field
    # wider than the array's offset_bits (scale_bits 12 -> 20 bits) is taken modulo 2**20
    cfg = preset("tiny").replace(pe=pe, group_offset=True, scale_bits=12)
    rng = np.random.default_rng(4)
    g = 2
    k = g * cfg.group
    act = random_act(rng, cfg.act_format, cfg.rows, k)
    codes = rng.integers(0, 16, (cfg.cols, k))
    zeros = rng.integers(0, 16, (cfg.cols, g))
    scales = rng.integers(0, 1 << 12, (cfg.cols, g))
    offsets = rng.integers(-(1 << 23), 1 << 23, (cfg.cols, g))
    segs = [Segment("ACT", 0, pack_act(cfg, act.T), cfg.act_word_bytes),
            Segment("WGT", 0, pack_wgt(cfg, codes.T), cfg.wgt_word_bytes),
            Segment("META", 0, pack_meta(cfg, zeros.T, scales.T, offsets.T), cfg.meta_word_bytes)]
    res, _ = golden_run(cfg, [Instruction(Opcode.GEMM, groups=g)], segs)
    assert res.ok
    wrapped = ((offsets + (1 << 19)) & ((1 << 20) - 1)) - (1 << 19)
    qw = QuantizedWeights(codes.astype(np.uint8), zeros, FixedScales(scales, np.zeros(cfg.cols, np.int64), 12),
                          4, cfg.group, False, wrapped)
    want = mixpe_gemm(params(**{f: getattr(cfg, f) for f in ("rows", "cols", "pe", "group", "scale_bits")},
                             group_offset=True, acc_headroom=cfg.acc_headroom), act, qw).acc
    assert as_ints(res.spads["ACC"][:cfg.rows]) == as_ints(want) == ref_gemm(act, qw, cfg.act_format)
    assert (wrapped != offsets).any() and (wrapped != 0).all()


def test_weight_blocks_pack_offsets():
    cfg = TileConfig(rows=2, cols=3, group_offset=True)
    rng = np.random.default_rng(3)
    qw = from_scale_offset(rng.integers(0, 16, (4, 40)), rng.uniform(0, 1, (4, 2)), rng.normal(size=(4, 2)), 32)
    _, meta = weight_blocks(cfg, qw)
    assert [len(b) for b in meta] == [2 * cfg.meta_word_bytes] * 2
    got = np.concatenate([unpack_offsets(cfg, b).T for b in meta])  # (features, groups)
    assert got[:4].tolist() == qw.offsets.tolist() and (got[4:] == 0).all()
    plain = quantize_weights(rng.normal(size=(4, 40)), 4, 32)
    assert all((unpack_offsets(cfg, b) == 0).all() for b in weight_blocks(cfg, plain)[1])
    with pytest.raises(ShapeError, match="need a configuration with group_offset"):
        weight_blocks(TileConfig(rows=2, cols=3), qw)


@pytest.mark.parametrize("name", ["llm", "tiny-offset"])
def test_compiled_linear_with_q4_1_weights(name):
    # a Linear with Q4_1 weights, compiled for a group_offset tile and run on the golden executor:
    # the accumulators are mixpe_gemm's, and in real units the exact product X (d q + m)^T
    from mixpim.compiler.linear import lower_linear
    from mixpim.models.executor import execute
    from mixpim.models.mixpe import ArrayParams
    cfg = preset("llm") if name == "llm" else preset("tiny").replace(pe="mixpe-w4a16", group_offset=True)
    rng = np.random.default_rng(9)
    n, k, m = 20, 96, 5
    w = q4_1_block_matrix(rng, n, k)
    qw = w.to_quantized()
    x = (rng.normal(size=(m, k)) * 2).astype(np.float16)
    cl = lower_linear(cfg, x, qw)
    res = execute(cl.program)
    assert res.ok and res.races == ()
    got = cl.layout.output(res)
    assert got.tolist() == mixpe_gemm(ArrayParams.from_config(cfg), x, qw).acc.tolist()
    real = np.array([[Fraction(int(v)) / 2 ** (24 + int(qw.scales.exp[j])) for j, v in enumerate(row)]
                     for row in got])
    wx = [[Fraction(float(v)) for v in row] for row in qw.dequantize()]
    xx = [[Fraction(float(v)) for v in row] for row in x.astype(np.float64)]
    want = np.array([[sum(a * b for a, b in zip(xx[i], wx[j])) for j in range(n)] for i in range(m)])
    assert (real == want).all()


def test_design_names_and_manifest():
    from mixpim.sim.designs import design_for
    d = design_for(TileConfig(rows=2, cols=3, pe="mixpe-w4a16", group_offset=True))
    assert d.top == "mixpe_array_r2c3_w4_fp16_g32_s16_h12_go"
    w = d.manifest()["widths"]
    assert (w["offset_bits"], w["gsum_bits"], w["offset_prod_bits"], w["term_bits"], w["acc_bits"]) == \
        (24, 46, 69, 70, 82)
    plain = design_for(TileConfig(rows=2, cols=3, pe="mixpe-w4a16"))
    assert plain.top == "mixpe_array_r2c3_w4_fp16_g32_s16_h12" and "term_bits" not in plain.manifest()["widths"]
