"""The PIM unit in RTL on FP16 tiles (hw/pim_unit.py converting the FP16 ACT lanes of a PIM_GBUF to
INT8 with hw/vec_fixed.py's ``fp16_to_int8``; hw/pim_gbuf.py), in the Amaranth simulator against
the golden model, as tests/test_pim_rtl.py does for INT8 tiles (its harness: the unit alone on the
DRAM model with an ACT and an ACC memory).

* Random legal PIM instruction sequences on the FP16 variants of test_pim_rtl's configurations
  (dual, single, odd, one-bank), with ACT words of FP16 lanes that are a mix of integers in
  -128..127 (what the vector unit writes for PIM), the conversion's edge cases (halves, values
  beyond +-127, subnormals, inf/NaN) and random bit patterns: busy cycles equal ``pim_cycles``;
  DRAM, ACC words, result registers and PIM row buffers equal the golden model's.
* The same sequence on the FP16 tile and on its INT8 twin holding the converted values: the same
  busy cycles, DRAM, result registers and open rows (an FP16 tile's PIM is an INT8 tile's after
  the conversion).
"""

import random

import numpy as np
import pytest

from mixpim.hw.pim_gbuf import gbuf_access_bytes
from mixpim.models.isa import Opcode
from mixpim.models.pim import act_lanes
from mixpim.models.vector import int8_to_fp16_bits
from helpers import pim_gbuf as gbuf
from test_pim import FP16_EDGES
from test_pim_rtl import CONFIGS, compare_unit, random_sequence, rtl_run

#: The FP16 twin of each configuration of test_pim_rtl (``*-w4a8`` -> ``*-w4a16``).
FP16_CONFIGS = {name: cfg.replace(pe=cfg.pe.replace("a8", "a16")) for name, cfg in CONFIGS.items()}


def fp16_act(cfg, rng):
    """ACT words (act_words, 2 * rows) uint8 of FP16 lanes: per word, integers in -128..127, edge
    cases of the conversion, or random bit patterns (a third each)."""
    edges = np.array([b for b, _ in FP16_EDGES], np.uint16)
    lanes = np.empty((cfg.act_words, cfg.rows), np.uint16)
    for w in range(cfg.act_words):
        kind = w % 3
        if kind == 0:
            lanes[w] = int8_to_fp16_bits(rng.integers(-128, 128, cfg.rows))
        elif kind == 1:
            lanes[w] = rng.choice(edges, cfg.rows)
        else:
            lanes[w] = rng.integers(0, 1 << 16, cfg.rows)
    return lanes.astype("<u2").view(np.uint8).reshape(cfg.act_words, 2 * cfg.rows)


def check_fp16_unit(cfg, insts, seed):
    """``insts`` on the RTL unit of FP16 ``cfg`` against the golden model (as test_pim_rtl's
    ``check_unit``, with FP16 ACT data); returns the RTL's final state and the ACT words."""
    assert cfg.act_format == "fp16"
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    dram_image = pyrng.randbytes(cfg.dram_bytes)
    act = fp16_act(cfg, rng)
    gaps = [pyrng.choice((0, 0, 0, 1, 4, 20)) for _ in insts]
    got, golden, _ = compare_unit(cfg, insts, dram_image, act, gaps)
    return got, golden, act, dram_image, gaps


def test_fp16_configs():
    for name, cfg in FP16_CONFIGS.items():
        assert cfg.act_format == "fp16" and cfg.act_word_bytes == 2 * cfg.rows, name
        # the buffers take converted lanes, a byte each: the INT8 twin's access width
        assert gbuf_access_bytes(cfg) == gbuf_access_bytes(CONFIGS[name]), name


@pytest.mark.parametrize("name", sorted(FP16_CONFIGS))
def test_random_pim_sequences_on_fp16_tiles(name):
    cfg = FP16_CONFIGS[name]
    rng = random.Random(11)
    insts = random_sequence(cfg, rng, 40)
    ops = {i.op for i in insts}
    assert Opcode.PIM_GBUF in ops and Opcode.PIM_GEMV in ops
    # the PIM_GBUFs gather and pack (every lane position for packed words)
    got, golden, act, _, _ = check_fp16_unit(cfg, insts, 11)
    assert golden.spads["ACC"].any()
    assert {i.packed for i in insts if i.op == Opcode.PIM_GBUF} == {0, 1}


@pytest.mark.parametrize("name", ["dual", "odd"])
def test_fp16_tile_equals_its_int8_twin(name):
    # the same instructions, the FP16 tile's ACT converted for the INT8 twin: the same cycles and
    # the same DRAM, registers and open rows
    fp16, int8 = FP16_CONFIGS[name], CONFIGS[name]
    # first every channel's whole buffer, packed from its own ACT words: the GEMVs compute on
    # converted data wherever they read
    nch, nbytes = fp16.dram_channels, fp16.pim_gbuf_bytes
    words = -(-nbytes // fp16.rows)
    assert nch * words <= fp16.act_words
    fill = gbuf(ch=0, chans=nch, gaddr=0, act_addr=0, len=nbytes, packed=1, act_stride=words)
    insts = [fill] + random_sequence(fp16, random.Random(5), 30)
    got, _, act, dram_image, gaps = check_fp16_unit(fp16, insts, 5)
    lanes = act_lanes(fp16, act)                  # int8 (words, rows)
    ints = [int.from_bytes(w.tobytes(), "little") for w in lanes.view(np.uint8)]
    twin = rtl_run(int8, insts, dram_image, ints, gaps)
    for key in ("busy", "dram", "open_rows"):
        assert twin[key] == got[key], key
    assert (twin["res"] == got["res"]).all()
    assert got["res"].any()
