"""Golden executor (models/executor.py): GEMM programs equal mixpe_gemm, VEC, DMA byte movement,
segments, errors, races, timing-only mode, word formats."""


import numpy as np
import pytest

from mixpim.compiler.operands import act_blocks, weight_blocks
from mixpim.models.config import TileConfig, preset
from mixpim.models.executor import (execute, pack_acc, pack_act, pack_meta, pack_wgt, run, unpack_acc,
                                    unpack_act, unpack_meta, unpack_wgt, wrap)
from mixpim.models.isa import ErrorCode, Instruction, NormFunc, Opcode, SoftFunc, Spad, UnitMask, VecFunc
from mixpim.models.mixpe import ArrayParams, mixpe_gemm
from mixpim.models.program import Program, ProgramError, Segment
from mixpim.models.quant import num_groups, quantize_weights
from mixpim.models.tile_timing import simulate
from mixpim.models.vector import (column_multipliers, gelu_lut, int8_to_fp16_bits, pack_vparam,
                                  vec_apply, vparam_header)
from helpers import exact, projection_program

DMA, GEMM, VEC, PIM = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC, UnitMask.PIM
HALT = Instruction(Opcode.HALT)
CFG = preset("tiny")  # 4x4, group 32, 256-word ACT, 256 KiB DRAM


# -- building GEMM programs by hand ------------------------------------------------------------

def blocks(cfg, act, qw):
    """K-major scratchpad words: per token block the ACT words, per feature block the WGT and
    META words (bytes), padded as the compiler pads them (K padding: code = the group's zero
    point)."""
    wgt_words, meta_words = weight_blocks(cfg, qw)
    return act_blocks(cfg, act, qw.ngroups * cfg.group), wgt_words, meta_words


def operands(cfg, m, n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, k))
    qw = quantize_weights(w, cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)
    if cfg.act_format == "int8":
        act = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    else:
        act = (rng.normal(size=(m, k)) * 4).astype(np.float16)
    return act, qw


def multi_tile_gemm_program(cfg, act, qw):
    """Every output tile: LOADs of its ACT/WGT/META blocks, the GEMM split in two along K (the
    second accumulates), STORE of the ACC tile. Returns (program, output base, tiles)."""
    m, k = act.shape
    act_w, wgt_w, meta_w = blocks(cfg, act, qw)
    g = num_groups(k, cfg.group)
    assert g >= 2
    kw = g * cfg.group
    ab, wb, mbytes, accb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes, cfg.acc_word_bytes
    a_base = 0
    w_base = 0x1000 - 0x1000 % wb
    m_base = 0x2000 - 0x2000 % mbytes
    o_base = 0x3000 - 0x3000 % accb
    segs = [Segment("dram", a_base + i * kw * ab, d) for i, d in enumerate(act_w)]
    segs += [Segment("dram", w_base + j * kw * wb, d) for j, d in enumerate(wgt_w)]
    segs += [Segment("dram", m_base + j * g * mbytes, d) for j, d in enumerate(meta_w)]
    # Tokens: META load(t) -> GEMM(t) (the DMA runs in order, so ACT and WGT are loaded too);
    # the accumulating GEMM(t) -> STORE(t). The next tile's loads follow STORE(t) in the DMA
    # queue, so they cannot overwrite words GEMM(t) still reads (WAR ordered by queue order);
    # ACC alternates between two tiles, and GEMM(t+2) waits for META(t+2), after STORE(t).
    ins = []
    tiles = [(i, j) for i in range(len(act_w)) for j in range(len(wgt_w))]
    for t, (i, j) in enumerate(tiles):
        ins.append(Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=a_base + i * kw * ab, words=kw, rows=1))
        ins.append(Instruction(Opcode.LOAD, spad=Spad.WGT, dram_addr=w_base + j * kw * wb, words=kw, rows=1))
        ins.append(Instruction(Opcode.LOAD, spad=Spad.META, dram_addr=m_base + j * g * mbytes, words=g,
                               rows=1, signal=GEMM))
        acc = (t % 2) * cfg.rows
        split = g - 1
        ins.append(Instruction(Opcode.GEMM, acc_addr=acc, groups=split, wait=DMA))
        ins.append(Instruction(Opcode.GEMM, act_addr=split * cfg.group, wgt_addr=split * cfg.group,
                               meta_addr=split, acc_addr=acc, groups=g - split, accumulate=1,
                               signal=DMA))
        ins.append(Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=acc,
                               dram_addr=o_base + t * cfg.rows * accb, words=cfg.rows, rows=1, wait=GEMM))
    ins.append(HALT)
    return Program(cfg, ins, segs), o_base, tiles


