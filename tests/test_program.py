"""Program file (round trip, every corruption), segments, assembler, disassembler, listing."""

import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixpim.models.config import TileConfig, preset
from mixpim.models.errors import MixpimError
from mixpim.models.isa import Instruction, NormFunc, Opcode, ProbFormat, SoftFunc, Spad, UnitMask, VecFunc
from mixpim.models.program import (DRAM_BYTES, FORMAT_VERSION, HEADER_BYTES, MAGIC, SPAD_WORDS,
                                   AssemblyError, Program, ProgramError, Segment, assemble,
                                   disassemble, listing)
from helpers import exact, instructions


EXAMPLE = """\
# comments
LOAD   spad=ACT spad_addr=0 dram_addr=0x1000 words=64 rows=1 stride=0  wait=- signal=GEMM
GEMM   act_addr=0 wgt_addr=0 meta_addr=0 acc_addr=0 groups=2 accumulate=0 wait=DMA signal=VEC|DMA

VEC    func=GELU acc_addr=0 act_addr=64 res_addr=0 param_addr=0 rows=4 wait=GEMM signal=-   # end
HALT
"""

CANONICAL = """\
LOAD   spad=ACT spad_addr=0 dram_addr=0x1000 words=64 rows=1 stride=0x0 wait=- signal=GEMM
GEMM   act_addr=0 wgt_addr=0 meta_addr=0 acc_addr=0 groups=2 accumulate=0 wsrc=0 wait=DMA signal=DMA|VEC
VEC    func=GELU acc_addr=0 act_addr=64 res_addr=0 param_addr=0 rows=4 fmt=0 direct=0 table_addr=0 bias=0 wait=GEMM signal=-
HALT
"""


def sample_program(**changes):
    kwargs = dict(
        config=preset("tiny"),
        instructions=assemble(EXAMPLE),
        segments=[Segment("dram", 0x1000, bytes(range(64))), Segment(Spad.VPARAM, 2, b"\x01" * 8, 4)],
        symbols={"x": 0x1000, "w.0": 7},
        comments={0: "load x", 3: "done"},
    )
    kwargs.update(changes)
    return Program(**kwargs)


def file_with_body(body, version=FORMAT_VERSION, flags=0):
    """A program file around ``body`` with a correct length and checksum."""
    return struct.pack("<4sHHII", MAGIC, version, flags, len(body), zlib.crc32(body)) + body


def body(config=None, words=(), segments=b"", n_segments=0, debug=b""):
    config = (config if config is not None else preset("tiny").to_json()).encode() \
        if not isinstance(config, bytes) else config
    out = struct.pack("<I", len(config)) + config
    out += struct.pack("<I", len(words)) + b"".join(w.to_bytes(16, "little") for w in words)
    out += struct.pack("<I", n_segments) + segments
    return out + struct.pack("<I", len(debug)) + debug


def load_error(data):
    with pytest.raises(ProgramError) as info:
        Program.from_bytes(data)
    return str(info.value)


# -- assembler ---------------------------------------------------------------------------------

def test_assemble_example():
    insts = assemble(EXAMPLE)
    assert insts == [
        Instruction(Opcode.LOAD, spad=Spad.ACT, dram_addr=0x1000, words=64, rows=1, signal=UnitMask.GEMM),
        Instruction(Opcode.GEMM, groups=2, wait=UnitMask.DMA, signal=UnitMask.VEC | UnitMask.DMA),
        Instruction(Opcode.VEC, func=VecFunc.GELU, act_addr=64, rows=4, wait=UnitMask.GEMM),
        Instruction(Opcode.HALT),
    ]
    assert disassemble(insts) == CANONICAL
    assert assemble(CANONICAL) == insts
    assert disassemble(assemble(CANONICAL)) == CANONICAL


def test_omitted_fields_are_zero():
    assert assemble("LOAD words=1 rows=1\nhalt") == [
        Instruction(Opcode.LOAD, spad=Spad.ACT, words=1, rows=1), Instruction(Opcode.HALT)]
    assert assemble("GEMM groups=1") == assemble("GEMM groups=1 accumulate=0 wait=- signal=- act_addr=0")
    assert assemble("") == [] and assemble("# nothing\n\n   \n") == [] and disassemble([]) == ""


