"""Amaranth-simulator tests of the BitMoD blocks (decoder, PE, dequantizer) and of small arrays."""


import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Value

from mixpim.hw.bitmod_array import BitmodArray, bitmod_input_layout
from mixpim.hw.bitmod_decoder import BitmodDecoder, term_layout
from mixpim.hw.bitmod_dequant import BitmodDequant, job_layout
from mixpim.hw.bitmod_pe import BitmodPE
from mixpim.hw.layouts import array_output_layout, pack, pe_act_layout, unpack_array
from mixpim.models.bitmod import DTYPES, code_terms, dtype, quantize
from mixpim.models.bitmod_gemm import (BitmodParams, array_unstream, bitmod_gemm, bitmod_stream,
                                       bitmod_timing)
from mixpim.models.errors import ConfigError
from mixpim.models.numerics import fp16_decode
from helpers import ctl, exact, mixed_weights, rejects, run


# -- decoder -------------------------------------------------------------------------------------

# Type sets that between them hold every data type of models.bitmod.
TYPE_SETS = [(2, None), (3, None), (3, ("INT3", "FP3")), (4, None), (4, ("INT4", "FP4", "FLINT4")),
             (5, None), (6, None), (7, None), (8, None)]


def test_type_sets_cover_every_dtype():
    names = {t for w, ts in TYPE_SETS for t in BitmodParams(wbits=w, types=ts, rows=1).types}
    assert names == set(DTYPES)


@pytest.mark.parametrize("wbits,types", TYPE_SETS, ids=[f"w{w}-{'-'.join(t) if t else 'default'}"
                                                         for w, t in TYPE_SETS])
def test_decoder_exhaustive(wbits, types):
    p = BitmodParams(wbits=wbits, types=types, rows=1)
    dut = BitmodDecoder(p)
    lay = term_layout(p)
    got, want = [], []
    for sel in range(4):
        t = dtype(p.types[sel]) if sel < len(p.types) else None
        table = code_terms(t) if t else None
        for code in range(1 << wbits):
            slots = None if t is None else table[code]
            if slots is not None:
                # the terms, in cycle order, add up to the type's value
                assert sum(s << sh for s, sh in slots) == t.codes[code]
                slots = slots + ((0, 0),) * (p.terms - len(slots))
            for step in range(p.terms):
                if slots is None or slots[step][0] == 0:
                    term = 0
                else:
                    sign, shift = slots[step]
                    term = lay.const({"valid": 1, "sign": int(sign < 0), "shift": shift}).as_value().value
                want.append((sel, code, step, term, int(slots is None)))

    async def tb(ctx):
        for sel, code, step, _, _ in want:
            ctx.set(dut.i_sel, sel)
            ctx.set(dut.i_code, code)
            ctx.set(dut.i_step, step)
            got.append((sel, code, step, ctx.get(dut.o_term.as_value()), ctx.get(dut.o_reserved)))

    run(dut, tb, clock=False)
    assert got == want


# -- PE ------------------------------------------------------------------------------------------

def _act_words(rng, act, n):
    """Random PE activations: (word to drive, a_val) pairs (FP16: finite, many subnormals)."""
    if act == "int8":
        a = rng.integers(-128, 128, size=n)
        a[:3] = -128
        return [(int(v), int(v)) for v in a]
    lay = pe_act_layout("fp16")
    bits = rng.integers(0, 1 << 16, size=n).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= 0x83FF
    bits[::7] = rng.integers(0, 1 << 10, size=bits[::7].shape)
    bits[:2] = [0x7BFF, 0xFBFF]
    sig, exp, _ = fp16_decode(bits)
    return [(((int(s) & 0xFFF) << lay["sig"].offset) | ((int(e) - 1) << lay["sh"].offset), int(s) << (int(e) - 1))
            for s, e in zip(sig, exp)]


