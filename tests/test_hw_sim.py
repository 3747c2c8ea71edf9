"""Amaranth-simulator tests of the small blocks and of small arrays (hw/)."""


import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Const, Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mixpim.hw.array import BaselineArray, MixPEArray, make_array
from mixpim.hw.baseline_pe import BaselinePE
from mixpim.hw.fp16 import FP16Split
from mixpim.hw.layouts import (array_input_layout, array_output_layout, pack, pe_act_layout,
                               unpack_array)
from mixpim.hw.mixpe_pe import MixPE
from mixpim.hw.shift_add import ShiftAddMultiplier, shift_add
from mixpim.models.config import TileConfig
from mixpim.models.mixpe import array_stream, array_timing, array_unstream, mixpe_gemm
from mixpim.models.numerics import fp16_decode
from mixpim.models.numerics import FixedScales
from mixpim.models.quant import QuantizedWeights, quantize_weights
from helpers import ctl, exact, params, rejects, run, to_signed


# -- ShiftAddMultiplier ------------------------------------------------------------------------

@pytest.mark.parametrize("a_width, w_width", [(8, 5), (12, 3)])
def test_shift_add_multiplier_exhaustive(a_width, w_width):
    dut = ShiftAddMultiplier(a_width, w_width)
    assert len(dut.o_p) == a_width + w_width and dut.o_p.shape().signed
    a_range = range(-(1 << (a_width - 1)), 1 << (a_width - 1))
    w_range = range(-(1 << (w_width - 1)), 1 << (w_width - 1))
    bad = []

    async def tb(ctx):
        for a in a_range:
            ctx.set(dut.i_a, a)
            for w in w_range:
                ctx.set(dut.i_w, w)
                if ctx.get(dut.o_p) != a * w:
                    bad.append((a, w, ctx.get(dut.o_p)))

    run(dut, tb, clock=False)
    assert not bad, bad[:10]


def test_shift_add_has_no_multiplier():
    text = rtlil.convert(ShiftAddMultiplier(8, 5))
    assert "$mul" not in text and "$add" in text


def test_shift_add_multiplier_validation():
    rejects(TypeError, "a_width must be a positive integer, not 0",
                              lambda: ShiftAddMultiplier(0, 4))
    rejects(TypeError, "a_width must be a positive integer, not '8'",
                              lambda: ShiftAddMultiplier("8", 4))
    rejects(TypeError, "w_width must be an integer in 2..8, not 1",
                              lambda: ShiftAddMultiplier(8, 1))
    rejects(TypeError, "w_width must be an integer in 2..8, not 9",
                              lambda: ShiftAddMultiplier(8, 9))
    from amaranth.hdl import Signal, signed
    msg = "the weight needs a sign bit and at least one magnitude bit, not 1 bits"
    with pytest.raises(ValueError, match=exact(msg)):
        shift_add(Signal(signed(8)), Signal(signed(1)))


# -- FP16Split ---------------------------------------------------------------------------------

class _WideSplit(wiring.Component):
    """``n`` FP16 splitters side by side, so one simulator step checks ``n`` patterns. Each result
    (``o_act`` then ``o_nonfinite``) sits in its own 32-bit slot of ``o``."""

    def __init__(self, n):
        self._n = n
        super().__init__({"i": In(16 * n), "o": Out(32 * n)})

    def elaborate(self, platform):
        m = Module()
        outs = []
        for k in range(self._n):
            split = FP16Split()
            m.submodules[f"split{k}"] = split
            m.d.comb += split.i_bits.eq(self.i[16 * k:16 * (k + 1)])
            act = split.o_act.as_value()
            outs.append(Cat(act, split.o_nonfinite, Const(0, 31 - len(act))))
        m.d.comb += self.o.eq(Cat(*outs))
        return m