def expected_tiles(cfg, act, qw, tiles):
    full = mixpe_gemm(ArrayParams.from_config(cfg), act, qw).acc
    m, n = full.shape
    r, c = cfg.rows, cfg.cols
    pad = np.zeros((-(-m // r) * r, -(-n // c) * c), dtype=full.dtype)
    pad[:m, :n] = full
    return [pad[i * r:(i + 1) * r, j * c:(j + 1) * c] for i, j in tiles]


@pytest.mark.parametrize("cfg", [
    preset("tiny"),
    TileConfig(rows=3, cols=5, pe="baseline-w4a8", group=64, act_words=256, wgt_words=256),
    TileConfig(rows=2, cols=3, pe="mixpe-w4a16", group=32, wbits=3, scale_bits=12),
], ids=["mixpe-a8-4x4", "baseline-a8-3x5-g64", "mixpe-a16-2x3"])
def test_multi_tile_gemm_equals_mixpe_gemm(cfg):
    m, n, k = 6, 7, 2 * cfg.group + 6  # ragged in every dimension: 3 groups, padded tiles
    act, qw = operands(cfg, m, n, k, seed=cfg.rows)
    prog, o_base, tiles = multi_tile_gemm_program(cfg, act, qw)
    res = execute(prog)
    assert res.ok, res.timing.message
    assert res.races == ()
    accb = cfg.acc_word_bytes
    for t, want in enumerate(expected_tiles(cfg, act, qw, tiles)):
        got = unpack_acc(cfg, res.read(o_base + t * cfg.rows * accb, cfg.rows * accb))
        assert got.tolist() == want.tolist(), f"tile {tiles[t]}"
    # the outputs are exactly the STOREd ranges
    assert [(s.base, s.size) for s in res.outputs] == [(o_base, len(tiles) * cfg.rows * accb)]
    assert res.status.cycles == res.timing.cycles and res.status.busy == res.timing.busy
    assert res.status.dispatched == len(prog.instructions)
    # the program file round trip runs the same
    again = execute(Program.from_bytes(prog.to_bytes()))
    assert np.array_equal(again.dram, res.dram) and again.status == res.status


def test_projection_with_requantization_end_to_end():
    # the pipelined, double-buffered program of the timing tests, with data: every output tile
    # equals mixpe_gemm followed by vec_apply, no access is unordered, and the int8 outputs
    # approximate the float product
    cfg = preset("tiny")
    m, n, k = 7, 12, 70
    prog, lay = projection_program(cfg, m, n, k, params_per_block=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(m, k))
    in_scale = float(np.abs(x).max() / 127)
    act = np.clip(np.rint(x / in_scale), -127, 127).astype(np.int8)
    w = rng.normal(size=(n, k)) / np.sqrt(k)
    qw = quantize_weights(w, 4, cfg.group)
    ref = (act.astype(np.float64) * in_scale) @ qw.dequantize().T
    out_scale = float(np.abs(ref).max() / 127)
    mult, shift = column_multipliers(qw.scales.exp, in_scale, out_scale)
    nb = lay["nb"]
    mp = np.zeros(nb * cfg.cols, np.int64)
    sp = np.zeros(nb * cfg.cols, np.int64)
    mp[:n], sp[:n] = mult, shift
    act_w, wgt_w, meta_w = blocks(cfg, act, qw)
    segs = [Segment("dram", lay["act"] + i * len(d), d) for i, d in enumerate(act_w)]
    segs += [Segment("dram", lay["wgt"] + j * len(d), d) for j, d in enumerate(wgt_w)]
    segs += [Segment("dram", lay["meta"] + j * len(d), d) for j, d in enumerate(meta_w)]
    segs += [Segment("VPARAM", 0, vparam_header(cfg) + pack_vparam(mp, sp), 4)]
    res = execute(Program(cfg, prog, segs))
    assert res.ok, res.timing.message
    assert res.races == ()
    full = mixpe_gemm(ArrayParams.from_config(cfg), act, qw).acc
    out = np.zeros((lay["mb"] * cfg.rows, nb * cfg.cols), np.int64)
    for t in range(lay["mb"] * nb):
        i, j = divmod(t, nb)
        words = unpack_act(cfg, res.read(lay["out"] + t * cfg.cols * cfg.act_word_bytes,
                                         cfg.cols * cfg.act_word_bytes))  # (cols, lanes)
        rows = min(cfg.rows, m - i * cfg.rows)
        acc = full[i * cfg.rows:i * cfg.rows + rows, j * cfg.cols:(j + 1) * cfg.cols]
        want = np.zeros((cfg.rows, cfg.cols), np.int64)
        cols = acc.shape[1]
        sl = slice(j * cfg.cols, j * cfg.cols + cols)
        want[:rows, :cols] = vec_apply(VecFunc.REQUANT, acc, mp[sl], sp[sl], np.ones(rows, np.int64),
                                       np.zeros(rows, np.int64))
        assert words.T.tolist() == want.tolist(), f"tile {t}"
        out[i * cfg.rows:(i + 1) * cfg.rows, j * cfg.cols:(j + 1) * cfg.cols] = words.T
    err = np.abs(out[:m, :n] * out_scale - ref)
    assert err.max() <= out_scale * 1.01  # rounding of the int8 output (plus the 16-bit multiplier)


# -- DMA ---------------------------------------------------------------------------------------

def test_load_and_store_strided_rows():
    cfg = CFG
    dram = bytes(range(256))
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACT, spad_addr=10, dram_addr=16, words=2, rows=3,
                       stride=40, signal=0),
           Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=10, dram_addr=1024, words=3, rows=2,
                       stride=16),
           HALT]
    res = execute(Program(cfg, ins, [Segment("dram", 0, dram)]))
    assert res.ok
    act = res.spads["ACT"]
    # rows of 8 bytes from 16, 56, 96 -> words 10..15
    assert act[10:16].reshape(-1).tolist() == list(range(16, 24)) + list(range(56, 64)) + list(range(96, 104))
    # words 10..15 (24 bytes) back as two 12-byte rows at 1024 and 1040
    got = res.read(1024, 32)
    assert list(got[:12]) == act[10:13].reshape(-1).tolist()
    assert list(got[16:28]) == act[13:16].reshape(-1).tolist()
    assert got[12:16] == bytes(4)
    assert [(s.base, s.size) for s in res.outputs] == [(1024, 12), (1040, 12)]


