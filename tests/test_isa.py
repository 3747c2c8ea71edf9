"""ISA: enum values, field layouts (against docs/tile.md and Amaranth), encode/decode, every error."""

import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixpim.models.errors import MixpimError
from mixpim.models.isa import (HEADER_BITS, OPCODE_FORMATS, PIM_OPCODES, WORD_BITS, DecodeError, ErrorCode,
                               Instruction, IsaError, NormFunc, Opcode, ProbFormat, SoftFunc, Spad, Unit,
                               UnitMask, VecFunc, decode, fields, format_of, header_fields, parse_instruction,
                               parse_number)
from mixpim.models.isa.doc import MARKDOWN_BEGIN, MARKDOWN_END, isa_markdown
from helpers import exact, instructions

DOCS = Path(__file__).resolve().parent.parent / "docs"


def raises_decode(word, message, code=ErrorCode.BAD_FIELD, field=None):
    with pytest.raises(DecodeError, match=exact(message)) as info:
        decode(word)
    assert info.value.code is code
    if field is not None:
        assert info.value.field == field
    return info.value


# -- the tables, pinned against docs/tile.md ---------------------------------------------------

def test_enum_values():
    assert {u.name: int(u) for u in Unit} == {"DMA": 0, "GEMM": 1, "VEC": 2, "PIM": 3}
    assert {m.name: int(m) for m in UnitMask} == {"DMA": 1, "GEMM": 2, "VEC": 4, "PIM": 8}
    assert {op.name: int(op) for op in Opcode} == {
        "NOP": 0x00, "SYNC": 0x01, "HALT": 0x02, "LOAD": 0x10, "STORE": 0x11, "GEMM": 0x20,
        "VEC": 0x30, "VSOFT": 0x31, "VNORM": 0x32, "PIM_GBUF": 0x40, "PIM_WRITE": 0x41, "PIM_GEMV": 0x42,
        "PIM_READ": 0x43, "PIM_ACT": 0x44}
    assert {s.name: int(s) for s in Spad} == {"ACT": 0, "WGT": 1, "META": 2, "ACC": 3, "VPARAM": 4}
    assert {f.name: int(f) for f in VecFunc} == {"REQUANT": 0, "RELU": 1, "GELU": 2, "ADD": 3, "SILU": 4,
                                                 "GLU": 5, "ROPE_LO": 6, "ROPE_HI": 7, "RES": 8}
    assert {f.name: int(f) for f in SoftFunc} == {"MAX": 0, "EXP": 1, "NORM": 2}
    assert {f.name: int(f) for f in ProbFormat} == {"INT8": 0, "FP16": 1, "HI": 2, "LO": 3}
    assert {f.name: int(f) for f in NormFunc} == {"SUM": 0, "SQ": 1, "NORM": 2}
    assert {e.name: int(e) for e in ErrorCode} == {
        "OK": 0, "ILLEGAL_OPCODE": 1, "BAD_FIELD": 2, "SPAD_RANGE": 3, "DRAM_RANGE": 4,
        "TOKEN_OVERFLOW": 5, "DEADLOCK": 6, "NO_HALT": 7, "ARRAY_STREAM": 8, "PIM_RANGE": 9}
    assert list(PIM_OPCODES) == list(range(0x40, 0x50))
    assert WORD_BITS == 128 and HEADER_BITS == 24