def test_fp16_split_every_bit_pattern():
    n = 256
    dut = _WideSplit(n)
    lay = pe_act_layout("fp16")
    assert lay.size == 17
    words = []

    async def tb(ctx):
        for base in range(0, 1 << 16, n):
            ctx.set(dut.i, int.from_bytes(np.arange(base, base + n, dtype="<u2").tobytes(), "little"))
            words.append(ctx.get(dut.o).to_bytes(4 * n, "little"))

    run(dut, tb, clock=False)
    slots = np.frombuffer(b"".join(words), dtype="<u4").astype(np.int64)
    sig = (slots >> lay["sig"].offset) & 0xFFF
    sig = np.where(sig >= 0x800, sig - 0x1000, sig)
    sh = (slots >> lay["sh"].offset) & 0x1F
    nonfinite = (slots >> lay.size) & 1
    ref_sig, ref_exp, ref_nonfinite = fp16_decode(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16))
    assert np.array_equal(sig, ref_sig)
    assert np.array_equal(sh, ref_exp - 1)
    assert np.array_equal(nonfinite.astype(bool), ref_nonfinite)


# -- PEs ---------------------------------------------------------------------------------------

def _act_stream(rng, act, n):
    """Random PE activations: (word to drive, a_val) pairs."""
    if act == "int8":
        a = rng.integers(-128, 128, size=n)
        return [(int(v), int(v)) for v in a], None
    lay = pe_act_layout("fp16")
    bits = rng.integers(0, 1 << 16, size=n).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= 0x83FF  # keep to finite values: the PE never sees inf/NaN
    bits[::7] = rng.integers(0, 1 << 10, size=bits[::7].shape)  # plenty of subnormals
    sig, exp, _ = fp16_decode(bits)
    words = [((int(s) & 0xFFF) << lay["sig"].offset) | ((int(e) - 1) << lay["sh"].offset) for s, e in zip(sig, exp)]
    return list(zip(words, (int(s) << (int(e) - 1) for s, e in zip(sig, exp)))), lay


def _res_fields(word, width):
    return word & 1, (word >> 1) & 1, to_signed(word >> 2, width)  # result_layout: valid, tlast, value


@pytest.mark.parametrize("act", ["int8", "fp16"])
def test_mixpe_pe_stream(act):
    p = params(pe="mixpe-w4a16" if act == "fp16" else "mixpe-w4a8")
    dut = MixPE(p)
    rng = np.random.default_rng(11)
    n = 200
    acts, _ = _act_stream(rng, act, n)
    wcs = rng.integers(-15, 16, size=n)
    valid = rng.random(n) < 0.8
    # group ends on every 5th valid beat (the PE does not count: glast says where), tiles of 3 groups
    glast = np.zeros(n, bool)
    tlast = np.zeros(n, bool)
    vidx = np.flatnonzero(valid)
    glast[vidx[4::5]] = True
    tlast[vidx[14::15]] = True
    expected, seen = [], []

    async def tb(ctx):
        psum = 0
        for t in range(n):
            ctx.set(Value.cast(dut.i_act), acts[t][0])
            ctx.set(dut.i_wc, int(wcs[t]))
            ctx.set(dut.i_ctl.as_value(), ctl(valid[t], glast[t], tlast[t]))
            await ctx.tick()
            # registered pass-through
            assert ctx.get(Value.cast(dut.o_act)) == acts[t][0]
            assert ctx.get(dut.o_wc) == wcs[t]
            assert ctx.get(dut.o_ctl.as_value()) == ctl(valid[t], glast[t], tlast[t])
            v, tl, value = _res_fields(ctx.get(dut.o_res.as_value()), p.psum_bits)
            if valid[t]:
                psum += acts[t][1] * int(wcs[t])
            if valid[t] and glast[t]:
                expected.append((t, bool(tlast[t]), psum))
                psum = 0
            if v:
                seen.append((t, bool(tl), value))

    run(dut, tb)
    assert len(expected) >= 10
    assert seen == expected


