"""Put the high-fanout set/reset nets of a Yosys ECP5 netlist on global networks.

nextpnr-ecp5 promotes clocks to the global networks and routes every other net through the
fabric; unlike Lattice Diamond it does not promote resets. The tile restarts every unit and
queue at START (``begin`` in :class:`~mixpim.hw.tile.Tile`): that one net drives the LSR
(set/reset) pin of 8,738 flip-flops of the ``tiny`` tile and 25,786 of the 8x8 one. With that
net in the fabric nextpnr's router slowed to a crawl whenever it ripped it up, and the tile did
not finish routing (docs/decisions.md, decision 15). :func:`promote_resets` drives such
nets through a DCCA (the ECP5 global clock buffer, enable tied high); nextpnr routes a DCCA's
output on one of the globals 0-7, which reach the LSR pins of every logic tile. The logic is
unchanged: the netlist gains one buffer per promoted net, so the simulated and the routed design
are the same.

``python -m mixpim.sim.ecp5_globals NETLIST.json`` rewrites a netlist in place (the ULX3S build
script of ``mixpim rtl tile`` runs it between Yosys and nextpnr).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_NETS", "MIN_FANOUT", "PromotedNet", "promote_file", "promote_resets"]

#: A reset net goes global from this many flip-flop LSR pins up.
MIN_FANOUT = 1000
#: At most this many nets are promoted: nextpnr gives fabric-driving globals 0-7, one of which
#: the clock may take.
MAX_NETS = 4


@dataclass(frozen=True)
class PromotedNet:
    """One net put on a global: its Yosys name and the flip-flop LSR pins it drives."""
    name: str
    fanout: int


def _top(netlist: dict) -> dict:
    tops = [m for m in netlist.get("modules", {}).values()
            if int(m.get("attributes", {}).get("top", 0) or 0)]
    if len(tops) != 1:
        raise ValueError(f"the netlist has {len(tops)} top modules, not 1")
    return tops[0]


def _lsr(cell: dict) -> int | None:
    """The net driving ``cell``'s LSR pin if it is a flip-flop reset by a net (not a constant)."""
    if cell["type"] != "TRELLIS_FF":
        return None
    bit = cell["connections"].get("LSR", ["0"])[0]
    return bit if isinstance(bit, int) else None


def promote_resets(netlist: dict, min_fanout: int = MIN_FANOUT,
                   max_nets: int = MAX_NETS) -> list[PromotedNet]:
    """Insert a DCCA in each of the (at most ``max_nets``) nets that drive the LSR pins of
    ``min_fanout`` or more ``TRELLIS_FF`` cells of the Yosys JSON ``netlist`` (edited in place),
    largest first; the DCCA drives those LSR pins, the net keeps its other loads. A net a DCCA
    already drives is left alone. Returns the promoted nets."""
    if not isinstance(min_fanout, int) or min_fanout < 1:
        raise ValueError(f"min_fanout must be a positive integer, not {min_fanout!r}")
    if not isinstance(max_nets, int) or not 0 <= max_nets <= 8:
        raise ValueError(f"max_nets must be an integer in 0..8, not {max_nets!r}")
    top = _top(netlist)
    cells = top["cells"]
    buffered = {c["connections"]["CLKO"][0] for c in cells.values() if c["type"] == "DCCA"}
    fanout = Counter(bit for bit in map(_lsr, cells.values())
                     if bit is not None and bit not in buffered)
    names: dict[int, str] = {}
    for name, net in sorted(top["netnames"].items(), key=lambda kv: len(kv[0]), reverse=True):
        for i, bit in enumerate(net["bits"]):
            if isinstance(bit, int):  # the shortest name of the bit wins; bits of a bus apart
                names[bit] = f"{name}[{i}]" if len(net["bits"]) > 1 else name
    # a fresh bit number: above every bit a cell, a wire name or a port uses
    used = [*(bits for c in cells.values() for bits in c["connections"].values()),
            *(n["bits"] for n in top["netnames"].values()),
            *(p["bits"] for p in top.get("ports", {}).values())]
    next_bit = 1 + max((b for bits in used for b in bits if isinstance(b, int)), default=1)
    promoted, global_bit = [], {}
    for bit, count in fanout.most_common(max_nets):
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
    for cell in cells.values():   # one pass moves every promoted net's LSR pins to its DCCA
        bit = _lsr(cell)
        if bit in global_bit:
            cell["connections"]["LSR"] = [global_bit[bit]]
    return promoted


def promote_file(path, min_fanout: int = MIN_FANOUT, max_nets: int = MAX_NETS) -> list[PromotedNet]:
    """:func:`promote_resets` on the Yosys JSON file ``path``, rewritten in place (atomically)."""
    from .outputs import atomic_write
    path = Path(path)
    netlist = json.loads(path.read_text())
    promoted = promote_resets(netlist, min_fanout, max_nets)
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
        print(f"mixpim: error: cannot promote the resets of {args[0]}: {exc}", file=sys.stderr)
        return 2
    for net in promoted:
        print(f"{net.name}: {net.fanout} LSR pins on a global (DCCA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
