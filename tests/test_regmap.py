"""The register map table (models/regmap.py): its validation, its agreement with the tile's ports
and memories, and the documents generated from it (docs/registers.md, the C header)."""

import subprocess

import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from mixpim.hw.dma import word_shape
from mixpim.hw.tile import HostSel, Tile, host_word_bits
from mixpim.models.config import PRESETS, preset
from mixpim.models.isa import ErrorCode, Spad, Unit
from mixpim.models.regmap import (MAGIC, REG_BITS, Access, Field, Register, RegMapError, Window,
                                  check_registers, data_words, regmap, window_bits, window_depth)
from mixpim.sim import regmap_doc
from mixpim.sim.tile_cosim import rtl_size_problem
from helpers import exact

RTL_PRESETS = [n for n, c in PRESETS.items() if rtl_size_problem(c) is None]


def _reg(name="A", offset=0, access=Access.RW, fields=None, reset=0):
    fields = (Field("f", 0, 8, "doc"),) if fields is None else fields
    return Register(name, offset, access, "doc", fields, reset)


@pytest.mark.parametrize("registers, message", [
    ([_reg("lower")], "register name must be an upper-case identifier, not 'lower'"),
    ([_reg(), _reg(offset=4)], "register A is defined twice"),
    ([_reg(offset=2)], "register A: offset 0x2 is not a non-negative multiple of 4"),
    ([_reg(), _reg("B")], "registers A and B share offset 0x0"),
    ([_reg(fields=())], "register A has no fields"),
    ([_reg(fields=(Field("f", 30, 4, "d"),))], "register A field f: bits 30..33 leave the 32-bit register"),
    ([_reg(fields=(Field("f", 0, 4, "d"), Field("g", 3, 2, "d")))],
     "register A field g: bits 3..4 overlap another field"),
    ([_reg(fields=(Field("f", 0, 4, "d"), Field("f", 8, 2, "d")))],
     "register A field f: a field name must be a unique lower-case identifier"),
    ([_reg(fields=(Field("f", 0, 4, "d", value=1),))],
     "register A field f: only a read-only field without a port has a constant value"),
    ([_reg(access=Access.RO, fields=(Field("f", 0, 4, "d", value=16),))],
     "register A field f: value 16 does not fit 4 bits"),
    ([_reg(access=Access.RO)], "register A field f: a read-only field needs a port or a constant value"),
    ([_reg(reset=0x100)], "register A: reset 0x100 must be 0 or lie in the fields of an RW register"),
    ([_reg(access=Access.W1P, reset=1)],
     "register A: reset 0x1 must be 0 or lie in the fields of an RW register"),
])
def test_bad_tables_are_rejected(registers, message):
    with pytest.raises(RegMapError, match=exact(message)):
        check_registers(registers)


def test_bad_arguments():
    with pytest.raises(TypeError, match=exact("config must be a TileConfig, not 'tiny'")):
        regmap("tiny", 16)
    for bad in (0, 65537, True, 1.0):
        with pytest.raises(ValueError, match=exact(f"imem_words must be an integer in 1..65536, not {bad!r}")):
            regmap(preset("tiny"), bad)


@pytest.mark.parametrize("name", RTL_PRESETS)
def test_windows_are_the_tiles_memories(name):
    cfg = PRESETS[name]
    rm = regmap(cfg, 512)
    assert {w.name for w in Window} == {s.name for s in HostSel} - {"DRAM"}
    for w in Window:
        if w == Window.IMEM:
            assert window_bits(cfg, w) == 128 and window_depth(cfg, 512, w) == 512
        else:
            s = Spad[w.name]
            shape = word_shape(cfg, s)
            expect = data.Layout.cast(shape).size if s == Spad.ACC else Shape.cast(shape).width
            assert window_bits(cfg, w) == expect
            assert window_depth(cfg, 512, w) == cfg.spad_words(s)
        assert rm[f"WIN_{w.name}_BITS"].value == window_bits(cfg, w)
        assert rm[f"WIN_{w.name}_DEPTH"].value == window_depth(cfg, 512, w)
    # the staging registers hold the widest window word, and the tile's host word holds them
    widest = max(window_bits(cfg, w) for w in Window)
    assert REG_BITS * (data_words(cfg) - 1) < widest <= REG_BITS * data_words(cfg)
    assert widest <= host_word_bits(cfg)
    assert [r.name for r in rm.registers if r.name.startswith("WIN_DATA") and r.name[8:].isdigit()] \
        == [f"WIN_DATA{i}" for i in range(data_words(cfg))]


