"""Random tile programs (sim/random_program.py): deterministic, race-free when valid, designed
errors reported as designed, and a mix that covers the ISA (what the RTL co-simulation relies on)."""

from collections import Counter

import numpy as np
import pytest

from mixpim.models.config import VPARAM_LUT_WORDS, TileConfig, preset
from mixpim.models.executor import execute, run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, VecFunc
from mixpim.models.program import ProgramError
from mixpim.sim.random_program import (ERROR_KINDS, dma_gemm_overlap, insert_syncs, random_program,
                                          random_programs, summary)

TINY = preset("tiny")
SEEDS = 200


@pytest.fixture(scope="module")
def tiny_runs():
    """(RandomProgram, golden Result) for seeds 0..199 on tiny."""
    return [(rp, rp.run()) for rp in random_programs(TINY, SEEDS)]


def test_same_seed_same_program():
    for seed in (0, 1, 17):
        a, b = random_program(TINY, seed), random_program(TINY, seed)
        assert a == b and a.words == b.words
        assert [s.data for s in a.segments] == [s.data for s in b.segments]
    assert random_program(TINY, 0).words != random_program(TINY, 1).words


def test_valid_programs_halt_ok_without_races(tiny_runs):
    valid = [(rp, r) for rp, r in tiny_runs if rp.expected_error == ErrorCode.OK]
    assert len(valid) > 0.75 * SEEDS
    for rp, r in valid:
        assert (r.status.error, r.status.error_pc, r.races) == (ErrorCode.OK, 0, ()), rp.seed
        assert rp.instructions[-1] == Instruction(Opcode.HALT) and rp.variant == "ok"
        assert not r.timing.tokens.any()  # every token given is taken
        assert 10 <= len(rp.instructions) and r.status.cycles < 4000


def test_error_programs_report_the_designed_error(tiny_runs):
    errors = [(rp, r) for rp, r in tiny_runs if rp.expected_error != ErrorCode.OK]
    assert len(errors) > 0.05 * SEEDS
    for rp, r in errors:
        assert r.status.error == rp.expected_error, (rp.seed, rp.variant, r.timing.message)
        if rp.expected_pc is not None:
            assert r.status.error_pc == rp.expected_pc, (rp.seed, rp.variant)
        assert not r.races, rp.seed


def test_every_designed_error_occurs_and_is_reported():
    seen = Counter()
    for rp in random_programs(TINY, range(1000, 1150), error_rate=1.0):
        r = rp.run()
        assert (r.status.error, r.races) == (rp.expected_error, ()), (rp.seed, rp.variant)
        if rp.expected_pc is not None:
            assert r.status.error_pc == rp.expected_pc
        seen[rp.variant] += 1
    assert {ErrorCode[v.split(":")[0]] for v in seen} == set(ERROR_KINDS)
    # the sub-variants named in the module doc
    for v in ["ILLEGAL_OPCODE:pim", "ILLEGAL_OPCODE:other", "DEADLOCK:pim", "DEADLOCK:cycle",
              "DRAM_RANGE:end", "DRAM_RANGE:addr_align"]:
        assert seen[v], (v, seen)
    assert len([v for v in seen if v.startswith("BAD_FIELD")]) >= 4
    assert any("PIM" in v for v in seen if v.startswith("TOKEN_OVERFLOW"))
    pim = [rp for rp in random_programs(TINY, range(1000, 1150), error_rate=1.0)
           if rp.variant == "ILLEGAL_OPCODE:pim"]
    assert all(0x40 <= rp.words[rp.expected_pc] & 0xFF <= 0x4F for rp in pim)


def test_the_mix_covers_the_isa(tiny_runs):
    ops, funcs, spads, vparam, strides = Counter(), Counter(), Counter(), Counter(), Counter()
    tokens = overlap = 0
    for rp, r in tiny_runs:
        insts = [i for i in rp.instructions if isinstance(i, Instruction)]
        tokens += any(i.op not in (Opcode.NOP, Opcode.SYNC, Opcode.HALT) and (i.wait or i.signal)
                      for i in insts)
        overlap += dma_gemm_overlap(r)
        for i in insts:
            ops[i.op] += 1
            if i.op == Opcode.VEC:
                funcs[i.func] += 1
            if i.op in (Opcode.LOAD, Opcode.STORE):
                spads[i.op, i.spad] += 1
                row = i.words * TINY.word_bytes(i.spad)
                if i.rows > 1:
                    strides["zero" if i.stride == 0 else "short" if i.stride < row else "other"] += 1
                if i.dram_addr % TINY.dram_bus_bytes:
                    strides["unaligned"] += 1
            if i.op == Opcode.LOAD and i.spad == Spad.VPARAM:
                lo, hi = i.spad_addr, i.spad_addr + i.rows * i.words
                vparam["table"] += lo < VPARAM_LUT_WORDS
                vparam["token"] += lo < TINY.vparam_param_base and hi > VPARAM_LUT_WORDS
                vparam["column"] += hi > TINY.vparam_param_base
    assert set(ops) == set(Opcode)
    assert set(funcs) == set(VecFunc)
    assert set(spads) == {(Opcode.LOAD, s) for s in (Spad.ACT, Spad.WGT, Spad.META, Spad.VPARAM)} | \
        {(Opcode.STORE, s) for s in (Spad.ACT, Spad.ACC)}
    assert min(vparam[k] for k in ("table", "token", "column")) >= 10, vparam
    assert min(strides[k] for k in ("zero", "short", "other", "unaligned")) >= 20, strides
    assert tokens > 0.9 * SEEDS
    # tokens, not SYNCs, order most work: DMA runs beside GEMM in most programs
    assert overlap > 0.6 * SEEDS, overlap


