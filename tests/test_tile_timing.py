"""The tile's cycle model (models/tile_timing.py): hand-derived cycle counts, tokens, DRAM banks,
every error code, deadlock, timing-only speed.

Every expected number is derived in a comment from the rules of docs/tile.md ("Cycle model
rules"). Unless a test says otherwise the configuration is ``CFG``: the tiny preset (a 4x4 MixPE
array with group 32, array latency = cols + 4 = 8; queue depth 4; ACT and WGT 256 words, META and
ACC 64, VPARAM 128), with a DRAM of one channel of 2 banks (2 bank groups) x 64-byte rows with
an 8-byte bus, t_rcd 3, t_rp 2, t_cl 2, t_ras 0, t_faw 0, t_ccd_s 1, t_ccd_l 1. DRAM address a:
bank (a // 64) % 2, row a // 128.
"""

import re

import numpy as np
import pytest

from mixpim.models.config import preset
from mixpim.models.errors import ConfigError
from mixpim.models.program import ProgramError
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, Unit, UnitMask, VecFunc
from mixpim.models.dram_timing import DramTiming, dma_cycles
from mixpim.models.tile_timing import check_instruction, simulate
from helpers import projection_program

CFG = preset("tiny").replace(dram_channels=1, dram_banks=2, dram_bank_groups=2, dram_rows=64,
                             dram_row_bytes=64, dram_bus_bytes=8, t_rcd=3, t_rp=2, t_cl=2, t_ras=0,
                             t_faw=0, t_ccd_s=1, t_ccd_l=1)

DMA, GEMM, VEC, PIM = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC, UnitMask.PIM


def load(dram=0, words=2, rows=1, stride=0, spad=Spad.ACT, spad_addr=0, **kw):
    return Instruction(Opcode.LOAD, spad=spad, spad_addr=spad_addr, dram_addr=dram, words=words,
                       rows=rows, stride=stride, **kw)


def gemm(groups=1, acc_addr=0, **kw):
    return Instruction(Opcode.GEMM, groups=groups, acc_addr=acc_addr, **kw)


def vec(rows=4, **kw):
    return Instruction(Opcode.VEC, func=VecFunc.REQUANT, rows=rows, param_addr=CFG.vparam_param_base,
                       **kw)


HALT = Instruction(Opcode.HALT)
SYNC = Instruction(Opcode.SYNC)
NOP = Instruction(Opcode.NOP)


def sim(insts, cfg=CFG):
    return simulate(cfg, insts)


def times(r, pc):
    return int(r.dispatch[pc]), int(r.start[pc]), int(r.end[pc]), int(r.complete[pc])


# -- dispatcher-only programs ------------------------------------------------------------------

def test_halt_alone():
    # cycle 0: the dispatcher examines HALT, every unit idle -> done in cycle 0 -> cycles = 1
    r = sim([HALT])
    assert (r.cycles, r.dispatched, r.error, r.error_pc, r.busy) == (1, 1, ErrorCode.OK, 0, (0, 0, 0, 0))


def test_nops_take_one_cycle_each():
    # NOP at 0, NOP at 1, HALT examined at 2 and done -> cycles 3
    r = sim([NOP, NOP, HALT])
    assert (r.cycles, r.dispatched) == (3, 3)
    assert r.dispatch.tolist() == [0, 1, 2]


# -- DMA and DRAM ------------------------------------------------------------------------------

def test_single_load():
    # LOAD dispatched in cycle 0, in the queue from 1, starts at s = 1.
    # 8 bytes = 1 beat: bank 0 has no open row -> activation at max(s, ...) = 1, ready 1 + t_rcd 3
    # = 4; column command at max(s + 2, 4) = 4; busy through 4 + t_cl 2 = 6: D = 6, 1..6.
    # HALT examined from cycle 1, waits; everything idle in cycle 7 -> done 7 -> cycles 8.
    r = sim([load(), HALT])
    assert times(r, 0) == (0, 1, 6, 6)
    assert (r.cycles, r.busy[Unit.DMA], r.dispatch[1]) == (8, 6, 7)