@pytest.mark.parametrize("act,wbits", [("fp16", 4), ("int8", 8)])
def test_pe_stream(act, wbits):
    p = BitmodParams(wbits=wbits, act_format=act, rows=1, cols=1)
    dut = BitmodPE(p)
    lay = term_layout(p)
    rng = np.random.default_rng(21)
    n = 300
    acts = _act_words(rng, act, n)
    tv = rng.random(n) < 0.7
    ts = rng.integers(0, 2, n)
    tsh = rng.integers(0, p.max_shift + 1, n)
    tsh[:4] = p.max_shift
    terms = [lay.const({"valid": int(v), "sign": int(s), "shift": int(h)}).as_value().value
             for v, s, h in zip(tv, ts, tsh)]
    valid = rng.random(n) < 0.8
    vidx = np.flatnonzero(valid)
    glast = np.zeros(n, bool)
    tlast = np.zeros(n, bool)
    glast[vidx[5::6]] = True
    tlast[vidx[17::18]] = True
    expected, seen = [], []

    async def tb(ctx):
        psum, held = 0, None
        for t in range(n):
            ctx.set(Value.cast(dut.i_act), acts[t][0])
            ctx.set(dut.i_term.as_value(), terms[t])
            ctx.set(dut.i_ctl.as_value(), ctl(valid[t], glast[t], tlast[t]))
            await ctx.tick()
            assert ctx.get(Value.cast(dut.o_act)) == acts[t][0]
            assert ctx.get(dut.o_term.as_value()) == terms[t]
            assert ctx.get(dut.o_ctl.as_value()) == ctl(valid[t], glast[t], tlast[t])
            if valid[t] and tv[t]:
                psum += (-1 if ts[t] else 1) * (acts[t][1] << int(tsh[t]))
            if valid[t] and glast[t]:
                expected.append((t, bool(tlast[t]), psum))
                held = (bool(tlast[t]), psum)
                psum = 0
            v = ctx.get(dut.o_res.valid)
            res = (bool(ctx.get(dut.o_res.tlast)), ctx.get(dut.o_res.value))
            if v:
                seen.append((t, *res))
            if held is not None:
                assert res == held, f"cycle {t}: the group result must stay until the next group ends"

    run(dut, tb)
    assert len(expected) >= 30
    assert seen == expected


# -- dequantizer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,scale_bits,act", [(4, 8, "fp16"), (1, 2, "fp16"), (3, 5, "int8"), (2, 16, "fp16")])
def test_dequant_jobs(rows, scale_bits, act):
    p = BitmodParams(rows=rows, scale_bits=scale_bits, act_format=act, wbits=8, group=128)
    dut = BitmodDequant(p)
    rng = np.random.default_rng(rows * 100 + scale_bits)
    top = (1 << scale_bits) - 1
    pmax = (1 << (p.psum_bits - 1)) - 1
    groups, tile_groups = 12, 3
    jobs = []  # (value, scale, tlast) in row order per group
    for g in range(groups):
        extreme = g % 4 == 1
        scale = int(rng.choice([0, 1, top])) if extreme else int(rng.integers(0, top + 1))
        for r in range(rows):
            value = int(rng.choice([-pmax - 1, pmax, -1, 0])) if extreme else int(rng.integers(-pmax, pmax))
            jobs.append((value, scale, (g + 1) % tile_groups == 0))
    # golden: the tile total of every row, in order
    expected = []
    acc = [0] * rows
    for idx, (value, scale, tl) in enumerate(jobs):
        r = idx % rows
        acc[r] += value * scale
        if tl:
            expected.append(acc[r])
            acc[r] = 0
    seen, accepted, results_at = [], [], []

    async def tb(ctx):
        cyc, idx = 0, 0
        gap = 0
        while idx < len(jobs) or cyc < (accepted[-1] if accepted else 0) + scale_bits + 3:
            offer = idx < len(jobs) and gap == 0 and ctx.get(dut.o_ready)
            ctx.set(dut.i_job.valid, offer)
            if offer:
                value, scale, tl = jobs[idx]
                ctx.set(dut.i_job.value, value)
                ctx.set(dut.i_job.scale, scale)
                ctx.set(dut.i_job.tlast, tl)
            await ctx.tick()
            if offer:
                accepted.append(cyc)
                idx += 1
                gap = int(rng.choice([0, 0, 0, 1, 5]))
            elif gap:
                gap -= 1
            if ctx.get(dut.o_res.valid):
                seen.append(ctx.get(dut.o_res.value))
                results_at.append(cyc)
            cyc += 1

    run(dut, tb)
    assert seen == expected
    # back-to-back jobs are accepted every scale_bits cycles, and a total leaves scale_bits edges
    # after its job was accepted
    assert min(np.diff(accepted)) == scale_bits
    tl_jobs = [accepted[i] for i, j in enumerate(jobs) if j[2]]
    assert results_at == [a + scale_bits for a in tl_jobs]


