"""The PIM unit in RTL (hw/pim_unit.py, hw/pim_gbuf.py, the PIM side of hw/dram.py and
hw/dram_rows.py, the DMA/PIM exclusion of hw/tile.py) against the golden model.

* Amaranth simulator, the unit alone on the DRAM model with an ACT and an ACC memory: random
  legal PIM instruction sequences (idle gaps between them; a PIM_WRITE / PIM_GEMV often on the
  row a PIM_ACT just opened) on ``tiny`` (dual, two PIM row buffers per bank), ``tiny`` in single
  mode and two variants (4 channels of 2 banks in 2 groups, a 4-byte bus, 2 MAC lanes, 3
  columns, 2 rows, no CAS latency, dual with one PIM row buffer; one bank of one channel with no
  DRAM latencies): per instruction the cycles ``busy`` is high equal
  :func:`mixpim.models.pim_timing.pim_cycles` at its start cycle; the final DRAM, ACC words,
  result registers and PIM row buffers equal the golden model's.
* Verilator, the whole tile (:func:`mixpim.sim.tile_cosim.run_programs`): hand-written PIM
  programs on ``tiny`` in both modes, one build per mode: every instruction, DMA traffic
  overlapping GEMVs (dual) or blocked by them (single), DRAM bytes a PIM_WRITE wrote read back by
  LOAD/STORE, results wrapping at 32 bits, rows PIM_ACT opens ahead of the GEMVs / PIM_WRITEs
  (and, in single mode, of a LOAD) that then wait for them, every PIM_RANGE / SPAD_RANGE error,
  and seeded random programs with PIM instructions; every output word and every status counter
  equal to golden.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from mixpim.hw.dram import DramModel, bank_word
from mixpim.hw.pim_unit import PimUnit, pim_layout
from mixpim.models.config import preset
from mixpim.models.dram_timing import DMA_SETUP_CYCLES, DramTiming, dma_cycles
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, UnitMask
from mixpim.models.pim import PIM_OPS, PimState, apply_pim, pim_row_addr
from mixpim.models.pim_timing import PIM_SETUP_CYCLES, pim_cycles
from mixpim.models.program import Segment
from mixpim.models.tile_timing import check_instruction
from helpers import TINY_SINGLE, drive_unit, golden_run, run
from helpers import (pim_act as act, pim_gbuf as gbuf, pim_gemv as gemv, pim_read as read,
                     pim_write as write)

TINY = preset("tiny")
CONFIGS = {
    "dual": TINY,   # two PIM row buffers per bank
    "single": TINY_SINGLE,   # one row buffer, the DMA's (on the baseline PE: a shared build)
    # 4 channels of 2 banks in 2 groups on a 4-byte bus, 2 lanes, 3 columns (a value's ACC
    # word is not a power of two of values), 2 rows (ACT words of 2 bytes), no CAS latency, a
    # tight activation window, slow same-group columns; dual mode with one PIM row buffer
    "odd": TINY.replace(rows=2, cols=3, dram_channels=4, dram_banks=2, dram_bank_groups=2,
                        dram_rows=64, dram_row_bytes=64, dram_bus_bytes=4, pim_lanes=2,
                        pim_gbuf_bytes=64, pim_res_regs=8, t_rcd=2, t_rp=4, t_cl=0, t_ras=9,
                        t_faw=7, t_ccd_s=1, t_ccd_l=3, pim_row_buffers=1),
    # one channel of one bank, a MAC step a whole bus word, a buffer of one access, one register,
    # every DRAM latency 0
    "one-bank": TINY.replace(dram_channels=1, dram_banks=1, dram_bank_groups=1, dram_rows=32,
                             dram_row_bytes=64, dram_bus_bytes=16, pim_lanes=16,
                             pim_gbuf_bytes=16, pim_res_regs=1, t_rcd=0, t_rp=0, t_cl=0,
                             t_ras=0, t_faw=0, pim_mode="single", pim_row_buffers=1),
}
OPERANDS_LO = 24
I = Instruction
HALT = I(Opcode.HALT)
DMA, PIM = UnitMask.DMA, UnitMask.PIM


# -- the unit in the Amaranth simulator -------------------------------------------------------

class Top(Elaboratable):
    """The PIM unit wired to the DRAM model, an ACT memory (read port, latency 1) and an ACC
    memory (write port), as the tile wires them."""

    def __init__(self, cfg, dram_image, act_ints):
        self.cfg = cfg
        self.pim = PimUnit(cfg)
        self.dram = DramModel(cfg, dram_image)
        self.act = Memory(shape=8 * cfg.word_bytes(Spad.ACT), depth=cfg.act_words, init=act_ints)
        self.acc = Memory(shape=cfg.cols * cfg.acc_bits, depth=cfg.acc_words, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.pim = pim = self.pim
        m.submodules.dram = self.dram
        m.submodules.act = self.act
        m.submodules.acc = self.acc
        wiring.connect(m, pim.dram, self.dram.pim)
        rp = self.act.read_port()
        wp = self.acc.write_port()
        m.d.comb += [rp.addr.eq(pim.r_act.addr), rp.en.eq(pim.r_act.en),
                     pim.r_act.data[0].eq(rp.data),
                     wp.addr.eq(pim.w_acc.addr), wp.en.eq(pim.w_acc.en[0]),
                     wp.data.eq(pim.w_acc.data[0])]
        return m


def _pick(rng, hi, edge=0.3):
    """0 .. hi, often hi."""
    return hi if rng.random() < edge else rng.randint(0, hi)


def random_pim(cfg, rng, rows=(0, 1, 2, 5)):
    """A random legal PIM instruction of ``cfg`` (rows from ``rows``, so rows hit and miss)."""
    nch, nb, lanes = cfg.dram_channels, cfg.dram_banks, cfg.pim_lanes
    gbuf, row_bytes, regs = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_res_regs
    while True:
        op = rng.choice(PIM_OPS + (Opcode.PIM_GEMV,))   # GEMVs twice as often: most rejected
        chans = rng.randint(1, nch)
        kw = {"ch": rng.randint(0, nch - chans), "chans": chans}
        if op == Opcode.PIM_GBUF:
            packed = rng.random() < 0.5 or chans > cfg.rows
            length = rng.randint(1, min(rng.choice((8, 24, gbuf)), gbuf))
            words = -(-length // cfg.rows) if packed else length
            kw.update(packed=packed, len=length, gaddr=rng.randint(0, gbuf - length),
                      lane=0 if packed else rng.randint(0, cfg.rows - chans),
                      act_stride=rng.choice((0, 0, 1, words, words + rng.randint(0, 5))))
            reach = words + (chans - 1) * kw["act_stride"]
            kw["act_addr"] = rng.randint(0, max(0, cfg.act_words - reach))
        elif op == Opcode.PIM_WRITE:
            length = rng.randint(1, min(rng.choice((4, 20, gbuf)), gbuf, row_bytes))
            kw.update(bank=rng.randint(0, nb - 1), row=rng.choice(rows), len=length,
                      col=rng.randint(0, row_bytes - length), gaddr=rng.randint(0, gbuf - length))
        elif op == Opcode.PIM_GEMV:
            banks = rng.randint(1, nb)
            bcast = rng.random() < 0.5
            length = lanes * rng.randint(1, rng.choice((2, 4, 16)))
            n = rng.randint(1, rng.choice((2, 4, 8)))
            elems, nres = (banks * n, length) if bcast else (length, n)
            if n * length > row_bytes or elems > gbuf or nres > regs:
                continue
            gaddr = rng.randint(0, gbuf - elems)
            kw.update(bank=rng.randint(0, nb - banks), banks=banks, row=rng.choice(rows),
                      col=lanes * rng.randint(0, (row_bytes - n * length) // lanes),
                      gaddr=gaddr if bcast else gaddr // lanes * lanes, len=length, n=n,
                      res=rng.randint(0, regs - nres), bcast=bcast,
                      accumulate=rng.random() < 0.5)
        elif op == Opcode.PIM_ACT:
            banks = rng.randint(1, nb)
            kw.update(bank=rng.randint(0, nb - banks), banks=banks, row=rng.choice(rows))
        else:
            banks = rng.randint(1, nb)
            n = rng.randint(1, regs)
            reduce_ = rng.random() < 0.5
            words = -(-(n if reduce_ else banks * n) // cfg.cols)
            kw.update(bank=rng.randint(0, nb - banks), banks=banks, n=n,
                      res=rng.randint(0, regs - n), reduce=reduce_,
                      word_stride=rng.choice((0, 1, 1, 2)),
                      chan_stride=rng.choice((0, 1, words, words + 2)))
            reach = (chans - 1) * kw["chan_stride"] + (words - 1) * kw["word_stride"] + 1
            if reach > cfg.acc_words:
                continue
            kw["acc_addr"] = rng.randint(0, cfg.acc_words - reach)
        inst = I(op, **kw)
        if check_instruction(cfg, inst) is None:
            return inst


def random_sequence(cfg, rng, count):
    """``count`` random legal PIM instructions, a PIM_WRITE / PIM_GEMV right after a PIM_ACT
    often on its row (opened ahead, perhaps still opening), then a PIM_READ of the sum of every
    result register over the banks."""
    insts = []
    for _ in range(count):
        inst = random_pim(cfg, rng)
        if (insts and insts[-1].op == Opcode.PIM_ACT and rng.random() < 0.7
                and inst.op in (Opcode.PIM_WRITE, Opcode.PIM_GEMV)):
            inst = inst.replace(row=insts[-1].row)
        insts.append(inst)
    words = -(-cfg.pim_res_regs // cfg.cols)
    return insts + [read(ch=0, chans=cfg.dram_channels, bank=0, banks=cfg.dram_banks, res=0,
                         n=cfg.pim_res_regs, reduce=1, chan_stride=words, word_stride=1)]


def rtl_run(cfg, insts, dram_image, act_ints, gaps):
    """Run ``insts`` on the unit: busy cycles of each, the final DRAM bytes, ACC words (ints),
    result registers (channels, banks, registers) and PIM open rows (one per row buffer, the
    model's ``RowState.open_rows`` order)."""
    top = Top(cfg, dram_image, act_ints)
    unit = top.pim
    size = pim_layout().size
    final = {}

    async def bench(ctx):
        def issue(inst):
            ctx.set(unit.i_opcode, int(inst.op))
            ctx.set(unit.i_inst.as_value(), (inst.encode() >> OPERANDS_LO) & ((1 << size) - 1))

        final["busy"] = await drive_unit(ctx, unit, insts, gaps, issue, limit=100_000)
        bus = cfg.dram_bus_bytes
        mems = top.dram.memories
        words = [ctx.get(mems[i].data[w])
                 for i, w in (bank_word(cfg, b) for b in range(cfg.dram_bytes // bus))]
        final["dram"] = b"".join(w.to_bytes(bus, "little") for w in words)
        final["acc"] = [ctx.get(top.acc.data[i]) for i in range(cfg.acc_words)]
        final["res"] = np.array(unit.res_values(ctx)).reshape(
            cfg.dram_channels, cfg.dram_banks, cfg.pim_res_regs)
        rows = top.dram.pim_rows
        final["open_rows"] = [ctx.get(rows.open_row[i]) if ctx.get(rows.open_valid[i]) else -1
                              for i in range(len(rows.open_row))]

    run(top, bench)
    return final


def acc_ints(cfg, acc):
    """ACC words (words, cols) as the memory's integers."""
    mask = (1 << cfg.acc_bits) - 1
    return [sum((int(v) & mask) << (j * cfg.acc_bits) for j, v in enumerate(w)) for w in acc]


def check_unit(cfg, insts, seed):
    rng = random.Random(seed)
    dram_image = rng.randbytes(cfg.dram_bytes)
    wb = cfg.word_bytes(Spad.ACT)
    act = np.frombuffer(rng.randbytes(cfg.act_words * wb), np.uint8).reshape(cfg.act_words, wb)
    gaps = [rng.choice((0, 0, 0, 1, 4, 20)) for _ in insts]
    _, golden, back_to_back = compare_unit(cfg, insts, dram_image, act, gaps)
    return golden, back_to_back


def compare_unit(cfg, insts, dram_image, act, gaps):
    """Run ``insts`` (``gaps`` idle cycles before each) on the RTL unit and on the golden model
    from DRAM ``dram_image`` and ACT words ``act`` ((words, word_bytes) uint8); assert busy
    cycles, result registers, open rows, DRAM and ACC agree. Returns ``(rtl state, golden run,
    back-to-back durations)``."""
    wb = cfg.word_bytes(Spad.ACT)
    act_ints = [int.from_bytes(w.tobytes(), "little") for w in act]
    golden, back_to_back = golden_run(cfg, insts, [Segment("dram", 0, dram_image),
                                                   Segment("ACT", 0, act.tobytes(), wb)])
    timing, t, expected = DramTiming(cfg), 0, []
    for inst, gap in zip(insts, gaps):
        t += gap
        expected.append(pim_cycles(timing, t, inst))
        t += expected[-1]

    # the result registers: the golden semantics on their own
    state = PimState(cfg)
    dram = np.frombuffer(dram_image, np.uint8).copy()
    acc = np.zeros((cfg.acc_words, cfg.cols), np.int64)
    for inst in insts:
        apply_pim(cfg, state, dram, act, acc, lambda v: v, inst)

    got = rtl_run(cfg, insts, dram_image, act_ints, gaps)
    assert got["busy"] == expected
    assert (got["res"] == state.res).all()
    assert got["open_rows"] == timing.pim_rows.open_rows
    assert got["dram"] == golden.dram.tobytes()
    assert got["acc"] == acc_ints(cfg, golden.spads["ACC"])
    return got, golden, back_to_back


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_random_pim_sequences(name, seed):
    cfg = CONFIGS[name]
    rng = random.Random(seed)
    insts = random_sequence(cfg, rng, 40)
    assert Opcode.PIM_ACT in {i.op for i in insts}
    golden, _ = check_unit(cfg, insts, seed)
    assert golden.spads["ACC"].any()


def test_pim_act_opens_ahead_on_the_unit():
    # PIM_ACT of a row where the buffer holds another one (a precharge first), then at once a
    # GEMV of it: the row is held but still opening (t_rcd after the G_ACT); one of the other
    # parity while the first row's buffer serves a GEMV (two buffers); over a subset of the
    # GEMV's banks and channels; a PIM_WRITE at once on a row opening; PIM_ACT of a row already
    # open (no G_ACT)
    for name in ("dual", "single", "odd"):
        cfg = CONFIGS[name]
        nb = cfg.dram_banks
        insts = [
            gbuf(ch=0, chans=2, len=32, act_addr=0),
            act(ch=0, chans=2, bank=0, banks=nb, row=2),
            act(ch=0, chans=2, bank=0, banks=nb, row=4),                       # precharges 2
            gemv(ch=0, chans=2, bank=0, banks=nb, row=4, len=8, n=2, res=0),   # waits for 4
            act(ch=0, chans=1, bank=1, banks=1, row=5),
            gemv(ch=0, chans=2, bank=0, banks=nb, row=4, len=8, n=2, res=2, accumulate=1),
            gemv(ch=0, chans=2, bank=0, banks=nb, row=5, len=8, n=1, res=4),   # part held
            act(ch=1, chans=1, bank=0, banks=nb, row=6),
            write(ch=1, chans=1, bank=1, row=6, col=3, gaddr=0, len=20),
            act(ch=1, chans=1, bank=1, banks=1, row=6),                        # open: no G_ACT
            gemv(ch=1, chans=1, bank=1, banks=1, row=6, len=4, n=4, res=4),
        ]
        for gaps in ([0] * len(insts), [1] * len(insts)):
            timing, t = DramTiming(cfg), 0
            waited = False
            for inst, gap in zip(insts, gaps):
                t += gap
                if inst.op == Opcode.PIM_GEMV and inst.row == 4:
                    entry = timing.pim_rows.entry(0, 4)
                    waited |= timing.pim_rows.t_act[entry] + cfg.t_rcd > t + PIM_SETUP_CYCLES
                cycles = pim_cycles(timing, t, inst)
                if inst.op == Opcode.PIM_ACT:   # whenever its G_ACTs happen
                    assert cycles == PIM_SETUP_CYCLES + 1
                t += cycles
            assert waited, name
        check_unit(cfg, insts, 7)


# -- the tile on Verilator ---------------------------------------------------------------------

def load(dram, words=2, spad_addr=0, spad=Spad.ACT, **kw):
    return I(Opcode.LOAD, spad=spad, spad_addr=spad_addr, dram_addr=dram, words=words, rows=1, **kw)


def store(dram, words=2, spad_addr=0, spad=Spad.ACT, **kw):
    return I(Opcode.STORE, spad=spad, spad_addr=spad_addr, dram_addr=dram, words=words, rows=1,
             **kw)


def data_segments(cfg, seed, kv_rows=(3, 9)):
    """Random ACT words and random bytes in rows ``kv_rows`` of every bank (the KV cache), plus
    the DRAM below row 1 of the channels' bank 0 (what LOAD/STORE use)."""
    rng = np.random.default_rng(seed)
    act = rng.integers(0, 256, (cfg.act_words, cfg.word_bytes(Spad.ACT)), np.uint8)
    top = max(pim_row_addr(cfg, cfg.dram_channels - 1, cfg.dram_banks - 1, max(kv_rows)) + 
              cfg.dram_row_bytes, 4096)
    dram = np.zeros(top, np.uint8)
    dram[:4096] = rng.integers(0, 256, 4096)
    for c in range(cfg.dram_channels):
        for b in range(cfg.dram_banks):
            for r in kv_rows:
                a = pim_row_addr(cfg, c, b, r)
                dram[a:a + cfg.dram_row_bytes] = rng.integers(0, 256, cfg.dram_row_bytes)
    return [Segment("ACT", 0, act.tobytes(), cfg.word_bytes(Spad.ACT)),
            Segment("dram", 0, dram.tobytes())]


def every_instruction(cfg):
    """Each PIM instruction in its variants; DRAM bytes a PIM_WRITE wrote read back by a LOAD and
    a STORE, a LOAD's bytes computed on by a GEMV."""
    r3 = pim_row_addr(cfg, 1, 2, 3)
    return [
        gbuf(ch=0, chans=2, gaddr=0, act_addr=0, len=32, lane=1),              # gather, stride 0
        gbuf(ch=0, chans=2, gaddr=32, act_addr=40, len=10, packed=1, act_stride=3),
        gbuf(ch=0, chans=2, gaddr=64, act_addr=100, len=13, lane=2, act_stride=20),
        gbuf(ch=1, chans=1, gaddr=250, act_addr=7, len=6, packed=1),           # the buffer's end
        write(ch=0, chans=2, bank=2, row=3, col=100, gaddr=32, len=10),         # 2 chunks, masked
        write(ch=0, chans=2, bank=1, row=9, col=5, gaddr=60, len=37),          # 6 chunks
        write(ch=1, chans=1, bank=3, row=20, col=250, gaddr=250, len=6),        # a new row, the end
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, col=0, gaddr=0, len=16, n=3, res=0),
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, col=96, gaddr=33, len=8, n=4, res=0,
             accumulate=1, bcast=1),                                         # bank k: 4 elements
        gemv(ch=1, chans=1, bank=1, banks=2, row=9, col=200, gaddr=4, len=12, n=2, res=10),
        gemv(ch=0, chans=2, bank=1, banks=3, row=9, col=0, gaddr=64, len=4, n=12, res=16,
             bcast=1),
        gemv(ch=0, chans=2, bank=3, banks=1, row=20, col=248, gaddr=248, len=8, n=1, res=31),
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=8, acc_addr=0, chan_stride=20, word_stride=1),
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=8, reduce=1, acc_addr=40, chan_stride=1,
             word_stride=4),
        read(ch=1, chans=1, bank=1, banks=2, res=10, n=2, acc_addr=60),
        read(ch=0, chans=2, bank=1, banks=3, res=16, n=5, acc_addr=50, chan_stride=2,
             word_stride=0, signal=DMA),                                      # overlapping words
        read(ch=0, chans=2, bank=3, banks=1, res=31, n=1, reduce=1, acc_addr=63, chan_stride=0),
        # the bytes PIM_WRITE wrote, by LOAD (into ACT) and STORE (from ACT)
        load(r3 + 96, words=4, spad_addr=200, wait=PIM),
        store(8192, words=4, spad_addr=200),
        store(0, words=4, spad=Spad.ACC, spad_addr=40),
        HALT,
    ]


