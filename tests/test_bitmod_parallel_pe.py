"""Amaranth-simulator tests of the bit-parallel BitMoD PE (hw/bitmod_parallel_pe.py): its group sums
equal the golden ones of models.bitmod_gemm, one beat per cycle."""

from dataclasses import replace

import traceback

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Value
from amaranth.sim import Simulator

from mixpim.hw.bitmod_parallel_pe import BitmodParallelPE, value_bits, value_table
from mixpim.hw.layouts import pe_act_layout
from mixpim.models.bitmod import quantize, quantize_bitmod
from mixpim.models.bitmod_gemm import BitmodParams, bitmod_gemm
from mixpim.models.mixpe import activation_values, group_sums
from mixpim.models.numerics import fp16_decode
from mixpim.sim.designs import make_design
from helpers import ctl


def _operands(p, m, n, k, rng, extremes=False):
    """Activations (M, K) and weights (N, K) with every (selector, code) pair in use: quantized
    random weights whose selectors and codes are then redrawn uniformly (all codes of the 3/4-bit
    mixtures are valid). ``extremes``: the largest magnitudes only."""
    qw = quantize_bitmod(rng.normal(size=(n, k)), p.wbits, p.group)
    table = value_table(p)
    sel = rng.integers(0, len(p.types), qw.selector.shape).astype(np.uint8)
    codes = rng.integers(0, 1 << p.wbits, (n, k)).astype(np.uint8)
    if extremes:  # per weight, a code of the largest |value| of its group's type
        big = [np.flatnonzero(np.abs(table[s]) == np.abs(table[s]).max()) for s in range(len(p.types))]
        codes = np.array([[rng.choice(big[sel[i, j // p.group]]) for j in range(k)] for i in range(n)], np.uint8)
    qw = replace(qw, selector=sel, codes=codes)
    qw.check()
    if p.act_format == "int8":
        act = (rng.choice([-128, 127], (m, k)) if extremes else rng.integers(-128, 128, (m, k))).astype(np.int8)
    else:
        if extremes:
            bits = rng.choice([0x7BFF, 0xFBFF], (m, k)).astype(np.uint16)
        else:
            bits = rng.integers(0, 1 << 16, (m, k)).astype(np.uint16)
            bits[(bits & 0x7C00) == 0x7C00] &= 0x83FF  # finite
            bits[:, ::7] = rng.integers(0, 1 << 10, bits[:, ::7].shape)  # subnormals
        act = bits.view(np.float16)
    return act, qw


def _act_word(p, a):
    if p.act_format == "int8":
        return int(a)
    lay = pe_act_layout("fp16")
    sig, exp, _ = fp16_decode(np.array([a]))
    return ((int(sig[0]) & 0xFFF) << lay["sig"].offset) | ((int(exp[0]) - 1) << lay["sh"].offset)


def run_pe(p, act, qw, *, bubble_p=0.0, seed=0):
    """Stream every (token m, feature n) pair through one PE as a tile of ceil(K/group) groups, one
    beat per cycle (random bubbles with probability ``bubble_p``). Returns the group sums (M, N, G)
    read from ``o_res`` and the cycle of each result; checks the pass-through and that results are
    held until the next group ends."""
    rng = np.random.default_rng(seed)
    m, k = act.shape
    n, g = qw.codes.shape[0], p.group
    ng = -(-k // g)
    beats = []  # (act word, code, sel, glast, tlast, (m, n, group))
    for i in range(m):
        for j in range(n):
            for kk in range(ng * g):
                a = act[i, kk] if kk < k else act.dtype.type(0)
                code = int(qw.codes[j, kk]) if kk < k else 0
                glast = kk % g == g - 1
                beats.append((_act_word(p, a), code, int(qw.selector[j, kk // g]), glast,
                              kk == ng * g - 1, (i, j, kk // g)))
    sums = np.zeros((m, n, ng), dtype=object)
    res_cycles = []
    dut = BitmodParallelPE(p)

    async def tb(ctx):
        cycle, held = 0, None
        for beat in beats:
            while rng.random() < bubble_p:  # a bubble: nothing valid, inputs garbage
                ctx.set(Value.cast(dut.i_act), 0)
                ctx.set(dut.i_code, int(rng.integers(0, 1 << p.wbits)))
                ctx.set(dut.i_ctl.as_value(), ctl(0, 1, 1))
                await ctx.tick()
                cycle += 1
                assert not ctx.get(dut.o_res.valid)
                if held is not None:
                    assert (bool(ctx.get(dut.o_res.tlast)), ctx.get(dut.o_res.value)) == held
            word, code, sel, glast, tlast, where = beat
            ctx.set(Value.cast(dut.i_act), word)
            ctx.set(dut.i_code, code)
            ctx.set(dut.i_sel, sel)
            ctx.set(dut.i_ctl.as_value(), ctl(1, glast, tlast))
            await ctx.tick()
            assert ctx.get(Value.cast(dut.o_act)) == word
            assert (ctx.get(dut.o_code), ctx.get(dut.o_sel)) == (code, sel)
            assert ctx.get(dut.o_ctl.as_value()) == ctl(1, glast, tlast)
            res = (bool(ctx.get(dut.o_res.tlast)), ctx.get(dut.o_res.value))
            assert bool(ctx.get(dut.o_res.valid)) == glast, f"cycle {cycle}"
            if glast:
                assert res[0] == tlast
                sums[where] = res[1]
                res_cycles.append(cycle)
                held = res
            elif held is not None:
                assert res == held, f"cycle {cycle}: the group result must stay until the next group ends"
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return sums, res_cycles


def _check_against_golden(p, act, qw, sums):
    a_val, _ = activation_values(act, p.act_format)
    want = group_sums(a_val, qw.table_values(), p.group)
    assert (sums == want).all()
    # and the scaled sums are the golden GEMM
    acc = (sums * qw.scales.mant[None, :, :].astype(object)).sum(axis=2)
    assert (acc == bitmod_gemm(p, act, qw).acc).all()


@pytest.mark.parametrize("act", ["fp16", "int8"])
@pytest.mark.parametrize("wbits", [3, 4])
def test_group_sums_match_golden(act, wbits):
    p = BitmodParams(rows=1, cols=1, group=128, wbits=wbits, act_format=act)
    rng = np.random.default_rng(7 + wbits)
    act_, qw = _operands(p, 2, 3, 250, rng)  # K = 250: the second group is padded
    assert set(np.unique(qw.selector)) == set(range(4))
    sums, cycles = run_pe(p, act_, qw)
    _check_against_golden(p, act_, qw, sums)
    # one beat per cycle: the result of the group ending at beat b is read after edge b
    assert cycles == [b for b in range(6 * 256) if b % 128 == 127]


@pytest.mark.parametrize("act,wbits", [("fp16", 4), ("int8", 3)])
def test_bubbles(act, wbits):
    p = BitmodParams(rows=1, cols=1, group=32, wbits=wbits, act_format=act)
    act_, qw = _operands(p, 2, 2, 96, np.random.default_rng(3))
    sums, _ = run_pe(p, act_, qw, bubble_p=0.3, seed=4)
    _check_against_golden(p, act_, qw, sums)


@pytest.mark.parametrize("act", ["fp16", "int8"])
def test_extreme_values_fit(act):
    """Full groups of +-FP16 max (or -128/127) times the largest weight values: psum_bits holds them."""
    p = BitmodParams(rows=1, cols=1, group=128, wbits=4, act_format=act)
    act_, qw = _operands(p, 1, 2, 256, np.random.default_rng(5), extremes=True)
    sums, _ = run_pe(p, act_, qw)
    _check_against_golden(p, act_, qw, sums)


@pytest.mark.parametrize("wbits,types", [(4, ("INT4", "FP4", "FLINT4")), (8, None)])
def test_other_type_sets(wbits, types):
    """Non-mixture type sets (reserved INT codes avoided by the quantizer)."""
    p = BitmodParams(rows=1, cols=1, group=32, wbits=wbits, types=types, act_format="int8")
    rng = np.random.default_rng(9)
    w = rng.normal(size=(2, 64)) * rng.choice([1, 8], size=(2, 64), p=[0.9, 0.1])
    qw = quantize(w, p.types, 32)
    act_ = rng.integers(-128, 128, (2, 64)).astype(np.int8)
    sums, _ = run_pe(p, act_, qw)
    _check_against_golden(p, act_, qw, sums)


def test_value_table_and_widths():
    p3, p4, p8 = (BitmodParams(wbits=w, rows=1) for w in (3, 4, 8))
    t4 = value_table(p4)
    assert t4[0, 0b1000] == 10 and t4[1, 0b1000] == -10 and t4[2, 0b1000] == 16 and t4[3, 0b1111] == -12
    assert value_table(p3)[3, 0b100] == -6
    assert (value_table(p8)[1:] == 0).all() and value_table(p8)[0, 0x80] == 0  # no type / reserved
    assert value_table(p8)[0, 0x81] == -127
    assert (value_bits(p3), value_bits(p4), value_bits(p8)) == (4, 6, 8)


def test_is_bit_parallel_and_constructor():
    text = rtlil.convert(BitmodParallelPE(BitmodParams(wbits=4)))
    assert "$mul" in text  # the conventional design: a multiplier per PE
    with pytest.raises(TypeError, match="^params must be a BitmodParams, not None$") as info:
        BitmodParallelPE(None)
    for frame, _ in traceback.walk_tb(info.tb):  # silence the half-built component's warning
        if isinstance(frame.f_locals.get("self"), Elaboratable):
            frame.f_locals["self"]._MustUse__silence = True
    d = make_design("bitparallel-pe", wbits=3, group=128)
    assert d.top == "bitparallel_pe_w3_fp16_g128_s8_h12"
    dut = d.component()
    assert isinstance(dut, BitmodParallelPE)
    rtlil.convert(dut)