# (name, lo, width) exactly as the field tables of docs/isa.md (the layout docs/tile.md refers to).
TILE_MD = {
    "NOP": [], "SYNC": [], "HALT": [],
    "LOAD": [("spad", 24, 4), ("spad_addr", 28, 16), ("dram_addr", 44, 32), ("words", 76, 16),
             ("rows", 92, 12), ("stride", 104, 24)],
    "GEMM": [("act_addr", 24, 16), ("wgt_addr", 40, 16), ("meta_addr", 56, 16),
             ("acc_addr", 72, 16), ("groups", 88, 12), ("accumulate", 100, 1), ("wsrc", 101, 1)],
    "VEC": [("func", 24, 4), ("acc_addr", 28, 16), ("act_addr", 44, 16), ("res_addr", 60, 16),
            ("param_addr", 76, 16), ("rows", 92, 8), ("fmt", 100, 1), ("direct", 101, 1),
            ("table_addr", 102, 16), ("bias", 118, 1)],
    "VSOFT": [("func", 24, 4), ("acc_addr", 28, 16), ("words", 44, 8), ("count", 52, 16),
              ("kparam", 68, 16), ("vparam", 84, 16), ("act_addr", 100, 16), ("first", 116, 1),
              ("pfmt", 117, 2), ("col", 119, 1), ("lane", 120, 8)],
    "VNORM": [("func", 24, 4), ("acc_addr", 28, 16), ("act_addr", 44, 16), ("param_addr", 60, 16),
              ("nparam", 76, 16), ("rows", 92, 8), ("qshift", 100, 5), ("first", 105, 1), ("rms", 106, 1),
              ("fmt", 107, 1), ("to_acc", 108, 1)],
    # docs/pim.md, "Instructions"
    "PIM_GBUF": [("ch", 24, 6), ("chans", 30, 7), ("gaddr", 37, 12), ("act_addr", 49, 16),
                 ("len", 65, 13), ("lane", 78, 8), ("packed", 86, 1), ("act_stride", 87, 16)],
    "PIM_WRITE": [("ch", 24, 6), ("chans", 30, 7), ("bank", 37, 6), ("row", 43, 16),
                  ("col", 59, 16), ("gaddr", 75, 12), ("len", 87, 13)],
    "PIM_GEMV": [("ch", 24, 6), ("chans", 30, 7), ("bank", 37, 6), ("banks", 43, 7),
                 ("row", 50, 16), ("col", 66, 16), ("gaddr", 82, 12), ("len", 94, 13),
                 ("n", 107, 9), ("res", 116, 8), ("bcast", 124, 1), ("accumulate", 125, 1)],
    "PIM_READ": [("ch", 24, 6), ("chans", 30, 7), ("bank", 37, 6), ("banks", 43, 7),
                 ("res", 50, 8), ("n", 58, 9), ("reduce", 67, 1), ("acc_addr", 68, 16),
                 ("chan_stride", 84, 16), ("word_stride", 100, 16)],
    "PIM_ACT": [("ch", 24, 6), ("chans", 30, 7), ("bank", 37, 6), ("banks", 43, 7),
                ("row", 50, 16)],
}
TILE_MD["STORE"] = TILE_MD["LOAD"]
UNITS = {"NOP": None, "SYNC": None, "HALT": None, "LOAD": Unit.DMA, "STORE": Unit.DMA,
         "GEMM": Unit.GEMM, "VEC": Unit.VEC, "VSOFT": Unit.VEC, "VNORM": Unit.VEC, "PIM_GBUF": Unit.PIM,
         "PIM_WRITE": Unit.PIM,
         "PIM_GEMV": Unit.PIM, "PIM_READ": Unit.PIM, "PIM_ACT": Unit.PIM}


def test_header_fields():
    assert header_fields() == [("opcode", 0, 8), ("wait", 8, 4), ("signal", 12, 4),
                               ("reserved", 16, 8)]


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_fields_match_tile_md_and_cover_128_bits(op):
    fs = fields(op)
    operands = TILE_MD[op.name]
    end = operands[-1][1] + operands[-1][2] if operands else HEADER_BITS
    unused = [("unused", end, WORD_BITS - end)] if end < WORD_BITS else []
    assert fs == header_fields() + operands + unused
    assert fields(op.name) == fields(int(op)) == fs
    assert format_of(op).unit == UNITS[op.name]


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_fields_build_an_amaranth_struct_layout_that_packs_like_encode(op):
    from amaranth.lib import data
    layout = data.StructLayout({name: width for name, _, width in fields(op)})
    assert layout.size == WORD_BITS
    assert [(name, f.offset, f.width) for name, f in layout] == fields(op)
    inst = maximal(op)
    values = {"opcode": int(op), "wait": int(inst.wait), "signal": int(inst.signal), "reserved": 0,
              "unused": 0, **{k: int(v) for k, v in inst.operands.items()}}
    values = {name: values[name] for name, _, _ in fields(op)}
    assert layout.const(values).as_bits() == inst.encode()


def test_field_legal_values():
    load, store, vec = OPCODE_FORMATS[Opcode.LOAD], OPCODE_FORMATS[Opcode.STORE], OPCODE_FORMATS[Opcode.VEC]
    # LOAD fills every scratchpad (ACC too: a residual stream reloaded from DRAM), STORE drains
    # the two the units write (docs/tile.md, scratchpad table)
    assert load.field("spad").allowed == (Spad.ACT, Spad.WGT, Spad.META, Spad.ACC, Spad.VPARAM)
    assert store.field("spad").allowed == (Spad.ACT, Spad.ACC)
    assert vec.field("func").allowed == tuple(VecFunc)
    vsoft, vnorm = OPCODE_FORMATS[Opcode.VSOFT], OPCODE_FORMATS[Opcode.VNORM]
    assert vsoft.field("func").allowed == tuple(SoftFunc)
    assert vsoft.field("pfmt").allowed == tuple(ProbFormat)
    assert vnorm.field("func").allowed == tuple(NormFunc)
    flags = {op.mnemonic: [f.name for f in op.operands if f.kind == "flag"] for op in OPCODE_FORMATS.values()}
    assert (flags["GEMM"], flags["VEC"], flags["VSOFT"], flags["VNORM"]) == (
        ["accumulate", "wsrc"], ["fmt", "direct", "bias"], ["first", "col"], ["first", "rms", "fmt", "to_acc"])
    required = {op.mnemonic: [f.name for f in op.operands if f.required] for op in OPCODE_FORMATS.values()}
    assert required == {"NOP": [], "SYNC": [], "HALT": [], "LOAD": ["words", "rows"],
                        "STORE": ["words", "rows"], "GEMM": ["groups"], "VEC": ["rows"],
                        "VSOFT": ["words", "count"], "VNORM": ["rows"],
                        "PIM_GBUF": ["chans", "len"], "PIM_WRITE": ["chans", "len"],
                        "PIM_GEMV": ["chans", "banks", "len", "n"],
                        "PIM_READ": ["chans", "banks", "n"], "PIM_ACT": ["chans", "banks"]}
    with pytest.raises(KeyError):
        load.field("nope")