# -- arrays --------------------------------------------------------------------------------------

def drive_array(p, dut, words, n_out, *, gap=0.0, stall=0.0, seed=0):
    """Feed ``words`` to ``dut.i_stream`` (random input bubbles ``gap``; a beat once offered stays
    until taken) and collect ``n_out`` output beats (random backpressure ``stall``), checking that an
    output beat is neither dropped nor changed before its transfer. Returns output words, transfer
    cycles, the cycles ``i_stream.ready`` was high, and (o_error, o_nonfinite) at the end."""
    rng = np.random.default_rng(seed)
    rec = {"outs": [], "in_cycles": [], "out_cycles": [], "ready": []}
    idle = p.latency + p.rows * p.row_interval + 8

    async def tb(ctx):
        cyc, idx, holding, prev, after = 0, 0, False, None, 0
        while after < idle:
            if idx < len(words):
                v = holding or rng.random() >= gap
                ctx.set(dut.i_stream.valid, v)
                ctx.set(dut.i_stream.payload.as_value(), int(words[idx]))
                holding = v
            else:
                ctx.set(dut.i_stream.valid, 0)
            done = n_out is not None and len(rec["outs"]) >= n_out
            ctx.set(dut.o_stream.ready, done or rng.random() >= stall)
            _, _, iv, ir, ov, orr, op = await ctx.tick().sample(
                dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.ready,
                dut.o_stream.payload.as_value())
            if prev is not None and prev[0] and not prev[1]:
                assert ov and op == prev[2], f"output beat changed or dropped before its transfer at cycle {cyc}"
            prev = (ov, orr, op)
            if ir:
                rec["ready"].append(cyc)
            if iv and ir:
                rec["in_cycles"].append(cyc)
                idx += 1
                holding = False
            if ov and orr:
                assert n_out is None or len(rec["outs"]) < n_out, f"unexpected extra output beat at cycle {cyc}"
                rec["outs"].append(int(op))
                rec["out_cycles"].append(cyc)
            if (n_out is None or len(rec["outs"]) == n_out) and idx == len(words):
                after += 1
            cyc += 1
            assert cyc < 40000, "the array stopped producing output"
        rec["flags"] = (ctx.get(dut.o_error), ctx.get(dut.o_nonfinite))

    run(dut, tb)
    return rec


def gemm_case(p, m, n, k, seed):
    """Random activations (FP16 over many magnitudes with subnormals, zeros and +-max; INT8 with
    -128) and weights quantized to ``p.types`` (a per-group mixture when there are several)."""
    rng = np.random.default_rng(seed)
    qw = quantize(mixed_weights(rng, n, k), p.types, p.group, scale_bits=p.scale_bits)
    if p.act_format == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
        act[0, :5] = -128
    else:
        act = (rng.normal(size=(m, k)) * 10.0 ** rng.uniform(-7, 4, size=(m, k))).astype(np.float16)
        act.view(np.uint16)[0, :4] = [0x0001, 0x8000, 0x7BFF, 0xFBFF]
    return act, qw


