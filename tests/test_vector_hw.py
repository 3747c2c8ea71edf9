"""The vector unit's VEC datapath (hw/vector.py) in the Amaranth simulator, against the golden
numerics: :func:`mixpim.models.vector.vec_apply` (REQUANT, RELU, GELU, ADD with INT8 values) and
:mod:`mixpim.models.vec_fixed` (FP16 values, SILU, GLU, RoPE), assembled per element by
:func:`golden_vec` (the VEC semantics: partners, table words, per-column biases, direct writes,
RES into ACC). Random VEC sequences (every function, fmt and direct legal on the configuration,
with and without ``bias`` where it is legal, accumulators up to the
``acc_bits`` extremes, random parameters, residuals and partners read in place or from earlier
outputs) and chosen operands (saturation, rounding ties, the ends of the gate ranges) run on one
:class:`~mixpim.hw.vector.VectorUnit` wired to ACC / ACT / VPARAM memories; the final ACT and ACC
contents must match bit for bit, and each VEC must be busy exactly
:func:`~mixpim.models.tile_timing.vec_cycles` cycles."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory

from mixpim.hw.vector import VectorOp, VectorUnit, vec_layout, vparam_layout
from mixpim.models.config import VPARAM_LUT_WORDS, preset
from mixpim.models.isa import Instruction, Opcode, Spad, VecFunc
from mixpim.models.tile_timing import check_instruction, vec_cycles
from mixpim.models.vec_fixed import (fixed_from_fp16, fp16_from_fixed, gelu_fixed, glu_fixed,
                                     rope_fixed, silu_fixed)
from mixpim.models.vector import (LUT_ENTRIES, fp16_bits_to_int8, int8_to_fp16_bits, round_shift,
                                  sat8, sat32, vec_apply)
from helpers import drive_unit, never_elaborated, rejects, run, to_signed

TINY = preset("tiny")
FP16 = TINY.replace(pe="mixpe-w4a16")
CONFIGS = {
    "tiny": TINY,
    "tiny-fp16": FP16,
    "rows4-cols3": TINY.replace(cols=3),
    "fp16-cols3": FP16.replace(cols=3),
    "fp16-cols5": FP16.replace(cols=5),  # rows < cols: no direct
    "rows8": TINY.replace(rows=8),
    # fewer lanes than tokens: each column slot takes vec_passes cycles
    "rows8-p2": TINY.replace(rows=8, vec_passes=2),
    "rows8-p8": TINY.replace(rows=8, vec_passes=8),  # 1 lane, as the 8x8 FPGA tiles
    "fp16-p4": FP16.replace(vec_passes=4),
    "fp16-cols5-p2": FP16.replace(cols=5, vec_passes=2),
    "rows6-cols3-p2": TINY.replace(rows=6, cols=3, vec_passes=2),  # 3 lanes: not a power of two
}
PAIR = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
ROPE = (VecFunc.ROPE_LO, VecFunc.ROPE_HI)
#: FP16 lanes worth reading as residuals: infinities and NaNs (0), subnormals, signed zeros,
#: halves, values saturating int8, the largest finite values.
FP16_SPECIAL = (0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7FFF, 0x0001, 0x83FF, 0x3800,
                0xB800, 0x3E00, 0xBE00, 0x4100, 0xC100, 0x57F8, 0x57FC, 0xD802, 0xD80C, 0x5800,
                0x7BFF, 0xFBFF, 0x3BFF, 0xBBFF, 0x3C01, 0x5BF8, 0xDC00, 0x4F80, 0xCF80, 0x3400,
                0x0400, 0x8400, 0x03FF, 0x1C00, 0x1BFF, 0x9C01)
#: v values at the edges: the gate ranges (sigmoid +-2**20, Phi +-2**19), int32 and FP16
#: saturation, FP16 rounding ties and subnormals, int8 saturation and rounding.
V_SPECIAL = tuple(sorted({
    *(e + d for e in (1 << 20, -(1 << 20), 1 << 19, -(1 << 19)) for d in (-2, -1, 0, 1)),
    (1 << 31) - 1, -(1 << 31), 1 << 31, -(1 << 31) - 1, 1 << 40, -(1 << 44),
    65504 << 16, -(65504 << 16), (65520 << 16) - 1, 65520 << 16, (65519 << 16) + 0x8000,
    *((2049 + 2 * k) << s for k in (0, 1) for s in (4, 5, 13, 16, 20)),
    *(-((2051 << 7) + 64), (2049 << 3) + 1, 0x8000, 0x18000, -0x8000, -0x18000),
    0, 1, 2, 3, 4, 5, -1, -3, 127, 128, -128, -129, 127 << 16, 128 << 16, -(129 << 16),
}))


def word_lanes(cfg, word):
    """The ``rows`` lanes of an ACT word, unsigned."""
    bits = 16 if cfg.act_format == "fp16" else 8
    return [(word >> (bits * i)) & ((1 << bits) - 1) for i in range(cfg.rows)]


def lanes_word(cfg, lanes):
    bits = 16 if cfg.act_format == "fp16" else 8
    return sum((int(v) & ((1 << bits) - 1)) << (bits * i) for i, v in enumerate(lanes))


class Spads:
    """Scratchpad contents: ``acc`` (words of ``cols`` signed ints), ``act`` and ``vparam``
    (words as unsigned ints)."""

    def __init__(self, acc, act, vparam):
        self.acc, self.act, self.vparam = acc, act, vparam

    def copy(self):
        return Spads([list(w) for w in self.acc], list(self.act), list(self.vparam))

    def images(self, cfg):
        """{Spad: word ints} for :class:`Top`."""
        mask = (1 << cfg.acc_bits) - 1
        acc = [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in self.acc]
        return {Spad.ACC: acc, Spad.ACT: list(self.act), Spad.VPARAM: list(self.vparam)}

    def params(self, addr, n):
        """(mult, shift) int64 arrays of VPARAM words ``addr .. addr + n - 1``."""
        words = self.vparam[addr:addr + n]
        return (np.array([to_signed(w, 16) for w in words], np.int64),
                np.array([(w >> 16) & 63 for w in words], np.int64))


def golden_vec(cfg, sp, inst):
    """Apply one VEC to ``sp`` (the semantics of the module docstring, from the models' functions)."""
    r, c, func, fmt = inst.rows, cfg.cols, VecFunc(inst.func), inst.fmt
    fp16 = cfg.act_format == "fp16"
    tmult, tshift = sp.params(cfg.vparam_token_base, r)

    def acc_rows(addr):
        return np.array([sp.acc[addr + i] for i in range(r)], dtype=object)

    def values(addr, param_addr):
        mult, shift = sp.params(param_addr, c)
        v1 = sat32(round_shift(acc_rows(addr) * mult.astype(object)[None, :], shift[None, :]))
        return round_shift(v1 * tmult[:, None], tshift[:, None])

    def act_lanes(addr, n):  # (n, rows) unsigned
        return np.array([word_lanes(cfg, sp.act[addr + k]) for k in range(n)], np.int64)

    def residual_lanes():  # (r, c)
        return act_lanes(inst.res_addr, c)[:, :r].T

    bias = None
    if inst.bias:  # int32 words after the column multipliers
        bias = np.array([to_signed(w, 32) for w in sp.vparam[inst.param_addr + c:inst.param_addr + 2 * c]],
                        np.int64)
    v = values(inst.acc_addr, inst.param_addr)
    if bias is not None:
        v = v + bias[None, :]
    if func == VecFunc.RES:
        out = sat32(v.astype(object) + acc_rows(inst.res_addr))
        for i in range(r):
            sp.acc[inst.res_addr + i] = [int(x) for x in out[i]]
        return
    if not fmt and func in (VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD):
        mult, shift = sp.params(inst.param_addr, c)
        lut = b"".join(w.to_bytes(4, "little") for w in sp.vparam[:VPARAM_LUT_WORDS])
        residual = None
        if func == VecFunc.ADD:
            lanes = residual_lanes()
            residual = fp16_bits_to_int8(lanes) if fp16 else lanes.astype(np.uint8).view(np.int8)
        y = vec_apply(func, acc_rows(inst.acc_addr), mult, shift, tmult, tshift,
                      lut=np.frombuffer(lut, np.int8), residual=residual, bias=bias)
    elif func == VecFunc.REQUANT:
        y = v
    elif func == VecFunc.RELU:
        y = np.maximum(v, 0)
    elif func == VecFunc.GELU:
        y = gelu_fixed(v)
    elif func == VecFunc.ADD:
        y = v + fixed_from_fp16(residual_lanes())
    elif func == VecFunc.SILU:
        y = silu_fixed(v)
    else:
        vb = values(inst.res_addr, inst.param_addr + c)
        if func == VecFunc.GLU:
            y = glu_fixed(v, vb)
        else:
            table = act_lanes(inst.table_addr, 2 * c).astype(np.uint16).view(np.int16)
            y = rope_fixed(v, vb, table[0::2, :r].T, table[1::2, :r].T, high=func == VecFunc.ROPE_HI)
    if fmt:
        out = fp16_from_fixed(y).astype(np.int64)
    else:
        out = sat8(y)
        out = int8_to_fp16_bits(out).astype(np.int64) if fp16 else out.astype(np.int64) & 0xFF
    if inst.direct:
        for i in range(r):
            sp.act[inst.act_addr + i] = lanes_word(cfg, out[i])
    else:
        for j in range(c):
            sp.act[inst.act_addr + j] = lanes_word(cfg, out[:, j])


class Top(Elaboratable):
    """The vector unit wired to an ACC, an ACT and a VPARAM memory (one read port per lane, as
    in the tile; write ports for ACT and ACC), initialized from ``images`` ({Spad: word ints},
    ACC words as ``cols`` ``acc_bits``-bit fields; :meth:`Spads.images`), and its lookups to a
    model of the tile's VPARAM mirror: the GELU table (256 bytes of VPARAM words 0..63) and the
    token multipliers (words 64..64+rows-1), read combinationally."""

    def __init__(self, cfg, images):
        self.cfg = cfg
        self.vec = VectorUnit(cfg)
        self.acc = Memory(shape=cfg.cols * cfg.acc_bits, depth=cfg.acc_words, init=images[Spad.ACC])
        self.act = Memory(shape=8 * cfg.act_word_bytes, depth=cfg.act_words, init=images[Spad.ACT])
        vparam = images[Spad.VPARAM]
        self.vparam = Memory(shape=32, depth=cfg.vparam_words, init=vparam)
        self.lut = Memory(shape=8, depth=LUT_ENTRIES,
                          init=[(vparam[e // 4] >> (8 * (e % 4))) & 0xFF for e in range(LUT_ENTRIES)])
        base = cfg.vparam_token_base
        self.tparam = Memory(shape=32, depth=cfg.rows, init=vparam[base:base + cfg.rows])

    def elaborate(self, platform):
        m = Module()
        m.submodules.vec = vec = self.vec
        m.submodules.acc = self.acc
        m.submodules.act = self.act
        m.submodules.vparam = self.vparam
        m.submodules.lut = self.lut
        m.submodules.tparam = self.tparam
        look = vec.lookup
        for i in range(self.cfg.vec_lanes):
            for mem, addr, out in ((self.lut, look.lut_addr[i], look.lut_data[i]),
                                   (self.tparam, look.tparam_addr[i], look.tparam_data[i])):
                rp = mem.read_port(domain="comb")
                m.d.comb += [rp.addr.eq(addr), out.eq(rp.data)]
        for mem, port in ((self.acc, vec.r_acc), (self.act, vec.r_act), (self.vparam, vec.r_vparam)):
            for i in range(len(port.data)):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(port.addr + i), rp.en.eq(port.en), port.data[i].eq(rp.data)]
        for mem, port in ((self.act, vec.w_act), (self.acc, vec.w_acc)):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(port.addr), wp.en.eq(port.en), wp.data.eq(port.data[0])]
        return m


def run_rtl(cfg, insts, sp, gaps):
    """Execute ``insts`` on the RTL from ``sp``: (busy cycles per instruction, final Spads)."""
    top = Top(cfg, sp.images(cfg))
    vec = top.vec
    layout = vec_layout()
    measured, final = [], {}

    async def bench(ctx):
        def issue(inst):
            ctx.set(vec.i_op, VectorOp.VEC)
            ctx.set(vec.i_inst.vec, layout.const({name: int(inst[name]) for name in layout.members}))

        measured.extend(await drive_unit(ctx, vec, insts, gaps, issue, limit=1000))
        final["act"] = [ctx.get(top.act.data[i]) for i in range(cfg.act_words)]
        final["acc"] = [ctx.get(top.acc.data[i]) for i in range(cfg.acc_words)]

    run(top, bench)
    acc = [[to_signed(w >> (j * cfg.acc_bits), cfg.acc_bits) for j in range(cfg.cols)]
           for w in final["acc"]]
    return measured, Spads(acc, final["act"], list(sp.vparam))


def check(cfg, insts, sp, gaps=None, seed=0):
    """Run ``insts`` on the RTL and on :func:`golden_vec` from ``sp``; compare cycles, ACT and ACC."""
    for inst in insts:
        assert check_instruction(cfg, inst) is None, inst
    if gaps is None:
        rng = random.Random(seed)
        gaps = [rng.choice((0, 0, 0, 1, 2)) for _ in insts]
    want = sp.copy()
    for inst in insts:
        golden_vec(cfg, want, inst)
    measured, got = run_rtl(cfg, insts, sp, gaps)
    assert measured == [vec_cycles(cfg, i.rows, i.func, i.direct, i.bias).busy for i in insts]
    for addr, (g, w) in enumerate(zip(got.act, want.act)):
        assert g == w, f"ACT[{addr}]: {word_lanes(cfg, g)} != {word_lanes(cfg, w)}"
    for addr, (g, w) in enumerate(zip(got.acc, want.acc)):
        assert g == w, f"ACC[{addr}]: {g} != {w}"
    return measured


# -- operands ----------------------------------------------------------------------------------

def random_spads(cfg, rng):
    """Accumulators: extremes, rounding ties, values in the gate ranges, wide and small ones;
    ACT: random lanes and (FP16) special values; VPARAM: a random GELU table and token / column
    multipliers: extremes, random, near 1 or 2**-16 .. 2**-8 (v in the gate ranges)."""
    lim = 1 << (cfg.acc_bits - 1)
    pick = (lambda: rng.choice((-lim, lim - 1, -lim + 1, 0, -1, 1)),
            lambda: rng.randrange(-lim, lim),
            lambda: rng.randrange(-(1 << 24), 1 << 24),
            lambda: rng.choice(V_SPECIAL),
            lambda: (2 * rng.randrange(-500, 500) + 1) << rng.randrange(12),
            lambda: rng.randrange(-(1 << 12), 1 << 12))
    acc = [[max(-lim, min(lim - 1, rng.choice(pick)())) for _ in range(cfg.cols)]
           for _ in range(cfg.acc_words)]
    fp16 = cfg.act_format == "fp16"
    act = []
    for _ in range(cfg.act_words):
        if fp16 and rng.random() < 0.5:
            lanes = [rng.choice(FP16_SPECIAL + (0x4000 ^ 0x8000 * rng.getrandbits(1),))
                     if rng.random() < 0.6 else rng.getrandbits(16) for _ in range(cfg.rows)]
            act.append(lanes_word(cfg, lanes))
        else:
            act.append(rng.getrandbits(8 * cfg.act_word_bytes))
    vparam = [rng.getrandbits(32) for _ in range(VPARAM_LUT_WORDS)]
    for _ in range(cfg.vparam_words - VPARAM_LUT_WORDS):
        kind = rng.randrange(5)
        if kind == 0:
            mult, shift = rng.choice((-32768, 32767, -1, 0, 1)), rng.choice((0, 1, 31, 62, 63))
        elif kind == 1:
            mult, shift = rng.randrange(-32768, 32768), rng.randrange(64)
        elif kind == 2:
            mult, shift = rng.randrange(-32768, 32768), rng.randrange(10, 40)
        elif kind == 3:
            mult, shift = rng.choice((1, -1, rng.randrange(1 << 14, 1 << 15))), rng.choice((0, 1, 2, 15))
        else:
            mult, shift = rng.randrange(1 << 14, 1 << 15), rng.randrange(15, 31)
        junk = rng.getrandbits(10) if rng.random() < 0.3 else 0  # bits 22..31 are ignored
        vparam.append((mult & 0xFFFF) | shift << 16 | junk << 22)
    return Spads(acc, act, vparam)


def legal_funcs(cfg):
    """(func, fmt, direct) triples the dispatcher accepts on ``cfg``."""
    out = []
    for func in VecFunc:
        for fmt in (0, 1):
            for direct in (0, 1):
                inst = Instruction(Opcode.VEC, func=func, rows=1, fmt=fmt, direct=direct,
                                   param_addr=cfg.vparam_param_base, act_addr=0, res_addr=0,
                                   table_addr=4 * cfg.cols)
                if check_instruction(cfg, inst) is None:
                    out.append((func, fmt, direct))
    return out


def random_vec_of(cfg, rng, triple, window, bias=0):
    """A random legal VEC of ``(func, fmt, direct)`` (and ``bias``); ACT and ACC addresses mostly
    within ``window`` words (outputs meet residuals and later operands)."""
    func, fmt, direct = triple
    c = cfg.cols
    while True:
        rows = rng.choice((cfg.rows, rng.randint(1, cfg.rows)))
        acc_top = min(window, cfg.acc_words) - rows
        acc_addr = rng.randint(0, acc_top)
        act_top = min(window, cfg.act_words) - max(c, cfg.rows)
        act_addr = rng.randint(0, act_top)
        if func == VecFunc.ADD:
            res_addr = max(rng.choice((act_addr, rng.randint(0, act_top), act_addr + c, act_addr - c)), 0)
        else:
            res_addr = rng.choice((acc_addr, rng.randint(0, acc_top), min(acc_addr + 1, acc_top)))
        table_addr = rng.randint(0, cfg.act_words - 2 * c)
        out = (rows if direct else c)
        if func in ROPE and table_addr < act_addr + out and act_addr < table_addr + 2 * c:
            continue  # a table overlapping the output is not a use (see hw/vector.py)
        inst = Instruction(Opcode.VEC, func=func, rows=rows, acc_addr=acc_addr, act_addr=act_addr,
                           res_addr=res_addr, fmt=fmt, direct=direct, table_addr=table_addr, bias=bias,
                           param_addr=rng.randint(cfg.vparam_param_base,
                                                  cfg.vparam_words - (2 if func in PAIR or bias else 1) * c))
        if check_instruction(cfg, inst) is None:
            return inst


def images(cfg, rng):
    """Random initial scratchpads as :mod:`test_softmax_hw` uses them: {spad: (bytes for the
    executor, ints for :class:`Top`)}."""
    from mixpim.models.executor import pack_acc  # only this helper needs the executor

    sp = random_spads(cfg, rng)
    dtype = np.int64 if cfg.acc_bits <= 62 else object
    ints = sp.images(cfg)
    return {Spad.ACC: (pack_acc(cfg, np.array(sp.acc, dtype=dtype)), ints[Spad.ACC]),
            Spad.ACT: (b"".join(w.to_bytes(cfg.act_word_bytes, "little") for w in sp.act),
                       ints[Spad.ACT]),
            Spad.VPARAM: (b"".join(w.to_bytes(4, "little") for w in sp.vparam), ints[Spad.VPARAM])}


def random_vec(cfg, rng, window):
    """A random legal VEC with INT8 values, written transposed (REQUANT, RELU, GELU, ADD; what
    :mod:`test_softmax_hw` interleaves with VSOFTs)."""
    func = rng.choice((VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD))
    return random_vec_of(cfg, rng, (func, 0, 0), window)


# -- tests -------------------------------------------------------------------------------------

def test_legal_funcs():
    """The combinations the tests cover: INT8 tiles have no fmt 1, SILU, GLU or RoPE; direct
    needs rows >= cols and excludes ADD; RES has neither fmt nor direct."""
    assert len(legal_funcs(TINY)) == 8 and len(legal_funcs(CONFIGS["rows4-cols3"])) == 8
    assert len(legal_funcs(FP16)) == 27
    assert (VecFunc.SILU, 1, 1) in legal_funcs(FP16) and (VecFunc.ADD, 1, 1) not in legal_funcs(FP16)
    assert len(legal_funcs(CONFIGS["fp16-cols5"])) == 15


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(name, seed):
    """Random sequences with every legal (func, fmt, direct) at least once, and with ``bias``
    (not GLU, ROPE) on a random half of them and on some of the others."""
    cfg = CONFIGS[name]
    rng = random.Random(seed * 1000 + len(name))
    triples = legal_funcs(cfg)
    order = triples + [rng.choice(triples) for _ in range(8)]
    order = [(tr, int(tr[0] not in PAIR and rng.random() < 0.5)) for tr in order]
    order += [(tr, 1) for tr in rng.sample(triples, len(triples) // 4) if tr[0] not in PAIR]
    rng.shuffle(order)
    insts = [random_vec_of(cfg, rng, tr, rng.choice((4 * cfg.cols, 16, cfg.act_words)), bias)
             for tr, bias in order]
    assert any(i.bias for i in insts)
    check(cfg, insts, random_spads(cfg, rng), seed=seed)


@pytest.mark.parametrize("name", ["tiny", "tiny-fp16", "fp16-p4"])
def test_edge_values(name):
    """Identity multipliers, so v = sat32(acc) runs through every edge of V_SPECIAL: gate range
    ends, FP16 ties, saturation of FP16, int32 and int8; then halving multipliers (round_shift
    ties), RoPE with extreme cosines and sines, and identity multipliers with extreme biases
    (v + bias beyond int32 both ways, ties and int8 edges moved by one)."""
    cfg = CONFIGS[name]
    rng = random.Random(7)
    sp = random_spads(cfg, rng)
    base = cfg.vparam_param_base
    ident = 1 | 0 << 16
    sp.vparam[cfg.vparam_token_base:base] = [ident] * cfg.rows
    sp.vparam[base:base + 2 * cfg.cols] = [ident] * 2 * cfg.cols
    halving = (1 | 1 << 16, 3 | 2 << 16, 0xFFFF | 1 << 16, 1 | 3 << 16)  # x/2, 3x/4, -x/2, x/8
    sp.vparam[base + 2 * cfg.cols:base + 4 * cfg.cols] = [halving[k % 4] for k in range(2 * cfg.cols)]
    biases = (-(1 << 31), (1 << 31) - 1, 1, -1, 0x8000, -(128 << 16), 1 << 20, -129)
    sp.vparam[base + 4 * cfg.cols:base + 6 * cfg.cols] = (
        [ident] * cfg.cols + [biases[k % len(biases)] & 0xFFFFFFFF for k in range(cfg.cols)])
    vals = list(V_SPECIAL)
    n = -(-len(vals) // cfg.cols) * cfg.cols
    vals = (vals + [rng.choice(vals) for _ in range(n - len(vals))])
    rng.shuffle(vals)
    for w in range(n // cfg.cols):
        sp.acc[w] = vals[w * cfg.cols:(w + 1) * cfg.cols]
    words = n // cfg.cols
    if cfg.act_format == "fp16":  # RoPE table lanes: int16 extremes
        ext = (-32768, 32767, 16384, -16384, 0, 1, -1, 11585)
        for a in range(32, 48):
            sp.act[a] = lanes_word(cfg, [rng.choice(ext) for _ in range(cfg.rows)])
    insts = []
    for func, fmt, direct in legal_funcs(cfg):
        for w in range(0, words - cfg.rows + 1, cfg.rows):
            for param in (base, base + 2 * cfg.cols, base + 4 * cfg.cols):
                if func in PAIR and param != base:
                    continue
                insts.append(Instruction(
                    Opcode.VEC, func=func, fmt=fmt, direct=direct, rows=cfg.rows, acc_addr=w,
                    res_addr=(w + cfg.rows) % (words - cfg.rows) if func != VecFunc.ADD else 8,
                    act_addr=8 if func == VecFunc.ADD else 16, param_addr=param, table_addr=32 + w % 8,
                    bias=int(param == base + 4 * cfg.cols)))
    # RES last: it changes the accumulators
    insts.sort(key=lambda i: i.func == VecFunc.RES)
    check(cfg, insts, sp, gaps=[0] * len(insts))


def test_in_place():
    """ADD in place, next to its output both ways and reading an earlier VEC's output; RES in
    place (res_addr == acc_addr), shifted by one row both ways, then read by a VEC and by a RES;
    a direct RoPE writing over its own table words; ADD and RES in place with a bias (two slots
    per column); back to back."""
    cfg = FP16
    c, base = cfg.cols, cfg.vparam_param_base

    def vec(func, **kw):
        args = dict(rows=cfg.rows, acc_addr=0, act_addr=0, res_addr=0, param_addr=base)
        args.update(kw)
        return Instruction(Opcode.VEC, func=func, **args)

    insts = [
        vec(VecFunc.ADD, act_addr=8, res_addr=8),                  # in place
        vec(VecFunc.ADD, act_addr=8 + c, res_addr=8, rows=1, fmt=1),
        vec(VecFunc.ADD, act_addr=8, res_addr=8 + c, acc_addr=5),
        vec(VecFunc.REQUANT, act_addr=20, acc_addr=9, param_addr=base + 7, fmt=1),
        vec(VecFunc.ADD, act_addr=20, res_addr=20, rows=2, fmt=1),  # reads the REQUANT's output
        vec(VecFunc.RES, acc_addr=3, res_addr=3),                  # RES in place
        vec(VecFunc.RES, acc_addr=4, res_addr=3, rows=3),          # residual one row below
        vec(VecFunc.RES, acc_addr=3, res_addr=4, rows=3),          # and above
        vec(VecFunc.GLU, acc_addr=3, res_addr=4, fmt=1, direct=1, act_addr=30),
        vec(VecFunc.RES, acc_addr=3, res_addr=3, rows=1),
        vec(VecFunc.SILU, acc_addr=3, fmt=1, act_addr=30),
        vec(VecFunc.ROPE_HI, acc_addr=3, res_addr=5, act_addr=40, table_addr=42, direct=1),
        vec(VecFunc.RELU, act_addr=cfg.act_words - c, rows=3),
        vec(VecFunc.ADD, act_addr=8, res_addr=8, bias=1),          # in place, with a bias
        vec(VecFunc.ADD, act_addr=8, res_addr=8, fmt=1, bias=1, rows=2),
        vec(VecFunc.RES, acc_addr=3, res_addr=3, bias=1),
        vec(VecFunc.GELU, acc_addr=3, fmt=1, bias=1, direct=1, act_addr=30),
    ]
    rng = random.Random(11)
    sp = random_spads(cfg, rng)
    for w in range(16):  # moderate accumulators, so sums are not all saturated
        sp.acc[w] = [rng.randrange(-(1 << 30), 1 << 30) for _ in range(c)]
    measured = check(cfg, insts, sp, gaps=[0] * len(insts))
    assert measured[:3] == [cfg.rows + c + 3, 1 + c + 3, cfg.rows + c + 3]
    assert measured[5] == 3 * cfg.rows + c + 3  # RES: 2 rows read, rows written
    assert measured[-4:-2] == [cfg.rows + 2 * c + 3, 2 + 2 * c + 3]  # bias: 2 slots per column
    assert measured[-2] == 3 * cfg.rows + 2 * c + 3


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: VectorUnit("tiny"))


def test_layouts():
    assert vparam_layout().size == 32
    assert vparam_layout()["shift"].offset == 16
    assert set(vec_layout().members) == {"func", "acc_addr", "act_addr", "res_addr", "param_addr",
                                         "rows", "fmt", "direct", "table_addr", "bias"}
    unit = never_elaborated(VectorUnit(FP16))
    assert unit.w_acc.data.shape().elem_shape.elem_shape.width == FP16.acc_bits
    assert len(unit.w_acc.data) == 1 and len(unit.w_acc.data[0]) == FP16.cols
    assert unit.w_act.data[0].shape().width == 8 * FP16.act_word_bytes
