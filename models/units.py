"""The tile's units and scratchpads, defined once: who executes, who reads and writes what.

Every other part derives from these tables: the ISA (:mod:`.isa`) takes the legal ``spad`` values
of LOAD and STORE from :data:`SPADS`, the RTL tile (``hw/tile.py``) builds one queue per unit of
:data:`QUEUED_UNITS` and one memory per scratchpad, the cycle model and the executor size their
token counters and busy counters from :class:`Unit`, and the compiler's token pass and the random
program generator track every scratchpad of :data:`SPADS`. Adding a unit or a scratchpad is an
edit of the tables here plus the new unit's own files (docs/architecture.md, "How to add a unit").
"""

import enum
from dataclasses import dataclass

__all__ = ["Unit", "UnitMask", "MASK_BITS", "TOKEN_BITS", "TOKEN_MAX", "UnitInfo", "UNITS",
           "QUEUED_UNITS", "Spad", "SpadInfo", "SPADS", "DRAM_UNITS", "unit_bits"]


class Unit(enum.IntEnum):
    """Execution units; ``1 << unit`` is the unit's bit in a token mask."""
    DMA = 0
    GEMM = 1
    VEC = 2
    PIM = 3


#: A ``wait`` / ``signal`` token mask: ``UnitMask.DMA | UnitMask.VEC``. Bit u is :class:`Unit` u.
UnitMask = enum.IntFlag("UnitMask", {u.name: 1 << u for u in Unit}, module=__name__)
UnitMask.__doc__ = "A wait/signal token mask; bit u is :class:`Unit` u."

#: Width of a token mask: one bit per unit.
MASK_BITS = len(Unit)
#: Width of one token counter ``tok[src][dst]``.
TOKEN_BITS = 3
#: Largest value of a token counter; one more is ``TOKEN_OVERFLOW``.
TOKEN_MAX = (1 << TOKEN_BITS) - 1


@dataclass(frozen=True)
class UnitInfo:
    """One unit.

    Members
    -------
    unit : Unit
    queued : bool
        The unit is built: it has a queue and executes its instructions. A unit that is not built
        keeps its id, mask bit and token counters; its opcodes are illegal.
    doc : str
        What it executes and which ports it drives (docs/isa.md).
    """
    unit: Unit
    queued: bool
    doc: str


UNITS = {u.unit: u for u in (
    UnitInfo(Unit.DMA, True, "LOAD, STORE: DRAM channel 0 and the scratchpads' DMA ports"),
    UnitInfo(Unit.GEMM, True, "GEMM: ACT/WGT/META read ports, the array, the ACC write port"),
    UnitInfo(Unit.VEC, True, "VEC, VSOFT, VNORM: ACC read port, ACT/VPARAM read ports, ACT and ACC "
             "write ports"),
    UnitInfo(Unit.PIM, True, "PIM_GBUF, PIM_WRITE, PIM_GEMV, PIM_READ, PIM_ACT: the PIM banks' MAC lanes, "
             "the channels' global buffers, ACT read port, ACC write port"),
)}
assert tuple(UNITS) == tuple(Unit)

#: The units with a queue, in :class:`Unit` order.
QUEUED_UNITS = tuple(u for u, info in UNITS.items() if info.queued)


class Spad(enum.IntEnum):
    """Scratchpad ids (the ``spad`` field of LOAD and STORE)."""
    ACT = 0
    WGT = 1
    META = 2
    ACC = 3
    VPARAM = 4


@dataclass(frozen=True)
class SpadInfo:
    """One scratchpad and the units whose instructions read or write it.

    Members
    -------
    spad : Spad
    readers, writers : tuple of Unit
        A LOAD may fill the scratchpad iff DMA is a writer, a STORE may drain it iff DMA is a
        reader; the RTL gives each reader a read port and each writer a write port (GEMM reads
        ACC to accumulate).
    doc : str
    """
    spad: Spad
    readers: tuple
    writers: tuple
    doc: str


SPADS = {s.spad: s for s in (
    SpadInfo(Spad.ACT, (Unit.DMA, Unit.GEMM, Unit.VEC, Unit.PIM), (Unit.DMA, Unit.VEC),
             "activations, one array beat per word (K-major)"),
    SpadInfo(Spad.WGT, (Unit.GEMM,), (Unit.DMA,), "weight codes, one array beat per word"),
    SpadInfo(Spad.META, (Unit.GEMM,), (Unit.DMA,), "per-group zero points (BitMoD tiles: type "
             "selectors) and scale mantissas (and offset mantissas with group_offset)"),
    SpadInfo(Spad.ACC, (Unit.DMA, Unit.GEMM, Unit.VEC), (Unit.DMA, Unit.GEMM, Unit.VEC, Unit.PIM),
             "accumulators, one token row per word"),
    SpadInfo(Spad.VPARAM, (Unit.VEC,), (Unit.DMA,), "per-column vector-unit parameters"),
)}
assert tuple(SPADS) == tuple(Spad)

#: The units that access DRAM (LOAD/STORE; PIM_WRITE/PIM_GEMV on the PIM banks' rows): a DRAM
#: conflict between them needs a token like a scratchpad conflict.
DRAM_UNITS = (Unit.DMA, Unit.PIM)


_UNIT_BITS = tuple(tuple(u for u in Unit if m >> u & 1) for m in range(1 << MASK_BITS))


def unit_bits(mask):
    """The units of a token mask (an integer in 0..2**MASK_BITS-1), in :class:`Unit` order."""
    return _UNIT_BITS[mask]