@pytest.mark.parametrize("act", ["int8", "fp16"])
def test_baseline_pe_stream(act):
    p = params(pe="baseline-w4a16" if act == "fp16" else "baseline-w4a8")
    dut = BaselinePE(p)
    rng = np.random.default_rng(12)
    n = 200
    acts, _ = _act_stream(rng, act, n)
    codes = rng.integers(0, 16, size=n)
    zeros = rng.integers(0, 16, size=n)
    scales = rng.integers(0, 1 << 16, size=n)
    scales[:3] = 65535
    valid = rng.random(n) < 0.8
    glast = np.zeros(n, bool)
    tlast = np.zeros(n, bool)
    vidx = np.flatnonzero(valid)
    glast[vidx[3::4]] = True  # ignored by the baseline PE
    tlast[vidx[11::12]] = True
    expected, seen = [], []

    async def tb(ctx):
        acc = 0
        for t in range(n):
            ctx.set(Value.cast(dut.i_act), acts[t][0])
            ctx.set(dut.i_code, int(codes[t]))
            ctx.set(dut.i_zero, int(zeros[t]))
            ctx.set(dut.i_scale, int(scales[t]))
            ctx.set(dut.i_ctl.as_value(), ctl(valid[t], glast[t], tlast[t]))
            await ctx.tick()
            assert ctx.get(Value.cast(dut.o_act)) == acts[t][0]
            assert (ctx.get(dut.o_code), ctx.get(dut.o_zero), ctx.get(dut.o_scale)) == \
                (codes[t], zeros[t], scales[t])
            assert ctx.get(dut.o_ctl.as_value()) == ctl(valid[t], glast[t], tlast[t])
            v, tl, value = _res_fields(ctx.get(dut.o_res.as_value()), p.acc_bits)
            if valid[t]:
                acc += acts[t][1] * (int(codes[t]) - int(zeros[t])) * int(scales[t])
            if valid[t] and tlast[t]:
                expected.append((t, True, acc))
                acc = 0
            if v:
                seen.append((t, bool(tl), value))

    run(dut, tb)
    assert len(expected) >= 10
    assert seen == expected


def test_pe_multipliers():
    # MixPE multiplies by shift and add; the baseline PE has real multipliers
    for pe in ("mixpe-w4a8", "mixpe-w4a16"):
        assert "$mul" not in rtlil.convert(MixPE(params(pe=pe)))
    for pe in ("baseline-w4a8", "baseline-w4a16"):
        assert "$mul" in rtlil.convert(BaselinePE(params(pe=pe)))


def test_pe_and_array_validation():
    mix, base = params(), params(pe="baseline-w4a8")
    cfg = TileConfig()
    rejects(TypeError, f"params must be an ArrayParams, not {cfg!r}", lambda: MixPE(cfg))
    rejects(TypeError, "params must be an ArrayParams, not None", lambda: BaselinePE(None))
    rejects(ValueError, "params describe a baseline array, not a mixpe one", lambda: MixPE(base))
    rejects(ValueError, "params describe a mixpe array, not a baseline one",
                              lambda: BaselinePE(mix))
    rejects(TypeError, f"params must be an ArrayParams, not {cfg!r}", lambda: MixPEArray(cfg))
    rejects(TypeError, "params must be an ArrayParams, not 4", lambda: BaselineArray(4))
    rejects(ValueError, "params describe a baseline array, not a mixpe one",
                              lambda: MixPEArray(base))
    rejects(ValueError, "params describe a mixpe array, not a baseline one",
                              lambda: BaselineArray(mix))
    # make_array picks the family; a TileConfig has a family but is not an ArrayParams
    rejects(TypeError, f"params must be an ArrayParams, not {cfg!r}", lambda: make_array(cfg))


def test_make_array_rejects_non_params_with_a_type_error():
    # Regression (fixed bug, minor, hw/array.py): make_array(x) reads x.family before any check, so a value without a
    # `family` attribute gets an AttributeError instead of the TypeError every constructor raises.
    try:
        rejects(TypeError, "params must be an ArrayParams, not None", lambda: make_array(None))
    except AttributeError as e:
        pytest.fail(f"make_array(None) raised AttributeError ({e}) instead of "
                    f"TypeError('params must be an ArrayParams, not None')")