def run_gemm(p, act, qw, **kw):
    beats = bitmod_stream(p, act, qw)
    words = pack(bitmod_input_layout(p), beats)
    n_out = int(beats["last"].sum()) * p.rows
    rec = drive_array(p, BitmodArray(p), words, n_out, **kw)
    res = unpack_array(array_output_layout(p), rec["outs"])
    return array_unstream(p, res, act.shape[0], qw.codes.shape[0]), rec, beats


def _ints(a):
    return [[int(v) for v in row] for row in a]


ARRAYS = [
    # (params, M, N, K)
    pytest.param(dict(rows=2, cols=3, wbits=4), 3, 5, 70, id="bitmod4-2x3-g32"),
    pytest.param(dict(rows=3, cols=2, wbits=3, group=64), 4, 3, 100, id="bitmod3-3x2-g64"),
    pytest.param(dict(rows=2, cols=2, wbits=8), 3, 3, 40, id="int8-2x2"),
    pytest.param(dict(rows=2, cols=2, wbits=8, act_format="int8", scale_bits=16, group=128), 2, 3, 130, id="int8-a8-s16-g128"),
    pytest.param(dict(rows=2, cols=2, wbits=6, act_format="int8"), 3, 2, 64, id="int6-a8-T3"),
    pytest.param(dict(rows=1, cols=33, wbits=2, act_format="int8"), 1, 33, 96, id="int2-T1-1x33-fifo3"),
    pytest.param(dict(rows=2, cols=2, wbits=3, types=("INT3", "FP3"), act_format="int8"), 3, 4, 64, id="int3-fp3-a8"),
    pytest.param(dict(rows=2, cols=2, wbits=4, types=("FP4", "INT4", "FLINT4", "FP4_EA_NEG")), 3, 3, 64,
                 id="fp4-int4-flint4"),
    pytest.param(dict(rows=8, cols=1, wbits=4), 8, 4, 64, id="bitmod4-8x1-dequant-always-busy"),
]


@pytest.mark.parametrize("kw,m,n,k", ARRAYS)
def test_array_bit_and_cycle_exact(kw, m, n, k):
    p = BitmodParams(**kw)
    act, qw = gemm_case(p, m, n, k, seed=m * n + k)
    if len(p.types) > 1:
        assert len(set(qw.selector.ravel())) > 1, "the case should mix types"
    gold = bitmod_gemm(p, act, qw)
    got, rec, beats = run_gemm(p, act, qw)
    assert _ints(got) == _ints(gold.acc)
    tm = bitmod_timing(p, m, n, k)
    t0 = rec["in_cycles"][0]
    # no stalls: a beat every `terms` cycles, and i_stream.ready high exactly then
    assert rec["in_cycles"] == list(range(t0, t0 + p.terms * len(beats["last"]), p.terms))
    assert set(rec["in_cycles"]) <= set(rec["ready"])
    assert all((c - t0) % p.terms == 0 for c in rec["ready"] if t0 <= c <= rec["in_cycles"][-1])
    assert rec["out_cycles"][0] - t0 == tm.first_output
    assert rec["out_cycles"][-1] - t0 + 1 == tm.total
    ends = [rec["in_cycles"][i] for i in np.flatnonzero(beats["last"])]
    assert rec["out_cycles"] == [e + p.latency + r * p.row_interval for e in ends for r in range(p.rows)]
    assert rec["flags"] == (0, 0)


@pytest.mark.parametrize("kw", [dict(rows=2, cols=3, wbits=4), dict(rows=3, cols=2, wbits=8, act_format="int8")],
                         ids=["bitmod4", "int8"])
def test_array_bubbles_and_backpressure(kw):
    p = BitmodParams(**kw)
    act, qw = gemm_case(p, 5, 5, 96, seed=4)
    gold = bitmod_gemm(p, act, qw)
    got, rec, _ = run_gemm(p, act, qw, gap=0.3, stall=0.4, seed=9)
    assert _ints(got) == _ints(gold.acc)
    assert rec["flags"] == (0, 0)