@pytest.mark.parametrize("name", RTL_PRESETS)
def test_ports_are_the_tiles(name):
    cfg = PRESETS[name]
    tile = Tile(cfg, 64)
    tile._MustUse__silence = True
    members = tile.signature.members
    for port, (access, width, elements) in regmap(cfg, 64).ports().items():
        member = members[port]
        assert (member.flow.name == "Out") == (access == Access.RO), port   # RO reads a tile output
        shape = member.shape
        if elements:
            assert isinstance(shape, data.ArrayLayout) and shape.length == elements
            shape = shape.elem_shape
        assert Shape.cast(shape).width == width, port
    assert regmap(cfg, 64).ports()["busy"][2] == len(Unit)


def test_constants_and_layout():
    cfg = preset("fpga")
    rm = regmap(cfg, 1024)
    assert rm["MAGIC"].value == MAGIC == int.from_bytes(b"MXPT", "little")
    assert rm["ARRAY"].value == cfg.rows | cfg.cols << 16
    assert rm["ERROR"].field("code").width == max(ErrorCode).bit_length()
    assert rm["ERROR"].field("code").enum is ErrorCode
    offsets = [r.offset for r in rm.registers]
    assert offsets == sorted(offsets) and rm.size == 512 and rm.addr_bits == 7
    assert {r.name for r in rm.registers if r.name.startswith("BUSY_")} == {f"BUSY_{u.name}" for u in Unit}
    # a 256-PE FP16 array with group offsets: more staging registers, still one table
    big = regmap(preset("llm"), 65536)
    assert big["WIN_DATA_WORDS"].value == data_words(preset("llm")) > 32
    # the CONFIG_ID names the configuration
    assert regmap(cfg.replace(queue_depth=8), 1024)["CONFIG_ID"].value != rm["CONFIG_ID"].value
    # NUMERICS says which vector datapaths and whether the PIM unit the tile has
    numerics = rm["NUMERICS"]
    assert [numerics.field(n).lsb for n in ("softmax_unit", "norm_unit", "pim_unit")] == [17, 18, 19]
    assert numerics.value >> 17 == 0b111
    assert regmap(cfg.replace(norm_unit=False), 1024)["NUMERICS"].value >> 17 == 0b101
    assert regmap(cfg.replace(softmax_unit=False), 1024)["NUMERICS"].value >> 17 == 0b110
    assert regmap(cfg.replace(pim_unit=False), 1024)["NUMERICS"].value >> 17 == 0b011


def test_committed_doc_is_generated():
    assert regmap_doc.doc_path().read_text() == regmap_doc.doc_text(), \
        "docs/registers.md is stale: run python -m mixpim.sim.regmap_doc"


def test_c_header_compiles(tmp_path):
    rm = regmap(preset("tiny"), 64)
    (tmp_path / "tile_regs.h").write_text(regmap_doc.c_header(rm, "tiny"))
    field = rm["STATE"].field("done")
    (tmp_path / "t.c").write_text(
        '#include "tile_regs.h"\n'
        f"_Static_assert(MIXPIM_TILE_STATE == {rm['STATE'].offset}, \"offset\");\n"
        f"_Static_assert(MIXPIM_TILE_STATE_DONE_MASK == {field.mask}u, \"mask\");\n"
        f"_Static_assert(MIXPIM_TILE_ERROR_CODE_DEADLOCK == {int(ErrorCode.DEADLOCK)}, \"enum\");\n"
        f"_Static_assert(MIXPIM_TILE_WINDOW_ACC == {int(Window.ACC)}, \"window\");\n"
        f"_Static_assert(MIXPIM_TILE_WIN_DATA_WORDS_VALUE == {data_words(rm.config)}, \"value\");\n"
        "int main(void) { return 0; }\n")
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-fsyntax-only", str(tmp_path / "t.c")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
