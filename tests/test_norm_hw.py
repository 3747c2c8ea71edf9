"""The vector unit's norm datapath (hw/norm.py) in the Amaranth simulator, against the golden model:
VNORM sequences (LayerNorms over several ACC tiles, RMSNorms, NORMs into ACC in place, random
passes from the reset state) on one unit wired to ACC / VPARAM / ACT memories, on an INT8 and an
FP16 tile. After every instruction ``s1`` / ``s2`` equal :func:`mixpim.models.norm.norm_apply`'s
and the words it wrote equal the model's outputs after their conversion (``sat8``,
``fp16_from_fixed``, ``sat32``); the cycles ``busy`` is high equal
:func:`mixpim.models.tile_timing.vnorm_cycles`; at the end every memory equals the replay."""

import math
import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal, signed
from amaranth.lib.memory import Memory

from mixpim.hw.norm import NormUnit, norm_layout, rsqrt
from mixpim.hw.vec_fixed import fp16_from_fixed
from mixpim.models.config import preset
from mixpim.models.isa import Instruction, NormFunc, Opcode
from mixpim.models.norm import NormState, norm_apply
from mixpim.models.norm import rsqrt as model_rsqrt
from mixpim.models.tile_timing import check_instruction, vnorm_cycles
from mixpim.models.vec_fixed import fp16_from_fixed as model_fp16
from mixpim.models.vector import sat8, sat32
from helpers import drive_unit, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    "tiny-fp16": TINY.replace(pe="mixpe-w4a16"),
    # fewer N / Y / W lanes than tokens: each NORM column takes vec_passes slots
    "rows8-p2": TINY.replace(rows=8, vec_passes=2),
    "tiny-fp16-p4": TINY.replace(pe="mixpe-w4a16", vec_passes=4),
}
I32 = 1 << 31


# -- the unit and its memories --------------------------------------------------------------------

class Top(Elaboratable):
    """The norm unit wired to an ACC memory (a read and a write port), a VPARAM memory and the ACT
    memories of its write ports: ``act8`` (int8 lanes) and, on FP16 tiles, ``act16``."""

    def __init__(self, cfg, acc, vparam):
        self.cfg = cfg
        self.unit = NormUnit(cfg)
        self.acc = Memory(shape=cfg.cols * cfg.acc_bits, depth=cfg.acc_words, init=acc)
        self.vparam = Memory(shape=32, depth=cfg.vparam_words, init=vparam)
        self.act8 = Memory(shape=8 * cfg.rows, depth=cfg.act_words, init=[])
        self.act16 = (Memory(shape=16 * cfg.rows, depth=cfg.act_words, init=[])
                      if cfg.act_format == "fp16" else None)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        m.submodules.acc, m.submodules.vparam, m.submodules.act8 = self.acc, self.vparam, self.act8
        for mem, port in ((self.acc, unit.r_acc), (self.vparam, unit.r_vparam)):
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data[0].eq(rp.data)]
        writes = [(self.acc, unit.w_acc), (self.act8, unit.w_act)]
        if self.act16 is not None:
            m.submodules.act16 = self.act16
            writes.append((self.act16, unit.w_act_fp16))
        for mem, port in writes:
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(port.addr), wp.en.eq(port.en), wp.data.eq(port.data[0])]
        return m


def acc_word(cfg, values):
    mask = (1 << cfg.acc_bits) - 1
    return sum((int(v) & mask) << (j * cfg.acc_bits) for j, v in enumerate(values))


def lanes_word(lanes, bits):
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (i * bits) for i, v in enumerate(lanes))


def vparam_word(mult, shift, junk=0):
    return (mult & 0xFFFF) | shift << 16 | junk << 22


def vnorm(func, **kw):
    return Instruction(Opcode.VNORM, func=func, **kw)


# -- the golden replay ----------------------------------------------------------------------------