def test_row_hit_miss_and_precharge_with_state_carried_over():
    prog = [load(0), load(8), load(128), load(64), load(0), HALT]
    r = sim(prog)
    # A dram 0   s 1, bank 0 row 0, none open: act 1, col max(3, 4) = 4, end 6       -> 1..6
    # B dram 8   s 7, bank 0 row 0 open (hit): col max(9, 4 + t_ccd_l 1) = 9, end 11  -> 7..11
    # C dram 128 s 12, bank 0 row 1, row 0 open: precharge max(12, 1 + t_ras 0, 9 + 1) = 12,
    #            act 12 + t_rp 2 = 14, col max(14, 17, 9 + 1) = 17, end 19             -> 12..19
    # D dram 64  s 20, bank 1 row 0, none open: act 20, col max(22, 23, 17 + t_ccd_s 1) = 23,
    #            end 25                                                                -> 20..25
    # E dram 0   s 26, bank 0 row 0, row 1 open: precharge max(26, 14, 18) = 26, act 28,
    #            col max(28, 31, 24) = 31, end 33                                      -> 26..33
    assert [times(r, i)[1:3] for i in range(5)] == [(1, 6), (7, 11), (12, 19), (20, 25), (26, 33)]
    # dispatch: A..D at 0..3; at cycle 4 the DMA queue holds B, C, D (A left at 1) -> E at 4;
    # HALT from 5, done at 34 (all idle) -> cycles 35
    assert r.dispatch.tolist() == [0, 1, 2, 3, 4, 34]
    assert (r.cycles, r.busy[Unit.DMA]) == (35, 6 + 5 + 8 + 6 + 8)
    assert r.open_rows.tolist() == [[0, 0]]  # channel 0: bank 0 row 0 (E), bank 1 row 0 (D)


def test_activation_of_the_next_bank_overlaps_the_transfer():
    # 128 bytes from 0 = 16 beats: DRAM row 0 (bank 0, 8 beats), DRAM row 1 (bank 1, 8 beats).
    # s = 1. bank 0: act 1, ready 4, beats 4..11 (t_ccd_l 1). bank 1 is activated ahead, at
    # max(1, last activation 1 + 1) = 2, ready 5; its first beat at max(12, 5, 11 + t_ccd_s 1)
    # = 12, beats 12..19; end 19 + t_cl 2 = 21: D = 21, 1..21 (charged one after another it
    # would be 2 + 2 * (3 + 8) + 2 = 26).
    r = sim([load(words=32), HALT])
    assert times(r, 0)[1:3] == (1, 21)


MC = CFG.replace(dram_channels=2, dram_banks=2, dram_bank_groups=1, t_ras=10, t_faw=8, t_ccd_s=1,
                 t_ccd_l=3)


def test_channels_row_active_time_and_long_column_gap():
    # MC: 2 channels x 2 banks, one bank group, 64-byte rows: DRAM row g = a // 64 is channel
    # g % 2, bank (g // 2) % 2, row g // 4. Five one-beat rows 64 bytes apart from cycle 0:
    # g 0 ch0 b0: act 0, ready 3, col max(2, 3) = 3
    # g 1 ch1 b0: act 0 (channel 1's own window), ready 3, col max(4, 3) = 4
    # g 2 ch0 b1: act max(0, 0 + 1) = 1, ready 4, col max(5, 4, 3 + t_ccd_l 3) = 6
    # g 3 ch1 b1: act 1, ready 4, col max(7, 4, 4 + 3) = 7
    # g 4 ch0 b0 row 1 (row 0 open): precharge max(0, 0 + t_ras 10, 3 + 1) = 10, act 12,
    #     ready 15, col max(8, 15, 6 + 3) = 15; busy through 15 + t_cl 2 = 17: 18 cycles
    d = DramTiming(MC)
    assert dma_cycles(d, 0, 0, 64, 5, 8) == 18
    assert d.open_rows.tolist() == [[1, 0], [0, 0]]
    assert (d.t_col, d.rows.t_act[:2]) == ([15, 7], [12, 1])


def test_four_activation_window():
    # one channel of 8 banks, t_faw 20: five one-beat rows in banks 0..4 from cycle 0. The
    # activations go at 0, 1, 2, 3 (one per cycle); the fifth waits for the first + 20 = 20,
    # ready 23, col 23 (the others at 3, 4, 5, 6); end 23 + 2: 26 cycles
    cfg = CFG.replace(dram_banks=8, dram_rows=16, t_faw=20)
    d = DramTiming(cfg)
    assert dma_cycles(d, 0, 0, 64, 5, 8) == 26
    assert d.rows.acts[0] == [1, 2, 3, 20]


