"""The instruction emitter (compiler/emit.py) through its public methods: the dependency tokens it
inserts between units, and the programs it builds running on the golden executor.

* RAW, WAR and WAW conflicts between units give the later instruction a wait on the *latest*
  conflicting instruction of the other unit, which signals it; instructions of one unit, and
  disjoint words, get no token;
* every wait is paired (positionally, per unit pair) with an earlier signal: tokens never point
  forward;
* random programs run on :func:`mixpim.models.executor.run` with status OK (no deadlock, no
  ``TOKEN_OVERFLOW``) and no races;
* a stream whose loads run ten instructions ahead of the GEMMs that consume them: the tokens of
  its direct dependencies would overflow the 3-bit counters (shown on the cycle model), the
  emitter's do not; where the emitter cannot prove a program safe, :meth:`Emitter.program` either
  returns a program that does not overflow or raises :class:`CompileError`, never an overflowing
  program.
"""

import random

import pytest

from mixpim.compiler.emit import CompileError, Emitter
from mixpim.models.config import preset
from mixpim.models.executor import run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, Unit, UnitMask, VecFunc
from mixpim.models.tile_timing import check_instruction

TINY = preset("tiny")  # 4x4, group 32; ACT/WGT 256 words, META/ACC 64, VPARAM 128
DMA, GEMM, VEC = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC
PARAM = TINY.vparam_param_base  # first column-multiplier word


def tokens(em):
    """[(wait, signal)] of the emitted instructions (HALT left out)."""
    return [(int(i.wait), int(i.signal)) for i in em.instructions()[:-1]]


def pairs(instructions):
    """``{(src, dst): [(giver pc, taker pc)]}``: the k-th signal src gives dst with the k-th wait of
    dst on src (the dispatcher's positional pairing). Raises if the counts differ."""
    out = {}
    units = [Unit.DMA, Unit.GEMM, Unit.VEC]
    for src in units:
        for dst in units:
            if src == dst:
                continue
            givers = [pc for pc, i in enumerate(instructions)
                      if i.unit == src and i.signal & (1 << dst)]
            takers = [pc for pc, i in enumerate(instructions)
                      if i.unit == dst and i.wait & (1 << src)]
            assert len(givers) == len(takers), (src.name, dst.name, givers, takers)
            out[src, dst] = list(zip(givers, takers))
    return out


def assert_runs_clean(cfg, instructions):
    r = run(cfg, instructions)
    assert r.status.error == ErrorCode.OK, r.timing.message
    assert r.races == ()
    return r


# -- which conflicts get a token ---------------------------------------------------------------

def test_raw_waits_on_the_latest_writer():
    em = Emitter(TINY)
    em.load(Spad.ACT, 0, 0, 32)              # 0: writes ACT 0..31
    em.load(Spad.ACT, 32, 128, 32)           # 1: writes ACT 32..63
    em.load(Spad.VPARAM, 100, 1024, 4)       # 2: not read by the GEMM
    em.gemm(0, 0, 0, 0, groups=2)            # 3: reads ACT 0..63, WGT 0..63, META 0..1
    assert tokens(em) == [(0, 0), (0, GEMM), (0, 0), (DMA, 0)]


def test_raw_on_an_earlier_writer_when_the_later_ones_are_disjoint():
    em = Emitter(TINY)
    em.load(Spad.ACT, 0, 0, 32)              # 0: the GEMM's activations
    em.load(Spad.ACT, 64, 128, 32)           # 1: other words
    em.load(Spad.META, 10, 0, 1)             # 2: other words
    em.gemm(0, 0, 0, 0, groups=1)            # 3
    assert tokens(em) == [(0, GEMM), (0, 0), (0, 0), (DMA, 0)]


def test_war_waits_on_the_latest_reader():
    em = Emitter(TINY)
    em.gemm(0, 0, 0, 0, groups=1)            # 0: reads WGT 0..31
    em.gemm(0, 32, 1, 4, groups=1)           # 1: reads WGT 32..63
    em.gemm(0, 100, 2, 8, groups=1)          # 2: reads WGT 100..131
    em.load(Spad.WGT, 16, 0, 32)             # 3: overwrites WGT 16..47, read by 0 and 1
    assert tokens(em) == [(0, 0), (0, DMA), (0, 0), (GEMM, 0)]


def test_waw_between_units():
    em = Emitter(TINY)
    em.vec(VecFunc.RELU, 0, 40, PARAM, 4)    # 0: VEC writes ACT 40..43
    em.load(Spad.ACT, 42, 0, 1)              # 1: DMA overwrites ACT 42 (WAW)
    em.vec(VecFunc.RELU, 4, 42, PARAM, 4)    # 2: VEC writes ACT 42..45 again (WAW on the DMA)
    assert tokens(em) == [(0, DMA), (VEC, VEC), (DMA, 0)]