def test_fields_in_any_order_and_case():
    a = assemble("vec ROWS=2 Func=relu signal=dma|Gemm")
    assert a == [Instruction(Opcode.VEC, func=VecFunc.RELU, rows=2, signal=3)]
    assert disassemble(a) == ("VEC    func=RELU acc_addr=0 act_addr=0 res_addr=0 param_addr=0 rows=2 "
                              "fmt=0 direct=0 table_addr=0 bias=0 wait=- signal=DMA|GEMM\n")


def test_assemble_the_whole_model_instructions():
    text = """\
load spad=acc SPAD_ADDR=3 words=2 rows=1 dram_addr=0x30
gemm groups=1 wsrc=1 wgt_addr=64 accumulate=1
vec func=rope_lo rows=4 fmt=1 table_addr=0x80 res_addr=8
vec func=res rows=2 res_addr=4 bias=1
vsoft func=norm words=2 count=5 pfmt=fp16 col=1 lane=3 first=1
vnorm func=sq rows=4 qshift=7 rms=1 first=1 signal=gemm
vnorm func=NORM rows=4 to_acc=1 act_addr=9 nparam=70
"""
    insts = assemble(text)
    assert insts == [
        Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=3, dram_addr=0x30, words=2, rows=1),
        Instruction(Opcode.GEMM, wgt_addr=64, groups=1, accumulate=1, wsrc=1),
        Instruction(Opcode.VEC, func=VecFunc.ROPE_LO, res_addr=8, rows=4, fmt=1, table_addr=0x80),
        Instruction(Opcode.VEC, func=VecFunc.RES, res_addr=4, rows=2, bias=1),
        Instruction(Opcode.VSOFT, func=SoftFunc.NORM, words=2, count=5, first=1, pfmt=ProbFormat.FP16,
                    col=1, lane=3),
        Instruction(Opcode.VNORM, func=NormFunc.SQ, rows=4, qshift=7, first=1, rms=1, signal=UnitMask.GEMM),
        Instruction(Opcode.VNORM, func=NormFunc.NORM, act_addr=9, nparam=70, rows=4, to_acc=1),
    ]
    assert disassemble(insts).splitlines() == [
        "LOAD   spad=ACC spad_addr=3 dram_addr=0x30 words=2 rows=1 stride=0x0 wait=- signal=-",
        "GEMM   act_addr=0 wgt_addr=64 meta_addr=0 acc_addr=0 groups=1 accumulate=1 wsrc=1 wait=- signal=-",
        "VEC    func=ROPE_LO acc_addr=0 act_addr=0 res_addr=8 param_addr=0 rows=4 fmt=1 direct=0 "
        "table_addr=128 bias=0 wait=- signal=-",
        "VEC    func=RES acc_addr=0 act_addr=0 res_addr=4 param_addr=0 rows=2 fmt=0 direct=0 table_addr=0 "
        "bias=1 wait=- signal=-",
        "VSOFT  func=NORM acc_addr=0 words=2 count=5 kparam=0 vparam=0 act_addr=0 first=1 pfmt=FP16 col=1 "
        "lane=3 wait=- signal=-",
        "VNORM  func=SQ acc_addr=0 act_addr=0 param_addr=0 nparam=0 rows=4 qshift=7 first=1 rms=1 fmt=0 "
        "to_acc=0 wait=- signal=GEMM",
        "VNORM  func=NORM acc_addr=0 act_addr=9 param_addr=0 nparam=70 rows=4 qshift=0 first=0 rms=0 fmt=0 "
        "to_acc=1 wait=- signal=-",
    ]
    assert assemble(disassemble(insts)) == insts


