"""Random tile programs (sim/random_program.py, sim/random_pim.py, sim/random_vec.py,
sim/random_errors.py): deterministic, race-free when valid, designed errors reported as designed,
and a mix that covers the ISA incl. the PIM unit in both row-buffer modes and every form of the
vector unit on INT8 and FP16 configurations (what the RTL co-simulation relies on)."""

import re
from collections import Counter

import numpy as np
import pytest

import mixpim.models.executor as executor
from mixpim.models.config import VPARAM_LUT_WORDS, TileConfig, preset
from mixpim.models.executor import execute, run
from mixpim.models.footprint import footprint
from mixpim.models.isa import (OPCODE_FORMATS, PIM_OPCODES, ErrorCode, Instruction, NormFunc,
                               Opcode, ProbFormat, SoftFunc, Spad, Unit, VecFunc)
from mixpim.models.pim import PIM_OPS
from mixpim.models.program import ProgramError
from mixpim.models.softmax import norm_writes
from mixpim.sim.random_pim import PIM_RANGE_KINDS, pim_capable, pim_features
from mixpim.sim.random_program import (BAD_FIELD_KINDS, DRAWN_OPS, ERROR_KINDS, bad_field_kinds,
                                          dma_gemm_overlap, insert_syncs, random_program,
                                          random_programs, summary)
from mixpim.sim.random_vec import vec_feature_set, vec_features

TINY = preset("tiny")
SINGLE = TINY.in_pim_mode("single")
FP16 = TINY.replace(pe="mixpe-w4a16")
SEEDS = 200
FP16_SEEDS = 150
#: Opcodes the generator does not draw: none.
NOT_DRAWN = set()


@pytest.fixture(scope="module")
def tiny_runs():
    """(RandomProgram, golden Result) for seeds 0..199 on tiny."""
    return [(rp, rp.run()) for rp in random_programs(TINY, SEEDS)]


@pytest.fixture(scope="module")
def fp16_runs():
    """(RandomProgram, golden Result) for seeds 0..149 on tiny with FP16 activations."""
    return [(rp, rp.run()) for rp in random_programs(FP16, FP16_SEEDS)]


def test_same_seed_same_program():
    for seed in (0, 1, 17):
        a, b = random_program(TINY, seed), random_program(TINY, seed)
        assert a == b and a.words == b.words
        assert [s.data for s in a.segments] == [s.data for s in b.segments]
    assert random_program(TINY, 0).words != random_program(TINY, 1).words


RUNS = ["tiny_runs", "fp16_runs"]


@pytest.mark.parametrize("runs", RUNS)
def test_valid_programs_halt_ok_without_races(runs, request):
    runs = request.getfixturevalue(runs)
    valid = [(rp, r) for rp, r in runs if rp.expected_error == ErrorCode.OK]
    assert len(valid) > 0.75 * len(runs)
    for rp, r in valid:
        assert (r.status.error, r.status.error_pc, r.races) == (ErrorCode.OK, 0, ()), rp.seed
        assert rp.instructions[-1] == Instruction(Opcode.HALT) and rp.variant == "ok"
        assert not r.timing.tokens.any()  # every token given is taken
        assert 10 <= len(rp.instructions) and r.status.cycles < 4000


@pytest.mark.parametrize("runs", RUNS)
def test_error_programs_report_the_designed_error(runs, request):
    runs = request.getfixturevalue(runs)
    errors = [(rp, r) for rp, r in runs if rp.expected_error != ErrorCode.OK]
    assert len(errors) > 0.05 * len(runs)
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
    reserved = {x for x in PIM_OPCODES if x not in OPCODE_FORMATS}
    assert pim and reserved == set(range(0x45, 0x50))
    assert all(rp.words[rp.expected_pc] & 0xFF in reserved for rp in pim)


