"""Put the highest-fanout control and select nets of a Yosys ECP5 netlist on global networks.

nextpnr-ecp5 promotes clocks to the global networks and routes every other net through the
fabric; unlike Lattice Diamond it does not promote resets or other high-fanout nets. The tile
restarts every unit and queue at START (``begin`` in :class:`~mixpim.hw.tile.Tile`): that one
net drives the LSR (set/reset) pin of 8,738 flip-flops of the ``tiny`` tile and 25,786 of the
8x8 one. With that net in the fabric nextpnr's router slowed to a crawl whenever it ripped it
up, and the tile did not finish routing (docs/decisions.md, decision 15). The 8x8 tile has more
such nets: the scratchpad read enables (a clock enable of 1,390 flip-flops each) and the vector
unit's stage selects (LUT inputs of 2,000 to 3,000 cells), each a net whose every rip-up puts
thousands of arcs back in the router's queue. :func:`promote_nets` drives such nets through a
DCCA (the ECP5 global clock buffer, enable tied high); nextpnr routes a DCCA's output on one of
the globals 0-7, which reach the LSR, CE and LUT input pins of every logic tile (checked with
nextpnr-ecp5 on each pin kind). The logic is unchanged: the netlist gains one buffer per
promoted net, so the simulated and the routed design are the same.

``python -m mixpim.sim.ecp5_globals NETLIST.json`` rewrites a netlist in place (the ULX3S build
script of ``mixpim rtl tile`` runs it between Yosys and nextpnr).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GLOBAL_PINS", "MAX_NETS", "MIN_FANOUT", "PromotedNet", "promote_file", "promote_nets"]

#: A net goes global from this many of the pins below up.
MIN_FANOUT = 1000
#: At most this many nets are promoted: nextpnr gives fabric-driving globals 0-7, and the clock
#: (which also reaches block RAM clock pins) takes one of them.
MAX_NETS = 7
#: The pins a global drives, by cell type: set/reset, clock enable, LUT inputs. Other loads of
#: a promoted net (a flip-flop's data input, a carry or block RAM pin) stay on the fabric net.
GLOBAL_PINS = {"TRELLIS_FF": ("LSR", "CE"), "LUT4": ("A", "B", "C", "D")}


@dataclass(frozen=True)
class PromotedNet:
    """One net put on a global: its Yosys name and the pins (:data:`GLOBAL_PINS`) it drives
    through the global."""
    name: str
    fanout: int


def _top(netlist: dict) -> dict:
    tops = [m for m in netlist.get("modules", {}).values()
            if int(m.get("attributes", {}).get("top", 0) or 0)]
    if len(tops) != 1:
        raise ValueError(f"the netlist has {len(tops)} top modules, not 1")
    return tops[0]


def _global_pins(cell: dict):
    """``(pin, net)`` of ``cell``'s pins a global can drive, for pins driven by a net (not a
    constant)."""
    for pin in GLOBAL_PINS.get(cell["type"], ()):
        bit = cell["connections"].get(pin, ["0"])[0]
        if isinstance(bit, int):
            yield pin, bit


def promote_nets(netlist: dict, min_fanout: int = MIN_FANOUT,
                 max_nets: int = MAX_NETS) -> list[PromotedNet]:
    """Insert a DCCA in each of the (at most ``max_nets``) nets with ``min_fanout`` or more
    :data:`GLOBAL_PINS` loads in the Yosys JSON ``netlist`` (edited in place), largest first
    (ties in netlist order); the DCCA drives those pins, the net keeps its other loads. A net a
    DCCA already drives is left alone, and the DCCAs already there count against ``max_nets``.
    Returns the promoted nets."""
    if not isinstance(min_fanout, int) or min_fanout < 1:
        raise ValueError(f"min_fanout must be a positive integer, not {min_fanout!r}")
    if not isinstance(max_nets, int) or not 0 <= max_nets <= 8:
        raise ValueError(f"max_nets must be an integer in 0..8, not {max_nets!r}")
    top = _top(netlist)
    cells = top["cells"]
    buffered = {c["connections"]["CLKO"][0] for c in cells.values() if c["type"] == "DCCA"}
    fanout = Counter(bit for cell in cells.values() for _, bit in _global_pins(cell)
                     if bit not in buffered)
    names: dict[int, str] = {}
    for name, net in sorted(top["netnames"].items(), key=lambda kv: len(kv[0]), reverse=True):
        for i, bit in enumerate(net["bits"]):
            if isinstance(bit, int):  # the shortest name of the bit wins
                names[bit] = f"{name}[{i}]" if len(net["bits"]) > 1 else name
    # a fresh bit number: above every bit a cell, a wire name or a port uses
    used = [*(bits for c in cells.values() for bits in c["connections"].values()),
            *(n["bits"] for n in top["netnames"].values()),
            *(p["bits"] for p in top.get("ports", {}).values())]
    next_bit = 1 + max((b for bits in used for b in bits if isinstance(b, int)), default=1)
    promoted, global_bit = [], {}
    for bit, count in fanout.most_common(max(0, max_nets - len(buffered))):
        if count < min_fanout:
            break
        name = names.get(bit, str(bit))
        cells[f"$mixpim_gbuf${name}"] = {
            "hide_name": 0, "type": "DCCA", "parameters": {}, "attributes": {},
            "port_directions": {"CLKI": "input", "CE": "input", "CLKO": "output"},
            "connections": {"CLKI": [bit], "CE": ["1"], "CLKO": [next_bit]}}
        top["netnames"][f"$mixpim_glb${name}"] = {"hide_name": 0, "bits": [next_bit], "attributes": {}}
        global_bit[bit] = next_bit
        promoted.append(PromotedNet(name, count))
        next_bit += 1
    for cell in cells.values():   # one pass moves every promoted net's pins to its DCCA
        for pin, bit in list(_global_pins(cell)):
            if bit in global_bit:
                cell["connections"][pin] = [global_bit[bit]]
    return promoted


def promote_file(path, min_fanout: int = MIN_FANOUT, max_nets: int = MAX_NETS) -> list[PromotedNet]:
    """:func:`promote_nets` on the Yosys JSON file ``path``, rewritten in place (atomically)."""
    from .outputs import atomic_write
    path = Path(path)
    netlist = json.loads(path.read_text())
    promoted = promote_nets(netlist, min_fanout, max_nets)
    atomic_write(path, json.dumps(netlist), what="netlist")
    return promoted


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mixpim.sim.ecp5_globals NETLIST.json", file=sys.stderr)
        return 2
    try:
        promoted = promote_file(args[0])
    except (OSError, ValueError, KeyError) as exc:
        print(f"mixpim: error: cannot put the nets of {args[0]} on globals: {exc}", file=sys.stderr)
        return 2
    for net in promoted:
        print(f"{net.name}: {net.fanout} pins on a global (DCCA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