def dma_traffic(cfg):
    """LOAD/STORE traffic around PIM instructions: in dual mode the GEMVs and PIM_WRITEs overlap
    it, in single mode nothing does; PIM_GBUF / PIM_READ never do. Tokens order what depends."""
    return [
        gbuf(ch=0, chans=2, gaddr=0, act_addr=0, len=16, lane=0),              # ACT from segment
        load(512, words=32, spad_addr=32),                                      # waits for GBUF
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, len=16, n=4, res=0),        # overlaps (dual)
        load(1024, words=32, spad_addr=64),
        load(1536, words=8, spad=Spad.WGT, spad_addr=0),
        gemv(ch=0, chans=2, bank=0, banks=4, row=9, len=16, n=4, res=4, bcast=1),
        write(ch=0, chans=2, bank=3, row=30, col=17, gaddr=3, len=40),
        store(2048, words=16, spad_addr=32),
        gemv(ch=1, chans=1, bank=0, banks=2, row=3, col=64, len=16, n=8, res=8,
             accumulate=1, signal=DMA),
        load(pim_row_addr(cfg, 0, 0, 3), words=8, spad_addr=100, wait=PIM),     # PIM's rows
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=16, acc_addr=0, chan_stride=16,
             word_stride=1, signal=DMA),                                      # waits for the DMA
        store(4800, words=32, spad=Spad.ACC, spad_addr=0, wait=PIM),
        load(pim_row_addr(cfg, 1, 3, 30), words=16, spad_addr=120),             # WRITE's row
        store(3072, words=16, spad_addr=120, signal=PIM),
        gemv(ch=0, chans=2, bank=0, banks=4, row=30, len=8, n=4, res=20, wait=DMA),
        read(ch=0, chans=2, bank=0, banks=4, res=20, n=4, reduce=1, acc_addr=48, chan_stride=4),
        HALT,
    ]