def test_vec_reads_acc_params_table_and_residual():
    em = Emitter(TINY)
    em.gemm(0, 0, 0, 8, groups=1)                         # 0: writes ACC 8..11
    em.load(Spad.VPARAM, PARAM + 4, 0, 4)                 # 1: column multipliers
    em.load(Spad.VPARAM, 0, 64, 4)                        # 2: the GELU table's first words
    em.load(Spad.ACT, 200, 128, 4)                        # 3: a residual
    em.vec(VecFunc.REQUANT, 8, 100, PARAM + 4, 4)         # 4: ACC (GEMM 0), params (LOAD 1)
    em.vec(VecFunc.RELU, 20, 104, PARAM + 8, 4)           # 5: nothing written before
    em.vec(VecFunc.GELU, 20, 108, PARAM + 8, 4)           # 6: the table (LOAD 2)
    em.vec(VecFunc.ADD, 20, 112, PARAM + 8, 4, res_addr=200)  # 7: the residual (LOAD 3)
    em.gemm(0, 0, 0, 8, groups=1)                         # 8: overwrites ACC 8..11 read by VEC 4
    assert tokens(em) == [(0, VEC), (0, VEC), (0, VEC), (0, VEC),
                          (GEMM | DMA, GEMM), (0, 0), (DMA, 0), (DMA, 0), (VEC, 0)]


def test_no_token_within_a_unit_or_for_disjoint_words():
    em = Emitter(TINY)
    em.load(Spad.ACT, 0, 0, 32)              # DMA writes ...
    em.store(Spad.ACT, 0, 4096, 32)          # ... DMA reads: the same unit
    em.load(Spad.ACT, 0, 8192, 32)           # DMA overwrites what it stored: the same unit
    em.gemm(32, 0, 0, 0, groups=1)           # ACT 32..63: disjoint from the loads
    em.gemm(64, 32, 1, 0, groups=1)          # WAW on ACC with the GEMM before: one unit
    em.vec(VecFunc.RELU, 4, 128, PARAM, 4)   # ACC 4..7: disjoint from the GEMMs' ACC 0..3
    em.store(Spad.ACC, 16, 0, 4)             # ACC 16..19: nothing wrote them
    assert tokens(em) == [(0, 0)] * 7


def test_one_wait_covers_earlier_instructions_of_the_same_unit():
    """A unit completes in order: after waiting on LOAD 1, the GEMM needs no wait for LOAD 0."""
    em = Emitter(TINY)
    em.load(Spad.ACT, 0, 0, 32)              # 0
    em.load(Spad.WGT, 0, 0, 32)              # 1
    em.gemm(0, 0, 0, 0, groups=1)            # 2: waits on 1 (the latest), which covers 0
    em.gemm(0, 0, 0, 4, groups=1)            # 3: same operands: already covered
    em.load(Spad.META, 0, 0, 1)              # 4: WAR on META 0 read by GEMMs 2 and 3
    em.gemm(0, 0, 0, 8, groups=1)            # 5: RAW on META 0 (LOAD 4)
    assert tokens(em) == [(0, 0), (0, GEMM), (DMA, 0), (0, DMA), (GEMM, GEMM), (DMA, 0)]


def test_program_carries_the_tokens_and_halts():
    em = Emitter(TINY)
    em.load(Spad.ACT, 0, 0, 32, comment="x")
    em.gemm(0, 0, 0, 0, groups=1)
    prog = em.program()
    assert list(prog.instructions) == em.instructions()
    assert prog.instructions[-1] == Instruction(Opcode.HALT)
    assert prog.comments == {0: "x"}
    assert_runs_clean(TINY, prog.instructions)


# -- random programs -----------------------------------------------------------------------------

def random_instruction(cfg, rng):
    """A legal LOAD / STORE / GEMM / VEC on a few small regions, so that many of them conflict."""
    while True:
        kind = rng.choice(("load", "load", "store", "gemm", "gemm", "vec"))
        if kind in ("load", "store"):
            spad = rng.choice((Spad.ACT, Spad.WGT, Spad.META, Spad.VPARAM) if kind == "load"
                              else (Spad.ACT, Spad.ACC))
            depth, wb = cfg.spad_words(spad), cfg.word_bytes(spad)
            words = rng.choice((1, 4, 32)) if spad in (Spad.ACT, Spad.WGT) else rng.choice((1, 4))
            addr = rng.randrange(0, depth - words + 1, 4)
            if spad == Spad.VPARAM and rng.random() < 0.7:
                addr = rng.randrange(cfg.vparam_param_base, depth - words + 1)
            args = dict(spad=spad, spad_addr=addr, dram_addr=wb * rng.randrange(256), words=words,
                        rows=1)
        elif kind == "gemm":
            groups = rng.choice((1, 1, 2))
            beats = groups * cfg.group
            args = dict(act_addr=rng.randrange(0, cfg.act_words - beats + 1, 32),
                        wgt_addr=rng.randrange(0, cfg.wgt_words - beats + 1, 32),
                        meta_addr=rng.randrange(0, 8), acc_addr=rng.randrange(0, 16, 4),
                        groups=groups, accumulate=rng.randint(0, 1))
        else:
            act = rng.randrange(0, 64, cfg.cols)
            args = dict(func=rng.choice(list(VecFunc)), acc_addr=rng.randrange(0, 16, 4),
                        act_addr=act, res_addr=rng.choice((act, rng.randrange(0, 64, cfg.cols))),
                        param_addr=rng.randrange(cfg.vparam_param_base, cfg.vparam_words - cfg.cols),
                        rows=rng.randint(1, cfg.rows))
        op = {"load": Opcode.LOAD, "store": Opcode.STORE, "gemm": Opcode.GEMM, "vec": Opcode.VEC}[kind]
        inst = Instruction(op, **args)
        if check_instruction(cfg, inst) is None:
            return kind, args


