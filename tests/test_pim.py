"""The PIM unit in the golden model (docs/pim.md): what each instruction computes (against plain
loops written from the contract), hand-derived cycles, dual vs single row-buffer mode, every
PIM_RANGE check, and FP16 tiles (``FP16``: ``CFG`` with FP16 activations), whose PIM_GBUF converts
the FP16 ACT lanes to INT8: the same results and cycles as an INT8 tile on integer data, and the
conversion's edge cases (rounding half up, saturation, inf/NaN).

Configuration: the ``tiny`` preset with one PIM row buffer per bank unless a test says otherwise
(``TWO``: tiny's own two): 2 channels x 4 banks (2 bank groups) x 128 rows of 256 bytes, 8-byte
bus, t_rcd 3, t_rp 3, t_cl 2, t_ras 8, t_faw 12, t_ccd_s 1, t_ccd_l 2; 4 MAC lanes per bank,
256-byte global buffers, 32 result registers; a 4x4 INT8 array (ACT words of 4 lanes, ACC words
of 4 values).
"""

import numpy as np
import pytest

from mixpim.models.config import preset
from mixpim.models.executor import run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, UnitMask
from mixpim.models.pim import pim_row_addr
from mixpim.models.vector import int8_to_fp16_bits
from mixpim.models.program import Segment
from mixpim.models.tile_timing import check_instruction, simulate
from helpers import (pim_act as act_, pim_gbuf as gbuf, pim_gemv as gemv, pim_read as read,
                     pim_write as write)

TWO = preset("tiny")
CFG = TWO.replace(pim_row_buffers=1)
FP16 = CFG.replace(pe="mixpe-w4a16")
I = Instruction
HALT = I(Opcode.HALT)


def load(dram=0, words=2, spad_addr=0, **kw):
    return I(Opcode.LOAD, spad=Spad.ACT, spad_addr=spad_addr, dram_addr=dram, words=words, rows=1,
             **kw)


def times(r, pc):
    return int(r.start[pc]), int(r.end[pc])


# -- semantics ---------------------------------------------------------------------------------