def wrapping(cfg):
    """Result registers past 2**31 (520 dot products of 256 x (-128 * -128) = 2**22 each) and a
    reduction that wraps again; the ACC words hold them sign-extended."""
    gemvs = [gemv(ch=0, chans=2, bank=0, banks=4, row=0, len=256, n=1, res=0, accumulate=1)] * 520
    return ([gbuf(ch=0, chans=2, len=256, act_addr=0)] + gemvs +
            [read(ch=0, chans=2, bank=0, banks=4, res=0, n=1, acc_addr=0, chan_stride=1),
             read(ch=0, chans=2, bank=0, banks=4, res=0, n=1, reduce=1, acc_addr=4, chan_stride=1),
             HALT])


def wrapping_segments(cfg):
    act = np.full((cfg.act_words, cfg.word_bytes(Spad.ACT)), 0x80, np.uint8)
    dram = np.full(pim_row_addr(cfg, 0, 0, 1), 0x80, np.uint8)   # row 0 of every bank
    return [Segment("ACT", 0, act.tobytes(), cfg.word_bytes(Spad.ACT)),
            Segment("dram", 0, dram.tobytes())]


#: (name, program, error, pc): each PIM_RANGE kind and the PIM scratchpad ranges (PIM_ACT's
#: too); an error while a PIM_ACT executes and while a GEMV executes
ERRORS = [
    ("channels", [gbuf(ch=1, chans=2), HALT], ErrorCode.PIM_RANGE, 0),
    ("buffer", [gbuf(gaddr=250), HALT], ErrorCode.PIM_RANGE, 0),
    ("lanes", [gbuf(lane=3, chans=2), HALT], ErrorCode.PIM_RANGE, 0),
    ("ACT words", [gbuf(act_addr=250), HALT], ErrorCode.SPAD_RANGE, 0),
    ("bank", [write(bank=4), HALT], ErrorCode.PIM_RANGE, 0),
    ("row", [write(row=128), HALT], ErrorCode.PIM_RANGE, 0),
    ("column", [write(col=250), HALT], ErrorCode.PIM_RANGE, 0),
    ("banks", [gemv(bank=2, banks=3), HALT], ErrorCode.PIM_RANGE, 0),
    ("len", [gemv(len=6), HALT], ErrorCode.PIM_RANGE, 0),
    ("col", [gemv(col=2), HALT], ErrorCode.PIM_RANGE, 0),
    ("gaddr", [gemv(gaddr=254), HALT], ErrorCode.PIM_RANGE, 0),
    ("row bytes", [gemv(len=128, n=3), HALT], ErrorCode.PIM_RANGE, 0),
    ("bcast buffer", [gemv(gaddr=250, bcast=1, n=2, banks=4), HALT], ErrorCode.PIM_RANGE, 0),
    ("registers", [gemv(n=33), HALT], ErrorCode.PIM_RANGE, 0),
    ("read registers", [read(res=31, n=2), HALT], ErrorCode.PIM_RANGE, 0),
    ("ACC words", [read(acc_addr=63, banks=4, n=4, word_stride=1), HALT], ErrorCode.SPAD_RANGE, 0),
    ("ACT channels", [act(ch=1, chans=2), HALT], ErrorCode.PIM_RANGE, 0),
    ("ACT banks", [act(bank=2, banks=3), HALT], ErrorCode.PIM_RANGE, 0),
    ("ACT row", [act(row=128), HALT], ErrorCode.PIM_RANGE, 0),
    # the error while the first PIM_ACT executes (it finishes; the queued GEMV never starts)
    ("ACT while a PIM_ACT executes", [act(row=3), gemv(row=3, len=64, n=4),
                                      act(row=127, bank=3), act(row=200), HALT],
     ErrorCode.PIM_RANGE, 3),
    ("while a GEMV executes", [load(0), gemv(row=5, len=64, n=4), I(Opcode.NOP),
                               read(ch=1, chans=2), HALT], ErrorCode.PIM_RANGE, 3),
]


