"""Resources of every module of the whole tile, from one unflattened ECP5 mapping.

    .venv/bin/python bench/bench_synth_modules.py CONFIG WORKDIR

``CONFIG`` is a preset or a .json/.toml file. Writes ``TileTop(config, 1024)``'s Verilog into
``WORKDIR`` and runs only the unflattened mapping of ``mixpim synth tile --by-module``
(``synth_ecp5 -noflatten``, classic ABC): 8 to 15 minutes for an 8x8 tile, where the flat and
unflattened mappings together take over 30. Prints each module (with its submodules) down to
three levels and writes them all to ``WORKDIR/bymod.json``; ``WORKDIR/modules.json`` is Yosys's
``stat -json`` (CCU2C and LUT-RAM cell counts per module are there).
"""

import json
import subprocess
import sys
from pathlib import Path

from mixpim.hw.tile_csr import TileTop
from mixpim.models.config import TileConfig
from mixpim.sim.synth import modules_from_stat, to_verilog, vendor_synth, yosys_command

NAME = "tiletop"


def main(config, workdir):
    cfg, wd = TileConfig.load(config), Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / f"{NAME}.v").write_text(to_verilog(TileTop(cfg, 1024), NAME))
    lines = [f"read_verilog {NAME}.v", f"hierarchy -check -top {NAME}",
             *vendor_synth("ecp5", NAME, False, None, flatten=False),
             "tee -q -o modules.json stat -json"]
    (wd / "modules.ys").write_text("\n".join(lines) + "\n")
    subprocess.run([*yosys_command(), "-q", "-l", "yosys.log", "-s", "modules.ys"], cwd=wd,
                   check=True)
    modules = modules_from_stat("ecp5", wd / "modules.json", NAME)
    (wd / "bymod.json").write_text(json.dumps(modules, indent=1) + "\n")
    for path, res in modules.items():
        if path.count(".") <= 2:
            print(f"{path or '(top)':40s} {res}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