#: What the golden model's message says for each designed BAD_FIELD kind.
BAD_FIELD_MESSAGES = {
    "reserved": r"reserved bits \[16:24\] must be 0", "unused": r"unused bits \[\d+:128\] must be 0",
    "own_token": r"(wait|signal) must not include its own unit", "dispatcher_mask":
    r"(NOP|SYNC|HALT) (wait|signal) must be empty", "spad": r"(LOAD|STORE) spad must be one of",
    "func": r"(VEC|VSOFT|VNORM) func must be one of", "zero_count": r" must be an integer in 1\.\.",
    "vec_rows": r"VEC rows \(\d+\) exceeds the array's rows",
    "add_overlap": r"VEC ADD output words .* overlap residual words",
    "vsoft_count": r"VSOFT (words \(\d+\) exceeds the array's rows|count \(\d+\) exceeds words)",
    "vec_fmt": r"VEC fmt 1 \(FP16 values\) needs FP16 activations",
    "gate_fmt": r"VEC (SILU|GLU) writes FP16 values: fmt must be 1",
    "rope_int8": r"VEC ROPE_(LO|HI) \(int16 cosine lanes\) needs FP16 activations",
    "res_fmt": r"VEC RES writes ACC: fmt and direct must be 0",
    "direct_add": r"VEC ADD cannot write direct", "direct_shape": r"VEC direct needs rows >= cols",
    "pfmt_fp16": r"VSOFT pfmt FP16 needs FP16 activations",
    "vsoft_lane": r"VSOFT lane (\(\d+\) is not a lane|must be 0 unless col is 1)",
    "vnorm_rows": r"VNORM rows \(\d+\) exceeds the array's rows",
    "vnorm_fmt": r"VNORM fmt 1 \(FP16 values\) needs FP16 activations",
    "vnorm_to_acc": r"VNORM to_acc writes ACC: fmt must be 0",
    "wsrc_meta": r"GEMM wsrc reads no META: meta_addr must be 0",
    "wsrc_config": r"GEMM wsrc (needs rows >= cols|splits INT8 weights into 4-bit codes)",
    "rope_overlap": r"VEC ROPE_(LO|HI) output words .* overlap its table words",
    "vec_bias_pair": r"VEC (GLU|ROPE_LO|ROPE_HI) cannot add a bias: .* partner's multipliers"}
#: Configurations that together express every BAD_FIELD kind: INT8, FP16, rows < cols (no direct
#: rows, no wsrc) and 2-bit weights (no wsrc).
BAD_FIELD_CONFIGS = {"tiny": TINY, "fp16": FP16,
                     "2x3": TINY.replace(rows=2, cols=3),
                     "wbits2": TINY.replace(wbits=2)}


@pytest.mark.parametrize("name", BAD_FIELD_CONFIGS)
def test_every_bad_field_kind_occurs(name):
    # short BAD_FIELD programs: every kind the configuration can express, each with the golden
    # model's message for it at the designed pc (the field fails the check it was designed for)
    cfg = BAD_FIELD_CONFIGS[name]
    seen = Counter()
    for rp in random_programs(cfg, range(200), error_rate=1.0, length=6, errors=[ErrorCode.BAD_FIELD]):
        r = rp.run()
        kind = rp.variant.split(":", 1)[1]
        assert (r.status.error, r.status.error_pc, r.races) == (ErrorCode.BAD_FIELD, rp.expected_pc, ()), \
            (rp.seed, rp.variant)
        assert re.search(BAD_FIELD_MESSAGES[kind], r.timing.message), (kind, r.timing.message)
        seen[kind] += 1
    assert set(seen) == bad_field_kinds(cfg), seen


def test_bad_field_kinds_cover_the_table():
    kinds = {name: bad_field_kinds(cfg) for name, cfg in BAD_FIELD_CONFIGS.items()}
    assert set().union(*kinds.values()) == set(BAD_FIELD_KINDS) == set(BAD_FIELD_MESSAGES)
    assert {"vec_fmt", "rope_int8", "pfmt_fp16", "vnorm_fmt", "wsrc_meta"} <= kinds["tiny"]
    assert {"vnorm_to_acc", "rope_overlap", "vec_bias_pair"} <= kinds["fp16"] - kinds["tiny"]
    assert {"direct_shape", "wsrc_config"} <= kinds["2x3"] and "wsrc_config" in kinds["wbits2"]
    with pytest.raises(ValueError, match="designed error"):
        random_program(FP16, 0, error_rate=1.0, errors=[ErrorCode.ARRAY_STREAM])