def reference(cfg, act, dram, program):
    """The PIM instructions of ``program`` applied with plain loops, straight from docs/pim.md:
    returns the ACC words (dict word -> list of values) the PIM_READs write."""
    gb = np.zeros((cfg.dram_channels, cfg.pim_gbuf_bytes), np.int64)
    res = np.zeros((cfg.dram_channels, cfg.dram_banks, cfg.pim_res_regs), np.int64)
    dram = dram.copy()
    acc = {}

    def s8(x):
        return int(x) - 256 if int(x) >= 128 else int(x)

    def s32(x):
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x >= 1 << 31 else x

    for inst in program:
        if inst.op == Opcode.PIM_GBUF:
            for j in range(inst.chans):
                for i in range(inst.len):
                    if inst.packed:
                        w = inst.act_addr + j * inst.act_stride + i // cfg.rows
                        v = act[w][i % cfg.rows]
                    else:
                        v = act[inst.act_addr + j * inst.act_stride + i][inst.lane + j]
                    gb[inst.ch + j, inst.gaddr + i] = s8(v)
        elif inst.op == Opcode.PIM_WRITE:
            for j in range(inst.chans):
                base = pim_row_addr(cfg, inst.ch + j, inst.bank, inst.row) + inst.col
                for i in range(inst.len):
                    dram[base + i] = gb[inst.ch + j, inst.gaddr + i] & 0xFF
        elif inst.op == Opcode.PIM_GEMV:
            for j in range(inst.chans):
                c = inst.ch + j
                for b in range(inst.bank, inst.bank + inst.banks):
                    base = pim_row_addr(cfg, c, b, inst.row) + inst.col
                    row = [s8(x) for x in dram[base:base + inst.n * inst.len]]
                    if inst.bcast:  # the k-th bank takes buffer elements k*n .. k*n + n - 1
                        k = b - inst.bank
                        out = [sum(gb[c, inst.gaddr + k * inst.n + t] * row[t * inst.len + e]
                                   for t in range(inst.n)) for e in range(inst.len)]
                    else:
                        out = [sum(row[r * inst.len + i] * gb[c, inst.gaddr + i] for i in range(inst.len))
                               for r in range(inst.n)]
                    for k, v in enumerate(out):
                        old = res[c, b, inst.res + k] if inst.accumulate else 0
                        res[c, b, inst.res + k] = s32(old + v)
        elif inst.op == Opcode.PIM_READ:
            for j in range(inst.chans):
                c = inst.ch + j
                regs = [[res[c, b, inst.res + r] for r in range(inst.n)]
                        for b in range(inst.bank, inst.bank + inst.banks)]
                vals = ([s32(sum(col)) for col in zip(*regs)] if inst.reduce
                        else [v for bank in regs for v in bank])
                vals += [0] * (-len(vals) % cfg.cols)
                for w in range(len(vals) // cfg.cols):
                    acc[inst.acc_addr + j * inst.chan_stride + w * inst.word_stride] = \
                        vals[w * cfg.cols:(w + 1) * cfg.cols]
    return acc, dram


def contract_data(cfg, seed):
    """Random INT8 ACT words (64, rows) and a DRAM whose row 3 of every bank is random."""
    rng = np.random.default_rng(seed)
    act = rng.integers(-128, 128, (64, cfg.rows)).astype(np.int8)
    dram = np.zeros(cfg.dram_bytes, np.uint8)
    for c in range(2):
        for b in range(4):
            a = pim_row_addr(cfg, c, b, 3)
            dram[a:a + 256] = rng.integers(0, 256, 256)
    return act, dram


def contract_program():
    """Every PIM instruction in its variants (gather and packed, dot and bcast, reduce or not)."""
    return [
        gbuf(ch=0, chans=2, gaddr=0, act_addr=0, len=32, lane=1),            # gather, lanes 1, 2
        gbuf(ch=0, chans=2, gaddr=32, act_addr=40, len=10, packed=1, act_stride=3),
        write(ch=0, chans=2, bank=2, row=3, col=100, gaddr=32, len=10),       # overwrite part of a row
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, col=0, gaddr=0, len=16, n=3, res=0),
        gemv(ch=0, chans=2, bank=0, banks=4, row=3, col=96, gaddr=32, len=8, n=4, res=0,
             accumulate=1, bcast=1),                                          # bcast onto regs 0..7
        gemv(ch=1, chans=1, bank=1, banks=2, row=3, col=200, gaddr=4, len=12, n=2, res=10),
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=8, acc_addr=0, chan_stride=20, word_stride=1),
        read(ch=0, chans=2, bank=0, banks=4, res=0, n=8, reduce=1, acc_addr=40, chan_stride=1,
             word_stride=4),
        read(ch=1, chans=1, bank=1, banks=2, res=10, n=2, acc_addr=60),
        HALT,
    ]


@pytest.mark.parametrize("mode", ["dual", "single"])
def test_pim_instructions_compute_what_the_contract_says(mode):
    cfg = CFG.replace(pim_mode=mode)
    act, dram = contract_data(cfg, 1)
    program = contract_program()
    segs = [Segment("ACT", 0, act.tobytes(), cfg.act_word_bytes), Segment("dram", 0, dram.tobytes())]
    r = run(cfg, program, segs)
    assert r.status.error == ErrorCode.OK and not r.races
    want, want_dram = reference(cfg, act, dram, program[:-1])
    assert len(want) == 2 * 8 + 4 + 1
    for w, vals in want.items():
        assert r.spads["ACC"][w].tolist() == vals, w
    assert np.array_equal(r.dram, want_dram)
    assert any(any(v) for v in want.values())
    # the PIM_WRITE's bytes are an output, like a STORE's
    assert {(s.base, len(s.data)) for s in r.outputs} == {
        (pim_row_addr(cfg, c, 2, 3) + 100, 10) for c in range(2)}


def test_results_wrap_at_32_bits():
    # 64 products of -128 * -128 = 2**14 summed 2**17 times through accumulate would exceed 2**31;
    # one dot of 256 bytes of -128 against -128 is 2**22; 512 accumulations: 2**31 -> wraps to -2**31
    cfg = CFG
    dram = np.zeros(cfg.dram_bytes, np.uint8)
    a = pim_row_addr(cfg, 0, 0, 0)
    dram[a:a + 256] = 0x80
    act = np.full((256, cfg.rows), -128, np.int8)
    prog = [gbuf(len=256, act_addr=0)] + [gemv(len=256, accumulate=1)] * 512 + [read(), HALT]
    r = run(cfg, prog, [Segment("ACT", 0, act.tobytes(), cfg.act_word_bytes),
                        Segment("dram", 0, dram.tobytes())])
    assert r.status.error == ErrorCode.OK
    assert r.spads["ACC"][0].tolist() == [-(1 << 31), 0, 0, 0]


