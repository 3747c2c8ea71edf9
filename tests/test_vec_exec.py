"""The whole-model instructions through the golden executor (models/vec_exec.py, models/executor.py):
every new VEC function, format and write mode, the per-column bias, VNORM (LayerNorm, RMSNorm), VSOFT by column and its
probability formats, GEMM with INT8 weights from ACT (``wsrc``) and LOAD into ACC; each against
plain Python-integer loops written from the contract (docs/tile.md, docs/isa.md, the module docs of
models/vec_fixed.py and models/norm.py) and loosely against the float function it approximates;
the dispatch faults of every illegal combination; the durations through the cycle model."""

import math
import struct

import numpy as np
import pytest

from mixpim.models.config import TileConfig, preset
from mixpim.models.executor import execute, pack_acc, pack_act, unpack_acc, wrap
from mixpim.models.isa import ErrorCode, Instruction, NormFunc, Opcode, ProbFormat, SoftFunc, Spad, UnitMask, VecFunc
from mixpim.models.program import Program, Segment
from mixpim.models.softmax import EXP_TABLE, exp_step
from mixpim.models.tile_timing import VEC_FILL_CYCLES, gemm_cycles, simulate, vec_cycles, vnorm_cycles
from mixpim.models.vec_fixed import PHI_TABLE, SIGMOID_TABLE, rope_table
from mixpim.models.vector import fixed_multiplier, gelu_lut, pack_vparam, vparam_header

CFG = preset("tiny")                      # 4x4 INT8 tile: ACT words of 4 int8 lanes, acc_bits 45
F16 = preset("tiny").replace(pe="mixpe-w4a16")  # 4x4 FP16 tile: ACT words of 4 16-bit lanes, acc_bits 78
BASE = CFG.vparam_param_base              # 68: the column-parameter region (64 + rows)
HALT = Instruction(Opcode.HALT)
DMA, GEMM, VEC = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC
I32 = 1 << 31
FP16_MAX_FIXED = 65504 << 16
PAIR = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)


# -- the contract in Python integers -----------------------------------------------------------

def rs(x, s):
    """round_shift: (x + 2**(s-1)) >> s, x for s = 0."""
    return (x + (1 << (s - 1)) >> s) if s else x


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def sat8(x):
    return clamp(x, -128, 127)


def sat32(x):
    return clamp(x, -I32, I32 - 1)


def fp16_bits(value):
    """FP16 bit pattern of a float (Python's own half-precision packing: nearest, ties to even)."""
    return struct.unpack("<H", struct.pack("<e", value))[0]


def fp16_value(bits):
    return struct.unpack("<e", struct.pack("<H", int(bits)))[0]


def fp16_of_fixed(y):
    """The FP16 output of y (units of 2**-16), saturated to +-65504."""
    return fp16_bits(clamp(y, -FP16_MAX_FIXED, FP16_MAX_FIXED) / 65536)


def fixed_of_fp16(bits):
    """An FP16 value in 2**-16 units, rounded half up; inf and NaN give 0."""
    v = fp16_value(bits)
    if not math.isfinite(v):
        return 0
    return math.floor(v * 65536 + 0.5)  # v * 2**16 is exact (|v| <= 65504, 24-bit steps)


def int8_of_fp16(bits):
    """An FP16 value rounded half up to an integer, saturated to int8; inf and NaN give 0."""
    v = fp16_value(bits)
    return 0 if not math.isfinite(v) else sat8(math.floor(v + 0.5))


def value(acc, mult, shift, tmult, tshift):
    """v = round_shift(sat32(round_shift(acc * mult, shift)) * tmult, tshift)."""
    return rs(sat32(rs(int(acc) * int(mult), int(shift))) * int(tmult), int(tshift))


def gate(table, s, v):
    half = 1 << (s + 7)
    u = clamp(v, -half, half - 1) + half
    k, f = u >> s, u & ((1 << s) - 1)
    return table[k] + ((table[k + 1] - table[k]) * f >> s)


def silu(v):
    v = sat32(v)
    return rs(v * gate(SIGMOID_TABLE, 13, v), 15)


def gelu(v):
    v = sat32(v)
    return rs(v * gate(PHI_TABLE, 12, v), 15)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def lanes(cfg, words):
    """ACT words (n, word_bytes) -> (n, rows) ints: int8 values or 16-bit patterns."""
    w = np.ascontiguousarray(words)
    return (w.view(np.int8) if cfg.act_format == "int8" else w.view("<u2")).astype(np.int64)


def act_words(cfg, values):
    """(n, rows) lanes (int8 values, or 16-bit patterns) -> ACT segment bytes."""
    v = np.asarray(values, np.int64)
    return pack_act(cfg, v.astype(np.int8) if cfg.act_format == "int8" else (v & 0xFFFF).astype(np.uint16))


def run_ok(cfg, insts, segs):
    res = execute(Program(cfg, list(insts) + [HALT], segs))
    assert res.ok, res.timing.message
    assert res.races == ()
    return res


def status(cfg, inst, segs=()):
    """(error, error_pc, message) of ``inst`` then HALT."""
    res = execute(Program(cfg, [inst, HALT], list(segs)))
    return res.status.error, res.status.error_pc, res.timing.message


def test_gate_roms_are_the_documented_tables():
    # 257 entries, round(2**15 * g(x)) at x = -R + k * R / 128: sigmoid R = 16, Phi R = 8
    assert SIGMOID_TABLE == tuple(round(2 ** 15 * sigmoid(-16 + k / 8)) for k in range(257))
    assert PHI_TABLE == tuple(round(2 ** 15 * phi(-8 + k / 16)) for k in range(257))
    assert SIGMOID_TABLE[128] == PHI_TABLE[128] == 1 << 14 and SIGMOID_TABLE[-1] == PHI_TABLE[-1] == 1 << 15


# -- VEC: every function, format and write mode -------------------------------------------------

def vec_legal(cfg, func, fmt, direct, bias=0):
    """The legal VEC forms of docs/tile.md (the 4x4 tiles have rows >= cols)."""
    fp16 = cfg.act_format == "fp16"
    if fmt and not fp16:
        return False
    if func in (VecFunc.SILU, VecFunc.GLU) and not fmt:
        return False
    if func in (VecFunc.ROPE_LO, VecFunc.ROPE_HI) and not fp16:
        return False
    if func == VecFunc.RES and (fmt or direct):
        return False
    if bias and func in PAIR:  # their second parameter word per column is the partner's multiplier
        return False
    return not (direct and func == VecFunc.ADD)


FORMS = [(cfg, func, fmt, direct) for cfg in (CFG, F16) for func in VecFunc for fmt in (0, 1)
         for direct in (0, 1) if vec_legal(cfg, func, fmt, direct)]


#: FORMS with and without ``bias`` (every function but GLU and ROPE takes one).
BIAS_FORMS = [f + (bias,) for f in FORMS for bias in (0, 1) if vec_legal(*f, bias=bias)]


def test_the_legal_forms():
    # INT8 tiles: REQUANT, RELU, GELU (fmt 0, both write modes), ADD (transposed), RES: 8 forms;
    # FP16 tiles: those plus fmt 1 of each (7), SILU and GLU (fmt 1: 4), ROPE (fmt 0/1, both: 8);
    # bias on all but GLU (2) and ROPE (8)
    assert sum(1 for f in FORMS if f[0] is CFG) == 8
    assert sum(1 for f in FORMS if f[0] is F16) == 8 + 7 + 4 + 8
    assert sum(1 for f in BIAS_FORMS if f[0] is CFG and f[-1]) == 8
    assert sum(1 for f in BIAS_FORMS if f[0] is F16 and f[-1]) == 27 - 10


# ACC words: the tile at 2.., the partner / residual rows at 10..; ACT: outputs at 20.., the ADD
# residual at 40.., the RoPE table at 60..; VPARAM: column multipliers at BASE, the partner's at
# BASE + cols; the column multipliers again at BASE + 2 cols, the biases at BASE + 3 cols.
ACC_A, ACC_B, ACT_OUT, ACT_RES, ACT_TAB = 2, 10, 20, 40, 60
SENTINEL = 0x5A


def vec_operands(cfg, seed):
    rng = np.random.default_rng(seed)
    r, c = cfg.rows, cfg.cols
    if cfg.act_format == "int8":
        a = rng.integers(-(1 << 20), 1 << 20, size=(r, c))
        b = rng.integers(-(1 << 20), 1 << 20, size=(r, c))
        mult, shift = np.array([1000, -2000, 3, 32767]), np.array([14, 16, 0, 30])
        pmult, pshift = np.array([7, 1, -300, 4096]), np.array([4, 0, 12, 22])
        beta = np.array([-(1 << 31), 37, -90, 100])  # -2**31 saturates column 0
        resid = rng.integers(-128, 128, size=(c, r))  # (columns, lanes)
    else:
        # accumulators in 2**-24 units of values up to +-9; multipliers ~2**-8 map them to the
        # unit's 2**-16 (one column scaled by 1.5, one by -0.25)
        a = np.rint(rng.uniform(-9, 9, size=(r, c)) * 2 ** 24).astype(np.int64)
        b = np.rint(rng.uniform(-9, 9, size=(r, c)) * 2 ** 24).astype(np.int64)
        a[0, 0], b[1, 1] = 1 << 50, -(1 << 50)  # v1 saturates at int32
        mult, shift = np.array([1, 3, -16384, 1]), np.array([8, 9, 24, 8])
        pmult, pshift = np.array([1, 1, 5, -1]), np.array([8, 8, 10, 8])
        # 2**-16 units: v + bias beyond int32 (column 0 holds the saturated a[0, 0]), -5, ~0.19
        beta = np.array([(1 << 31) - 1, -(5 << 16), 12345, -(1 << 31)])
        res_f = rng.uniform(-40, 40, size=(c, r)).astype(np.float16)
        res_f.reshape(-1)[:6] = [np.inf, np.nan, 2.0 ** -17, -2.0 ** -17, 2.5, 1000]
        resid = res_f.view(np.uint16).astype(np.int64)
    tmult, tshift = np.array([1, 3, 16384, -5]), np.array([0, 1, 14, 2])
    pos = np.array([0, 1, 7, 100])[:r]
    cos, sin = rope_table(pos, 10000.0 ** (-np.arange(c) / c))  # (tokens, columns) int16
    table = np.zeros((2 * c, r), np.int64)
    table[0::2], table[1::2] = cos.T, sin.T  # word 2j: column j's cosines, 2j + 1 its sines
    return dict(a=a, b=b, mult=mult, shift=shift, pmult=pmult, pshift=pshift, beta=beta, tmult=tmult,
                tshift=tshift, resid=resid, table=table & 0xFFFF if cfg.act_format == "fp16" else table,
                lut=gelu_lut(0.05, 0.05))