#: What the golden model's message says for each designed PIM_RANGE kind.
PIM_RANGE_MESSAGES = {
    "channel": r"channels \d+\.\.\d+ leave", "bank": r"banks? \d+(\.\.\d+)? (leave|is beyond)",
    "row": r" row \d+ is beyond", "column": r"row bytes \d+\.\.\d+ leave",
    "buffer": r"buffer bytes \d+\.\.\d+ leave", "register": r"result registers \d+\.\.\d+ leave",
    "lane": r"ACT lanes \d+\.\.\d+ leave", "len": r"len \d+ is not a multiple of pim_lanes",
    "col_align": r"col \d+ is not a multiple of pim_lanes",
    "gaddr_align": r"gaddr \d+ is not a multiple of pim_lanes"}


@pytest.mark.parametrize("cfg", [TINY, SINGLE, FP16], ids=["dual", "single", "fp16"])
def test_every_pim_error_kind_occurs(cfg):
    # short error programs, so that many are cheap: every PIM_RANGE kind with the golden model's
    # message for it, the PIM SPAD_RANGE errors, and DEADLOCK / TOKEN_OVERFLOW around the PIM unit
    seen = Counter()
    for rp in random_programs(cfg, range(3000, 3400), error_rate=1.0, length=12):
        r = rp.run()
        assert (r.status.error, r.races) == (rp.expected_error, ()), (rp.seed, rp.variant)
        seen[rp.variant] += 1
        code, _, kind = rp.variant.partition(":")
        if code == "PIM_RANGE":
            assert r.status.error_pc == rp.expected_pc
            assert rp.instructions[rp.expected_pc].op in PIM_OPS
            assert re.search(PIM_RANGE_MESSAGES[kind], r.timing.message), (kind, r.timing.message)
    assert {v.split(":")[1] for v in seen if v.startswith("PIM_RANGE:")} == set(PIM_RANGE_KINDS)
    assert seen["SPAD_RANGE:PIM_GBUF:ACT"] and seen["SPAD_RANGE:PIM_READ:ACC"], seen
    assert seen["TOKEN_OVERFLOW:PIM->DMA"] and seen["TOKEN_OVERFLOW:DMA->PIM"], seen
    assert seen["DEADLOCK:pim"]


PIM_FEATURES = ("GBUF gather", "GBUF packed", "GBUF chans>1", "GBUF act_stride 0",
                "GBUF act_stride>0", "WRITE", "WRITE chans>1", "GEMV dot", "GEMV bcast",
                "GEMV accumulate", "GEMV banks>1", "GEMV chans>1", "READ reduce", "READ banks",
                "READ word_stride>1", "READ chan_stride", "ACT", "ACT banks>1", "ACT chans>1")


def test_the_mix_covers_the_isa(tiny_runs):
    ops, funcs, spads, vparam, strides = Counter(), Counter(), Counter(), Counter(), Counter()
    pim, waits = Counter(), Counter()
    tokens = overlap = 0
    for rp, r in tiny_runs:
        insts = [i for i in rp.instructions if isinstance(i, Instruction)]
        tokens += any(i.op not in (Opcode.NOP, Opcode.SYNC, Opcode.HALT) and (i.wait or i.signal)
                      for i in insts)
        overlap += dma_gemm_overlap(r)
        for i in insts:
            ops[i.op] += 1
            pim.update(pim_features(i))
            if i.unit is not None:
                waits.update((src, i.unit) for src in Unit if i.wait >> src & 1)
            if i.op == Opcode.VEC and rp.expected_error == ErrorCode.OK:
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
    assert set(ops) == set(DRAWN_OPS) == set(Opcode) - NOT_DRAWN
    assert set(PIM_OPS) <= set(ops) and min(ops[op] for op in PIM_OPS) >= 100, ops
    assert set(pim) == set(PIM_FEATURES) and min(pim.values()) >= 30, pim
    # the PIM unit waits for and is waited on by every other unit
    assert min(waits[p] for u in (Unit.DMA, Unit.GEMM, Unit.VEC)
               for p in ((u, Unit.PIM), (Unit.PIM, u))) >= 10, waits
    # INT8 activations: the FP16 functions only in designed errors
    assert set(funcs) == set(VecFunc) - {VecFunc.SILU, VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI}
    assert set(spads) == {(Opcode.LOAD, s) for s in Spad} | {(Opcode.STORE, s) for s in (Spad.ACT, Spad.ACC)}
    assert min(vparam[k] for k in ("table", "token", "column")) >= 10, vparam
    assert min(strides[k] for k in ("zero", "short", "other", "unaligned")) >= 20, strides
    assert tokens > 0.9 * SEEDS
    # tokens, not SYNCs, order most work: DMA runs beside GEMM in most programs
    assert overlap > 0.6 * SEEDS, overlap