def replay(cfg, insts, golden):
    """The golden DRAM timing replayed over the DMA and PIM instructions of a run in start order
    (the DMA first in a cycle): ``{pc: (start, DramTiming before it)}``; each replayed duration
    must be the golden one."""
    t = golden.timing
    pcs = sorted((pc for pc in t.executed
                  if insts[pc].op in (Opcode.LOAD, Opcode.STORE) + PIM_OPS),
                 key=lambda pc: (t.start[pc], insts[pc].op in PIM_OPS))
    dram, out = DramTiming(cfg), {}
    for pc in pcs:
        inst, start = insts[pc], int(t.start[pc])
        out[pc] = start, dram.copy()
        if inst.op in PIM_OPS:
            cycles = pim_cycles(dram, start, inst)
        else:
            cycles = dma_cycles(dram, start, inst.dram_addr, inst.stride, inst.rows,
                                inst.words * cfg.word_bytes(inst.spad))
        assert cycles == t.end[pc] - start + 1, pc
    return out


def pim_act_ahead(cfg):
    """PIM_ACTs open rows ahead: of the next GEMV's row where the buffers hold another one (a
    precharge first; the GEMV waits for the row), of the row after it (the other row buffer with
    two) while a GEMV computes on the first, over part of the banks; a PIM_WRITE at once on a row
    opening; DMA traffic beside them (dual mode) and a LOAD of the written bytes."""
    return [
        gbuf(ch=0, chans=2, gaddr=0, act_addr=0, len=64, lane=1),
        gemv(ch=0, chans=2, bank=0, banks=4, row=9, col=32, len=8, n=2, res=12),
        act(ch=0, chans=2, bank=0, banks=4, row=3),                           # precharges 9
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, len=16, n=4, res=0),      # 3 is opening
        act(ch=0, chans=2, bank=0, banks=4, row=4),                           # the next row
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, col=64, len=16, n=4, res=0, accumulate=1),
        load(1024, words=32, spad_addr=64),                                   # beside (dual)
        gemv(ch=0, chans=2, bank=0, banks=4, row=4, len=16, n=4, res=4),
        act(ch=0, chans=1, bank=1, banks=2, row=9),                           # part, precharge
        gemv(ch=0, chans=2, bank=0, banks=4, row=9, col=8, len=8, n=2, res=8, bcast=1),
        act(ch=1, chans=1, bank=2, banks=1, row=20),
        write(ch=1, chans=1, bank=2, row=20, col=16, gaddr=0, len=24, signal=DMA),
        load(pim_row_addr(cfg, 1, 2, 20) + 16, words=8, spad_addr=200, wait=PIM),
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=16, acc_addr=0, chan_stride=16,
             word_stride=1),
        HALT,
    ]