@pytest.mark.parametrize("text, message", [
    ("FOO x=1", "line 1: unknown mnemonic 'FOO'; mnemonics are NOP, SYNC, HALT, LOAD, STORE, GEMM, VEC, VSOFT, "
                "VNORM, PIM_GBUF, PIM_WRITE, PIM_GEMV, PIM_READ, PIM_ACT"),
    ("HALT\nLOAD words=1 rows=1 groups=3",
     "line 2: LOAD has no field 'groups'; its fields are spad, spad_addr, dram_addr, words, rows, "
     "stride, wait, signal"),
    ("\n\nGEMM groups=1 groups=2", "line 3: duplicate field groups"),
    ("GEMM groups=1 WAIT=- wait=DMA", "line 1: duplicate field wait"),
    ("LOAD rows=1", "line 1: LOAD needs words (it cannot be 0, so it cannot be omitted)"),
    ("GEMM accumulate=1", "line 1: GEMM needs groups (it cannot be 0, so it cannot be omitted)"),
    ("VEC func=ADD", "line 1: VEC needs rows (it cannot be 0, so it cannot be omitted)"),
    ("LOAD words=0 rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not 0"),
    ("LOAD words=65536 rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not 65536"),
    ("LOAD words=1 rows=1 dram_addr=-1",
     "line 1: LOAD dram_addr must be an integer in 0..4294967295 (32 bits), not -1"),
    ("LOAD words=1 rows=1 stride=0x1000000",
     "line 1: LOAD stride must be an integer in 0..16777215 (24 bits), not 16777216"),
    ("LOAD words=ten rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not 'ten'"),
    ("LOAD words=1__0 rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not '1__0'"),
    ("LOAD words=0x rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not '0x'"),
    ("LOAD words=1.5 rows=1", "line 1: LOAD words must be an integer in 1..65535 (16 bits), not '1.5'"),
    ("LOAD spad=ACCU words=1 rows=1", "line 1: LOAD spad must be one of ACT, WGT, META, ACC, VPARAM, not 'ACCU'"),
    ("LOAD spad=5 words=1 rows=1", "line 1: LOAD spad must be one of ACT, WGT, META, ACC, VPARAM, not 5"),
    ("STORE spad=xyz words=1 rows=1", "line 1: STORE spad must be one of ACT, ACC, not 'XYZ'"),
    ("VEC func=9 rows=1", "line 1: VEC func must be one of REQUANT, RELU, GELU, ADD, SILU, GLU, ROPE_LO, "
                          "ROPE_HI, RES, not 9"),
    ("VEC func=swiglu rows=1", "line 1: VEC func must be one of REQUANT, RELU, GELU, ADD, SILU, GLU, ROPE_LO, "
                               "ROPE_HI, RES, not 'SWIGLU'"),
    ("VEC rows=1 fmt=2", "line 1: VEC fmt must be an integer in 0..1 (1 bits), not 2"),
    ("VSOFT words=1 count=1 pfmt=bf16",
     "line 1: VSOFT pfmt must be one of INT8, FP16, HI, LO, not 'BF16'"),
    ("VSOFT words=1 count=1 lane=256", "line 1: VSOFT lane must be an integer in 0..255 (8 bits), not 256"),
    ("VNORM func=3 rows=1", "line 1: VNORM func must be one of SUM, SQ, NORM, not 3"),
    ("VNORM func=SUM", "line 1: VNORM needs rows (it cannot be 0, so it cannot be omitted)"),
    ("GEMM groups=1 accumulate=2", "line 1: GEMM accumulate must be an integer in 0..1 (1 bits), not 2"),
    ("GEMM groups=1 wait=DMA|GEMMM",
     "line 1: wait: unknown unit 'GEMMM'; units are DMA, GEMM, VEC, PIM (or - for none)"),
    ("GEMM groups=1 signal=", "line 1: expected name=value, not 'signal='"),
    ("GEMM groups=1 signal=DMA||VEC",
     "line 1: signal: unknown unit ''; units are DMA, GEMM, VEC, PIM (or - for none)"),
    ("GEMM groups=1 signal=DMA|dma", "line 1: signal: unit DMA appears twice"),
    ("GEMM groups=1 signal=16",
     "line 1: GEMM signal must be a unit mask (a UnitMask or an integer in 0..15), not 16"),
    ("GEMM groups=1 signal=GEMM", "line 1: GEMM signal must not include its own unit GEMM"),
    ("HALT wait=DMA", "line 1: HALT wait must be empty, not DMA: the dispatcher executes HALT and "
                      "holds no tokens"),
    ("GEMM groups = 1", "line 1: expected name=value, not 'groups'"),
    ("GEMM =1 groups=1", "line 1: expected name=value, not '=1'"),
])
def test_assembly_errors(text, message):
    with pytest.raises(AssemblyError, match=exact(message)) as info:
        assemble(text)
    assert info.value.line == int(message.split(":")[0].split()[1])
    assert isinstance(info.value, ProgramError) and isinstance(info.value, ValueError)