# -- arrays ------------------------------------------------------------------------------------

def drive_array(p, dut, words, n_out, *, gap=0.0, stall=0.0, seed=0):
    """Feed ``words`` to ``dut.i_stream`` (with random input bubbles ``gap``) and collect ``n_out``
    output beats (with random output backpressure ``stall``), checking the stream rules on the
    output (``n_out=None``: take whatever comes until the array is idle). Returns the output
    words, the transfer cycles, and after every edge the number of input beats transferred so far
    with o_error and o_nonfinite."""
    rng = np.random.default_rng(seed)
    rec = {"outs": [], "in_cycles": [], "out_cycles": [], "flags": []}
    idle = p.latency + p.rows + 8  # cycles to watch for stray outputs after the last one

    async def tb(ctx):
        cyc, idx, holding, prev, after = 0, 0, False, None, 0
        while after < idle:
            if idx < len(words):
                v = holding or rng.random() >= gap  # once offered, a beat stays until taken
                ctx.set(dut.i_stream.valid, v)
                ctx.set(dut.i_stream.payload.as_value(), int(words[idx]))
                holding = v
            else:
                ctx.set(dut.i_stream.valid, 0)
            done = n_out is not None and len(rec["outs"]) >= n_out
            ready = done or rng.random() >= stall
            ctx.set(dut.o_stream.ready, ready)
            _, _, iv, ir, ov, orr, op = await ctx.tick().sample(
                dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.ready,
                dut.o_stream.payload.as_value())
            if prev is not None and prev[0] and not prev[1]:
                assert ov and op == prev[2], f"output beat changed or dropped before its transfer at cycle {cyc}"
            prev = (ov, orr, op)
            if iv and ir:
                rec["in_cycles"].append(cyc)
                idx += 1
                holding = False
            if ov and orr:
                assert n_out is None or len(rec["outs"]) < n_out, f"unexpected extra output beat at cycle {cyc}"
                rec["outs"].append(int(op))
                rec["out_cycles"].append(cyc)
            rec["flags"].append((idx, ctx.get(dut.o_error), ctx.get(dut.o_nonfinite)))
            if (n_out is None or len(rec["outs"]) == n_out) and idx == len(words):
                after += 1
            cyc += 1
            assert cyc < 20000, "the array stopped producing output"

    run(dut, tb)
    return rec


def gemm_case(p, m, n, k, seed, fp16_specials=()):
    rng = np.random.default_rng(seed)
    qw = quantize_weights(rng.normal(size=(n, k)), p.wbits, p.group)
    if p.act_format == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
        act[0, :5] = -128
    else:
        act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-7, 4, size=(m, k))).astype(np.float16)
        bits = act.view(np.uint16)
        bits[0, :4] = [0x0001, 0x8000, 0x7BFF, 0xFBFF]  # subnormal, -0, max, -max
        for (i, j, v) in fp16_specials:
            bits[i, j] = v
    return act, qw


def run_gemm(p, act, qw, **kw):
    beats = array_stream(p, act, qw)
    words = pack(array_input_layout(p), beats)
    n_out = int(beats["last"].sum()) * p.rows
    dut = make_array(p)
    rec = drive_array(p, dut, words, n_out, **kw)
    res = unpack_array(array_output_layout(p), rec["outs"])
    got = array_unstream(p, res, act.shape[0], qw.codes.shape[0])
    return got, rec, beats


PES = ["mixpe-w4a8", "mixpe-w4a16", "baseline-w4a8", "baseline-w4a16"]