@pytest.mark.parametrize("runs, cfg", [("tiny_runs", TINY), ("fp16_runs", FP16)], ids=["int8", "fp16"])
def test_every_vector_form_is_drawn(runs, cfg, request):
    # valid programs hold every VEC function, format and mode, every VSOFT pass, probability
    # format and by-column form, every VNORM pass and output, GEMM wsrc and LOADs into ACC that
    # the configuration has (sim/random_vec.py); a bias on every function but GLU and ROPE (on
    # FP16 configurations with fmt 1 or RES)
    forms, biased = Counter(), Counter()
    for rp, _ in request.getfixturevalue(runs):
        if rp.expected_error == ErrorCode.OK:
            for i in rp.instructions:
                forms.update(vec_features(i))
                if i.op == Opcode.VEC:
                    biased[i.func, i.bias] += 1
    assert set(forms) == vec_feature_set(cfg), set(forms) ^ vec_feature_set(cfg)
    assert min(forms.values()) >= 5, forms
    pair = {VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI}
    funcs = {f for f, _ in biased} - pair
    assert {f for f, b in biased if b} == funcs and not any(biased[f, 1] for f in pair), biased
    assert all(biased[f, 1] >= 5 for f in funcs), biased
    assert "VEC SILU" in vec_feature_set(FP16) - vec_feature_set(TINY)


@pytest.mark.parametrize("runs", RUNS)
def test_softmax_rows_and_norms_go_on(runs, request):
    # the softmax and norm registers carry state from one instruction to the next: most MAX /
    # EXP / SUM / SQ passes with first 0 follow a pass of the same kind of the same row (block
    # size), and most NORMs follow the passes they need
    go_on, follow = Counter(), Counter()
    for rp, _ in request.getfixturevalue(runs):
        if rp.expected_error != ErrorCode.OK:
            continue
        prev = {}
        for i in rp.instructions:
            if i.op not in (Opcode.VSOFT, Opcode.VNORM):
                continue
            p = prev.get(i.op)
            if p is None:
                same = False
            elif i.op == Opcode.VSOFT:
                same = (p.pfmt, p.col, p.lane) == (i.pfmt, i.col, i.lane)
            else:
                same = (p.rows, p.rms, p.qshift) == (i.rows, i.rms, i.qshift)
            if i.func == (SoftFunc.NORM if i.op == Opcode.VSOFT else NormFunc.NORM):
                need = (SoftFunc.EXP, SoftFunc.NORM) if i.op == Opcode.VSOFT else (NormFunc.SQ, NormFunc.NORM)
                follow[i.op, "all"] += 1
                follow[i.op, "after"] += same and p.func in need
            elif not i.first:
                go_on[i.op, "all"] += 1
                go_on[i.op, "same"] += same and p.func == i.func
            prev[i.op] = i
    # FP16 configurations also draw PIM (a fifth of the draws), which interleaves more other work:
    # their ratios sit near 0.6 (0.59 on some seed windows), INT8's well above
    least = 0.5 if runs == "fp16_runs" else 0.6
    for op in (Opcode.VSOFT, Opcode.VNORM):
        assert go_on[op, "all"] >= 30 and go_on[op, "same"] > least * go_on[op, "all"], go_on
        assert follow[op, "all"] >= 30 and follow[op, "after"] > least * follow[op, "all"], follow