def test_assemble_and_disassemble_reject_wrong_types():
    with pytest.raises(ProgramError, match=exact("assembly must be a string, not bytes")):
        assemble(b"HALT")
    with pytest.raises(ProgramError, match=exact("instructions[1] must be an Instruction, not 2")):
        disassemble([Instruction(Opcode.NOP), 2])


@settings(max_examples=100, deadline=None)
@given(st.lists(instructions(), max_size=12))
def test_random_programs_round_trip_through_text(insts):
    text = disassemble(insts)
    assert assemble(text) == insts
    assert disassemble(assemble(text)) == text


# -- segments ----------------------------------------------------------------------------------

def test_segment_fields():
    s = Segment(Spad.ACC, 10, bytearray(12), 4)
    assert (s.target, s.base, s.data, s.word_bytes, s.size, s.end) == ("ACC", 10, bytes(12), 4, 3, 13)
    d = Segment("dram", DRAM_BYTES - 4, b"abcd")
    assert (d.size, d.end) == (4, DRAM_BYTES)
    assert Segment("WGT", SPAD_WORDS - 1, b"xy", 2).end == SPAD_WORDS
    assert DRAM_BYTES == 2**32 and SPAD_WORDS == 2**16


@pytest.mark.parametrize("args, message", [
    (("DRAM", 0, b"x"), "segment target must be one of dram, ACT, WGT, META, ACC, VPARAM, not 'DRAM'"),
    ((5, 0, b"x"), "segment target must be one of dram, ACT, WGT, META, ACC, VPARAM, not 5"),
    (("dram", 0, "x"), "segment data must be bytes, not str"),
    (("dram", 0, b""), "segment data must not be empty"),
    (("ACT", 0, b"x", 0), "segment word_bytes must be an integer in 1..65535, not 0"),
    (("ACT", 0, b"x", True), "segment word_bytes must be an integer in 1..65535, not True"),
    (("dram", 0, b"xx", 2), "a dram segment is byte addressed: word_bytes must be 1, not 2"),
    (("ACT", 0, b"xxx", 2), "segment data (3 bytes) is not a whole number of 2-byte words"),
    (("dram", -1, b"x"), "segment base must be a non-negative integer, not -1"),
    (("dram", 1.0, b"x"), "segment base must be a non-negative integer, not 1.0"),
    (("dram", 2**32 - 1, b"xy"),
     "segment dram 0xffffffff..0x100000000 (2 bytes) ends at 0x100000001, beyond the 4294967296 "
     "bytes an instruction can address"),
    (("ACC", 65535, b"12345678", 4),
     "segment ACC 65535..65536 (2 words) ends at 65537, beyond the 65536 words an instruction can "
     "address"),
])
def test_segment_errors(args, message):
    with pytest.raises(ProgramError, match=exact(message)):
        Segment(*args)


# -- programs ----------------------------------------------------------------------------------

def test_program_normalizes_and_validates():
    p = sample_program()
    assert isinstance(p.instructions, tuple) and isinstance(p.segments, tuple)
    assert Program(preset("tiny"), []).symbols == {} and Program(preset("tiny"), ()).comments == {}