ARRAY_SHAPES = [(pe, 2, 3, 3, 5, 70) for pe in PES] + [  # 2x3: 2 x 2 tiles, K padded to 3 groups
    ("mixpe-w4a8", 1, 33, 1, 33, 96),  # more columns than a group: several scales in flight per column
    ("mixpe-w4a16", 32, 1, 32, 2, 64),  # rows == group: the column bus is busy every cycle
    ("baseline-w4a8", 1, 1, 2, 1, 1),
]


@pytest.mark.parametrize("pe, rows, cols, m, n, k", ARRAY_SHAPES)
def test_array_bit_and_cycle_exact(pe, rows, cols, m, n, k):
    p = params(rows=rows, cols=cols, pe=pe)
    act, qw = gemm_case(p, m, n, k, seed=rows * cols + PES.index(pe))
    gold = mixpe_gemm(p, act, qw)
    got, rec, beats = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]
    tm = array_timing(p, m, n, k)
    t0 = rec["in_cycles"][0]
    # no stalls: input beats are taken back to back, outputs of a tile leave on consecutive cycles
    assert rec["in_cycles"] == list(range(t0, t0 + len(beats["last"])))
    assert rec["out_cycles"][0] - t0 == tm.first_output
    assert rec["out_cycles"][-1] - t0 + 1 == tm.total
    # every tile: first row `latency` cycles after the tile's last input beat, rows on consecutive cycles
    ends = [rec["in_cycles"][i] for i in np.flatnonzero(beats["last"])]
    expected_out = [e + p.latency + r for e in ends for r in range(p.rows)]
    assert rec["out_cycles"] == expected_out
    assert all(err == 0 and nf == 0 for _, err, nf in rec["flags"])


@pytest.mark.parametrize("pe", PES)
def test_array_bit_exact_under_backpressure_and_bubbles(pe):
    p = params(rows=2, cols=3, pe=pe)
    act, qw = gemm_case(p, 4, 4, 64, seed=20 + PES.index(pe))
    gold = mixpe_gemm(p, act, qw)
    got, rec, _ = run_gemm(p, act, qw, gap=0.3, stall=0.5, seed=PES.index(pe))
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]
    tm = array_timing(p, 4, 4, 64)
    assert rec["out_cycles"][-1] - rec["in_cycles"][0] + 1 > tm.total  # it really was stalled
    assert all(err == 0 and nf == 0 for _, err, nf in rec["flags"])


@pytest.mark.parametrize("pe", ["mixpe-w4a8", "baseline-w4a16"])
def test_array_output_backpressure_only(pe):
    # constant backpressure pattern, no input bubbles; exercises the global enable on its own
    p = params(rows=2, cols=3, pe=pe)
    act, qw = gemm_case(p, 2, 6, 96, seed=31)
    got, _, _ = run_gemm(p, act, qw, stall=0.8, seed=3)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in mixpe_gemm(p, act, qw).acc]