class Replay:
    """The scratchpads and registers after each instruction, from :func:`norm_apply`."""

    def __init__(self, cfg, acc, vparam):
        self.cfg = cfg
        self.acc = [list(w) for w in acc]          # (words, cols) Python ints
        self.vp = list(vparam)
        self.state = NormState(cfg.rows)
        self.act8, self.act16 = {}, {}

    def _mult(self, addr):
        w = self.vp[addr]
        return ((w & 0xFFFF) ^ 0x8000) - 0x8000, (w >> 16) & 0x3F

    def step(self, inst):
        """Apply ``inst``; returns the words it wrote: {("acc" | "act8" | "act16", addr): int}."""
        cfg = self.cfg
        r, c = inst.rows, cfg.cols
        x = np.array(self.acc[inst.acc_addr:inst.acc_addr + r], dtype=object)
        hm, hs = self._mult(inst.nparam) if inst.func != NormFunc.SUM and not inst.rms else (0, 0)
        kw = dict(first=bool(inst.first), rms=bool(inst.rms), qshift=inst.qshift, hm=hm, hs=hs)
        if inst.func != NormFunc.NORM:
            norm_apply(self.state, inst.func, x, **kw)
            return {}
        gm, gs = zip(*(self._mult(inst.param_addr + j) for j in range(c)))
        beta = [((w ^ I32) - I32) for w in self.vp[inst.param_addr + c:inst.param_addr + 2 * c]]
        y = norm_apply(self.state, inst.func, x, eps=self.vp[inst.nparam + 1], gm=gm, gs=gs,
                       beta=beta, **kw)
        out = {}
        if inst.to_acc:
            for i in range(r):
                self.acc[inst.act_addr + i] = [int(v) for v in sat32(y[i])]
                out["acc", inst.act_addr + i] = acc_word(cfg, self.acc[inst.act_addr + i])
            return out
        pad = np.zeros((cfg.rows - r, c), np.int64)
        full = np.concatenate([y, pad])                    # lanes past rows: 0
        if inst.fmt:
            bits, key, store = model_fp16(full), "act16", self.act16
        else:
            bits, key, store = sat8(full), "act8", self.act8
        for j in range(c):
            store[inst.act_addr + j] = lanes_word(bits[:, j], 16 if inst.fmt else 8)
            out[key, inst.act_addr + j] = store[inst.act_addr + j]
        return out


def check(cfg, insts, acc, vparam, seed=0, gaps=None):
    """Run ``insts`` on the RTL and the replay: cycles, registers and writes after each, and
    every memory at the end. Returns the replay."""
    for inst in insts:
        assert check_instruction(cfg, inst) is None, inst
    rng = random.Random(seed)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 2)) for _ in insts]
    top = Top(cfg, [acc_word(cfg, w) for w in acc], vparam)
    unit, layout = top.unit, norm_layout()
    golden = Replay(cfg, acc, vparam)
    mems = {"acc": top.acc, "act8": top.act8, "act16": top.act16}
    measured, done = [], []

    async def bench(ctx):
        def issue(inst):
            ctx.set(unit.i_inst, layout.const({f: int(inst[f]) for f in layout.members}))

        def finished(inst):
            k = len(done)
            wrote = golden.step(inst)
            st = golden.state
            got = ([ctx.get(unit.o_s1[i]) for i in range(cfg.rows)],
                   [ctx.get(unit.o_s2[i]) for i in range(cfg.rows)])
            assert got == (st.s1, st.s2), f"after {k} ({inst}): (s1, s2)"
            for (mem, addr), want in wrote.items():
                assert ctx.get(mems[mem].data[addr]) == want, f"after {k} ({inst}): {mem}[{addr}]"
            done.append(inst)

        measured.extend(await drive_unit(ctx, unit, insts, gaps, issue, 300, finished))
        for addr in range(cfg.acc_words):
            assert ctx.get(top.acc.data[addr]) == acc_word(cfg, golden.acc[addr]), f"ACC[{addr}]"
        for name, store in (("act8", golden.act8), ("act16", golden.act16)):
            if mems[name] is not None:
                for addr in range(cfg.act_words):
                    assert ctx.get(mems[name].data[addr]) == store.get(addr, 0), f"{name}[{addr}]"

    run(top, bench)
    assert measured == [vnorm_cycles(cfg, inst).busy for inst in insts]
    return golden