def vector_outputs(rp):
    """What the golden executor's vector unit reads and writes in ``rp``, as lists of arrays:
    VNORM input values (``"norm in"``), VNORM NORM outputs (``"norm int8"``: INT8 lanes,
    ``"norm fixed"``: FP16 values, ``"norm acc"``), VSOFT NORM probabilities (``"soft"``:
    ``(pfmt, values)`` per instruction) and the FP16 values of VECs with ``fmt`` 1 (``"vec
    fp16"``)."""
    cfg = rp.config
    out = {k: [] for k in ("norm in", "norm int8", "norm fixed", "norm acc", "soft", "vec fp16")}
    fp16 = cfg.act_format == "fp16"

    def lanes(spads, first, n):
        w = np.ascontiguousarray(spads["ACT"][first:first + n])
        return (w.view("<u2").view(np.float16) if fp16 else w.view(np.int8)).astype(float)

    real = (executor.exec_vec, executor.exec_vsoft, executor.exec_vnorm)

    def vec(cfg_, spads, inst, **kw):
        real[0](cfg_, spads, inst, **kw)
        if inst.fmt:
            [(first, end)] = act_writes(cfg, inst)
            y = lanes(spads, first, end - first)
            out["vec fp16"].append(y[:, :cfg.cols if inst.direct else inst.rows])

    def vsoft(cfg_, spads, state, inst):
        real[1](cfg_, spads, state, inst)
        if inst.func == SoftFunc.NORM:
            words = lanes(spads, inst.act_addr, norm_writes(cfg, inst))
            out["soft"].append((inst.pfmt, words[:inst.count, inst.lane] if inst.col else
                                words.ravel()[:inst.count]))

    def acc(spads, first, n):
        return np.asarray(spads["ACC"][first:first + n], float).ravel()

    def vnorm(cfg_, spads, state, inst):
        out["norm in"].append(acc(spads, inst.acc_addr, inst.rows))
        real[2](cfg_, spads, state, inst)
        if inst.func == NormFunc.NORM and inst.to_acc:
            out["norm acc"].append(acc(spads, inst.act_addr, inst.rows))
        elif inst.func == NormFunc.NORM:
            y = lanes(spads, inst.act_addr, cfg.cols)[:, :inst.rows].ravel()
            out["norm fixed" if inst.fmt else "norm int8"].append(y)
    with pytest.MonkeyPatch.context() as mp:
        for name, spy in zip(("exec_vec", "exec_vsoft", "exec_vnorm"), (vec, vsoft, vnorm)):
            mp.setattr(executor, name, spy)
        rp.run()
    return out


@pytest.mark.parametrize("runs", RUNS)
def test_vector_unit_results_are_not_degenerate(runs, request):
    # the VPARAM zones fit the data: norms square ACC values that mostly do not saturate and
    # write values neither mostly zero nor mostly saturated; softmax rows write probabilities
    # between 0 and the format's largest; FP16 outputs are finite and mostly non-zero
    got = {}
    for rp, _ in request.getfixturevalue(runs):
        if rp.expected_error == ErrorCode.OK:
            for k, v in vector_outputs(rp).items():
                got.setdefault(k, []).extend(v)
    x = np.abs(np.concatenate(got["norm in"]))
    # FP16 configurations draw PIM instructions too (a fifth of the draws), so fewer LOADs fill
    # ACC with values VNORM takes (below 2**31; PIM_READ results are filed in the FP16 "small"
    # class, 2**32, which it avoids) and more norms read ACC words nothing wrote: about 0.3 of
    # their inputs are 0 (INT8: 0.2), and up to a third of their INT8 outputs
    zeros = 0.4 if runs == "fp16_runs" else 0.3
    assert np.mean(x >= 2 ** 31) < 0.3 and np.mean(x == 0) < zeros, (np.mean(x >= 2 ** 31), np.mean(x == 0))
    y = np.abs(np.concatenate(got["norm int8"]))
    saturated = 0.55 if runs == "fp16_runs" else 0.45  # FP16: 0.50 on some seed windows
    assert len(y) > 100 and np.mean(y == 0) < zeros and np.mean(y >= 127) < saturated, \
        (np.mean(y == 0), np.mean(y >= 127))
    y = np.abs(np.concatenate(got["norm acc"]))
    assert len(y) > 100 and np.mean(y == 0) < 0.3 and np.mean(y >= 2 ** 31 - 1) < 0.3
    top = {ProbFormat.INT8: 127, ProbFormat.HI: 127, ProbFormat.LO: 127, ProbFormat.FP16: np.inf}
    mid = Counter()
    for pfmt, p in got["soft"]:
        mid[pfmt, "all"] += 1
        mid[pfmt, "mid"] += bool(np.any((p > 0) & (p < top[pfmt])))
    formats = {f for f, _ in got["soft"]}
    assert all(mid[f, "all"] >= 5 and mid[f, "mid"] for f in formats), mid
    assert sum(mid[f, "mid"] for f in formats) > 0.35 * len(got["soft"]), mid
    if runs == "fp16_runs":
        assert {f for f, _ in got["soft"]} == set(ProbFormat)
        for key in ("norm fixed", "vec fp16"):  # (fewer since PIM takes its share of the draws)
            y = np.concatenate([a.ravel() for a in got[key]])
            assert len(y) > 250 and np.isfinite(y).all() and np.mean(y == 0) < 0.6, (key, np.mean(y == 0))