# -- encoding ----------------------------------------------------------------------------------

def minimal(op):
    fmt = format_of(op)
    return Instruction(op, **{f.name: (f.allowed[0] if f.allowed else f.minimum) for f in fmt.operands})


def maximal(op):
    fmt = format_of(op)
    own = 0 if fmt.unit is None else 1 << fmt.unit
    mask = 0 if fmt.unit is None else 0xF & ~own
    return Instruction(op, wait=mask, signal=mask,
                       **{f.name: (f.allowed[-1] if f.allowed else f.maximum) for f in fmt.operands})


def test_pinned_encodings():
    load = Instruction(Opcode.LOAD, spad=Spad.VPARAM, spad_addr=0x1234, dram_addr=0x89ABCDEF,
                       words=0x5678, rows=0xABC, stride=0x123456, wait=UnitMask.GEMM,
                       signal=UnitMask.VEC | UnitMask.PIM)
    assert load.encode() == (0x10 | 0x2 << 8 | 0xC << 12 | 4 << 24 | 0x1234 << 28
                             | 0x89ABCDEF << 44 | 0x5678 << 76 | 0xABC << 92 | 0x123456 << 104)
    gemm = Instruction("GEMM", act_addr=1, wgt_addr=2, meta_addr=3, acc_addr=4, groups=5,
                       accumulate=True, wait=UnitMask.DMA, signal=UnitMask.DMA | UnitMask.VEC)
    assert gemm.encode() == (0x20 | 0x1 << 8 | 0x5 << 12 | 1 << 24 | 2 << 40 | 3 << 56 | 4 << 72
                             | 5 << 88 | 1 << 100)
    vec = Instruction(Opcode.VEC, func="ADD", acc_addr=7, act_addr=8, res_addr=9, param_addr=10,
                      rows=255, wait=2)
    assert vec.encode() == (0x30 | 0x2 << 8 | 3 << 24 | 7 << 28 | 8 << 44 | 9 << 60 | 10 << 76
                            | 255 << 92)
    wsrc = Instruction(Opcode.GEMM, act_addr=1, wgt_addr=2, acc_addr=4, groups=5, wsrc=1)
    assert wsrc.encode() == 0x20 | 1 << 24 | 2 << 40 | 4 << 72 | 5 << 88 | 1 << 101
    rope = Instruction(Opcode.VEC, func="ROPE_HI", acc_addr=7, act_addr=8, res_addr=9, param_addr=10,
                       rows=3, fmt=1, direct=1, table_addr=0xBEEF, signal=UnitMask.DMA)
    assert rope.encode() == (0x30 | 0x1 << 12 | 7 << 24 | 7 << 28 | 8 << 44 | 9 << 60 | 10 << 76
                             | 3 << 92 | 1 << 100 | 1 << 101 | 0xBEEF << 102)
    biased = Instruction(Opcode.VEC, func="GELU", param_addr=10, rows=3, bias=1)
    assert biased.encode() == 0x30 | 2 << 24 | 10 << 76 | 3 << 92 | 1 << 118
    vsoft = Instruction(Opcode.VSOFT, func=SoftFunc.NORM, acc_addr=1, words=2, count=3, kparam=4,
                        vparam=5, act_addr=6, first=1, pfmt=ProbFormat.LO, col=1, lane=0xA5)
    assert vsoft.encode() == (0x31 | 2 << 24 | 1 << 28 | 2 << 44 | 3 << 52 | 4 << 68 | 5 << 84
                              | 6 << 100 | 1 << 116 | 3 << 117 | 1 << 119 | 0xA5 << 120)
    vnorm = Instruction(Opcode.VNORM, func=NormFunc.SQ, acc_addr=1, act_addr=2, param_addr=3,
                        nparam=4, rows=5, qshift=31, first=1, rms=1, fmt=1, to_acc=1, wait=UnitMask.PIM)
    assert vnorm.encode() == (0x32 | 0x8 << 8 | 1 << 24 | 1 << 28 | 2 << 44 | 3 << 60 | 4 << 76
                              | 5 << 92 | 31 << 100 | 1 << 105 | 1 << 106 | 1 << 107 | 1 << 108)
    assert Instruction(Opcode.HALT).encode() == 0x02
    assert Instruction(Opcode.SYNC).encode() == 0x01
    assert Instruction(Opcode.NOP).encode() == 0


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_boundary_values_round_trip(op):
    fmt = format_of(op)
    for inst in (minimal(op), maximal(op)):
        assert decode(inst.encode()) == inst
        assert inst.encode() < 1 << WORD_BITS
    # Each operand alone at its maximum lands exactly in its bits.
    for f in fmt.operands:
        top = f.allowed[-1] if f.allowed else f.maximum
        inst = minimal(op).replace(**{f.name: top})
        base = minimal(op).encode() & ~(f.maximum << f.lo)
        assert inst.encode() == base | int(top) << f.lo
        assert decode(inst.encode())[f.name] == top