# -- timing ------------------------------------------------------------------------------------

def test_gbuf_gemv_read_cycles():
    # GBUF: 2 channels from the same ACT words (act_stride 0): 16 words read once; 2 beats of
    # 8 bytes per channel bus: D = 2 + max(16, 2 * 1) + t_cl 2 = 20 -> 1..20.
    # GEMV s = 21: per channel, bank group 0 (banks 0, 2) activated at 21, group 1 (1, 3) at 22
    # (one command per cycle); ready 22 + t_rcd 3 = 25; c0 = max(23, 25) = 25; 4 * 16 / 4 = 16
    # steps one per t_ccd_l 2: last 25 + 30 = 55 -> 21..55.
    # READ s = 56: 16 values per channel -> 4 ACC words, 2 channels: 8 writes; 64 bytes = 8 beats
    # of t_ccd_s 1: D = 2 + 8 + 2 = 12 -> 56..67. HALT done 68 -> cycles 69.
    prog = [gbuf(ch=0, chans=2, len=16),
            gemv(ch=0, chans=2, bank=0, banks=4, row=5, len=16, n=4),
            read(ch=0, chans=2, bank=0, banks=4, n=4, chan_stride=4), HALT]
    r = simulate(CFG, prog)
    assert [times(r, pc) for pc in range(3)] == [(1, 20), (21, 55), (56, 67)]
    assert (r.cycles, r.busy[3]) == (69, 20 + 35 + 12)


def test_gemv_row_hit_and_row_switch():
    # 1 bank, 1 step: GEMV row 1 s=1: act 1, ready 4, c0 = max(3, 4) = 4, D = 4 -> 1..4.
    # Same row again s=5: hit, c0 = 7, D = 3 -> 5..7.
    # Row 2 s=8: precharge max(8, t_act 1 + t_ras 8, t_last 7 + 1) = 9, act 12, ready 15,
    # c0 15: D = 8 -> 8..15.
    r = simulate(CFG, [gemv(row=1), gemv(row=1), gemv(row=2), HALT])
    assert [times(r, pc) for pc in range(3)] == [(1, 4), (5, 7), (8, 15)]


def test_write_cycles():
    # 20 bytes from column 6: chunks 0..3 of 8 bytes = 4 writes; s = 1: act 1, ready 4, first
    # max(3, 4) = 4, last 4 + 3 * t_ccd_l 2 = 10, busy through 10 + t_cl 2 = 12: 1..12
    r = simulate(CFG, [write(col=6, len=20), HALT])
    assert times(r, 0) == (1, 12)


def test_dual_mode_overlaps_gemv_with_dma_and_single_mode_blocks():
    prog = [load(0), gemv(row=1), HALT]
    # LOAD s=1: bank 0 row 0, act 1, col 4, 1..6. Dual: the GEMV (dispatched 1) starts at 2 on
    # its own row buffers: act 2, ready 5, c0 = max(4, 5) = 5, 1 step: 2..5; done 7 -> cycles 8.
    r = simulate(CFG.replace(pim_mode="dual"), prog)
    assert (times(r, 0), times(r, 1), r.cycles) == ((1, 6), (2, 5), 8)
    # Single: the GEMV waits for the LOAD (7), then closes the LOAD's row 0 of bank 0: precharge
    # max(7, 1 + t_ras 8, 4 + 1) = 9, act 12, ready 15: 7..15; cycles 17.
    r = simulate(CFG.replace(pim_mode="single"), prog)
    assert (times(r, 0), times(r, 1), r.cycles) == ((1, 6), (7, 15), 17)
    assert r.open_rows[0, 0] == 1  # the one row buffer now holds the GEMV's row
    # ... and a LOAD after it (a token orders it after the GEMV: without one the DMA, first in
    # every cycle, would start it at 7) pays for reopening row 0: s=16, precharge
    # max(16, 12 + t_ras 8, 15 + 1) = 20, act 23, ready 26, col 26, end 28
    r = simulate(CFG.replace(pim_mode="single"),
                 [load(0), gemv(row=1, signal=UnitMask.DMA), load(0, wait=UnitMask.PIM), HALT])
    assert times(r, 2) == (16, 28)


