"""The DMA engine (hw/dma.py) and the DRAM model (hw/dram.py, hw/dram_rows.py) in the Amaranth
simulator, against the golden model: per instruction, the cycles ``busy`` is high equal
:func:`mixpim.models.dram_timing.dma_cycles` at the instruction's start cycle (idle gaps between
instructions included; with no gaps, the durations of :func:`mixpim.models.tile_timing.simulate`),
the final open rows equal the model's, and the final DRAM and scratchpads equal
:func:`mixpim.models.executor.run`'s. Random sequences on ``tiny`` and two variants (FP16 words
wider than the bus on 4 channels; one bank where every row change precharges), and directed cases
of every DRAM rule with the durations worked out by hand."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from mixpim.hw.dma import (LOAD_SPADS, STORE_SPADS, DmaEngine, SpadReadSignature, dma_layout,
                           port_lanes, word_shape)
from mixpim.hw.dram import DramHostSignature, DramModel, bank_word
from mixpim.hw.mem_bus import MemBusSignature
from mixpim.models.config import preset
from mixpim.models.executor import pack_acc
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.program import Segment
from mixpim.models.dram_timing import DMA_SETUP_CYCLES, DramTiming, dma_cycles
from mixpim.models.tile_timing import check_instruction, simulate
from helpers import drive_unit, golden_run, never_elaborated, rejects, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    # ACT words of 8 bytes on a 4-byte bus, 6-byte accumulators, 4 channels of 2 banks in 2
    # groups, slow same-group beats, no CAS latency
    "fp16-narrow": TINY.replace(pe="mixpe-w4a16", cols=3, dram_channels=4, dram_banks=2,
                                dram_bank_groups=2, dram_rows=16, dram_row_bytes=64,
                                dram_bus_bytes=4, t_rcd=2, t_rp=4, t_cl=0, t_ras=6, t_faw=10,
                                t_ccd_s=1, t_ccd_l=3),
    # one channel, one bank, a wide bus: every row change precharges (t_ras and t_faw bind)
    "one-bank": TINY.replace(dram_channels=1, dram_banks=1, dram_bank_groups=1, dram_rows=512,
                             dram_row_bytes=64, dram_bus_bytes=16, t_rcd=1, t_rp=1, t_cl=3,
                             t_ras=5, t_faw=20, t_ccd_s=1, t_ccd_l=1),
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
        # ... and strides of whole DRAM rows: a row per bank in turn (activation windows bind)
        stride = rng.choice((0, wb, length, length + wb * rng.randint(1, 8),
                             wb * rng.randint(0, cfg.dram_row_bytes // wb * 3),
                             cfg.dram_row_bytes * rng.randint(1, 2 * cfg.dram_channels
                                                              * cfg.dram_banks)))
        dram_addr = wb * rng.randrange(max(1, region // wb))
        inst = Instruction(op, spad=spad, spad_addr=rng.randint(0, depth - rows * words),
                           dram_addr=dram_addr, words=words, rows=rows, stride=stride)
        if check_instruction(cfg, inst) is None:
            return inst


def run_rtl(cfg, insts, dram_image, spad_ints, gaps):
    """Execute ``insts`` on the RTL; returns (busy cycles per instruction, final state: DRAM
    bytes, open rows (channels, banks) and words per scratchpad)."""
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
        mems = top.dram.memories
        words = [ctx.get(mems[i].data[w])
                 for i, w in (bank_word(cfg, b) for b in range(cfg.dram_bytes // bus))]
        final["dram"] = b"".join(w.to_bytes(bus, "little") for w in words)
        rows = top.dram.rows
        final["open_rows"] = np.array(
            [ctx.get(rows.open_row[i]) if ctx.get(rows.open_valid[i]) else -1
             for i in range(len(mems))]).reshape(cfg.dram_channels, cfg.dram_banks)
        for s, mem in top.spads.items():
            final[s] = [ctx.get(mem.data[i]) for i in range(cfg.spad_words(s))]

    run(top, bench)
    return measured, final


def sequential(cfg, insts, gaps):
    """:func:`dma_cycles` of ``insts`` run one after the other, instruction i starting ``gaps[i]``
    cycles after the previous one's last cycle (the first at cycle ``gaps[0]``): the durations and
    the final :class:`DramTiming`."""
    dram, t, out = DramTiming(cfg), 0, []
    for inst, gap in zip(insts, gaps):
        t += gap
        out.append(dma_cycles(dram, t, inst.dram_addr, inst.stride, inst.rows,
                              inst.words * cfg.word_bytes(inst.spad)))
        t += out[-1]
    return out, dram


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
    golden, back_to_back = golden_run(cfg, insts, segments)
    # the golden run starts each instruction the cycle after the previous one: the same durations
    # from the public formula, in program order, without gaps
    assert back_to_back == sequential(cfg, insts, [0] * len(insts))[0]
    expected, dram = sequential(cfg, insts, gaps)

    measured, final = run_rtl(cfg, insts, dram_image, spad_ints, gaps)
    assert measured == expected
    assert (final["open_rows"] == dram.open_rows).all()
    assert (dram.open_rows == golden.timing.open_rows).all()
    assert final["dram"] == golden.dram.tobytes()
    for s in spad_bytes:
        if s == Spad.ACC:  # the memory's words: cols acc_bits-bit fields, LSB first
            bits = cfg.acc_bits
            want = [sum((int(v) & ((1 << bits) - 1)) << (j * bits) for j, v in enumerate(row))
                    for row in golden.spads["ACC"]]
            assert final[s] == want, "ACC"
            continue
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
        region = rng.choice((cfg.dram_row_bytes * cfg.dram_channels * cfg.dram_banks * 3,
                             cfg.dram_bytes // 2))
        insts.append(random_dma(cfg, rng, region))
    check(cfg, insts, seed=seed)


def test_row_cases():
    """Directed cases on ``tiny``, back to back from cycle 0, with the durations worked out by hand.

    ``tiny``: rows of 256 bytes, 8-byte beats; global row g = a // 256 is channel g % 2, bank
    (g // 2) % 4 (group bank % 2), row g // 8. t_rcd 3, t_rp 3, t_cl 2, t_ras 8, t_faw 12,
    t_ccd_s 1, t_ccd_l 2; ACT words are 4 bytes. Start s, column commands c, activations act; a
    LOAD/STORE is busy from s to the last c + t_cl. "ch0 acts" is channel 0's last four
    activations; the others are long past (never) unless named.
    """
    cfg = TINY
    rb = cfg.dram_row_bytes
    act = dict(spad=Spad.ACT, spad_addr=0)
    cases = [
        # s 0, g 0 (ch0 bank0), no row open: act 0 (at the start); c = max(s + 2, act + t_rcd)
        # = 3; done 5
        (Instruction(Opcode.LOAD, dram_addr=0, words=2, rows=1, **act), 6),
        # s 6, row open (hit): c = max(8, 3 + t_ccd_l) = 8, done 10
        (Instruction(Opcode.LOAD, dram_addr=8, words=2, rows=1, **act), 5),
        # s 11, g 8 (ch0 bank0, row 1): precharge max(11, t_act 0 + 8, t_last 8 + 1) = 11, act
        # max(11 + t_rp, 0 + 1) = 14, c = 17, done 19
        (Instruction(Opcode.STORE, dram_addr=rb * 8, words=2, rows=1, **act), 9),
        # s 20, row 0 again: t_ras binds the precharge: max(20, 14 + 8, 17 + 1) = 22, act 25,
        # c 28, done 30
        (Instruction(Opcode.LOAD, dram_addr=0, words=2, rows=1, **act), 11),
        # s 31, g 1 (ch1 bank0), 3 beats (4 + 8 + 4 bytes): act 31, c 34, then one bank: t_ccd_l
        # apart, 36, 38; done 40
        (Instruction(Opcode.LOAD, dram_addr=rb + 4, words=4, rows=1, **act), 10),
        # s 41, last beat of g 1 (hit: c = max(43, 38 + 2) = 43), then g 2 (ch0 bank1, no row):
        # act at the start, 41 (look-ahead), c = max(44, 41 + 3, ch0's 28 + t_ccd_s) = 44; done 46
        (Instruction(Opcode.LOAD, dram_addr=2 * rb - 8, words=4, rows=1, **act), 6),
        # s 47, one beat in each of g 4, 6, 8, 10, 12 (ch0 banks 2, 3, 0, 1, 2; ch0 acts 0, 14,
        # 25, 41; banks 0 and 1 have row 0 open, activated 25 and 41, last used 28 and 44):
        #   bank2: act max(47, 41 + 1, 0 + 12) = 47, c max(49, 50, 44 + 1) = 50
        #   bank3: act max(47, 47 + 1, 14 + 12) = 48, c max(51, 51, 50 + 1) = 51
        #   bank0 row 1: precharge max(47, 25 + 8, 29) = 47, act max(50, 49, 25 + 12) = 50, c 53
        #   bank1 row 1: precharge max(47, 41 + 8, 45) = 49, act max(52, 51, 41 + 12) = 53
        #     (t_faw binds), c 56
        #   bank2 row 1: precharge max(47, 47 + 8, 51) = 55, act max(58, 54, 47 + 12) = 59
        #     (t_faw), c 62; done 64
        (Instruction(Opcode.STORE, dram_addr=4 * rb, words=1, rows=5, stride=2 * rb, **act), 18),
        # s 65, hits in ch0 bank0 then bank2, one bank group: c max(67, 62 + 2) = 67, then
        # 67 + t_ccd_l = 69; done 71
        (Instruction(Opcode.LOAD, dram_addr=8 * rb, words=1, rows=2, stride=4 * rb, **act), 7),
        # s 72, hits in bank0 then bank1, another group: c max(74, 69 + 2) = 74, then 74 + t_ccd_s
        # = 75; done 77
        (Instruction(Opcode.LOAD, dram_addr=8 * rb, words=1, rows=2, stride=2 * rb, **act), 6),
        # s 78, stride 0 STORE: three rows on the same beat (later rows win), ch0 bank0 row 0
        # (row 1 open: activated 50, last used 74): precharge 78, act max(81, 59 + 1, 48 + 12)
        # = 81, c 84, 86, 88; done 90
        (Instruction(Opcode.STORE, dram_addr=16, words=2, rows=3, stride=0, **act), 13),
        # s 91, two transfer rows sharing a chunk each spend a beat on it: c 93, 95; done 97
        (Instruction(Opcode.LOAD, dram_addr=16, words=1, rows=2, stride=4, spad=Spad.ACT,
                     spad_addr=8), 7),
        # s 98, ACC store: 24-byte words, 6 beats (bytes 24..71), hits: c 100, 102, .., 110;
        # done 112
        (Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=5, dram_addr=24, words=2, rows=1),
         15),
    ]
    insts = [c[0] for c in cases]
    measured = check(cfg, insts, seed=7, gaps=[0] * len(insts))
    assert measured == [c[1] for c in cases]


def test_gaps_change_durations():
    """Timing is on absolute cycles: the same STORE after an idle gap no longer waits for t_ras
    and t_ccd_l of the LOAD before it (s 0: act 0, c 3, done 5; the STORE precharges at
    max(s, 0 + t_ras, 3 + 1))."""
    cfg = TINY
    act = dict(spad=Spad.ACT, spad_addr=0)
    insts = [Instruction(Opcode.LOAD, dram_addr=0, words=2, rows=1, **act),
             Instruction(Opcode.STORE, dram_addr=8 * cfg.dram_row_bytes, words=2, rows=1, **act)]
    # back to back, s 6: precharge 8 (t_ras), act 11, c 14, done 16
    assert check(cfg, insts, gaps=[0, 0]) == [6, 11]
    # s 10: precharge 10, act 13, c 16, done 18
    assert check(cfg, insts, gaps=[0, 4]) == [6, 9]


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
    dram = DramModel(cfg)
    for x in (dram, dram.rows, *dram.memories):
        never_elaborated(x)
    assert dram.host.signature.members == DramHostSignature(cfg).flip().members
    assert len(dram.memories) == 8 and dram.memories[0].depth == 128 * 256 // 8
    # beat 32 * 3 + 5: global row 3 = channel 1, bank 1, row 0; beat 32 * 19: g 19 = ch 1,
    # bank 1, row 2
    assert bank_word(cfg, 32 * 3 + 5) == (5, 5) and bank_word(cfg, 32 * 19) == (5, 64)
    dma = DmaEngine(cfg)
    dma._MustUse__silence = True
    assert dma.dram.signature.members == MemBusSignature(cfg).members
    assert port_lanes(cfg, Spad.WGT) == 4 and port_lanes(cfg, Spad.META) == 1
    assert isinstance(dma.r_acc.signature, SpadReadSignature)
    assert len(dma.w_act.data.as_value()) == 2 * 32
    assert word_shape(cfg, Spad.ACC).size == cfg.cols * cfg.acc_bits
    assert set(dma_layout().members) == {"spad", "spad_addr", "dram_addr", "words", "rows", "stride"}
    # the first DMA after reset: activation at the start, the column command t_rcd later (the
    # setup overlaps it), then t_cl
    t = simulate(cfg, [Instruction(Opcode.LOAD, spad=Spad.ACT, words=1, rows=1),
                       Instruction(Opcode.HALT)])
    assert t.end[0] - t.start[0] + 1 == max(DMA_SETUP_CYCLES, cfg.t_rcd) + cfg.t_cl + 1