def vec_segments(cfg, o):
    sentinel = np.full((cfg.act_words, cfg.act_word_bytes), SENTINEL, np.uint8).tobytes()
    segs = [Segment("ACC", ACC_A, pack_acc(cfg, o["a"]), cfg.acc_word_bytes),
            Segment("ACC", ACC_B, pack_acc(cfg, o["b"]), cfg.acc_word_bytes),
            Segment("VPARAM", 0, vparam_header(cfg, lut=o["lut"], tmult=o["tmult"], tshift=o["tshift"])
                    + pack_vparam(o["mult"], o["shift"]) + pack_vparam(o["pmult"], o["pshift"])
                    + pack_vparam(o["mult"], o["shift"]) + o["beta"].astype("<i4").tobytes(), 4)]
    act = bytearray(sentinel)
    wb = cfg.act_word_bytes
    act[ACT_RES * wb:(ACT_RES + cfg.cols) * wb] = act_words(cfg, o["resid"])
    if cfg.act_format == "fp16":
        act[ACT_TAB * wb:(ACT_TAB + 2 * cfg.cols) * wb] = act_words(cfg, o["table"])
    segs.append(Segment("ACT", 0, bytes(act), wb))
    return segs


def vec_reference(cfg, func, fmt, rows, o, bias=0):
    """The output lanes y[i][j] (tokens x columns) of a VEC: int8 values or 16-bit patterns;
    for RES the new ACC rows. ``bias``: v + beta[j] before the function."""
    fp16 = cfg.act_format == "fp16"
    out = []
    for i in range(rows):
        row = []
        for j in range(cfg.cols):
            v = value(o["a"][i, j], o["mult"][j], o["shift"][j], o["tmult"][i], o["tshift"][i])
            v += int(o["beta"][j]) if bias else 0
            vb = value(o["b"][i, j], o["pmult"][j], o["pshift"][j], o["tmult"][i], o["tshift"][i])
            res_lane = int(o["resid"][j, i])
            if func == VecFunc.RES:
                row.append(sat32(v + int(o["b"][i, j])))
                continue
            if not fmt and func in (VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD):
                if func == VecFunc.REQUANT:
                    y8 = sat8(v)
                elif func == VecFunc.RELU:
                    y8 = sat8(max(v, 0))
                elif func == VecFunc.GELU:
                    y8 = int(o["lut"][sat8(v) & 0xFF])
                else:
                    y8 = sat8(v + (int8_of_fp16(res_lane) if fp16 else res_lane))
                row.append(fp16_bits(float(y8)) if fp16 else y8)
                continue
            if func == VecFunc.REQUANT:
                y = v
            elif func == VecFunc.RELU:
                y = max(v, 0)
            elif func == VecFunc.GELU:
                y = gelu(v)
            elif func == VecFunc.ADD:
                y = v + fixed_of_fp16(res_lane)
            elif func == VecFunc.SILU:
                y = silu(v)
            elif func == VecFunc.GLU:
                y = rs(silu(v) * sat32(vb), 16)
            else:
                c = np.int16(np.uint16(o["table"][2 * j, i]))
                s = np.int16(np.uint16(o["table"][2 * j + 1, i]))
                va, vbs = sat32(v), sat32(vb)
                y = rs(va * int(c) + vbs * int(s) if func == VecFunc.ROPE_HI else va * int(c) - vbs * int(s), 14)
            row.append(fp16_of_fixed(y) if fmt else fp16_bits(float(sat8(y))))
        out.append(row)
    return out


@pytest.mark.parametrize("rows", [4, 3])
@pytest.mark.parametrize("cfg, func, fmt, direct, bias", BIAS_FORMS,
                         ids=[f"{'a8' if f[0] is CFG else 'a16'}-{f[1].name}-fmt{f[2]}-direct{f[3]}"
                              + ("-bias" if f[4] else "") for f in BIAS_FORMS])
def test_vec_form_equals_the_contract(cfg, func, fmt, direct, bias, rows):
    # bias: the column multipliers again at BASE + 2 cols, then the int32 biases
    o = vec_operands(cfg, seed=int(func) + 10 * fmt)
    inst = Instruction(Opcode.VEC, func=func, acc_addr=ACC_A, act_addr=ACT_OUT,
                       res_addr=ACC_B if func in PAIR + (VecFunc.RES,) else ACT_RES,
                       param_addr=BASE + 2 * cfg.cols if bias else BASE,
                       rows=rows, fmt=fmt, direct=direct, table_addr=ACT_TAB, bias=bias)
    res = run_ok(cfg, [inst], vec_segments(cfg, o))
    want = vec_reference(cfg, func, fmt, rows, o, bias)
    act = lanes(cfg, res.spads["ACT"])
    untouched = np.full(cfg.act_word_bytes, SENTINEL, np.uint8)
    if func == VecFunc.RES:
        # ACC rows res_addr.. updated in place; ACT untouched; the ACC rows past `rows` kept
        acc = res.spads["ACC"]
        assert acc[ACC_B:ACC_B + rows].tolist() == want
        assert acc[ACC_B + rows:ACC_B + cfg.rows].tolist() == o["b"][rows:].tolist()
        assert acc[ACC_A:ACC_A + cfg.rows].tolist() == o["a"].tolist()
        assert (res.spads["ACT"][ACT_OUT:ACT_OUT + cfg.cols] == untouched).all()
        return
    if direct:  # row i -> word act_addr + i, lane j = column j; exactly `rows` words written
        assert act[ACT_OUT:ACT_OUT + rows, :cfg.cols].tolist() == want
        assert (act[ACT_OUT:ACT_OUT + rows, cfg.cols:] == 0).all()
        assert (res.spads["ACT"][ACT_OUT + rows:ACT_OUT + cfg.cols + 1] == untouched).all()
    else:  # column j -> word act_addr + j, lane i = token i; lanes >= rows are 0; cols words
        assert act[ACT_OUT:ACT_OUT + cfg.cols, :rows].T.tolist() == want
        assert (act[ACT_OUT:ACT_OUT + cfg.cols, rows:] == 0).all()
        assert (res.spads["ACT"][ACT_OUT + cfg.cols] == untouched).all()
    assert (res.spads["ACT"][ACT_OUT - 1] == untouched).all()


def test_vec_reads_precede_writes_in_place():
    # RES with res_addr == acc_addr adds the requantized tile to itself; an FP16 ADD (fmt 1) may
    # overwrite its own residual (act_addr == res_addr)
    o = vec_operands(F16, seed=3)
    segs = vec_segments(F16, o)
    res = run_ok(F16, [Instruction(Opcode.VEC, func=VecFunc.RES, acc_addr=ACC_B, res_addr=ACC_B,
                                   param_addr=BASE + 4, rows=4)], segs)
    want = [[sat32(value(o["b"][i, j], o["pmult"][j], o["pshift"][j], o["tmult"][i], o["tshift"][i])
                   + int(o["b"][i, j])) for j in range(4)] for i in range(4)]
    assert res.spads["ACC"][ACC_B:ACC_B + 4].tolist() == want
    res = run_ok(F16, [Instruction(Opcode.VEC, func=VecFunc.ADD, acc_addr=ACC_A, act_addr=ACT_RES,
                                   res_addr=ACT_RES, param_addr=BASE, rows=4, fmt=1)], segs)
    assert lanes(F16, res.spads["ACT"][ACT_RES:ACT_RES + 4]).T.tolist() == vec_reference(F16, VecFunc.ADD, 1, 4, o)


def test_fp16_output_conversion_rounds_to_nearest_even_and_saturates():
    # REQUANT fmt 1 writes fp16(v * 2**-16): column multipliers (1, 0), so v = sat32(acc) * tmult;
    # token 2's multiplier 4 takes v beyond 32 bits (to the FP16 saturation)
    acc = np.array([[0, 1, -1, 3 << 16],
                    [(1 << 16) + 16, (1 << 16) + 32, (1 << 16) + 48, (1 << 31) - 1],
                    [65504 << 14, (65520 << 14) - 1, 65520 << 14, -(1 << 29)]])
    vs = [int(x) * t for row, t in zip(acc, (1, 1, 4)) for x in row]
    segs = [Segment("ACC", 0, pack_acc(F16, acc), F16.acc_word_bytes),
            Segment("VPARAM", 0, vparam_header(F16, tmult=np.array([1, 1, 4, 1]), tshift=np.zeros(4, np.int64))
                    + pack_vparam([1] * 4, [0] * 4), 4)]
    res = run_ok(F16, [Instruction(Opcode.VEC, func=VecFunc.REQUANT, act_addr=8, param_addr=BASE, rows=3,
                                   fmt=1, direct=1)], segs)
    got = lanes(F16, res.spads["ACT"][8:11]).reshape(-1)
    want = [0x0000, 0x0100, 0x8100, 0x4200,  # 0, 2**-16 (subnormal 2**8 * 2**-24), -2**-16, 3
            0x3C00,  # 1 + 2**-12: below half an FP16 step (2**-10) of 1 -> 1
            0x3C00,  # 1 + 2**-11: a tie, to even -> 1
            0x3C01,  # 1 + 3 * 2**-12: above the tie -> 1 + 2**-10
            0x7800,  # 32768 - 2**-16 rounds to 32768
            0x7BFF, 0x7BFF,  # 65504, and just below 65520 (nearest: 65504) ...
            0x7BFF,  # ... and 65520, the tie that would round to inf: saturated to 65504
            0xF800]  # -32768
    assert got.tolist() == want
    assert [fp16_of_fixed(v) for v in vs] == want


