"""The DMA engine (hw/dma.py) and the DRAM model (hw/dram.py) in the Amaranth simulator, against
the golden model: per instruction, the cycles ``busy`` is high equal the LOAD/STORE duration of
:func:`mixpim.models.tile_timing.simulate` (and of :class:`~mixpim.models.tile_timing.DramBanks`
plus the setup), and the final DRAM and scratchpads equal :func:`mixpim.models.executor.run`'s.
Random sequences on ``tiny`` and two variants (FP16 words wider than the bus, slow timings, few
banks), and directed row hit / miss / precharge cases."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from mixpim.hw.dma import (LOAD_SPADS, STORE_SPADS, DmaEngine, SpadReadSignature, dma_layout,
                           port_lanes, word_shape)
from mixpim.hw.dram import DramModel, DramSignature
from mixpim.models.config import preset
from mixpim.models.executor import pack_acc
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.program import Segment
from mixpim.models.dram_timing import DMA_SETUP_CYCLES, DramBanks
from mixpim.models.tile_timing import check_instruction, simulate
from helpers import drive_unit, golden_run, rejects, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    # ACT words of 8 bytes on a 4-byte bus, 6-byte accumulators, slow beats, two banks
    "fp16-narrow": TINY.replace(pe="mixpe-w4a16", cols=3, dram_banks=2, dram_rows=64,
                                dram_row_bytes=64, dram_bus_bytes=4, t_rcd=2, t_rp=4, t_cl=0,
                                t_ccd=2),
    # one bank, a wide bus: every row change precharges
    "one-bank": TINY.replace(dram_banks=1, dram_rows=512, dram_row_bytes=64, dram_bus_bytes=16,
                             t_rcd=1, t_rp=1, t_cl=3, t_ccd=1),
}


def spad_image(cfg, spad, rng):
    """Random initial words of ``spad``: (bytes for the executor, ints for the RTL memory)."""
    depth = cfg.spad_words(spad)
    if spad == Spad.ACC:
        lim = 1 << (cfg.acc_bits - 1)
        vals = [[rng.randrange(-lim, lim) for _ in range(cfg.cols)] for _ in range(depth)]
        mask = (1 << cfg.acc_bits) - 1
        ints = [sum((v & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in vals]
        dtype = np.int64 if cfg.acc_bits <= 62 else object
        return pack_acc(cfg, np.array(vals, dtype=dtype)), ints
    wb = cfg.word_bytes(spad)
    raw = rng.randbytes(depth * wb)
    return raw, [int.from_bytes(raw[i * wb:(i + 1) * wb], "little") for i in range(depth)]


class Top(Elaboratable):
    """The DMA engine wired to the DRAM model and to one memory per scratchpad."""

    def __init__(self, cfg, dram_image, spad_ints):
        self.cfg = cfg
        self.dma = DmaEngine(cfg)
        self.dram = DramModel(cfg, dram_image)
        self.spads = {}
        for s in sorted(set(LOAD_SPADS) | set(STORE_SPADS)):
            width = (cfg.cols * cfg.acc_bits if s == Spad.ACC else 8 * cfg.word_bytes(s))
            self.spads[s] = Memory(shape=width, depth=cfg.spad_words(s), init=spad_ints[s])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        m.submodules.dram = self.dram
        wiring.connect(m, dma.dram, self.dram.bus)
        for s, mem in self.spads.items():
            m.submodules[f"spad_{s.name.lower()}"] = mem
            name = s.name.lower()
            lanes = port_lanes(self.cfg, s)
            if s in LOAD_SPADS:
                port = getattr(dma, f"w_{name}")
                for i in range(lanes):
                    wp = mem.write_port()
                    m.d.comb += [wp.addr.eq(port.addr + i), wp.data.eq(port.data[i]),
                                 wp.en.eq(port.en[i])]
            if s in STORE_SPADS:
                port = getattr(dma, f"r_{name}")
                for i in range(lanes):
                    rp = mem.read_port()
                    m.d.comb += [rp.addr.eq(port.addr + i), rp.en.eq(port.en),
                                 port.data[i].eq(rp.data)]
        return m


def random_dma(cfg, rng, region):
    """A random legal LOAD or STORE whose DRAM rows start below ``region`` bytes when possible."""
    while True:
        op = rng.choice((Opcode.LOAD, Opcode.STORE))
        spad = rng.choice(LOAD_SPADS if op == Opcode.LOAD else STORE_SPADS)
        wb, depth = cfg.word_bytes(spad), cfg.spad_words(spad)
        words = rng.choice((1, 1, 2, 3, rng.randint(1, max(1, 64 // wb))))
        rows = rng.choice((1, 1, 2, rng.randint(1, 6)))
        if rows * words > depth:
            continue
        length = words * wb
        stride = rng.choice((0, wb, length, length + wb * rng.randint(1, 8),
                             wb * rng.randint(0, cfg.dram_row_bytes // wb * 3)))
        dram_addr = wb * rng.randrange(max(1, region // wb))
        inst = Instruction(op, spad=spad, spad_addr=rng.randint(0, depth - rows * words),
                           dram_addr=dram_addr, words=words, rows=rows, stride=stride)
        if check_instruction(cfg, inst) is None:
            return inst


def run_rtl(cfg, insts, dram_image, spad_ints, gaps):
    """Execute ``insts`` on the RTL; returns (busy cycles per instruction, final DRAM bytes,
    final words per scratchpad)."""
    top = Top(cfg, dram_image, spad_ints)
    dma = top.dma
    layout = dma_layout()
    measured = []
    final = {}

    async def bench(ctx):
        def issue(inst):
            ctx.set(dma.i_store, inst.op == Opcode.STORE)
            ctx.set(dma.i_inst, layout.const({name: int(inst[name]) for name in layout.members}))

        measured.extend(await drive_unit(ctx, dma, insts, gaps, issue, limit=100_000))
        bus = cfg.dram_bus_bytes
        words = [ctx.get(top.dram.memory.data[i]) for i in range(cfg.dram_bytes // bus)]
        final["dram"] = b"".join(w.to_bytes(bus, "little") for w in words)
        for s, mem in top.spads.items():
            final[s] = [ctx.get(mem.data[i]) for i in range(cfg.spad_words(s))]

    run(top, bench)
    return measured, final


def check(cfg, insts, seed=0, gaps=None):
    """Run ``insts`` on the RTL and on the golden model; compare cycles and data."""
    rng = random.Random(seed)
    dram_image = rng.randbytes(cfg.dram_bytes)
    spad_bytes, spad_ints = {}, {}
    for s in sorted(set(LOAD_SPADS) | set(STORE_SPADS)):
        spad_bytes[s], spad_ints[s] = spad_image(cfg, s, rng)
    if gaps is None:
        gaps = [rng.choice((0, 0, 0, 1, 3)) for _ in insts]

    # golden: timing of every instruction, and the data
    segments = [Segment("dram", 0, dram_image)]
    segments += [Segment(s.name, 0, spad_bytes[s], cfg.word_bytes(s)) for s in spad_bytes]
    golden, expected = golden_run(cfg, insts, segments)
    banks = DramBanks(cfg)  # the same durations from the public formula, in program order
    for inst, e in zip(insts, expected):
        length = inst.words * cfg.word_bytes(inst.spad)
        assert e == DMA_SETUP_CYCLES + banks.transfer_rows(inst.dram_addr, inst.stride, inst.rows,
                                                           length)

    measured, final = run_rtl(cfg, insts, dram_image, spad_ints, gaps)
    assert measured == expected
    assert final["dram"] == golden.dram.tobytes()
    for s in spad_bytes:
        if s == Spad.ACC:
            continue  # never written by the DMA; its bytes are compared through STOREs
        wb = cfg.word_bytes(s)
        got = b"".join(w.to_bytes(wb, "little") for w in final[s])
        assert got == golden.spads[s.name].tobytes(), s.name
    return measured


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(name, seed):
    cfg = CONFIGS[name]
    rng = random.Random(seed * 1000 + len(name))
    insts = []
    for _ in range(30):
        # mostly a few DRAM rows per bank (hits, misses, precharges), sometimes anywhere
        region = rng.choice((cfg.dram_row_bytes * cfg.dram_banks * 3, cfg.dram_bytes // 2))
        insts.append(random_dma(cfg, rng, region))
    check(cfg, insts, seed=seed)


def test_row_cases():
    """Directed cases on ``tiny`` (row 256 bytes, 4 banks, bus 8; t_rcd 3, t_rp 3, t_cl 2,
    t_ccd 1; ACT words 4 bytes), with the durations written out."""
    cfg = TINY
    rb = cfg.dram_row_bytes
    act = dict(spad=Spad.ACT, spad_addr=0)
    cases = [
        # first access after reset: activate without precharge: 2 + 3 + 2 + 1
        (Instruction(Opcode.LOAD, dram_addr=0, words=2, rows=1, **act), 8),
        # same row, open: a new run (t_cl), no activate: 2 + 2 + 1
        (Instruction(Opcode.LOAD, dram_addr=8, words=2, rows=1, **act), 5),
        # another row of bank 0: precharge + activate: 2 + 3 + 3 + 2 + 1
        (Instruction(Opcode.STORE, dram_addr=rb * 4, words=2, rows=1, **act), 11),
        # bank 1 first touch, 3 beats (row not aligned to the bus: 4 + 8 + 4 bytes)
        (Instruction(Opcode.LOAD, dram_addr=rb + 4, words=4, rows=1, **act), 2 + 3 + 2 + 3),
        # crossing from bank 1 into bank 2 (fresh) : two runs
        (Instruction(Opcode.LOAD, dram_addr=2 * rb - 8, words=4, rows=1, **act),
         2 + (2 + 1) + (3 + 2 + 1)),
        # a row of bank 1 (row 0 open), then one of bank 0 (row 1 open): both hit, but every
        # change of DRAM row starts a run: 2 pieces x (t_cl + 1 beat)
        (Instruction(Opcode.STORE, dram_addr=rb, words=1, rows=2, stride=rb * 3, **act),
         2 + 2 * (2 + 1)),
        # stride 0 STORE: three rows on the same beat, one run (later rows win)
        (Instruction(Opcode.STORE, dram_addr=16, words=2, rows=3, stride=0, **act),
         2 + 3 + 3 + 2 + 3),
        # two transfer rows sharing a chunk each spend a beat on it, one run
        (Instruction(Opcode.LOAD, dram_addr=16, words=1, rows=2, stride=4, spad=Spad.ACT,
                     spad_addr=8), 2 + 2 + 2),
        # ACC store: 24-byte words, 3 beats each
        (Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=5, dram_addr=24, words=2, rows=1),
         2 + 2 + 6),
    ]
    insts = [c[0] for c in cases]
    measured = check(cfg, insts, seed=7, gaps=[0] * len(insts))
    assert measured == [c[1] for c in cases]


def test_back_to_back_and_banks_persist():
    """Instructions start in the cycle after the previous ``done``; a long contiguous LOAD
    crossing more DRAM rows than banks (later pieces of a bank precharge)."""
    cfg = TINY
    rb = cfg.dram_row_bytes
    insts = [
        Instruction(Opcode.LOAD, spad=Spad.WGT, spad_addr=0, dram_addr=rb - 6, words=200, rows=1),
        Instruction(Opcode.LOAD, spad=Spad.META, spad_addr=3, dram_addr=12 * 7, words=30, rows=2,
                    stride=12 * 100),
        Instruction(Opcode.LOAD, spad=Spad.VPARAM, spad_addr=100, dram_addr=rb * 2, words=7,
                    rows=4, stride=28),
        Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=250, dram_addr=rb * 6 - 4, words=6,
                    rows=1),
    ]
    check(cfg, insts, seed=3, gaps=[0] * len(insts))


def test_signatures():
    cfg = TINY
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: DmaEngine("tiny"))
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: DramModel("tiny"))
    rejects(TypeError, "image must be bytes-like, not list", lambda: DramModel(cfg, [1]))
    rejects(ValueError, "image must fit the DRAM (262144 bytes), not 262145 bytes",
            lambda: DramModel(cfg, bytes(cfg.dram_bytes + 1)))
    dma = DmaEngine(cfg)
    dma._MustUse__silence = True
    assert dma.dram.signature.members == DramSignature(cfg).members
    assert port_lanes(cfg, Spad.WGT) == 4 and port_lanes(cfg, Spad.META) == 1
    assert isinstance(dma.r_acc.signature, SpadReadSignature)
    assert len(dma.w_act.data.as_value()) == 2 * 32
    assert word_shape(cfg, Spad.ACC).size == cfg.cols * cfg.acc_bits
    assert set(dma_layout().members) == {"spad", "spad_addr", "dram_addr", "words", "rows", "stride"}
    # the first DMA after reset: setup + activate (no precharge) + CAS + one beat
    t = simulate(cfg, [Instruction(Opcode.LOAD, spad=Spad.ACT, words=1, rows=1),
                       Instruction(Opcode.HALT)])
    assert t.end[0] - t.start[0] + 1 == DMA_SETUP_CYCLES + 3 + 2 + 1