def test_store_rows_overlapping_in_dram_are_written_in_order():
    cfg = CFG
    act = np.arange(8 * 4).reshape(8, 4).astype(np.int8)
    ins = [Instruction(Opcode.STORE, spad=Spad.ACT, dram_addr=64, words=2, rows=4, stride=4), HALT]
    res = execute(Program(cfg, ins, [Segment("ACT", 0, pack_act(cfg, act), 4)]))
    # row r (words 2r, 2r+1) at 64 + 4r: each row overwrites the second word of the one before
    got = np.frombuffer(res.read(64, 20), np.int8).reshape(5, 4)
    assert got.tolist() == act[[0, 2, 4, 6, 7]].tolist()
    # stride 0: the last row wins
    ins = [Instruction(Opcode.STORE, spad=Spad.ACT, dram_addr=64, words=1, rows=3, stride=0), HALT]
    res = execute(Program(cfg, ins, [Segment("ACT", 0, pack_act(cfg, act), 4)]))
    assert list(np.frombuffer(res.read(64, 4), np.int8)) == act[2].tolist()
    assert [(s.base, s.size) for s in res.outputs] == [(64, 4)]


def test_store_acc_sign_extends_to_whole_bytes():
    cfg = CFG  # acc_bits 45 -> 6 bytes per accumulator
    assert (cfg.acc_bits, cfg.acc_elem_bytes) == (45, 6)
    acc = np.array([[-1, 1, -(1 << 44), (1 << 44) - 1]])
    ins = [Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=5, dram_addr=48, words=1, rows=1), HALT]
    res = execute(Program(cfg, ins, [Segment("ACC", 5, pack_acc(cfg, acc), 24)]))
    raw = res.read(48, 24)
    assert raw[:6] == b"\xff" * 6 and raw[6:12] == b"\x01" + bytes(5)
    assert raw[12:18] == bytes(5) + b"\xf0" and raw[18:24] == b"\xff" * 5 + b"\x0f"
    assert unpack_acc(cfg, raw).tolist() == acc.tolist()


# -- VEC ---------------------------------------------------------------------------------------

def vec_program(cfg, func, acc, mult, shift, *, rows, tmult=None, tshift=None, lut=None, residual=None):
    """A VEC of ``rows`` tokens from ACC words 2.. to ACT words 20.., params at the region's start,
    residual (ADD) at ACT 40.."""
    segs = [Segment("ACC", 2, pack_acc(cfg, acc), cfg.acc_word_bytes),
            Segment("VPARAM", 0, vparam_header(cfg, lut=lut, tmult=tmult, tshift=tshift)
                    + pack_vparam(mult, shift), 4)]
    if residual is not None:
        segs.append(Segment("ACT", 40, pack_act(cfg, residual), cfg.act_word_bytes))
    ins = [Instruction(Opcode.VEC, func=func, acc_addr=2, act_addr=20, res_addr=40,
                       param_addr=cfg.vparam_param_base, rows=rows), HALT]
    return Program(cfg, ins, segs)