def emit(em, kind, args):
    args = dict(args)
    if kind in ("load", "store"):
        f = em.load if kind == "load" else em.store
        return f(args["spad"], args["spad_addr"], args["dram_addr"], args["words"], rows=args["rows"])
    if kind == "gemm":
        return em.gemm(**args)
    return em.vec(args.pop("func"), args.pop("acc_addr"), args.pop("act_addr"),
                  args.pop("param_addr"), args.pop("rows"), res_addr=args.pop("res_addr"))


@pytest.mark.parametrize("depth", [1, 4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_random_programs_run_without_races(seed, depth):
    cfg = TINY.replace(queue_depth=depth)
    rng = random.Random(seed * 10 + depth)
    em = Emitter(cfg)
    for _ in range(150):
        emit(em, *random_instruction(cfg, rng))
    ins = em.instructions()
    # the emitted operands are the ones given; every wait takes an earlier instruction's signal
    assert len(ins) == 151 and ins[-1].op == Opcode.HALT
    links = pairs(ins)
    assert all(giver < taker for p in links.values() for giver, taker in p)
    assert sum(len(p) for p in links.values()) > 30  # the programs do conflict
    prog = em.program()
    assert_runs_clean(cfg, prog.instructions)


# -- the 3-bit token counters --------------------------------------------------------------------

def run_ahead(cfg, slots=12, lead=10, gemms=60):
    """LOADs of META ring slots running ``lead`` instructions ahead of the one-group GEMMs that
    read them (a LOAD reuses the slot of the GEMM ``slots - lead`` before the last one).
    Returns the emitter and, per pc, ("L" or "G", index)."""
    em = Emitter(cfg)
    order = []

    def load(i):
        order.append(("L", i))
        em.load(Spad.META, i % slots, cfg.meta_word_bytes * i, 1)

    def gemm(i):
        order.append(("G", i))
        em.gemm(0, 0, i % slots, 0, groups=1)

    for i in range(lead):
        load(i)
    for i in range(gemms):
        gemm(i)
        load(i + lead)
    return em, order


def direct_tokens(instructions, order, slots):
    """The same instructions with the tokens of their direct dependencies only: GEMM i waits on
    LOAD i, LOAD j on GEMM j - slots (the slot's last reader)."""
    pc_of = {x: pc for pc, x in enumerate(order)}
    wait, signal = [0] * len(order), [0] * len(order)
    for (kind, i), pc in pc_of.items():
        src = ("L", i) if kind == "G" else ("G", i - slots)
        if src in pc_of:
            wait[pc] |= 1 << instructions[pc_of[src]].unit
            signal[pc_of[src]] |= 1 << instructions[pc].unit
    body = [inst.replace(wait=w, signal=s) for inst, w, s in zip(instructions, wait, signal)]
    return body + [Instruction(Opcode.HALT)]


@pytest.mark.parametrize("depth", [4, 8])
def test_loads_running_ahead_stay_within_the_token_counters(depth):
    cfg = TINY.replace(queue_depth=depth)
    em, order = run_ahead(cfg)
    ins = em.program().instructions
    assert_runs_clean(cfg, ins)
    # the direct dependencies alone would overflow a counter: the case reaches the limit
    naive = run(cfg, direct_tokens(ins[:-1], order, 12))
    assert naive.status.error == ErrorCode.TOKEN_OVERFLOW
    assert naive.races == ()


@pytest.mark.parametrize("depth", [4, 8])
@pytest.mark.parametrize("layout", ["loads-first", "interleaved"])
def test_program_never_returns_an_overflowing_program(depth, layout):
    """Sixteen LOADs into distinct META words, each read by a GEMM (no slot reused, so no GEMM
    ever holds the DMA back): the loads may outrun the GEMMs by more than seven tokens."""
    cfg = TINY.replace(queue_depth=depth)
    em = Emitter(cfg)
    if layout == "loads-first":
        for i in range(16):
            em.load(Spad.META, i, 12 * i, 1)
        for i in range(16):
            em.gemm(0, 0, i, 0, groups=1)
    else:
        for i in range(16):
            em.load(Spad.META, i, 12 * i, 1)
            em.gemm(0, 0, i, 0, groups=1)
    unchecked = run(cfg, em.instructions())
    try:
        prog = em.program()
    except CompileError as e:
        assert "token counter overflow" in str(e)
        assert unchecked.status.error == ErrorCode.TOKEN_OVERFLOW  # the refusal is not spurious
    else:
        assert_runs_clean(cfg, prog.instructions)