def test_instruction_accessors():
    inst = Instruction("LOAD", spad="WGT", words=3, rows=2, dram_addr=64, signal=UnitMask.GEMM)
    assert inst.op is Opcode.LOAD and inst.unit is Unit.DMA and inst.format is OPCODE_FORMATS[Opcode.LOAD]
    assert inst.operands == {"spad": Spad.WGT, "spad_addr": 0, "dram_addr": 64, "words": 3,
                             "rows": 2, "stride": 0}
    assert inst.spad is Spad.WGT and inst["words"] == 3 and inst.rows == 2
    assert inst.wait == 0 and inst.signal == UnitMask.GEMM and isinstance(inst.wait, UnitMask)
    with pytest.raises(KeyError, match="LOAD has no operand 'groups'"):
        inst["groups"]
    with pytest.raises(AttributeError, match="has no attribute 'groups'"):
        inst.groups
    with pytest.raises(AttributeError, match=exact("Instruction is immutable; use replace()")):
        inst.words = 4
    with pytest.raises(AttributeError, match=exact("Instruction is immutable; use replace()")):
        del inst.words
    changed = inst.replace(words=9, wait=UnitMask.VEC)
    assert changed.words == 9 and changed.wait == UnitMask.VEC and inst.words == 3
    assert changed != inst and inst == inst.replace() and hash(inst) == hash(inst.replace())
    assert inst != inst.encode()
    assert pickle.loads(pickle.dumps(inst)) == inst
    assert repr(inst) == f"<Instruction {inst}>"
    assert Instruction(Opcode.GEMM, groups=1, accumulate=True) == \
        Instruction(Opcode.GEMM, groups=1, accumulate=1)


def test_enum_operands_accept_member_value_and_name():
    a = Instruction(Opcode.VEC, func=VecFunc.GELU, rows=1)
    assert a == Instruction(Opcode.VEC, func=2, rows=1) == Instruction(Opcode.VEC, func="GELU", rows=1)
    assert a.func is VecFunc.GELU
    b = Instruction(Opcode.VSOFT, words=1, count=1, pfmt=ProbFormat.HI)
    assert b == Instruction(Opcode.VSOFT, words=1, count=1, pfmt=2) == \
        Instruction(Opcode.VSOFT, words=1, count=1, pfmt="HI")
    assert b.pfmt is ProbFormat.HI and b.func is SoftFunc.MAX
    c = Instruction(Opcode.VNORM, func="SQ", rows=1)
    assert c.func is NormFunc.SQ and c == Instruction(Opcode.VNORM, func=1, rows=1)


# -- construction errors -----------------------------------------------------------------------

OPCODE_NAMES = ("NOP, SYNC, HALT, LOAD, STORE, GEMM, VEC, VSOFT, VNORM, PIM_GBUF, PIM_WRITE, PIM_GEMV, "
                "PIM_READ, PIM_ACT")


@pytest.mark.parametrize("bad", ["FOO", "load", "vnorm", 0x03, 0x33, 0x50, 0xFF, -1, 1.0, None, True])
def test_construct_unknown_opcode(bad):
    with pytest.raises(IsaError, match=exact(f"opcode must be one of {OPCODE_NAMES}, not {bad!r}")) as info:
        Instruction(bad)
    assert info.value.code is ErrorCode.ILLEGAL_OPCODE and info.value.field == "opcode"


@pytest.mark.parametrize("opcode", [0x45, 0x47, 0x4F])
def test_construct_reserved_pim_opcode(opcode):
    with pytest.raises(IsaError, match=exact(f"opcode 0x{opcode:02x} is a reserved PIM opcode")):
        Instruction(opcode)


def test_construct_unknown_field():
    msg = ("LOAD has no field 'groups'; its fields are spad, spad_addr, dram_addr, words, rows, stride, "
           "wait, signal")
    with pytest.raises(IsaError, match=exact(msg)) as info:
        Instruction(Opcode.LOAD, words=1, rows=1, groups=2)
    assert info.value.code is ErrorCode.BAD_FIELD and info.value.field == "groups"
    with pytest.raises(IsaError, match=exact("HALT has no field 'rows'; its fields are wait, signal")):
        Instruction(Opcode.HALT, rows=1)