def reference_transfer(cfg, state, start, starts, length):
    """An independent beat-by-beat reading of docs/tile.md's DRAM rules (no pieces, no merging):
    ``state`` is {"open", "act", "last": dict per (ch, bank); "col", "bg": dict per ch;
    "acts": dict per ch of lists}. Returns the last column command's cycle."""
    bus, rb = cfg.dram_bus_bytes, cfg.dram_row_bytes
    nch, nb = cfg.dram_channels, cfg.dram_banks
    never = -10**9
    prev = start + 1
    for s in starts:
        for chunk in range(s // bus, (s + length - 1) // bus + 1):
            g = chunk * bus // rb
            ch, bank, row = g % nch, (g // nch) % nb, g // (nch * nb)
            key, bg = (ch, bank), bank % cfg.dram_bank_groups
            col = prev + 1
            if state["open"].get(key, -1) != row:
                if state["open"].get(key, -1) == -1:
                    earliest = start
                else:
                    pre = max(start, state["act"][key] + cfg.t_ras, state["last"][key] + 1)
                    earliest = pre + cfg.t_rp
                acts = state["acts"].setdefault(ch, [])
                bounds = [earliest]
                if acts:  # one activation per cycle per channel, at most four per t_faw
                    bounds.append(acts[-1] + 1)
                if len(acts) >= 4:
                    bounds.append(acts[-4] + cfg.t_faw)
                act = max(bounds)
                acts.append(act)
                state["open"][key], state["act"][key] = row, act
                col = max(col, act + cfg.t_rcd)
            last_col = state["col"].get(ch, never)
            gap = cfg.t_ccd_l if state["bg"].get(ch) == bg else cfg.t_ccd_s
            col = max(col, last_col + gap)
            state["col"][ch], state["bg"][ch], state["last"][key] = col, bg, col
            prev = col
    return prev


@pytest.mark.parametrize("channels, banks, groups", [(1, 1, 1), (1, 4, 2), (2, 2, 1), (4, 2, 2)])
def test_dram_timing_equals_a_beat_by_beat_reference(channels, banks, groups):
    # the piece-merging implementation (DramTiming) against the rules applied beat by beat, over
    # sequences of random transfers with the state carried over
    rng = np.random.default_rng(channels * 10 + banks)
    cfg = CFG.replace(dram_channels=channels, dram_banks=banks, dram_bank_groups=groups,
                      dram_rows=16, t_ras=int(rng.integers(0, 12)), t_faw=int(rng.integers(0, 16)),
                      t_ccd_s=1, t_ccd_l=int(rng.integers(1, 4)))
    for _ in range(20):
        d = DramTiming(cfg)
        state = {"open": {}, "act": {}, "last": {}, "col": {}, "bg": {}, "acts": {}}
        t = 0
        for _ in range(15):
            rows = int(rng.integers(1, 12)) if rng.random() < 0.5 else 1
            length = int(rng.choice([8, 16, 64])) * int(rng.integers(1, 10)) if rng.random() < 0.5 \
                else int(rng.integers(1, 200))
            stride = length if rng.random() < 0.3 else int(rng.integers(0, 300))
            base = int(rng.integers(0, 100)) * (8 if rng.random() < 0.5 else 1)
            starts = [base + stride * r for r in range(rows)]
            want = reference_transfer(cfg, state, t, starts, length)
            assert d.transfer(t, base, stride, rows, length) == want, (rows, length, stride, base)
            t = want + int(rng.integers(1, 30))
        assert d.open_rows.tolist() == [[state["open"].get((c, b), -1) for b in range(banks)]
                                        for c in range(channels)]


def test_queue_full_stalls_the_dispatcher():
    cfg = CFG.replace(queue_depth=1)
    # cycle 0: LOAD0 pushed. cycle 1: the DMA queue holds LOAD0 (its start in cycle 1 frees the
    # slot only from cycle 2) -> stall. cycle 2: LOAD1 pushed (ready 3). HALT examined from 3.
    # LOAD0 1..6 (miss, D 6); LOAD1 dram 8 hit, D 5, starts when the DMA is free: 7..11.
    # done 12 -> cycles 13.
    r = sim([load(0), load(8), HALT], cfg)
    assert r.dispatch.tolist() == [0, 2, 12]
    assert [times(r, i)[1:3] for i in range(2)] == [(1, 6), (7, 11)]
    assert r.cycles == 13


def test_sync_waits_for_idle():
    # LOAD 1..6; SYNC examined from 1, passes in 7 (queues empty, nothing executing);
    # NOP at 8; HALT at 9 -> cycles 10
    r = sim([load(), SYNC, NOP, HALT])
    assert r.dispatch.tolist() == [0, 7, 8, 9]
    assert r.cycles == 10


# -- GEMM and VEC ------------------------------------------------------------------------------

def test_gemm_back_to_back_drain_overlaps():
    # D = groups * group = 32. G0: dispatched 0, starts 1, busy 1..32, completes
    # 1 + 32 - 1 + latency 8 + rows 4 = 44. G1: dispatched 1, starts when the unit is free, 33:
    # busy 33..64 (its beats overlap G0's drain), completes 33 + 31 + 8 + 4 = 76.
    # HALT waits for the completion: done 77 -> cycles 78. GEMM busy = 64 (beats only).
    r = sim([gemm(), gemm(acc_addr=4), HALT])
    assert times(r, 0) == (0, 1, 32, 44)
    assert times(r, 1) == (1, 33, 64, 76)
    assert (r.cycles, r.busy[Unit.GEMM]) == (78, 64)


def test_gemm_two_groups_and_baseline_latency():
    # groups 2: D = 64, completion 1 + 63 + 8 + 4 = 76 -> cycles 78
    assert sim([gemm(groups=2), HALT]).complete[0] == 76
    # the baseline array's latency is cols + 2 = 6: completion 1 + 31 + 6 + 4 = 42
    r = sim([gemm(), HALT], CFG.replace(pe="baseline-w4a8"))
    assert (r.complete[0], r.cycles) == (42, 44)


def test_token_from_dma_to_gemm():
    # LOAD busy 1..6 completes at 6, token visible at 7; GEMM (ready 2) starts at 7,
    # completes 7 + 31 + 8 + 4 = 50; done 51 -> cycles 52
    r = sim([load(signal=GEMM), gemm(wait=DMA), HALT])
    assert times(r, 1) == (1, 7, 38, 50)
    assert r.cycles == 52
    assert r.tokens.sum() == 0


def test_gemm_to_vec_token_and_vec_duration():
    # GEMM completes 44 -> VEC starts 45; D = rows + cols + 3 = 4 + 4 + 3 = 11: busy 45..55;
    # done 56 -> cycles 57. A VEC of 2 rows takes 2 + 4 + 3 = 9.
    r = sim([gemm(signal=VEC), vec(wait=GEMM), HALT])
    assert times(r, 1) == (1, 45, 55, 55)
    assert (r.cycles, r.busy[Unit.VEC]) == (57, 11)
    assert sim([vec(rows=2), HALT]).end[0] == 1 + 9 - 1


def test_double_buffering_overlaps_dma_with_gemm():
    prog = [
        load(0, signal=GEMM),                  # pc0: buffer 0
        load(8, spad_addr=32, signal=GEMM),    # pc1: buffer 1
        gemm(wait=DMA, signal=DMA),            # pc2: on buffer 0, frees it when done
        load(16, wait=GEMM, signal=GEMM),      # pc3: refill buffer 0 (WAR on pc2)
        gemm(wait=DMA, acc_addr=4),            # pc4: on buffer 1
        gemm(wait=DMA, acc_addr=8),            # pc5: on refilled buffer 0
        HALT,
    ]
    r = sim(prog)
    # pc0 miss: D 6, 1..6 (token at 7). pc1 hit: D 5, 7..11 (token at 12).
    # pc2 starts 7 (its token), 7..38, completes 7 + 31 + 12 = 50 (token to DMA at 51).
    # pc3 (dram 16, hit, D 5) waits for pc2's token: 51..55 (token at 56).
    # pc4: GEMM free at 39, a DMA token is left from pc1 -> 39..70, completes 82.
    # pc5: GEMM free at 71, pc3's token visible at 56 -> 71..102, completes 114.
    # done 115 -> cycles 116. pc1's transfer (7..11) overlaps pc2's beats (7..38).
    assert [times(r, i)[1:] for i in range(6)] == [
        (1, 6, 6), (7, 11, 11), (7, 38, 50), (51, 55, 55), (39, 70, 82), (71, 102, 114)]
    assert r.cycles == 116
    assert r.executed == (0, 1, 2, 4, 3, 5)  # (start, pc) order: pc2 and pc1 both start at 7


def test_tokens_are_counted_and_left_over_tokens_are_reported():
    # three LOADs signal GEMM, one GEMM takes one: two tokens left at HALT (not an error)
    r = sim([load(0, signal=GEMM), load(8, signal=GEMM), load(16, signal=GEMM), gemm(wait=DMA), HALT])
    assert r.error == ErrorCode.OK
    assert r.tokens[Unit.DMA, Unit.GEMM] == 2


def test_gemm_waits_for_two_units():
    # GEMM waits for DMA and VEC: LOAD 1..6 (token 7)
    r = sim([load(signal=GEMM), vec(signal=GEMM), gemm(wait=DMA | VEC), HALT])
    # the VEC is dispatched in cycle 1: busy 2..12 (token visible 13) -> GEMM starts at 13
    assert times(r, 1)[1:3] == (2, 12)
    assert r.start[2] == 13


# -- errors ------------------------------------------------------------------------------------

def test_illegal_opcode_and_bad_field_words():
    # cycle 0 NOP; cycle 1 the word 0x45 (a reserved PIM opcode) is illegal -> error at pc 1, nothing
    # executing -> done in cycle 1 -> cycles 2; dispatched 1 (the NOP)
    r = sim([NOP, 0x45, HALT])
    assert (r.error, r.error_pc, r.cycles, r.dispatched) == (ErrorCode.ILLEGAL_OPCODE, 1, 2, 1)
    assert "reserved PIM opcode" in r.message
    r = sim([0x00 | 1 << 20, HALT])  # NOP with a reserved bit set
    assert (r.error, r.error_pc, r.cycles) == (ErrorCode.BAD_FIELD, 0, 1)
    assert r.message == "NOP reserved bits [16:24] must be 0, not 0x10"


def test_instruction_list_must_hold_instructions_or_words():
    for bad in ("HALT", 1 << 128, -1, True, 1.0):
        with pytest.raises(ProgramError, match=re.escape(f"instructions[1] must be an Instruction or a "
                                                          f"128-bit word, not {bad!r}")):
            sim([NOP, bad])
    with pytest.raises(ConfigError, match="config must be a TileConfig, not dict"):
        simulate({}, [HALT])


def test_config_bad_field_vec_rows():
    inst = vec(rows=5)
    assert check_instruction(CFG, inst) == (ErrorCode.BAD_FIELD,
                                            "VEC rows (5) exceeds the array's rows (4)")
    r = sim([inst, HALT])
    assert (r.error, r.error_pc, r.cycles, r.dispatched) == (ErrorCode.BAD_FIELD, 0, 1, 0)


def test_vec_add_overlap_is_bad_field():
    base = CFG.vparam_param_base
    ok_same = Instruction(Opcode.VEC, func=VecFunc.ADD, act_addr=8, res_addr=8, param_addr=base, rows=4)
    ok_apart = ok_same.replace(res_addr=12)
    bad = ok_same.replace(res_addr=11)
    assert check_instruction(CFG, ok_same) is None and check_instruction(CFG, ok_apart) is None
    assert check_instruction(CFG, bad) == (
        ErrorCode.BAD_FIELD, "VEC ADD output words 8..11 overlap residual words 11..14 without coinciding")
    # other functions never read the residual: res_addr is not checked
    assert check_instruction(CFG, bad.replace(func=VecFunc.GELU, res_addr=65535)) is None


@pytest.mark.parametrize("inst, message", [
    (load(spad_addr=255, words=2), "LOAD ACT words 255..256 leave the scratchpad (256 words)"),
    (load(spad_addr=0, words=129, rows=2, stride=516),
     "LOAD ACT words 0..257 leave the scratchpad (256 words)"),
    (load(spad=Spad.META, spad_addr=64), "LOAD META words 64..65 leave the scratchpad (64 words)"),
    (gemm(groups=9), "GEMM ACT words 0..287 leave the scratchpad (256 words)"),
    (Instruction(Opcode.GEMM, wgt_addr=225, groups=1), "GEMM WGT words 225..256 leave the scratchpad (256 words)"),
    (Instruction(Opcode.GEMM, meta_addr=64, groups=1), "GEMM META words 64..64 leave the scratchpad (64 words)"),
    (gemm(acc_addr=61), "GEMM ACC words 61..64 leave the scratchpad (64 words)"),
    (vec(acc_addr=62), "VEC ACC words 62..65 leave the scratchpad (64 words)"),
    (vec(act_addr=253), "VEC ACT words 253..256 leave the scratchpad (256 words)"),
    (Instruction(Opcode.VEC, func=VecFunc.ADD, res_addr=253, param_addr=68, rows=1),
     "VEC residual ACT words 253..256 leave the scratchpad (256 words)"),
    (vec().replace(param_addr=67), "VEC VPARAM words 67..70 leave the column-parameter region 68..127"),
    (vec().replace(param_addr=125), "VEC VPARAM words 125..128 leave the column-parameter region 68..127"),
])
def test_spad_range(inst, message):
    assert check_instruction(CFG, inst) == (ErrorCode.SPAD_RANGE, message)
    r = sim([NOP, inst, HALT])
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.SPAD_RANGE, 1, 1, 2)


@pytest.mark.parametrize("inst, message", [
    (load(dram=2), "LOAD dram_addr 0x2 is not a multiple of the ACT word size in DRAM (4 bytes)"),
    (load(spad=Spad.META, dram=24, rows=2, stride=6, words=1),
     "LOAD stride 0x6 is not a multiple of the META word size in DRAM (12 bytes)"),
    (load(dram=8192 - 4, words=2), "LOAD reaches DRAM byte 0x2003, beyond DRAM (0x2000 bytes)"),
    (load(dram=0, words=1, rows=3, stride=4096), "LOAD reaches DRAM byte 0x2003, beyond DRAM (0x2000 bytes)"),
    # ACC words are cols * ceil(acc_bits / 8) = 4 * 6 = 24 bytes: 8160 + 48 = 8208
    (Instruction(Opcode.STORE, spad=Spad.ACC, dram_addr=8160, words=2, rows=1),
     "STORE reaches DRAM byte 0x200f, beyond DRAM (0x2000 bytes)"),
    (Instruction(Opcode.STORE, spad=Spad.ACC, dram_addr=8168, words=1, rows=1),
     "STORE dram_addr 0x1fe8 is not a multiple of the ACC word size in DRAM (24 bytes)"),
])
def test_dram_range(inst, message):
    assert check_instruction(CFG, inst) == (ErrorCode.DRAM_RANGE, message)
    r = sim([inst, HALT])
    assert (r.error, r.error_pc, r.cycles) == (ErrorCode.DRAM_RANGE, 0, 1)


def test_dram_range_last_byte_is_fine():
    assert check_instruction(CFG, load(dram=8192 - 8, words=2)) is None
    assert check_instruction(CFG, Instruction(Opcode.STORE, spad=Spad.ACC, dram_addr=8160,
                                              words=1, rows=1)) is None


def test_error_lets_executing_instructions_finish_and_drops_queued_ones():
    # LOAD0 1..6; LOAD1 queued behind it; pc2 is illegal: examined in cycle 2 -> error at 2.
    # LOAD0 finishes (completes 6), LOAD1 never starts; done in 7 -> cycles 8.
    r = sim([load(0), load(8), gemm(groups=9), HALT])
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.SPAD_RANGE, 2, 2, 8)
    assert r.start.tolist() == [1, -1, -1, -1] and r.executed == (0,)
    assert r.dispatched == 2