def test_vec_each_function_through_the_executor():
    cfg = CFG
    rng = np.random.default_rng(5)
    acc = rng.integers(-(1 << 20), 1 << 20, size=(4, 4))
    mult = np.array([1000, -2000, 3, 32767])
    shift = np.array([14, 16, 0, 30])
    tmult = np.array([1, 3, 16384, -5])
    tshift = np.array([0, 1, 14, 2])
    lut = gelu_lut(0.05, 0.05)
    residual_words = rng.integers(-128, 128, size=(4, 4)).astype(np.int8)  # (cols, lanes)
    # the functions with INT8 outputs (fmt 0) are vec_apply's; the whole-model ones (FP16 outputs,
    # RoPE, the residual add into ACC) are tests/test_vec_exec.py's
    int8_funcs = (VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD)
    for func in int8_funcs:
        for rows in (4, 2):
            prog = vec_program(cfg, func, acc, mult, shift, rows=rows, tmult=tmult, tshift=tshift,
                               lut=lut, residual=residual_words)
            res = execute(prog)
            assert res.ok
            got = res.act()[20:24]  # (cols, lanes)
            want = vec_apply(func, acc[:rows], mult, shift, tmult[:rows], tshift[:rows], lut=lut,
                             residual=residual_words[:, :rows].T)
            assert got[:, :rows].T.tolist() == want.tolist()
            assert (got[:, rows:] == 0).all()  # lanes beyond rows are written as 0
    # one element by hand: REQUANT, token 1, column 0: acc * 1000 >> 14 (rounded), * 3 >> 1
    v1 = (int(acc[1, 0]) * 1000 + (1 << 13)) >> 14
    v = (v1 * 3 + 1) >> 1
    got = execute(vec_program(cfg, VecFunc.REQUANT, acc, mult, shift, rows=4, tmult=tmult,
                              tshift=tshift)).act()[20, 1]
    assert got == max(-128, min(127, v))
    # on an INT8 tile SILU and GLU (FP16 outputs) and RoPE (FP16 tiles) are faults; RES writes
    # ACC, not ACT
    for func in set(VecFunc) - set(int8_funcs):
        res = execute(vec_program(cfg, func, acc, mult, shift, rows=4, tmult=tmult, tshift=tshift))
        if func == VecFunc.RES:
            assert res.ok and (res.act()[20:24] == 0).all()
        else:
            assert (res.status.error, res.status.error_pc) == (ErrorCode.BAD_FIELD, 0)


def test_vec_in_an_fp16_configuration():
    # results are written as the FP16 values of the int8 results; the residual is read as FP16,
    # rounded half up and saturated
    cfg = TileConfig(rows=2, cols=3, pe="mixpe-w4a16")
    acc = np.array([[1 << 70, -(1 << 70), 12345], [7, -7, 0]], dtype=object)  # wider than int64
    mult, shift = np.array([3, 5, 7]), np.array([63, 63, 1])
    res_f = np.array([[1.5, -2.5], [100.0, 300.0], [-0.5, 0.25]], np.float16)  # (cols, lanes)
    prog = vec_program(cfg, VecFunc.ADD, acc, mult, shift, rows=2, residual=res_f)
    r = execute(prog)
    assert r.ok
    got = r.act()[20:23]  # FP16 bit patterns (cols, lanes)
    # v1 = round_shift(acc * mult, shift); residual: 1.5 -> 2, -2.5 -> -2, 100, 300 -> 127 (sat),
    # -0.5 -> 0, 0.25 -> 0
    v1 = [[(3 << 70) + (1 << 62) >> 63, (-(5 << 70) + (1 << 62)) >> 63, (12345 * 7 + 1) >> 1],
          [(21 + (1 << 62)) >> 63, (-35 + (1 << 62)) >> 63, 0]]
    resid = [[2, 100, 0], [-2, 127, 0]]
    want = np.clip(np.array(v1) + np.array(resid), -128, 127)
    assert got.T.tolist() == int8_to_fp16_bits(want).tolist()


# -- GEMM details ------------------------------------------------------------------------------