@pytest.mark.parametrize("changes, message", [
    ({"config": {"rows": 4}}, "config must be a TileConfig, not dict"),
    ({"instructions": "HALT"}, "instructions must be a sequence of Instruction, not str"),
    ({"instructions": 3}, "instructions must be a sequence of Instruction, not int"),
    ({"instructions": [Instruction(Opcode.HALT), 2]}, "instructions[1] must be an Instruction, not 2"),
    ({"segments": [b"x"]}, "segments[0] must be a Segment, not b'x'"),
    ({"segments": [Segment("dram", 0, bytes(16)), Segment("ACT", 0, bytes(4)),
                   Segment("dram", 8, bytes(16))]},
     "segments 0 and 2 overlap in dram at 0x8..0xf"),
    ({"segments": [Segment("dram", 100, bytes(16)), Segment("dram", 0, bytes(200))]},
     "segments 0 and 1 overlap in dram at 0x64..0x73"),
    ({"segments": [Segment("ACC", 4, bytes(16), 4), Segment("ACC", 0, bytes(20), 4)]},
     "segments 0 and 1 overlap in ACC at 4..4"),
    ({"segments": [Segment("ACC", 0, bytes(16), 4), Segment("ACC", 8, bytes(16), 8)]},
     "segments 0 and 1 give ACC different word sizes (4 and 8 bytes)"),
    ({"symbols": [("x", 1)]}, "symbols must be a dict, not list"),
    ({"symbols": {"": 1}}, "symbol names must be non-empty strings without whitespace, not ''"),
    ({"symbols": {"a b": 1}}, "symbol names must be non-empty strings without whitespace, not 'a b'"),
    ({"symbols": {"x": -1}}, "symbol x must be an integer in 0..2**64-1, not -1"),
    ({"symbols": {"x": "1"}}, "symbol x must be an integer in 0..2**64-1, not '1'"),
    ({"comments": [(0, "x")]}, "comments must be a dict, not list"),
    ({"comments": {4: "x"}}, "comment index must be an instruction index in 0..3, not 4"),
    ({"comments": {"0": "x"}}, "comment index must be an instruction index in 0..3, not '0'"),
    ({"comments": {1: "a\nb"}}, "comment 1 must be a one-line string, not 'a\\nb'"),
    ({"comments": {1: 5}}, "comment 1 must be a one-line string, not 5"),
])
def test_program_errors(changes, message):
    with pytest.raises(ProgramError, match=exact(message)) as info:
        sample_program(**changes)
    assert isinstance(info.value, MixpimError) and isinstance(info.value, ValueError)


def test_adjacent_segments_do_not_overlap():
    p = sample_program(segments=[Segment("dram", 16, bytes(16)), Segment("dram", 0, bytes(16)),
                                 Segment("ACT", 0, bytes(4), 4), Segment("WGT", 0, bytes(2), 2)])
    assert len(p.segments) == 4


# -- program file ------------------------------------------------------------------------------

def test_file_round_trip(tmp_path):
    p = sample_program()
    data = p.to_bytes()
    assert Program.from_bytes(data) == p
    assert Program.from_bytes(bytearray(data)) == p
    path = tmp_path / "prog.mxpm"
    p.save(path)
    assert path.read_bytes() == data
    assert Program.load(path) == p and Program.load(str(path)) == p
    bare = Program(TileConfig(rows=16, cols=8, group=64), [Instruction(Opcode.HALT)])
    assert Program.from_bytes(bare.to_bytes()) == bare
    empty = Program(preset("fpga"), [])
    assert Program.from_bytes(empty.to_bytes()) == empty


def test_file_layout_byte_by_byte():
    p = sample_program()
    data = p.to_bytes()
    magic, version, flags, length, crc = struct.unpack_from("<4sHHII", data)
    assert (magic, version, flags) == (b"MXPM", 1, 0) and HEADER_BYTES == 16
    assert length == len(data) - 16 and crc == zlib.crc32(data[16:])
    at = 16
    (n,) = struct.unpack_from("<I", data, at)
    assert data[at + 4:at + 4 + n].decode() == preset("tiny").to_json()
    at += 4 + n
    assert struct.unpack_from("<I", data, at) == (4,)
    at += 4
    for inst in p.instructions:
        assert data[at] == inst.op  # byte 0 of a word: the opcode
        assert int.from_bytes(data[at:at + 16], "little") == inst.encode()
        at += 16
    assert struct.unpack_from("<I", data, at) == (2,)
    at += 4
    assert struct.unpack_from("<BBHII", data, at) == (0xFF, 0, 1, 0x1000, 64)
    at += 12
    assert data[at:at + 64] == bytes(range(64))
    at += 64
    assert struct.unpack_from("<BBHII", data, at) == (Spad.VPARAM, 0, 4, 2, 8)
    at += 12 + 8
    (n,) = struct.unpack_from("<I", data, at)
    assert json.loads(data[at + 4:at + 4 + n]) == {"comments": {"0": "load x", "3": "done"},
                                                   "symbols": {"w.0": 7, "x": 4096}}
    assert at + 4 + n == len(data)
    # No debug information: an empty debug section.
    bare = Program(preset("tiny"), [Instruction(Opcode.HALT)]).to_bytes()
    assert bare.endswith(struct.pack("<I", 0) + struct.pack("<I", 0))