def test_token_overflow():
    prog = [load(0, signal=GEMM) for _ in range(8)] + [HALT]
    r = sim(prog)
    # the eighth completion would make tok[DMA][GEMM] 8. LOADs: miss D 6 (1..6), then hits D 5:
    # starts 1, 7, 12, 17, 22, 27, 32, 37; the last ends at 41 -> TOKEN_OVERFLOW at 41, pc 7;
    # it was executing in 41 -> done 42 -> cycles 43
    assert r.start.tolist()[:8] == [1, 7, 12, 17, 22, 27, 32, 37]
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.TOKEN_OVERFLOW, 7, 41, 43)
    assert r.message == "token counter DMA->GEMM would exceed 7"
    # with seven it is fine
    assert sim(prog[1:]).error == ErrorCode.OK


def same_cycle_program(g0_groups):
    # pc0 VEC (rows 2) signals GEMM; pc1..8 LOADs signal GEMM; pc9 GEMM waits for the VEC;
    # pc10 GEMM waits for a DMA token. Queue depth 8, so the dispatcher never stalls.
    return ([vec(rows=2, signal=GEMM)] + [load(0, signal=GEMM) for _ in range(8)]
            + [gemm(groups=g0_groups, wait=VEC), gemm(wait=DMA, acc_addr=4), HALT])


