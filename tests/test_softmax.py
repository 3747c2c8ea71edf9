"""The vector unit's integer softmax (VSOFT, models/softmax.py, docs/numerics.md "Softmax"):
against plain loops written from the contract, its accuracy against float softmax, its cycles and
its dispatch checks."""

import math

import numpy as np
import pytest

from mixpim.models.config import preset
from mixpim.models.executor import pack_acc, run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, ProbFormat, SoftFunc
from mixpim.models.program import Segment
from mixpim.models.softmax import EXP_TABLE, exp_step
from mixpim.models.tile_timing import check_instruction, simulate
from mixpim.models.vector import fixed_multiplier, pack_vparam

CFG = preset("tiny")  # 4x4 array: ACC words of 4 values, ACT words of 4 lanes; VPARAM 128 words
FP16 = CFG.replace(pe="mixpe-w4a16")  # the same geometry with FP16 activations
BASE = CFG.vparam_param_base  # 68


def rs(x, s):
    return (x + (1 << (s - 1)) >> s) if s else x


def reference(values, kmult, kshift, vmult, vshift):
    """Softmax of one row exactly as docs/numerics.md states it, one value at a time."""
    v = [max(min(rs(x * m, s), (1 << 31) - 1), -(1 << 31)) for x, m, s in zip(values, kmult, kshift)]
    rmax = max(v)

    def e(x):
        d = min(max(rmax - x, 0), 511)
        return EXP_TABLE[d % 32] >> (d // 32)
    rsum = sum(e(x) for x in v)
    r = (127 << 24) // rsum
    return [max(min(rs(rs(e(x) * r, 9) * m, s), 127), -128) for x, m, s in zip(v, vmult, vshift)]


def softmax_program(cfg, n, chunk_words, *, first_word=0, act_addr=0):
    """MAX, EXP and NORM passes over ``n`` values in ACC from ``first_word``, ``chunk_words``
    ACC words per VSOFT; K multipliers at VPARAM BASE.., V multipliers after them."""
    words = -(-n // cfg.cols)
    prog = []
    for func in SoftFunc:
        for w0 in range(0, words, chunk_words):
            w = min(chunk_words, words - w0)
            t0 = w0 * cfg.cols
            prog.append(Instruction(Opcode.VSOFT, func=func, acc_addr=first_word + w0, words=w,
                                    count=min(w * cfg.cols, n - t0), kparam=BASE + t0,
                                    vparam=BASE + n + t0, act_addr=act_addr + t0 // cfg.rows,
                                    first=int(w0 == 0)))
    return prog + [Instruction(Opcode.HALT)]


def run_softmax(scores, kmult, kshift, vmult, vshift, chunk_words=CFG.rows):
    cfg = CFG
    n = len(scores)
    words = -(-n // cfg.cols)
    acc = np.zeros((words, cfg.cols), np.int64)
    acc.reshape(-1)[:n] = scores
    vp = pack_vparam(np.concatenate([kmult, vmult]), np.concatenate([kshift, vshift]))
    segs = [Segment("ACC", 0, pack_acc(cfg, acc), cfg.acc_word_bytes), Segment("VPARAM", BASE, vp, 4)]
    r = run(cfg, softmax_program(cfg, n, chunk_words), segs)
    assert r.status.error == ErrorCode.OK
    return r.spads["ACT"].view(np.int8).reshape(-1)[:n].tolist(), r


@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 1), (16, 4), (29, 2)])
def test_vsoft_equals_the_contract(n, chunk):
    rng = np.random.default_rng(n)
    scores = rng.integers(-40000, 40000, n)
    kmult, kshift = rng.integers(1, 1 << 15, n), rng.integers(8, 20, n)
    vmult, vshift = rng.integers(1 << 13, 1 << 15, n), rng.integers(28, 31, n)
    got, r = run_softmax(scores, kmult, kshift, vmult, vshift, chunk)
    assert got == reference(scores.tolist(), kmult.tolist(), kshift.tolist(), vmult.tolist(),
                            vshift.tolist())
    # packed: the lanes after the last value of its ACT word are 0
    words = -(-n // CFG.rows)
    assert r.spads["ACT"].view(np.int8).reshape(-1)[n:words * CFG.rows].tolist() == [0] * (words * CFG.rows - n)


def test_vsoft_accuracy_against_float_softmax():
    # scores of unit 0.01, one multiplier mapping them to exponent steps; no V scale (p = 127 e / sum)
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 30))
        real = rng.normal(0, 1 + trial % 4, n)
        scores = np.round(real / 0.01).astype(np.int64)
        m, s = fixed_multiplier(0.01 / exp_step())
        vm, vs = fixed_multiplier(2.0 ** -15)
        got, _ = run_softmax(scores, [m] * n, [s] * n, [vm] * n, [vs] * n)
        ref = np.exp(real - real.max())
        ref /= ref.sum()
        p = np.array(got, float) / 127
        assert abs(p.sum() - 1) < 0.05
        assert np.dot(p, ref) / np.linalg.norm(p) / np.linalg.norm(ref) > 0.995


def test_exp_table():
    assert EXP_TABLE[0] == 1 << 15 and len(EXP_TABLE) == 32
    assert all(abs(EXP_TABLE[k] - 2 ** 15 * 2 ** (-k / 32)) <= 0.5 for k in range(32))
    assert math.isclose(exp_step(), math.log(2) / 32)