@pytest.mark.parametrize("name, lo, hi, width", [
    ("spad_addr", 0, 65535, 16), ("dram_addr", 0, 2**32 - 1, 32), ("words", 1, 65535, 16),
    ("rows", 1, 4095, 12), ("stride", 0, 2**24 - 1, 24)])
@pytest.mark.parametrize("how", ["above", "below", "bool", "float", "str"])
def test_construct_value_out_of_range_names_field_and_width(name, lo, hi, width, how):
    bad = {"above": hi + 1, "below": lo - 1, "bool": True, "float": float(lo), "str": str(lo)}[how]
    kwargs = {"words": 1, "rows": 1, name: bad}
    msg = f"LOAD {name} must be an integer in {lo}..{hi} ({width} bits), not {bad!r}"
    with pytest.raises(ValueError, match=exact(msg)) as info:
        Instruction(Opcode.LOAD, **kwargs)
    assert isinstance(info.value, IsaError) and isinstance(info.value, MixpimError)
    assert info.value.field == name and info.value.code is ErrorCode.BAD_FIELD


def test_construct_gemm_vec_ranges():
    msg = "GEMM groups must be an integer in 1..4095 (12 bits), not 4096"
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(Opcode.GEMM, groups=4096)
    with pytest.raises(IsaError, match=exact("GEMM groups must be an integer in 1..4095 (12 bits), not 0")):
        Instruction(Opcode.GEMM)
    with pytest.raises(IsaError, match=exact("GEMM accumulate must be an integer in 0..1 (1 bits), not 2")):
        Instruction(Opcode.GEMM, groups=1, accumulate=2)
    with pytest.raises(IsaError, match=exact("VEC rows must be an integer in 1..255 (8 bits), not 256")):
        Instruction(Opcode.VEC, rows=256)


@pytest.mark.parametrize("op, bad, shown", [
    ("LOAD", 5, "5"), ("LOAD", 15, "15"), ("LOAD", -1, "-1"), ("LOAD", "act", "'act'"),
    ("LOAD", None, "None"), ("LOAD", True, "True"), ("LOAD", Unit.GEMM, "<Unit.GEMM: 1>"),
    ("STORE", Spad.WGT, "WGT"), ("STORE", "META", "META"), ("STORE", 4, "VPARAM"), ("STORE", 15, "15")])
def test_construct_bad_spad(op, bad, shown):
    allowed = {"LOAD": "ACT, WGT, META, ACC, VPARAM", "STORE": "ACT, ACC"}[op]
    with pytest.raises(IsaError, match=exact(f"{op} spad must be one of {allowed}, not {shown}")) as info:
        Instruction(op, spad=bad, words=1, rows=1)
    assert info.value.field == "spad" and info.value.code is ErrorCode.BAD_FIELD


@pytest.mark.parametrize("spad", [Spad.ACC, 3, "ACC"])
def test_load_into_acc_is_legal(spad):
    inst = Instruction(Opcode.LOAD, spad=spad, words=1, rows=1)
    assert inst.spad is Spad.ACC and decode(inst.encode()) == inst
    assert inst.encode() == 0x10 | 3 << 24 | 1 << 76 | 1 << 92


VEC_FUNCS = "REQUANT, RELU, GELU, ADD, SILU, GLU, ROPE_LO, ROPE_HI, RES"


@pytest.mark.parametrize("bad, shown", [(9, "9"), (15, "15"), ("TANH", "'TANH'"), ("gelu", "'gelu'"),
                                        ("SUM", "'SUM'"), (Spad.ACT, "<Spad.ACT: 0>"),
                                        (NormFunc.SQ, "<NormFunc.SQ: 1>"), (1.0, "1.0")])
def test_construct_bad_func(bad, shown):
    # A member of another IntEnum is rejected although it equals a legal value (Spad.ACT == 0).
    msg = f"VEC func must be one of {VEC_FUNCS}, not {shown}"
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(Opcode.VEC, func=bad, rows=1)


@pytest.mark.parametrize("op, name, bad, allowed, shown", [
    ("VSOFT", "func", 3, "MAX, EXP, NORM", "3"),
    ("VSOFT", "func", VecFunc.ADD, "MAX, EXP, NORM", "<VecFunc.ADD: 3>"),
    ("VSOFT", "pfmt", 4, "INT8, FP16, HI, LO", "4"),
    ("VSOFT", "pfmt", "BF16", "INT8, FP16, HI, LO", "'BF16'"),
    ("VNORM", "func", 3, "SUM, SQ, NORM", "3"),
    ("VNORM", "func", SoftFunc.NORM, "SUM, SQ, NORM", "<SoftFunc.NORM: 2>"),
])
def test_construct_bad_softmax_and_norm_enums(op, name, bad, allowed, shown):
    required = {"VSOFT": dict(words=1, count=1), "VNORM": dict(rows=1)}[op]
    with pytest.raises(IsaError, match=exact(f"{op} {name} must be one of {allowed}, not {shown}")) as info:
        Instruction(op, **required, **{name: bad})
    assert info.value.field == name and info.value.code is ErrorCode.BAD_FIELD


