"""The dispatch checker (hw/checker.py) in the Amaranth simulator against
:func:`mixpim.models.tile_timing.check_instruction`: for every legal instruction, ``o_error`` is the
golden code (``OK`` where the golden model finds nothing). The operand views are driven as the
tile does (every view sees the same operand bits of the word, whatever the opcode), with seeded
random LOAD/STORE/GEMM/VEC instructions biased to the scratchpad and DRAM ends on three
configurations, and directed edge cases: one word past each scratchpad's end, the DRAM end,
misaligned DRAM addresses and strides, sums that would wrap a narrow adder, VEC rows beyond the
array, VPARAM below the column-parameter base, and ADD residuals overlapping the output. VSOFT
and the PIM instructions likewise: random ones with one quantity at or near its limit, and every
check of ``_vsoft_fault`` and ``pim_problem`` (each PIM_RANGE bound) and of their scratchpad
words at its edge; the PIM checks on the FP16 configuration too, where they are the INT8 ones
(PIM_GBUF converts FP16 ACT lanes to INT8: no BAD_FIELD)."""

import random

import pytest

from mixpim.hw.checker import DispatchChecker
from mixpim.hw.decoder import operand_layout
from mixpim.models.config import preset
from mixpim.models.isa import (ErrorCode, Instruction, NormFunc, Opcode, ProbFormat, SoftFunc, Spad,
                               VecFunc, format_of)
from mixpim.models.pim import PIM_OPS
from mixpim.models.tile_array import wsrc_supported
from mixpim.models.tile_timing import check_instruction
from helpers import rejects, run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,
    "fpga": preset("fpga"),
    # FP16 activations (8-byte ACT words), 3 columns (9-byte META words, odd ACC words), small
    # scratchpads and DRAM
    "fp16-cols3": TINY.replace(pe="mixpe-w4a16", cols=3, act_words=128, wgt_words=64,
                               meta_words=16, acc_words=32, dram_rows=64),
    # BitMoD: no wsrc (BAD_FIELD), wider accumulators
    "bitmod": TINY.replace(pe="bitmod-w4a16", wbits=3),
}
OPERANDS_LO = 24  # first operand bit of every format (the header is common)
VIEWS = {"i_dma": Opcode.LOAD, "i_gemm": Opcode.GEMM, "i_vec": Opcode.VEC, "i_vsoft": Opcode.VSOFT,
         "i_vnorm": Opcode.VNORM,
         **{f"i_{op.name.lower()}": op for op in (Opcode.PIM_GBUF, Opcode.PIM_WRITE,
                                                  Opcode.PIM_GEMV, Opcode.PIM_READ,
                                                  Opcode.PIM_ACT)}}


def golden_code(cfg, inst):
    got = check_instruction(cfg, inst)
    return ErrorCode.OK if got is None else got[0]


def simulate(cfg, insts):
    """``o_error`` of the checker for each instruction."""
    dut = DispatchChecker(cfg)
    sizes = {port: operand_layout(op).size for port, op in VIEWS.items()}
    out = []

    async def testbench(ctx):
        for inst in insts:
            operands = inst.encode() >> OPERANDS_LO
            ctx.set(dut.i_opcode, int(inst.op))
            for port, size in sizes.items():
                ctx.set(getattr(dut, port).as_value(), operands & ((1 << size) - 1))
            out.append(ErrorCode(ctx.get(dut.o_error)))

    run(dut, testbench, clock=False)
    return out


