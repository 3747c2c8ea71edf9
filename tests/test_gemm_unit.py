"""The GEMM unit (hw/gemm_unit.py) in the Amaranth simulator, wired to ACT / WGT / META / ACC
memories as the tile wires them (synchronous read ports of latency 1, one ACC write port), against
the golden model:

* cycles: a GEMM started in cycle ``s`` is ``busy`` for exactly ``D`` cycles ``s .. s+D-1`` and
  ``complete`` in ``s + D - 1 + tail`` (``(D, tail)`` = :func:`mixpim.models.tile_timing.gemm_cycles`,
  the executor's start/end/complete durations agree); its ``R`` ACC rows are written in the ``R``
  cycles ending with the completion, to ``acc_addr .. acc_addr + R - 1``; ``o_pc`` / ``o_signal``
  at the completion are the GEMM's; ``idle`` / ``inflight`` follow the beats and the drains;
* data: the final ACC words equal :func:`mixpim.models.executor.run`'s for the same GEMMs (random
  scratchpads, random addresses, ``accumulate`` on and off, GEMMs back to back so that drains
  overlap the next GEMM's beats, accumulating into the tile the previous GEMM is draining);
* BitMoD configurations: a beat read every ``terms`` cycles, the ACC rows written every
  ``scale_bits`` cycles, type selectors from META (random bytes: every selector is a type);
* ``wsrc`` GEMMs (INT8 weights from ACT, two passes of nibbles): the same, mixed with normal
  GEMMs, ``busy`` for ``2 D`` cycles, WGT and META never read, the weights read on ``r_wact``;
  and the ACC words equal the exact integer product ``a @ w.T`` (plus the old ACC).
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed
from amaranth.lib.memory import Memory

from mixpim.hw.gemm_unit import GemmUnit, _fp16_to_int8, gemm_layout, wsrc_supported
from mixpim.models.config import preset
from mixpim.models.executor import pack_acc, unpack_act, wrap
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.mixpe import activation_values
from mixpim.models.vector import fp16_bits_to_int8
from mixpim.models.program import Segment
from mixpim.models.tile_array import array_params
from mixpim.models.tile_timing import gemm_cycles
from helpers import golden_run, rejects, run, to_signed

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    "tiny-fp16": TINY.replace(pe="mixpe-w4a16"),
    # FP16 activations, 3 columns, 2 rows (latency and drain differ from tiny's; no wsrc)
    "fp16-2x3": TINY.replace(pe="mixpe-w4a16", rows=2, cols=3),
    # group offsets: 6-byte META entries (random int24 offsets), zero offsets for wsrc
    "tiny-fp16-offset": TINY.replace(pe="mixpe-w4a16", group_offset=True),
    "offset-2x3": TINY.replace(rows=2, cols=3, group_offset=True),
    # BitMoD: a beat every 2 cycles, rows every scale_bits cycles; random selectors and codes
    "bitmod-fp16": TINY.replace(pe="bitmod-w4a16"),
    "bitmod3-int8-2x3": TINY.replace(pe="bitmod-w4a8", wbits=3, rows=2, cols=3, scale_bits=5),
}
READS = (Spad.ACT, Spad.WGT, Spad.META, Spad.ACC)


def word_width(cfg, spad):
    return cfg.cols * cfg.acc_bits if spad == Spad.ACC else 8 * cfg.word_bytes(spad)


class Top(Elaboratable):
    """The GEMM unit wired to one memory per scratchpad it touches."""

    def __init__(self, cfg, images):
        self.cfg = cfg
        self.gemm = GemmUnit(cfg)
        self.mems = {s: Memory(shape=word_width(cfg, s), depth=cfg.spad_words(s), init=images[s])
                     for s in READS}

    def elaborate(self, platform):
        m = Module()
        m.submodules.gemm = gemm = self.gemm
        for s, mem in self.mems.items():
            m.submodules[s.name.lower()] = mem
            port = getattr(gemm, f"r_{s.name.lower()}")
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data[0].eq(rp.data)]
        rp = self.mems[Spad.ACT].read_port()  # the second ACT read port: wsrc weights
        m.d.comb += [rp.addr.eq(gemm.r_wact.addr), rp.en.eq(gemm.r_wact.en),
                     gemm.r_wact.data[0].eq(rp.data)]
        wp = self.mems[Spad.ACC].write_port()
        w = gemm.w_acc
        m.d.comb += [wp.addr.eq(w.addr), wp.en.eq(w.en[0]), wp.data.eq(w.data[0])]
        return m


def fp16_lane(rng):
    """A finite FP16 bit pattern whose ``fp16_bits_to_int8`` is mostly not saturated or 0: an
    int8 value (the extremes often), a half-way value (rounding), a value past +-128 or any."""
    kind = rng.random()
    if kind < 0.4:
        x = rng.choice((-128, 127, rng.randint(-128, 127)))
    elif kind < 0.6:
        x = rng.randint(-128, 127) + 0.5
    elif kind < 0.8:
        x = rng.uniform(-4, 4) * 2.0 ** rng.randint(-6, 6)
    else:
        bits = rng.getrandbits(16)
        return bits & ~0x0400 if bits & 0x7C00 == 0x7C00 else bits  # exponent 31: make it 30
    return int(np.float16(x).view(np.uint16))


def images(cfg, rng):
    """Random scratchpads: {spad: (bytes for the executor, ints for the RTL memories)}. FP16
    activations are finite (inf/NaN only raise the sticky flag, tested with the array); their
    lanes are mostly near int8 values (:func:`fp16_lane`), since ``wsrc`` reads them as weights."""
    out = {}
    for s in (Spad.ACT, Spad.WGT, Spad.META):
        depth, wb = cfg.spad_words(s), cfg.word_bytes(s)
        raw = bytearray(rng.randbytes(depth * wb))
        if s == Spad.ACT and cfg.act_format == "fp16":
            raw = bytearray(b"".join(fp16_lane(rng).to_bytes(2, "little")
                                     for _ in range(depth * cfg.rows)))
        elif s == Spad.ACT:
            for i in rng.sample(range(len(raw)), len(raw) // 8):
                raw[i] = rng.choice((0x80, 0x7F))  # -128, 127
        raw = bytes(raw)
        out[s] = (raw, [int.from_bytes(raw[i * wb:(i + 1) * wb], "little") for i in range(depth)])
    lim = 1 << (cfg.acc_bits - 1)
    vals = [[rng.randrange(-lim, lim) for _ in range(cfg.cols)] for _ in range(cfg.acc_words)]
    mask = (1 << cfg.acc_bits) - 1
    ints = [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals]
    out[Spad.ACC] = (pack_acc(cfg, np.array(vals, dtype=np.int64 if cfg.acc_bits <= 62 else object)),
                     ints)
    return out


def random_gemm(cfg, rng, prev=None, wsrc=False):
    """A random GEMM; with ``wsrc`` its weights come from ACT (no META: ``meta_addr`` 0)."""
    groups = rng.choice((1, 1, 2, 3))
    beats = groups * cfg.group
    acc_addr = rng.randrange(cfg.acc_words - cfg.rows + 1)
    if prev is not None and rng.random() < 0.3:
        acc_addr = prev.acc_addr  # accumulate into (or overwrite) the tile being drained
    wgt_words = cfg.act_words if wsrc else cfg.wgt_words
    return Instruction(Opcode.GEMM, groups=groups, accumulate=rng.randint(0, 1), acc_addr=acc_addr,
                       act_addr=rng.randrange(cfg.act_words - beats + 1),
                       wgt_addr=rng.randrange(wgt_words - beats + 1),
                       meta_addr=0 if wsrc else rng.randrange(cfg.meta_words - groups + 1),
                       wsrc=int(wsrc))


def exact_acc(cfg, insts, imgs):
    """The ACC words after ``insts`` (all ``wsrc``) from the initial images, by the exact integer
    product: ``ACC = wrap([ACC +] a @ w.T)`` (``a`` in the array's units: FP16 in 2**-24)."""
    acc = np.array([[to_signed(w >> (j * cfg.acc_bits), cfg.acc_bits) for j in range(cfg.cols)]
                    for w in imgs[Spad.ACC][1]], dtype=object)
    act = unpack_act(cfg, imgs[Spad.ACT][0])
    for inst in insts:
        assert inst.wsrc
        k = inst.groups * cfg.group
        a, _ = activation_values(act[inst.act_addr:inst.act_addr + k].T, cfg.act_format)  # (rows, K)
        lanes = act[inst.wgt_addr:inst.wgt_addr + k, :cfg.cols]
        w = (lanes if cfg.act_format == "int8" else fp16_bits_to_int8(lanes)).astype(np.int64).T
        tile = a.astype(object) @ w.astype(object).T
        dst = slice(inst.acc_addr, inst.acc_addr + cfg.rows)
        acc[dst] = wrap(tile + (acc[dst] if inst.accumulate else 0), cfg.acc_bits)
    return acc


def run_rtl(cfg, insts, imgs, gaps, signals):
    """Run ``insts`` (each started ``gap`` cycles after the unit is idle again); returns the
    per-cycle trace and the final ACC words."""
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    gemm = top.gemm
    layout = gemm_layout()
    trace = {"start": [], "busy": [], "complete": [], "writes": [], "idle": [], "inflight": [],
             "reads": []}
    final = {}

    async def bench(ctx):
        cyc, i, wait = 0, 0, gaps[0] if gaps else 0
        quiet = 0
        while i < len(insts) or quiet < 4:
            idle = ctx.get(gemm.idle)
            go = i < len(insts) and idle and wait == 0
            if go:
                inst = insts[i]
                ctx.set(gemm.i_inst, layout.const({n: int(inst[n]) for n in layout.members}))
                ctx.set(gemm.i_signal, signals[i])
                ctx.set(gemm.i_pc, i)
                trace["start"].append(cyc)
            elif i < len(insts) and idle:
                wait -= 1
            ctx.set(gemm.start, go)
            _, _, busy, complete, pc, sig, inflight, wen, waddr, *reads = await ctx.tick().sample(
                gemm.busy, gemm.complete, gemm.o_pc, gemm.o_signal, gemm.inflight, gemm.w_acc.en,
                gemm.w_acc.addr, *(getattr(gemm, f"r_{n}").en for n in ("act", "wact", "wgt", "meta")))
            trace["idle"].append(idle)
            trace["reads"].append(tuple(reads))
            trace["inflight"].append(inflight)
            if busy:
                trace["busy"].append(cyc)
            if complete:
                trace["complete"].append((cyc, pc, sig))
            if wen:
                trace["writes"].append((cyc, waddr))
            assert not ctx.get(gemm.fault), f"fault at cycle {cyc}"
            if go:
                i += 1
                wait = gaps[i] if i < len(gaps) else 0
            quiet = quiet + 1 if i == len(insts) and not inflight else 0
            cyc += 1
            assert cyc < 20_000
        final["acc"] = [ctx.get(top.mems[Spad.ACC].data[a]) for a in range(cfg.acc_words)]

    run(top, bench)
    return trace, final["acc"]


def check(cfg, insts, seed=0, gaps=None):
    rng = random.Random(seed)
    imgs = images(cfg, rng)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 5, 40)) for _ in insts]
    signals = [rng.randrange(16) for _ in insts]

    # golden: the executor's timing and ACC
    segments = [Segment(s.name, 0, raw, cfg.word_bytes(s)) for s, (raw, _) in imgs.items()]
    golden, busy = golden_run(cfg, insts, segments)
    t = golden.timing
    durations = [tuple(gemm_cycles(cfg, inst.groups, inst.wsrc)) for inst in insts]
    assert [(b, int(t.complete[p] - t.end[p])) for p, b in enumerate(busy)] == durations

    trace, acc = run_rtl(cfg, insts, imgs, gaps, signals)
    starts = trace["start"]
    assert len(starts) == len(insts)
    # busy exactly in the beat cycles, completion D - 1 + tail after the start
    want_busy = [s + c for s, (d, _) in zip(starts, durations) for c in range(d)]
    assert trace["busy"] == want_busy
    want_complete = [(s + d - 1 + tail, p, signals[p])
                     for p, (s, (d, tail)) in enumerate(zip(starts, durations))]
    assert trace["complete"] == want_complete
    # the R ACC rows: written every S cycles (1; BitMoD: scale_bits), the last one in the
    # completion cycle, in row order
    p = array_params(cfg)
    S, T = p.row_interval, p.cycles_per_beat
    want_writes = [(c - (cfg.rows - 1 - r) * S, inst.acc_addr + r)
                   for (c, _, _), inst in zip(want_complete, insts) for r in range(cfg.rows)]
    assert trace["writes"] == want_writes
    # the read ports: ACT in every beat (its first cycle), then the weights from ACT (wsrc) or
    # WGT and META
    beat_of = {s + c: inst for s, (d, _), inst in zip(starts, durations, insts) for c in range(0, d, T)}
    want_reads = [(c in beat_of, c in beat_of and beat_of[c].wsrc == 1,
                   c in beat_of and not beat_of[c].wsrc, c in beat_of and not beat_of[c].wsrc)
                  for c in range(len(trace["reads"]))]
    assert trace["reads"] == want_reads
    # idle: no beats in progress; inflight: a GEMM started before this cycle has not completed
    beats = set(want_busy)
    assert all(trace["idle"][c] == (c not in beats or c in starts) for c in range(len(trace["idle"])))
    inflight = [any(s < c <= done for s, (done, _, _) in zip(starts, want_complete))
                for c in range(len(trace["inflight"]))]
    assert trace["inflight"] == inflight

    # data: every ACC word equals the executor's
    got = np.array([[to_signed(w >> (j * cfg.acc_bits), cfg.acc_bits) for j in range(cfg.cols)]
                    for w in acc], dtype=object)
    want = golden.spads["ACC"]
    bad = [a for a in range(cfg.acc_words) if got[a].tolist() != want[a].tolist()]
    assert not bad, f"ACC words {bad[:8]} differ: {got[bad[0]].tolist()} != {want[bad[0]].tolist()}"
    if all(inst.wsrc for inst in insts):
        want = exact_acc(cfg, insts, imgs)
        bad = [a for a in range(cfg.acc_words) if got[a].tolist() != want[a].tolist()]
        assert not bad, (f"ACC words {bad[:8]} differ from a @ w.T: {got[bad[0]].tolist()} != "
                         f"{want[bad[0]].tolist()}")
    return trace


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_gemms(name):
    """Normal GEMMs and, where the configuration has them, ``wsrc`` ones, in a random order."""
    cfg = CONFIGS[name]
    rng = random.Random(len(name))
    insts = []
    for _ in range(12):
        wsrc = wsrc_supported(cfg) and rng.random() < 0.5
        insts.append(random_gemm(cfg, rng, insts[-1] if insts else None, wsrc))
    assert {i.accumulate for i in insts} == {0, 1}
    assert {i.wsrc for i in insts} == ({0, 1} if wsrc_supported(cfg) else {0})
    check(cfg, insts, seed=len(name))


