"""The tile RTL (hw/tile.py) on Verilator against the golden executor: outputs bit for bit, every
status register (cycles, busy per unit, dispatched, error, error_pc) exactly.

Programs: compiled Linear layers and an FFN block, one program per error code, seeded random
programs (``MIXPIM_RANDOM_PROGRAMS``, default 200, on the tiny preset; fewer on variant
configurations). Each batch runs in one simulator process (sim/tile_cosim.py); after every program
all scratchpad words and the DRAM words written by STOREs are compared, and the whole DRAM after
the last one.
"""

import os

import numpy as np
import pytest
from helpers import TINY_SINGLE, rejects

from mixpim.compiler import compile_linear, lower_ffn
from mixpim.compiler.linear import lower_linear
from mixpim.hw.tile import MAX_IMEM_WORDS, Tile
from mixpim.models.bitmod import quantize_bitmod
from mixpim.models.config import preset
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, UnitMask, VecFunc
from mixpim.models.program import ProgramError, Segment
from mixpim.models.pim import PIM_OPS
from mixpim.models.quant import quantize_weights
from mixpim.sim import tile_cosim
from mixpim.sim.tile_cosim import imem_words_for, run_programs

TINY = preset("tiny")
DMA, GEMM, VEC, PIM = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC, UnitMask.PIM
HALT, NOP = Instruction(Opcode.HALT), Instruction(Opcode.NOP)
RANDOM_PROGRAMS = int(os.environ.get("MIXPIM_RANDOM_PROGRAMS", "200"))


def _assert_exact(runs):
    bad = [f"program {i}:\n{r.report()}" for i, r in enumerate(runs) if not r.ok]
    assert not bad, "RTL differs from golden:\n" + "\n".join(bad)[:4000]


def load(spad=Spad.ACT, spad_addr=0, dram=0, words=2, rows=1, stride=0, **kw):
    return Instruction(Opcode.LOAD, spad=spad, spad_addr=spad_addr, dram_addr=dram, words=words,
                       rows=rows, stride=stride, **kw)


def vec(func=VecFunc.REQUANT, rows=4, **kw):
    kw.setdefault("param_addr", TINY.vparam_param_base)
    return Instruction(Opcode.VEC, func=func, rows=rows, **kw)


def test_compiled_programs():
    rng = np.random.default_rng(0)
    progs = []
    for m, n, k, out in [(5, 8, 64, "int8"), (7, 13, 70, "acc"), (16, 16, 128, "int8")]:
        qw = quantize_weights(rng.standard_normal((n, k)).astype(np.float32), 4, TINY.group)
        progs.append(compile_linear(TINY, (m, k), qw, seed=m, out=out))
    x = rng.standard_normal((6, 40)).astype(np.float32)
    w1 = rng.standard_normal((70, 40)).astype(np.float32) * 0.2
    w2 = rng.standard_normal((40, 70)).astype(np.float32) * 0.2
    progs.append(lower_ffn(TINY, x, w1, w2).program)
    runs = run_programs(TINY, progs)
    _assert_exact(runs)
    assert all(r.golden.ok for r in runs)
    assert all(r.rtl_status["busy"][1] > 0 for r in runs)           # the GEMM unit ran
    assert runs[-1].rtl_status["busy"][2] > 0                       # and VEC (GELU, ADD)


def _word(inst, extra=0):
    return inst.encode() | extra