# -- random contents and programs -----------------------------------------------------------------

def random_acc(cfg, rng):
    """ACC words: hidden-vector-like values around a centre (spreads from 0 to 2**28), extremes
    of ``acc_bits`` (sat32'd to +-2**31), values near +-2**31."""
    lim = 1 << (cfg.acc_bits - 1)
    words = []
    for _ in range(cfg.acc_words):
        kind = rng.random()
        if kind < 0.1:
            words.append([rng.choice((-lim, lim - 1, -I32 - 1, I32, I32 - 1, -I32, 0))
                          for _ in range(cfg.cols)])
        elif kind < 0.2:
            words.append([rng.randrange(-lim, lim) for _ in range(cfg.cols)])
        else:
            centre = rng.choice((0, rng.randrange(-(1 << 24), 1 << 24), rng.randrange(-I32, I32)))
            spread = rng.choice((0, 1, 100, 1 << 12, 1 << 20, 1 << 28))
            words.append([max(-lim, min(lim - 1, centre + rng.randint(-spread, spread)))
                          for _ in range(cfg.cols)])
    return words


def random_vparam(cfg, rng):
    """VPARAM words: multipliers (bits 22..31 sometimes set: ignored), raw 32-bit words."""
    words = []
    for _ in range(cfg.vparam_words):
        kind = rng.random()
        if kind < 0.4:
            words.append(vparam_word(rng.randrange(-32768, 32768), rng.randrange(10, 40),
                                     rng.getrandbits(10) if rng.random() < 0.3 else 0))
        elif kind < 0.5:
            words.append(vparam_word(rng.choice((-32768, 32767, -1, 0, 1)),
                                     rng.choice((0, 1, 31, 62, 63))))
        else:
            words.append(rng.choice((0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, rng.getrandbits(32),
                                     rng.getrandbits(12))))
    return words


def norm_program(cfg, rng, vp, *, rms, in_place=False):
    """One LayerNorm (SUM, SQ, NORM passes) or RMSNorm (SQ, NORM) of ``r`` tokens over ``k`` ACC
    tiles, with mean multiplier ~1/H, eps, gammas and betas written into ``vp`` (random windows,
    sometimes left as they are; a later program may overwrite them: the unit and the replay see
    the final words). NORMs go to ACT, or with ``to_acc`` into ACC (often in place; always with
    ``in_place``)."""
    r = rng.choice((cfg.rows, rng.randint(1, cfg.rows)))
    k = rng.randint(1, 3)
    tiles = [rng.randint(0, cfg.acc_words - r) for _ in range(k)]
    h = len(tiles) * cfg.cols
    base, top = cfg.vparam_param_base, cfg.vparam_words
    nparam = rng.randint(base, top - 2)
    if rng.random() < 0.8:
        hs = 14 + math.ceil(math.log2(h))
        vp[nparam] = vparam_word(round((1 << hs) / h), hs)
        vp[nparam + 1] = rng.choice((0, 1, 1000, rng.getrandbits(20), 0xFFFFFFFF,
                                     rng.getrandbits(32)))
    qshift = rng.choice((0, 0, 1, 4, 8, 12, rng.randrange(32)))
    out = []
    if not rms:
        out += [vnorm(NormFunc.SUM, acc_addr=a, rows=r, first=int(t == 0))
                for t, a in enumerate(tiles)]
    out += [vnorm(NormFunc.SQ, acc_addr=a, rows=r, first=int(t == 0), rms=int(rms), nparam=nparam,
                  qshift=qshift) for t, a in enumerate(tiles)]
    fp16 = cfg.act_format == "fp16"
    for a in tiles:
        param = rng.randint(base, top - 2 * cfg.cols)
        if rng.random() < 0.8:
            gs_base = rng.choice((16, 26)) if fp16 else 26
            for j in range(cfg.cols):
                vp[param + j] = vparam_word(rng.randrange(-32768, 32768),
                                            max(0, gs_base + rng.randint(-4, 4)))
                beta = rng.choice((0, rng.randint(-100, 100), rng.randint(-I32, I32 - 1)))
                vp[param + cfg.cols + j] = beta & 0xFFFFFFFF
        fmt = int(fp16 and not in_place and rng.random() < 0.6)
        to_acc = int(in_place or (not fmt and rng.random() < 0.3))
        if in_place:
            act = a
        elif to_acc:
            act = rng.choice((a, rng.randint(0, cfg.acc_words - r)))
        else:
            act = rng.randint(0, cfg.act_words - cfg.cols)
        out.append(vnorm(NormFunc.NORM, acc_addr=a, rows=r, rms=int(rms), nparam=nparam,
                         qshift=qshift, param_addr=param, act_addr=act, fmt=fmt, to_acc=to_acc))
    return out