@pytest.mark.parametrize("op, name, value, width", [
    ("VEC", "fmt", 2, 1), ("VEC", "direct", 2, 1), ("VEC", "table_addr", 65536, 16), ("VEC", "bias", 2, 1),
    ("GEMM", "wsrc", 2, 1), ("VSOFT", "col", 2, 1), ("VSOFT", "lane", 256, 8),
    ("VNORM", "qshift", 32, 5), ("VNORM", "to_acc", 2, 1), ("VNORM", "rms", -1, 1),
    ("VNORM", "rows", 256, 8)])
def test_construct_new_fields_ranges(op, name, value, width):
    required = {"VEC": dict(rows=1), "GEMM": dict(groups=1), "VSOFT": dict(words=1, count=1),
                "VNORM": dict(rows=1)}[op]
    lo = 1 if name == "rows" else 0
    msg = f"{op} {name} must be an integer in {lo}..{(1 << width) - 1} ({width} bits), not {value}"
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(op, **{**required, name: value})


@pytest.mark.parametrize("name", ["wait", "signal"])
def test_construct_bad_masks(name):
    with pytest.raises(IsaError, match=exact(f"GEMM {name} must not include its own unit GEMM")) as info:
        Instruction(Opcode.GEMM, groups=1, **{name: UnitMask.GEMM | UnitMask.DMA})
    assert info.value.code is ErrorCode.BAD_FIELD and info.value.field == name
    with pytest.raises(IsaError, match=exact(f"LOAD {name} must not include its own unit DMA")):
        Instruction(Opcode.LOAD, words=1, rows=1, **{name: 1})
    with pytest.raises(IsaError, match=exact(f"VEC {name} must not include its own unit VEC")):
        Instruction(Opcode.VEC, rows=1, **{name: 0xF})
    for bad in (16, -1, "DMA", None, True, 1.0, Spad.WGT):
        msg = f"GEMM {name} must be a unit mask (a UnitMask or an integer in 0..15), not {bad!r}"
        with pytest.raises(IsaError, match=exact(msg)):
            Instruction(Opcode.GEMM, groups=1, **{name: bad})
    msg = (f"GEMM {name} must be a unit mask (a UnitMask or an integer in 0..15), not "
           f"<Unit.DMA: 0>; write UnitMask.DMA")
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(Opcode.GEMM, groups=1, **{name: Unit.DMA})


@pytest.mark.parametrize("op", ["NOP", "SYNC", "HALT"])
def test_construct_dispatcher_instructions_take_no_tokens(op):
    msg = f"{op} wait must be empty, not DMA|VEC: the dispatcher executes {op} and holds no tokens"
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(op, wait=UnitMask.DMA | UnitMask.VEC)
    msg = f"{op} signal must be empty, not PIM: the dispatcher executes {op} and holds no tokens"
    with pytest.raises(IsaError, match=exact(msg)):
        Instruction(op, signal=8)


# -- decode errors -----------------------------------------------------------------------------

def test_every_undefined_opcode_is_illegal():
    for opcode in range(256):
        if opcode in Opcode._value2member_map_:
            continue
        if opcode in PIM_OPCODES:
            msg = f"opcode 0x{opcode:02x} is a reserved PIM opcode"
        else:
            msg = f"illegal opcode 0x{opcode:02x}"
        raises_decode(opcode | 0xFF << 100, msg, ErrorCode.ILLEGAL_OPCODE, "opcode")


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_decode_reserved_and_unused_bits(op):
    word = minimal(op).encode()
    raises_decode(word | 1 << 16, f"{op.name} reserved bits [16:24] must be 0, not 0x1", field="reserved")
    raises_decode(word | 0xFF << 16, f"{op.name} reserved bits [16:24] must be 0, not 0xff")
    name, end, _ = fields(op)[-1]
    if name != "unused":  # LOAD, STORE and VSOFT use all 128 bits
        assert op in (Opcode.LOAD, Opcode.STORE, Opcode.VSOFT)
        return
    for bit in (end, WORD_BITS - 1):
        raises_decode(word | 1 << bit,
                      f"{op.name} unused bits [{end}:128] must be 0, not 0x{1 << (bit - end):x}",
                      field="unused")


def test_load_store_vsoft_decode_have_no_unused_bits():
    assert fields(Opcode.LOAD)[-1] == fields(Opcode.STORE)[-1] == ("stride", 104, 24)
    assert fields(Opcode.VSOFT)[-1] == ("lane", 120, 8)
    assert [op for op in Opcode if fields(op)[-1][0] != "unused"] == [Opcode.LOAD, Opcode.STORE, Opcode.VSOFT]