def test_token_counter_is_net_of_a_take_in_the_same_cycle():
    # VEC: dispatched 0, busy 1..9 (D = 2 + 4 + 3), token visible 10.
    # LOADs dispatched 1..8; starts 2 (miss, D 6: 2..7), then hits (D 5): 8..12, 13..17, 18..22,
    # 23..27, 28..32, 33..37, 38..42. After the 7th completion tok[DMA][GEMM] = 7.
    # pc9 (dispatched 9) starts at 10 (VEC token), busy 10..41: the GEMM unit is free at 42.
    # pc10 starts at 42, taking a token in the cycle the 8th LOAD adds one: 7 - 1 + 1 = 7, no
    # overflow.
    r = sim(same_cycle_program(1), CFG.replace(queue_depth=8))
    assert r.start.tolist()[1:9] == [2, 8, 13, 18, 23, 28, 33, 38]
    assert (r.end[8], r.start[9], r.start[10]) == (42, 10, 42)
    assert r.error == ErrorCode.OK
    assert r.tokens[Unit.DMA, Unit.GEMM] == 7  # 8 given, 1 taken


def test_token_overflow_when_the_take_comes_later():
    # the same with pc9 of 2 groups: busy 10..73, so pc10 cannot start at 42 and the 8th LOAD's
    # completion (42) would make the counter 8: TOKEN_OVERFLOW at pc 8 in cycle 42. pc9 is still
    # executing (it completes 10 + 63 + 8 + 4 = 85): done 86 -> cycles 87.
    r = sim(same_cycle_program(2), CFG.replace(queue_depth=8))
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.TOKEN_OVERFLOW, 8, 42, 87)
    assert r.start[10] == -1


