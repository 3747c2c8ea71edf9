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
  overlap the next GEMM's beats, accumulating into the tile the previous GEMM is draining).
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory

from mixpim.hw.gemm_unit import GemmUnit, gemm_layout
from mixpim.models.config import preset
from mixpim.models.executor import pack_acc
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.program import Segment
from mixpim.models.tile_timing import gemm_cycles
from helpers import golden_run, rejects, run, to_signed

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    # FP16 activations, 3 columns, 2 rows (latency and drain differ from tiny's)
    "fp16-2x3": TINY.replace(pe="mixpe-w4a16", rows=2, cols=3),
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
        wp = self.mems[Spad.ACC].write_port()
        w = gemm.w_acc
        m.d.comb += [wp.addr.eq(w.addr), wp.en.eq(w.en[0]), wp.data.eq(w.data[0])]
        return m


def images(cfg, rng):
    """Random scratchpads: {spad: (bytes for the executor, ints for the RTL memories)}. FP16
    activations are finite (inf/NaN only raise the sticky flag, tested with the array)."""
    out = {}
    for s in (Spad.ACT, Spad.WGT, Spad.META):
        depth, wb = cfg.spad_words(s), cfg.word_bytes(s)
        raw = bytearray(rng.randbytes(depth * wb))
        if s == Spad.ACT and cfg.act_format == "fp16":
            for i in range(1, len(raw), 2):
                if raw[i] & 0x7C == 0x7C:  # exponent 31: make it 30
                    raw[i] &= ~0x04
        raw = bytes(raw)
        out[s] = (raw, [int.from_bytes(raw[i * wb:(i + 1) * wb], "little") for i in range(depth)])
    lim = 1 << (cfg.acc_bits - 1)
    vals = [[rng.randrange(-lim, lim) for _ in range(cfg.cols)] for _ in range(cfg.acc_words)]
    mask = (1 << cfg.acc_bits) - 1
    ints = [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals]
    out[Spad.ACC] = (pack_acc(cfg, np.array(vals, dtype=np.int64 if cfg.acc_bits <= 62 else object)),
                     ints)
    return out


def random_gemm(cfg, rng, prev=None):
    groups = rng.choice((1, 1, 2, 3))
    beats = groups * cfg.group
    acc_addr = rng.randrange(cfg.acc_words - cfg.rows + 1)
    if prev is not None and rng.random() < 0.3:
        acc_addr = prev.acc_addr  # accumulate into (or overwrite) the tile being drained
    return Instruction(Opcode.GEMM, groups=groups, accumulate=rng.randint(0, 1), acc_addr=acc_addr,
                       act_addr=rng.randrange(cfg.act_words - beats + 1),
                       wgt_addr=rng.randrange(cfg.wgt_words - beats + 1),
                       meta_addr=rng.randrange(cfg.meta_words - groups + 1))


def run_rtl(cfg, insts, imgs, gaps, signals):
    """Run ``insts`` (each started ``gap`` cycles after the unit is idle again); returns the
    per-cycle trace and the final ACC words."""
    top = Top(cfg, {s: ints for s, (_, ints) in imgs.items()})
    gemm = top.gemm
    layout = gemm_layout()
    trace = {"start": [], "busy": [], "complete": [], "writes": [], "idle": [], "inflight": []}
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
            _, _, busy, complete, pc, sig, inflight, wen, waddr = await ctx.tick().sample(
                gemm.busy, gemm.complete, gemm.o_pc, gemm.o_signal, gemm.inflight, gemm.w_acc.en,
                gemm.w_acc.addr)
            trace["idle"].append(idle)
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
    durations = [tuple(gemm_cycles(cfg, inst.groups)) for inst in insts]
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
    # the R ACC rows: written in the R cycles ending with the completion, in row order
    want_writes = [(c - cfg.rows + 1 + r, inst.acc_addr + r)
                   for (c, _, _), inst in zip(want_complete, insts) for r in range(cfg.rows)]
    assert trace["writes"] == want_writes
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
    return trace


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_gemms(name):
    cfg = CONFIGS[name]
    rng = random.Random(len(name))
    insts = []
    for _ in range(12):
        insts.append(random_gemm(cfg, rng, insts[-1] if insts else None))
    assert {i.accumulate for i in insts} == {0, 1}
    check(cfg, insts, seed=len(name))


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


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: GemmUnit("tiny"))