def test_silu_gelu_glu_against_float():
    # FP16 tiles, fmt 1: the gates' interpolation errors (< 2e-4 of 1) plus the FP16 rounding
    rng = np.random.default_rng(12)
    x = np.concatenate([np.linspace(-20, 20, 33), rng.uniform(-6, 6, 31)])
    y = rng.uniform(-4, 4, x.size)
    n = x.size // 4
    a = np.rint(x * 2 ** 24).astype(np.int64).reshape(n, 4)
    b = np.rint(y * 2 ** 24).astype(np.int64).reshape(n, 4)
    got = {}
    for func in (VecFunc.SILU, VecFunc.GELU, VecFunc.GLU):
        out = []
        for blk in range(0, n, 4):
            segs = [Segment("ACC", 0, pack_acc(F16, a[blk:blk + 4]), F16.acc_word_bytes),
                    Segment("ACC", 8, pack_acc(F16, b[blk:blk + 4]), F16.acc_word_bytes),
                    Segment("VPARAM", 0, vparam_header(F16) + pack_vparam([1] * 8, [8] * 8), 4)]
            res = run_ok(F16, [Instruction(Opcode.VEC, func=func, res_addr=8, act_addr=16, param_addr=BASE,
                                           rows=4, fmt=1, direct=1)], segs)
            out.append(res.spads["ACT"][16:20].view(np.float16).astype(np.float64))
        got[func] = np.concatenate(out).reshape(-1)
    xs = a.reshape(-1) / 2 ** 24
    ys = b.reshape(-1) / 2 ** 24
    silu_f = xs * np.array([sigmoid(v) for v in xs])
    gelu_f = xs * np.array([phi(v) for v in xs])

    def close(g, f, scale, units=1):
        # gate error (2e-4 of 1, plus the floor shift) x |input|, half an FP16 step (2**-11
        # relative), the fixed-point roundings (2**-17 each)
        return np.all(np.abs(g - f) <= 2.5e-4 * scale + 2.0 ** -11 * np.abs(f) + units * 2.0 ** -16)
    assert close(got[VecFunc.SILU], silu_f, np.abs(xs))
    assert close(got[VecFunc.GELU], gelu_f, np.abs(xs))
    assert close(got[VecFunc.GLU], silu_f * ys, np.abs(xs * ys), units=1 + np.abs(ys))
    # the tails: SiLU(-20) ~ 0, SiLU(20) ~ 20 (the gate ROM is clamped at +-16)
    assert abs(got[VecFunc.SILU][0]) < 1e-3 and got[VecFunc.SILU][32] == 20.0


def test_rope_turns_pairs_by_the_position_angle():
    # a head of 8 features: pairs (i, i + 4), frequencies 10000**(-i/4); tokens at positions
    # 0, 5, 17, 300; ROPE_LO writes the first features, ROPE_HI the second ones
    rng = np.random.default_rng(4)
    pos = np.array([0, 5, 17, 300])
    freq = 10000.0 ** (-np.arange(4) / 4)
    x = rng.uniform(-3, 3, size=(4, 8))
    acc = np.rint(x * 2 ** 24).astype(np.int64)
    cos, sin = rope_table(pos, freq)
    table = np.zeros((8, 4), np.uint16)
    table[0::2], table[1::2] = cos.T.view(np.uint16), sin.T.view(np.uint16)
    segs = [Segment("ACC", 0, pack_acc(F16, acc[:, :4]), F16.acc_word_bytes),
            Segment("ACC", 4, pack_acc(F16, acc[:, 4:]), F16.acc_word_bytes),
            Segment("ACT", 100, pack_act(F16, table), F16.act_word_bytes),
            Segment("VPARAM", 0, vparam_header(F16) + pack_vparam([1] * 8, [8] * 8), 4)]
    ins = [Instruction(Opcode.VEC, func=VecFunc.ROPE_LO, acc_addr=0, res_addr=4, act_addr=0, param_addr=BASE,
                       rows=4, fmt=1, direct=1, table_addr=100),
           Instruction(Opcode.VEC, func=VecFunc.ROPE_HI, acc_addr=4, res_addr=0, act_addr=4, param_addr=BASE,
                       rows=4, fmt=1, direct=1, table_addr=100)]
    res = run_ok(F16, ins, segs)
    got = np.concatenate([res.spads["ACT"][0:4].view(np.float16), res.spads["ACT"][4:8].view(np.float16)],
                         axis=1).astype(np.float64)
    ang = np.outer(pos, freq)
    xs = acc / 2 ** 24
    lo, hi = xs[:, :4], xs[:, 4:]
    want = np.concatenate([lo * np.cos(ang) - hi * np.sin(ang), hi * np.cos(ang) + lo * np.sin(ang)], axis=1)
    # Q14 cosines and sines (2**-15 each) and the FP16 rounding
    pair = np.tile(np.abs(lo) + np.abs(hi), 2)
    assert np.all(np.abs(got - want) <= 2 ** -15 * pair + 2 ** -11 * np.abs(want) + 2 ** -15)
    # the rotation keeps each pair's length
    assert np.allclose(np.hypot(got[:, :4], got[:, 4:]), np.hypot(lo, hi), rtol=2e-3)
    # position 0 (cos 1, sin 0): the identity on the requantized values
    assert got[0].tolist() == [fp16_value(fp16_of_fixed(rs(int(v), 8))) for v in acc[0]]


def test_gelu_fp16_against_float_and_the_int8_table():
    # the same tile through GELU fmt 0 (the INT8 table, written as FP16 integers) and fmt 1
    x = np.arange(-40, 40, 5).reshape(4, 4) / 16  # on the table's input grid
    acc = np.rint(x * 2 ** 24).astype(np.int64)
    lut = gelu_lut(1 / 16, 1 / 16)  # int8 units of 1/16 in and out
    # fmt 0 needs v in the table's input units (1/16): mult 1, shift 20; fmt 1 2**-16: shift 8
    segs = [Segment("ACC", 0, pack_acc(F16, acc), F16.acc_word_bytes),
            Segment("VPARAM", 0, vparam_header(F16, lut=lut) + pack_vparam([1] * 4, [20] * 4)
                    + pack_vparam([1] * 4, [8] * 4), 4)]
    res = run_ok(F16, [Instruction(Opcode.VEC, func=VecFunc.GELU, act_addr=0, param_addr=BASE, rows=4, direct=1),
                       Instruction(Opcode.VEC, func=VecFunc.GELU, act_addr=4, param_addr=BASE + 4, rows=4,
                                   direct=1, fmt=1)], segs)
    table = res.spads["ACT"][0:4].view(np.float16).astype(np.float64) / 16
    fine = res.spads["ACT"][4:8].view(np.float16).astype(np.float64)
    want = x * np.vectorize(phi)(x)
    assert np.abs(table - want).max() <= 1 / 32 + 1e-9  # the INT8 output step
    assert np.abs(fine - want).max() <= 2.5e-4 * 2.5 + 2 ** -10  # the Phi gate and FP16 rounding


# -- VNORM -------------------------------------------------------------------------------------

RSQRT = [round(2 ** 23 / math.sqrt(m)) for m in range(256, 1024)]


def rsqrt(d):
    if d <= 0:
        return 0, 0
    e = d.bit_length() - 10
    e += e & 1
    m = d >> e if e >= 0 else d << -e
    return RSQRT[m - 256], e