def test_every_single_byte_flip_is_caught():
    data = sample_program().to_bytes()
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            corrupt = bytearray(data)
            corrupt[i] ^= flip
            with pytest.raises(ProgramError):
                Program.from_bytes(bytes(corrupt))


def test_body_byte_flip_is_a_checksum_error():
    data = bytearray(sample_program().to_bytes())
    crc = zlib.crc32(data[16:])
    data[100] ^= 0x04
    message = (f"program file checksum mismatch: the header says 0x{crc:08x}, the body's CRC-32 is "
               f"0x{zlib.crc32(data[16:]):08x} (the file is corrupt)")
    assert load_error(bytes(data)) == message


def test_truncated_files():
    data = sample_program().to_bytes()
    length = len(data) - 16
    assert load_error(b"") == "truncated program file: the header needs 16 bytes, the file has 0"
    assert load_error(data[:3]) == "truncated program file: the header needs 16 bytes, the file has 3"
    assert load_error(data[:6]) == "truncated program file: the header needs 16 bytes, the file has 6"
    assert load_error(data[:15]) == "truncated program file: the header needs 16 bytes, the file has 15"
    for cut in (16, 17, 100, len(data) - 1):
        assert load_error(data[:cut]) == (f"truncated program file: the header announces {length} "
                                          f"body bytes, the file has {cut - 16}")
    assert load_error(data + b"\0\0") == (f"program file has 2 unexpected bytes after its "
                                          f"{length}-byte body")


@pytest.mark.parametrize("start", [b"PK\x03\x04", b"mxpm", b"\0", b"MXP!", b"{\"rows\": 4}"])
def test_wrong_magic(start):
    data = start + sample_program().to_bytes()[len(start):]
    assert load_error(data) == f"not a mixpim program file: it starts with {data[:4]!r}, not b'MXPM'"


def test_unsupported_version():
    data = bytearray(sample_program().to_bytes())
    for version in (99, 0, 2, 0xFFFF):
        data[4:6] = version.to_bytes(2, "little")
        assert load_error(bytes(data)) == (f"unsupported program format version {version}; this "
                                           f"mixpim reads version 1")
    assert load_error(b"MXPM\x63\x00") == "unsupported program format version 99; this mixpim reads version 1"


def test_header_flags():
    assert load_error(file_with_body(body(), flags=4)) == "program file header flags must be 0, not 0x0004"