@pytest.mark.parametrize("spad", range(16))
def test_decode_spad(spad):
    for op, allowed in ((Opcode.LOAD, "ACT, WGT, META, ACC, VPARAM"), (Opcode.STORE, "ACT, ACC")):
        word = minimal(op).encode() & ~(0xF << 24) | spad << 24
        if spad in OPCODE_FORMATS[op].field("spad").allowed:
            assert decode(word).spad == spad
        else:
            shown = Spad(spad).name if spad < len(Spad) else str(spad)
            raises_decode(word, f"{op.name} spad must be one of {allowed}, not {shown}", field="spad")


@pytest.mark.parametrize("func", range(16))
def test_decode_func(func):
    for op, names in ((Opcode.VEC, VEC_FUNCS), (Opcode.VSOFT, "MAX, EXP, NORM"), (Opcode.VNORM, "SUM, SQ, NORM")):
        word = minimal(op).encode() | func << 24
        legal = len(names.split(", "))
        assert legal == {Opcode.VEC: 9, Opcode.VSOFT: 3, Opcode.VNORM: 3}[op]
        if func < legal:
            assert int(decode(word).func) == func
        else:
            raises_decode(word, f"{op.name} func must be one of {names}, not {func}", field="func")


def test_decode_pfmt_uses_all_four_codes():
    for code, pfmt in enumerate((ProbFormat.INT8, ProbFormat.FP16, ProbFormat.HI, ProbFormat.LO)):
        assert decode(minimal(Opcode.VSOFT).encode() | code << 117).pfmt is pfmt


@pytest.mark.parametrize("op, name", [("LOAD", "words"), ("LOAD", "rows"), ("STORE", "words"),
                                      ("STORE", "rows"), ("GEMM", "groups"), ("VEC", "rows"),
                                      ("VSOFT", "words"), ("VSOFT", "count"), ("VNORM", "rows")])
def test_decode_zero_count(op, name):
    f = format_of(op).field(name)
    word = minimal(op).encode() & ~(f.maximum << f.lo)
    raises_decode(word, f"{op} {name} must be an integer in 1..{f.maximum} ({f.width} bits), not 0",
                  field=name)


@pytest.mark.parametrize("op", [Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.VEC, Opcode.VSOFT, Opcode.VNORM])
@pytest.mark.parametrize("name, lo", [("wait", 8), ("signal", 12)])
def test_decode_own_unit_token(op, name, lo):
    unit = format_of(op).unit
    raises_decode(minimal(op).encode() | 1 << (lo + unit),
                  f"{op.name} {name} must not include its own unit {unit.name}", field=name)


@pytest.mark.parametrize("op", [Opcode.NOP, Opcode.SYNC, Opcode.HALT])
def test_decode_dispatcher_tokens(op):
    raises_decode(op | 0x3 << 8,
                  f"{op.name} wait must be empty, not DMA|GEMM: the dispatcher executes {op.name} "
                  f"and holds no tokens", field="wait")
    raises_decode(op | 0x4 << 12,
                  f"{op.name} signal must be empty, not VEC: the dispatcher executes {op.name} "
                  f"and holds no tokens", field="signal")


def test_decode_checks_in_order():
    # reserved bits, then unused bits, then the token masks, then the operands in field order.
    word = Opcode.GEMM | 0x2 << 8 | 1 << 16 | 1 << 127
    raises_decode(word, "GEMM reserved bits [16:24] must be 0, not 0x1")
    raises_decode(word & ~(1 << 16), "GEMM unused bits [102:128] must be 0, not 0x2000000")
    raises_decode(Opcode.GEMM | 0x2 << 8, "GEMM wait must not include its own unit GEMM")
    raises_decode(int(Opcode.GEMM), "GEMM groups must be an integer in 1..4095 (12 bits), not 0")


@pytest.mark.parametrize("bad", [-1, 1 << 128, "0x10", 1.0, None, True])
def test_decode_rejects_non_words(bad):
    msg = f"an instruction word must be an integer in 0..2**128-1, not {bad!r}"
    with pytest.raises(IsaError, match=exact(msg)) as info:
        decode(bad)
    assert not isinstance(info.value, DecodeError) and info.value.code is None


def test_decode_error_is_an_isa_error_and_a_value_error():
    with pytest.raises(ValueError):
        decode(0x03)
    with pytest.raises(IsaError):
        decode(0x03)
    with pytest.raises(MixpimError):
        decode(0x03)


# -- one assembly line -------------------------------------------------------------------------

