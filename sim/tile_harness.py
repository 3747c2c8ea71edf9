"""The tile behind one register stage on every input: the top level of the tile's co-simulation.

Verilator evaluates everything that depends combinationally on a top-level input on every
``eval()`` call (its "input combinational" region), whatever changed: for the tile, whose host
port and reset reach every memory port and register, that was a third of the run time, paid twice
per cycle. Behind registers the tile's inputs are internal signals, evaluated only when they
change. The tile sees every input one cycle after the driver set it (both drivers,
``tb/tile_tb.py`` and ``tb/tile_main.cpp``, account for it); only the wrapper's ports are public
to VPI, so that Verilator can treat its registers as internal.

The harness is a few lines of Verilog around the tile's own module (Amaranth's Verilog of the
tile, unchanged): the tile's Verilog, minutes to generate for a large array, is the cocotb
build's.
"""

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from ..hw.tile_system import TileSystem

__all__ = ["harness_top", "harness_verilog"]


def harness_top(name):
    """Module name of the harness of the tile module ``name``."""
    return f"{name}_harness"


def harness_verilog(tile, name):
    """Verilog of module :func:`harness_top` (``name``): the tile module ``name`` (Amaranth's
    Verilog of ``tile``, a :class:`~mixpim.hw.tile_system.TileSystem`) with registered inputs
    (simulation only).

    Ports: the tile's, with the same names and widths, and ``clk``, ``rst``. Every input, ``rst``
    included, reaches the tile one cycle later (registered, 1 cycle); outputs are the tile's
    (0 cycles). The registers start at the tile's idle inputs: ``rst`` 1, everything else 0.

    Raises:
        TypeError: ``tile`` is not a :class:`~mixpim.hw.tile_system.TileSystem`.
    """
    if not isinstance(tile, TileSystem):
        raise TypeError(f"tile must be a TileSystem, not {type(tile).__name__}")
    ports = [(p, m.flow == In, Shape.cast(m.shape).width) for p, m in tile.signature.members.items()]
    names = ", ".join(["clk", "rst"] + [p for p, _, _ in ports])
    # The ports, and only they, are visible to cocotb (VPI): a public register would make
    # Verilator re-evaluate everything behind it at every eval().
    rw, rd = "/*verilator public_flat_rw*/", "/*verilator public_flat_rd*/"
    decl = [f"  input clk {rw};", f"  input rst {rw};"]
    regs, moves = ["  reg rst_q = 1'd1;"], ["    rst_q <= rst;"]
    conns = [".clk(clk)", ".rst(rst_q)"]
    for p, is_in, width in ports:
        bits = f"[{width - 1}:0] " if width > 1 else ""
        decl.append(f"  {'input' if is_in else 'output'} {bits}{p} {rw if is_in else rd};")
        if is_in:
            regs.append(f"  reg {bits}{p}_q = {width}'d0;")
            moves.append(f"    {p}_q <= {p};")
            conns.append(f".{p}({p}_q)")
        else:
            conns.append(f".{p}({p})")
    return "\n".join([f"module {harness_top(name)}({names});", *decl, *regs,
                      "  always @(posedge clk) begin", *moves, "  end",
                      f"  {name} tile ({', '.join(conns)});", "endmodule", ""])
