"""VSOFT on the tile RTL (hw/tile.py, hw/softmax.py) on Verilator against the golden executor:
hand-written softmax programs on the ``tiny`` preset (4x4: ACC words of 4 scores, ACT words of 4
probabilities), all in one simulator process and one build. After every program every scratchpad
word, the DRAM words the STOREs wrote and every status register (cycles, busy per unit,
dispatched, error, error_pc) equal the golden model's."""

import numpy as np

from mixpim.models.config import preset
from mixpim.models.executor import pack_acc
from mixpim.models.isa import ErrorCode, Instruction, Opcode, SoftFunc, Spad, UnitMask, VecFunc
from mixpim.models.program import Segment
from mixpim.models.softmax import exp_step
from mixpim.models.vector import fixed_multiplier, pack_vparam
from mixpim.sim.tile_cosim import run_programs

CFG = preset("tiny")
BASE = CFG.vparam_param_base  # first column multiplier word (68)
DMA, VEC = UnitMask.DMA, UnitMask.VEC
HALT = Instruction(Opcode.HALT)


def vsoft(func, **kw):
    return Instruction(Opcode.VSOFT, func=func, **kw)


def softmax_row(n, chunk, *, acc_addr=0, kparam=BASE, vparam=None, act_addr=0, **tokens):
    """MAX, EXP and NORM over ``n`` scores from ACC word ``acc_addr``, ``chunk`` ACC words per
    VSOFT (``chunk * cols`` a multiple of ``rows``, so the NORMs fill consecutive ACT words);
    ``tokens``: wait/signal masks of the first / last instruction."""
    vparam = kparam + n if vparam is None else vparam
    words = -(-n // CFG.cols)
    prog = []
    for func in SoftFunc:
        for w0 in range(0, words, chunk):
            w, t0 = min(chunk, words - w0), w0 * CFG.cols
            prog.append(vsoft(func, acc_addr=acc_addr + w0, words=w,
                              count=min(w * CFG.cols, n - t0), kparam=kparam + t0,
                              vparam=vparam + t0, act_addr=act_addr + t0 // CFG.rows,
                              first=int(w0 == 0)))
    if "wait" in tokens:
        prog[0] = prog[0].replace(wait=tokens["wait"])
    if "signal" in tokens:
        prog[-1] = prog[-1].replace(signal=tokens["signal"])
    return prog


def row_data(rng, n, spread):
    """Scores (scale 0.01) of a row and the VPARAM words of their multipliers: per-token K
    scales near 1 around the score multiplier, V scales in 0.5..1."""
    scores = np.round(rng.normal(0, spread, n) / 0.01).astype(np.int64)
    km = [fixed_multiplier(0.01 / exp_step() * rng.uniform(0.8, 1.2)) for _ in range(n)]
    vm = [fixed_multiplier(2.0 ** -15 * rng.uniform(0.5, 1.0)) for _ in range(n)]
    vparam = pack_vparam([m for m, _ in km + vm], [s for _, s in km + vm])
    return scores, vparam


def acc_segment(values, word=0):
    words = -(-len(values) // CFG.cols)
    acc = np.zeros((words, CFG.cols), np.int64)
    acc.reshape(-1)[:len(values)] = values
    return Segment("ACC", word, pack_acc(CFG, acc), CFG.acc_word_bytes)


def programs():
    rng = np.random.default_rng(5)
    progs = []

    # 1. one row of 29 scores, 2 ACC words per VSOFT (8 values: 2 ACT words), STOREd to DRAM
    scores, vp = row_data(rng, 29, 2.0)
    words = -(-29 // CFG.rows)
    store = Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=0, dram_addr=0, words=words,
                        rows=1, stride=0, wait=VEC)
    progs.append((softmax_row(29, 2, signal=DMA) + [store, HALT],
                  [acc_segment(scores), Segment("VPARAM", BASE, vp, 4)]))

    # 2. the multipliers LOADed from DRAM first (VSOFT waits for them); two rows, 4 words per
    # VSOFT and 1 word per VSOFT, one of them a single value; a VEC between the rows' passes
    s1, vp1 = row_data(rng, 16, 0.5)
    s2, vp2 = row_data(rng, 5, 8.0)
    s3, vp3 = row_data(rng, 1, 1.0)
    vps = vp1 + vp2 + vp3
    load = Instruction(Opcode.LOAD, spad=Spad.VPARAM, spad_addr=BASE, dram_addr=0,
                       words=len(vps) // 4, rows=1, stride=0, signal=VEC)
    vec = Instruction(Opcode.VEC, func=VecFunc.RELU, rows=CFG.rows, acc_addr=20, act_addr=40,
                      res_addr=40, param_addr=BASE)
    r1 = softmax_row(16, 4, acc_addr=0, kparam=BASE, act_addr=0, wait=DMA)
    r2 = softmax_row(5, 1, acc_addr=4, kparam=BASE + 32, act_addr=8)
    r3 = softmax_row(1, 1, acc_addr=6, kparam=BASE + 42, act_addr=12)
    prog = [load] + r1[:3] + r2[:2] + [vec] + r1[3:] + r2[2:] + r3 + [HALT]
    segs = [acc_segment(s1), acc_segment(s2, 4), acc_segment(s3, 6),
            acc_segment(rng.integers(-3000, 3000, 4 * CFG.cols), 20),
            Segment("dram", 0, vps)]
    progs.append((prog, segs))

    # 3. a run that starts with NORM and EXP without first: the registers start from 0 (the tile
    # resets the unit at the start of every run; the programs before left them non-zero)
    s4, vp4 = row_data(rng, 12, 1.0)
    prog = [vsoft(SoftFunc.NORM, words=3, count=12, kparam=BASE, vparam=BASE + 12, act_addr=0),
            vsoft(SoftFunc.EXP, words=3, count=12, kparam=BASE),
            vsoft(SoftFunc.NORM, words=3, count=12, kparam=BASE, vparam=BASE + 12, act_addr=3),
            vsoft(SoftFunc.MAX, words=2, count=7, kparam=BASE),
            vsoft(SoftFunc.EXP, words=3, count=11, kparam=BASE),
            vsoft(SoftFunc.NORM, words=3, count=9, kparam=BASE, vparam=BASE + 12, act_addr=6),
            HALT]
    progs.append((prog, [acc_segment(s4), Segment("VPARAM", BASE, vp4, 4)]))

    # 4. dispatch checks of VSOFT (words > rows, count > words * cols, the VPARAM region) after
    # a VSOFT that is still executing
    ok = vsoft(SoftFunc.NORM, words=4, count=16, kparam=BASE, vparam=BASE)
    for bad, code in [(vsoft(SoftFunc.MAX, words=CFG.rows + 1, count=1, kparam=BASE),
                       ErrorCode.BAD_FIELD),
                      (vsoft(SoftFunc.EXP, words=2, count=9, kparam=BASE), ErrorCode.BAD_FIELD),
                      (vsoft(SoftFunc.NORM, words=1, count=4, kparam=BASE, vparam=BASE - 1),
                       ErrorCode.SPAD_RANGE)]:
        progs.append(([ok, bad, HALT], [acc_segment(s4), Segment("VPARAM", BASE, vp4, 4)]))
    return progs


def test_softmax_programs():
    progs = programs()
    runs = run_programs(CFG, progs)
    bad = [f"program {i}:\n{r.report()}" for i, r in enumerate(runs) if not r.ok]
    assert not bad, "RTL differs from golden:\n" + "\n".join(bad)[:4000]
    assert [r.golden.status.error for r in runs] == [ErrorCode.OK] * 3 + [
        ErrorCode.BAD_FIELD, ErrorCode.BAD_FIELD, ErrorCode.SPAD_RANGE]
    assert all(r.rtl_status["busy"][2] > 0 for r in runs)
    # the row of program 1 is a softmax: 127 * p * s_v (V scales 0.5 .. 1): about 95 in all
    p = np.frombuffer(runs[0].golden.outputs[0].data, np.int8)[:29]
    assert 70 < p.sum() < 127 and p.max() > 20
