"""The block-RAM-shaped multi-port scratchpad memory against a plain reference memory."""

import random

import pytest
from amaranth.hdl import unsigned

from mixpim.hw.spad_memory import SpadMemory
from helpers import rejects, run

WIDTH = 12


def reference_cycle(mem, reads, writes, granules):
    """One cycle of a plain synchronous memory: the words read (before this cycle's writes), then
    the writes in port order."""
    out = [[mem[(a + i) % len(mem)] for i in range(n)] for a, n in reads]
    gw = WIDTH // granules
    for addr, words, ens in writes:
        for i, (word, en) in enumerate(zip(words, ens)):
            for g in range(granules):
                if en >> g & 1:
                    mask = ((1 << gw) - 1) << (g * gw)
                    a = addr + i
                    mem[a] = (mem[a] & ~mask) | (word & mask)
    return out


@pytest.mark.parametrize("banks, granules, writer_lanes, reader_lanes", [
    (4, 3, (3, 1), (4, 1, 2)),   # banked multi-lane ports, granular writes, two writers
    (1, 1, (1,), (1, 1)),        # one writer: copies only
    (2, 1, (2, 1, 1), (2,)),     # three writers, one reader
])
def test_matches_a_plain_memory(banks, granules, writer_lanes, reader_lanes):
    depth = 37   # not a multiple of the banks
    mem = SpadMemory(unsigned(WIDTH), depth, banks=banks, granules=granules, name="t")
    wports = [mem.write_port(n) for n in writer_lanes]
    rports = [mem.read_port(n) for n in reader_lanes]
    rng = random.Random(banks * 100 + granules)
    ref = [0] * depth
    mismatches = []

    async def bench(ctx):
        held = [[0] * p.lanes for p in rports]
        for cycle in range(400):
            # writes to distinct granules (the tile never writes one granule twice in a
            # cycle); two writers may write other granules of one word
            used, writes = set(), []
            for p in wports:
                addr = rng.randrange(depth - p.lanes + 1)
                words = [rng.randrange(1 << WIDTH) for _ in range(p.lanes)]
                ens = [rng.randrange(1 << granules) if rng.random() < 0.7 else 0
                       for _ in range(p.lanes)]
                ens = [e & ~sum(1 << g for g in range(granules) if (addr + i, g) in used)
                       for i, e in enumerate(ens)]
                used |= {(addr + i, g) for i, e in enumerate(ens) for g in range(granules)
                         if e >> g & 1}
                writes.append((addr, words, ens))
                ctx.set(p.addr, addr)
                ctx.set(p.en, sum(e << (i * granules) for i, e in enumerate(ens)))
                ctx.set(p.data, words)
            reads = []
            for p in rports:
                addr = rng.randrange(depth - p.lanes + 1)
                en = rng.random() < 0.8
                reads.append((addr, p.lanes) if en else None)
                ctx.set(p.addr, addr)
                ctx.set(p.en, en)
            got = reference_cycle(ref, [r for r in reads if r is not None],
                                  writes, granules)
            await ctx.tick()
            k = 0
            for r, p in enumerate(rports):
                if reads[r] is not None:
                    held[r] = got[k]
                    k += 1
                value = [int(v) for v in ctx.get(p.data)]
                if value != held[r]:
                    mismatches.append((cycle, r, value, held[r]))

    run(mem, bench)
    assert not mismatches, mismatches[:5]


def test_constructor_validation():
    rejects(ValueError, "depth must be a positive integer, not 0",
            lambda: SpadMemory(unsigned(8), 0))
    rejects(ValueError, "banks must be a power of two, not 3",
            lambda: SpadMemory(unsigned(8), 4, banks=3))
    rejects(ValueError, "granules must divide the word's 8 bits, not 3",
            lambda: SpadMemory(unsigned(8), 4, granules=3))
    mem = SpadMemory(unsigned(8), 4, banks=2, name="x")
    rejects(ValueError, "a port of x has 1..2 lanes, not 3", lambda: mem.write_port(3))
    rejects(ValueError, "a port of x has 1..2 lanes, not 0", lambda: mem.read_port(0))
    mem._MustUse__silence = True