def gemm_only_program(cfg, a_words, w_words, m_words, gemms):
    segs = [Segment("ACT", 0, a_words, cfg.act_word_bytes), Segment("WGT", 0, w_words, cfg.wgt_word_bytes),
            Segment("META", 0, m_words, cfg.meta_word_bytes)]
    return Program(cfg, gemms + [HALT], segs)


def test_accumulator_wraps_at_acc_bits():
    cfg = TileConfig(acc_headroom=1)  # acc_bits = 33 + 1 = 34
    assert cfg.acc_bits == 34
    g = 4
    k = g * cfg.group
    a = pack_act(cfg, np.full((k, 4), -128))
    w = pack_wgt(cfg, np.full((k, 4), 15))
    meta = pack_meta(cfg, np.zeros((g, 4), np.int64), np.full((g, 4), 65535))
    gemms = [Instruction(Opcode.GEMM, groups=g),
             Instruction(Opcode.GEMM, groups=g, accumulate=1, acc_addr=0)]
    res = execute(gemm_only_program(cfg, a, w, meta, gemms))
    one = g * 32 * -128 * 15 * 65535  # exact value of one GEMM: beyond 34 bits
    assert one < -(1 << 33)
    assert res.spads["ACC"][0].tolist() == [wrap(np.array([2 * one]), 34)[0]] * 4
    assert res.spads["ACC"][0, 0] == ((2 * one + (1 << 33)) % (1 << 34)) - (1 << 33)


def test_stored_fields_wider_than_the_array_take_the_low_bits():
    # wbits 2: a stored nibble 0b1110 is code 0b10; scale mantissa 0x1_0005 does not fit 16 bits
    # of the file? (uint16 field) - use scale_bits 4: 0x35 -> 0x5; zero point 0x0E -> 0b10
    cfg = TileConfig(wbits=2, scale_bits=4)
    k = cfg.group
    act = np.ones((k, 4), np.int64)
    codes = np.full((k, 4), 0b1110)
    meta = pack_meta(cfg, np.full((1, 4), 0x0D), np.full((1, 4), 0x35))  # zero 0b01, scale 5
    res = execute(gemm_only_program(cfg, pack_act(cfg, act), pack_wgt(cfg, codes), meta,
                                    [Instruction(Opcode.GEMM, groups=1)]))
    # per output: sum over 32 beats of 1 * (2 - 1) = 32, times scale 5 = 160
    assert res.spads["ACC"][0].tolist() == [160] * 4


def test_nonfinite_fp16_flag():
    cfg = TileConfig(rows=2, cols=2, pe="mixpe-w4a16")
    k = cfg.group
    act = np.ones((k, 2), np.float16)
    act[3, 1] = np.inf
    meta = pack_meta(cfg, np.zeros((1, 2), np.int64), np.ones((1, 2), np.int64))
    prog = gemm_only_program(cfg, pack_act(cfg, act), pack_wgt(cfg, np.ones((k, 2), np.int64)), meta,
                             [Instruction(Opcode.GEMM, groups=1)])
    res = execute(prog)
    assert res.status.nonfinite
    # token 1 saw inf -> taken as 0: 31 ones; 1.0 = 1024 << 14 in units of 2**-24
    assert res.spads["ACC"][:2].tolist() == [[32 << 24] * 2, [31 << 24] * 2]
    act[3, 1] = 1
    prog = gemm_only_program(cfg, pack_act(cfg, act), pack_wgt(cfg, np.ones((k, 2), np.int64)), meta,
                             [Instruction(Opcode.GEMM, groups=1)])
    assert not execute(prog).status.nonfinite


# -- runs that end in an error -----------------------------------------------------------------

def test_only_started_instructions_take_effect():
    cfg = CFG
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=0, words=1, rows=1),
           Instruction(Opcode.LOAD, spad=Spad.ACT, spad_addr=1, dram_addr=4, words=1, rows=1),
           Instruction(Opcode.GEMM, groups=100),  # SPAD_RANGE when examined in cycle 2
           HALT]
    res = execute(Program(cfg, ins, [Segment("dram", 0, bytes(range(1, 9)))]))
    assert (res.status.error, res.status.error_pc) == (ErrorCode.SPAD_RANGE, 2)
    assert res.spads["ACT"][0].tolist() == [1, 2, 3, 4]  # LOAD 0 started at 1 and finished
    assert res.spads["ACT"][1].tolist() == [0, 0, 0, 0]  # LOAD 1 was queued: dropped