def test_bus_instructions_exclude_the_dma_in_both_modes():
    for mode in ("dual", "single"):
        cfg = CFG.replace(pim_mode=mode)
        # GBUF after a LOAD: dispatched 1, waits for the LOAD (1..6): 7..18 (D = 2 + 8 + 2)
        r = simulate(cfg, [load(0), gbuf(act_addr=16), HALT])
        assert (times(r, 0), times(r, 1)) == ((1, 6), (7, 18))
        # a LOAD after a GBUF (1..12) waits for it: s=13, act 13, col 16, end 18
        r = simulate(cfg, [gbuf(act_addr=16), load(0), HALT])
        assert (times(r, 0), times(r, 1)) == ((1, 12), (13, 18))


def test_modes_give_the_same_outputs_with_different_cycles():
    rng = np.random.default_rng(5)
    act = rng.integers(-128, 128, (64, CFG.rows)).astype(np.int8)
    dram = rng.integers(0, 256, 20480).astype(np.uint8)  # KV row 9 of bank 0: 18432..18687
    prog = [load(0, words=8), gbuf(act_addr=16, len=16), load(512, words=8, spad_addr=8),
            gemv(row=9, len=16, n=4), load(1024, words=8, spad_addr=32), read(n=4), HALT]
    segs = [Segment("ACT", 0, act.tobytes(), CFG.act_word_bytes), Segment("dram", 0, dram.tobytes())]
    dual = run(CFG.replace(pim_mode="dual"), prog, segs)
    single = run(CFG.replace(pim_mode="single"), prog, segs)
    assert dual.status.error == single.status.error == ErrorCode.OK
    assert not dual.races and not single.races
    assert np.array_equal(dual.spads["ACC"], single.spads["ACC"]) and dual.spads["ACC"][0].any()
    assert np.array_equal(dual.spads["ACT"], single.spads["ACT"])
    assert dual.status.cycles < single.status.cycles


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("inst, code, message", [
    (gbuf(ch=1, chans=2), ErrorCode.PIM_RANGE, "PIM_GBUF channels 1..2 leave the DRAM's 2 channels"),
    (gbuf(gaddr=250), ErrorCode.PIM_RANGE, "PIM_GBUF buffer bytes 250..257 leave the 256-byte buffer"),
    (gbuf(lane=3, chans=2), ErrorCode.PIM_RANGE, "PIM_GBUF ACT lanes 3..4 leave the 4 lanes of an ACT word"),
    (gbuf(act_addr=250), ErrorCode.SPAD_RANGE, "PIM_GBUF ACT words 250..257 leave the scratchpad (256 words)"),
    (write(bank=4), ErrorCode.PIM_RANGE, "PIM_WRITE bank 4 is beyond the channel's 4 banks"),
    (write(row=128), ErrorCode.PIM_RANGE, "PIM_WRITE row 128 is beyond the banks' 128 rows"),
    (write(col=250), ErrorCode.PIM_RANGE, "PIM_WRITE row bytes 250..257 leave the 256-byte row"),
    (write(gaddr=252), ErrorCode.PIM_RANGE, "PIM_WRITE buffer bytes 252..259 leave the 256-byte buffer"),
    (gemv(bank=2, banks=3), ErrorCode.PIM_RANGE, "PIM_GEMV banks 2..4 leave the channel's 4 banks"),
    (gemv(len=6), ErrorCode.PIM_RANGE, "PIM_GEMV len 6 is not a multiple of pim_lanes (4)"),
    (gemv(len=128, n=3), ErrorCode.PIM_RANGE, "PIM_GEMV row bytes 0..383 leave the 256-byte row"),
    (gemv(gaddr=254), ErrorCode.PIM_RANGE, "PIM_GEMV gaddr 254 is not a multiple of pim_lanes (4)"),
    (gemv(col=2), ErrorCode.PIM_RANGE, "PIM_GEMV col 2 is not a multiple of pim_lanes (4)"),
    (gemv(gaddr=252, len=8), ErrorCode.PIM_RANGE, "PIM_GEMV buffer bytes 252..259 leave the 256-byte buffer"),
    (gemv(gaddr=252, bcast=1, n=3, banks=2), ErrorCode.PIM_RANGE,
     "PIM_GEMV buffer bytes 252..257 leave the 256-byte buffer"),
    (gemv(bcast=1, len=36), ErrorCode.PIM_RANGE, "PIM_GEMV result registers 0..35 leave the 32 registers"),
    (gemv(n=33), ErrorCode.PIM_RANGE, "PIM_GEMV result registers 0..32 leave the 32 registers"),
    (read(res=31, n=2), ErrorCode.PIM_RANGE, "PIM_READ result registers 31..32 leave the 32 registers"),
    (read(acc_addr=63, banks=4, n=4, word_stride=1), ErrorCode.SPAD_RANGE,
     "PIM_READ ACC words 63..66 leave the scratchpad (64 words)"),
    (read(acc_addr=60, word_stride=3, banks=4, n=3), ErrorCode.SPAD_RANGE,
     "PIM_READ ACC words 66..66 leave the scratchpad (64 words)"),
    (act_(ch=1, chans=2), ErrorCode.PIM_RANGE, "PIM_ACT channels 1..2 leave the DRAM's 2 channels"),
    (act_(bank=1, banks=4), ErrorCode.PIM_RANGE, "PIM_ACT banks 1..4 leave the channel's 4 banks"),
    (act_(row=128), ErrorCode.PIM_RANGE, "PIM_ACT row 128 is beyond the banks' 128 rows"),
])
def test_pim_range_errors(inst, code, message):
    for cfg in (CFG, FP16):  # the same checks on an FP16 tile (no BAD_FIELD)
        assert check_instruction(cfg, inst) == (code, message)
        r = simulate(cfg, [inst, HALT])
        assert (r.error, r.error_pc, r.message) == (code, 0, message)