def check(cfg, insts):
    """The checker agrees with the golden model on every instruction; returns the golden codes."""
    want = [golden_code(cfg, inst) for inst in insts]
    got = simulate(cfg, insts)
    bad = [f"{inst}: checker {g.name}, golden {w.name} ({check_instruction(cfg, inst)})"
           for inst, g, w in zip(insts, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(insts)} differ:\n" + "\n".join(bad[:20])
    return want


# -- random instructions near the limits -------------------------------------------------------

def _field(op, name):
    return next(f for f in format_of(op).operands if f.name == name)


def value(rng, op, name, limit, edge, spread=3):
    """A value of field ``name`` of ``op``: at the edge (``edge``: ``limit`` plus or minus up to
    ``spread``, sometimes anywhere in the field's range) or inside (``0 .. limit``); clamped to the
    field's legal values."""
    f = _field(op, name)
    if not edge:
        v = rng.randint(0, max(0, limit))
    elif rng.random() < 0.85:
        v = limit + rng.randint(-spread, spread)
    else:
        v = rng.randint(f.minimum, f.maximum)
    return min(max(v, f.minimum), f.maximum)


def random_dma(cfg, rng):
    """A LOAD or STORE with one quantity (chosen at random) at or near its limit."""
    op = rng.choice((Opcode.LOAD, Opcode.STORE))
    edge = rng.choice(("words", "rows", "spad_addr", "stride", "dram_addr", "align", None))
    spad = rng.choice(_field(op, "spad").allowed)
    depth, wb = cfg.spad_words(spad), cfg.word_bytes(spad)
    words = value(rng, op, "words", rng.choice((2, depth // 4, depth)), edge == "words")
    rows = value(rng, op, "rows", rng.choice((1, 2, 4)), edge == "rows", spread=2)
    spad_addr = value(rng, op, "spad_addr", depth - rows * words, edge == "spad_addr")
    stride = wb * rng.choice((0, words, words + rng.randint(0, 64)))
    if edge == "stride":
        stride = value(rng, op, "stride", stride, True, spread=2 * wb)  # mostly misaligned
    end = cfg.dram_bytes - (rows - 1) * stride - words * wb  # the last start that fits
    dram_addr = wb * value(rng, op, "dram_addr", end // wb, edge == "dram_addr", spread=2)
    if edge == "align":
        dram_addr += rng.randint(0, wb - 1)
    dram_addr = min(dram_addr, _field(op, "dram_addr").maximum)
    return Instruction(op, spad=spad, spad_addr=spad_addr, dram_addr=dram_addr, words=words,
                       rows=rows, stride=stride)


def random_gemm(cfg, rng):
    """A GEMM with one operand range (chosen at random) at or near its scratchpad's end."""
    op = Opcode.GEMM
    edge = rng.choice(("groups", "act_addr", "wgt_addr", "meta_addr", "acc_addr", None))
    most = min(cfg.act_words, cfg.wgt_words) // cfg.group
    groups = value(rng, op, "groups", most, edge == "groups", spread=1)
    beats = groups * cfg.group
    wsrc = int(rng.random() < 0.3)  # INT8 weights from ACT: no META (meta_addr 0, or a fault)
    wgt_words = cfg.act_words if wsrc else cfg.wgt_words
    meta_addr = value(rng, op, "meta_addr", cfg.meta_words - groups, edge == "meta_addr")
    return Instruction(op, groups=groups, accumulate=rng.randint(0, 1), wsrc=wsrc,
                       act_addr=value(rng, op, "act_addr", cfg.act_words - beats, edge == "act_addr"),
                       wgt_addr=value(rng, op, "wgt_addr", wgt_words - beats, edge == "wgt_addr"),
                       meta_addr=meta_addr if not wsrc or rng.random() < 0.2 else 0,
                       acc_addr=value(rng, op, "acc_addr", cfg.acc_words - cfg.rows,
                                      edge == "acc_addr"))


def random_vec(cfg, rng):
    """A VEC with one quantity (chosen at random) at or near its limit; ADD residuals next to the
    output (coinciding, overlapping or apart) or anywhere; a quarter with ``bias`` (two VPARAM
    words per column; BAD_FIELD with GLU and ROPE)."""
    op = Opcode.VEC
    edge = rng.choice(("rows", "acc_addr", "act_addr", "res_addr", "param_lo", "param_hi",
                       "overlap", None))
    func = rng.choice(list(VecFunc))
    rows = value(rng, op, "rows", cfg.rows, edge == "rows", spread=2)
    rows = max(rows, 1)
    acc_addr = value(rng, op, "acc_addr", cfg.acc_words - min(rows, cfg.rows), edge == "acc_addr")
    act_addr = value(rng, op, "act_addr", cfg.act_words - cfg.cols, edge == "act_addr")
    if edge == "overlap":
        res_addr = value(rng, op, "res_addr", act_addr, True, spread=cfg.cols + 1)
    else:
        res_addr = value(rng, op, "res_addr", cfg.act_words - cfg.cols, edge == "res_addr")
    base, top = cfg.vparam_param_base, cfg.vparam_words - cfg.cols
    if edge == "param_lo":
        param_addr = value(rng, op, "param_addr", base, True)
    else:
        param_addr = base + value(rng, op, "param_addr", top - base, edge == "param_hi")
    pair = func in (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
    bias = int(rng.random() < 0.25)
    if (func == VecFunc.RES or pair) and edge != "res_addr":
        res_addr = value(rng, op, "res_addr", cfg.acc_words - rows, False)  # an ACC row
    if (pair or bias) and edge != "param_hi":
        param_addr = min(param_addr, max(top - cfg.cols, base))
    elif bias:  # the edge of the biases' words
        param_addr = max(param_addr - cfg.cols, 0)
    fmt = int(rng.random() < (0.8 if cfg.act_format == "fp16" else 0.1))
    direct = int(rng.random() < 0.2)
    table_addr = value(rng, op, "table_addr", cfg.act_words - 2 * cfg.cols, edge == "act_addr")
    return Instruction(op, func=func, rows=rows, acc_addr=acc_addr, act_addr=act_addr,
                       res_addr=res_addr, param_addr=param_addr, fmt=fmt, direct=direct,
                       table_addr=table_addr, bias=bias)


def random_vsoft(cfg, rng):
    """A VSOFT with one quantity (chosen at random) at or near its limit."""
    op = Opcode.VSOFT
    edge = rng.choice(("words", "count", "acc_addr", "kparam", "vparam", "act_addr", "param_lo",
                       None))
    words = max(1, value(rng, op, "words", cfg.rows, edge == "words", spread=2))
    count = max(1, value(rng, op, "count", min(words, cfg.rows) * cfg.cols, edge == "count"))
    base, top = cfg.vparam_param_base, cfg.vparam_words - count
    kw = {}
    for name in ("kparam", "vparam"):
        if edge == "param_lo":
            kw[name] = value(rng, op, name, base, rng.random() < 0.5)
        else:
            kw[name] = base + value(rng, op, name, max(top - base, 0), edge == name)
    col = int(rng.random() < 0.3)
    lane = value(rng, op, "lane", cfg.rows - 1, edge == "lane") if col else int(rng.random() < 0.05)
    reach = (words - 1) * cfg.rows + 1 if col else words
    written = words * cfg.cols if col else -(-count // cfg.rows)
    return Instruction(op, func=rng.choice(list(SoftFunc)), words=words, count=count,
                       acc_addr=value(rng, op, "acc_addr", max(cfg.acc_words - reach, 0),
                                      edge == "acc_addr"),
                       act_addr=value(rng, op, "act_addr", max(cfg.act_words - written, 0),
                                      edge == "act_addr"),
                       first=rng.randint(0, 1), pfmt=rng.choice(list(ProbFormat)), col=col,
                       lane=lane, **kw)


def random_vnorm(cfg, rng):
    """A VNORM with one quantity (chosen at random) at or near its limit."""
    op = Opcode.VNORM
    edge = rng.choice(("rows", "acc_addr", "act_addr", "nparam", "param_hi", "param_lo", None))
    rows = max(1, value(rng, op, "rows", cfg.rows, edge == "rows", spread=2))
    to_acc = int(rng.random() < 0.3)
    fmt = int(rng.random() < (0.6 if cfg.act_format == "fp16" else 0.05))
    base, top = cfg.vparam_param_base, cfg.vparam_words
    out_top = (cfg.acc_words - rows) if to_acc else (cfg.act_words - cfg.cols)
    param = (value(rng, op, "param_addr", base, True) if edge == "param_lo" else
             base + value(rng, op, "param_addr", max(top - 2 * cfg.cols - base, 0), edge == "param_hi"))
    return Instruction(op, func=rng.choice(list(NormFunc)), rows=rows, to_acc=to_acc, fmt=fmt,
                       first=rng.randint(0, 1), rms=rng.randint(0, 1), qshift=rng.randint(0, 31),
                       acc_addr=value(rng, op, "acc_addr", cfg.acc_words - rows, edge == "acc_addr"),
                       act_addr=value(rng, op, "act_addr", max(out_top, 0), edge == "act_addr"),
                       nparam=base + value(rng, op, "nparam", max(top - 2 - base, 0), edge == "nparam"),
                       param_addr=param)


def random_pim(cfg, rng):
    """A PIM instruction with one quantity (chosen at random) at or near its limit."""
    op = rng.choice((Opcode.PIM_GBUF, Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_READ))
    names = [f.name for f in format_of(op).operands]
    # the scratchpad ends more often: the other fields have more edges between them
    edge = rng.choice(names + [None, None] + ["act_addr", "acc_addr"] * 3)
    nch, nb, lanes = cfg.dram_channels, cfg.dram_banks, cfg.pim_lanes
    gbuf, row_bytes, regs = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_res_regs

    def v(name, limit, spread=3):
        return value(rng, op, name, limit, edge == name, spread)

    def aligned(name, limit):
        """A GEMV ``len``, ``col`` or ``gaddr``: a multiple of ``pim_lanes`` unless at its edge."""
        x = v(name, limit, spread=lanes)
        return x if edge == name else x - x % lanes

    chans = max(1, v("chans", rng.choice((1, nch)), spread=1))
    kw = {"chans": chans, "ch": v("ch", max(nch - chans, 0), spread=1)}
    if op == Opcode.PIM_GBUF:
        packed = rng.randint(0, 1)
        length = max(1, v("len", rng.choice((4, gbuf // 2, gbuf))))
        words = -(-length // cfg.rows) if packed else length
        stride = v("act_stride", rng.choice((0, words, words + 3)))
        kw.update(packed=packed, len=length, act_stride=stride,
                  gaddr=v("gaddr", max(gbuf - length, 0)),
                  lane=v("lane", max(cfg.rows - chans, 0), spread=1),
                  act_addr=v("act_addr", max(cfg.act_words - words - (chans - 1) * stride, 0)))
    elif op == Opcode.PIM_WRITE:
        length = max(1, v("len", rng.choice((4, 32, min(gbuf, row_bytes)))))
        kw.update(bank=v("bank", nb - 1, spread=1), row=v("row", cfg.dram_rows - 1, spread=1),
                  len=length, col=v("col", max(row_bytes - length, 0)),
                  gaddr=v("gaddr", max(gbuf - length, 0)))
    elif op == Opcode.PIM_GEMV:
        banks = max(1, v("banks", rng.choice((1, nb)), spread=1))
        bcast = rng.randint(0, 1)
        length = max(1, aligned("len", lanes * rng.choice((1, 2, 4))))
        n = max(1, v("n", rng.choice((1, 2, 4)), spread=2))
        elems, nres = (banks * n, length) if bcast else (length, n)
        kw.update(banks=banks, bcast=bcast, len=length, n=n, accumulate=rng.randint(0, 1),
                  bank=v("bank", max(nb - banks, 0), spread=1),
                  row=v("row", cfg.dram_rows - 1, spread=1),
                  col=aligned("col", max(row_bytes - n * length, 0)),
                  gaddr=aligned("gaddr", max(gbuf - elems, 0)),
                  res=v("res", max(regs - nres, 0)))
    else:
        banks = max(1, v("banks", rng.choice((1, nb)), spread=1))
        n = max(1, v("n", rng.choice((1, 3, regs)), spread=2))
        reduce_ = rng.randint(0, 1)
        words = -(-(n if reduce_ else banks * n) // cfg.cols)
        ws, cs = v("word_stride", rng.choice((0, 1, 2))), v("chan_stride", rng.choice((0, words)))
        reach = (chans - 1) * cs + (words - 1) * ws + 1
        kw.update(banks=banks, n=n, reduce=reduce_, word_stride=ws, chan_stride=cs,
                  bank=v("bank", max(nb - banks, 0), spread=1), res=v("res", max(regs - n, 0)),
                  acc_addr=v("acc_addr", max(cfg.acc_words - reach, 0)))
    return Instruction(op, **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_instructions(name):
    cfg = CONFIGS[name]
    rng = random.Random(len(name))
    insts = [gen(cfg, rng) for _ in range(250) for gen in (random_dma, random_gemm, random_vec,
                                                          random_vsoft, random_vnorm, random_pim)]
    insts += [Instruction(op) for op in (Opcode.NOP, Opcode.SYNC, Opcode.HALT)]
    codes = check(cfg, insts)
    # the mix reaches every outcome of every unit
    seen = {(inst.op if inst.op != Opcode.STORE else Opcode.LOAD, code)
            for inst, code in zip(insts, codes)}
    assert seen >= {(Opcode.LOAD, ErrorCode.OK), (Opcode.LOAD, ErrorCode.SPAD_RANGE),
                    (Opcode.LOAD, ErrorCode.DRAM_RANGE), (Opcode.GEMM, ErrorCode.OK),
                    (Opcode.GEMM, ErrorCode.SPAD_RANGE), (Opcode.VEC, ErrorCode.OK),
                    (Opcode.VEC, ErrorCode.SPAD_RANGE), (Opcode.VEC, ErrorCode.BAD_FIELD),
                    (Opcode.VSOFT, ErrorCode.BAD_FIELD), (Opcode.VSOFT, ErrorCode.OK),
                    (Opcode.VSOFT, ErrorCode.SPAD_RANGE), (Opcode.GEMM, ErrorCode.BAD_FIELD)}
    assert seen >= {(Opcode.VNORM, code) for code in (ErrorCode.OK, ErrorCode.BAD_FIELD,
                                                       ErrorCode.SPAD_RANGE)}
    # the PIM checks alike on INT8 and FP16 configurations
    assert seen >= {(op, code) for op in (Opcode.PIM_GBUF, Opcode.PIM_READ)
                    for code in (ErrorCode.OK, ErrorCode.PIM_RANGE, ErrorCode.SPAD_RANGE)}
    assert seen >= {(op, code) for op in (Opcode.PIM_WRITE, Opcode.PIM_GEMV)
                    for code in (ErrorCode.OK, ErrorCode.PIM_RANGE)}
    assert not {(op, ErrorCode.BAD_FIELD) for op in PIM_OPS} & seen
    assert sum(c == ErrorCode.OK for c in codes) > len(codes) // 5


# -- products and wide fields at their limits ----------------------------------------------------
# The checker clips sums and products to the width of the bound they are compared with, drops the
# low zero bits of aligned DRAM addresses and strides, and narrows fields the checks before have
# bounded. Each instruction here puts one quantity (chosen at random) just below, at or just above
# its limit, the others inside theirs: products with factors from 1 to the fields' maxima (one
# factor 0, or 1, where the other is wide), fields at powers of two and at their extremes.

def near(rng, op, name, *targets):
    """A legal value of ``name``: one of ``targets`` plus or minus one (mostly) or up to 16, the
    field's minimum or maximum, a power of two (or one less), or anything in its range."""
    f = _field(op, name)
    r = rng.random()
    if r < 0.6:
        v = rng.choice(targets) + rng.choice((-1, 0, 1, rng.randint(-16, 16)))
    elif r < 0.75:
        v = rng.choice((f.minimum, f.maximum))
    elif r < 0.9:
        v = (1 << rng.randint(0, f.maximum.bit_length())) - rng.randint(0, 1)
    else:
        v = rng.randint(f.minimum, f.maximum)
    return min(max(v, f.minimum), f.maximum)


def factors(rng, room, most_x, most_y):
    """``(x, y)``, both at least 1, with ``x * y`` around ``room``: ``x`` anything up to
    ``most_x``, ``y`` the most that fits (or one more), or either at its maximum."""
    room = max(room, 1)
    x = rng.choice((1, 2, 3, room, rng.randint(1, room), rng.randint(1, most_x), most_x))
    x = min(max(x, 1), most_x)
    y = rng.choice((room // x, room // x + 1, room // x + 1, most_y, 1))
    return x, min(max(y, 1), most_y)


def wide_dma(cfg, rng):
    """``rows * words`` around the scratchpad room after ``spad_addr``; ``dram_addr`` and
    ``stride`` multiples of the word size's power-of-two or odd factor only; the DRAM end around
    ``dram_bytes``, with strides up to the field's maximum."""
    op = rng.choice((Opcode.LOAD, Opcode.STORE))
    spad = rng.choice(_field(op, "spad").allowed)
    depth, wb = cfg.spad_words(spad), cfg.word_bytes(spad)
    max_rows, max_words = _field(op, "rows").maximum, _field(op, "words").maximum
    max_stride, max_addr = _field(op, "stride").maximum, _field(op, "dram_addr").maximum
    edge = rng.choice(("fill", "align", "end", "end"))
    spad_addr, rows, words, stride, dram_addr = 0, 1, 1, 0, 0
    if edge == "fill":
        spad_addr = near(rng, op, "spad_addr", 0, depth - 1, depth)
        rows, words = factors(rng, depth - spad_addr, max_rows, max_words)
        if rng.random() < 0.5:
            words, rows = factors(rng, depth - spad_addr, max_words, max_rows)
    elif edge == "align":
        # multiples of the power-of-two or the odd factor of the word size only, mostly inside
        # DRAM (else its end decides), at times anywhere in the field
        odd = wb >> ((wb & -wb).bit_length() - 1)
        spans = (rng.choice((max_addr, cfg.dram_bytes // 2, cfg.dram_bytes // 2)),
                 rng.choice((max_stride, wb * 64)))
        dram_addr, stride = (rng.choice((1, wb & -wb, odd, wb)) * rng.randint(0, most // wb)
                             + rng.choice((0, 0, 0, 1)) for most in spans)
        rows = rng.randint(1, 4)
    else:  # the scratchpad words fit, both alignments hold
        rows, words = factors(rng, depth, min(depth, max_rows), min(depth, max_words))
        rows, words = (rows, words) if rows * words <= depth else (rows, depth // rows)
        k = rng.choice((0, 1, words, rng.randint(0, max_stride // wb), max_stride // wb,
                        cfg.dram_bytes // wb // max(rows - 1, 1)))
        stride = min(k, max_stride // wb) * wb
        # the last start that fits
        last = cfg.dram_bytes // wb * wb - (rows - 1) * stride - words * wb
        dram_addr = rng.choice((last + wb * rng.choice((-1, 0, 1)), cfg.dram_bytes // wb * wb,
                                max_addr // wb * wb, rng.randint(0, max_addr // wb) * wb))
        dram_addr = min(max(dram_addr, 0), max_addr // wb * wb)
    return Instruction(op, spad=spad, spad_addr=spad_addr, dram_addr=min(dram_addr, max_addr),
                       words=words, rows=rows, stride=min(stride, max_stride))


def wide_gemm(cfg, rng):
    """``groups * group`` around the room after one of the addresses, or one address around
    its scratchpad's end (or the field's)."""
    op = Opcode.GEMM
    wsrc = int(rng.random() < 0.3 and wsrc_supported(cfg))
    edge = rng.choice(("act_addr", "wgt_addr", "meta_addr", "acc_addr", "groups"))
    room = min(cfg.act_words, cfg.act_words if wsrc else cfg.wgt_words)
    kw = dict(act_addr=0, wgt_addr=0, meta_addr=0, acc_addr=0, groups=1)
    if edge == "groups":
        kw["act_addr" if rng.random() < 0.5 else "wgt_addr"] = addr = rng.randint(0, room)
        kw["groups"] = near(rng, op, "groups", (room - addr) // cfg.group)
    elif edge != "meta_addr" or not wsrc:
        depth = {"act_addr": cfg.act_words, "wgt_addr": room, "meta_addr": cfg.meta_words,
                 "acc_addr": cfg.acc_words}[edge]
        kw["groups"] = groups = rng.randint(1, max(1, min(room // cfg.group, cfg.meta_words)))
        used = {"meta_addr": groups, "acc_addr": cfg.rows}.get(edge, groups * cfg.group)
        kw[edge] = near(rng, op, edge, depth - used)
    return Instruction(op, wsrc=wsrc, **kw)


def wide_vec(cfg, rng):
    """One scratchpad range around its end, or the residual (ADD) or table (ROPE) words
    around the output's, the addresses anywhere in the 16-bit field (a difference of either
    sign)."""
    op = Opcode.VEC
    c, fp16 = cfg.cols, cfg.act_format == "fp16"
    edge = rng.choice(("acc_addr", "act_addr", "res_addr", "param_addr", "table_addr", "add",
                       "rope") if fp16 else ("acc_addr", "act_addr", "res_addr", "param_addr",
                                               "add"))
    func = {"add": VecFunc.ADD, "rope": rng.choice((VecFunc.ROPE_LO, VecFunc.ROPE_HI)),
            "table_addr": VecFunc.ROPE_LO,
            "res_addr": rng.choice((VecFunc.RES, VecFunc.ADD, VecFunc.GLU) if fp16 else
                                   (VecFunc.RES, VecFunc.ADD))}.get(edge, VecFunc.REQUANT)
    rows = rng.randint(1, cfg.rows)
    fmt = int(fp16 and func != VecFunc.RES)
    pair = func in (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
    kw = dict(acc_addr=0, act_addr=0, res_addr=4 * c if func == VecFunc.ADD else 0,
              param_addr=cfg.vparam_param_base, table_addr=4 * c)
    if edge in ("add", "rope"):
        kw["act_addr"] = act = rng.choice((0, 1, 2 * c, rng.randint(0, 0xFFFF), 0xFFFF - 1, 0xFFFF))
        offsets = (-c - 1, -c, -c + 1, -1, 0, 1, c - 1, c, c + 1) if edge == "add" else \
            (-2 * c - 1, -2 * c, -2 * c + 1, -1, 0, 1, c - 1, c, c + 1)
        other = min(max(act + rng.choice(offsets), 0), 0xFFFF)
        kw["res_addr" if edge == "add" else "table_addr"] = other
    elif edge == "param_addr":
        kw[edge] = near(rng, op, edge, cfg.vparam_param_base,
                        cfg.vparam_words - (2 * c if pair else c))
    else:
        depth = {"acc_addr": cfg.acc_words, "act_addr": cfg.act_words, "table_addr": cfg.act_words,
                 "res_addr": cfg.act_words if func == VecFunc.ADD else cfg.acc_words}[edge]
        used = {"acc_addr": rows, "table_addr": 2 * c, "act_addr": c,
                "res_addr": c if func == VecFunc.ADD else rows}[edge]
        kw[edge] = near(rng, op, edge, depth - used)
    return Instruction(op, func=func, rows=rows, fmt=fmt, **kw)


def wide_vsoft(cfg, rng):
    """``count`` around ``words * cols``, or the ACC, VPARAM or ACT words around their ends."""
    op = Opcode.VSOFT
    r, c = cfg.rows, cfg.cols
    edge = rng.choice(("count", "acc_addr", "kparam", "vparam", "act_addr"))
    words, col = rng.randint(1, r), rng.randint(0, 1)
    count = near(rng, op, "count", words * c) if edge == "count" else rng.randint(1, words * c)
    reach = (words - 1) * r + 1 if col else words
    written = words * c if col else -(-count // r)
    kw = dict(acc_addr=0, kparam=cfg.vparam_param_base, vparam=cfg.vparam_param_base, act_addr=0)
    if edge != "count":
        top = {"acc_addr": cfg.acc_words - reach, "act_addr": cfg.act_words - written}
        kw[edge] = near(rng, op, edge, top.get(edge, cfg.vparam_words - count),
                        cfg.vparam_param_base)
    return Instruction(op, func=SoftFunc.NORM if edge in ("vparam", "act_addr") else
                       rng.choice(list(SoftFunc)), words=words, count=count, col=col, **kw)


def wide_pim(cfg, rng):
    """PIM_GEMV's ``n * len`` around the row bytes after ``col`` (``n`` and ``len`` up to their
    maxima), ``banks * n`` around the buffer; PIM_READ's last ACC word and PIM_GBUF's last ACT
    word around the scratchpad's end, strides up to the field's maximum (with one channel, or
    one word, the stride multiplies 0)."""
    op = rng.choice((Opcode.PIM_GBUF, Opcode.PIM_GEMV, Opcode.PIM_GEMV, Opcode.PIM_READ))
    nch, nb, lanes = cfg.dram_channels, cfg.dram_banks, cfg.pim_lanes
    gbuf, row_bytes, regs = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_res_regs
    chans = rng.choice((1, nch, rng.randint(1, nch)))
    kw = {"chans": chans, "ch": rng.randint(0, nch - chans)}
    if op == Opcode.PIM_GBUF:
        packed = rng.randint(0, 1)
        length = rng.randint(1, gbuf) if rng.random() < 0.7 else gbuf
        words = -(-length // cfg.rows) if packed else length
        stride = near(rng, op, "act_stride", 0, words, (cfg.act_words - words) // max(chans - 1, 1))
        last = cfg.act_words - words - (chans - 1) * stride
        kw.update(packed=packed, len=length, act_stride=stride, gaddr=rng.randint(0, gbuf - length),
                  lane=rng.randint(0, cfg.rows - chans) if chans <= cfg.rows else 0,
                  act_addr=near(rng, op, "act_addr", last if last >= 0 else rng.randint(0, 0xFFFF)))
        if chans > cfg.rows:
            kw["packed"] = 1
    elif op == Opcode.PIM_GEMV:
        banks, bcast = rng.randint(1, nb), rng.randint(0, 1)
        max_n, max_len = _field(op, "n").maximum, _field(op, "len").maximum // lanes * lanes
        col = lanes * rng.choice((0, rng.randint(0, row_bytes // lanes), row_bytes // lanes - 1))
        edge = rng.choice(("row", "row", "elems", "regs"))
        if edge == "row":
            n, len_ = factors(rng, (row_bytes - col) // lanes, max_n, max_len // lanes)
            n, length = (n, len_ * lanes) if rng.random() < 0.5 else (len_, n * lanes)
            n, length = min(n, max_n), min(length, max_len)
        else:
            col = 0
            n, len_ = factors(rng, row_bytes // lanes, row_bytes // lanes, row_bytes // lanes)
            n, length = (n, len_ * lanes) if n * len_ <= row_bytes // lanes else (1, lanes)
        elems, nres = (banks * n, length) if bcast else (length, n)
        gaddr = near(rng, op, "gaddr", gbuf - elems) if edge == "elems" else 0
        kw.update(banks=banks, bcast=bcast, len=length, n=n, col=col,
                  bank=rng.randint(0, nb - banks), row=rng.randint(0, cfg.dram_rows - 1),
                  gaddr=gaddr if bcast else gaddr // lanes * lanes,
                  res=near(rng, op, "res", regs - nres) if edge == "regs" else 0)
    else:
        banks, reduce_ = rng.randint(1, nb), rng.randint(0, 1)
        n = rng.choice((1, regs, rng.randint(1, regs)))
        words = -(-((n if reduce_ else banks * n)) // cfg.cols)
        ws = near(rng, op, "word_stride", 0, 1, 2, (cfg.acc_words - 1) // max(words - 1, 1))
        cs = near(rng, op, "chan_stride", 0, words, (cfg.acc_words - 1) // max(chans - 1, 1))
        last = cfg.acc_words - 1 - (chans - 1) * cs - (words - 1) * ws
        kw.update(banks=banks, n=n, res=rng.randint(0, regs - n), reduce=reduce_, word_stride=ws,
                  chan_stride=cs, bank=rng.randint(0, nb - banks),
                  acc_addr=near(rng, op, "acc_addr", last if last >= 0 else rng.randint(0, 0xFFFF)))
    return Instruction(op, **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_products_and_wide_fields(name):
    cfg = CONFIGS[name]
    rng = random.Random(7 * len(name))
    gens = (wide_dma, wide_gemm, wide_vec, wide_vsoft, wide_pim)
    insts = [gen(cfg, rng) for _ in range(300) for gen in gens]
    codes = check(cfg, insts)
    # every range check is reached, and passed
    seen = {(inst.op if inst.op != Opcode.STORE else Opcode.LOAD, code)
            for inst, code in zip(insts, codes)}
    assert seen >= {(Opcode.LOAD, code) for code in (ErrorCode.OK, ErrorCode.SPAD_RANGE,
                                                      ErrorCode.DRAM_RANGE)}
    assert seen >= {(op, code) for op in (Opcode.GEMM, Opcode.VEC, Opcode.VSOFT, Opcode.PIM_GBUF,
                                          Opcode.PIM_READ)
                    for code in (ErrorCode.OK, ErrorCode.SPAD_RANGE)}
    assert seen >= {(Opcode.PIM_GEMV, ErrorCode.OK), (Opcode.PIM_GEMV, ErrorCode.PIM_RANGE)}
    assert (Opcode.VEC, ErrorCode.BAD_FIELD) in seen


# -- directed edge cases -------------------------------------------------------------------------

def dma_edges(cfg):
    """(instruction, expected code) at every scratchpad's end and at the DRAM's end."""
    ok, spad_range, dram_range = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.DRAM_RANGE
    cases = []
    for op in (Opcode.LOAD, Opcode.STORE):
        for spad in _field(op, "spad").allowed:
            depth, wb = cfg.spad_words(spad), cfg.word_bytes(spad)
            top = cfg.dram_bytes // wb * wb  # the DRAM's last aligned address (+ 1)

            def inst(**kw):
                args = dict(spad=spad, spad_addr=0, dram_addr=0, words=2, rows=1, stride=0)
                args.update(kw)
                return Instruction(op, **args)

            cases += [
                (inst(spad_addr=depth - 2), ok),                      # the last two words
                (inst(spad_addr=depth - 1), spad_range),              # one word past the end
                (inst(spad_addr=depth - 6, rows=3), ok),              # rows x words = 6
                (inst(spad_addr=depth - 5, rows=3), spad_range),
                (inst(words=depth), ok),
                (inst(words=depth + 1), spad_range),
                (inst(spad_addr=0xFFFF, words=0xFFFF, rows=0xFFF), spad_range),  # no wrap
                # the DRAM's end: the last row ends at dram_addr + (rows - 1) * stride + words * wb
                (inst(dram_addr=top - 2 * wb), ok),
                (inst(dram_addr=top - wb), dram_range),
                (inst(dram_addr=top - 10 * wb, rows=5, stride=2 * wb), ok),
                (inst(dram_addr=top - 10 * wb, rows=5, stride=3 * wb), dram_range),
                (inst(dram_addr=(0xFFFFFFFF // wb) * wb, rows=2, stride=(0xFFFFFF // wb) * wb,
                      words=1), dram_range),
                # the second row's start is just past 2**32: a 32-bit sum would wrap into DRAM
                (inst(dram_addr=((1 << 32) - 1024 * wb) // wb * wb + wb, rows=2, stride=1024 * wb,
                      words=1), dram_range),
                # the scratchpad check comes first
                (inst(spad_addr=depth - 1, dram_addr=cfg.dram_bytes), spad_range),
            ]
            if wb > 1:  # misalignment: the address, then the stride
                cases += [(inst(dram_addr=wb + 1), dram_range), (inst(dram_addr=wb - 1), dram_range),
                          (inst(rows=2, stride=wb + 1), dram_range),
                          (inst(rows=1, stride=1), dram_range),  # even when rows = 1
                          (inst(rows=2, stride=3 * wb), ok)]
    return cases


def gemm_edges(cfg):
    ok, spad_range, bad_field = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.BAD_FIELD
    g, beats = 2, 2 * cfg.group

    def inst(**kw):
        args = dict(groups=g, act_addr=0, wgt_addr=0, meta_addr=0, acc_addr=0)
        args.update(kw)
        return Instruction(Opcode.GEMM, **args)

    most = min(cfg.act_words, cfg.wgt_words) // cfg.group
    cases = [(inst(), ok),
             (inst(groups=most), ok),
             (inst(groups=most + 1), spad_range),
             (inst(groups=0xFFF, act_addr=0xFFFF), spad_range)]
    for name, last in (("act_addr", cfg.act_words - beats), ("wgt_addr", cfg.wgt_words - beats),
                       ("meta_addr", cfg.meta_words - g), ("acc_addr", cfg.acc_words - cfg.rows)):
        cases += [(inst(**{name: last}), ok), (inst(**{name: last + 1}), spad_range),
                  (inst(**{name: 0xFFFF}), spad_range)]
    # wsrc: INT8 weights from ACT (not BitMoD, rows >= cols, wbits 4, scale_bits >= 5), no META
    able = cfg.family != "bitmod" and cfg.rows >= cfg.cols and cfg.wbits == 4 and cfg.scale_bits >= 5
    cases += [(inst(wsrc=1), ok if able else bad_field),
              (inst(wsrc=1, meta_addr=1), bad_field),
              (inst(wsrc=1, meta_addr=0xFFFF), bad_field),                   # checked first
              (inst(wsrc=1, wgt_addr=cfg.act_words - beats), ok if able else bad_field),
              (inst(wsrc=1, wgt_addr=cfg.act_words - beats + 1), spad_range if able else bad_field)]
    return cases


def vec_edges(cfg):
    ok, spad_range, bad_field = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.BAD_FIELD
    r, c, base = cfg.rows, cfg.cols, cfg.vparam_param_base
    cases = []
    for func in (VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD):
        add = func == VecFunc.ADD

        def inst(**kw):
            args = dict(func=func, rows=r, acc_addr=0, act_addr=8 * c, res_addr=8 * c,
                        param_addr=base)
            args.update(kw)
            return Instruction(Opcode.VEC, **args)

        cases += [
            (inst(), ok),
            (inst(rows=r + 1), bad_field),                               # rows > array rows
            (inst(rows=255, acc_addr=0xFFFF), bad_field),                # ... checked first
            (inst(acc_addr=cfg.acc_words - r), ok),
            (inst(acc_addr=cfg.acc_words - r + 1), spad_range),
            (inst(rows=1, acc_addr=cfg.acc_words - 1), ok),
            (inst(act_addr=cfg.act_words - c, res_addr=cfg.act_words - c), ok),
            (inst(act_addr=cfg.act_words - c + 1, res_addr=cfg.act_words - c + 1), spad_range),
            # the residual is read by ADD only
            (inst(res_addr=cfg.act_words - c + 1), spad_range if add else ok),
            (inst(res_addr=0xFFFF), spad_range if add else ok),
            # VPARAM: column words at or above the parameter base, inside VPARAM
            (inst(param_addr=base - 1), spad_range),
            (inst(param_addr=0), spad_range),
            (inst(param_addr=cfg.vparam_words - c), ok),
            (inst(param_addr=cfg.vparam_words - c + 1), spad_range),
            # ADD output words overlapping the residual words without coinciding
            (inst(res_addr=8 * c + 1), bad_field if add else ok),
            (inst(res_addr=8 * c - (c - 1)), bad_field if add else ok),
            (inst(res_addr=8 * c + c - 1), bad_field if add else ok),
            (inst(res_addr=8 * c + c), ok),
            (inst(res_addr=8 * c - c), ok),
            # the ACT range comes before the overlap, VPARAM before the overlap
            (inst(param_addr=base - 1, res_addr=8 * c + 1), spad_range),
        ]
    return cases + vec_new_edges(cfg)


def vec_new_edges(cfg):
    """The whole-model functions and the fmt / direct fields."""
    ok, spad_range, bad_field = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.BAD_FIELD
    r, c, base = cfg.rows, cfg.cols, cfg.vparam_param_base
    fp16 = cfg.act_format == "fp16"
    square = r >= c

    def inst(func, **kw):
        args = dict(func=func, rows=r, acc_addr=0, act_addr=8 * c, res_addr=r, param_addr=base)
        args.update(kw)
        return Instruction(Opcode.VEC, **args)

    gated = ok if fp16 else bad_field
    cases = [
        (inst(VecFunc.REQUANT, fmt=1), gated),
        (inst(VecFunc.SILU, fmt=1), gated),
        (inst(VecFunc.SILU), bad_field),                                   # SILU writes FP16
        (inst(VecFunc.GLU, fmt=1), gated),
        (inst(VecFunc.GLU), bad_field),
        (inst(VecFunc.ROPE_LO), gated),                                    # int16 table lanes
        (inst(VecFunc.ROPE_HI, fmt=1), gated),
        (inst(VecFunc.RES), ok),
        (inst(VecFunc.RES, fmt=1), bad_field),
        (inst(VecFunc.RES, direct=1), bad_field),
        (inst(VecFunc.ADD, direct=1), bad_field),
        (inst(VecFunc.REQUANT, direct=1), ok if square else bad_field),
        (inst(VecFunc.REQUANT, rows=r + 1, fmt=1), bad_field),             # rows first
        # RES reads and writes residual ACC rows; GLU and ROPE read partner ACC rows
        (inst(VecFunc.RES, res_addr=cfg.acc_words - r), ok),
        (inst(VecFunc.RES, res_addr=cfg.acc_words - r + 1), spad_range),
        (inst(VecFunc.RES, act_addr=0xFFFF), ok),                          # no ACT written
        (inst(VecFunc.REQUANT, direct=1, rows=1, act_addr=cfg.act_words - 1), ok if square else bad_field),
        # bias: 2 cols VPARAM words (the biases follow the multipliers); not with GLU or ROPE
        (inst(VecFunc.REQUANT, bias=1), ok),
        (inst(VecFunc.RES, bias=1, param_addr=cfg.vparam_words - 2 * c), ok),
        (inst(VecFunc.RES, bias=1, param_addr=cfg.vparam_words - 2 * c + 1), spad_range),
        (inst(VecFunc.GELU, bias=1, param_addr=cfg.vparam_words - c), spad_range),
        (inst(VecFunc.GELU, param_addr=cfg.vparam_words - c), ok),
        (inst(VecFunc.ADD, bias=1, act_addr=8 * c, res_addr=8 * c, param_addr=base - 1), spad_range),
        (inst(VecFunc.ADD, bias=1, act_addr=8 * c, res_addr=8 * c + 1), bad_field),   # overlap
        (inst(VecFunc.GLU, fmt=1, bias=1), bad_field),
        (inst(VecFunc.ROPE_LO, bias=1), bad_field),
        (inst(VecFunc.GLU, fmt=1, bias=1, param_addr=0xFFFF), bad_field),           # before VPARAM
        (inst(VecFunc.RES, bias=1, rows=r + 1), bad_field),
        (inst(VecFunc.SILU, bias=1), bad_field),                                   # fmt 0
    ]
    if fp16:
        cases += [
            (inst(VecFunc.GLU, fmt=1, res_addr=cfg.acc_words - r + 1), spad_range),
            (inst(VecFunc.GLU, fmt=1, param_addr=cfg.vparam_words - 2 * c), ok),
            (inst(VecFunc.GLU, fmt=1, param_addr=cfg.vparam_words - 2 * c + 1), spad_range),
            (inst(VecFunc.SILU, fmt=1, param_addr=cfg.vparam_words - c), ok),
            (inst(VecFunc.ROPE_LO, table_addr=cfg.act_words - 2 * c), ok),
            (inst(VecFunc.ROPE_LO, table_addr=cfg.act_words - 2 * c + 1), spad_range),
            (inst(VecFunc.REQUANT, fmt=1, table_addr=0xFFFF), ok),        # only ROPE reads it
            # a transposed ROPE must not write over its table (it reads column j's late)
            (inst(VecFunc.ROPE_LO, act_addr=8 * c, table_addr=8 * c + c), ok),
            (inst(VecFunc.ROPE_LO, act_addr=8 * c, table_addr=8 * c + c - 1), bad_field),
            (inst(VecFunc.ROPE_HI, act_addr=8 * c, table_addr=8 * c - 2 * c + 1), bad_field),
            (inst(VecFunc.ROPE_HI, act_addr=8 * c, table_addr=8 * c - 2 * c), ok),
            (inst(VecFunc.ROPE_HI, act_addr=8 * c, table_addr=8 * c, direct=1), ok if square else bad_field),
        ]
    return cases


def vnorm_edges(cfg):
    ok, spad_range, bad_field = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.BAD_FIELD
    r, c, base = cfg.rows, cfg.cols, cfg.vparam_param_base
    fp16 = cfg.act_format == "fp16"

    def inst(func, **kw):
        args = dict(func=func, rows=r, acc_addr=0, act_addr=0, param_addr=base, nparam=base + 2 * c)
        args.update(kw)
        return Instruction(Opcode.VNORM, **args)

    top = cfg.vparam_words
    cases = []
    for func in NormFunc:
        norm, uses_mean = func == NormFunc.NORM, func != NormFunc.SUM
        cases += [
            (inst(func), ok),
            (inst(func, rows=r + 1), bad_field),
            (inst(func, fmt=1), ok if fp16 else bad_field),
            (inst(func, to_acc=1, fmt=1), bad_field),
            (inst(func, acc_addr=cfg.acc_words - r), ok),
            (inst(func, acc_addr=cfg.acc_words - r + 1), spad_range),
            (inst(func, nparam=base - 1), spad_range if uses_mean else ok),
            (inst(func, nparam=base - 1, rms=1), spad_range if norm else ok),
            (inst(func, nparam=top - 1), spad_range if norm else ok),
            (inst(func, nparam=top - 2), ok),
            (inst(func, param_addr=top - 2 * c), ok),
            (inst(func, param_addr=top - 2 * c + 1), spad_range if norm else ok),
            (inst(func, act_addr=cfg.act_words - c), ok),
            (inst(func, act_addr=cfg.act_words - c + 1), spad_range if norm else ok),
            (inst(func, to_acc=1, act_addr=cfg.acc_words - r), ok),
            (inst(func, to_acc=1, act_addr=cfg.acc_words - r + 1), spad_range if norm else ok),
        ]
    return cases


def vsoft_edges(cfg):
    ok, spad_range, bad_field = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.BAD_FIELD
    r, c, base = cfg.rows, cfg.cols, cfg.vparam_param_base
    fp16 = cfg.act_format == "fp16"
    cases = []
    for func in SoftFunc:
        norm = func == SoftFunc.NORM

        def inst(**kw):
            args = dict(func=func, words=r, count=r * c, acc_addr=0, kparam=base, vparam=base,
                        act_addr=0)
            args.update(kw)
            return Instruction(Opcode.VSOFT, **args)

        top = cfg.vparam_words - r * c
        cases += [
            (inst(), ok),
            (inst(words=r + 1), bad_field),
            (inst(words=r + 1, acc_addr=0xFFFF), bad_field),                 # checked first
            (inst(count=r * c + 1), bad_field),
            (inst(words=1, count=c + 1), bad_field),
            (inst(count=0xFFFF, kparam=0), bad_field),
            (inst(acc_addr=cfg.acc_words - r), ok),
            (inst(acc_addr=cfg.acc_words - r + 1), spad_range),
            (inst(kparam=base - 1), spad_range),
            (inst(kparam=top), ok),
            (inst(kparam=top + 1), spad_range),
            (inst(vparam=base - 1), spad_range if norm else ok),             # NORM only
            (inst(vparam=top + 1), spad_range if norm else ok),
            (inst(vparam=0xFFFF), spad_range if norm else ok),
            # NORM writes ceil(count / rows) packed ACT words
            (inst(act_addr=cfg.act_words - c), ok),
            (inst(act_addr=cfg.act_words - c + 1), spad_range if norm else ok),
            (inst(count=r * c - r, act_addr=cfg.act_words - c + 1), ok),
            (inst(count=r * c - r + 1, act_addr=cfg.act_words - c + 1), spad_range if norm else ok),
            # probability formats; by column: ACC words rows apart, words * cols ACT words
            (inst(pfmt=ProbFormat.FP16), ok if fp16 else bad_field),
            (inst(pfmt=ProbFormat.HI), ok),
            (inst(lane=1), bad_field),                                       # lane needs col
            (inst(col=1, lane=r - 1), ok),
            (inst(col=1, lane=r), bad_field),
            (inst(col=1, acc_addr=cfg.acc_words - (r - 1) * r - 1), ok),
            (inst(col=1, acc_addr=cfg.acc_words - (r - 1) * r), spad_range),
            (inst(col=1, act_addr=cfg.act_words - r * c), ok),
            (inst(col=1, act_addr=cfg.act_words - r * c + 1), spad_range if norm else ok),
        ]
    return cases


def pim_edges(cfg):
    """Every PIM check at its edge (FP16 configurations alike: the lanes of an ACT word are
    ``rows`` FP16 values there, one buffer byte each)."""
    ok, pim_range, spad_range = ErrorCode.OK, ErrorCode.PIM_RANGE, ErrorCode.SPAD_RANGE
    nch, nb, lanes = cfg.dram_channels, cfg.dram_banks, cfg.pim_lanes
    gbuf, row_bytes, regs, rows = cfg.pim_gbuf_bytes, cfg.dram_row_bytes, cfg.pim_res_regs, cfg.rows

    def gb(**kw):
        return Instruction(Opcode.PIM_GBUF, **{"chans": 1, "len": 8, **kw})

    def wr(**kw):
        return Instruction(Opcode.PIM_WRITE, **{"chans": 1, "len": 8, **kw})

    def gv(**kw):
        return Instruction(Opcode.PIM_GEMV, **{"chans": 1, "banks": 1, "len": lanes, "n": 1, **kw})

    def rd(**kw):
        return Instruction(Opcode.PIM_READ, **{"chans": 1, "banks": 1, "n": 1, **kw})

    def act(**kw):
        return Instruction(Opcode.PIM_ACT, **{"chans": 1, "banks": 1, **kw})

    words = -(-(nb * 3) // cfg.cols)  # a PIM_READ of 3 registers of every bank
    cases = [
        (gb(ch=nch - 1), ok), (gb(ch=nch - 1, chans=2), pim_range),
        (gb(ch=63, chans=127), pim_range),
        (gb(gaddr=gbuf - 8), ok), (gb(gaddr=gbuf - 7), pim_range),
        (gb(len=gbuf), ok if cfg.act_words >= gbuf else spad_range),     # gbuf ACT words
        (gb(len=gbuf, packed=1), ok), (gb(len=gbuf + 1), pim_range),
        (gb(lane=rows - 1), ok), (gb(lane=rows), pim_range), (gb(lane=rows, packed=1), ok),
        (gb(act_addr=cfg.act_words - 8), ok), (gb(act_addr=cfg.act_words - 7), spad_range),
        (gb(act_addr=cfg.act_words - 2, packed=1), ok),
        (gb(act_addr=cfg.act_words - 1, packed=1, len=rows + 1), spad_range),
        (gb(act_addr=cfg.act_words - 1, packed=1, len=rows), ok),
        (gb(gaddr=gbuf - 7, act_addr=cfg.act_words), pim_range),          # PIM_RANGE first
        (wr(bank=nb - 1), ok), (wr(bank=nb), pim_range), (wr(bank=63), pim_range),
        (wr(row=cfg.dram_rows - 1), ok), (wr(row=cfg.dram_rows), pim_range),
        (wr(col=row_bytes - 8), ok), (wr(col=row_bytes - 7), pim_range),
        (wr(col=0xFFFF), pim_range),
        (wr(gaddr=gbuf - 8), ok), (wr(gaddr=gbuf - 7), pim_range),
        (gv(bank=nb - 1), ok), (gv(bank=nb - 1, banks=2), pim_range), (gv(banks=nb), ok),
        (gv(row=cfg.dram_rows - 1), ok), (gv(row=cfg.dram_rows), pim_range),
        (gv(col=row_bytes - lanes), ok), (gv(col=row_bytes), pim_range),
        (gv(len=row_bytes // 2, n=2), ok), (gv(len=row_bytes // 2, n=2, col=lanes), pim_range),
        (gv(res=regs - 1), ok), (gv(res=regs - 1, n=2), pim_range),
        (gv(bcast=1, len=regs // lanes * lanes, n=1), ok),
        (gv(bcast=1, res=1, len=regs // lanes * lanes, n=1), pim_range),
        (gv(gaddr=gbuf - lanes), ok), (gv(gaddr=gbuf - lanes, len=2 * lanes), pim_range),
        # bcast: every bank its own n elements
        (gv(bcast=1, banks=nb, n=2, gaddr=gbuf - 2 * nb), ok),
        (gv(bcast=1, banks=nb, n=2, gaddr=gbuf - 2 * nb + 1), pim_range),
        (rd(bank=nb - 1), ok), (rd(bank=nb - 1, banks=2), pim_range),
        (rd(res=regs - 3, n=3), ok), (rd(res=regs - 2, n=3), pim_range),
        (rd(banks=nb, n=3, acc_addr=cfg.acc_words - words, word_stride=1), ok),
        (rd(banks=nb, n=3, acc_addr=cfg.acc_words - words + 1, word_stride=1), spad_range),
        (rd(banks=nb, n=3, reduce=1, acc_addr=cfg.acc_words - 1), ok),      # one word
        (rd(banks=nb, n=3, acc_addr=cfg.acc_words - 1, word_stride=0), ok),  # every word there
        (rd(banks=nb, n=3, acc_addr=cfg.acc_words - 2 * words + 1, word_stride=2), ok),
        (rd(banks=nb, n=3, acc_addr=cfg.acc_words - 2 * words + 2, word_stride=2), spad_range),
        (rd(ch=0, chans=nch, acc_addr=cfg.acc_words - 3 * (nch - 1) - 1, chan_stride=3), ok),
        (rd(ch=0, chans=nch, acc_addr=cfg.acc_words - 3 * (nch - 1), chan_stride=3),
         spad_range if nch > 1 else ok),
        (rd(acc_addr=0xFFFF, chan_stride=0xFFFF, word_stride=0xFFFF, chans=nch, banks=nb, n=regs),
         spad_range),
        (rd(res=regs, acc_addr=0xFFFF), pim_range),                         # PIM_RANGE first
        (act(ch=nch - 1, banks=nb), ok), (act(ch=nch - 1, chans=2), pim_range),
        (act(bank=nb - 1), ok), (act(bank=nb - 1, banks=2), pim_range), (act(bank=63), pim_range),
        (act(row=cfg.dram_rows - 1), ok), (act(row=cfg.dram_rows), pim_range),
        (act(row=0xFFFF, ch=63, chans=127, bank=63, banks=127), pim_range),
    ]
    if lanes > 1:
        cases += [(gv(len=lanes + 1), pim_range), (gv(col=1), pim_range), (gv(gaddr=1), pim_range),
                  (gv(gaddr=1, bcast=1), ok)]
    return cases


def wide_edges(cfg):
    """Products with one factor at the field's maximum and the other 1 (or the product 0: one
    channel, one word), and sums that carry into the bits the checker compares with constants."""
    ok, spad_range, dram_range = ErrorCode.OK, ErrorCode.SPAD_RANGE, ErrorCode.DRAM_RANGE
    nch, regs, acc, act = cfg.dram_channels, cfg.pim_res_regs, cfg.acc_words, cfg.act_words
    wb, depth = cfg.word_bytes(Spad.ACT), cfg.act_words
    top = cfg.dram_bytes // wb * wb

    def load(**kw):
        return Instruction(Opcode.LOAD, **{"spad": Spad.ACT, "words": 1, "rows": 1, **kw})

    def rd(**kw):
        return Instruction(Opcode.PIM_READ, **{"chans": 1, "banks": 1, "n": 1, **kw})

    def gb(**kw):
        return Instruction(Opcode.PIM_GBUF, **{"chans": 1, "len": 1, **kw})

    max_stride = 0xFFFFFF // wb * wb
    return [
        (load(rows=min(depth, 4095)), ok),
        (load(rows=min(depth + 1, 4095)), spad_range if depth < 4095 else ok),
        (load(rows=4095, words=0xFFFF), spad_range),
        (load(words=depth), ok), (load(words=depth + 1), spad_range),
        (load(words=0xFFFF, spad_addr=0xFFFF), spad_range),
        (load(stride=max_stride, dram_addr=top - wb), ok),                 # rows 1: no stride
        (load(rows=2, stride=max_stride, dram_addr=0), ok if max_stride + wb <= top else dram_range),
        (load(rows=2, stride=max_stride, dram_addr=max(top - wb - max_stride, 0)),
         ok if max_stride + wb <= top else dram_range),
        (load(rows=2, stride=max_stride, dram_addr=max(top - max_stride, 0)), dram_range),
        (load(dram_addr=top), dram_range), (load(dram_addr=0xFFFFFFFF // wb * wb), dram_range),
        (load(words=2, dram_addr=top - wb), dram_range),                   # the last word carries
        # one channel, one word: the strides multiply 0
        (rd(chan_stride=0xFFFF, word_stride=0xFFFF, acc_addr=acc - 1), ok),
        (rd(chans=nch, chan_stride=0xFFFF, acc_addr=0), spad_range if nch > 1 else ok),
        (rd(n=regs, reduce=1, word_stride=0xFFFF, acc_addr=acc - 1),
         ok if regs <= cfg.cols else spad_range),
        (gb(act_stride=0xFFFF, act_addr=act - 1), ok),
        (gb(chans=nch, act_stride=0xFFFF), spad_range if nch > 1 else ok),
        # an address past the end with a count that carries
        (Instruction(Opcode.VEC, func=VecFunc.REQUANT, rows=cfg.rows, acc_addr=acc + 1,
                     param_addr=cfg.vparam_param_base), spad_range),
        (Instruction(Opcode.VNORM, func=NormFunc.SUM, rows=cfg.rows, acc_addr=acc + cfg.rows - 1),
         spad_range),
    ]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_edge_cases(name):
    cfg = CONFIGS[name]
    cases = (dma_edges(cfg) + gemm_edges(cfg) + vec_edges(cfg) + vsoft_edges(cfg) + vnorm_edges(cfg)
             + pim_edges(cfg) + wide_edges(cfg))
    insts = [inst for inst, _ in cases]
    # the expectations written above are the golden model's ...
    assert [golden_code(cfg, i) for i in insts] == [code for _, code in cases]
    # ... and the checker's
    check(cfg, insts)


@pytest.mark.parametrize("missing", ["softmax_unit", "norm_unit"])
def test_a_missing_datapath_is_an_illegal_opcode(missing):
    # before any of its field checks; the other vector opcodes check as before
    cfg = TINY.replace(**{missing: False})
    rng = random.Random(7)
    insts = [gen(cfg, rng) for _ in range(40) for gen in (random_vec, random_vsoft, random_vnorm)]
    codes = check(cfg, insts)
    gone = Opcode.VSOFT if missing == "softmax_unit" else Opcode.VNORM
    assert {c for i, c in zip(insts, codes) if i.op == gone} == {ErrorCode.ILLEGAL_OPCODE}
    assert {c for i, c in zip(insts, codes) if i.op != gone} >= {ErrorCode.OK, ErrorCode.BAD_FIELD}


def test_without_the_pim_unit_every_pim_opcode_is_illegal():
    # legal and out-of-range PIM instructions alike, before their checks; the rest as before
    cfg = TINY.replace(pim_unit=False)
    cases = pim_edges(TINY) + dma_edges(TINY)
    insts = [inst for inst, _ in cases]
    assert {i.op for i in insts} >= set(PIM_OPS)
    codes = check(cfg, insts)
    assert codes == [ErrorCode.ILLEGAL_OPCODE if i.op in PIM_OPS else code
                     for i, (_, code) in zip(insts, cases)]


def test_other_opcodes_are_ok_whatever_the_operand_bits():
    """NOP / SYNC / HALT report OK even when the operand views carry out-of-range values."""
    cfg = TINY
    dut = DispatchChecker(cfg)
    got = []

    async def testbench(ctx):
        for op in (Opcode.NOP, Opcode.SYNC, Opcode.HALT):
            for port, view_op in VIEWS.items():
                ctx.set(getattr(dut, port).as_value(), (1 << operand_layout(view_op).size) - 1)
            ctx.set(dut.i_opcode, int(op))
            got.append(ErrorCode(ctx.get(dut.o_error)))

    run(dut, testbench, clock=False)
    assert got == [ErrorCode.OK] * 3


def test_rejects_config():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: DispatchChecker("tiny"))