def pim_act_then_load(cfg):
    """A LOAD opens a row of bank 0 of channel 0; two PIM_ACTs open other rows there, the second
    (in single mode in the one row buffer) after a precharge ``t_ras`` after the first, so late;
    a LOAD of that row then hits it before it is ready and waits until ``t_rcd`` after it."""
    a, b = pim_row_addr(cfg, 0, 0, 5), pim_row_addr(cfg, 0, 0, 7)
    return [load(a, words=2, signal=PIM),
            act(ch=0, chans=1, bank=0, banks=1, row=6, wait=DMA),
            act(ch=0, chans=1, bank=0, banks=1, row=7, signal=DMA),
            load(b + 8, words=4, spad_addr=16, wait=PIM),
            HALT]


def random_pim_programs(cfg, count):
    """Seeded random programs (sim/random_program.py) with PIM instructions and no VSOFT."""
    from mixpim.sim.random_program import random_program
    out, seed = [], 0
    while len(out) < count:
        p = random_program(cfg, 5000 + seed)
        seed += 1
        ops = {i.op for i in p.instructions if isinstance(i, Instruction)}
        if ops & set(PIM_OPS) and Opcode.VSOFT not in ops:
            out.append(p)
    return out


def _assert_exact(runs):
    bad = [f"program {i}:\n{r.report()}" for i, r in enumerate(runs) if not r.ok]
    assert not bad, "RTL differs from golden:\n" + "\n".join(bad)[:4000]