def test_parse_instruction():
    line = "load spad=act DRAM_ADDR=0x1_000 words=0b11 rows=0o7 stride=010 wait=- signal=gemm|Vec"
    assert parse_instruction(line) == Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=0x1000,
                                                  words=3, rows=7, stride=10,
                                                  signal=UnitMask.GEMM | UnitMask.VEC)
    assert parse_instruction("VEC func=3 rows=1 signal=9") == \
        Instruction(Opcode.VEC, func=VecFunc.ADD, rows=1, signal=UnitMask.DMA | UnitMask.PIM)
    assert str(parse_instruction("  HALT  ")) == "HALT"
    with pytest.raises(IsaError, match=exact("empty instruction")):
        parse_instruction("   ")
    with pytest.raises(IsaError, match=exact("an assembly line must be a string, not 3")):
        parse_instruction(3)


@pytest.mark.parametrize("text", ["0x_1", "0b_1", "0o_7", "1__0", "1_", "0x", "_1", "0x1g"])
def test_malformed_numbers_are_rejected(text):
    """A digit must follow a base prefix and underscores stand only between digits."""
    assert parse_number(text) is None
    with pytest.raises(IsaError, match="words must be an integer"):
        parse_instruction(f"LOAD spad=ACT words={text} rows=1")


def test_str_is_canonical():
    inst = Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=5, dram_addr=0xABC, words=2, rows=3,
                       stride=0x40, wait=UnitMask.VEC | UnitMask.GEMM)
    assert str(inst) == ("STORE  spad=ACC spad_addr=5 dram_addr=0xabc words=2 rows=3 stride=0x40 "
                         "wait=GEMM|VEC signal=-")
    assert str(Instruction(Opcode.GEMM, groups=1)) == (
        "GEMM   act_addr=0 wgt_addr=0 meta_addr=0 acc_addr=0 groups=1 accumulate=0 wsrc=0 wait=- signal=-")
    assert str(Instruction(Opcode.VSOFT, func="NORM", words=2, count=5, pfmt="FP16", col=1, lane=3,
                           wait=UnitMask.GEMM)) == (
        "VSOFT  func=NORM acc_addr=0 words=2 count=5 kparam=0 vparam=0 act_addr=0 first=0 pfmt=FP16 "
        "col=1 lane=3 wait=GEMM signal=-")
    assert str(Instruction(Opcode.VNORM, func="NORM", rows=4, qshift=3, rms=1)) == (
        "VNORM  func=NORM acc_addr=0 act_addr=0 param_addr=0 nparam=0 rows=4 qshift=3 first=0 rms=1 "
        "fmt=0 to_acc=0 wait=- signal=-")
    assert str(Instruction(Opcode.SYNC)) == "SYNC"


# -- random instructions -----------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(instructions())
def test_random_instruction_round_trips(inst):
    assert decode(inst.encode()) == inst
    assert parse_instruction(str(inst)) == inst


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(0, (1 << 128) - 1),
                 st.builds(lambda op, rest: op | rest << 8, st.sampled_from(list(Opcode)),
                           st.integers(0, (1 << 120) - 1))))
def test_random_words_decode_exactly_or_raise(word):
    try:
        inst = decode(word)
    except DecodeError as e:
        assert e.code in (ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_FIELD) and e.field
    else:
        assert inst.encode() == word


# -- docs --------------------------------------------------------------------------------------

def test_docs_isa_md_embeds_the_generated_tables():
    text = (DOCS / "isa.md").read_text(encoding="utf-8")
    assert text.count(MARKDOWN_BEGIN) == 1 and text.count(MARKDOWN_END) == 1
    block = text.split(MARKDOWN_BEGIN)[1].split(MARKDOWN_END)[0]
    assert block.strip() == isa_markdown().strip(), \
        "docs/isa.md is out of date: run `python -m mixpim.models.isa.doc docs/isa.md`"


def test_docs_isa_md_lists_the_probability_formats_and_norm_passes():
    # outside the generated block (doc.py lists neither), so pinned here
    from mixpim.models.isa.tables import DOCS as ENUM_DOCS
    text = (DOCS / "isa.md").read_text(encoding="utf-8")
    for enum_type, title in ((ProbFormat, "### Probability formats (VSOFT `pfmt`)"),
                             (NormFunc, "### Norm passes (VNORM `func`)")):
        section = text.split(title)[1].split("\n#")[0]
        rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert rows == [f"| {int(m)} | {m.name} | {ENUM_DOCS[enum_type][m]} |" for m in enum_type]


def test_markdown_lists_every_format_and_code():
    md = isa_markdown()
    for op in Opcode:
        assert f"### {op.name} (0x{int(op):02x}," in md
    for e in ErrorCode:
        assert f"| {int(e)} | {e.name} |" in md
    assert "| [92:104] | 12 | `rows` | 1..4095 |" in md
    assert "| [117:119] | 2 | `pfmt` | 0 INT8, 1 FP16, 2 HI, 3 LO |" in md
    assert "| [24:28] | 4 | `func` | 0 SUM, 1 SQ, 2 NORM |" in md
    for f in VecFunc:
        assert f"| {int(f)} | {f.name} |" in md
    assert "| 0x45-0x4f | — | PIM | — | reserved PIM opcodes (`ILLEGAL_OPCODE`) |" in md