def test_crafted_bodies_with_valid_checksums():
    assert Program.from_bytes(file_with_body(body())) == Program(preset("tiny"), [])
    good = body()
    cases = [
        (good[:-1], "malformed program body: the debug length need(s) 4 bytes at body offset "
                    f"{len(good) - 4}, only 3 left"),
        (good + b"xy", "malformed program body: 2 unexpected bytes after the debug section"),
        (struct.pack("<I", 1000) + b"{}",
         "malformed program body: the configuration need(s) 1000 bytes at body offset 4, only 2 left"),
        (body(config="{"), "invalid configuration in program file: configuration is not valid JSON: "
                           "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (body(config=b"\xff"), "invalid configuration in program file: not UTF-8"),
        (body(config='{"rows": 0}'),
         "invalid configuration in program file: rows must be an integer in 1..256, not 0"),
        (body(config='{"rowz": 4}'),
         "invalid configuration in program file: unknown configuration field(s) rowz; known fields "
         "are acc_headroom, acc_words, act_words, cols, dram_bank_groups, dram_banks, dram_bus_bytes, "
         "dram_channels, dram_row_bytes, dram_rows, group, group_offset, meta_words, norm_unit, pe, "
         "pim_gbuf_bytes, pim_lanes, pim_mode, pim_res_regs, pim_row_buffers, pim_unit, queue_depth, rows, "
         "scale_bits, softmax_unit, t_ccd_l, t_ccd_s, t_cl, t_faw, t_ras, t_rcd, t_rp, vec_passes, "
         "vparam_words, wbits, wgt_words"),
        (body(config='[1]'),
         "invalid configuration in program file: a tile configuration must be a table of fields, not list"),
        (body(words=(0x02, 0x45)),
         "instruction 1 (0x00000000000000000000000000000045) does not decode: opcode 0x45 is "
         "a reserved PIM opcode (error code ILLEGAL_OPCODE)"),
        (body(words=(0x02, 0x02, 0x20 | 1 << 88 | 0x2 << 8)),
         f"instruction 2 (0x{0x20 | 1 << 88 | 0x2 << 8:032x}) does not decode: GEMM wait must not "
         "include its own unit GEMM (error code BAD_FIELD)"),
        (body(words=(0x10 | 1 << 76 | 1 << 92 | 5 << 24,)),
         f"instruction 0 (0x{0x10 | 1 << 76 | 1 << 92 | 5 << 24:032x}) does not decode: LOAD spad "
         "must be one of ACT, WGT, META, ACC, VPARAM, not 5 (error code BAD_FIELD)"),
        (body(words=(0x11 | 1 << 76 | 1 << 92 | 4 << 24,)),
         f"instruction 0 (0x{0x11 | 1 << 76 | 1 << 92 | 4 << 24:032x}) does not decode: STORE spad "
         "must be one of ACT, ACC, not VPARAM (error code BAD_FIELD)"),
        (body(words=(0x32 | 3 << 24 | 1 << 92,)),
         f"instruction 0 (0x{0x32 | 3 << 24 | 1 << 92:032x}) does not decode: VNORM func "
         "must be one of SUM, SQ, NORM, not 3 (error code BAD_FIELD)"),
        (body(words=(0x07,)), "instruction 0 (0x00000000000000000000000000000007) does not decode: "
                              "illegal opcode 0x07 (error code ILLEGAL_OPCODE)"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 9, 0, 1, 0, 1) + b"x"),
         "segment 0: unknown target code 9; codes are 0 ACT, 1 WGT, 2 META, 3 ACC, 4 VPARAM, 255 dram"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0xFF, 1, 1, 0, 1) + b"x"),
         "segment 0: reserved byte must be 0, not 1"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0xFF, 0, 1, 0xFFFFFFFF, 2) + b"xy"),
         "segment 0: segment dram 0xffffffff..0x100000000 (2 bytes) ends at 0x100000001, beyond the "
         "4294967296 bytes an instruction can address"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0, 0, 4, 0, 6) + bytes(6)),
         "segment 0: segment data (6 bytes) is not a whole number of 4-byte words"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0, 0, 0, 0, 1) + b"x"),
         "segment 0: segment word_bytes must be an integer in 1..65535, not 0"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0xFF, 0, 1, 0, 0)),
         "segment 0: segment data must not be empty"),
        (body(n_segments=2, segments=struct.pack("<BBHII", 0xFF, 0, 1, 0, 4) + bytes(4)),
         "malformed program body: the segment 1 header need(s) 12 bytes at body offset "
         f"{len(good) - 4 + 16}, only 4 left"),
        (body(n_segments=1, segments=struct.pack("<BBHII", 0xFF, 0, 1, 0, 400)),
         f"malformed program body: the segment 0 data need(s) 400 bytes at body offset "
         f"{len(good) - 4 + 12}, only 4 left"),
        (body(n_segments=2, segments=struct.pack("<BBHII", 3, 0, 2, 0, 4) + bytes(4)
              + struct.pack("<BBHII", 3, 0, 2, 1, 2) + bytes(2)),
         "segments 0 and 1 overlap in ACC at 1..1"),
        (body(debug=b"[]"), "malformed program debug section: expected an object with keys comments "
                            "and symbols"),
        (body(debug=b"{"), "malformed program debug section: Expecting property name enclosed in "
                           "double quotes: line 1 column 2 (char 1)"),
        (body(debug=b'{"symbols": {}, "comments": {"x": "a"}}'),
         "malformed program debug section: invalid literal for int() with base 10: 'x'"),
        (body(debug=b'{"symbols": {}, "comments": []}'),
         "malformed program debug section: 'list' object has no attribute 'items'"),
        (body(debug=b'{"symbols": {"a": -1}, "comments": {}}'),
         "symbol a must be an integer in 0..2**64-1, not -1"),
        (body(debug=b'{"symbols": {}, "comments": {"0": "x"}}'),
         "comment index must be an instruction index in 0..-1, not 0"),
    ]
    for raw, message in cases:
        assert load_error(file_with_body(raw)) == message, message