def test_deadlock_on_a_token_never_signalled():
    # GEMM waits for DMA, nobody signals. cycle 0: GEMM pushed; cycle 1: HALT waits, nothing
    # executes, the GEMM head is blocked -> DEADLOCK at pc 1 in cycle 1 -> cycles 2
    r = sim([gemm(wait=DMA), HALT])
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.DEADLOCK, 1, 1, 2)
    assert r.message == ("deadlock: the dispatcher is waiting at HALT for the units to drain, no "
                         "unit is executing; GEMM head pc 0 waits for tokens")


def test_deadlock_on_a_full_queue():
    # depth 1: G0 waits for a DMA token the LOAD at pc 2 would give, but G1 cannot be queued
    # behind G0: in cycle 1 the dispatcher stalls on the full GEMM queue, nothing runs -> DEADLOCK
    r = sim([gemm(wait=DMA), gemm(), load(signal=GEMM), HALT], CFG.replace(queue_depth=1))
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.DEADLOCK, 1, 1, 2)
    assert "waiting for room in the GEMM queue" in r.message
    # with room the same program runs
    assert sim([gemm(wait=DMA), gemm(), load(signal=GEMM), HALT]).error == ErrorCode.OK


def test_deadlock_waiting_on_pim_after_work_drains():
    # LOAD 1..6, then a VEC waiting for PIM (no PIM unit yet): SYNC stalls; the LOAD completes at
    # 6; in cycle 7 nothing executes -> DEADLOCK at the SYNC (pc 2), cycle 7 -> cycles 8
    r = sim([load(), vec(wait=PIM), SYNC, HALT])
    assert (r.error, r.error_pc, r.error_cycle, r.cycles) == (ErrorCode.DEADLOCK, 2, 7, 8)


