"""The vector unit's softmax datapath (hw/softmax.py) in the Amaranth simulator, against the golden
model: VSOFT sequences (whole rows split over several instructions, counts that are not multiples
of ``cols``, random passes from the reset state, every probability format, packed and by-column
NORMs) on a :class:`~mixpim.hw.softmax.SoftmaxUnit` wired to ACC / ACT / VPARAM memories (the ACT
write port with one enable per lane, as ``w_act_mask`` needs), on INT8 and FP16 configurations,
some with NORM writes in ``vec_passes`` passes. After every instruction ``rmax`` / ``rsum`` equal
:func:`mixpim.models.softmax.soft_apply`'s; the final ACT words equal
:func:`mixpim.models.executor.run`'s; the cycles ``busy`` is high equal the executor's timing and
:func:`mixpim.models.tile_timing.vsoft_cycles`."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib.memory import Memory

from mixpim.hw.softmax import SoftmaxUnit, soft_layout
from mixpim.models.config import preset
from mixpim.models.executor import pack_acc, unpack_acc, unpack_act
from mixpim.models.isa import Instruction, Opcode, ProbFormat, SoftFunc, Spad
from mixpim.models.program import Segment
from mixpim.models.softmax import SoftState, soft_apply, soft_words
from mixpim.models.tile_timing import check_instruction, vsoft_cycles
from mixpim.models.vector import unpack_vparam
from helpers import drive_unit, golden_run, rejects, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,                                        # 4 x 4
    "tiny-fp16": TINY.replace(pe="mixpe-w4a16"),         # 78-bit accumulators, FP16 lanes
    "rows2-cols3": TINY.replace(rows=2, cols=3),         # ACT words shorter than ACC words
    "rows4-cols3": TINY.replace(cols=3),
    "rows5-cols2-fp16": TINY.replace(rows=5, cols=2, pe="mixpe-w4a16"),  # ACT words longer
    # NORM writes in vec_passes passes over rows / vec_passes lanes
    "rows8-p2": TINY.replace(rows=8, vec_passes=2),
    "fp16-p4": TINY.replace(pe="mixpe-w4a16", vec_passes=4),  # one lane
    "rows6-cols3-p2": TINY.replace(rows=6, cols=3, vec_passes=2),  # 3 lanes
}


def pfmts(cfg):
    """The probability formats of the configuration (FP16 only on FP16 tiles)."""
    return [f for f in ProbFormat if f != ProbFormat.FP16 or cfg.act_format == "fp16"]


# -- the unit and its memories ------------------------------------------------------------------

class Top(Elaboratable):
    """The softmax unit wired to an ACC, an ACT and a VPARAM memory (one read port per lane, an
    ACT write port with one enable per lane)."""

    def __init__(self, cfg, images):
        self.cfg = cfg
        self.soft = SoftmaxUnit(cfg)
        self.acc = Memory(shape=cfg.cols * cfg.acc_bits, depth=cfg.acc_words, init=images[Spad.ACC])
        self.act = Memory(shape=8 * cfg.act_word_bytes, depth=cfg.act_words, init=images[Spad.ACT])
        self.vparam = Memory(shape=32, depth=cfg.vparam_words, init=images[Spad.VPARAM])

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.soft = soft = self.soft
        m.submodules.acc = self.acc
        m.submodules.act = self.act
        m.submodules.vparam = self.vparam
        for mem, port in ((self.acc, soft.r_acc), (self.vparam, soft.r_vparam)):
            for i in range(len(port.data)):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(port.addr + i), rp.en.eq(port.en), port.data[i].eq(rp.data)]
        wp = self.act.write_port(granularity=8 * cfg.act_word_bytes // cfg.rows)
        m.d.comb += [wp.addr.eq(soft.w_act.addr),
                     wp.en.eq(soft.w_act_mask & soft.w_act.en[0].replicate(cfg.rows)),
                     wp.data.eq(soft.w_act.data[0])]
        return m


# -- scratchpad contents ------------------------------------------------------------------------

def words_of(values, width):
    """Ints of ``values`` (lists of signed lane values of ``width`` bits, lane 0 lowest)."""
    mask = (1 << width) - 1
    return [sum((v & mask) << (j * width) for j, v in enumerate(w)) for w in values]


def acc_image(cfg, vals):
    dtype = np.int64 if cfg.acc_bits <= 62 else object
    return pack_acc(cfg, np.array(vals, dtype=dtype)), words_of(vals, cfg.acc_bits)


def vparam_image(words):
    return b"".join(w.to_bytes(4, "little") for w in words), words


def soft_images(cfg, rng):
    """Random scratchpads {spad: (bytes for the executor, ints for the RTL memories)}: ACC words
    mostly of a softmax's magnitudes (scores around two centres), some extremes; random ACT
    words (by-column NORMs must keep their other lanes); VPARAM words from the column base: in
    the first half (:func:`score_params`) multipliers mapping the scores to tens or hundreds of
    exponent steps, in the second half V multipliers from ``2**-19`` to ``2**-3`` (``q`` of the
    row's maximum is about ``2**22``: every format is reached, its saturation too)."""
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
    wb = cfg.act_word_bytes
    raw = rng.randbytes(cfg.act_words * wb)
    imgs = {Spad.ACC: acc_image(cfg, vals),
            Spad.ACT: (raw, [int.from_bytes(raw[i * wb:(i + 1) * wb], "little")
                             for i in range(cfg.act_words)])}
    words = [rng.getrandbits(32) for _ in range(cfg.vparam_words)]
    scores = score_params(cfg)
    for a in range(cfg.vparam_param_base, cfg.vparam_words):
        kind = rng.random()
        junk = 0
        if kind < 0.9 and a in scores:  # v = x / 8 .. x / 4
            mult, shift = rng.randrange(1 << 14, 1 << 15), 17
        elif kind < 0.9:
            mult, shift = rng.randrange(1 << 12, 1 << 15), rng.randrange(18, 31)
        elif kind < 0.95:
            mult, shift = rng.choice((-32768, 32767, -1, 0, 1)), rng.choice((0, 1, 31, 62, 63))
        else:
            mult, shift, junk = rng.randrange(-32768, 32768), rng.randrange(64), rng.getrandbits(10)
        words[a] = (mult & 0xFFFF) | shift << 16 | junk << 22  # bits 22..31 are ignored
    imgs[Spad.VPARAM] = vparam_image(words)
    return imgs


def score_params(cfg):
    """The VPARAM words of :func:`soft_images`'s score multipliers (the rest: V multipliers)."""
    base = cfg.vparam_param_base
    return range(base, (base + cfg.vparam_words) // 2)


# -- programs -----------------------------------------------------------------------------------

def vsoft(func, **kw):
    return Instruction(Opcode.VSOFT, func=func, **kw)


def norm_span(cfg, inst):
    """ACT words a NORM writes."""
    return inst.words * cfg.cols if inst.col else -(-inst.count // cfg.rows)


def softmax_row(cfg, chunks, n, *, acc, kparam, vparam, act, col=0, lane=0, pfmt=ProbFormat.INT8):
    """MAX, EXP and NORM over ``n`` values, one instruction per chunk ``(w0, w)`` of ACC words
    (from ``acc``, ``rows`` apart with ``col``); the NORMs write consecutive ACT words from
    ``act``. Returns (instructions, next free ACT word)."""
    prog = []
    step = cfg.rows if col else 1
    for func in SoftFunc:
        a = act
        for i, (w0, w) in enumerate(chunks):
            t0 = w0 * cfg.cols
            inst = vsoft(func, acc_addr=acc + w0 * step, words=w, count=min(w * cfg.cols, n - t0),
                         kparam=kparam + t0, vparam=vparam + t0, act_addr=a, first=int(i == 0),
                         pfmt=pfmt, col=col, lane=lane)
            prog.append(inst)
            a += norm_span(cfg, inst)
    return prog, a


def row_program(cfg, rng, act_addr):
    """A whole softmax row of ``n`` values from a random ACC word in a random format, packed or by
    column (a random lane): MAX, EXP, NORM passes of random chunks (the last one's count not a
    multiple of ``cols`` when ``n`` is not); then EXP and NORM again over the last chunk alone
    (its sum may miss the row's maximum: ``rsum`` below 2**15, ``R`` above 2**16). Returns
    (instructions, next free ACT word)."""
    scores = score_params(cfg)
    col = rng.randrange(2)
    step = cfg.rows if col else 1
    n = rng.randint(1, min(len(scores), ((cfg.acc_words - 1) // step + 1) * cfg.cols))
    words = -(-n // cfg.cols)
    acc = rng.randint(0, cfg.acc_words - 1 - (words - 1) * step)
    chunks, w0 = [], 0
    while w0 < words:
        w = rng.randint(1, min(cfg.rows, words - w0))
        chunks.append((w0, w))
        w0 += w
    prog, act = softmax_row(cfg, chunks, n, acc=acc, kparam=rng.randint(scores.start, scores.stop - n),
                            vparam=rng.randint(scores.stop, cfg.vparam_words - n), act=act_addr,
                            col=col, lane=rng.randrange(cfg.rows) if col else 0,
                            pfmt=rng.choice(pfmts(cfg)))
    last = prog[-1]
    prog += [last.replace(func=SoftFunc.EXP, first=1), last.replace(act_addr=act)]
    return prog, act + norm_span(cfg, last)


def random_vsoft(cfg, rng, hot):
    """Any legal VSOFT (counts mostly below ``words * cols``, ``first``, ``pfmt``, ``col`` and
    ``lane`` at random); half of them on the ACC words and score multipliers ``hot`` (acc_addr,
    kparam), so that passes over the same values follow each other (rsum from a few values far
    below rmax: small, R large)."""
    base = cfg.vparam_param_base
    while True:
        words = rng.randint(1, cfg.rows)
        count = rng.choice((words * cfg.cols, rng.randint(1, words * cfg.cols)))
        col = rng.randrange(2)
        acc_addr = rng.randint(0, cfg.acc_words - 1 - (words - 1) * (cfg.rows if col else 1))
        kparam = rng.randint(base, cfg.vparam_words - count)
        if rng.random() < 0.5:
            acc_addr, kparam = hot
        inst = vsoft(rng.choice(list(SoftFunc)), words=words, count=count, acc_addr=acc_addr,
                     kparam=kparam, vparam=rng.randint(base, cfg.vparam_words - count),
                     act_addr=rng.randint(0, cfg.act_words - cfg.rows * cfg.cols),
                     first=rng.randrange(2), pfmt=rng.choice(pfmts(cfg)), col=col,
                     lane=rng.randrange(cfg.rows) if col else 0)
        if check_instruction(cfg, inst) is None:
            return inst


def replay_registers(cfg, insts, imgs):
    """(rmax, rsum) after each instruction, from :func:`soft_apply` on the ACC / VPARAM words."""
    acc = unpack_acc(cfg, imgs[Spad.ACC][0])
    vp = np.frombuffer(imgs[Spad.VPARAM][0], np.uint8).reshape(cfg.vparam_words, 4)
    state, out = SoftState(), []
    for inst in insts:
        n = inst.count
        x = acc[soft_words(cfg, inst)].reshape(-1)[:n]
        kmult, kshift = unpack_vparam(vp[inst.kparam:inst.kparam + n])
        vmult, vshift = unpack_vparam(vp[inst.vparam:inst.vparam + n])
        soft_apply(state, inst.func, x, kmult, kshift, first=bool(inst.first),
                   vmult=vmult, vshift=vshift, pfmt=inst.pfmt)
        out.append((state.rmax, state.rsum))
    return out


# -- the RTL run --------------------------------------------------------------------------------

def run_rtl(cfg, insts, imgs, gaps):
    """Execute ``insts`` on the RTL: (busy cycles of each, (rmax, rsum) after each, ACT words)."""
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    soft = top.soft
    layout = soft_layout()
    measured, regs, final = [], [], {}

    async def bench(ctx):
        def issue(inst):
            ctx.set(soft.i_inst, layout.const({f: int(inst[f]) for f in layout.members}))

        measured.extend(await drive_unit(ctx, soft, insts, gaps, issue, 200, finished=lambda inst:
                                         regs.append((ctx.get(soft.o_rmax), ctx.get(soft.o_rsum)))))
        final["act"] = [ctx.get(top.act.data[i]) for i in range(cfg.act_words)]

    run(top, bench)
    return measured, regs, final["act"]


def check(cfg, insts, seed=None, gaps=None, imgs=None):
    """Run ``insts`` on the RTL and on the golden model; compare cycles, registers and ACT.
    Returns the registers after each instruction and the final ACT lanes."""
    rng = random.Random(seed)
    if imgs is None:
        imgs = soft_images(cfg, rng)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 2)) for _ in insts]
    for inst in insts:
        assert check_instruction(cfg, inst) is None, inst
    segments = [Segment(s.name, 0, raw, cfg.word_bytes(s)) for s, (raw, _) in imgs.items()]
    golden, expected = golden_run(cfg, insts, segments)
    assert expected == [vsoft_cycles(cfg, inst).busy for inst in insts]

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
    return want_regs, unpack_act(cfg, want)


def probabilities(cfg, lanes):
    """The written values as numbers (FP16 lanes decoded)."""
    if cfg.act_format == "int8":
        return lanes.astype(np.int64)
    return lanes.view(np.float16).astype(np.float64)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_rows(name, seed):
    """Whole rows, several instructions each, packed or by column, every format."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 100 + len(name))
    insts, act = [], 0
    for _ in range(5):
        prog, act = row_program(cfg, rng, act)
        insts += prog
    _, lanes = check(cfg, insts, seed)
    assert any(inst.count % cfg.cols for inst in insts)
    with np.errstate(invalid="ignore"):  # by-column NORMs keep random lanes (FP16: NaN too)
        p = probabilities(cfg, lanes[:act])
        assert (np.isfinite(p) & (p > 0) & (p < 127)).sum() > 10  # not only 0 or saturated


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_passes(name, seed):
    """Random VSOFTs from the reset state: EXP before any MAX, NORM with ``rsum`` of 0 or small
    (``R`` up to ``2**31``), sums that wrap, ``first`` anywhere, formats and lanes at random."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 1000 + len(name))
    insts = [vsoft(SoftFunc.NORM, words=1, count=1, kparam=cfg.vparam_param_base,
                   vparam=cfg.vparam_param_base, pfmt=rng.choice(pfmts(cfg)))]  # rsum == 0: R = 0
    hot = (rng.randint(0, cfg.acc_words - 1 - (cfg.rows - 1) * cfg.rows),
           rng.randint(cfg.vparam_param_base, cfg.vparam_words - cfg.rows * cfg.cols))
    for _ in range(36):
        insts.append(random_vsoft(cfg, rng, hot))
    norms = [i for i in insts if i.func == SoftFunc.NORM]
    assert {i.func for i in insts} == set(SoftFunc) and {i.col for i in norms} == {0, 1}
    check(cfg, insts, seed)


@pytest.mark.parametrize("name", ["tiny", "tiny-fp16", "rows5-cols2-fp16", "rows8-p2"])
def test_col_lanes(name):
    """Attention by column: one query per lane, its scores in column ``lane`` of a run of GEMM
    output tiles (ACC words ``rows`` apart); the queries' NORMs write one after another into
    the same ACT words, each its own lane (the others keep the earlier queries' values; the
    last query's row is one value shorter: its last value is 0). Formats in turn."""
    cfg = CONFIGS[name]
    rng = random.Random(len(name))
    scores = score_params(cfg)
    words = min(cfg.rows + 1, len(scores) // cfg.cols)
    n = words * cfg.cols
    chunks = [(0, cfg.rows), (cfg.rows, words - cfg.rows)] if words > cfg.rows else [(0, words)]
    formats = pfmts(cfg)
    insts = []
    for lane in range(cfg.rows):
        count = n - 1 if lane == cfg.rows - 1 else n
        prog, end = softmax_row(cfg, chunks, count, acc=lane, kparam=scores.start,
                                vparam=scores.stop, act=10, col=1, lane=lane,
                                pfmt=formats[lane % len(formats)])
        insts += prog
    assert end == 10 + n
    imgs = soft_images(cfg, rng)
    centre = rng.randrange(-1000, 1000)  # close scores: many probabilities well above 0
    imgs[Spad.ACC] = acc_image(cfg, [[centre + rng.randrange(-300, 301) for _ in range(cfg.cols)]
                                     for _ in range(cfg.acc_words)])
    _, lanes = check(cfg, insts, gaps=[0] * len(insts), imgs=imgs)
    p = probabilities(cfg, lanes[10:10 + n])
    assert (p != 0).any(axis=0).all() and p[-1, -1] == 0  # every query wrote its lane


def test_back_to_back():
    """Every pass starting the cycle after the previous done, full and 1-word rows, packed and
    by column."""
    cfg = TINY
    base = cfg.vparam_param_base
    insts = [
        vsoft(SoftFunc.MAX, words=4, count=16, kparam=base, first=1),
        vsoft(SoftFunc.MAX, words=1, count=1, acc_addr=7, kparam=base + 16),
        vsoft(SoftFunc.EXP, words=4, count=16, kparam=base, first=1),
        vsoft(SoftFunc.EXP, words=1, count=1, acc_addr=7, kparam=base + 16),
        vsoft(SoftFunc.NORM, words=4, count=16, kparam=base, vparam=base + 20, act_addr=30),
        vsoft(SoftFunc.NORM, words=1, count=1, acc_addr=7, kparam=base + 16, vparam=base + 36,
              act_addr=34, pfmt=ProbFormat.HI),
        vsoft(SoftFunc.NORM, words=3, count=9, acc_addr=50, kparam=cfg.vparam_words - 9,
              vparam=cfg.vparam_words - 9, act_addr=cfg.act_words - 12, col=1, lane=3,
              pfmt=ProbFormat.LO),
        vsoft(SoftFunc.MAX, words=4, count=13, acc_addr=2, kparam=base, col=1, first=1),
        vsoft(SoftFunc.NORM, words=3, count=9, acc_addr=60, kparam=cfg.vparam_words - 9,
              vparam=cfg.vparam_words - 9, act_addr=cfg.act_words - 3),
    ]
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
    soft = top.soft
    layout = soft_layout()
    initial = SoftState()

    async def bench(ctx):
        assert (ctx.get(soft.o_rmax), ctx.get(soft.o_rsum)) == (initial.rmax, initial.rsum)
        for func in (SoftFunc.MAX, SoftFunc.EXP):
            inst = vsoft(func, words=2, count=7, acc_addr=3, kparam=cfg.vparam_param_base, first=1)
            ctx.set(soft.i_inst, layout.const({f: int(inst[f]) for f in layout.members}))
            ctx.set(soft.start, 1)
            await ctx.tick()
            ctx.set(soft.start, 0)
            await ctx.tick().until(soft.done)
        await ctx.tick()
        assert ctx.get(soft.o_rsum) != initial.rsum
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        assert (ctx.get(soft.o_rmax), ctx.get(soft.o_rsum)) == (initial.rmax, initial.rsum)

    run(m, bench)


@pytest.mark.parametrize("name", ["tiny", "tiny-fp16", "fp16-p4"])
def test_extremes(name):
    """rsum = 1, so R = 127 << 24 (INT8) or 2**31 (the others, the largest): q of the row's
    maximum is up to 2**37, its product with a V multiplier 53 bits (FP16 values saturate at
    65504, HI / LO digits at 16383); values more than D_MAX steps below rmax give 0. Saturated
    values: MAX of INT32_MIN only (``first``: rmax = INT32_MIN), ``rmax - v`` of -(2**32 - 1)
    and 2**32 - 1. Every NORM in every format."""
    cfg = CONFIGS[name]
    base = cfg.vparam_param_base
    rng = random.Random(9)
    imgs = soft_images(cfg, rng)
    lim = 1 << (cfg.acc_bits - 1)
    vals = [[1000, 520, -5000, 7], [520, 0, 0, 0], [-lim] * 4, [lim - 1, -lim, 3, -lim]]
    vals += [[0] * cfg.cols] * (cfg.acc_words - len(vals))
    imgs[Spad.ACC] = acc_image(cfg, vals)
    _, words = imgs[Spad.VPARAM]
    vmults = [(0x4000, 14), (1, 0), (-32768, 40), (32767, 63), (-1, 0), (300, 20), (-7, 1), (5, 62)]
    words[base:base + 12] = [1] * 4 + [(m & 0xFFFF) | s << 16 for m, s in vmults]  # kmult 1, kshift 0
    words[base + 12:base + 16] = [0x7FFF] * 4  # 32767: every ACC extreme saturates
    imgs[Spad.VPARAM] = vparam_image(words)
    norms = lambda **kw: [vsoft(SoftFunc.NORM, pfmt=f, **kw).replace(act_addr=kw["act_addr"] + 8 * i)
                          for i, f in enumerate(pfmts(cfg))]
    insts = [
        vsoft(SoftFunc.MAX, words=1, count=1, kparam=base, first=1),             # rmax = 1000
        vsoft(SoftFunc.EXP, words=1, count=1, acc_addr=1, kparam=base, first=1),  # e(480) = 1
        *norms(words=1, count=4, kparam=base, vparam=base + 4, act_addr=0),
        *norms(words=2, count=5, kparam=base, vparam=base + 7, act_addr=1),
        vsoft(SoftFunc.MAX, words=1, count=4, acc_addr=2, kparam=base + 12, first=1),
        vsoft(SoftFunc.EXP, words=2, count=8, acc_addr=2, kparam=base + 12, first=1),
        *norms(words=2, count=8, acc_addr=2, kparam=base + 12, vparam=base + 4, act_addr=4),
        vsoft(SoftFunc.MAX, words=2, count=5, acc_addr=2, kparam=base + 12),
        vsoft(SoftFunc.EXP, words=2, count=8, acc_addr=2, kparam=base + 12, first=1),
    ]
    regs, _ = check(cfg, insts, imgs=imgs, gaps=[0] * len(insts))
    i32, k = 1 << 31, len(pfmts(cfg))
    assert regs[1] == (1000, 1) and regs[2 + 2 * k][0] == -i32 and regs[4 + 3 * k][0] == i32 - 1
    assert regs[3 + 2 * k][1] == 8 << 15 and regs[5 + 3 * k][1] == 1 << 15


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: SoftmaxUnit("tiny"))