def test_vsoft_cycles():
    # MAX over 3 words: D = 3 + 3 = 6. NORM over 3 words and 10 values: 32 (division) + 3 + 3
    # + ceil(10 / 4) = 3 ACT words -> 41
    mx = Instruction(Opcode.VSOFT, func=SoftFunc.MAX, words=3, count=10, kparam=BASE, first=1)
    nm = Instruction(Opcode.VSOFT, func=SoftFunc.NORM, words=3, count=10, kparam=BASE, vparam=BASE)
    # by column the NORM writes one lane of words * cols = 12 ACT words (any count): 32 + 3 + 3
    # + 12 = 50, from 48; the format of the probabilities does not change the duration
    col = nm.replace(col=1, lane=2, pfmt=ProbFormat.HI)
    r = simulate(CFG, [mx, nm, col, Instruction(Opcode.HALT)])
    assert (r.start[0], r.end[0], r.start[1], r.end[1], r.start[2], r.end[2]) == (1, 6, 7, 47, 48, 97)
    assert r.busy[2] == 6 + 41 + 50


@pytest.mark.parametrize("inst, code, message", [
    (dict(words=5, count=4), ErrorCode.BAD_FIELD, "VSOFT words (5) exceeds the array's rows (4)"),
    (dict(words=2, count=9), ErrorCode.BAD_FIELD, "VSOFT count (9) exceeds words * cols (8)"),
    (dict(words=1, count=4, kparam=BASE - 1), ErrorCode.SPAD_RANGE,
     "VSOFT score VPARAM words 67..70 leave the column-parameter region 68..127"),
    (dict(words=1, count=4, kparam=BASE, vparam=126, func=SoftFunc.NORM), ErrorCode.SPAD_RANGE,
     "VSOFT V VPARAM words 126..129 leave the column-parameter region 68..127"),
    (dict(words=4, count=16, kparam=BASE, vparam=BASE, act_addr=253, func=SoftFunc.NORM),
     ErrorCode.SPAD_RANGE, "VSOFT ACT words 253..256 leave the scratchpad (256 words)"),
    (dict(words=1, count=1, acc_addr=64, kparam=BASE), ErrorCode.SPAD_RANGE,
     "VSOFT ACC words 64..64 leave the scratchpad (64 words)"),
    # by column: the lane must be one of the ACT word's rows lanes, and is 0 otherwise
    (dict(words=1, count=1, kparam=BASE, col=1, lane=4), ErrorCode.BAD_FIELD,
     "VSOFT lane (4) is not a lane of the array's 4 rows"),
    (dict(words=1, count=1, kparam=BASE, lane=1), ErrorCode.BAD_FIELD,
     "VSOFT lane must be 0 unless col is 1"),
    # the checks in order: words, count, then the lane
    (dict(words=2, count=9, kparam=BASE, col=1, lane=9), ErrorCode.BAD_FIELD,
     "VSOFT count (9) exceeds words * cols (8)"),
    # by column the ACC words are rows apart: 56, 60, 64 -> the run 56..64
    (dict(words=3, count=12, acc_addr=56, kparam=BASE, col=1, lane=3), ErrorCode.SPAD_RANGE,
     "VSOFT ACC words 56..64 leave the scratchpad (64 words)"),
    # by column NORM writes words * cols = 8 ACT words (not ceil(count / rows) = 1)
    (dict(words=2, count=3, kparam=BASE, vparam=BASE, act_addr=249, col=1, func=SoftFunc.NORM),
     ErrorCode.SPAD_RANGE, "VSOFT ACT words 249..256 leave the scratchpad (256 words)"),
])
def test_vsoft_checks(inst, code, message):
    inst = Instruction(Opcode.VSOFT, **{"func": SoftFunc.MAX, **inst})
    # VSOFT runs on INT8 and FP16 tiles alike (FP16 tiles have the same depths here)
    assert check_instruction(CFG, inst) == (code, message)
    assert check_instruction(FP16, inst) == (code, message)


def test_vsoft_is_legal_on_fp16_tiles():
    for pfmt in ProbFormat:
        for func in SoftFunc:
            inst = Instruction(Opcode.VSOFT, func=func, words=4, count=16, kparam=BASE, vparam=BASE,
                               pfmt=pfmt)
            assert check_instruction(FP16, inst) is None
            # pfmt FP16 needs FP16 activations (also for MAX and EXP, which do not write)
            want = None if pfmt != ProbFormat.FP16 else (
                ErrorCode.BAD_FIELD, "VSOFT pfmt FP16 needs FP16 activations; mixpe-w4a8 has INT8 ones")
            assert check_instruction(CFG, inst) == want


def test_vsoft_on_an_fp16_tile_writes_the_fp16_values_of_the_int8_probabilities():
    rng = np.random.default_rng(8)
    n = 13
    scores = rng.integers(-40000, 40000, n)
    kmult, kshift = rng.integers(1, 1 << 15, n), rng.integers(8, 20, n)
    vmult, vshift = rng.integers(1 << 13, 1 << 15, n), rng.integers(28, 31, n)
    want = reference(scores.tolist(), kmult.tolist(), kshift.tolist(), vmult.tolist(), vshift.tolist())
    acc = np.zeros((4, FP16.cols), np.int64)
    acc.reshape(-1)[:n] = scores
    vp = pack_vparam(np.concatenate([kmult, vmult]), np.concatenate([kshift, vshift]))
    segs = [Segment("ACC", 0, pack_acc(FP16, acc), FP16.acc_word_bytes), Segment("VPARAM", BASE, vp, 4)]
    r = run(FP16, softmax_program(FP16, n, 4), segs)
    assert r.status.error == ErrorCode.OK
    lanes = r.spads["ACT"][:4].view("<u2").reshape(-1)  # 16-bit lanes, packed as on INT8 tiles
    assert lanes[:n].view(np.float16).astype(int).tolist() == want
    assert lanes[n:].tolist() == [0] * (16 - n)
