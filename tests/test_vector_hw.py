"""The vector unit (hw/vector.py) in the Amaranth simulator, against the golden model: random VEC
sequences (every func, accumulators up to the ``acc_bits`` extremes, random VPARAMs, residuals
read in place, next to or from earlier outputs) run on one unit wired to ACC / ACT / VPARAM
memories; the final ACT words equal :func:`mixpim.models.executor.run`'s for the same program
(the VECs then HALT, scratchpads preloaded by segments), and the cycles ``busy`` is high equal
each VEC's duration in the executor's timing (start .. end) and
:func:`mixpim.models.tile_timing.vec_cycles`."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory

from mixpim.hw.vector import VectorUnit, vec_layout, vparam_layout
from mixpim.models.config import VPARAM_LUT_WORDS, preset
from mixpim.models.executor import pack_acc
from mixpim.models.isa import Instruction, Opcode, Spad, VecFunc
from mixpim.models.program import Segment
from mixpim.models.tile_timing import check_instruction, vec_cycles
from helpers import drive_unit, golden_run, rejects, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    "tiny-fp16": TINY.replace(pe="mixpe-w4a16"),
    "rows4-cols3": TINY.replace(cols=3),
}


class Top(Elaboratable):
    """The vector unit wired to an ACC, an ACT and a VPARAM memory (one read port per lane, as
    in the tile)."""

    def __init__(self, cfg, images):
        self.cfg = cfg
        self.vec = VectorUnit(cfg)
        self.acc = Memory(shape=cfg.cols * cfg.acc_bits, depth=cfg.acc_words, init=images[Spad.ACC])
        self.act = Memory(shape=8 * cfg.act_word_bytes, depth=cfg.act_words, init=images[Spad.ACT])
        self.vparam = Memory(shape=32, depth=cfg.vparam_words, init=images[Spad.VPARAM])

    def elaborate(self, platform):
        m = Module()
        m.submodules.vec = vec = self.vec
        m.submodules.acc = self.acc
        m.submodules.act = self.act
        m.submodules.vparam = self.vparam
        for mem, port in ((self.acc, vec.r_acc), (self.act, vec.r_act), (self.vparam, vec.r_vparam)):
            for i in range(len(port.data)):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(port.addr + i), rp.en.eq(port.en), port.data[i].eq(rp.data)]
        wp = self.act.write_port()
        m.d.comb += [wp.addr.eq(vec.w_act.addr), wp.en.eq(vec.w_act.en),
                     wp.data.eq(vec.w_act.data[0])]
        return m


def images(cfg, rng):
    """Random initial scratchpads: {spad: (bytes for the executor, ints for the RTL memories)}."""
    out = {}
    # ACC: a mix of extremes, small and wide values
    lim = 1 << (cfg.acc_bits - 1)
    pick = (lambda: rng.choice((-lim, lim - 1, -lim + 1, 0, -1, 1)),
            lambda: rng.randrange(-lim, lim),
            lambda: rng.randrange(-(1 << 20), 1 << 20),
            lambda: rng.randrange(-(1 << 12), 1 << 12))
    vals = [[rng.choice(pick)() for _ in range(cfg.cols)] for _ in range(cfg.acc_words)]
    mask = (1 << cfg.acc_bits) - 1
    dtype = np.int64 if cfg.acc_bits <= 62 else object
    out[Spad.ACC] = (pack_acc(cfg, np.array(vals, dtype=dtype)),
                     [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals])
    wb = cfg.act_word_bytes
    raw = rng.randbytes(cfg.act_words * wb)
    out[Spad.ACT] = (raw, [int.from_bytes(raw[i * wb:(i + 1) * wb], "little")
                           for i in range(cfg.act_words)])
    # VPARAM: random table, then multipliers: extremes, random, or near-identity scales
    words = [rng.getrandbits(32) for _ in range(VPARAM_LUT_WORDS)]
    for _ in range(cfg.vparam_words - VPARAM_LUT_WORDS):
        kind = rng.randrange(4)
        if kind == 0:
            mult, shift = rng.choice((-32768, 32767, -1, 0, 1)), rng.choice((0, 1, 31, 62, 63))
        elif kind == 1:
            mult, shift = rng.randrange(-32768, 32768), rng.randrange(64)
        else:
            mult, shift = rng.randrange(-32768, 32768), rng.randrange(10, 40)
        junk = rng.getrandbits(10) if rng.random() < 0.3 else 0  # bits 22..31 are ignored
        words.append((mult & 0xFFFF) | shift << 16 | junk << 22)
    out[Spad.VPARAM] = (b"".join(w.to_bytes(4, "little") for w in words), words)
    return out


def random_vec(cfg, rng, window):
    """A random legal VEC; ACT addresses mostly within ``window`` words (outputs meet residuals)."""
    base = cfg.vparam_token_base + cfg.rows  # first column multiplier
    while True:
        func = rng.choice(list(VecFunc))
        rows = rng.choice((cfg.rows, rng.randint(1, cfg.rows)))
        top = min(window, cfg.act_words) - cfg.cols
        act_addr = rng.randint(0, top)
        res_addr = rng.choice((act_addr, rng.randint(0, top), act_addr + cfg.cols,
                               act_addr - cfg.cols))
        inst = Instruction(Opcode.VEC, func=func, rows=rows,
                           acc_addr=rng.randint(0, cfg.acc_words - rows),
                           act_addr=act_addr, res_addr=max(res_addr, 0),
                           param_addr=rng.randint(base, cfg.vparam_words - cfg.cols))
        if check_instruction(cfg, inst) is None:
            return inst


def run_rtl(cfg, insts, imgs, gaps):
    """Execute ``insts`` on the RTL: (busy cycles per instruction, final ACT words)."""
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    vec = top.vec
    layout = vec_layout()
    vp = imgs[Spad.VPARAM][1]
    lut = int.from_bytes(imgs[Spad.VPARAM][0][:4 * VPARAM_LUT_WORDS], "little")
    tparam = vp[cfg.vparam_token_base:cfg.vparam_token_base + cfg.rows]
    measured, final = [], {}

    async def bench(ctx):
        ctx.set(vec.i_lut.as_value(), lut)
        ctx.set(vec.i_tparam.as_value(), sum(w << (32 * i) for i, w in enumerate(tparam)))

        def issue(inst):
            ctx.set(vec.i_soft, 0)
            ctx.set(vec.i_inst.vec, layout.const({name: int(inst[name]) for name in layout.members}))

        measured.extend(await drive_unit(ctx, vec, insts, gaps, issue, limit=1000))
        final["act"] = [ctx.get(top.act.data[i]) for i in range(cfg.act_words)]

    run(top, bench)
    return measured, final["act"]


def check(cfg, insts, seed=0, gaps=None, act=None, zero_params=0):
    """Run ``insts`` on the RTL and on the golden model; compare cycles and ACT. ``act``: initial
    ACT contents (bytes) instead of random ones; ``zero_params``: that many column multipliers
    (from the first) are 0, so an ADD passes its residual through."""
    rng = random.Random(seed)
    imgs = images(cfg, rng)
    if act is not None:
        wb = cfg.act_word_bytes
        imgs[Spad.ACT] = (act, [int.from_bytes(act[i * wb:(i + 1) * wb], "little")
                                for i in range(cfg.act_words)])
    if zero_params:
        raw, words = imgs[Spad.VPARAM]
        lo = 4 * (cfg.vparam_token_base + cfg.rows)
        words[lo // 4:lo // 4 + zero_params] = [0] * zero_params
        imgs[Spad.VPARAM] = (raw[:lo] + bytes(4 * zero_params) + raw[lo + 4 * zero_params:], words)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 2)) for _ in insts]
    segments = [Segment(s.name, 0, raw, cfg.word_bytes(s)) for s, (raw, _) in imgs.items()]
    golden, expected = golden_run(cfg, insts, segments)
    assert expected == [vec_cycles(cfg, inst.rows).busy for inst in insts]

    measured, act = run_rtl(cfg, insts, imgs, gaps)
    assert measured == expected
    wb = cfg.act_word_bytes
    want = golden.spads["ACT"]
    for addr in range(cfg.act_words):
        got = act[addr].to_bytes(wb, "little")
        assert got == want[addr].tobytes(), f"ACT[{addr}]: {got.hex()} != {want[addr].tobytes().hex()}"
    return measured


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(name, seed):
    cfg = CONFIGS[name]
    rng = random.Random(seed * 1000 + len(name))
    insts = [random_vec(cfg, rng, rng.choice((4 * cfg.cols, cfg.act_words))) for _ in range(25)]
    assert {i.func for i in insts} == set(VecFunc)
    check(cfg, insts, seed=seed)


def test_residual_overlap():
    """ADD in place, ADD next to its output both ways, ADD reading an earlier VEC's output,
    one token and full tiles; back to back (each VEC starts the cycle after the last's done)."""
    cfg = TINY
    c = cfg.cols
    base = cfg.vparam_token_base + cfg.rows  # first column multiplier

    def vec(func, **kw):
        args = dict(rows=cfg.rows, acc_addr=0, act_addr=0, res_addr=0, param_addr=base)
        args.update(kw)
        return Instruction(Opcode.VEC, func=func, **args)

    insts = [
        vec(VecFunc.ADD, act_addr=8, res_addr=8),                  # in place
        vec(VecFunc.ADD, act_addr=8 + c, res_addr=8, rows=1),      # residual just below
        vec(VecFunc.ADD, act_addr=8, res_addr=8 + c, acc_addr=5),  # residual just above
        vec(VecFunc.REQUANT, act_addr=20, res_addr=21, acc_addr=9, param_addr=base + 7),
        vec(VecFunc.ADD, act_addr=20, res_addr=20, rows=2),        # reads the REQUANT's output
        vec(VecFunc.GELU, act_addr=0, acc_addr=cfg.acc_words - cfg.rows,
            param_addr=cfg.vparam_words - c),
        vec(VecFunc.RELU, act_addr=cfg.act_words - c, rows=3),
    ]
    for inst in insts:
        assert check_instruction(cfg, inst) is None, inst
    measured = check(cfg, insts, seed=11, gaps=[0] * len(insts))
    assert measured == [inst.rows + c + 3 for inst in insts]


def test_fp16_residuals():
    """FP16 residual lanes: infinities and NaNs (0), subnormals, signed zeros, halves rounding up,
    values saturating at -128 / 127, the largest finite values."""
    cfg = CONFIGS["tiny-fp16"]
    special = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7FFF, 0x0001, 0x83FF, 0x3800,
               0xB800, 0x3E00, 0xBE00, 0x4100, 0xC100, 0x57F8, 0x57FC, 0xD802, 0xD80C, 0x5800,
               0x7BFF, 0xFBFF, 0x3BFF, 0xBBFF, 0x3C01, 0x5BF8, 0xDC00, 0x4F80, 0xCF80, 0x3400]
    rng = random.Random(5)
    lanes = [rng.choice(special) for _ in range(cfg.act_words * cfg.rows)]
    act = b"".join(v.to_bytes(2, "little") for v in lanes)
    base = cfg.vparam_token_base + cfg.rows
    insts = [Instruction(Opcode.VEC, func=VecFunc.ADD, rows=cfg.rows, acc_addr=rng.randrange(60),
                         act_addr=a, res_addr=a, param_addr=base + p)
             for a in range(0, 64, cfg.cols) for p in (0, rng.randrange(50))]
    check(cfg, insts, seed=5, act=act, zero_params=cfg.cols)


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: VectorUnit("tiny"))


def test_layouts():
    assert vparam_layout().size == 32
    assert vparam_layout()["shift"].offset == 16
    assert set(vec_layout().members) == {"func", "acc_addr", "act_addr", "res_addr", "param_addr",
                                         "rows"}