@pytest.mark.parametrize("mode", ["dual", "single"])
def test_pim_programs_on_the_tile(mode):
    from mixpim.sim.tile_cosim import run_programs
    cfg = CONFIGS[mode]
    assert not check_instruction(cfg, ERRORS[-1][1][1])
    items = [(every_instruction(cfg), data_segments(cfg, 1)),
             (dma_traffic(cfg), data_segments(cfg, 2)),
             (wrapping(cfg), wrapping_segments(cfg)),
             (pim_act_ahead(cfg), data_segments(cfg, 4, kv_rows=(3, 4, 9))),
             (pim_act_then_load(cfg), data_segments(cfg, 5))]
    items += [(p, data_segments(cfg, 3)) for _, p, _, _ in ERRORS]
    randoms = random_pim_programs(cfg, 20)
    runs = run_programs(cfg, items + [(p.instructions, p.segments) for p in randoms])
    _assert_exact(runs)
    ok = runs[:5]
    for r in ok:
        assert r.golden.status.error == ErrorCode.OK and not r.golden.races
        assert r.rtl_status["busy"][3] > 0
    every, traffic, wrap, ahead, then_load = (r.golden for r in ok)
    assert every.spads["ACC"].any() and (every.spads["ACT"][200:204] != 0).any()
    # the registers wrapped: 520 * 2**22 = 2**31 + 2**25 -> -2**31 + 2**25; four of them sum
    # to 2**33 + 2**27 -> 2**27
    assert wrap.spads["ACC"][0].tolist() == [-(1 << 31) + (1 << 25)] * 4
    assert wrap.spads["ACC"][4].tolist() == [1 << 27, 0, 0, 0]
    # the first three GEMVs and the PIM_WRITE overlap LOAD/STORE in dual mode only; PIM_GBUF and
    # PIM_READ never do
    t = traffic.timing
    insts = dma_traffic(cfg)
    dma = [(t.start[pc], t.end[pc]) for pc, i in enumerate(insts)
           if i.op in (Opcode.LOAD, Opcode.STORE)]
    overlapping = {pc for pc, i in enumerate(insts) if i.op in PIM_OPS
                   and any(t.start[pc] <= e and s <= t.end[pc] for s, e in dma)}
    assert overlapping == ({2, 5, 6, 8} if mode == "dual" else set())
    # the GEMV after the first PIM_ACT waits for its row; with two PIM row buffers the next row
    # opens while that row's buffer serves the second GEMV
    insts = pim_act_ahead(cfg)
    before = replay(cfg, insts, ahead)
    start, dram = before[3]
    rs = dram.pim_rows
    assert rs.open_rows[rs.entry(0, 3)] == 3
    assert rs.t_act[rs.entry(0, 3)] + cfg.t_rcd > start + PIM_SETUP_CYCLES
    rs = before[5][1].pim_rows
    assert (rs.open_rows[rs.entry(0, 3)], rs.open_rows[rs.entry(0, 4)]) == \
        ((3, 4) if mode == "dual" else (4, 4))
    assert ahead.spads["ACC"].any() and ahead.spads["ACT"][200:208].any()
    # the LOAD after the PIM_ACT: in single mode it hits the row before it is ready
    insts = pim_act_then_load(cfg)
    start, dram = replay(cfg, insts, then_load)[3]
    if mode == "single":
        assert dram.rows.open_rows[0] == 7
        assert dram.rows.t_act[0] + cfg.t_rcd > start + DMA_SETUP_CYCLES
    else:
        assert dram.rows.open_rows[0] == 5
    for (name, _, code, pc), r in zip(ERRORS, runs[5:]):
        assert (r.golden.status.error, r.golden.status.error_pc) == (code, pc), name
    assert all(r.golden.status.error == p.expected_error
               for r, p in zip(runs[-len(randoms):], randoms))
