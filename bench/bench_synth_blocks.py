"""Resources of the tile's blocks, each synthesized on its own (Yosys, ECP5 cells by default).

    .venv/bin/python bench/bench_synth_blocks.py [--config C] [--blocks dma,vector,...]
                                                 [--target ecp5|xilinx|generic] [--json]

A whole-tile mapping of an 8x8 tile takes Yosys most of an hour (``mixpim synth tile
--by-module``, which also reports every block but maps twice); one block takes a minute or
two, which is the loop fitting a tile into an FPGA needs. ``--config`` is a preset or a
.json/.toml file (``mixpim synth``'s). A block's figure is what it costs alone: Yosys cannot
optimise across its ports with constants the tile would drive, so it may be a little above the
block's share of a whole-tile run. LUT mapping uses classic ABC, as ``mixpim synth tile`` does.
"""

import argparse
import json
import sys

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from mixpim.hw.checker import DispatchChecker
from mixpim.hw.dma import DmaEngine
from mixpim.hw.gemm_unit import GemmUnit
from mixpim.hw.norm import NormUnit
from mixpim.hw.softmax import SoftmaxUnit
from mixpim.hw.tile import _unit_components
from mixpim.hw.tile_spads import connect_spad, spad_ports
from mixpim.hw.vector import ElementwiseUnit, VectorUnit
from mixpim.models.config import TileConfig
from mixpim.models.units import Spad
from mixpim.sim.synth import TARGETS, synthesize


class SpadBlock(wiring.Component):
    """Scratchpad ``spad`` of the tile alone: the ports its units have on it (no host port),
    each a port of this component (``w<k>``, ``w<k>_mask`` for a writer with a lane mask,
    ``r<k>``)."""

    def __init__(self, config, spad):
        self._cfg, self._spad = config, spad
        units = _unit_components(config, 17)   # for their ports' shapes only
        for unit in units.values():
            unit._MustUse__silence = True
        writers, readers = spad_ports(config, units)[spad]
        members = {}
        for k, (_, port, mask) in enumerate(writers):
            members[f"w{k}"] = In(port.signature)
            if mask is not None:
                members[f"w{k}_mask"] = In(len(mask))
        members.update({f"r{k}": In(port.signature) for k, port in enumerate(readers)})
        self._masks = [mask is not None for _, _, mask in writers]
        self._readers = len(readers)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        writers = [(None, getattr(self, f"w{k}"), getattr(self, f"w{k}_mask") if masked else None)
                   for k, masked in enumerate(self._masks)]
        readers = [getattr(self, f"r{k}") for k in range(self._readers)]
        connect_spad(m, self._cfg, self._spad, writers, readers)
        return m


#: name -> the block's component for a configuration
BLOCKS = {"dma": DmaEngine, "vector": VectorUnit, "vec": ElementwiseUnit, "norm": NormUnit,
          "soft": SoftmaxUnit, "checker": DispatchChecker, "gemm": GemmUnit,
          **{f"spad_{s.name.lower()}": (lambda cfg, s=s: SpadBlock(cfg, s)) for s in Spad}}
FIELDS = ("luts", "ffs", "dsp_cells", "brams", "lutram_cells", "seconds")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--blocks", default=",".join(BLOCKS))
    p.add_argument("--target", default="ecp5", choices=[t for t in TARGETS if t != "generic"] + ["generic"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cfg = TileConfig.load(args.config)
    names = args.blocks.split(",")
    unknown = [n for n in names if n not in BLOCKS]
    if unknown:
        p.error(f"unknown block(s) {', '.join(unknown)}; blocks are {', '.join(BLOCKS)}")
    rows = {}
    for name in names:
        r = synthesize(BLOCKS[name](cfg), f"{name}_block", target=args.target, abc9=False)
        rows[name] = {f: round(getattr(r, f), 1) for f in FIELDS}
        if not args.json:
            print(f"{name:8s} " + "  ".join(f"{f} {rows[name][f]}" for f in FIELDS), flush=True)
    if args.json:
        json.dump({"config": cfg.to_dict(), "target": args.target, "blocks": rows}, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