@pytest.mark.parametrize("pe", PES)
def test_array_extreme_operands_use_every_accumulator_bit(pe):
    # acc_headroom = 1: two groups of worst-case products reach the accumulator's limits exactly
    p = params(rows=2, cols=3, pe=pe, acc_headroom=1)
    k = 64
    codes = np.array([[0] * k, [15] * k, [0, 15] * (k // 2)], np.uint8)  # q - z = -15, +15, mixed
    zeros = np.array([[15, 15], [0, 0], [15, 0]])
    qw = QuantizedWeights(codes, zeros, FixedScales(np.full((3, 2), 65535), [0, 0, 0], 16), 4, 32, False)
    if p.act_format == "int8":
        act = np.array([[-128] * k, [127] * k], np.int8)
    else:
        act = np.array([[-65504.0] * k, [65504.0] * k], np.float16)
    gold = mixpe_gemm(p, act, qw)
    lim = 1 << (p.acc_bits - 1)
    top = 2 * p.psum_max * 65535
    assert int(gold.acc[0, 0]) == top and top > lim // 2  # the top bit below the sign is used
    got, _, _ = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]


@pytest.mark.parametrize("pe", ["mixpe-w4a8", "baseline-w4a8"])
def test_array_error_flag_on_mid_group_last(pe):
    p = params(rows=2, cols=3, pe=pe)
    act, qw = gemm_case(p, 2, 3, 64, seed=4)
    beats = array_stream(p, act, qw)
    beats["last"][9] = True  # a tile ends on the 10th beat of a 32-beat group
    words = pack(array_input_layout(p), beats)
    dut = make_array(p)
    rec = drive_array(p, dut, words, n_out=None)  # what a malformed stream computes is not specified
    for n_in, err, nf in rec["flags"]:
        assert nf == 0
        # registered and sticky: set by the edge that takes beat 9, from then on
        assert err == (n_in >= 10), (n_in, err)


@pytest.mark.parametrize("pe", ["mixpe-w4a16", "baseline-w4a16"])
@pytest.mark.parametrize("inf", [0x7C00, 0xFC00, 0x7E00])
def test_array_nonfinite_flag_on_fp16_inf(pe, inf):
    p = params(rows=2, cols=3, pe=pe)
    m, n, k = 2, 3, 64
    act, qw = gemm_case(p, m, n, k, seed=5, fp16_specials=[(1, 40, inf)])
    gold = mixpe_gemm(p, act, qw)
    assert gold.nonfinite.tolist() == [False, True]
    got, rec, beats = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]
    # the beat carrying the inf is beat 40 of the only tile; the flag rises with it and stays
    for n_in, err, nf in rec["flags"]:
        assert err == 0
        assert nf == (n_in >= 41), (n_in, nf)


def test_array_nonfinite_flag_ignores_padding_and_finite_values():
    p = params(rows=2, cols=3, pe="mixpe-w4a16")
    act, qw = gemm_case(p, 1, 1, 33, seed=6)  # padded rows, columns and K
    got, rec, _ = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in mixpe_gemm(p, act, qw).acc]
    assert all(nf == 0 for _, _, nf in rec["flags"])


# -- arrays with group offsets -----------------------------------------------------------------

def offset_case(p, m, n, k, seed):
    """Random codes, zero points, scales and full-range signed offsets (the extremes in group 0)."""
    rng = np.random.default_rng(seed)
    ng = -(-k // p.group)
    half = 1 << (p.offset_bits - 1)
    offsets = rng.integers(-half, half, size=(n, ng))
    offsets[:, 0] = rng.choice([-half, half - 1], size=n)
    qw = QuantizedWeights(rng.integers(0, 16, size=(n, k)).astype(np.uint8), rng.integers(0, 16, size=(n, ng)),
                          FixedScales(rng.integers(0, 1 << p.scale_bits, size=(n, ng)), np.zeros(n, np.int64),
                                      p.scale_bits), 4, p.group, False, offsets)
    act, _ = gemm_case(p, m, n, k, seed)
    return act, qw


OFFSET_SHAPES = [(pe, 2, 3, 3, 5, 70) for pe in PES] + [
    ("mixpe-w4a8", 1, 33, 1, 33, 96),   # more columns than a group: offsets of several groups in flight
    ("mixpe-w4a16", 32, 1, 32, 2, 64),  # rows == group: the group-sum bus is busy every cycle
    ("mixpe-w4a16", 3, 4, 7, 9, 100),
]


@pytest.mark.parametrize("pe, rows, cols, m, n, k", OFFSET_SHAPES)
def test_array_with_group_offsets_bit_and_cycle_exact(pe, rows, cols, m, n, k):
    p = params(rows=rows, cols=cols, pe=pe, group_offset=True)
    act, qw = offset_case(p, m, n, k, seed=rows * cols + PES.index(pe))
    gold = mixpe_gemm(p, act, qw)
    got, rec, beats = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]
    # the offset term is really there
    plain = QuantizedWeights(qw.codes, qw.zeros, qw.scales, 4, p.group, False)
    assert [[int(v) for v in row] for row in gold.acc] != \
        [[int(v) for v in row] for row in mixpe_gemm(p, act, plain).acc]
    tm = array_timing(p, m, n, k)
    t0 = rec["in_cycles"][0]
    assert rec["in_cycles"] == list(range(t0, t0 + len(beats["last"])))
    assert rec["out_cycles"][0] - t0 == tm.first_output and rec["out_cycles"][-1] - t0 + 1 == tm.total
    ends = [rec["in_cycles"][i] for i in np.flatnonzero(beats["last"])]
    assert rec["out_cycles"] == [e + p.latency + r for e in ends for r in range(p.rows)]
    assert all(err == 0 for _, err, _ in rec["flags"])