@pytest.mark.parametrize("name", ["tiny", "tiny-fp16", "tiny-fp16-offset"])
def test_wsrc_exact(name):
    """``wsrc`` GEMMs only: the ACC words are the exact ``a @ w.T`` (+ the old ACC), with the
    weights -128 and 127 (and, FP16, half-way values and values past +-128) in every tile."""
    cfg = CONFIGS[name]
    rng = random.Random(11)
    insts = []
    for _ in range(10):
        insts.append(random_gemm(cfg, rng, insts[-1] if insts else None, wsrc=True))
    assert {i.accumulate for i in insts} == {0, 1}
    imgs = images(cfg, random.Random(3))  # check()'s images
    act = unpack_act(cfg, imgs[Spad.ACT][0])
    for inst in insts:
        lanes = act[inst.wgt_addr:inst.wgt_addr + inst.groups * cfg.group, :cfg.cols]
        w = lanes if cfg.act_format == "int8" else fp16_bits_to_int8(lanes)
        assert {-128, 127} <= set(w.flat)
        if cfg.act_format == "fp16":
            x = lanes.view(np.float16).astype(np.float64)
            assert (x % 1 == 0.5).any() and (abs(x) > 128).any()
    check(cfg, insts, seed=3)


def test_fp16_weights_conversion():
    """The unit's FP16 -> INT8 weight conversion equals
    :func:`~mixpim.models.vector.fp16_bits_to_int8` for every exponent and sign with the
    fractions around the rounding and saturation edges (inf and NaN give 0)."""
    fracs = (0, 1, 2, 0x0FF, 0x100, 0x101, 0x1FF, 0x200, 0x201, 0x2FF, 0x300, 0x301, 0x3FE, 0x3FF,
             0x155, 0x2AA)
    patterns = [s << 15 | e << 10 | f for s in (0, 1) for e in range(32) for f in fracs]
    lanes = 32
    bits = [Signal(16, name=f"bits{i}") for i in range(lanes)]
    out = [Signal(signed(8), name=f"w{i}") for i in range(lanes)]
    m = Module()
    m.d.comb += [o.eq(_fp16_to_int8(b)) for b, o in zip(bits, out)]
    want = fp16_bits_to_int8(np.array(patterns, np.uint16)).tolist()

    async def bench(ctx):
        for base in range(0, len(patterns), lanes):
            for b, v in zip(bits, patterns[base:base + lanes]):
                ctx.set(b, v)
            got = [ctx.get(o) for o in out][:len(patterns) - base]
            assert got == want[base:base + lanes], f"patterns {patterns[base]:#06x}.."

    run(m, bench, clock=False)