# -- FP16 tiles: PIM_GBUF converts the ACT lanes to INT8 -------------------------------------------

def fp16_segments(cfg, act, dram):
    """``act`` (int8 (words, rows)) as the ACT words of ``cfg``: bytes on an INT8 tile, the FP16
    bit patterns of the integers (what VEC fmt 0 / VSOFT INT8 write) on an FP16 one."""
    words = act if cfg.act_format == "int8" else int8_to_fp16_bits(act).astype("<u2")
    return [Segment("ACT", 0, words.tobytes(), cfg.act_word_bytes), Segment("dram", 0, dram.tobytes())]


@pytest.mark.parametrize("mode", ["dual", "single"])
def test_fp16_tiles_compute_and_time_what_int8_tiles_do(mode):
    # the contract program on the same integers: every ACC word, every DRAM byte and every
    # instruction's cycles agree (the timing counts ACT words and buffer bytes, not ACT bytes)
    int8 = CFG.replace(pim_mode=mode)
    fp16 = int8.replace(pe="mixpe-w4a16")
    assert (fp16.act_format, fp16.act_word_bytes, int8.act_word_bytes) == ("fp16", 8, 4)
    act, dram = contract_data(int8, 2)
    act[:2] = [[-128, 127, -1, 0], [127, -128, 1, -127]]   # the INT8 ends, gathered and packed
    program = contract_program()
    a, b = (run(cfg, program, fp16_segments(cfg, act, dram)) for cfg in (int8, fp16))
    assert a.status.error == b.status.error == ErrorCode.OK and not a.races and not b.races
    assert np.array_equal(a.spads["ACC"], b.spads["ACC"]) and (a.spads["ACC"] < 0).any()
    assert np.array_equal(a.dram, b.dram)
    assert {(s.base, s.data) for s in a.outputs} == {(s.base, s.data) for s in b.outputs}
    assert a.status.cycles == b.status.cycles
    assert np.array_equal(a.timing.start, b.timing.start) and np.array_equal(a.timing.end, b.timing.end)
    # the contract's plain loops on the integers give the FP16 tile's results too
    want, want_dram = reference(int8, act, dram, program[:-1])
    for w, vals in want.items():
        assert b.spads["ACC"][w].tolist() == vals, w
    assert np.array_equal(b.dram, want_dram)


def _h(x):
    return int(np.float16(x).view(np.uint16))


