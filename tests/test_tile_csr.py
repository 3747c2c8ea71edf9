"""TileTop through its Wishbone register bus only (Amaranth simulator): load a program and
scratchpads through the memory window, start, poll, and compare the status registers and the
scratchpads read back with the golden model (the DRAM model behind the memory port)."""

import numpy as np
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import mixpim.hw.tile_csr as tile_csr
from mixpim.hw import wishbone
from mixpim.hw.dram import DramModel
from mixpim.hw.mem_bus import MemBusSignature
from mixpim.hw.tile import Tile
from mixpim.hw.tile_csr import TileCsr, TileTop
from mixpim.models.config import preset
from mixpim.models.executor import pack_act, pack_meta, pack_wgt, run as golden_run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, Unit, UnitMask
from mixpim.models.program import Segment
from mixpim.models.regmap import Window, regmap, window_bits
from helpers import rejects, run

CFG = preset("tiny")
IMEM = 16
RM = regmap(CFG, IMEM)


# -- a Wishbone initiator -------------------------------------------------------------------------

async def wb_access(ctx, bus, offset, data=None, sel=0xF):
    """One classic cycle at byte ``offset``: a write of ``data``, or a read (returns ``dat_r``)."""
    ctx.set(bus.cyc, 1)
    ctx.set(bus.stb, 1)
    ctx.set(bus.we, data is not None)
    ctx.set(bus.adr, offset // 4)
    ctx.set(bus.sel, sel)
    ctx.set(bus.dat_w, data or 0)
    for _ in range(4):
        await ctx.tick()
        if ctx.get(bus.ack):
            break
    else:
        raise AssertionError(f"no ack at offset {offset:#x}")
    value = ctx.get(bus.dat_r)
    ctx.set(bus.cyc, 0)
    ctx.set(bus.stb, 0)
    await ctx.tick()
    assert not ctx.get(bus.ack)
    return value


class Driver:
    """What a C driver does, by register name."""

    def __init__(self, ctx, bus, rm=RM):
        self.ctx, self.bus, self.rm = ctx, bus, rm

    async def read(self, name):
        return await wb_access(self.ctx, self.bus, self.rm[name].offset)

    async def write(self, name, value, sel=0xF):
        await wb_access(self.ctx, self.bus, self.rm[name].offset, value, sel)

    async def field(self, reg, name):
        f = self.rm[reg].field(name)
        return (await self.read(reg)) >> f.lsb & ((1 << f.width) - 1)

    async def cmd(self, *names):
        await self.write("WIN_CMD", sum(1 << self.rm["WIN_CMD"].field(n).lsb for n in names))

    async def store_words(self, window, base, words):
        await self.write("WIN_SEL", window)
        await self.write("WIN_ADDR", base)
        n = self.rm["WIN_DATA_WORDS"].value
        for word in words:
            for i in range(n):
                await self.write(f"WIN_DATA{i}", word >> 32 * i & 0xFFFFFFFF)
            await self.cmd("write", "step")

    async def load_words(self, window, base, count):
        await self.write("WIN_SEL", window)
        await self.write("WIN_ADDR", base)
        out = []
        for _ in range(count):
            await self.cmd("read", "step")
            n = self.rm["WIN_DATA_WORDS"].value
            out.append(sum([await self.read(f"WIN_DATA{i}") << 32 * i for i in range(n)]))
        return out


def _word(window, row):
    """A golden scratchpad row as the window's integer word (ACC: acc_bits fields, LSB first)."""
    if window == Window.ACC:
        bits = CFG.acc_bits
        return sum((int(v) & (1 << bits) - 1) << j * bits for j, v in enumerate(row))
    return int.from_bytes(np.asarray(row, np.uint8).tobytes(), "little")


def _program():
    rng = np.random.default_rng(12)
    k = CFG.group
    act = rng.integers(-128, 128, size=(k, CFG.rows))
    wgt = rng.integers(0, 16, size=(k, CFG.cols))
    zeros = rng.integers(0, 16, size=(1, CFG.cols))
    scales = rng.integers(1, 1 << 16, size=(1, CFG.cols))
    segments = [Segment("ACT", 0, pack_act(CFG, act), CFG.act_word_bytes),
                Segment("WGT", 0, pack_wgt(CFG, wgt), CFG.wgt_word_bytes),
                Segment("META", 0, pack_meta(CFG, zeros, scales), CFG.meta_word_bytes)]
    insts = [Instruction(Opcode.GEMM, groups=1, acc_addr=0, signal=UnitMask.DMA),
             Instruction(Opcode.STORE, spad=Spad.ACC, spad_addr=0, dram_addr=2 * CFG.acc_word_bytes, words=CFG.rows,
                         rows=1, stride=0, wait=UnitMask.GEMM),
             Instruction(Opcode.LOAD, spad=Spad.ACC, spad_addr=8, dram_addr=2 * CFG.acc_word_bytes, words=CFG.rows,
                         rows=1, stride=0),
             Instruction(Opcode.HALT)]
    return insts, segments


class _TopWithDram(Elaboratable):
    """TileTop with the DRAM model on its memory port (fresh from reset: one run needs no reset
    of the model at its start, the model's times are relative)."""

    def __init__(self):
        self.top, self.dram = TileTop(CFG, IMEM), DramModel(CFG)

    def elaborate(self, platform):
        m = Module()
        m.submodules.top, m.submodules.dram = self.top, self.dram
        wiring.connect(m, self.top.bus, self.dram.bus)
        return m


def test_program_through_the_bus():
    insts, segments = _program()
    golden = golden_run(CFG, insts, segments)
    assert golden.status.error == ErrorCode.OK
    system = _TopWithDram()
    dut = system.top
    seen = {}

    async def testbench(ctx):
        d = Driver(ctx, dut.csr)
        assert await d.read("MAGIC") == RM["MAGIC"].value
        assert await d.field("STATE", "done") == 0
        await d.store_words(Window.IMEM, 0, [i.encode() for i in insts])
        for seg in segments:
            w = Window[seg.target]
            rows = np.frombuffer(seg.data, np.uint8).reshape(-1, seg.word_bytes)
            await d.store_words(w, seg.base, [_word(w, r) for r in rows])
        assert await d.read("WIN_ADDR") == seg.base + len(rows)   # step after each write
        await d.write("LENGTH", len(insts))
        await d.write("CTRL", 1)
        polls = 0
        while not await d.field("STATE", "done"):
            polls += 1
            assert polls < 2000, "the tile never finished"
        seen["status"] = {name: await d.read(name) for name in
                          ("CYCLES", "DISPATCHED", "ERROR", "ERROR_PC", "STATE")}
        seen["busy"] = [await d.read(f"BUSY_{u.name}") for u in Unit]
        seen["acc"] = await d.load_words(Window.ACC, 0, 12)
        seen["act"] = await d.load_words(Window.ACT, 30, 3)
        seen["imem"] = await d.load_words(Window.IMEM, 0, len(insts))
        # writes to LENGTH and the window are held while running
        await d.write("CTRL", 1)
        assert await d.field("STATE", "running") == 1
        await d.write("LENGTH", 3)
        assert await d.read("LENGTH") == len(insts)

    run(system, testbench)
    st = golden.status
    state = RM["STATE"]
    assert seen["status"] == {"CYCLES": st.cycles, "DISPATCHED": st.dispatched, "ERROR": st.error,
                              "ERROR_PC": st.error_pc,
                              "STATE": 1 << state.field("done").lsb
                              | int(st.nonfinite) << state.field("nonfinite").lsb}
    assert seen["busy"] == list(st.busy)
    assert seen["acc"] == [_word(Window.ACC, r) for r in golden.spads["ACC"][:12]]
    assert any(seen["acc"][:4]) and seen["acc"][8:12] == seen["acc"][:4]   # the STORE/LOAD round trip
    assert seen["act"] == [_word(Window.ACT, r) for r in golden.spads["ACT"][30:33]]
    assert seen["imem"] == [i.encode() for i in insts]


def test_byte_select_unmapped_and_bad_window():
    dut = TileTop(CFG, IMEM)

    async def testbench(ctx):
        d = Driver(ctx, dut.csr)
        await d.write("WIN_ADDR", 0x11223344)
        await d.write("WIN_ADDR", 0xAABBCCDD, sel=0b0101)
        assert await d.read("WIN_ADDR") == 0x11BB33DD
        assert await wb_access(ctx, dut.csr, RM.size - 4) == 0        # unmapped
        await wb_access(ctx, dut.csr, RM.size - 4, 0xFFFFFFFF)
        assert await d.read("CTRL") == 0                               # W1P reads 0
        await d.write("MAGIC", 0)                                      # RO ignores writes
        assert await d.read("MAGIC") == RM["MAGIC"].value
        await d.write("WIN_DATA0", 0x5A)
        await d.write("WIN_SEL", 7)                                    # no such window
        await d.write("WIN_ADDR", 0)
        await d.cmd("read")
        assert await d.read("WIN_DATA0") == 0x5A                       # unchanged
        await d.write("WIN_SEL", 0xFF)
        assert await d.read("WIN_SEL") == (1 << RM["WIN_SEL"].field("window").width) - 1

    run(dut, testbench)


def test_id_block_reads_the_table():
    dut = TileTop(CFG, IMEM)
    seen = {}

    async def testbench(ctx):
        d = Driver(ctx, dut.csr)
        for r in RM.registers:
            if r.value is not None:
                seen[r.name] = await d.read(r.name)

    run(dut, testbench)
    assert seen == {r.name: r.value for r in RM.registers if r.value is not None}
    assert seen["WIN_ACC_BITS"] == CFG.cols * CFG.acc_bits == window_bits(CFG, Window.ACC)
    assert seen["WIN_IMEM_DEPTH"] == IMEM


class _WiderTile(Tile):
    """The tile with two more ports the bridge does not know."""

    def _members(self, config):
        return {**super()._members(config), "aux": Out(wishbone.Signature(addr_width=10)),
                "probe": In(4).array(2)}

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += [self.aux.adr.eq(self.probe[1] * 3), self.aux.cyc.eq(self.aux.ack)]
        return m


def test_top_forwards_unknown_ports(monkeypatch):
    plain = TileTop(CFG, IMEM)
    plain._MustUse__silence = True   # only its signature is looked at
    assert plain.forwarded == ("bus", "pim")
    monkeypatch.setattr(tile_csr, "Tile", _WiderTile)
    dut = TileTop(CFG, IMEM)
    assert dut.forwarded == ("bus", "pim", "aux", "probe")
    assert dut.signature.members["bus"] == Out(MemBusSignature(CFG))
    assert dut.signature.members["aux"] == Out(wishbone.Signature(addr_width=10))

    async def testbench(ctx):
        ctx.set(dut.probe[1], 5)
        ctx.set(dut.aux.ack, 1)
        await ctx.delay(1e-9)
        assert ctx.get(dut.aux.adr) == 15 and ctx.get(dut.aux.cyc) == 1

    run(dut, testbench, clock=False)


def test_bad_arguments():
    rejects(TypeError, "config must be a TileConfig, not 'tiny'", lambda: TileCsr("tiny"))
    rejects(ValueError, "imem_words must be an integer in 1..65536, not 0", lambda: TileTop(CFG, 0))
    rejects(ValueError, "addr_width must be in 0..64, not 65",
            lambda: wishbone.Signature(addr_width=65))
    rejects(ValueError, "data_width must be a power of two in 8..2048, not 24",
            lambda: wishbone.Signature(addr_width=4, data_width=24))
    rejects(ValueError, "granularity must be one of 8, 16, 32, 64 and at most data_width (16), not 32",
            lambda: wishbone.Signature(addr_width=4, data_width=16, granularity=32))
    rejects(TypeError, "addr_width must be an integer, not True", lambda: wishbone.Signature(addr_width=True))


def test_bridge_signature_follows_the_table():
    csr = TileCsr(CFG, IMEM)
    members = csr.signature.members
    assert members["bus"] == In(wishbone.Signature(addr_width=RM.addr_bits))
    tile = Tile(CFG, IMEM)
    tile._MustUse__silence = True
    for name, (access, width, elements) in RM.ports().items():
        assert members[name].flow == tile.signature.members[name].flow.flip(), name
    assert members["host_wdata"].shape == 32 * RM["WIN_DATA_WORDS"].value
    csr._MustUse__silence = True


def test_bridge_synthesizes_to_its_registers():
    """The bridge alone through Yosys: its flip-flops are exactly the RW registers' field bits,
    ``ack``, ``dat_r``, the ``start`` pulse and the pending fetch."""
    from mixpim.models.regmap import Access
    from mixpim.sim.synth import synthesize
    report = synthesize(TileCsr(CFG, IMEM), "tile_csr", target="generic")
    stored = sum(f.width for r in RM.registers if r.access == Access.RW for f in r.fields)
    pulses = sum(1 for r in RM.registers if r.access == Access.W1P for f in r.fields if f.port)
    assert report.ffs == stored + 1 + 32 + pulses + 1
    assert report.mul_cells == 0