def test_back_to_back_accumulation():
    """Four GEMMs with no gap on one tile (first overwrites, the rest accumulate): each starts in
    the cycle after the previous one's last beat, while that one drains; the result is the sum."""
    cfg = TINY
    insts = [Instruction(Opcode.GEMM, groups=1, act_addr=32 * i, wgt_addr=32 * i, meta_addr=i,
                         acc_addr=3, accumulate=int(i > 0)) for i in range(4)]
    trace = check(cfg, insts, seed=5, gaps=[0] * 4)
    d, tail = gemm_cycles(cfg, insts[0].groups)
    assert trace["start"] == [0, d, 2 * d, 3 * d]
    assert [c for c, _, _ in trace["complete"]] == [d - 1 + tail + i * d for i in range(4)]


@pytest.mark.parametrize("name", ["tiny", "tiny-fp16"])
def test_back_to_back_mixed(name):
    """Normal and ``wsrc`` GEMMs alternating with no gap on one tile, all but the first
    accumulating: each starts the cycle after the previous one's last beat (``2 D`` beats for
    wsrc), while that one drains."""
    cfg = CONFIGS[name]
    insts = []
    for i, wsrc in enumerate((0, 1, 1, 0, 1, 0, 0, 1)):
        insts.append(Instruction(Opcode.GEMM, groups=1 + i % 2, act_addr=20 * i, wgt_addr=24 * i + 3,
                                 meta_addr=0 if wsrc else i, acc_addr=5, accumulate=int(i > 0),
                                 wsrc=wsrc))
    trace = check(cfg, insts, seed=6, gaps=[0] * len(insts))
    starts = [0]
    for inst in insts[:-1]:
        starts.append(starts[-1] + gemm_cycles(cfg, inst.groups, inst.wsrc).busy)
    assert trace["start"] == starts


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: GemmUnit("tiny"))