def test_no_halt():
    # NOP at 0; cycle 1: pc 1 is past the end -> NO_HALT, pc 1 -> cycles 2
    r = sim([NOP])
    assert (r.error, r.error_pc, r.cycles) == (ErrorCode.NO_HALT, 1, 2)
    # empty program: NO_HALT at pc 0 in cycle 0
    assert (sim([]).error, sim([]).error_pc, sim([]).cycles) == (ErrorCode.NO_HALT, 0, 1)
    # a LOAD dispatched at 0 starts at 1, the cycle NO_HALT is raised: it still runs (1..6) and the
    # tile is done in 7 -> cycles 8
    r = sim([load()])
    assert (r.error, r.error_pc, r.error_cycle, r.start[0], r.cycles) == (ErrorCode.NO_HALT, 1, 1, 1, 8)


def test_same_cycle_errors_report_the_smallest_pc():
    # The 8th LOAD (pc 7) completes at 41 with tok DMA->GEMM 7 -> overflow at 41. Hold the
    # dispatcher until 41 with a SYNC? A SYNC would wait for the LOADs. Use a long NOP chain:
    # after the LOADs (dispatched 0..4, 8, 13, 18: a slot frees the cycle after each start)
    # 22 NOPs at 19..40 put the illegal word at cycle 41 -> both errors in cycle 41: the overflow
    # (pc 7) wins over the illegal word (pc 30).
    prog = [load(0, signal=GEMM) for _ in range(8)] + [NOP] * 22 + [0x45, HALT]
    r = sim(prog)
    assert r.dispatch[29] == 40
    assert (r.error, r.error_pc, r.error_cycle) == (ErrorCode.TOKEN_OVERFLOW, 7, 41)
    prog = [load(0, signal=GEMM) for _ in range(8)] + [NOP] * 21 + [0x45, HALT]
    r = sim(prog)  # the illegal word is examined at 40, one cycle before the overflow
    assert (r.error, r.error_pc, r.error_cycle) == (ErrorCode.ILLEGAL_OPCODE, 29, 40)


