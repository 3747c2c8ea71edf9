"""TileConfig: validation messages, presets, JSON/TOML round-trip, loading."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixpim.models.config import GROUP_SIZES, PE_KINDS, PIM_MODES, PRESETS, TileConfig, preset
from mixpim.models.errors import ConfigError, MixpimError
from helpers import exact

FIELDS = ("acc_headroom, acc_words, act_words, cols, dram_bank_groups, dram_banks, dram_bus_bytes, "
          "dram_channels, dram_row_bytes, dram_rows, group, group_offset, meta_words, norm_unit, pe, pim_gbuf_bytes, "
          "pim_lanes, pim_mode, pim_res_regs, pim_row_buffers, pim_unit, queue_depth, rows, scale_bits, softmax_unit, "
          "t_ccd_l, t_ccd_s, "
          "t_cl, t_faw, t_ras, t_rcd, t_rp, vec_passes, vparam_words, wbits, wgt_words")
# tiny, queue_depth .. pim_unit (vec_passes 1, softmax_unit and norm_unit after queue_depth)
TILE_DEFAULTS = (4, 1, True, True, 256, 256, 64, 64, 128, 2, 4, 2, 128, 256, 8, 3, 3, 2, 8, 12, 1, 2,
                 "dual", 2, 4, 256, 32, True)


# -- validation --------------------------------------------------------------------------------

INT_FIELDS = [  # name, lo, hi (with group large enough that rows never trips the rows <= group rule)
    ("rows", 1, 128),
    ("cols", 1, 256),
    ("wbits", 2, 4),
    ("scale_bits", 4, 16),
    ("acc_headroom", 1, 24),
    ("queue_depth", 1, 64),
    ("act_words", 128, 65536),
    ("wgt_words", 128, 65536),
    ("meta_words", 1, 65536),
    ("acc_words", 4, 65536),
    ("vparam_words", 72, 65536),
    ("dram_rows", 1, 1 << 20),  # 2**20 rows x 4 banks x 1 KiB = 2**32 bytes
    ("t_rcd", 0, 255),
    ("t_rp", 0, 255),
    ("t_cl", 0, 255),
    ("t_ras", 0, 255),
    ("t_faw", 0, 255),
    ("t_ccd_s", 1, 1),
    ("t_ccd_l", 1, 255),
    ("pim_res_regs", 1, 256),
    ("pim_row_buffers", 1, 2),
]
INT_RANGES = {"rows": (1, 256), "cols": (1, 256), "wbits": (2, 4), "scale_bits": (4, 16),
              "acc_headroom": (1, 24), "queue_depth": (1, 64), "act_words": (128, 65536),
              "wgt_words": (128, 65536), "meta_words": (1, 65536), "acc_words": (4, 65536),
              "vparam_words": (72, 65536), "dram_rows": (1, 1 << 24), "t_rcd": (0, 255),
              "t_rp": (0, 255), "t_cl": (0, 255), "t_ras": (0, 255), "t_faw": (0, 255),
              "t_ccd_s": (1, 255), "t_ccd_l": (1, 255), "pim_res_regs": (1, 256),
              "pim_row_buffers": (1, 2)}
# the message's range (the field's own range; the smallest legal value may be larger because of
# a cross-field rule, e.g. act_words >= group)
MESSAGE_RANGES = {"act_words": (1, 65536), "wgt_words": (1, 65536), "acc_words": (1, 65536),
                  "vparam_words": (1, 65536)}


@pytest.mark.parametrize("name, lo, hi", INT_FIELDS)
def test_int_field_bounds_accepted(name, lo, hi):
    for v in (lo, hi):
        cfg = TileConfig(group=128, **{name: v})
        assert getattr(cfg, name) == v


@pytest.mark.parametrize("name", sorted(INT_RANGES))
@pytest.mark.parametrize("bad_kind", ["below", "above", "bool", "float", "str", "none"])
def test_int_field_rejected(name, bad_kind):
    lo, hi = MESSAGE_RANGES.get(name, INT_RANGES[name])
    bad = {"below": lo - 1, "above": hi + 1, "bool": True, "float": float(lo), "str": str(lo),
           "none": None}[bad_kind]
    with pytest.raises(ConfigError, match=exact(f"{name} must be an integer in {lo}..{hi}, not {bad!r}")):
        TileConfig(group=128, **{name: bad})


def test_bool_false_rejected_even_where_0_would_be_out_of_range_anyway():
    with pytest.raises(ConfigError, match=exact("wbits must be an integer in 2..4, not False")):
        TileConfig(wbits=False)


@pytest.mark.parametrize("bad", ["mixpe", "MIXPE-W4A8", "bitmod", "", None, 4])
def test_pe_rejected(bad):
    msg = (f"pe must be one of mixpe-w4a8, mixpe-w4a16, baseline-w4a8, baseline-w4a16, bitmod-w4a8, "
           f"bitmod-w4a16, not {bad!r}")
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig(pe=bad)


@pytest.mark.parametrize("bad", [16, 0, 256, 33, "32", None])
def test_group_rejected(bad):
    with pytest.raises(ConfigError, match=exact(f"group must be one of (32, 64, 128), not {bad!r}")):
        TileConfig(rows=1, group=bad)


def test_group_rejects_floats_like_every_other_integer_field():
    # Regression: `group not in GROUP_SIZES` alone accepts 32.0 (32.0 == 32), and a JSON/TOML file
    # with `"group": 32.0` then gave ArrayParams whose array_timing returned floats and whose RTL
    # could not be elaborated (range(32.0)).
    for make in (lambda: TileConfig(rows=1, group=32.0), lambda: TileConfig.from_json('{"group": 32.0}')):
        with pytest.raises(ConfigError, match=exact("group must be one of (32, 64, 128), not 32.0")):
            make()
            pytest.fail("a float group size (32.0) was accepted; it must be rejected with a ConfigError")


@pytest.mark.parametrize("bad", [0, 3, 512, True, 2.0, "2"])
def test_vec_passes_rejected(bad):
    with pytest.raises(ConfigError, match=exact(f"vec_passes must be a power of two in 1..256, not {bad!r}")):
        TileConfig(vec_passes=bad)


def test_vec_passes_divide_rows():
    assert TileConfig(rows=8, vec_passes=8).vec_lanes == 1
    assert TileConfig(rows=6, group=32, vec_passes=2).vec_lanes == 3
    assert TileConfig().vec_lanes == 4
    with pytest.raises(ConfigError, match=exact("vec_passes (4) must divide rows (6): each pass covers "
                                                "rows / vec_passes token lanes")):
        TileConfig(rows=6, vec_passes=4)


def test_vec_passes_serialized_only_when_not_1():
    assert "vec_passes" not in TileConfig().to_dict()
    cfg = TileConfig(vec_passes=2)
    assert cfg.to_dict()["vec_passes"] == 2
    assert TileConfig.from_json(cfg.to_json()) == cfg and TileConfig.from_toml(cfg.to_toml()) == cfg


def test_group_sizes():
    assert GROUP_SIZES == (32, 64, 128)
    for g in GROUP_SIZES:
        assert TileConfig(group=g).group == g


def test_rows_must_not_exceed_group():
    assert TileConfig(rows=32, group=32).rows == 32
    assert TileConfig(rows=128, group=128).rows == 128
    msg = ("rows (33) must not exceed group (32): a column of the array delivers one group result "
           "per cycle")
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig(rows=33, group=32)
    msg = ("rows (129) must not exceed group (128): a column of the array delivers one group result "
           "per cycle")
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig(rows=129, group=128)


def test_first_invalid_field_is_named():
    # Fields are checked in declaration order: rows before pe before group.
    with pytest.raises(ConfigError, match="^rows "):
        TileConfig(rows=0, pe="nope", group=1)
    with pytest.raises(ConfigError, match="^pe "):
        TileConfig(pe="nope", group=1)


def test_config_error_is_a_value_error_and_a_mixpim_error():
    with pytest.raises(ValueError):
        TileConfig(rows=0)
    with pytest.raises(MixpimError):
        TileConfig(rows=0)


def test_defaults_and_derived_properties():
    cfg = TileConfig()
    assert dataclasses.astuple(cfg) == (4, 4, "mixpe-w4a8", 4, 32, 16, 12, False,
                                        4, 1, True, True, 4096, 4096, 256, 512, 1024, 1, 4, 1, 1024,
                                        1024, 8, 3, 3, 2, 0, 0, 1, 1, "dual", 1, 4, 256, 16, True)
    expected = {"mixpe-w4a8": ("int8", "mixpe"), "mixpe-w4a16": ("fp16", "mixpe"),
                "baseline-w4a8": ("int8", "baseline"), "baseline-w4a16": ("fp16", "baseline"),
                "bitmod-w4a8": ("int8", "bitmod"), "bitmod-w4a16": ("fp16", "bitmod")}
    assert set(expected) == set(PE_KINDS)
    for pe, (act, family) in expected.items():
        c = TileConfig(pe=pe)
        assert (c.act_format, c.family) == (act, family)


@pytest.mark.parametrize("bad", [1, 0, "true", None, 1.0])
def test_group_offset_rejected(bad):
    with pytest.raises(ConfigError, match=exact(f"group_offset must be true or false, not {bad!r}")):
        TileConfig(group_offset=bad)
    with pytest.raises(ConfigError, match=exact(f"group_offset must be true or false, not {bad!r}")):
        TileConfig.from_json(json.dumps({"group_offset": bad}))


@pytest.mark.parametrize("name", ["softmax_unit", "norm_unit", "pim_unit"])
def test_datapath_flags(name):
    for bad in (0, "false", None):
        with pytest.raises(ConfigError, match=exact(f"{name} must be true or false, not {bad!r}")):
            TileConfig(**{name: bad})
    assert name not in TileConfig().to_dict()
    cfg = TileConfig(**{name: False})
    assert f"{name} = false\n" in cfg.to_toml() and cfg.to_dict()[name] is False
    assert TileConfig.from_toml(cfg.to_toml()) == cfg and TileConfig.from_json(cfg.to_json()) == cfg


def test_missing_datapath():
    from mixpim.models.isa import Opcode
    full, bare = TileConfig(), TileConfig(softmax_unit=False, norm_unit=False)
    assert all(full.missing_datapath(op) is None for op in Opcode)
    assert [op for op in Opcode if bare.missing_datapath(op)] == [Opcode.VSOFT, Opcode.VNORM]
    assert bare.missing_datapath(Opcode.VSOFT) == ("VSOFT needs the vector unit's softmax datapath; "
                                                   "this tile has softmax_unit = false")
    assert TileConfig(norm_unit=False).missing_datapath(Opcode.VNORM) == (
        "VNORM needs the vector unit's norm datapath; this tile has norm_unit = false")
    no_pim = TileConfig(pim_unit=False)
    assert [op for op in Opcode if no_pim.missing_datapath(op)] == [
        Opcode.PIM_GBUF, Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_READ, Opcode.PIM_ACT]
    assert no_pim.missing_datapath(Opcode.PIM_GEMV) == (
        "PIM_GEMV needs the PIM unit; this tile has pim_unit = false")


def test_group_offset_fields_and_serialization():
    plain, off = TileConfig(rows=5, cols=7), TileConfig(rows=5, cols=7, group_offset=True)
    assert "group_offset" not in plain.to_dict() and "group_offset" not in plain.to_json()
    assert TileConfig.from_json('{"group_offset": false}') == TileConfig()
    d = off.to_dict()
    assert d["group_offset"] is True and list(d).index("group_offset") == list(d).index("acc_headroom") + 1
    assert "group_offset = true\n" in off.to_toml()
    assert TileConfig.from_toml(off.to_toml()) == off and TileConfig.from_json(off.to_json()) == off
    # META entries grow by the int24 offset; the accumulator by the offset term's bits
    assert (plain.meta_entry_bytes, plain.meta_word_bytes) == (3, 21)
    assert (off.meta_entry_bytes, off.meta_word_bytes, off.word_bytes("META")) == (6, 42, 42)
    assert (plain.acc_bits, off.acc_bits, off.offset_bits) == (45, 49, 24)
    assert TileConfig(scale_bits=8, group_offset=True).offset_bits == 16
    for pe in PE_KINDS:  # every PE kind but BitMoD has the offset term
        if not pe.startswith("bitmod"):
            assert TileConfig(pe=pe, group_offset=True).group_offset


def test_frozen_and_replace_validates():
    cfg = TileConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rows = 8
    c2 = cfg.replace(rows=8, pe="baseline-w4a16")
    assert (c2.rows, c2.pe, cfg.rows, cfg.pe) == (8, "baseline-w4a16", 4, "mixpe-w4a8")
    with pytest.raises(ConfigError, match=exact("cols must be an integer in 1..256, not 257")):
        cfg.replace(cols=257)
    with pytest.raises(TypeError):
        cfg.replace(nonsense=1)


def test_in_pim_mode():
    tiny = preset("tiny")  # dual, two PIM row buffers
    single = tiny.in_pim_mode("single")
    assert (single.pim_mode, single.pim_row_buffers) == ("single", 1)
    assert single.replace(pim_mode="dual", pim_row_buffers=2) == tiny
    assert tiny.in_pim_mode("dual") == tiny
    assert single.in_pim_mode("dual").pim_row_buffers == 1
    with pytest.raises(ConfigError, match="pim_mode must be one of dual, single"):
        tiny.in_pim_mode("both")


def test_equality_and_hash():
    assert TileConfig() == TileConfig(rows=4)
    assert hash(TileConfig()) == hash(TileConfig())
    assert TileConfig() != TileConfig(rows=2)


# -- presets -----------------------------------------------------------------------------------

def test_presets():
    assert set(PRESETS) == {"tiny", "fpga", "llm", "npu128", "neupims"}
    tiny, fpga = preset("tiny"), preset("fpga")
    assert tiny is PRESETS["tiny"] and fpga is PRESETS["fpga"]
    assert (tiny.rows, tiny.cols, tiny.pe, tiny.wbits, tiny.group) == (4, 4, "mixpe-w4a8", 4, 32)
    assert (fpga.rows, fpga.cols, fpga.pe, fpga.wbits, fpga.group) == (16, 16, "mixpe-w4a8", 4, 128)
    assert dataclasses.astuple(tiny)[7:] == (False,) + TILE_DEFAULTS  # group_offset, then the tile
    assert not any(cfg.group_offset for name, cfg in PRESETS.items() if name != "llm")
    assert tiny.dram_bytes == 256 * 1024
    # fpga: scratchpads of about 160 KiB (ECP5-85k has 468 KiB of block RAM)
    spad_bits = sum(fpga.spad_words(s) * fpga.word_bytes(s) * 8 for s in ("ACT", "WGT", "META", "VPARAM"))
    spad_bits += fpga.acc_words * fpga.cols * fpga.acc_bits
    assert spad_bits / 8 / 1024 < 170
    # llm: fpga for whole models (W4A16, Q4_1's groups of 32 with offsets), 512 MiB of DRAM
    llm = preset("llm")
    assert llm.replace(pe="mixpe-w4a8", group=128, group_offset=False, dram_rows=2048,
                       acc_words=fpga.acc_words) == fpga and llm.acc_words >= fpga.acc_words
    assert (llm.pe, llm.group, llm.group_offset, llm.dram_bytes) == ("mixpe-w4a16", 32, True, 512 << 20)
    assert (llm.meta_entry_bytes, llm.meta_word_bytes, llm.acc_bits) == (6, 96, 82)
    npu = preset("npu128")
    assert (npu.rows, npu.cols, npu.group) == (128, 128, 128)
    neupims = preset("neupims")  # docs/pim.md: the NeuPIMs system, HBM2 timing
    assert (neupims.rows, neupims.cols, neupims.dram_channels, neupims.dram_banks,
            neupims.dram_row_bytes, neupims.pim_lanes, neupims.pim_mode) == (
        128, 128, 32, 32, 1024, 16, "dual")
    assert (neupims.t_rcd, neupims.t_rp, neupims.t_cl, neupims.t_ras, neupims.t_faw) == (
        14, 14, 14, 34, 30)
    for cfg in PRESETS.values():
        assert isinstance(cfg, TileConfig)
        assert TileConfig.from_dict(cfg.to_dict()) == cfg  # valid (re-validated)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=exact("no preset 'huge'; presets are tiny, fpga, llm, npu128, neupims")):
        preset("huge")


# -- serialization -----------------------------------------------------------------------------

@st.composite
def tile_configs(draw):
    group = draw(st.sampled_from(GROUP_SIZES))
    rows, cols = draw(st.integers(1, group)), draw(st.integers(1, 256))
    row_bytes = 1 << draw(st.integers(4, 16))
    banks = 1 << draw(st.integers(0, 6))
    channels = 1 << draw(st.integers(0, 6))
    bus_bits = draw(st.integers(0, min(8, row_bytes.bit_length() - 1)))
    t_ccd_s = draw(st.integers(1, 255))
    mode = draw(st.sampled_from(PIM_MODES))
    pe, scale_bits = draw(st.sampled_from(PE_KINDS)), draw(st.integers(4, 16))
    bitmod = pe.startswith("bitmod")  # 3- or 4-bit mixtures, no offsets, rows * scale_bits <= 2 group
    rows = min(rows, 2 * group // scale_bits) if bitmod else rows
    return TileConfig(
        rows=rows, cols=cols,
        pe=pe, wbits=draw(st.integers(3 if bitmod else 2, 4)), group=group,
        scale_bits=scale_bits, acc_headroom=draw(st.integers(1, 24)),
        group_offset=False if bitmod else draw(st.booleans()),
        queue_depth=draw(st.integers(1, 64)),
        vec_passes=1 << draw(st.integers(0, (rows & -rows).bit_length() - 1)),  # divides rows
        act_words=draw(st.integers(group, 65536)),
        wgt_words=draw(st.integers(group, 65536)), meta_words=draw(st.integers(1, 65536)),
        acc_words=draw(st.integers(rows, 65536)), vparam_words=draw(st.integers(64 + rows + cols, 65536)),
        dram_channels=channels, dram_banks=banks, dram_bank_groups=banks >> draw(st.integers(0, 6)) or 1,
        dram_rows=draw(st.integers(1, min(1 << 24, (1 << 32) // (channels * banks * row_bytes)))),
        dram_row_bytes=row_bytes, dram_bus_bytes=1 << bus_bits,
        t_rcd=draw(st.integers(0, 255)), t_rp=draw(st.integers(0, 255)), t_cl=draw(st.integers(0, 255)),
        t_ras=draw(st.integers(0, 255)), t_faw=draw(st.integers(0, 255)), t_ccd_s=t_ccd_s,
        t_ccd_l=draw(st.integers(t_ccd_s, 255)), pim_mode=mode,
        pim_row_buffers=draw(st.integers(1, 2)) if mode == "dual" else 1, pim_lanes=1 << draw(st.integers(0, min(6, bus_bits))),
        pim_gbuf_bytes=1 << draw(st.integers(4, 12)), pim_res_regs=draw(st.integers(1, 256)))


@settings(max_examples=200, deadline=None)
@given(tile_configs())
def test_json_and_toml_round_trip(cfg):
    assert TileConfig.from_json(cfg.to_json()) == cfg
    assert TileConfig.from_toml(cfg.to_toml()) == cfg
    assert TileConfig.from_dict(cfg.to_dict()) == cfg


def test_to_dict_json_toml_content():
    cfg = TileConfig(rows=2, cols=3, pe="mixpe-w4a16", wbits=3, group=64, scale_bits=8, acc_headroom=5,
                     queue_depth=2, act_words=64, wgt_words=65, meta_words=3, acc_words=4,
                     vparam_words=70, dram_channels=2, dram_banks=2, dram_bank_groups=2, dram_rows=9,
                     dram_row_bytes=32, dram_bus_bytes=4, t_rcd=5, t_rp=6, t_cl=7, t_ras=8, t_faw=9,
                     t_ccd_s=1, t_ccd_l=2, pim_mode="single", pim_lanes=4, pim_gbuf_bytes=64,
                     pim_res_regs=32)
    d = {"rows": 2, "cols": 3, "pe": "mixpe-w4a16", "wbits": 3, "group": 64, "scale_bits": 8,
         "acc_headroom": 5, "queue_depth": 2, "act_words": 64, "wgt_words": 65, "meta_words": 3,
         "acc_words": 4, "vparam_words": 70, "dram_channels": 2, "dram_banks": 2,
         "dram_bank_groups": 2, "dram_rows": 9, "dram_row_bytes": 32, "dram_bus_bytes": 4,
         "t_rcd": 5, "t_rp": 6, "t_cl": 7, "t_ras": 8, "t_faw": 9, "t_ccd_s": 1, "t_ccd_l": 2,
         "pim_mode": "single", "pim_row_buffers": 1, "pim_lanes": 4, "pim_gbuf_bytes": 64,
         "pim_res_regs": 32}
    assert cfg.to_dict() == d
    assert list(cfg.to_dict()) == list(d)  # declaration order
    assert json.loads(cfg.to_json()) == d
    assert cfg.to_json() == json.dumps(d, indent=2, sort_keys=True)
    assert cfg.to_toml() == ('rows = 2\ncols = 3\npe = "mixpe-w4a16"\nwbits = 3\ngroup = 64\n'
                             'scale_bits = 8\nacc_headroom = 5\nqueue_depth = 2\nact_words = 64\n'
                             'wgt_words = 65\nmeta_words = 3\nacc_words = 4\nvparam_words = 70\n'
                             'dram_channels = 2\ndram_banks = 2\ndram_bank_groups = 2\ndram_rows = 9\n'
                             'dram_row_bytes = 32\ndram_bus_bytes = 4\nt_rcd = 5\nt_rp = 6\nt_cl = 7\n'
                             't_ras = 8\nt_faw = 9\nt_ccd_s = 1\nt_ccd_l = 2\npim_mode = "single"\n'
                             'pim_row_buffers = 1\npim_lanes = 4\npim_gbuf_bytes = 64\npim_res_regs = 32\n')


def test_old_documents_without_tile_fields_take_defaults():
    # a configuration written before the tile fields existed still loads
    old = '{"acc_headroom": 12, "cols": 4, "group": 32, "pe": "mixpe-w4a8", "rows": 4, "scale_bits": 16, "wbits": 4}'
    assert TileConfig.from_json(old) == TileConfig()


def test_partial_documents_take_defaults():
    assert TileConfig.from_json("{}") == TileConfig()
    assert TileConfig.from_toml("") == TileConfig()
    assert TileConfig.from_json('{"cols": 7}') == TileConfig(cols=7)
    assert TileConfig.from_toml('pe = "baseline-w4a8"\n') == TileConfig(pe="baseline-w4a8")


def test_unknown_keys():
    msg = f"unknown configuration field(s) bogus, zeta; known fields are {FIELDS}"
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig.from_dict({"zeta": 1, "rows": 2, "bogus": 3})
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig.from_json('{"zeta": 1, "bogus": 3}')
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig.from_toml("zeta = 1\nbogus = 3\n")
    # a TOML table is an unknown key too (the file is flat)
    with pytest.raises(ConfigError, match=exact(f"unknown configuration field(s) tile; known fields are {FIELDS}")):
        TileConfig.from_toml("[tile]\nrows = 2\n")


@pytest.mark.parametrize("text, kind", [("[1, 2]", "list"), ("null", "NoneType"), ('"tiny"', "str"),
                                        ("4", "int")])
def test_json_that_is_not_a_table(text, kind):
    with pytest.raises(ConfigError, match=exact(f"a tile configuration must be a table of fields, not {kind}")):
        TileConfig.from_json(text)


def test_from_dict_rejects_non_dicts():
    with pytest.raises(ConfigError, match=exact("a tile configuration must be a table of fields, not tuple")):
        TileConfig.from_dict((("rows", 4),))


@pytest.mark.parametrize("text", ["{", '{"rows": 4,}', "", "rows = 4", "{'rows': 4}"])
def test_bad_json(text):
    with pytest.raises(ConfigError, match=r"^configuration is not valid JSON: .+"):
        TileConfig.from_json(text)


@pytest.mark.parametrize("text", ["rows = ", "rows = 4\nrows = 5\n", '{"rows": 4}', "pe = mixpe"])
def test_bad_toml(text):
    with pytest.raises(ConfigError, match=r"^configuration is not valid TOML: .+"):
        TileConfig.from_toml(text)


def test_wrong_types_in_documents_are_named():
    with pytest.raises(ConfigError, match=exact("rows must be an integer in 1..256, not '4'")):
        TileConfig.from_json('{"rows": "4"}')
    with pytest.raises(ConfigError, match=exact("cols must be an integer in 1..256, not 4.0")):
        TileConfig.from_toml("cols = 4.0\n")
    with pytest.raises(ConfigError, match=exact("wbits must be an integer in 2..4, not True")):
        TileConfig.from_json('{"wbits": true}')
    with pytest.raises(ConfigError, match=exact("scale_bits must be an integer in 4..16, not [16]")):
        TileConfig.from_toml("scale_bits = [16]\n")


# -- tile fields: powers of two, cross-field rules, derived sizes ------------------------------

@pytest.mark.parametrize("name, lo, hi", [("dram_channels", 1, 64), ("dram_banks", 1, 64),
                                          ("dram_bank_groups", 1, 64),
                                          ("dram_row_bytes", 16, 65536), ("dram_bus_bytes", 1, 256),
                                          ("pim_lanes", 1, 64), ("pim_gbuf_bytes", 16, 4096)])
@pytest.mark.parametrize("bad_kind", ["below", "above", "not_pow2", "bool", "float", "str"])
def test_power_of_two_fields(name, lo, hi, bad_kind):
    bad = {"below": lo // 2 if lo > 1 else 0, "above": hi * 2, "not_pow2": 3 * lo if lo > 1 else 3,
           "bool": True, "float": float(lo), "str": str(lo)}[bad_kind]
    with pytest.raises(ConfigError, match=exact(f"{name} must be a power of two in {lo}..{hi}, not {bad!r}")):
        TileConfig(**{name: bad})
    for v in (lo, hi):
        kw = {name: v}
        if name == "dram_bus_bytes":
            kw["dram_row_bytes"] = max(v, 16)
            kw["pim_lanes"] = 1
        if name == "pim_lanes":
            kw["dram_bus_bytes"] = v
        if name == "dram_bank_groups":
            kw["dram_banks"] = v
        if name == "dram_row_bytes" and v < 16:
            continue
        assert getattr(TileConfig(**kw), name) == v


def test_cross_field_rules():
    with pytest.raises(ConfigError, match=exact(
            "act_words (63) must hold at least one group (64 words): a GEMM streams whole groups")):
        TileConfig(group=64, act_words=63)
    with pytest.raises(ConfigError, match=exact(
            "wgt_words (31) must hold at least one group (32 words): a GEMM streams whole groups")):
        TileConfig(wgt_words=31)
    with pytest.raises(ConfigError, match=exact(
            "acc_words (7) must hold at least one output tile (rows = 8 words)")):
        TileConfig(rows=8, acc_words=7)
    with pytest.raises(ConfigError, match=exact(
            "vparam_words (75) must hold the GELU table (64 words), the token multipliers (rows = 4) "
            "and one VEC's column multipliers (cols = 8): at least 76")):
        TileConfig(cols=8, vparam_words=75)
    assert TileConfig(cols=8, vparam_words=76).vparam_words == 76
    with pytest.raises(ConfigError, match=exact("dram_bus_bytes (64) must not exceed dram_row_bytes (32)")):
        TileConfig(dram_row_bytes=32, dram_bus_bytes=64)
    with pytest.raises(ConfigError, match=exact(
            "DRAM size dram_channels * dram_banks * dram_rows * dram_row_bytes = 8589934592 must not "
            "exceed 2**32 bytes (the reach of dram_addr)")):
        TileConfig(dram_channels=2, dram_banks=64, dram_rows=1 << 22, dram_row_bytes=16)
    assert TileConfig(dram_channels=2, dram_banks=64, dram_rows=1 << 21,
                      dram_row_bytes=16).dram_bytes == 1 << 32
    with pytest.raises(ConfigError, match=exact("dram_bank_groups (8) must not exceed dram_banks (4)")):
        TileConfig(dram_bank_groups=8)
    with pytest.raises(ConfigError, match=exact("t_ccd_s (3) must not exceed t_ccd_l (2)")):
        TileConfig(t_ccd_s=3, t_ccd_l=2)
    with pytest.raises(ConfigError, match=exact(
            "pim_lanes (16) must not exceed dram_bus_bytes (8): a MAC step reads one bus word of the row")):
        TileConfig(dram_bus_bytes=8, pim_lanes=16)
    with pytest.raises(ConfigError, match=exact("pim_mode must be one of dual, single, not 'both'")):
        TileConfig(pim_mode="both")
    with pytest.raises(ConfigError, match=exact(
            "pim_row_buffers (2) must be 1 in pim_mode 'single': PIM shares the banks' one row buffer")):
        TileConfig(pim_mode="single", pim_row_buffers=2)


def test_bitmod_tiles():
    from mixpim.models.bitmod_gemm import BitmodParams
    from mixpim.models.tile_array import array_params
    for pe, act in (("bitmod-w4a8", "int8"), ("bitmod-w4a16", "fp16")):
        for wbits in (3, 4):
            cfg = TileConfig(pe=pe, wbits=wbits, group=64, scale_bits=8, rows=16)  # 16 * 8 = 64 * 2
            assert (cfg.family, cfg.act_format, cfg.terms) == ("bitmod", act, 2)
            assert cfg.weight_types == BitmodParams(wbits=wbits).types
            p = array_params(cfg)
            assert isinstance(p, BitmodParams) and p.act_format == act and p.types == cfg.weight_types
            assert cfg.acc_bits == p.acc_bits and cfg.meta_entry_bytes == 3
    assert TileConfig().weight_types is None and TileConfig().terms == 1
    assert TileConfig(pe="bitmod-w4a16").acc_bits == 78  # FP16 x bitmod4, group 32, 16-bit scales
    with pytest.raises(ConfigError, match=exact(
            "wbits must be 3 or 4 on a bitmod-w4a8 tile (the BitMoD mixtures), not 2")):
        TileConfig(pe="bitmod-w4a8", wbits=2)
    with pytest.raises(ConfigError, match=exact(
            "group_offset must be false on a bitmod-w4a16 tile: BitMoD weights have no group offsets")):
        TileConfig(pe="bitmod-w4a16", group_offset=True)
    with pytest.raises(ConfigError, match=exact(
            "rows * scale_bits (5 * 16 = 80) must not exceed group * terms (32 * 2 = 64) on a "
            "bitmod-w4a16 tile: each column's bit-serial dequantizer spends scale_bits cycles on "
            "each row of a group")):
        TileConfig(pe="bitmod-w4a16", rows=5)
    assert TileConfig(pe="bitmod-w4a16", rows=8, scale_bits=8).rows == 8
    assert PRESETS["tiny"].replace(pe="bitmod-w4a16").terms == 2  # the RTL test tile


def test_defaults_accept_every_array():
    # naming only array fields always gives a valid tile (the RTL array generators rely on it)
    for group in GROUP_SIZES:
        assert TileConfig(rows=group, cols=256, group=group).vparam_words == 1024


def test_word_sizes():
    cfg = TileConfig(rows=5, cols=7)  # acc_bits 45
    assert (cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes) == (5, 4, 21)
    assert (cfg.acc_bits, cfg.acc_elem_bytes, cfg.acc_word_bytes, cfg.vparam_word_bytes) == (45, 6, 42, 4)
    fp = TileConfig(rows=5, cols=8, pe="baseline-w4a16", group=128)  # acc_bits 80
    assert (fp.act_word_bytes, fp.wgt_word_bytes, fp.acc_bits, fp.acc_word_bytes) == (10, 4, 80, 80)
    assert [cfg.word_bytes(s) for s in ("ACT", "wgt", 2, 3, 4)] == [5, 4, 21, 42, 4]
    assert [cfg.spad_words(s) for s in range(5)] == [4096, 4096, 256, 512, 1024]
    assert (cfg.vparam_token_base, cfg.vparam_param_base) == (64, 69)
    assert TileConfig().dram_bytes == 4 * 1024 * 1024
    with pytest.raises(ConfigError, match=exact(
            "scratchpad must be one of ACT, WGT, META, ACC, VPARAM (or 0..4), not 'PIM'")):
        cfg.word_bytes("PIM")


# -- load --------------------------------------------------------------------------------------

def test_load_files_and_presets(tmp_path):
    cfg = TileConfig(rows=8, cols=2, pe="baseline-w4a16", wbits=2, group=128, scale_bits=12, acc_headroom=3)
    (tmp_path / "c.json").write_text(cfg.to_json(), encoding="utf-8")
    (tmp_path / "c.toml").write_text(cfg.to_toml(), encoding="utf-8")
    (tmp_path / "c.cfg").write_text(cfg.to_json(), encoding="utf-8")  # anything not .toml is JSON
    assert TileConfig.load(tmp_path / "c.json") == cfg
    assert TileConfig.load(str(tmp_path / "c.toml")) == cfg
    assert TileConfig.load(tmp_path / "c.cfg") == cfg
    assert TileConfig.load("tiny") is PRESETS["tiny"]
    assert TileConfig.load("fpga") is PRESETS["fpga"]


PRESET_HINT = "(presets are tiny, fpga, llm, npu128, neupims)"


def test_load_errors(tmp_path):
    missing = tmp_path / "missing.json"
    msg = f"cannot read configuration {str(missing)!r}: No such file or directory {PRESET_HINT}"
    with pytest.raises(ConfigError, match=exact(msg)):
        TileConfig.load(missing)
    with pytest.raises(ConfigError, match=exact(f"cannot read configuration {str(tmp_path)!r}: Is a directory {PRESET_HINT}")):
        TileConfig.load(tmp_path)
    # a preset name that is not a preset is a missing file
    with pytest.raises(ConfigError, match=exact(f"cannot read configuration 'huge': No such file or directory {PRESET_HINT}")):
        TileConfig.load("huge")
    (tmp_path / "bad.toml").write_text(TileConfig().to_json(), encoding="utf-8")
    with pytest.raises(ConfigError, match="^configuration is not valid TOML: "):
        TileConfig.load(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text(TileConfig().to_toml(), encoding="utf-8")
    with pytest.raises(ConfigError, match="^configuration is not valid JSON: "):
        TileConfig.load(tmp_path / "bad.json")
    (tmp_path / "range.toml").write_text("rows = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=exact("rows must be an integer in 1..256, not 0")):
        TileConfig.load(tmp_path / "range.toml")