def vec_results(rp, r):
    """int8 results of the VECs whose ACT output words nothing overwrites later (lanes < rows)."""
    cfg, out = rp.config, []
    insts = list(rp.instructions)
    for pc, i in enumerate(insts):
        if i.op != Opcode.VEC:
            continue
        lo, hi = i.act_addr, i.act_addr + cfg.cols
        later = [(j.spad_addr, j.spad_addr + j.rows * j.words) if j.op == Opcode.LOAD else
                 (j.act_addr, j.act_addr + cfg.cols) for j in insts[pc + 1:]
                 if j.op == Opcode.VEC or j.op == Opcode.LOAD and j.spad == Spad.ACT]
        if all(b <= lo or a >= hi for a, b in later):
            out.append(r.act()[lo:hi, :i.rows].ravel())
    return out


def test_gemm_and_vec_results_are_not_degenerate(tiny_runs):
    # random data reaches the outputs: stored DRAM differs from the initial contents, and the
    # VEC results are neither all zero nor all saturated
    changed = sum(any(seg.data != bytes(len(seg.data)) for seg in r.outputs) for _, r in tiny_runs)
    assert changed > 0.5 * SEEDS
    y = np.concatenate([v for rp, r in tiny_runs if r.status.error == ErrorCode.OK
                        for v in vec_results(rp, r)]).astype(int)
    assert len(y) > 1000
    saturated, zero = np.mean(np.abs(y) >= 127), np.mean(y == 0)
    assert 0.02 < saturated < 0.4 and zero < 0.7, (saturated, zero)


CONFIGS = {
    "8x8-a16-g64": TileConfig(rows=8, cols=8, pe="mixpe-w4a16", group=64, act_words=512,
                              wgt_words=512, meta_words=32, acc_words=64, vparam_words=128),
    "2x3-baseline": TileConfig(rows=2, cols=3, pe="baseline-w4a8", act_words=64, wgt_words=64,
                               meta_words=8, acc_words=8, vparam_words=80, dram_rows=64,
                               dram_row_bytes=64),
    "5x7-a16-q1": TileConfig(rows=5, cols=7, pe="mixpe-w4a16", wbits=2, scale_bits=8, queue_depth=1),
    "8x2-baseline-a16": TileConfig(rows=8, cols=2, pe="baseline-w4a16", group=32, act_words=64,
                                   dram_banks=1, dram_rows=64, dram_row_bytes=1024, dram_bus_bytes=16),
}


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_other_small_configs(cfg):
    codes = Counter()
    for rp in random_programs(cfg, 40, error_rate=0.5):
        r = rp.run()
        assert (r.status.error, r.races) == (rp.expected_error, ()), (rp.seed, rp.variant)
        codes[rp.expected_error] += 1
    assert codes[ErrorCode.OK] >= 10 and len(codes) >= 5


def test_removing_tokens_makes_races_and_insert_syncs_repairs_them(tiny_runs):
    # the race detector sees what the tokens prevent: strip them and most programs race
    valid = [rp for rp, _ in tiny_runs if rp.expected_error == ErrorCode.OK][:40]
    racy = 0
    for rp in valid:
        bare = [i.replace(wait=0, signal=0) if i.unit is not None else i for i in rp.instructions]
        r = run(TINY, bare, rp.segments)
        assert r.status.error == ErrorCode.OK
        if r.races:
            racy += 1
            fixed = insert_syncs(TINY, bare, rp.segments)
            r2 = run(TINY, fixed, rp.segments)
            assert (r2.status.error, r2.races) == (ErrorCode.OK, ())
            assert len(fixed) > len(bare)
    assert racy > 0.7 * len(valid), racy


def test_program_object_and_words(tiny_runs):
    for rp, r in tiny_runs[:60]:
        assert len(rp.words) == len(rp.instructions) and all(0 <= w < 1 << 128 for w in rp.words)
        if rp.has_raw_words:
            with pytest.raises(ProgramError, match="raw words"):
                rp.program()
            continue
        r2 = execute(rp.program())
        assert (r2.status, r2.outputs) == (r.status, r.outputs)


def test_length_and_errors_of_the_api():
    rp = random_program(TINY, 5, length=25, error_rate=0)
    assert 25 <= len(rp.instructions) <= 30  # a few SYNCs may be added
    assert len(random_program(TINY, 5, length=2, error_rate=0).instructions) >= 2
    with pytest.raises(TypeError):
        random_program("tiny", 0)
    with pytest.raises(ValueError, match="too small"):
        random_program(TileConfig(rows=2, cols=2, act_words=32, dram_banks=1, dram_rows=1,
                                  dram_row_bytes=64), 0)


def test_summary():
    text = summary(TINY, 10)
    assert "10 random programs" in text and "golden cycles" in text and "VEC funcs" in text