def test_array_stream_cannot_happen():
    # ARRAY_STREAM exists for the RTL's status register; a GEMM as defined always streams whole
    # groups, so the model never raises it
    assert ErrorCode.ARRAY_STREAM == 8
    r = sim([gemm(groups=3), HALT])
    assert r.error == ErrorCode.OK


def test_simulate_never_hangs_on_random_programs():
    rng = np.random.default_rng(7)
    kinds = [lambda: load(int(rng.integers(0, 100)) * 4, words=int(rng.integers(1, 8)),
                          wait=int(rng.integers(0, 16)) & ~1, signal=int(rng.integers(0, 16)) & ~1),
             lambda: gemm(groups=int(rng.integers(1, 3)), wait=int(rng.integers(0, 16)) & ~2,
                          signal=int(rng.integers(0, 16)) & ~2),
             lambda: vec(rows=int(rng.integers(1, 5)), wait=int(rng.integers(0, 16)) & ~4,
                         signal=int(rng.integers(0, 16)) & ~4),
             lambda: NOP, lambda: SYNC]
    seen = set()
    for _ in range(150):
        n = int(rng.integers(0, 25))
        prog = [kinds[int(rng.integers(0, len(kinds)))]() for _ in range(n)]
        if rng.random() < 0.7:
            prog.append(HALT)
        r = sim(prog)
        seen.add(r.error)
        assert r.cycles >= 1
        started = r.start >= 0
        assert (r.end[started] >= r.start[started]).all()
        # every started instruction finished before done
        assert (r.complete[started] < r.cycles).all()
    assert {ErrorCode.OK, ErrorCode.DEADLOCK, ErrorCode.NO_HALT} <= seen


# -- timing-only mode at paper scale -----------------------------------------------------------

def test_projection_program_is_well_formed_on_tiny():
    # the generator's token pattern balances: it halts with OK
    r = sim(projection_program(CFG, 8, 12, 70)[0])
    assert r.error == ErrorCode.OK, r.message


@pytest.mark.parametrize("m", [128])
def test_timing_only_paper_scale(m):
    # a 4096 x 11008 projection (LLaMA-7B MLP) on the 128x128 npu128 preset, timing only (no
    # data). The model is event-driven: it visits a few cycles per instruction, not every one of
    # the ~1.5 M cycles. (Its wall-clock speed is measured by bench/bench_tile.py.)
    cfg = preset("npu128")
    prog = projection_program(cfg, m, 11008, 4096)[0]
    r = simulate(cfg, prog)
    assert r.error == ErrorCode.OK, r.message
    assert r.busy[Unit.GEMM] == -(-11008 // 128) * -(-m // 128) * 4096
    assert r.cycles > r.busy[Unit.DMA]  # weight streaming dominates: DMA-bound at M = 128
    assert r.events < r.cycles / 100, f"{r.events} events for {r.cycles} cycles"
    assert r.events <= 8 * len(prog), f"{r.events} events for {len(prog)} instructions"