def test_instruction_count_too_large_for_the_body():
    raw = body(words=(0x02,))
    raw = raw.replace(struct.pack("<I", 1) + (2).to_bytes(16, "little"),
                      struct.pack("<I", 2) + (2).to_bytes(16, "little"))
    at = len(preset("tiny").to_json()) + 8
    assert load_error(file_with_body(raw)) == (
        f"malformed program body: the 2 instructions need(s) 32 bytes at body offset {at}, only "
        f"{len(raw) - at} left")


def test_from_bytes_and_load_reject_wrong_inputs(tmp_path):
    with pytest.raises(ProgramError, match=exact("a program file must be bytes, not str")):
        Program.from_bytes("MXPM")
    missing = tmp_path / "nope.mxpm"
    msg = f"cannot read program {str(missing)!r}: No such file or directory"
    with pytest.raises(ProgramError, match=exact(msg)):
        Program.load(missing)
    with pytest.raises(ProgramError, match=exact(f"cannot write program {str(tmp_path)!r}: Is a directory")):
        sample_program().save(tmp_path)


@settings(max_examples=50, deadline=None)
@given(st.lists(instructions(), max_size=8),
       st.lists(st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=40)), max_size=4))
def test_random_programs_round_trip_through_the_file(insts, dram):
    segments, end = [], 0
    for gap, data in dram:  # non-overlapping, in address order
        segments.append(Segment("dram", end + gap, data))
        end += gap + len(data)
    p = Program(preset("tiny"), insts, segments)
    assert Program.from_bytes(p.to_bytes()) == p


# -- listing -----------------------------------------------------------------------------------

def test_listing():
    text = listing(sample_program())
    config = json.dumps(preset("tiny").to_dict(), sort_keys=True)
    assert text == (
        "# mixpim program (format version 1): 4 instructions, 2 segments\n"
        f"# config {config}\n"
        "# segment 0: dram 0x1000..0x103f (64 bytes)\n"
        "# segment 1: VPARAM 2..3 (2 words), 4-byte words\n"
        "# symbol w.0 = 0x7\n"
        "# symbol x = 0x1000\n"
        "#    pc  word                              assembly\n"
        "      0  00000000100400000100000000002010  LOAD   spad=ACT spad_addr=0 dram_addr=0x1000 "
        "words=64 rows=1 stride=0x0 wait=- signal=GEMM  # load x\n"
        "      1  00000000020000000000000000005120  GEMM   act_addr=0 wgt_addr=0 meta_addr=0 "
        "acc_addr=0 groups=2 accumulate=0 wsrc=0 wait=DMA signal=DMA|VEC\n"
        "      2  00000000400000000004000002000230  VEC    func=GELU acc_addr=0 act_addr=64 "
        "res_addr=0 param_addr=0 rows=4 fmt=0 direct=0 table_addr=0 bias=0 wait=GEMM signal=-\n"
        "      3  00000000000000000000000000000002  HALT  # done\n")
    one = listing(Program(preset("tiny"), [Instruction(Opcode.HALT)]))
    assert one.startswith("# mixpim program (format version 1): 1 instruction, 0 segments\n")
    with pytest.raises(ProgramError, match=exact("listing needs a Program, not list")):
        listing([Instruction(Opcode.HALT)])