#: (name, instructions, designed error, its pc)
ERROR_PROGRAMS = [
    ("illegal opcode", [load(), 0x05, HALT], ErrorCode.ILLEGAL_OPCODE, 1),
    ("reserved PIM opcode", [0x45, HALT], ErrorCode.ILLEGAL_OPCODE, 0),
    ("reserved bit", [NOP, _word(NOP, 1 << 16), HALT], ErrorCode.BAD_FIELD, 1),
    ("own token bit", [_word(load(), 1 << 8), HALT], ErrorCode.BAD_FIELD, 0),
    ("VEC rows", [vec(rows=TINY.rows + 1), HALT], ErrorCode.BAD_FIELD, 0),
    ("ADD overlap", [vec(func=VecFunc.ADD, act_addr=0, res_addr=2), HALT], ErrorCode.BAD_FIELD, 0),
    ("spad range", [load(spad_addr=TINY.act_words - 1, words=2), HALT], ErrorCode.SPAD_RANGE, 0),
    ("param range", [vec(param_addr=10), HALT], ErrorCode.SPAD_RANGE, 0),
    ("GEMM range", [Instruction(Opcode.GEMM, groups=TINY.act_words // TINY.group + 1), HALT],
     ErrorCode.SPAD_RANGE, 0),
    ("misaligned", [load(spad=Spad.META, dram=4, words=1), HALT], ErrorCode.DRAM_RANGE, 0),
    ("beyond DRAM", [load(dram=TINY.dram_bytes - 4, words=2), HALT], ErrorCode.DRAM_RANGE, 0),
    ("token overflow", [load(signal=GEMM)] * 8 + [HALT], ErrorCode.TOKEN_OVERFLOW, 7),
    ("deadlock at HALT", [Instruction(Opcode.GEMM, groups=1, wait=PIM), HALT], ErrorCode.DEADLOCK, 1),
    ("deadlock on a full queue", [Instruction(Opcode.GEMM, groups=1, wait=VEC)] * (TINY.queue_depth + 1)
     + [HALT], ErrorCode.DEADLOCK, TINY.queue_depth),
    ("no HALT", [NOP, load()], ErrorCode.NO_HALT, 2),
    ("error while busy", [load(words=150), load(words=100, spad_addr=150), 0xFF, HALT],
     ErrorCode.ILLEGAL_OPCODE, 2),
]


def test_error_programs():
    seg = Segment("dram", 0, bytes(range(256)) * 8)
    runs = run_programs(TINY, [(insts, [seg]) for _, insts, _, _ in ERROR_PROGRAMS])
    _assert_exact(runs)
    for (name, _, code, pc), r in zip(ERROR_PROGRAMS, runs):
        assert (r.golden.status.error, r.golden.status.error_pc) == (code, pc), name
    # an error does not cut short what already runs: the first LOAD finishes (done the cycle
    # after it completes); the queued second one is dropped
    last = runs[-1]
    assert last.rtl_status["cycles"] == last.golden.timing.complete[0] + 2 > 75
    assert last.golden.timing.start[1] == -1 and last.rtl_status["dispatched"] == 2


def _random_batch(config, count, first_seed):
    from mixpim.sim.random_program import random_program
    return [random_program(config, seed) for seed in range(first_seed, first_seed + count)]


def _as_item(p):
    return p.instructions, p.segments


def test_random_programs_tiny():
    """The acceptance set: ``MIXPIM_RANDOM_PROGRAMS`` (default 200) seeded random programs."""
    progs = _random_batch(TINY, RANDOM_PROGRAMS, 0)
    runs = run_programs(TINY, [_as_item(p) for p in progs])
    _assert_exact(runs)
    assert [r.golden.status.error for r in runs] == [p.expected_error for p in progs]
    codes = {r.golden.status.error for r in runs}
    assert ErrorCode.OK in codes and len(codes) > 3  # valid programs and several error kinds


VARIANTS = {
    # FP16 activations with group offsets (Q4_1's exact form: 6-byte META entries, the array's
    # activation group sums and offset term), and a VEC datapath of 2 lanes (2 passes a column)
    "w4a16": TINY.replace(pe="mixpe-w4a16", group_offset=True, vec_passes=2),
    # the blocked NPU+PIM baseline (one row buffer per bank, DMA and PIM exclude each other) on
    # the dequantize-then-multiply PE
    "single-baseline": TINY_SINGLE,
    # 2 channels of 4 banks in 2 groups, short rows on a narrow bus: rows open often, so t_faw
    # binds in every program and t_ras in some (the cycle model says so), t_ccd_l in every one
    # the bit-serial BitMoD array (4-bit mixture, FP16 activations): a beat every 2 cycles, rows
    # every scale_bits = 16 cycles, random type selectors in META; no wsrc (BAD_FIELD)
    "bitmod": TINY.replace(pe="bitmod-w4a16"),
    # BitMoD's 3-bit mixture with INT8 activations on a 2 x 3 array, 8-bit scales (S = 8)
    "bitmod3-int8": TINY.replace(pe="bitmod-w4a8", wbits=3, rows=2, cols=3, scale_bits=8),
    "odd": TINY.replace(rows=2, cols=3, group=64, act_words=512, wgt_words=512, queue_depth=1,
                        dram_channels=2, dram_banks=4, dram_bank_groups=2, dram_rows=1024,
                        dram_row_bytes=16, dram_bus_bytes=4, t_rcd=5, t_rp=1, t_cl=3, t_ras=12,
                        t_faw=60, t_ccd_s=1, t_ccd_l=2),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_random_programs_variants(name):
    cfg = VARIANTS[name]
    runs = run_programs(cfg, [_as_item(p) for p in _random_batch(cfg, 25, 1000)])
    _assert_exact(runs)


def test_a_tile_without_softmax_norm_and_pim():
    """The vector unit without its softmax and norm datapaths, the tile without its PIM unit:
    random programs, and VSOFT / VNORM / PIM programs that halt with ``ILLEGAL_OPCODE`` at their
    pc, RTL == golden."""
    from mixpim.sim.random_program import random_program
    cfg = TINY.replace(softmax_unit=False, norm_unit=False, pim_unit=False)
    progs = _random_batch(cfg, 20, 2000)
    opcodes = {(i.op if isinstance(i, Instruction) else i & 0xFF) for p in progs for i in p.instructions}
    assert not opcodes & set(PIM_OPS)   # raw words too
    illegal = [random_program(cfg, seed, error_rate=1.0, errors=[ErrorCode.ILLEGAL_OPCODE])
               for seed in range(3000, 3060)]
    illegal = [p for p in illegal if p.variant == "ILLEGAL_OPCODE:datapath"]
    pim = [p for p in illegal if p.instructions[p.expected_pc].op in PIM_OPS]
    progs += [p for p in illegal if p not in pim][:4] + pim[:4]
    ops = {p.instructions[p.expected_pc].op for p in progs[20:]}
    assert {Opcode.VSOFT, Opcode.VNORM} <= ops and len(ops & set(PIM_OPS)) >= 2
    runs = run_programs(cfg, [_as_item(p) for p in progs])
    _assert_exact(runs)
    assert [r.golden.status.error for r in runs] == [p.expected_error for p in progs]


def test_accumulating_into_the_row_just_written():
    """``rows == group``: the next GEMM's first ACC read falls in the cycle of the previous one's
    last ACC write (the GEMM unit forwards it, and takes the next GEMM's operands for that read);
    an accumulation into that row sees the write, as the golden executor's order says. Random
    programs on the same tile."""
    cfg = TINY.replace(rows=32, cols=2, group=32, acc_words=64)
    rng = np.random.default_rng(5)
    segs = [Segment(s.name, 0, rng.integers(0, 256, n * cfg.word_bytes(s), np.uint8).tobytes(),
                    cfg.word_bytes(s)) for s, n in ((Spad.ACT, 32), (Spad.WGT, 32), (Spad.META, 1))]
    gemm = dict(groups=1, act_addr=0, wgt_addr=0, meta_addr=0)
    directed = [Instruction(Opcode.GEMM, acc_addr=0, accumulate=0, **gemm),
                Instruction(Opcode.GEMM, acc_addr=cfg.rows - 1, accumulate=1, **gemm), HALT]
    runs = run_programs(cfg, [(directed, segs)] + [_as_item(p) for p in _random_batch(cfg, 10, 4000)])
    _assert_exact(runs)
    timing = runs[0].golden.timing
    assert runs[0].golden.ok and timing.start[1] - timing.start[0] == cfg.group  # back to back


def test_compiled_programs_bitmod():
    """Linear layers with BitMoD-quantized weights on the BitMoD tile (the ``bitmod`` variant's
    build): accumulators of the 4-bit mixture with FP16 activations (random, and MiniLM's), bit-
    and cycle-exact, and equal to the layer computed without the tile."""
    cfg = VARIANTS["bitmod"]
    rng = np.random.default_rng(3)
    layers = [lower_linear(cfg, (m, k), quantize_bitmod(rng.standard_normal((n, k)), 4, cfg.group,
                                                        scale_bits=cfg.scale_bits), seed=m)
              for m, n, k in [(5, 8, 64), (7, 13, 70), (9, 6, 160)]]
    # real weights: 16 features of MiniLM's layer-0 query projection x 5 tokens' embeddings
    from mixpim.compiler.checkpoint import load_tensors, minilm_dir
    t = load_tensors(minilm_dir(), ["encoder.layer.0.attention.self.query.weight",
                                    "embeddings.word_embeddings.weight"])
    w = t["encoder.layer.0.attention.self.query.weight"][:16].astype(np.float64)
    x = t["embeddings.word_embeddings.weight"][[101, 7592, 2088, 2003, 102]].astype(np.float16)
    layers.append(lower_linear(cfg, x, quantize_bitmod(w, 4, cfg.group, scale_bits=cfg.scale_bits)))
    # and a GEMM wsrc, which a BitMoD tile refuses at dispatch (after a GEMM that runs)
    refused = ([Instruction(Opcode.GEMM, groups=1), Instruction(Opcode.GEMM, groups=1, wsrc=1), HALT], [])
    runs = run_programs(cfg, [cl.program for cl in layers] + [refused])
    _assert_exact(runs)
    for cl, r in zip(layers, runs):
        assert r.golden.ok and r.rtl_status["busy"][1] > 0
        assert (np.asarray(cl.layout.output(r.golden), dtype=object) == cl.reference()).all()
    status = runs[-1].golden.status
    assert (status.error, status.error_pc, status.busy[1]) == (ErrorCode.BAD_FIELD, 1, 64)


def test_a_difference_is_reported(monkeypatch):
    # The comparison can fail: a golden model that is one cycle off is caught.
    real = tile_cosim.golden_run

    def off_by_one(cfg, insts, segs, **kw):
        res = real(cfg, insts, segs, **kw)
        if insts:
            object.__setattr__(res.status, "cycles", res.status.cycles + 1)
        return res
    monkeypatch.setattr(tile_cosim, "golden_run", off_by_one)
    [run] = run_programs(TINY, [([load(), HALT], [])])
    assert not run.cycle_exact and "status cycles" in run.report()


def test_constructor_validation():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: Tile("tiny"))
    for bad in (0, MAX_IMEM_WORDS + 1, 1.5, True):
        rejects(ValueError, f"imem_words must be an integer in 1..{MAX_IMEM_WORDS}, not {bad!r}",
                lambda: Tile(TINY, bad))
    with pytest.raises(ProgramError, match="instruction memory"):
        imem_words_for(MAX_IMEM_WORDS + 1)
    assert imem_words_for(10) == 1024 and imem_words_for(1025) == 2048


def test_rtl_dram_cut():
    # A large DRAM is simulated only as far as the programs reach (same banks, rows, timing).
    fpga = preset("fpga")
    near = [([load(dram=3 << 20)], [])]
    cut = tile_cosim.rtl_config(fpga, near)
    assert cut.replace(dram_rows=fpga.dram_rows) == fpga and cut.dram_bytes == 4 << 20
    assert tile_cosim.rtl_config(fpga, [([load(dram=fpga.dram_bytes)], [])]) == fpga  # DRAM_RANGE
    assert tile_cosim.rtl_config(TINY, near) == TINY                                  # small: whole