#: FP16 lanes (bit patterns) and the INT8 value PIM_GBUF makes of each: the integer nearest, half
#: up; saturated to -128..127; inf and NaN (any sign or payload) 0; subnormals 0
FP16_EDGES = [
    (_h(0.0), 0), (0x8000, 0), (_h(1.0), 1), (_h(-1.0), -1), (_h(127.0), 127), (_h(-128.0), -128),
    (_h(0.5), 1), (_h(-0.5), 0), (_h(2.5), 3), (_h(-2.5), -2), (_h(126.5), 127), (_h(-126.5), -126),
    (0x37FF, 0), (0xB801, -1),                                 # just below 0.5, beyond -0.5
    (_h(1.25), 1), (_h(-1.75), -2), (_h(3.75), 4),
    (_h(127.5), 127), (_h(128.0), 127), (_h(-128.5), -128), (_h(-129.0), -128), (_h(300.0), 127),
    (_h(-1000.0), -128), (0x7BFF, 127), (0xFBFF, -128),                        # +-65504
    (0x7C00, 0), (0xFC00, 0), (0x7E00, 0), (0xFE00, 0), (0x7C01, 0), (0xFFFF, 0),  # inf, NaN
    (0x0001, 0), (0x83FF, 0), (_h(6.1e-5), 0), (_h(-6.1e-5), 0),                   # tiny
    (_h(100.0), 100), (_h(-37.0), -37), (_h(-0.25), 0), (_h(64.5), 65), (_h(-64.5), -64),
]


def test_fp16_gbuf_conversion_edge_cases():
    cfg = FP16
    rows = cfg.rows
    n = len(FP16_EDGES)                          # 40 lanes: 10 ACT words
    assert n % rows == 0
    bits = np.array([b for b, _ in FP16_EDGES], np.uint16).reshape(-1, rows)
    want = np.array([v for _, v in FP16_EDGES], np.int64)
    words = n // rows
    dram = np.zeros(cfg.dram_bytes, np.uint8)
    ones = pim_row_addr(cfg, 0, 0, 7)
    dram[ones:ones + 256] = 1                    # row 7 of bank 0, channel 0: all ones
    prog = [
        gbuf(ch=0, chans=1, gaddr=0, act_addr=0, len=n, packed=1),             # lane order
        write(ch=0, chans=1, bank=1, row=2, col=0, gaddr=0, len=n),
        gbuf(ch=0, chans=2, gaddr=64, act_addr=0, len=words, lane=1),          # lanes 1 and 2
        write(ch=0, chans=2, bank=2, row=2, col=0, gaddr=64, len=words),
        gemv(ch=0, chans=1, bank=0, banks=1, row=7, col=0, gaddr=0, len=n, n=1, res=0),
        read(ch=0, chans=1, bank=0, banks=1, res=0, n=1, acc_addr=5),
        HALT]
    segs = [Segment("ACT", 0, bits.astype("<u2").tobytes(), cfg.act_word_bytes),
            Segment("dram", 0, dram.tobytes())]
    r = run(cfg, prog, segs)
    assert r.status.error == ErrorCode.OK and not r.races

    def row_bytes(ch, bank, length):
        a = pim_row_addr(cfg, ch, bank, 2)
        return r.dram[a:a + length].view(np.int8).tolist()

    assert row_bytes(0, 1, n) == want.tolist()
    lanes = want.reshape(-1, rows)
    assert row_bytes(0, 2, words) == lanes[:, 1].tolist()
    assert row_bytes(1, 2, words) == lanes[:, 2].tolist()
    assert r.spads["ACC"][5].tolist() == [int(want.sum()), 0, 0, 0]
    # an INT8 tile holding the converted values computes the same
    i8 = run(CFG, prog, [Segment("ACT", 0, want.astype(np.int8).tobytes(), CFG.act_word_bytes),
                         Segment("dram", 0, dram.tobytes())])
    assert np.array_equal(i8.dram, r.dram) and np.array_equal(i8.spads["ACC"], r.spads["ACC"])


# -- two PIM row buffers per bank and PIM_ACT ------------------------------------------------------

