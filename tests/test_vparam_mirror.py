"""The VEC lanes' VPARAM mirror (hw/vparam_mirror.py) in the Amaranth simulator, against a model
of the registers it replaces: random multi-lane writes (any enables, addresses inside, across
and past the mirrored words, up to the top of the 16-bit address) and random lookups every cycle;
each lookup must return, in its own cycle, the word as the writes before that cycle left it."""

import random

import pytest

from mixpim.hw.dma import port_lanes
from mixpim.hw.vparam_mirror import VParamMirror
from mixpim.models.config import VPARAM_LUT_WORDS, TileConfig, preset
from mixpim.models.units import Spad
from helpers import run

TINY = preset("tiny")
CONFIGS = {
    "tiny": TINY,                                                  # 2 write lanes, 4 lookup lanes
    "fpga8-p4": TileConfig.load("bench/fpga8_p4.toml"),            # 4 write lanes, 2 lookup lanes
    "rows6-p2": TINY.replace(rows=6, cols=3, vec_passes=2),        # 3 lookup lanes, 6 tokens
    "bus4": TINY.replace(dram_bus_bytes=4, pim_lanes=4),           # 1 write lane: no banks
    "bus64": TINY.replace(dram_bus_bytes=64, dram_row_bytes=256),  # 16 banks: empty token banks
}


@pytest.mark.parametrize("name", CONFIGS)
def test_lookups_see_the_writes_of_earlier_cycles(name):
    cfg = CONFIGS[name]
    rng = random.Random(name)
    dut = VParamMirror(cfg)
    lanes, nl = port_lanes(cfg, Spad.VPARAM), cfg.vec_lanes
    words = VPARAM_LUT_WORDS + cfg.rows
    model = [0] * words
    checked = {"lut": 0, "tparam": 0}

    async def bench(ctx):
        for cycle in range(600):
            # lookups of the words as the writes of earlier cycles left them
            luts = [rng.randrange(256) for _ in range(nl)]
            toks = [rng.randrange(cfg.rows) for _ in range(nl)]
            for i in range(nl):
                ctx.set(dut.lookup.lut_addr[i], luts[i])
                ctx.set(dut.lookup.tparam_addr[i], toks[i])
            # this cycle's writes (visible from the next)
            pick = rng.random()
            if pick < 0.1:
                addr = rng.randrange((1 << 16) - lanes, 1 << 16)   # no wrap-around to word 0
            elif pick < 0.3:
                addr = rng.randrange(words, words + 2 * lanes + 4)
            else:
                addr = rng.randrange(words)
            en = rng.getrandbits(lanes) if rng.random() < 0.7 else 0
            values = [rng.getrandbits(32) for _ in range(lanes)]
            ctx.set(dut.w.addr, addr)
            ctx.set(dut.w.en, en)
            ctx.set(dut.w.data.as_value(), sum(v << (32 * i) for i, v in enumerate(values)))
            for i in range(nl):
                e, t = luts[i], toks[i]
                want = (model[e // 4] >> (8 * (e % 4))) & 0xFF
                got = ctx.get(dut.lookup.lut_data[i]) & 0xFF
                assert got == want, f"cycle {cycle} lane {i}: entry {e} {got:#x} != {want:#x}"
                checked["lut"] += want != 0
                got = ctx.get(dut.lookup.tparam_data[i].as_value())
                want = model[VPARAM_LUT_WORDS + t]
                assert got == want, f"cycle {cycle} lane {i}: token {t} {got:#x} != {want:#x}"
                checked["tparam"] += want != 0
            await ctx.tick()
            for i in range(lanes):
                if en >> i & 1 and addr + i < words:
                    model[addr + i] = values[i]

    run(dut, bench)
    assert checked["lut"] > 100 and checked["tparam"] > 100   # the lookups saw written words