def test_raw_words_run_and_every_code_reaches_the_status():
    cfg = CFG
    cases = {
        ErrorCode.ILLEGAL_OPCODE: [0xFF],
        ErrorCode.BAD_FIELD: [Instruction(Opcode.VEC, rows=5, param_addr=cfg.vparam_param_base)],
        ErrorCode.SPAD_RANGE: [Instruction(Opcode.GEMM, groups=9)],
        ErrorCode.DRAM_RANGE: [Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=1, words=1, rows=1)],
        ErrorCode.TOKEN_OVERFLOW: [Instruction(Opcode.LOAD, spad=Spad.ACT, words=1, rows=1, signal=VEC)] * 8,
        ErrorCode.DEADLOCK: [Instruction(Opcode.GEMM, groups=1, wait=PIM)],
    }
    for code, ins in cases.items():
        res = run(cfg, ins + [HALT])
        assert res.status.error == code
    assert run(cfg, [Instruction(Opcode.NOP)]).status.error == ErrorCode.NO_HALT
    assert run(cfg, [HALT]).status.error == ErrorCode.OK


def test_raw_words_of_legal_instructions_take_effect():
    """``run`` documents raw 128-bit words: legal ones execute exactly like their Instructions."""
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=0, words=2, rows=1),
           Instruction(Opcode.STORE, spad=Spad.ACT, dram_addr=64, words=2, rows=1, wait=0)]
    seg = [Segment("dram", 0, bytes(range(1, 9)))]
    words = [i.encode() for i in ins] + [HALT.encode()]
    res = run(CFG, words, seg)
    ref = run(CFG, ins + [HALT], seg)
    assert res.ok and res.status == ref.status
    assert res.read(64, 8) == ref.read(64, 8) == bytes(range(1, 9))
    assert res.timing.instructions[0] == ins[0]


# -- segments ----------------------------------------------------------------------------------

def test_segments_initialise_memories():
    cfg = CFG
    segs = [Segment("dram", 100, b"\x07\x08"), Segment("WGT", 3, b"\x21\x43", 2),
            Segment("META", 1, bytes(range(12)), 12), Segment("VPARAM", 70, b"\x01\x00\x02\x00", 4)]
    res = execute(Program(cfg, [HALT], segs))
    assert res.read(99, 4) == b"\x00\x07\x08\x00"
    assert unpack_wgt(cfg, res.spads["WGT"][3]).tolist() == [[1, 2, 3, 4]]
    z, s = unpack_meta(cfg, res.spads["META"][1])
    assert z.tolist() == [[2, 5, 8, 11]] and s.tolist() == [[0x100, 0x403, 0x706, 0xA09]]
    assert res.spads["VPARAM"][70].tolist() == [1, 0, 2, 0]
    assert res.outputs == () and res.races == ()


@pytest.mark.parametrize("seg, message", [
    (Segment("ACT", 0, bytes(8), 8), "segment 0 gives ACT 8-byte words; this configuration's ACT words are 4 bytes"),
    (Segment("ACT", 255, bytes(8), 4), "segment 0 (ACT words 255..256) leaves the scratchpad (256 words)"),
    (Segment("dram", 0x3FFFF, bytes(2)), "segment 0 (dram 0x3ffff..0x40000) leaves DRAM (0x40000 bytes)"),
    (Segment("ACC", 0, b"\x00" * 5 + b"\x7f" + bytes(18), 24), "segment 0: an ACC value does not fit acc_bits (45)"),
])
def test_bad_segments(seg, message):
    with pytest.raises(ProgramError, match=exact(message)):
        execute(Program(CFG, [HALT], [seg]))


def test_execute_rejects_non_programs():
    with pytest.raises(ProgramError, match=exact("execute needs a Program, not list")):
        execute([HALT])
    with pytest.raises(ProgramError, match=exact("config must be a TileConfig, not dict")):
        run({}, [HALT])


# -- races and timing-only ---------------------------------------------------------------------

def test_races_are_reported():
    cfg = CFG
    ins = [Instruction(Opcode.LOAD, spad=Spad.ACT, words=32, rows=1),  # no token to the GEMM
           Instruction(Opcode.GEMM, groups=1),
           HALT]
    res = execute(Program(cfg, ins))
    assert [(r.first, r.second, r.space, r.address) for r in res.races] == [(0, 1, "ACT", 0)]
    # ordered by a token: no race
    ins[0] = ins[0].replace(signal=GEMM)
    ins[1] = ins[1].replace(wait=DMA)
    assert execute(Program(cfg, ins)).races == ()
    # GEMM 1..32 (completes 44), VEC 1..11, STORE pc2 (4 one-beat rows in one DRAM row:
    # 2 + 3 + 2 + 4 = 11) 1..11, STORE pc3 from 12
    ins = [Instruction(Opcode.GEMM, groups=1), Instruction(Opcode.VEC, act_addr=100, param_addr=68, rows=4),
           Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=100, dram_addr=0, words=1, rows=4, stride=8),
           Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=101, dram_addr=4, words=1, rows=4, stride=8,
                       signal=0),
           HALT]
    races = execute(Program(cfg, ins)).races
    # the VEC reads ACC rows the GEMM writes, and writes ACT words STORE pc2 reads at the same
    # time; STORE pc3 starts after the VEC has finished (ordered by timing: deterministic)
    assert {(r.first, r.second, r.space) for r in races} == {(0, 1, "ACC"), (1, 2, "ACT")}