def norm_reference(blocks, *, rms, qshift, hm, hs, eps, gm, gs, beta):
    """LayerNorm / RMSNorm of docs/numerics.md, "Norms", over the feature blocks (each (tokens,
    cols)) of one token block: the outputs y (before the format conversion), per block."""
    t = len(blocks[0])
    s1 = [0] * t
    for blk in blocks:
        for i in range(t):
            s1[i] = s1[i] + sum(sat32(int(x)) for x in blk[i])  # far from 48 bits here
    mu = [0 if rms else sat32(rs(s1[i] * hm, hs)) for i in range(t)]
    lim = 1 << 23

    def dev(x, i):
        return clamp(rs(sat32(int(x)) - mu[i], qshift), -lim, lim - 1)
    s2 = [sum(dev(x, i) ** 2 for blk in blocks for x in blk[i]) for i in range(t)]
    out = []
    for b, blk in enumerate(blocks):
        y = []
        for i in range(t):
            r, e = rsqrt(s2[i] + eps)
            y.append([rs(rs(dev(x, i) * r, e // 2 + 4) * int(gm[b][j]), int(gs[b][j])) + int(beta[b][j])
                      for j, x in enumerate(blk[i])])
        out.append(y)
    return out


def norm_setup(cfg, x, gamma, beta, *, rms, unit, qshift, out_unit, eps=1e-5):
    """ACC, VPARAM segments and the integer parameters for a norm of x (tokens, H) stored in
    ACC words in units of ``unit``: feature block b at ACC 8 b; nparam = BASE, column parameters
    of block b at BASE + 2 + 2 cols b; outputs in units of ``out_unit``."""
    t, h = x.shape
    c = cfg.cols
    nb = h // c
    acc = np.rint(x / unit).astype(np.int64)
    hm, hs = (int(v) for v in fixed_multiplier(1 / h))
    eps_int = int(round(h * eps / (unit * 2 ** qshift) ** 2))
    gm, gs = fixed_multiplier(math.sqrt(h) * 2.0 ** -19 * gamma / out_unit)
    beta_int = np.rint(beta / out_unit).astype(np.int64)
    vp = vparam_header(cfg) + pack_vparam([hm], [hs]) + struct.pack("<I", eps_int)
    for b in range(nb):
        vp += pack_vparam(gm[b * c:(b + 1) * c], gs[b * c:(b + 1) * c])
        vp += beta_int[b * c:(b + 1) * c].astype("<i4").tobytes()
    segs = [Segment("ACC", 8 * b, pack_acc(cfg, acc[:, b * c:(b + 1) * c]), cfg.acc_word_bytes) for b in range(nb)]
    segs.append(Segment("VPARAM", 0, vp, 4))
    ints = dict(rms=rms, qshift=qshift, hm=hm, hs=hs, eps=eps_int,
                gm=[gm[b * c:(b + 1) * c] for b in range(nb)], gs=[gs[b * c:(b + 1) * c] for b in range(nb)],
                beta=[beta_int[b * c:(b + 1) * c] for b in range(nb)])
    return segs, [acc[:, b * c:(b + 1) * c] for b in range(nb)], ints


def norm_program(cfg, nb, t, *, rms, qshift, fmt=0, to_acc=False, out=40):
    """The passes of one norm over nb feature blocks of t tokens (ACC 8 b): SUM (LayerNorm), SQ,
    NORM; block b's output at ACT out + cols b (or ACC out + 8 b with to_acc)."""
    ins = []
    if not rms:
        ins += [Instruction(Opcode.VNORM, func=NormFunc.SUM, acc_addr=8 * b, rows=t, first=int(b == 0))
                for b in range(nb)]
    ins += [Instruction(Opcode.VNORM, func=NormFunc.SQ, acc_addr=8 * b, nparam=BASE, rows=t, qshift=qshift,
                        first=int(b == 0), rms=int(rms)) for b in range(nb)]
    ins += [Instruction(Opcode.VNORM, func=NormFunc.NORM, acc_addr=8 * b, nparam=BASE,
                        param_addr=BASE + 2 + 2 * cfg.cols * b,
                        act_addr=out + (8 * b if to_acc else cfg.cols * b), rows=t, qshift=qshift,
                        rms=int(rms), fmt=fmt, to_acc=int(to_acc)) for b in range(nb)]
    return ins


def float_norm(x, gamma, beta, rms, eps=1e-5):
    if rms:
        return x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + eps) * gamma
    mu = x.mean(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + eps) * gamma + beta


def norm_case(seed, t, h, rms, unit):
    """t tokens of h features on the grid of ``unit`` (the values ACC holds, so the float norm
    sees them too): one with an outlier, the last with a variance of the order of eps (1e-5), so
    eps matters; gamma, beta."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.7, 2.0, size=(t, h))
    x[0, 1] = 11.0  # an outlier
    x[-1] = 0.5 + rng.normal(0, 0.003, h)
    gamma = rng.uniform(0.5, 1.5, h) * np.where(np.arange(h) % 3, 1, -1)
    beta = 0 * gamma if rms else rng.uniform(-1, 1, h)
    return np.rint(x / unit) * unit, gamma, beta


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
@pytest.mark.parametrize("t", [4, 3])
def test_vnorm_int8_output(rms, t):
    cfg = CFG
    h = 12  # three feature blocks
    x, gamma, beta = norm_case(t + 10 * rms, t, h, rms, 2 ** -16)
    ref = float_norm(x, gamma, beta, rms)
    out_unit = np.abs(ref).max() / 120
    segs, blocks, ints = norm_setup(cfg, x, gamma, beta, rms=rms, unit=2 ** -16, qshift=0, out_unit=out_unit)
    res = run_ok(cfg, norm_program(cfg, h // 4, t, rms=rms, qshift=0), segs)
    want = norm_reference(blocks, **ints)
    act = res.act()
    got = np.concatenate([act[40 + 4 * b:44 + 4 * b, :t].T for b in range(h // 4)], axis=1)
    assert got.tolist() == [[sat8(v) for blk in want for v in blk[i]] for i in range(t)]
    assert (act[40:40 + h, t:] == 0).all()
    assert np.abs(got * out_unit - ref).max() <= 0.01 * np.abs(ref).max()


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
def test_vnorm_fp16_output_with_qshift(rms):
    # FP16 tile: accumulators in 2**-24 units (|x - mu| up to ~2**28: qshift 5 keeps d in 24
    # bits), outputs FP16 (fmt 1, units 2**-16)
    cfg = F16
    x, gamma, beta = norm_case(5 + rms, 4, 8, rms, 2 ** -24)
    ref = float_norm(x, gamma, beta, rms)
    segs, blocks, ints = norm_setup(cfg, x, gamma, beta, rms=rms, unit=2 ** -24, qshift=5, out_unit=2 ** -16)
    res = run_ok(cfg, norm_program(cfg, 2, 4, rms=rms, qshift=5, fmt=1), segs)
    want = norm_reference(blocks, **ints)
    act = lanes(cfg, res.spads["ACT"])
    got = np.concatenate([act[40 + 4 * b:44 + 4 * b].T for b in range(2)], axis=1)
    assert got.tolist() == [[fp16_of_fixed(v) for blk in want for v in blk[i]] for i in range(4)]
    values = got.astype(np.uint16).view(np.float16).astype(np.float64)
    assert np.abs(values - ref).max() <= 0.01 * np.abs(ref).max()
    assert np.abs(values - ref).max() <= 3e-3 * np.abs(ref).max()  # rsqrt's 0.2% plus FP16


@pytest.mark.parametrize("cfg", [CFG, F16], ids=["a8", "a16"])
def test_vnorm_to_acc(cfg):
    # NORM with to_acc writes sat32(y) into ACC rows act_addr..; fine output units: ~1e-3 close
    x, gamma, beta = norm_case(9, 3, 8, False, 2 ** -16)
    ref = float_norm(x, gamma, beta, False)
    segs, blocks, ints = norm_setup(cfg, x, gamma, beta, rms=False, unit=2 ** -16, qshift=0, out_unit=2 ** -14)
    segs.append(Segment("ACC", 40, pack_acc(cfg, np.full((16, 4), 77)), cfg.acc_word_bytes))
    res = run_ok(cfg, norm_program(cfg, 2, 3, rms=False, qshift=0, to_acc=True, out=40), segs)
    want = norm_reference(blocks, **ints)
    acc = res.spads["ACC"]
    for b in range(2):
        assert acc[40 + 8 * b:43 + 8 * b].tolist() == [[sat32(v) for v in row] for row in want[b]]
        assert acc[43 + 8 * b].tolist() == [77] * 4  # the 4th token row is not written
    got = np.concatenate([acc[40:43], acc[48:51]], axis=1).astype(np.float64) * 2 ** -14
    assert np.abs(got - ref).max() <= 3e-3 * np.abs(ref).max()
    assert (res.spads["ACT"] == 0).all()


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
def test_vnorm_passes_restart_with_first(rms):
    # the per-token registers live across instructions: first=0 continues them over the feature
    # blocks, first=1 restarts them, so stale sums of another norm (other blocks, another qshift)
    # change nothing; an RMSNorm ignores s1 (mean 0) whatever a LayerNorm left in it
    cfg = CFG
    x, gamma, beta = norm_case(2, 4, 8, rms, 2 ** -10)
    segs, blocks, ints = norm_setup(cfg, x, gamma, beta, rms=rms, unit=2 ** -10, qshift=1,
                                    out_unit=float(np.abs(float_norm(x, gamma, beta, rms)).max() / 100))
    want = norm_reference(blocks, **ints)
    stale = [Instruction(Opcode.VNORM, func=NormFunc.SUM, acc_addr=8, rows=4, first=1),
             Instruction(Opcode.VNORM, func=NormFunc.SUM, acc_addr=8, rows=4),
             Instruction(Opcode.VNORM, func=NormFunc.SQ, acc_addr=0, nparam=BASE, rows=4, first=1, qshift=3)]
    res = run_ok(cfg, stale + norm_program(cfg, 2, 4, rms=rms, qshift=1), segs)
    act = res.act()
    got = np.concatenate([act[40:44].T, act[44:48].T], axis=1)
    assert got.tolist() == [[sat8(v) for blk in want for v in blk[i]] for i in range(4)]
    assert res.races == ()


# -- VSOFT: by column, probability formats -----------------------------------------------------

def soft_reference(values, kmult, kshift, vmult, vshift, pfmt):
    """The written probabilities of one row (docs/numerics.md, Softmax, with pfmt)."""
    v = [sat32(rs(int(x) * int(m), int(s))) for x, m, s in zip(values, kmult, kshift)]
    rmax = max(v)

    def e(x):
        d = min(max(rmax - x, 0), 511)
        return EXP_TABLE[d % 32] >> (d // 32)
    rsum = sum(e(x) for x in v)
    r = ((127 << 24) if pfmt == ProbFormat.INT8 else 1 << 31) // rsum
    out = []
    for x, m, s in zip(v, vmult, vshift):
        q = rs(rs(e(x) * r, 9) * int(m), int(s))
        if pfmt == ProbFormat.INT8:
            out.append(sat8(q))
        elif pfmt == ProbFormat.FP16:
            out.append(fp16_of_fixed(q))
        else:
            q = clamp(q, 0, (1 << 14) - 1)
            out.append(q >> 7 if pfmt == ProbFormat.HI else q & 127)
    return out


def soft_passes(act_addr, acc_addr, words, count, kparam, vparam, pfmt, *, col=0, lane=0):
    """MAX, EXP (both starting the row) and NORM over one row."""
    common = dict(acc_addr=acc_addr, words=words, count=count, kparam=kparam, vparam=vparam, col=col, lane=lane)
    return [Instruction(Opcode.VSOFT, func=SoftFunc.MAX, first=1, **common),
            Instruction(Opcode.VSOFT, func=SoftFunc.EXP, first=1, **common),
            Instruction(Opcode.VSOFT, func=SoftFunc.NORM, act_addr=act_addr, pfmt=pfmt, **common)]


BY_COLUMN = [(CFG, ProbFormat.INT8), (CFG, ProbFormat.LO), (F16, ProbFormat.INT8), (F16, ProbFormat.FP16),
             (F16, ProbFormat.HI)]


@pytest.mark.parametrize("cfg, pfmt", BY_COLUMN, ids=[f"{'a8' if c is CFG else 'a16'}-{p.name}" for c, p in BY_COLUMN])
def test_vsoft_by_column_writes_one_lane_per_query(cfg, pfmt):
    # scores of 4 queries over 10 keys as three GEMM output tiles (key blocks of cols = 4) at
    # ACC 0, 4, 8: word 4 w + q holds query q's scores of keys 4 w ..; each query's softmax by
    # column (acc_addr = q, words = 3 rows apart) writes key t's probability into lane q of ACT
    # word 100 + t: P transposed, K-major, ready for the P x V GEMM. Query 2 is left out: its
    # lane keeps what was there.
    rng = np.random.default_rng(7)
    q_n, keys, words = 4, 10, 3
    scores = rng.integers(-30000, 30000, size=(q_n, 12))
    acc = np.zeros((12, 4), np.int64)
    for w in range(words):
        acc[4 * w:4 * w + 4] = scores[:, 4 * w:4 * w + 4]
    kmult, kshift = rng.integers(1, 1 << 15, keys), rng.integers(10, 16, keys)
    vmult, vshift = rng.integers(1 << 13, 1 << 15, keys), rng.integers(28, 31, keys)
    old = rng.integers(-100, 100, size=(13, cfg.rows))
    old_lanes = old if cfg.act_format == "int8" else np.array(
        [[fp16_bits(float(v)) for v in row] for row in old])
    segs = [Segment("ACC", 0, pack_acc(cfg, acc), cfg.acc_word_bytes),
            Segment("VPARAM", BASE, pack_vparam(np.concatenate([kmult, vmult]), np.concatenate([kshift, vshift])), 4),
            Segment("ACT", 100, act_words(cfg, old_lanes), cfg.act_word_bytes)]
    ins = []
    for q in (0, 1, 3):
        ins += soft_passes(100, q, words, keys, BASE, BASE + keys, pfmt, col=1, lane=q)
    res = run_ok(cfg, ins, segs)
    act = lanes(cfg, res.spads["ACT"][100:113])
    assert act[12].tolist() == old_lanes[12].tolist()  # nothing past words * cols
    act = act[:12]
    for q in range(q_n):
        if q == 2:
            assert act[:, q].tolist() == old_lanes[:12, q].tolist()
            continue
        want = soft_reference(scores[q, :keys], kmult, kshift, vmult, vshift, pfmt)
        want = want + [0, 0]  # words * cols = 12 words: 0 past count
        if cfg.act_format == "fp16" and pfmt != ProbFormat.FP16:
            want = [fp16_bits(float(p)) for p in want]  # the FP16 values of the integers
        assert act[:, q].tolist() == want


@pytest.mark.parametrize("cfg, pfmts", [(CFG, (ProbFormat.INT8, ProbFormat.HI, ProbFormat.LO)),
                                        (F16, tuple(ProbFormat))], ids=["a8", "a16"])
def test_vsoft_probability_formats(cfg, pfmts):
    # scores in whole exponent steps (ln 2 / 32), identity K multipliers, V multipliers of the
    # output unit: INT8 2**-15, FP16 2**-6, HI/LO 2**-8. NORM leaves rmax and rsum alone, so
    # one MAX, one EXP and a NORM per format.
    unit = {ProbFormat.INT8: 2.0 ** -15, ProbFormat.FP16: 2.0 ** -6, ProbFormat.HI: 2.0 ** -8,
            ProbFormat.LO: 2.0 ** -8}
    rng = np.random.default_rng(len(pfmts))
    for trial in range(6):
        n = int(rng.integers(2, 13))
        steps = rng.integers(-300, 300, n)
        steps[0] = steps.max() + int(rng.integers(0, 40))  # a clear maximum sometimes
        acc = np.zeros((4, 4), np.int64)
        acc.reshape(-1)[:n] = steps
        vparams = b"".join(pack_vparam(*fixed_multiplier(np.full(n, unit[p]))) for p in pfmts)
        segs = [Segment("ACC", 0, pack_acc(cfg, acc), cfg.acc_word_bytes),
                Segment("VPARAM", BASE, pack_vparam(np.ones(n, np.int64), np.zeros(n, np.int64)) + vparams, 4)]
        norms = [(20 + 8 * k, p) for k, p in enumerate(pfmts)]
        ins = [Instruction(Opcode.VSOFT, func=f, words=4, count=n, kparam=BASE, first=1)
               for f in (SoftFunc.MAX, SoftFunc.EXP)]
        ins += [Instruction(Opcode.VSOFT, func=SoftFunc.NORM, words=4, count=n, kparam=BASE,
                            vparam=BASE + n * (k + 1), act_addr=addr, pfmt=p) for k, (addr, p) in enumerate(norms)]
        res = run_ok(cfg, ins, segs)
        real = steps * exp_step()
        ref = np.exp(real - real.max())
        ref /= ref.sum()
        got = {}
        for k, (addr, p) in enumerate(norms):
            mult, shift = fixed_multiplier(np.full(n, unit[p]))
            want = soft_reference(steps, [1] * n, [0] * n, mult, shift, p)
            lanes_ = lanes(cfg, res.spads["ACT"][addr:addr + 4]).reshape(-1)
            if cfg.act_format == "fp16" and p != ProbFormat.FP16:
                want = [fp16_bits(float(v)) for v in want]  # int8 values written as FP16 values
            assert lanes_[:n].tolist() == want, p.name
            assert (lanes_[n:] == 0).all()
            got[p] = np.array(want, np.int64)
        if ProbFormat.FP16 in got:
            p16 = got[ProbFormat.FP16].astype(np.uint16).view(np.float16).astype(np.float64)
            assert np.abs(p16 - ref).max() <= 1e-3
        if cfg.act_format == "fp16":
            got = {p: (v.astype(np.uint16).view(np.float16).astype(np.int64) if p != ProbFormat.FP16 else v)
                   for p, v in got.items()}
        p14 = (got[ProbFormat.HI] * 128 + got[ProbFormat.LO]) / 2 ** 14
        assert np.abs(p14 - ref).max() <= 1e-3
        assert np.abs(got[ProbFormat.INT8] / 127 - ref).max() <= 0.5 / 127 + 1e-3


# -- GEMM wsrc: INT8 weights from ACT ----------------------------------------------------------

def wsrc_operands(cfg, g, seed):
    rng = np.random.default_rng(seed)
    k = g * cfg.group
    w = rng.integers(-128, 128, size=(cfg.cols, k))
    w[0, :4] = [-128, 127, -1, 0]
    if cfg.act_format == "int8":
        a = rng.integers(-128, 128, size=(cfg.rows, k))
        a[1, :2] = -128
        a_words, scale = a.T, 1
        w_words = w.T  # word k, lane j: weight of output column j
    else:
        a = (rng.normal(size=(cfg.rows, k)) * 8).astype(np.float16)
        a[2, :3] = [65504, -2.0 ** -24, 0.5]
        a_words = a.T
        w_words = w.T.astype(np.float16)  # the weights are FP16 integers
        scale = 1 << 24  # the accumulators' 2**-24 units
        a = (a.astype(np.float64) * scale).astype(np.int64)  # exact: FP16 values are multiples of 2**-24
    return a, w, a_words, w_words, scale


@pytest.mark.parametrize("cfg", [CFG, F16], ids=["a8", "a16"])
def test_gemm_wsrc_is_the_exact_integer_product(cfg):
    g = 2
    k = g * cfg.group
    a, w, a_words, w_words, _ = wsrc_operands(cfg, g, seed=1)
    a2, w2, a2_words, w2_words, _ = wsrc_operands(cfg, 1, seed=2)
    segs = [Segment("ACT", 0, pack_act(cfg, a_words), cfg.act_word_bytes),
            Segment("ACT", k, pack_act(cfg, w_words), cfg.act_word_bytes),
            Segment("ACT", 2 * k, pack_act(cfg, a2_words), cfg.act_word_bytes),
            Segment("ACT", 2 * k + cfg.group, pack_act(cfg, w2_words), cfg.act_word_bytes)]
    ins = [Instruction(Opcode.GEMM, act_addr=0, wgt_addr=k, acc_addr=0, groups=g, wsrc=1),
           Instruction(Opcode.GEMM, act_addr=0, wgt_addr=k, acc_addr=4, groups=g, wsrc=1),
           Instruction(Opcode.GEMM, act_addr=2 * k, wgt_addr=2 * k + cfg.group, acc_addr=4, groups=1,
                       wsrc=1, accumulate=1)]
    res = run_ok(cfg, ins, segs)
    acc = res.spads["ACC"]
    want = a @ w.T
    assert acc[0:4].tolist() == want.tolist()
    assert acc[4:8].tolist() == (want + a2 @ w2.T).tolist()
    assert res.status.busy[1] == 2 * (2 * g + 1) * cfg.group  # two passes per GEMM


def test_gemm_wsrc_accumulates_onto_a_weight_gemm_and_wraps():
    # a 4-bit weight GEMM, then a wsrc GEMM accumulating onto it: the sum of the two products;
    # with acc_headroom 1 the accumulator wraps at acc_bits like any GEMM's
    from mixpim.models.executor import pack_meta, pack_wgt
    for cfg in (CFG, TileConfig(rows=4, cols=4, acc_headroom=1)):
        g = 4
        k = g * cfg.group
        rng = np.random.default_rng(3)
        a = np.full((4, k), -128)
        a[0] = rng.integers(-128, 128, k)
        codes = np.full((4, k), 15)
        w = np.full((4, k), -128)
        segs = [Segment("ACT", 0, pack_act(cfg, a.T), 4), Segment("ACT", k, pack_act(cfg, w.T), 4),
                Segment("WGT", 0, pack_wgt(cfg, codes.T), cfg.wgt_word_bytes),
                Segment("META", 0, pack_meta(cfg, np.zeros((g, 4), np.int64), np.full((g, 4), 65535)),
                        cfg.meta_word_bytes)]
        ins = [Instruction(Opcode.GEMM, groups=g),
               Instruction(Opcode.GEMM, wgt_addr=k, groups=g, wsrc=1, accumulate=1)]
        res = run_ok(cfg, ins, segs)
        want = a @ codes.T * 65535 + a @ w.T
        assert res.spads["ACC"][0:4].tolist() == wrap(want, cfg.acc_bits).tolist()
        if cfg.acc_bits < 45:
            assert cfg.acc_bits == 34 and (want[1:] < -(1 << 33)).all()  # the rows that wrapped


def test_gemm_wsrc_fp16_weights_are_rounded_to_int8():
    # on an FP16 tile a weight lane is an FP16 value, taken as int8: rounded half up, saturated,
    # inf and NaN are 0 (as the vector unit reads FP16 residuals)
    cfg = F16
    k = cfg.group
    wvals = np.array([2.5, -2.5, 0.49, -0.5, 300, -300, np.inf, np.nan, 126.5, -128.5], np.float16)
    w_words = np.zeros((k, 4), np.float16)
    w_words[:len(wvals), 0] = wvals
    a_words = np.zeros((k, 4), np.float16)
    a_words[np.arange(len(wvals)), np.arange(len(wvals)) % 4] = 1  # token i % 4 picks weight i
    segs = [Segment("ACT", 0, pack_act(cfg, a_words), 8), Segment("ACT", k, pack_act(cfg, w_words), 8)]
    res = run_ok(cfg, [Instruction(Opcode.GEMM, wgt_addr=k, groups=1, wsrc=1)], segs)
    ints = [int8_of_fp16(b) for b in wvals.view(np.uint16)]
    assert ints == [3, -2, 0, 0, 127, -128, 0, 0, 127, -128]
    want = [sum(ints[i::4]) << 24 for i in range(4)]
    assert res.spads["ACC"][0:4, 0].tolist() == want


# -- LOAD into ACC -----------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [CFG, F16], ids=["acc45", "acc78"])
def test_load_into_acc_then_store_round_trips(cfg):
    rng = np.random.default_rng(cfg.acc_bits)
    lim = 1 << (cfg.acc_bits - 1)
    vals = np.array([[int(v) for v in row] for row in rng.integers(-(1 << 40), 1 << 40, size=(6, 4))], dtype=object)
    vals[0, :2] = lim - 1, -lim
    data = pack_acc(cfg, vals)
    wb = cfg.acc_word_bytes
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=5, dram_addr=wb, words=3, rows=2, stride=4 * wb)]
    dram = bytearray(data[:3 * wb]) + bytes(wb) + data[3 * wb:]  # two rows of 3 words, a gap between
    segs = [Segment("dram", wb, bytes(dram))]
    ins.append(Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=5, dram_addr=40 * wb, words=6, rows=1))
    res = execute(Program(cfg, ins + [HALT], segs))
    assert res.ok
    assert [[int(v) for v in r] for r in res.spads["ACC"][5:11]] == vals.tolist()
    assert res.read(40 * wb, 6 * wb) == data


def test_load_into_acc_keeps_the_low_acc_bits():
    # bytes that are not a sign-extended 45-bit value: the ACC keeps the low 45 bits, so STORE
    # writes the sign-extended word (a canonical word round-trips, any other is canonicalized)
    cfg = CFG
    raw = (b"\xff\xff\xff\xff\xff\x1f"      # 2**45 - 1: low 45 bits all ones = -1
           b"\x00\x00\x00\x00\x00\x20"      # 2**45: low 45 bits 0
           b"\x00\x00\x00\x00\x00\xf0"      # -2**44 (sign-extended): kept
           b"\x01\x00\x00\x00\x00\x80")     # bit 47 and 1: low 45 bits = 1
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=0, dram_addr=0, words=1, rows=1),
           Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=0, dram_addr=48, words=1, rows=1), HALT]
    res = execute(Program(cfg, ins, [Segment("dram", 0, raw)]))
    assert res.ok
    assert res.spads["ACC"][0].tolist() == [-1, 0, -(1 << 44), 1]
    assert res.read(48, 24) == b"\xff" * 6 + bytes(6) + b"\x00" * 5 + b"\xf0" + b"\x01" + bytes(5)
    assert unpack_acc(cfg, res.read(48, 24)).tolist() == [[-1, 0, -(1 << 44), 1]]


def test_residual_stream_through_acc():
    # LOAD the residual stream into ACC, a projection GEMM into another ACC tile, VEC RES adds it
    # (requantized) to the residual, STORE the new residual: ordered by tokens, no races
    cfg = CFG
    k = cfg.group
    rng = np.random.default_rng(6)
    resid = rng.integers(-(1 << 20), 1 << 20, size=(4, 4))
    a, w = rng.integers(-128, 128, size=(4, k)), rng.integers(-128, 128, size=(4, k))
    wb = cfg.acc_word_bytes
    segs = [Segment("dram", 0, pack_acc(cfg, resid)),
            Segment("ACT", 0, pack_act(cfg, a.T), 4), Segment("ACT", k, pack_act(cfg, w.T), 4),
            Segment("VPARAM", 0, vparam_header(cfg) + pack_vparam([3] * 4, [2] * 4), 4)]
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=8, dram_addr=0, words=4, rows=1, signal=VEC),
           Instruction(Opcode.GEMM, wgt_addr=k, groups=1, wsrc=1, signal=VEC),
           Instruction(Opcode.VEC, func=VecFunc.RES, acc_addr=0, res_addr=8, param_addr=BASE, rows=4,
                       wait=DMA | GEMM, signal=DMA),
           Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=8, dram_addr=10 * wb, words=4, rows=1, wait=VEC)]
    res = run_ok(cfg, ins, segs)
    want = [[sat32(rs(int(p) * 3, 2) + int(r)) for p, r in zip(prow, rrow)] for prow, rrow in zip(a @ w.T, resid)]
    assert unpack_acc(cfg, res.read(10 * wb, 4 * wb)).tolist() == want


# -- the ACC width -----------------------------------------------------------------------------

NARROW = TileConfig(rows=4, cols=4, wbits=2, scale_bits=4, acc_headroom=1)  # acc_bits 20 < 32


def test_vec_res_wraps_at_acc_bits():
    cfg = NARROW
    assert cfg.acc_bits == 20
    acc = np.array([[1 << 18] * 4, [-(1 << 18)] * 4, [5] * 4, [0] * 4])
    segs = [Segment("ACC", 0, pack_acc(cfg, acc), cfg.acc_word_bytes),
            Segment("VPARAM", 0, vparam_header(cfg) + pack_vparam([1] * 4, [0] * 4), 4)]
    ins = [Instruction(Opcode.VEC, func=VecFunc.RES, acc_addr=0, res_addr=0, param_addr=BASE, rows=4, signal=DMA),
           Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=0, dram_addr=0, words=4, rows=1, wait=VEC), HALT]
    res = execute(Program(cfg, ins, segs))
    assert res.ok
    want = wrap(np.array([[2 << 18] * 4, [-(2 << 18)] * 4, [10] * 4, [0] * 4]), 20)
    assert res.spads["ACC"][0:4].tolist() == want.tolist() == [[-(1 << 19)] * 4, [-(1 << 19)] * 4, [10] * 4,
                                                               [0] * 4]
    assert unpack_acc(cfg, res.read(0, 4 * cfg.acc_word_bytes)).tolist() == want.tolist()


def test_vnorm_to_acc_wraps_at_acc_bits():
    cfg = NARROW
    x, gamma, beta = norm_case(1, 4, 8, False, 2 ** -8)
    segs, blocks, ints = norm_setup(cfg, x, gamma, beta, rms=False, unit=2 ** -8, qshift=0, out_unit=2 ** -20)
    ins = norm_program(cfg, 2, 4, rms=False, qshift=0, to_acc=True, out=40)
    ins[-1] = ins[-1].replace(signal=DMA)
    ins.append(Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=40, dram_addr=0, words=4, rows=1, wait=VEC))
    want = norm_reference(blocks, **ints)
    assert max(abs(v) for row in want[0] for v in row) >= 1 << 19  # beyond 20 bits
    res = execute(Program(cfg, ins + [HALT], segs))
    assert res.ok
    assert res.spads["ACC"][40:44].tolist() == wrap(np.array([[sat32(v) for v in r] for r in want[0]]),
                                                    20).tolist()


# -- dispatch faults ---------------------------------------------------------------------------

A8, A16 = "mixpe-w4a8", "mixpe-w4a16"
WIDE = TileConfig(rows=2, cols=4)  # rows < cols: no direct writes, no wsrc
SMALL_WGT = CFG.replace(wgt_words=64)


def vec(**kw):
    return Instruction(Opcode.VEC, **{"param_addr": BASE, "rows": 4, "table_addr": 100, **kw})


def vnorm(**kw):
    return Instruction(Opcode.VNORM, **{"nparam": BASE, "param_addr": BASE, "rows": 4, **kw})


def vsoft(**kw):
    return Instruction(Opcode.VSOFT, **{"kparam": BASE, "vparam": BASE, "words": 1, "count": 4, **kw})


FAULTS = [
    # VEC: rows, then fmt, the FP16-output functions, RoPE, RES, direct
    (CFG, vec(rows=5, fmt=1), ErrorCode.BAD_FIELD, "VEC rows (5) exceeds the array's rows (4)"),
    (CFG, vec(func=VecFunc.REQUANT, fmt=1), ErrorCode.BAD_FIELD,
     f"VEC fmt 1 (FP16 values) needs FP16 activations; {A8} has INT8 ones"),
    (CFG, vec(func=VecFunc.SILU, fmt=1), ErrorCode.BAD_FIELD,
     f"VEC fmt 1 (FP16 values) needs FP16 activations; {A8} has INT8 ones"),
    (CFG, vec(func=VecFunc.RES, fmt=1), ErrorCode.BAD_FIELD,
     f"VEC fmt 1 (FP16 values) needs FP16 activations; {A8} has INT8 ones"),
    (CFG, vec(func=VecFunc.SILU), ErrorCode.BAD_FIELD, "VEC SILU writes FP16 values: fmt must be 1"),
    (F16, vec(func=VecFunc.SILU, direct=1), ErrorCode.BAD_FIELD, "VEC SILU writes FP16 values: fmt must be 1"),
    (F16, vec(func=VecFunc.GLU), ErrorCode.BAD_FIELD, "VEC GLU writes FP16 values: fmt must be 1"),
    (CFG, vec(func=VecFunc.ROPE_LO), ErrorCode.BAD_FIELD,
     f"VEC ROPE_LO (int16 cosine lanes) needs FP16 activations; {A8} has INT8 ones"),
    (CFG, vec(func=VecFunc.ROPE_HI, direct=1), ErrorCode.BAD_FIELD,
     f"VEC ROPE_HI (int16 cosine lanes) needs FP16 activations; {A8} has INT8 ones"),
    (F16, vec(func=VecFunc.RES, fmt=1), ErrorCode.BAD_FIELD, "VEC RES writes ACC: fmt and direct must be 0"),
    (CFG, vec(func=VecFunc.RES, direct=1), ErrorCode.BAD_FIELD, "VEC RES writes ACC: fmt and direct must be 0"),
    (CFG, vec(func=VecFunc.ADD, direct=1), ErrorCode.BAD_FIELD,
     "VEC ADD cannot write direct (its residual is read by column)"),
    (F16, vec(func=VecFunc.ADD, direct=1, fmt=1), ErrorCode.BAD_FIELD,
     "VEC ADD cannot write direct (its residual is read by column)"),
    (WIDE, vec(rows=2, direct=1, param_addr=WIDE.vparam_param_base), ErrorCode.BAD_FIELD,
     "VEC direct needs rows >= cols (an ACC row fills one ACT word), not 2x4"),
    # bias: not with a partner (its second parameter word per column is the partner's multiplier);
    # after the format checks, before direct
    (F16, vec(func=VecFunc.GLU, fmt=1, bias=1), ErrorCode.BAD_FIELD,
     "VEC GLU cannot add a bias: VPARAM words param_addr + cols .. hold its partner's multipliers"),
    (F16, vec(func=VecFunc.ROPE_LO, bias=1), ErrorCode.BAD_FIELD,
     "VEC ROPE_LO cannot add a bias: VPARAM words param_addr + cols .. hold its partner's multipliers"),
    (F16, vec(func=VecFunc.ROPE_HI, fmt=1, direct=1, bias=1), ErrorCode.BAD_FIELD,
     "VEC ROPE_HI cannot add a bias: VPARAM words param_addr + cols .. hold its partner's multipliers"),
    (F16, vec(func=VecFunc.GLU, bias=1), ErrorCode.BAD_FIELD, "VEC GLU writes FP16 values: fmt must be 1"),
    (CFG, vec(func=VecFunc.ROPE_LO, bias=1), ErrorCode.BAD_FIELD,
     f"VEC ROPE_LO (int16 cosine lanes) needs FP16 activations; {A8} has INT8 ones"),
    (F16.replace(rows=2), vec(rows=2, direct=1, bias=1, func=VecFunc.GLU, fmt=1, param_addr=BASE - 2),
     ErrorCode.BAD_FIELD,  # a 2x4 array: no direct either
     "VEC GLU cannot add a bias: VPARAM words param_addr + cols .. hold its partner's multipliers"),
    (F16, vec(func=VecFunc.SILU, fmt=1, bias=1, direct=1), None, None),
    (CFG, vec(func=VecFunc.RES, bias=1), None, None),
    # VEC footprints, in order: ACC, ACT (rows words direct) or residual ACC (RES), partner ACC,
    # VPARAM (2 cols for GLU, ROPE), RoPE table (2 cols ACT words)
    (CFG, vec(act_addr=253), ErrorCode.SPAD_RANGE, "VEC ACT words 253..256 leave the scratchpad (256 words)"),
    (CFG, vec(act_addr=253, rows=3, direct=1), None, None),
    (CFG, vec(act_addr=254, rows=3, direct=1), ErrorCode.SPAD_RANGE,
     "VEC ACT words 254..256 leave the scratchpad (256 words)"),
    (CFG, vec(func=VecFunc.RES, res_addr=62, rows=3), ErrorCode.SPAD_RANGE,
     "VEC residual ACC words 62..64 leave the scratchpad (64 words)"),
    (CFG, vec(func=VecFunc.RES, act_addr=255, res_addr=61, rows=3), None, None),  # RES writes no ACT
    (F16, vec(func=VecFunc.GLU, fmt=1, res_addr=62, rows=3), ErrorCode.SPAD_RANGE,
     "VEC partner ACC words 62..64 leave the scratchpad (64 words)"),
    (F16, vec(func=VecFunc.GLU, fmt=1, param_addr=121), ErrorCode.SPAD_RANGE,
     "VEC VPARAM words 121..128 leave the column-parameter region 68..127"),
    (F16, vec(func=VecFunc.SILU, fmt=1, param_addr=121), None, None),  # one word per column
    (F16, vec(func=VecFunc.SILU, fmt=1, param_addr=121, bias=1), ErrorCode.SPAD_RANGE,
     "VEC VPARAM words 121..128 leave the column-parameter region 68..127"),  # and its bias
    (CFG, vec(func=VecFunc.ADD, res_addr=40, param_addr=120, bias=1), None, None),
    (CFG, vec(func=VecFunc.RES, param_addr=BASE - 1, bias=1), ErrorCode.SPAD_RANGE,
     "VEC VPARAM words 67..74 leave the column-parameter region 68..127"),
    (F16, vec(func=VecFunc.ROPE_LO, fmt=1, table_addr=249), ErrorCode.SPAD_RANGE,
     "VEC RoPE table ACT words 249..256 leave the scratchpad (256 words)"),
    (F16, vec(func=VecFunc.ROPE_HI, table_addr=248), None, None),
    (F16, vec(func=VecFunc.REQUANT, table_addr=65535), None, None),  # only RoPE reads the table
    # a transposed RoPE writes column j's word before it has read the whole table: its cols output
    # words must not overlap the 2 cols table words (direct writes come after the tile)
    (F16, vec(func=VecFunc.ROPE_LO, act_addr=0, table_addr=0), ErrorCode.BAD_FIELD,
     "VEC ROPE_LO output words 0..3 overlap its table words 0..7"),
    (F16, vec(func=VecFunc.ROPE_HI, fmt=1, act_addr=97), ErrorCode.BAD_FIELD,
     "VEC ROPE_HI output words 97..100 overlap its table words 100..107"),
    (F16, vec(func=VecFunc.ROPE_LO, act_addr=107), ErrorCode.BAD_FIELD,
     "VEC ROPE_LO output words 107..110 overlap its table words 100..107"),
    (F16, vec(func=VecFunc.ROPE_LO, act_addr=96), None, None),
    (F16, vec(func=VecFunc.ROPE_LO, act_addr=108), None, None),
    (F16, vec(func=VecFunc.ROPE_HI, act_addr=100, direct=1), None, None),
    (F16, vec(func=VecFunc.GLU, fmt=1, act_addr=100), None, None),  # only RoPE reads the table
    (CFG, vec(func=VecFunc.ADD, act_addr=10, res_addr=12), ErrorCode.BAD_FIELD,
     "VEC ADD output words 10..13 overlap residual words 12..15 without coinciding"),
    (F16, vec(func=VecFunc.ADD, fmt=1, act_addr=12, res_addr=12), None, None),
    # VSOFT
    (CFG, vsoft(func=SoftFunc.NORM, pfmt=ProbFormat.FP16), ErrorCode.BAD_FIELD,
     f"VSOFT pfmt FP16 needs FP16 activations; {A8} has INT8 ones"),
    (F16, vsoft(func=SoftFunc.NORM, pfmt=ProbFormat.FP16), None, None),
    (CFG, vsoft(col=1, lane=4), ErrorCode.BAD_FIELD, "VSOFT lane (4) is not a lane of the array's 4 rows"),
    (CFG, vsoft(lane=3), ErrorCode.BAD_FIELD, "VSOFT lane must be 0 unless col is 1"),
    (CFG, vsoft(col=1, lane=3, words=4, count=16, acc_addr=51), None, None),  # ACC 51, 55, 59, 63
    (CFG, vsoft(col=1, lane=3, words=4, count=16, acc_addr=52), ErrorCode.SPAD_RANGE,
     "VSOFT ACC words 52..64 leave the scratchpad (64 words)"),
    # VNORM
    (CFG, vnorm(rows=5), ErrorCode.BAD_FIELD, "VNORM rows (5) exceeds the array's rows (4)"),
    (CFG, vnorm(func=NormFunc.NORM, fmt=1), ErrorCode.BAD_FIELD,
     f"VNORM fmt 1 (FP16 values) needs FP16 activations; {A8} has INT8 ones"),
    (F16, vnorm(func=NormFunc.NORM, fmt=1, to_acc=1), ErrorCode.BAD_FIELD, "VNORM to_acc writes ACC: fmt must be 0"),
    (CFG, vnorm(func=NormFunc.SUM, acc_addr=61), ErrorCode.SPAD_RANGE,
     "VNORM ACC words 61..64 leave the scratchpad (64 words)"),
    (CFG, vnorm(func=NormFunc.SUM, nparam=0, param_addr=0), None, None),  # SUM reads no VPARAM
    (CFG, vnorm(func=NormFunc.SQ, nparam=0, rms=1), None, None),  # nor does an RMS SQ
    (CFG, vnorm(func=NormFunc.SQ, nparam=BASE - 1), ErrorCode.SPAD_RANGE,
     "VNORM norm VPARAM words 67..67 leave the column-parameter region 68..127"),
    (CFG, vnorm(func=NormFunc.NORM, nparam=127, rms=1), ErrorCode.SPAD_RANGE,
     "VNORM norm VPARAM words 127..128 leave the column-parameter region 68..127"),
    (CFG, vnorm(func=NormFunc.NORM, param_addr=121), ErrorCode.SPAD_RANGE,
     "VNORM VPARAM words 121..128 leave the column-parameter region 68..127"),
    (CFG, vnorm(func=NormFunc.NORM, act_addr=253), ErrorCode.SPAD_RANGE,
     "VNORM ACT words 253..256 leave the scratchpad (256 words)"),
    (CFG, vnorm(func=NormFunc.NORM, act_addr=61, to_acc=1), ErrorCode.SPAD_RANGE,
     "VNORM output ACC words 61..64 leave the scratchpad (64 words)"),
    (CFG, vnorm(func=NormFunc.NORM, act_addr=60, to_acc=1), None, None),
    # GEMM wsrc
    (WIDE, Instruction(Opcode.GEMM, groups=1, wsrc=1), ErrorCode.BAD_FIELD,
     "GEMM wsrc needs rows >= cols (an ACT word holds a beat's weights), not 2x4"),
    (CFG.replace(wbits=3), Instruction(Opcode.GEMM, groups=1, wsrc=1), ErrorCode.BAD_FIELD,
     "GEMM wsrc splits INT8 weights into 4-bit codes scaled by 16: it needs wbits 4 and scale_bits >= 5, "
     "not 3 and 16"),
    (CFG.replace(scale_bits=4), Instruction(Opcode.GEMM, groups=1, wsrc=1), ErrorCode.BAD_FIELD,
     "GEMM wsrc splits INT8 weights into 4-bit codes scaled by 16: it needs wbits 4 and scale_bits >= 5, "
     "not 4 and 4"),
    (CFG.replace(scale_bits=5), Instruction(Opcode.GEMM, groups=1, wsrc=1), None, None),
    (CFG, Instruction(Opcode.GEMM, groups=1, wsrc=1, meta_addr=1), ErrorCode.BAD_FIELD,
     "GEMM wsrc reads no META: meta_addr must be 0"),
    (CFG, Instruction(Opcode.GEMM, groups=1, wsrc=1, wgt_addr=240), ErrorCode.SPAD_RANGE,
     "GEMM weight ACT words 240..271 leave the scratchpad (256 words)"),
    # with wsrc wgt_addr is an ACT word: a 64-word WGT does not limit it
    (SMALL_WGT, Instruction(Opcode.GEMM, groups=2, wsrc=1, wgt_addr=192), None, None),
    (SMALL_WGT, Instruction(Opcode.GEMM, groups=2, wgt_addr=192), ErrorCode.SPAD_RANGE,
     "GEMM WGT words 192..255 leave the scratchpad (64 words)"),
    # LOAD into ACC
    (CFG, Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=63, words=2, rows=1), ErrorCode.SPAD_RANGE,
     "LOAD ACC words 63..64 leave the scratchpad (64 words)"),
    (CFG, Instruction(Opcode.LOAD, spad=Spad.ACC, dram_addr=8, words=1, rows=1), ErrorCode.DRAM_RANGE,
     "LOAD dram_addr 0x8 is not a multiple of the ACC word size in DRAM (24 bytes)"),
    (F16, Instruction(Opcode.LOAD, spad=Spad.ACC, dram_addr=40, stride=24, words=1, rows=2), ErrorCode.DRAM_RANGE,
     "LOAD stride 0x18 is not a multiple of the ACC word size in DRAM (40 bytes)"),
]


@pytest.mark.parametrize("cfg, inst, code, message", FAULTS, ids=range(len(FAULTS)))
def test_dispatch_faults(cfg, inst, code, message):
    if code is None:
        assert status(cfg, inst)[0] == ErrorCode.OK
    else:
        assert status(cfg, inst) == (code, 0, message)


def test_every_illegal_vec_form_faults():
    # the complement of BIAS_FORMS: every (func, fmt, direct, bias) the contract forbids is BAD_FIELD
    for cfg in (CFG, F16):
        for func in VecFunc:
            for fmt, direct, bias in np.ndindex(2, 2, 2):
                inst = vec(func=func, fmt=fmt, direct=direct, bias=bias,
                           res_addr=40 if func == VecFunc.ADD else 0)
                code = status(cfg, inst)[0]
                legal = vec_legal(cfg, func, fmt, direct, bias)
                assert (code == ErrorCode.OK) == legal, (cfg.pe, func, fmt, direct, bias)
                assert code in (ErrorCode.OK, ErrorCode.BAD_FIELD)


# -- durations ---------------------------------------------------------------------------------

def durations(cfg, insts):
    """(D of each instruction, busy of its unit) as the cycle model observes them."""
    r = simulate(cfg, list(insts) + [HALT])
    assert r.error == ErrorCode.OK, r.message
    return [int(e - s + 1) for s, e in zip(r.start[:-1], r.end[:-1])], r.busy


def test_vec_cycles():
    # D = reads + columns + writes + 3: reads rows (2 rows for GLU, ROPE, RES), columns cols (2
    # cols for GLU, ROPE and with bias), writes rows for RES and direct (0 when columns are
    # written as computed)
    cases = [(VecFunc.REQUANT, 0, 0, 3, 0, 3 + 4 + 3), (VecFunc.REQUANT, 0, 1, 3, 0, 3 + 4 + 3 + 3),
             (VecFunc.GELU, 1, 0, 4, 0, 4 + 4 + 3), (VecFunc.ADD, 1, 0, 2, 0, 2 + 4 + 3),
             (VecFunc.SILU, 1, 1, 4, 0, 4 + 4 + 4 + 3), (VecFunc.GLU, 1, 0, 3, 0, 6 + 8 + 3),
             (VecFunc.GLU, 1, 1, 3, 0, 6 + 8 + 3 + 3), (VecFunc.ROPE_LO, 0, 0, 4, 0, 8 + 8 + 3),
             (VecFunc.ROPE_HI, 1, 1, 1, 0, 2 + 8 + 1 + 3), (VecFunc.RES, 0, 0, 3, 0, 6 + 4 + 3 + 3),
             (VecFunc.REQUANT, 0, 0, 3, 1, 3 + 8 + 3), (VecFunc.GELU, 1, 1, 4, 1, 4 + 8 + 4 + 3),
             (VecFunc.ADD, 0, 0, 2, 1, 2 + 8 + 3), (VecFunc.SILU, 1, 0, 1, 1, 1 + 8 + 3),
             (VecFunc.RES, 0, 0, 3, 1, 6 + 8 + 3 + 3)]
    insts = [vec(func=f, fmt=fmt, direct=d, rows=r, bias=b, res_addr=40 if f == VecFunc.ADD else 8)
             for f, fmt, d, r, b, _ in cases]
    got, busy = durations(F16, insts)
    assert got == [c[-1] for c in cases]
    assert busy[2] == sum(got)
    assert [vec_cycles(F16, r, f, d, b).busy for f, _, d, r, b, _ in cases] == got
    assert all(vec_cycles(F16, r, f, d, b).tail == 0 for f, _, d, r, b, _ in cases)
    assert vec_cycles(F16, 4) == (4 + 4 + VEC_FILL_CYCLES, 0)  # REQUANT, transposed by default


def test_vnorm_cycles():
    # SUM, SQ: rows + 3; NORM: rows + 2 cols + 3 (+ rows with to_acc)
    insts = [vnorm(func=NormFunc.SUM, rows=3), vnorm(func=NormFunc.SQ, rows=4, rms=1),
             vnorm(func=NormFunc.NORM, rows=3), vnorm(func=NormFunc.NORM, rows=2, to_acc=1),
             vnorm(func=NormFunc.NORM, rows=4, fmt=1)]
    got, busy = durations(F16, insts)
    assert got == [6, 7, 3 + 8 + 3, 2 + 8 + 2 + 3, 4 + 8 + 3]
    assert busy[2] == sum(got)
    assert [vnorm_cycles(F16, i) for i in insts] == [(d, 0) for d in got]


def test_gemm_wsrc_cycles():
    # busy 2 * groups * group (the high, then the low nibbles); the tail is the array's latency
    # (cols + 4 = 8) plus rows: the first starts at 1, ends at 128, completes at 128 + 8 + 4 = 140
    insts = [Instruction(Opcode.GEMM, groups=2, wsrc=1, wgt_addr=64, signal=VEC),
             Instruction(Opcode.GEMM, groups=1, acc_addr=4), vec(wait=GEMM)]
    r = simulate(CFG, insts + [HALT])
    assert r.error == ErrorCode.OK
    assert (r.start[0], r.end[0], r.complete[0]) == (1, 128, 140)
    assert (r.start[1], r.end[1]) == (129, 160)  # the drain overlaps the next GEMM's beats
    assert r.start[2] == 141 and r.busy[1] == 128 + 32
    assert gemm_cycles(CFG, 2, True) == (128, 12) and gemm_cycles(CFG, 2) == (64, 12)