def test_two_row_buffers_keep_a_row_of_each_parity_open():
    # TWO, bank 0, one step each. Row 1 (buffer 1) s=1: act 1, ready 4: 1..4. Row 2 (buffer 0,
    # empty) s=5: act 5, ready 8: 5..8. Row 1 again s=9: still open in buffer 1, ready at once:
    # c0 = 11: 9..11. Row 3 (buffer 1 holds row 1) s=12: precharge max(12, 1 + t_ras 8,
    # t_last 11 + 1) = 12, act 15, ready 18: 12..18.
    r = simulate(TWO, [gemv(row=1), gemv(row=2), gemv(row=1), gemv(row=3), HALT])
    assert [times(r, pc) for pc in range(4)] == [(1, 4), (5, 8), (9, 11), (12, 18)]


def test_pim_act_opens_the_next_row_while_the_lanes_compute():
    # PIM_ACT row 1 s=1: act 1 (buffer 1), busy 3 cycles: 1..3. PIM_ACT row 2 s=4: act 4
    # (buffer 0): 4..6. GEMV row 1, 16 steps, s=7: open since 1 + t_rcd = 4: c0 = 9, last
    # 9 + 15 * 2 = 39: 7..39. GEMV row 2 s=40: open since 7: c0 = 42: 40..42. HALT done 43.
    prog = [act_(row=1), act_(row=2), gemv(row=1, len=16, n=4), gemv(row=2), HALT]
    r = simulate(TWO, prog)
    assert [times(r, pc) for pc in range(4)] == [(1, 3), (4, 6), (7, 39), (40, 42)]
    assert (r.cycles, r.busy[3]) == (44, 3 + 3 + 33 + 3)
    # one buffer: the second PIM_ACT closes row 1 (precharge max(4, 1 + 8) = 9, act 12) and the
    # first GEMV reopens it (precharge max(7, 12 + 8) = 20, act 23, ready 26, last 56)
    r = simulate(CFG, prog)
    assert [times(r, pc) for pc in range(3)] == [(1, 3), (4, 6), (7, 56)]


def test_a_row_opened_ahead_is_ready_t_rcd_after_its_activation():
    # GEMV row 1 s=1: act 1: 1..4. PIM_ACT row 3 (buffer 1 again) s=5: precharge max(5, 1 + 8,
    # 4 + 1) = 9, act 12: 5..7. GEMV row 3 s=8: open, but only from 12 + t_rcd 3 = 15: 8..15.
    r = simulate(TWO, [gemv(row=1), act_(row=3), gemv(row=3), HALT])
    assert [times(r, pc) for pc in range(3)] == [(1, 4), (5, 7), (8, 15)]


def test_a_load_waits_for_a_row_a_pim_act_is_opening_in_single_mode():
    # single: LOAD row 0 of bank 0: 1..6 (act 1, col 4). PIM_ACT row 1 of bank 0 s=7 (after the
    # LOAD: exclusive): precharge max(7, 1 + t_ras 8, 4 + 1) = 9, act 12: 7..9. The LOAD of row 1
    # (ordered after it by a token) s=10 hits the row but its column waits for 12 + t_rcd = 15;
    # one beat: busy through 15 + t_cl 2 = 17.
    single = CFG.replace(pim_mode="single")
    prog = [load(0), act_(row=1, signal=UnitMask.DMA),
            load(pim_row_addr(single, 0, 0, 1), wait=UnitMask.PIM), HALT]
    r = simulate(single, prog)
    assert [times(r, pc) for pc in range(3)] == [(1, 6), (7, 9), (10, 17)]


def test_pim_act_has_no_data_effect():
    rng = np.random.default_rng(3)
    act = rng.integers(-128, 128, (64, TWO.rows)).astype(np.int8)
    dram = rng.integers(0, 256, TWO.dram_bytes).astype(np.uint8)
    segs = [Segment("ACT", 0, act.tobytes(), TWO.act_word_bytes), Segment("dram", 0, dram.tobytes())]
    body = [gbuf(ch=0, chans=2, len=16), gemv(ch=0, chans=2, bank=0, banks=4, row=5, len=16, n=4),
            read(ch=0, chans=2, bank=0, banks=4, n=4, chan_stride=4)]
    plain = run(TWO, body + [HALT], segs)
    ahead = run(TWO, [act_(ch=0, chans=2, bank=0, banks=4, row=5)] + body + [HALT], segs)
    assert plain.status.error == ahead.status.error == ErrorCode.OK
    assert np.array_equal(plain.spads["ACC"], ahead.spads["ACC"]) and plain.spads["ACC"].any()
    assert np.array_equal(plain.dram, ahead.dram) and not ahead.races