def test_timing_only_mode_matches_the_functional_run():
    cfg = CFG
    act, qw = operands(cfg, 6, 7, 70, seed=1)
    prog, _, _ = multi_tile_gemm_program(cfg, act, qw)
    full = execute(prog)
    timing = execute(prog, timing_only=True)
    assert timing.dram is None and timing.spads is None and timing.outputs == ()
    assert timing.status == full.status
    assert simulate(cfg, prog.instructions).cycles == full.status.cycles


def test_a_timing_computed_elsewhere_is_used_only_for_its_own_program():
    """``execute(timing=)``: the cycle model needs no data, so it may run where the program was
    compiled; the result is the same run. A timing of other instructions or of another
    configuration is refused."""
    cfg = CFG
    act, qw = operands(cfg, 6, 7, 70, seed=1)
    prog, _, _ = multi_tile_gemm_program(cfg, act, qw)
    full = execute(prog)
    t = simulate(cfg, prog.instructions)
    given = execute(prog, timing=t)
    assert given.status == full.status and given.timing is t
    assert np.array_equal(given.dram, full.dram) and given.races == full.races
    words = [i.encode() for i in prog.instructions]  # raw words: the timing holds them decoded
    assert run(cfg, words, prog.segments, timing=simulate(cfg, words)).status == full.status
    other = Program(cfg, prog.instructions[1:])
    for bad in (simulate(cfg, other.instructions), simulate(cfg.replace(queue_depth=cfg.queue_depth + 1),
                                                                    prog.instructions), "cycles"):
        with pytest.raises(ProgramError, match="timing must be the TimingResult of this configuration "
                                               "and these instructions"):
            execute(prog, timing=bad)


# -- word formats ------------------------------------------------------------------------------

def test_word_format_round_trips():
    rng = np.random.default_rng(0)
    for cfg in (TileConfig(cols=5), TileConfig(rows=3, pe="mixpe-w4a16"), TileConfig(pe="baseline-w4a16")):
        codes = rng.integers(0, 16, size=(7, cfg.cols))
        assert unpack_wgt(cfg, pack_wgt(cfg, codes)).tolist() == codes.tolist()
        assert len(pack_wgt(cfg, codes)) == 7 * cfg.wgt_word_bytes
        z, s = rng.integers(0, 256, size=(3, cfg.cols)), rng.integers(0, 65536, size=(3, cfg.cols))
        assert [x.tolist() for x in unpack_meta(cfg, pack_meta(cfg, z, s))] == [z.tolist(), s.tolist()]
        lim = 1 << (cfg.acc_bits - 1)
        acc = np.array([[int(v) for v in row] for row in
                        rng.integers(-(1 << 40), 1 << 40, size=(4, cfg.cols))], dtype=object)
        acc[0, 0], acc[1, 0] = lim - 1, -lim
        assert [[int(v) for v in r] for r in unpack_acc(cfg, pack_acc(cfg, acc))] == acc.tolist()
        if cfg.act_format == "int8":
            a = rng.integers(-128, 128, size=(5, cfg.rows)).astype(np.int8)
        else:
            a = rng.normal(size=(5, cfg.rows)).astype(np.float16).view(np.uint16)
        assert unpack_act(cfg, pack_act(cfg, a)).tolist() == a.tolist()
    # little-endian nibble order: column 0 in the low nibble
    assert pack_wgt(CFG, [[1, 2, 3, 4]]) == b"\x21\x43"
    assert pack_meta(CFG, [[1, 2, 3, 4]], [[0x1234, 0, 0, 0xFFFF]]) == \
        b"\x34\x12\x01" + b"\x00\x00\x02" + b"\x00\x00\x03" + b"\xff\xff\x04"