def random_vnorm(cfg, rng):
    """Any legal VNORM, every field at random."""
    while True:
        func = rng.choice(list(NormFunc))
        r = rng.choice((cfg.rows, rng.randint(1, cfg.rows)))
        fmt = int(cfg.act_format == "fp16" and rng.random() < 0.5)
        to_acc = int(not fmt and rng.random() < 0.3)
        base, top = cfg.vparam_param_base, cfg.vparam_words
        inst = vnorm(func, rows=r, acc_addr=rng.randint(0, cfg.acc_words - r),
                     act_addr=rng.randint(0, cfg.acc_words - r if to_acc else
                                          cfg.act_words - cfg.cols),
                     param_addr=rng.randint(base, top - 2 * cfg.cols),
                     nparam=rng.randint(base, top - 2),
                     qshift=rng.randrange(32), first=rng.randrange(2), rms=rng.randrange(2),
                     fmt=fmt if func == NormFunc.NORM else 0,
                     to_acc=to_acc if func == NormFunc.NORM else 0)
        if check_instruction(cfg, inst) is None:
            return inst


# -- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_norm_programs(name, seed):
    """LayerNorms and RMSNorms over 1 to 3 ACC tiles of 1 to rows tokens, into ACT (INT8 or FP16
    values) or ACC (sat32, often in place, later read again), with random passes in between."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 100 + len(name))
    acc, vp = random_acc(cfg, rng), random_vparam(cfg, rng)
    insts = []
    for k in range(6):
        insts += norm_program(cfg, rng, vp, rms=rng.random() < 0.4, in_place=k == 3)
        if rng.random() < 0.5:
            insts.append(random_vnorm(cfg, rng))
    golden = check(cfg, insts, acc, vp, seed)
    assert any(golden.act8.values())
    if cfg.act_format == "fp16":
        assert any(golden.act16.values())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_passes(name):
    """Random VNORMs from the reset state: NORMs of d that was never squared into s2 (|n| up to
    2**42), any first / rms / qshift, D = 0."""
    cfg = CONFIGS[name]
    rng = random.Random(7 + len(name))
    acc, vp = random_acc(cfg, rng), random_vparam(cfg, rng)
    insts = [random_vnorm(cfg, rng) for _ in range(40)]
    assert {i.func for i in insts} == set(NormFunc)
    check(cfg, insts, acc, vp, seed=3)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_extremes(name):
    """D = 0 (y = beta), tiny D (e = -8), d saturated at both ends (x = +-2**31, qshift 0), n at
    its largest (-2**23 * 2**19 with D = 1, then times -32768), eps of 2**32 - 1, y saturated by
    sat8 / FP16 / sat32; every instruction back to back."""
    cfg = CONFIGS[name]
    rows, cols = cfg.rows, cfg.cols
    assert cols == 4
    rng = random.Random(11)
    lim = 1 << (cfg.acc_bits - 1)
    acc = [[rng.randint(-1000, 1000) for _ in range(cols)] for _ in range(cfg.acc_words)]
    acc[0] = [5, 5, 5, 5]                                  # constant: d = 0
    acc[1] = [5, 6, 4, 5]                                  # mean 5: s2 = 2
    acc[2] = [lim - 1, -lim, I32 - 1, -I32]
    acc[3] = [-I32, -I32 - 1, I32, 7]
    base = cfg.vparam_param_base
    vp = random_vparam(cfg, rng)
    mean, eps_max, eps_one, big, small = base, base + 2, base + 4, base + 6, base + 6 + 2 * cols
    vp[mean:mean + 2] = [vparam_word(1, 2), 0]             # mu = round(s1 / 4), eps 0
    vp[eps_max:eps_max + 2] = [vparam_word(0, 0), 0xFFFFFFFF]
    vp[eps_one:eps_one + 2] = [vparam_word(1, 2), 1]
    vp[big:big + 2 * cols] = ([vparam_word(-32768, 0)] * cols
                              + [0x7FFFFFFF, 0x80000000, 123, 0xFFFFFFFF])
    vp[small:small + 2 * cols] = [vparam_word(32767, 30)] * cols + [0] * cols
    fmt = int(cfg.act_format == "fp16")
    sq, norm = NormFunc.SQ, NormFunc.NORM
    insts = [
        vnorm(norm, rows=rows, acc_addr=0, nparam=mean, param_addr=big),     # D = 0: y = beta
        vnorm(NormFunc.SUM, rows=2, acc_addr=0, first=1),
        vnorm(sq, rows=2, acc_addr=0, nparam=mean, first=1),                 # s2 = 0, 2
        vnorm(norm, rows=2, acc_addr=0, nparam=mean, param_addr=small, act_addr=4, fmt=fmt),
        vnorm(norm, rows=rows, acc_addr=2, nparam=eps_one, rms=1, param_addr=big,
              act_addr=8),                                                   # D = 1: |n| = 2**42
        vnorm(norm, rows=rows, acc_addr=2, nparam=eps_one, rms=1, param_addr=big, act_addr=12,
              fmt=fmt),
        vnorm(norm, rows=2, acc_addr=2, nparam=mean, rms=1, param_addr=small, act_addr=30,
              to_acc=1),
        vnorm(sq, rows=rows, acc_addr=2, nparam=mean, rms=1, first=1),        # d = +-2**23
        vnorm(sq, rows=rows, acc_addr=2, nparam=mean, rms=1, qshift=31),
        vnorm(norm, rows=rows, acc_addr=2, nparam=eps_max, rms=1, param_addr=small,
              act_addr=16, fmt=fmt),
        vnorm(norm, rows=rows, acc_addr=2, nparam=eps_max, rms=1, param_addr=big,
              act_addr=2, to_acc=1),                                         # in place
        vnorm(NormFunc.SUM, rows=rows, acc_addr=2, first=1),                 # reads it back
    ]
    golden = check(cfg, insts, acc, vp, gaps=[0] * len(insts))
    assert golden.state.s2[0] >= 2 << 46
    assert [golden.act8[j] for j in range(cols)] == [lanes_word([b] * rows, 8)
                                                     for b in (127, -128, 123, -1)]
    assert {abs(v) for w in golden.acc[2:2 + rows] for v in w} & {I32, I32 - 1}


def test_reset():
    """The tile resets the unit when a run begins: s1 and s2 return to 0."""
    cfg = TINY
    rng = random.Random(5)
    top = Top(cfg, [acc_word(cfg, w) for w in random_acc(cfg, rng)], random_vparam(cfg, rng))
    rst = Signal()
    m = Module()
    m.submodules.top = ResetInserter(rst)(top)
    unit, layout = top.unit, norm_layout()

    async def bench(ctx):
        for func in (NormFunc.SUM, NormFunc.SQ):
            inst = vnorm(func, rows=cfg.rows, acc_addr=3, nparam=cfg.vparam_param_base, first=1)
            ctx.set(unit.i_inst, layout.const({f: int(inst[f]) for f in layout.members}))
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            await ctx.tick().until(unit.done)
        await ctx.tick()
        assert any(ctx.get(unit.o_s2[i]) for i in range(cfg.rows))
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        assert all(ctx.get(unit.o_s1[i]) == 0 and ctx.get(unit.o_s2[i]) == 0
                   for i in range(cfg.rows))

    run(m, bench)


class _Comb(Elaboratable):
    """``build(m, i)`` (a tuple of Signals) of one input Signal ``i`` (``signed`` if asked)."""

    def __init__(self, build, width, is_signed=False):
        self.i = Signal(signed(width) if is_signed else width)
        self.build = build
        self.outs = None

    def elaborate(self, platform):
        m = Module()
        self.outs = self.build(m, self.i)
        return m


def _comb_values(build, width, inputs, is_signed=False):
    """The outputs of ``build`` for each input, settled without a clock."""
    dut = _Comb(build, width, is_signed)
    results = []

    async def bench(ctx):
        for v in inputs:
            ctx.set(dut.i, v)
            results.append(tuple(ctx.get(o) for o in dut.outs))

    run(dut, bench, clock=False)
    return results


def test_rsqrt_full_range():
    """rsqrt of D over its whole 65-bit range (s2 + eps, without wrapping): every bit length,
    the ROM's ends, D = 0."""
    rng = random.Random(1)
    ds = [0, 1, 2, 3, 4, 255, 256, 1023, 1024, (1 << 65) - 1, (1 << 64) + (1 << 32) - 2]
    for b in range(1, 66):
        ds += [1 << (b - 1), (1 << b) - 1, rng.getrandbits(b) | 1 << (b - 1)]
    got = _comb_values(lambda m, i: rsqrt(m, i), 65, ds)
    for dv, (r, sh) in zip(ds, got):
        rr, e = model_rsqrt(dv)
        assert r == rr and (dv == 0 or sh == e // 2 + 4), dv


def test_fp16_conversion():
    """fp16_from_fixed against the model: subnormals (|y| < 4), ties to even, the saturation at
    +-65504 (and far beyond: int59 values), signs."""
    rng = random.Random(2)
    lim = 65504 << 16
    ys = [0, 1, -1, 2, 3, -3, 4, 5, 2047, 2048, 2049, 4095, 4097, 4098, 4099, 6143, 6144,
          lim, lim + 1, -lim, -lim - 1, lim + (1 << 20), (1 << 58) - 1, -(1 << 58), 65520 << 16,
          (65504 << 16) - 1, 1 << 31, -(1 << 31)]
    for p in range(60):
        v = 1 << p
        ys += [v, -v, v + (v >> 11), v + (v >> 11) + 1, v - 1, v + (3 * (v >> 11) if p > 11 else 0)]
    ys += [rng.randint(-(1 << 34), 1 << 34) for _ in range(500)]
    ys += [rng.randint(-(1 << 58), (1 << 58) - 1) for _ in range(100)]
    ys = [v for v in ys if -(1 << 58) <= v < (1 << 58)]
    got = _comb_values(lambda m, i: (fp16_from_fixed(m, i),), 59, ys, is_signed=True)
    want = model_fp16(np.array(ys, dtype=object))
    for y, (g,), w in zip(ys, got, want):
        assert g == int(w), (y, hex(g), hex(int(w)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_real_layernorm(name):
    """A float hidden vector (H = 12 features of 4 tokens, an offset and an outlier) in ACC at
    2**18, normalized by SUM, SQ, NORM over 3 tiles with the compiler's folding (hm / 2**hs ~
    1/H, eps * H, sqrt(H) * gamma into gm / gs, beta in output units): the output is within 1%
    of max |LayerNorm| of the float LayerNorm (INT8 at max / 127; FP16 values; sat32 into ACC
    at 2**16), and bit-exact with the model."""
    cfg = CONFIGS[name]
    rows, cols = cfg.rows, cfg.cols
    nprng = np.random.default_rng(4)
    h = 12
    k = h // cols
    xf = nprng.normal(0.5, 2.0, size=(rows, h))
    xf[:, 3] *= 6                                          # an outlier feature
    xf[1] = xf[1] * 0.01 + 3                              # a token of tiny variance
    gamma = nprng.uniform(0.5, 1.5, size=h)
    beta = nprng.normal(0, 0.3, size=h)
    eps = 1e-5
    mean = xf.mean(axis=1, keepdims=True)
    ln = (xf - mean) / np.sqrt(xf.var(axis=1, keepdims=True) + eps) * gamma + beta

    frac, qshift = 18, 1
    xi = np.round(xf * (1 << frac)).astype(np.int64)
    fp16 = cfg.act_format == "fp16"
    out_frac = 16                                          # FP16 values and the ACC output
    scale8 = np.abs(ln).max() / 127                        # INT8 output unit
    acc = [[0] * cols for _ in range(cfg.acc_words)]
    for t in range(k):
        for i in range(rows):
            acc[t * rows + i] = [int(v) for v in xi[i, t * cols:(t + 1) * cols]]
    base = cfg.vparam_param_base
    vp = [0] * cfg.vparam_words
    hs = 14 + math.ceil(math.log2(h))                    # hm in 2**13 .. 2**14
    vp[base] = vparam_word(round((1 << hs) / h), hs)
    vp[base + 1] = round(h * eps * 4 ** (frac - qshift))   # eps in units of d**2
    insts = []
    insts += [vnorm(NormFunc.SUM, acc_addr=t * rows, rows=rows, first=int(t == 0))
              for t in range(k)]
    insts += [vnorm(NormFunc.SQ, acc_addr=t * rows, rows=rows, first=int(t == 0), nparam=base,
                    qshift=qshift) for t in range(k)]
    modes = [("int8", 0, 0)] + ([("fp16", 1, 0)] if fp16 else []) + [("acc", 0, 1)]
    params = {}                                            # per output unit: the column words
    for unit in (scale8, 2.0 ** -out_frac):
        params[unit] = param = base + 2 + len(params) * 2 * h
        for t in range(k):
            for j in range(cols):
                f = t * cols + j
                g = math.sqrt(h) * gamma[f] * 2.0 ** -19 / unit    # gm / 2**gs
                gs = 14 - math.floor(math.log2(g))
                vp[param + 2 * cols * t + j] = vparam_word(round(g * 2 ** gs), gs)
                vp[param + 2 * cols * t + cols + j] = round(beta[f] / unit) & 0xFFFFFFFF
    act, targets = 0, []
    for mode, fmt, to_acc in modes:
        unit = scale8 if mode == "int8" else 2.0 ** -out_frac
        for t in range(k):
            dest = (cfg.acc_words - k * rows + t * rows) if to_acc else act
            insts.append(vnorm(NormFunc.NORM, acc_addr=t * rows, rows=rows, nparam=base,
                               qshift=qshift, param_addr=params[unit] + 2 * cols * t,
                               act_addr=dest, fmt=fmt, to_acc=to_acc))
            targets.append((mode, dest, unit))
            act += 0 if to_acc else cols
    assert base + 2 + 4 * h <= cfg.vparam_words
    golden = check(cfg, insts, acc, vp, gaps=[0] * len(insts))
    for mode in dict.fromkeys(m for m, _, _ in targets):
        y = np.zeros((rows, h))
        for t, (_, dest, unit) in enumerate(tg for tg in targets if tg[0] == mode):
            for j in range(cols):
                if mode == "acc":
                    col = [golden.acc[dest + i][j] * unit for i in range(rows)]
                elif mode == "int8":
                    w = golden.act8[dest + j]
                    col = [(((w >> (8 * i)) & 0xFF) ^ 0x80) - 0x80 for i in range(rows)]
                    col = [v * unit for v in col]
                else:
                    w = golden.act16[dest + j]
                    col = np.array([(w >> (16 * i)) & 0xFFFF for i in range(rows)], np.uint16)
                    col = col.view(np.float16)
                y[:, t * cols + j] = col
        err = np.abs(y - ln).max() / np.abs(ln).max()
        assert err < 0.01, (mode, err)