@pytest.mark.parametrize("pe", ["mixpe-w4a8", "mixpe-w4a16", "baseline-w4a8"])
def test_array_with_group_offsets_under_backpressure_and_bubbles(pe):
    p = params(rows=2, cols=3, pe=pe, group_offset=True)
    act, qw = offset_case(p, 4, 4, 64, seed=40 + PES.index(pe))
    got, rec, _ = run_gemm(p, act, qw, gap=0.3, stall=0.5, seed=PES.index(pe))
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in mixpe_gemm(p, act, qw).acc]
    assert rec["out_cycles"][-1] - rec["in_cycles"][0] + 1 > array_timing(p, 4, 4, 64).total


@pytest.mark.parametrize("pe", PES)
def test_array_group_offsets_use_every_accumulator_bit(pe):
    # acc_headroom = 1: two groups of the largest sm * I and om * A of one sign reach the top bit
    p = params(rows=2, cols=3, pe=pe, acc_headroom=1, group_offset=True)
    k = 64
    codes = np.array([[0] * k, [15] * k, [0, 15] * (k // 2)], np.uint8)
    zeros = np.array([[15, 15], [0, 0], [15, 0]])
    offsets = np.array([[-(1 << 23)] * 2, [(1 << 23) - 1] * 2, [-(1 << 23), 0]])
    qw = QuantizedWeights(codes, zeros, FixedScales(np.full((3, 2), 65535), [0, 0, 0], 16), 4, 32, False, offsets)
    if p.act_format == "int8":
        act = np.array([[-128] * k, [127] * k], np.int8)
    else:
        act = np.array([[-65504.0] * k, [65504.0] * k], np.float16)
    gold = mixpe_gemm(p, act, qw)
    lim = 1 << (p.acc_bits - 1)
    assert int(gold.acc[0, 0]) > lim // 2  # the top bit below the sign is used
    got, _, _ = run_gemm(p, act, qw)
    assert [[int(v) for v in row] for row in got] == [[int(v) for v in row] for row in gold.acc]


def test_group_sum_unit_sees_the_pe_inputs():
    # GroupSum alone: the group sums of INT8 and FP16 activation values, one cycle after glast
    from mixpim.hw.group_sum import GroupSum
    for act in ("int8", "fp16"):
        p = params(pe="mixpe-w4a16" if act == "fp16" else "mixpe-w4a8", group_offset=True)
        dut = GroupSum(p)
        rng = np.random.default_rng(13)
        n = 150
        acts, _ = _act_stream(rng, act, n)
        valid = rng.random(n) < 0.8
        glast = np.zeros(n, bool)
        glast[np.flatnonzero(valid)[3::4]] = True
        expected, seen = [], []

        async def tb(ctx):
            total = 0
            for t in range(n):
                ctx.set(Value.cast(dut.i_act), acts[t][0])
                ctx.set(dut.i_ctl.as_value(), ctl(valid[t], glast[t], False))
                await ctx.tick()
                v, _, value = _res_fields(ctx.get(dut.o_res.as_value()), p.gsum_bits)
                if valid[t]:
                    total += acts[t][1]
                if valid[t] and glast[t]:
                    expected.append((t, total))
                    total = 0
                if v:
                    seen.append((t, value))

        run(dut, tb)
        assert len(expected) >= 20 and seen == expected