def test_array_nonfinite_flag():
    p = BitmodParams(rows=2, cols=2, wbits=4)
    act, qw = gemm_case(p, 2, 2, 32, seed=5)
    act[1, 7] = np.inf
    gold = bitmod_gemm(p, act, qw)
    got, rec, _ = run_gemm(p, act, qw)
    assert _ints(got) == _ints(gold.acc) and list(gold.nonfinite) == [False, True]
    assert rec["flags"] == (0, 1)


@pytest.mark.parametrize("fault", ["early-last", "reserved-code", "unused-selector"])
def test_array_error_flag(fault):
    p = BitmodParams(rows=2, cols=2, wbits=8)  # INT8: one type, code 0x80 reserved
    act, qw = gemm_case(p, 2, 2, 64, seed=6)
    beats = bitmod_stream(p, act, qw)
    if fault == "early-last":
        beats["last"][40] = True
        n_out = p.rows  # the malformed first tile produces nothing
    elif fault == "reserved-code":
        beats["code"][10, 1] = 0x80
        n_out = p.rows
    else:
        beats["sel"][10, 0] = 1
        n_out = p.rows
    words = pack(bitmod_input_layout(p), beats)
    rec = drive_array(p, BitmodArray(p), words, None if fault == "early-last" else n_out)
    assert rec["flags"][0] == 1
    clean = drive_array(p, BitmodArray(p), pack(bitmod_input_layout(p), bitmod_stream(p, act, qw)), p.rows)
    assert clean["flags"] == (0, 0)


# -- validation and structure ----------------------------------------------------------------------

def test_params_validation():
    cases = [
        (dict(rows=0), "rows must be an integer in 1..256, not 0"),
        (dict(cols=True), "cols must be an integer in 1..256, not True"),
        (dict(group=48), "group must be one of (32, 64, 128), not 48"),
        (dict(wbits=9), "wbits must be an integer in 2..8, not 9"),
        (dict(types="FP4"), "types must be a sequence of type names, not 'FP4'"),
        (dict(types=()), "types must hold 1 to 4 types, not 0"),
        (dict(types=("FP4",) * 5), "types must hold 1 to 4 types, not 5"),
        (dict(types=("FP4", "FP3")), "types must all be 4-bit types, not FP3 (3 bits)"),
        (dict(types=("FP4", "fp4")), "types repeat: FP4, FP4"),
        (dict(act_format="bf16"), "act_format must be 'fp16' or 'int8', not 'bf16'"),
        (dict(scale_bits=1), "scale_bits must be an integer in 2..16, not 1"),
        (dict(acc_headroom=25), "acc_headroom must be an integer in 1..24, not 25"),
        (dict(rows=9, scale_bits=8),
         "rows * scale_bits (9 * 8 = 72) must not exceed group * terms (32 * 2 = 64): each column's "
         "bit-serial dequantizer spends scale_bits cycles on each of the rows results of a group, and a "
         "column receives a group's results every group * terms cycles"),
    ]
    for kw, msg in cases:
        with pytest.raises(ConfigError, match=exact(msg)):
            BitmodParams(**kw)
    with pytest.raises(ConfigError, match="unknown data type 'FP5'"):
        BitmodParams(types=("FP5",))
    BitmodParams(rows=8, scale_bits=8)  # 64 <= 64
    BitmodParams(rows=16, wbits=8)      # INT8: 4 cycles per beat, 128 <= 128
    assert BitmodParams(types=["fp4-ea-pos"]).types == ("FP4_EA_POS",)


def test_component_validation():
    for cls in (BitmodDecoder, BitmodPE, BitmodDequant, BitmodArray):
        rejects(TypeError, "params must be a BitmodParams, not None", lambda: cls(None))


def test_no_multiplier():
    p = BitmodParams(wbits=8)
    for dut in (BitmodPE(p), BitmodDequant(p), BitmodDecoder(p), BitmodPE(BitmodParams(act_format="int8"))):
        text = rtlil.convert(dut)
        assert "$mul" not in text, type(dut).__name__


def test_job_layout_widths():
    p = BitmodParams()
    assert job_layout(p).size == 2 + p.psum_bits + p.scale_bits