@pytest.mark.parametrize("cfg", [preset("tiny"), TileConfig(rows=2, cols=3, pe="mixpe-w4a16", wbits=2,
                                                            acc_headroom=1, act_words=64, wgt_words=64,
                                                            meta_words=8, acc_words=8, vparam_words=80,
                                                            dram_rows=16, dram_row_bytes=64)],
                         ids=["tiny", "a16-small"])
def test_random_programs_never_raise(cfg):
    # random instructions (mostly legal, some out of range, some raw illegal words) over random
    # memory contents: every run ends with a status code, never an exception
    rng = np.random.default_rng(11)

    def n(hi):
        return int(rng.integers(0, hi))

    def mask(own):
        return n(16) & ~(1 << own) if rng.random() < 0.5 else 0

    def inst():
        k = n(9)
        if k == 0:
            spad = [Spad.ACT, Spad.WGT, Spad.META, Spad.ACC, Spad.VPARAM][n(5)]
            wb = cfg.word_bytes(spad)
            return Instruction(Opcode.LOAD, spad=spad, spad_addr=n(cfg.spad_words(spad) + 2),
                               dram_addr=n(cfg.dram_bytes // wb) * wb, words=1 + n(8), rows=1 + n(3),
                               stride=n(16) * wb, wait=mask(0), signal=mask(0))
        if k == 1:
            spad = [Spad.ACT, Spad.ACC][n(2)]
            wb = cfg.word_bytes(spad)
            return Instruction(Opcode.STORE, spad=spad, spad_addr=n(cfg.spad_words(spad)),
                               dram_addr=n(cfg.dram_bytes // wb + 1) * wb, words=1 + n(4), rows=1 + n(3),
                               stride=n(8) * wb, wait=mask(0), signal=mask(0))
        if k == 2:
            wsrc = n(2)
            return Instruction(Opcode.GEMM, act_addr=n(cfg.act_words), wgt_addr=n(cfg.wgt_words // 2),
                               meta_addr=0 if wsrc else n(cfg.meta_words), acc_addr=n(cfg.acc_words),
                               groups=1 + n(3), accumulate=n(2), wsrc=wsrc, wait=mask(1), signal=mask(1))
        if k == 3:
            func = n(len(VecFunc))
            res = n(cfg.acc_words) if func in (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI, VecFunc.RES) \
                else n(cfg.act_words)
            return Instruction(Opcode.VEC, func=func, acc_addr=n(cfg.acc_words), act_addr=n(cfg.act_words),
                               res_addr=res, param_addr=cfg.vparam_param_base + n(8),
                               rows=1 + n(cfg.rows + 1), fmt=n(2), direct=n(2), table_addr=n(cfg.act_words),
                               wait=mask(2), signal=mask(2))
        if k == 5:
            words = 1 + n(cfg.rows)
            return Instruction(Opcode.VSOFT, func=n(len(SoftFunc)), acc_addr=n(cfg.acc_words), words=words,
                               count=1 + n(words * cfg.cols), kparam=cfg.vparam_param_base + n(8),
                               vparam=cfg.vparam_param_base + n(8), act_addr=n(cfg.act_words),
                               first=n(2), pfmt=n(4), col=n(2), lane=n(cfg.rows) if n(2) else 0,
                               wait=mask(2), signal=mask(2))
        if k == 6:
            return Instruction(Opcode.VNORM, func=n(len(NormFunc)), acc_addr=n(cfg.acc_words),
                               act_addr=n(cfg.act_words), param_addr=cfg.vparam_param_base + n(8),
                               nparam=cfg.vparam_param_base + n(8), rows=1 + n(cfg.rows), qshift=n(32),
                               first=n(2), rms=n(2), fmt=n(2), to_acc=n(2), wait=mask(2), signal=mask(2))
        if k == 4:
            return int(rng.integers(0, 1 << 62)) << 66 | n(256)  # mostly illegal
        return [Instruction(Opcode.NOP), Instruction(Opcode.SYNC)][n(2)]

    seen = set()
    for _ in range(60):
        segs = [Segment("dram", 0, rng.integers(0, 256, size=cfg.dram_bytes, dtype=np.uint8).tobytes())]
        for s in ("ACT", "WGT", "META", "VPARAM"):
            segs.append(Segment(s, 0, rng.integers(0, 256, size=cfg.spad_words(s) * cfg.word_bytes(s),
                                                   dtype=np.uint8).tobytes(), cfg.word_bytes(s)))
        prog = [inst() for _ in range(n(12))] + ([HALT] if rng.random() < 0.8 else [])
        res = run(cfg, prog, segs)
        seen.add(res.status.error)
        assert res.status.cycles >= 1
    assert len(seen) >= 3