def act_writes(cfg, inst):
    """The ACT word runs ``(first, end)`` ``inst`` writes."""
    return [(a.first, a.end) for a in footprint(cfg, inst, dram=False).spads
            if a.spad == Spad.ACT and a.write]


def vec_results(rp, r):
    """int8 results of the VECs (not RES) whose ACT output words nothing overwrites later (the
    lanes written: tokens, or columns with ``direct``)."""
    cfg, out = rp.config, []
    insts = list(rp.instructions)
    for pc, i in enumerate(insts):
        if i.op != Opcode.VEC or i.func == VecFunc.RES:
            continue
        [(lo, hi)] = act_writes(cfg, i)
        later = [w for j in insts[pc + 1:] for w in act_writes(cfg, j)]
        if all(b <= lo or a >= hi for a, b in later):
            out.append(r.act()[lo:hi, :cfg.cols if i.direct else i.rows].ravel())
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


def has_pim(rp, ops=PIM_OPS):
    return any(isinstance(i, Instruction) and i.op in ops for i in rp.instructions)


def pim_results(rp):
    """``(gemv, read, result)``: the registers each PIM_GEMV set and the ACC words each PIM_READ
    wrote (int arrays), recorded as the golden executor applies them, and the golden Result."""
    gemv, read = [], []
    real = executor.apply_pim

    def spy(config, state, dram, act, acc, wrap_acc, inst):
        real(config, state, dram, act, acc, wrap_acc, inst)
        if inst.op == Opcode.PIM_GEMV:
            regs = inst.len if inst.bcast else inst.n
            gemv.append(state.res[inst.ch:inst.ch + inst.chans, inst.bank:inst.bank + inst.banks,
                                  inst.res:inst.res + regs].copy())
        elif inst.op == Opcode.PIM_READ:
            values = inst.n if inst.reduce else inst.banks * inst.n
            read.append(np.array([acc[inst.acc_addr + j * inst.chan_stride + w * inst.word_stride]
                                  for j in range(inst.chans)
                                  for w in range(-(-values // config.cols))]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executor, "apply_pim", spy)
        r = rp.run()
    return gemv, read, r


def test_pim_results_are_not_degenerate(tiny_runs):
    # the buffers hold ACT data and the rows segment data or stored results: most GEMVs compute
    # non-zero values and most PIM_READs bring some of them into ACC
    gemv, read = [], []
    for rp, r in tiny_runs:
        if r.status.error == ErrorCode.OK and has_pim(rp):
            g, rd, r2 = pim_results(rp)
            assert r2.outputs == r.outputs  # the spy changes nothing
            gemv += g
            read += rd
    assert len(gemv) > 200 and len(read) > 100, (len(gemv), len(read))
    assert np.mean([x.any() for x in gemv]) > 0.6
    assert np.mean([x.any() for x in read]) > 0.5
    values = np.concatenate([x.ravel() for x in gemv])
    assert np.mean(values == 0) < 0.5 and np.abs(values).max() > 1 << 15  # sums of many products


def dram_bytes(inst):
    d = footprint(TINY, inst).dram
    return set((d.starts[:, None] + np.arange(d.length)).ravel().tolist()), d.write


def test_dma_and_pim_share_dram_rows_and_tokens_order_them(tiny_runs):
    # PIM_WRITE and PIM_GEMV act on bytes that LOADs read and STOREs write, in both orders:
    # without the tokens between the DMA and PIM units the race check finds DRAM races
    valid = [rp for rp, r in tiny_runs if r.status.error == ErrorCode.OK
             and has_pim(rp, (Opcode.PIM_WRITE, Opcode.PIM_GEMV))]
    assert len(valid) > 0.5 * SEEDS
    kinds, conflicted = Counter(), 0
    for rp in valid[:60]:
        seen = set()
        dma = [(pc, i, *dram_bytes(i)) for pc, i in enumerate(rp.instructions) if i.unit == Unit.DMA]
        for pc, i in enumerate(rp.instructions):
            if i.op in (Opcode.PIM_WRITE, Opcode.PIM_GEMV):
                b, w = dram_bytes(i)
                seen |= {(j.op, i.op, "DMA first" if q < pc else "PIM first")
                         for q, j, bj, wj in dma if (w or wj) and b & bj}
        conflicted += bool(seen)
        kinds.update(seen)
    assert conflicted > 0.5 * 60 and len(kinds) == 6 and min(kinds.values()) >= 3, kinds
    other = {Unit.DMA: Unit.PIM, Unit.PIM: Unit.DMA}
    racy = 0
    for rp in valid:
        bare = [i.with_tokens(i.wait & ~(1 << other[i.unit]), i.signal & ~(1 << other[i.unit]))
                if i.unit in other else i for i in rp.instructions]
        r = run(TINY, bare, rp.segments)
        assert r.status.error == ErrorCode.OK
        racy += any(x.space == "dram" and {bare[x.first].unit, bare[x.second].unit} == set(other)
                    for x in r.races)
    # most conflicting pairs are also ordered through other units (more often since the vector
    # unit's VSOFT / VNORM / RES traffic on ACC chains DMA and PIM) or far apart in time
    assert racy > 0.05 * len(valid), (racy, len(valid))


def overlaps(r, ops):
    """Whether a LOAD/STORE and an instruction of ``ops`` were busy in a common cycle."""
    t = r.timing
    spans = [[(int(t.start[pc]), int(t.end[pc])) for pc in t.executed
              if t.instructions[pc].op in which] for which in ((Opcode.LOAD, Opcode.STORE), ops)]
    return any(a <= d and c <= b for a, b in spans[0] for c, d in spans[1])


def test_pim_modes_give_the_same_outputs(tiny_runs):
    # the same seed draws the same program in both modes (SYNC repairs may differ): single mode
    # never runs the DMA beside a PIM instruction, dual mode only beside PIM_WRITE / PIM_GEMV,
    # and the final memories agree
    count = Counter()
    for rp, r in tiny_runs[:100]:
        sp = random_program(SINGLE, rp.seed)
        rs = sp.run()
        assert (rs.status.error, rs.races, sp.variant) == (sp.expected_error, (), rp.variant)
        if rp.expected_error != ErrorCode.OK:
            continue
        count["valid"] += 1
        assert [i for i in sp.instructions if i.op != Opcode.SYNC] == \
            [i for i in rp.instructions if i.op != Opcode.SYNC]
        assert np.array_equal(rs.dram, r.dram)
        assert all(np.array_equal(rs.spads[k], r.spads[k]) for k in r.spads)
        count["single"] += overlaps(rs, PIM_OPS)
        count["dual bus"] += overlaps(r, (Opcode.PIM_GBUF, Opcode.PIM_READ))
        count["dual banks"] += overlaps(r, (Opcode.PIM_WRITE, Opcode.PIM_GEMV))
        count["slower"] += rs.status.cycles > r.status.cycles
    assert count["single"] == count["dual bus"] == 0, count
    assert count["dual banks"] > 0.2 * count["valid"] and count["slower"] > 0.2 * count["valid"], count


def test_fp16_configurations_draw_pim(request):
    # FP16 activations: PIM_GBUF converts the ACT lanes to INT8, so valid programs hold PIM
    # instructions (every one), PIM_RANGE is designed, no PIM instruction is BAD_FIELD, and the
    # GEMVs compute on converted data (not all zero)
    cfg = FP16
    assert pim_capable(TINY) and pim_capable(cfg)
    runs = request.getfixturevalue("fp16_runs")
    ops = Counter()
    for rp, _ in runs:
        if rp.expected_error == ErrorCode.OK:
            ops.update(i.op for i in rp.instructions if i.op in PIM_OPS)
    assert set(ops) == set(PIM_OPS) and min(ops.values()) > 50, ops
    valid = [rp for rp, _ in runs if rp.expected_error == ErrorCode.OK and has_pim(rp)]
    assert len(valid) > 0.5 * FP16_SEEDS
    gemv = []
    for rp in valid[:60]:
        gemv += pim_results(rp)[0]
    assert len(gemv) > 50 and np.mean([x.any() for x in gemv]) > 0.5
    seen = Counter(rp.variant for rp in random_programs(cfg, range(3000, 3100), error_rate=1.0,
                                                          length=8))
    assert any(v.startswith("PIM_RANGE:") for v in seen), seen
    assert not seen["BAD_FIELD:pim_fp16"]


CONFIGS = {
    "8x8-a16-g64": TileConfig(rows=8, cols=8, pe="mixpe-w4a16", group=64, act_words=512,
                              wgt_words=512, meta_words=32, acc_words=64, vparam_words=128),
    "2x3-baseline": TileConfig(rows=2, cols=3, pe="baseline-w4a8", act_words=64, wgt_words=64,
                               meta_words=8, acc_words=8, vparam_words=80, dram_rows=64,
                               dram_row_bytes=64),
    "5x7-a16-q1": TileConfig(rows=5, cols=7, pe="mixpe-w4a16", wbits=2, scale_bits=8, queue_depth=1),
    "8x2-baseline-a16": TileConfig(rows=8, cols=2, pe="baseline-w4a16", group=32, act_words=64,
                                   dram_banks=1, dram_rows=64, dram_row_bytes=1024, dram_bus_bytes=16),
    # 4 channels, single mode; 16 lanes but 8 result registers: no broadcast GEMV fits
    "4x4-4ch-single": TileConfig(rows=4, cols=4, pe="mixpe-w4a8", group=32, act_words=128,
                                 wgt_words=128, meta_words=16, acc_words=32, vparam_words=96,
                                 dram_channels=4, dram_banks=2, dram_bank_groups=1, dram_rows=32,
                                 dram_row_bytes=128, dram_bus_bytes=16, pim_mode="single",
                                 pim_lanes=16, pim_gbuf_bytes=64, pim_res_regs=8),
    # one MAC lane: no alignment errors; a 16-byte buffer, 4 registers
    "3x2-lanes1": TileConfig(rows=3, cols=2, pe="baseline-w4a8", act_words=64, wgt_words=64,
                             meta_words=8, acc_words=8, vparam_words=80, dram_channels=2,
                             dram_banks=2, dram_rows=32, dram_row_bytes=64, pim_lanes=1,
                             pim_gbuf_bytes=16, pim_res_regs=4),
}


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_other_small_configs(cfg):
    codes, pim = Counter(), Counter()
    for rp in random_programs(cfg, 40, error_rate=0.5):
        r = rp.run()
        assert (r.status.error, r.races) == (rp.expected_error, ()), (rp.seed, rp.variant)
        codes[rp.expected_error] += 1
        if rp.expected_error == ErrorCode.OK:
            pim.update(i.op for i in rp.instructions if i.op in PIM_OPS)
    assert codes[ErrorCode.OK] >= 10 and len(codes) >= 5
    assert set(pim) == (set(PIM_OPS) if pim_capable(cfg) else set()), pim


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
    assert "vector unit: " in text and "VNORM SQ" in text
