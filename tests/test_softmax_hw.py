"""The vector unit's softmax datapath (hw/softmax.py, through hw/vector.VectorUnit) in the Amaranth
simulator, against the golden model: VSOFT sequences (whole rows split over several instructions,
counts that are not multiples of ``cols``, random passes from the reset state, VECs in between) on
one unit wired to ACC / ACT / VPARAM memories. After every instruction ``rmax`` / ``rsum`` equal
:func:`mixpim.models.softmax.soft_apply`'s; the final ACT words equal
:func:`mixpim.models.executor.run`'s; the cycles ``busy`` is high equal the executor's timing and
:func:`mixpim.models.tile_timing.vsoft_cycles`."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal

from mixpim.hw.softmax import soft_layout
from mixpim.hw.vector import vec_layout
from mixpim.models.config import VPARAM_LUT_WORDS, preset
from mixpim.models.executor import pack_acc, unpack_acc, unpack_vparam
from mixpim.models.isa import Instruction, Opcode, SoftFunc, Spad
from mixpim.models.program import Segment
from mixpim.models.softmax import SoftState, soft_apply
from mixpim.models.tile_timing import check_instruction, vec_cycles, vsoft_cycles
from helpers import drive_unit, golden_run, run
from test_vector_hw import Top, images, random_vec

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,                                 # 4 x 4
    "rows2-cols3": TINY.replace(rows=2, cols=3),  # ACT words shorter than ACC words
    "rows4-cols3": TINY.replace(cols=3),
    "rows5-cols2": TINY.replace(rows=5, cols=2),  # ACT words longer than ACC words
}


# -- scratchpad contents ------------------------------------------------------------------------

def soft_images(cfg, rng):
    """:func:`test_vector_hw.images`, with ACC words and VPARAM column words mostly of a
    softmax's magnitudes, and some extremes: scores around two centres; in the first half of the
    column region (:func:`score_params`) multipliers that map them to tens or hundreds of
    exponent steps, in the second half V multipliers that bring ``q`` (about 2**22 for the row's
    maximum) to about 127."""
    imgs = images(cfg, rng)
    lim = 1 << (cfg.acc_bits - 1)
    vals = []
    centres = [rng.randrange(-1000, 1000) for _ in range(2)]
    for _ in range(cfg.acc_words):
        if rng.random() < 0.1:  # extremes and wide values
            vals.append([rng.choice((-lim, lim - 1, 0, rng.randrange(-lim, lim)))
                         for _ in range(cfg.cols)])
        else:                   # scores around one of two centres
            c, spread = rng.choice(centres), rng.choice((50, 500, 2000))
            vals.append([c + rng.randrange(-spread, spread + 1) for _ in range(cfg.cols)])
    mask = (1 << cfg.acc_bits) - 1
    imgs[Spad.ACC] = (pack_acc(cfg, np.array(vals, dtype=np.int64)),
                      [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals])
    _, words = imgs[Spad.VPARAM]
    scores = score_params(cfg)
    for a in range(cfg.vparam_param_base, cfg.vparam_words):
        kind = rng.random()
        junk = 0
        if kind < 0.9 and a in scores:  # v = x / 8 .. x / 4
            mult, shift = rng.randrange(1 << 14, 1 << 15), 17
        elif kind < 0.9:
            mult, shift = rng.randrange(1 << 12, 1 << 15), rng.randrange(26, 31)
        elif kind < 0.95:
            mult, shift = rng.choice((-32768, 32767, -1, 0, 1)), rng.choice((0, 1, 31, 62, 63))
        else:
            mult, shift, junk = rng.randrange(-32768, 32768), rng.randrange(64), rng.getrandbits(10)
        words[a] = (mult & 0xFFFF) | shift << 16 | junk << 22  # bits 22..31 are ignored
    imgs[Spad.VPARAM] = (b"".join(w.to_bytes(4, "little") for w in words), words)
    return imgs


def score_params(cfg):
    """The VPARAM words of :func:`soft_images`'s score multipliers (the rest: V multipliers)."""
    base = cfg.vparam_param_base
    return range(base, (base + cfg.vparam_words) // 2)


# -- programs -----------------------------------------------------------------------------------

def vsoft(func, **kw):
    return Instruction(Opcode.VSOFT, func=func, **kw)


def row_program(cfg, rng, act_addr):
    """A whole softmax row of ``n`` values from a random ACC word: MAX, EXP, NORM passes of
    random chunks (the last one's count not a multiple of ``cols`` when ``n`` is not); each NORM
    packs its values into its own ACT words; then EXP and NORM again over the last chunk alone
    (its sum may miss the row's maximum: ``rsum`` below 2**15, ``R`` above 2**16). Returns
    (instructions, next free ACT word)."""
    scores = score_params(cfg)
    n = rng.randint(1, len(scores))
    words = -(-n // cfg.cols)
    acc = rng.randint(0, cfg.acc_words - words)
    kparam = rng.randint(scores.start, scores.stop - n)
    vparam = rng.randint(scores.stop, cfg.vparam_words - n)
    chunks, w0 = [], 0
    while w0 < words:
        w = rng.randint(1, min(cfg.rows, words - w0))
        chunks.append((w0, w))
        w0 += w
    prog = []
    for func in SoftFunc:
        act = act_addr
        for i, (w0, w) in enumerate(chunks):
            t0 = w0 * cfg.cols
            count = min(w * cfg.cols, n - t0)
            prog.append(vsoft(func, acc_addr=acc + w0, words=w, count=count, kparam=kparam + t0,
                              vparam=vparam + t0, act_addr=act, first=int(i == 0)))
            act += -(-count // cfg.rows)
    last = prog[-1]
    prog += [last.replace(func=SoftFunc.EXP, first=1), last.replace(act_addr=act)]
    return prog, act + -(-last.count // cfg.rows)


def random_vsoft(cfg, rng, hot):
    """Any legal VSOFT (counts mostly below ``words * cols``, ``first`` at random); half of them
    on the ACC words and score multipliers ``hot`` (acc_addr, kparam), so that passes over the
    same values follow each other (rsum from a few values far below rmax: small, R large)."""
    base = cfg.vparam_param_base
    while True:
        words = rng.randint(1, cfg.rows)
        count = rng.choice((words * cfg.cols, rng.randint(1, words * cfg.cols)))
        acc_addr = rng.randint(0, cfg.acc_words - words)
        kparam = rng.randint(base, cfg.vparam_words - count)
        if rng.random() < 0.5:
            acc_addr, kparam = hot
        inst = vsoft(rng.choice(list(SoftFunc)), words=words, count=count, acc_addr=acc_addr,
                     kparam=kparam, vparam=rng.randint(base, cfg.vparam_words - count),
                     act_addr=rng.randint(0, cfg.act_words - cfg.cols), first=rng.randrange(2))
        if check_instruction(cfg, inst) is None:
            return inst


def replay_registers(cfg, insts, imgs):
    """(rmax, rsum) after each instruction, from :func:`soft_apply` on the ACC / VPARAM words."""
    acc = unpack_acc(cfg, imgs[Spad.ACC][0])
    vp = np.frombuffer(imgs[Spad.VPARAM][0], np.uint8).reshape(cfg.vparam_words, 4)
    state, out = SoftState(), []
    for inst in insts:
        if inst.op == Opcode.VSOFT:
            n = inst.count
            x = acc[inst.acc_addr:inst.acc_addr + inst.words].reshape(-1)[:n]
            kmult, kshift = unpack_vparam(vp[inst.kparam:inst.kparam + n])
            vmult, vshift = unpack_vparam(vp[inst.vparam:inst.vparam + n])
            soft_apply(state, inst.func, x, kmult, kshift, first=bool(inst.first),
                       vmult=vmult, vshift=vshift)
        out.append((state.rmax, state.rsum))
    return out


# -- the RTL run --------------------------------------------------------------------------------

def run_rtl(cfg, insts, imgs, gaps):
    """Execute ``insts`` on the RTL: (busy cycles of each, (rmax, rsum) after each, ACT words)."""
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    vec = top.vec
    layouts = {Opcode.VEC: ("vec", vec_layout()), Opcode.VSOFT: ("soft", soft_layout())}
    measured, regs, final = [], [], {}
    vp = imgs[Spad.VPARAM][1]
    tparam = vp[cfg.vparam_token_base:cfg.vparam_token_base + cfg.rows]

    async def bench(ctx):
        ctx.set(vec.i_lut.as_value(), sum(w << (32 * i) for i, w in enumerate(vp[:VPARAM_LUT_WORDS])))
        ctx.set(vec.i_tparam.as_value(), sum(w << (32 * i) for i, w in enumerate(tparam)))
        def issue(inst):
            name, layout = layouts[inst.op]
            ctx.set(vec.i_soft, inst.op == Opcode.VSOFT)
            ctx.set(getattr(vec.i_inst, name), layout.const({f: int(inst[f]) for f in layout.members}))

        measured.extend(await drive_unit(ctx, vec, insts, gaps, issue, 200, finished=lambda inst:
                                         regs.append((ctx.get(vec.o_rmax), ctx.get(vec.o_rsum)))))
        final["act"] = [ctx.get(top.act.data[i]) for i in range(cfg.act_words)]

    run(top, bench)
    return measured, regs, final["act"]


def duration(cfg, inst):
    return (vsoft_cycles(cfg, inst) if inst.op == Opcode.VSOFT else vec_cycles(cfg, inst.rows)).busy


def check(cfg, insts, seed, gaps=None):
    """Run ``insts`` on the RTL and on the golden model; compare cycles, registers and ACT."""
    rng = random.Random(seed)
    imgs = soft_images(cfg, rng)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 2)) for _ in insts]
    segments = [Segment(s.name, 0, raw, cfg.word_bytes(s)) for s, (raw, _) in imgs.items()]
    golden, expected = golden_run(cfg, insts, segments)
    assert expected == [duration(cfg, inst) for inst in insts]

    measured, regs, act = run_rtl(cfg, insts, imgs, gaps)
    assert measured == expected
    want_regs = replay_registers(cfg, insts, imgs)
    for i, (got, want) in enumerate(zip(regs, want_regs)):
        assert got == want, f"after instruction {i} ({insts[i]}): (rmax, rsum) {got} != {want}"
    wb = cfg.act_word_bytes
    want = golden.spads["ACT"]
    for addr in range(cfg.act_words):
        got = act[addr].to_bytes(wb, "little")
        assert got == want[addr].tobytes(), f"ACT[{addr}]: {got.hex()} != {want[addr].tobytes().hex()}"
    return want_regs, want.view(np.int8)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_rows(name, seed):
    """Whole rows, several instructions each, written to consecutive ACT words."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 100 + len(name))
    insts, act = [], 0
    for _ in range(4):
        prog, act = row_program(cfg, rng, act)
        insts += prog
    _, act = check(cfg, insts, seed)
    assert any(inst.count % cfg.cols for inst in insts)
    assert ((act > 0) & (act < 127)).sum() > 10  # probabilities, not only 0 or saturated


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_passes(name, seed):
    """Random VSOFTs and VECs from the reset state: EXP before any MAX, NORM with ``rsum`` of 0
    or small (``R`` up to ``127 << 24``), sums that wrap, ``first`` anywhere."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 1000 + len(name))
    insts = [vsoft(SoftFunc.NORM, words=1, count=1, kparam=cfg.vparam_param_base,
                   vparam=cfg.vparam_param_base)]  # rsum == 0 after reset: R = 0
    hot = (rng.randint(0, cfg.acc_words - cfg.rows),
           rng.randint(cfg.vparam_param_base, cfg.vparam_words - cfg.rows * cfg.cols))
    for _ in range(40):
        if rng.random() < 0.15:
            insts.append(random_vec(cfg, rng, cfg.act_words))
        else:
            insts.append(random_vsoft(cfg, rng, hot))
    assert {i.func for i in insts if i.op == Opcode.VSOFT} == set(SoftFunc)
    check(cfg, insts, seed)


def test_back_to_back():
    """Every pass and VEC starting the cycle after the previous done, full and 1-word rows."""
    cfg = TINY
    base = cfg.vparam_param_base
    insts = [
        vsoft(SoftFunc.MAX, words=4, count=16, kparam=base, first=1),
        vsoft(SoftFunc.MAX, words=1, count=1, acc_addr=7, kparam=base + 16),
        vsoft(SoftFunc.EXP, words=4, count=16, kparam=base, first=1),
        random_vec(cfg, random.Random(0), cfg.act_words),
        vsoft(SoftFunc.EXP, words=1, count=1, acc_addr=7, kparam=base + 16),
        vsoft(SoftFunc.NORM, words=4, count=16, kparam=base, vparam=base + 20, act_addr=30),
        vsoft(SoftFunc.NORM, words=1, count=1, acc_addr=7, kparam=base + 16, vparam=base + 36,
              act_addr=34),
        vsoft(SoftFunc.NORM, words=3, count=9, acc_addr=60, kparam=cfg.vparam_words - 9,
              vparam=cfg.vparam_words - 9, act_addr=cfg.act_words - 3),
    ]
    for inst in insts:
        assert check_instruction(cfg, inst) is None, inst
    check(cfg, insts, seed=7, gaps=[0] * len(insts))


def test_reset():
    """The tile resets the unit when a run begins: the softmax registers return to
    :class:`SoftState`'s values."""
    cfg = TINY
    rng = random.Random(3)
    imgs = soft_images(cfg, rng)
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    rst = Signal()
    m = Module()
    m.submodules.top = ResetInserter(rst)(top)
    vec = top.vec
    layout = soft_layout()
    initial = SoftState()

    async def bench(ctx):
        assert (ctx.get(vec.o_rmax), ctx.get(vec.o_rsum)) == (initial.rmax, initial.rsum)
        for func in (SoftFunc.MAX, SoftFunc.EXP):
            inst = vsoft(func, words=2, count=7, acc_addr=3, kparam=cfg.vparam_param_base, first=1)
            ctx.set(vec.i_soft, 1)
            ctx.set(vec.i_inst.soft, layout.const({f: int(inst[f]) for f in layout.members}))
            ctx.set(vec.start, 1)
            await ctx.tick()
            ctx.set(vec.start, 0)
            await ctx.tick().until(vec.done)
        await ctx.tick()
        assert ctx.get(vec.o_rsum) != initial.rsum
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        assert (ctx.get(vec.o_rmax), ctx.get(vec.o_rsum)) == (initial.rmax, initial.rsum)

    run(m, bench)


def test_extremes():
    """rsum = 1, so R = 127 << 24 (the largest): q of the row's maximum is 127 << 30 (37 bits),
    its product with a V multiplier 53 bits; values more than D_MAX steps below rmax give 0.
    Saturated values: MAX of INT32_MIN only (``first``: rmax = INT32_MIN), ``rmax - v`` of
    -(2**32 - 1) and 2**32 - 1."""
    cfg = TINY
    base = cfg.vparam_param_base
    rng = random.Random(9)
    imgs = soft_images(cfg, rng)
    lim = 1 << (cfg.acc_bits - 1)
    vals = [[1000, 520, -5000, 7], [520, 0, 0, 0], [-lim] * 4, [lim - 1, -lim, 3, -lim]]
    vals += [[0] * cfg.cols] * (cfg.acc_words - len(vals))
    mask = (1 << cfg.acc_bits) - 1
    imgs[Spad.ACC] = (pack_acc(cfg, np.array(vals, dtype=np.int64)),
                      [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals])
    _, words = imgs[Spad.VPARAM]
    vmults = [(0x4000, 14), (1, 0), (-32768, 40), (32767, 63), (-1, 0), (300, 20), (-7, 1), (5, 62)]
    words[base:base + 12] = [1] * 4 + [(m & 0xFFFF) | s << 16 for m, s in vmults]  # kmult 1, kshift 0
    words[base + 12:base + 16] = [0x7FFF] * 4  # 32767: every ACC extreme saturates
    imgs[Spad.VPARAM] = (b"".join(w.to_bytes(4, "little") for w in words), words)
    insts = [
        vsoft(SoftFunc.MAX, words=1, count=1, kparam=base, first=1),             # rmax = 1000
        vsoft(SoftFunc.EXP, words=1, count=1, acc_addr=1, kparam=base, first=1),  # e(480) = 1
        vsoft(SoftFunc.NORM, words=1, count=4, kparam=base, vparam=base + 4, act_addr=0),
        vsoft(SoftFunc.NORM, words=2, count=5, kparam=base, vparam=base + 7, act_addr=1),
        vsoft(SoftFunc.MAX, words=1, count=4, acc_addr=2, kparam=base + 12, first=1),
        vsoft(SoftFunc.EXP, words=2, count=8, acc_addr=2, kparam=base + 12, first=1),
        vsoft(SoftFunc.NORM, words=2, count=8, acc_addr=2, kparam=base + 12, vparam=base + 4,
              act_addr=4),
        vsoft(SoftFunc.MAX, words=2, count=5, acc_addr=2, kparam=base + 12),
        vsoft(SoftFunc.EXP, words=2, count=8, acc_addr=2, kparam=base + 12, first=1),
    ]
    regs = _check_images(cfg, insts, imgs)
    i32 = 1 << 31
    assert regs[1] == (1000, 1) and regs[4][0] == -i32 and regs[7][0] == i32 - 1
    assert regs[5][1] == 8 << 15 and regs[8][1] == 1 << 15


def _check_images(cfg, insts, imgs):
    segments = [Segment(s.name, 0, raw, cfg.word_bytes(s)) for s, (raw, _) in imgs.items()]
    golden, expected = golden_run(cfg, insts, segments)
    measured, regs, act = run_rtl(cfg, insts, imgs, [0] * len(insts))
    assert measured == expected
    assert regs == replay_registers(cfg, insts, imgs)
    wb = cfg.act_word_bytes
    assert [a.to_bytes(wb, "little") for a in act] == [w.tobytes() for w in golden.spads["ACT"]]
    return regs
