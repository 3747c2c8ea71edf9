"""The tile's scratchpads: one :class:`~.spad_memory.SpadMemory` each, wired to the units' ports.

Each unit that :data:`~mixpim.models.units.SPADS` names a writer (reader) of a scratchpad has a
``w_<spad>`` (``r_<spad>``) port on it (the GEMM unit also ``r_wact`` on ACT: ``wsrc`` weights);
a port of several lanes (the DMA's: the words of one beat) is one port of the banked memory. The
host port has no port of its own: while the tile is not running, it takes the first writer's and
the first reader's port of each scratchpad (the units are idle then), so the host costs no
memory copy. ACT is written in ``rows`` granules (the VEC unit's one-lane VSOFT writes). VPARAM's
banks are shallow (a bank per lane of the VSOFT unit's reads), so Yosys would hold them in LUT
RAM; they are marked for block RAM (docs/results.md: 762 fewer logic cells on the 8x8 tile).
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Mux, Shape, Value
from amaranth.utils import ceil_log2

from ..models.units import SPADS, Spad, Unit
from .dma import word_shape
from .spad_memory import SpadMemory

__all__ = ["HostAccess", "spad_ports", "connect_spads", "connect_spad"]


@dataclass(frozen=True)
class HostAccess:
    """The host port as the scratchpads see it: ``write[s]`` / ``read[s]`` select scratchpad
    ``s`` (a write only while not running), at word ``addr``; ``run``: the tile is running."""
    run: Value
    addr: Value
    wdata: Value
    write: dict
    read: dict


def spad_ports(config, units):
    """``{spad: ([(unit, write port, lane mask or None)], [read ports])}``, writers and readers in
    :data:`SPADS` order; without ``config.pim_unit`` the PIM unit's are left out (its ports stay
    unconnected: the tile never starts it)."""
    out = {}
    present = [u for u in units if u != Unit.PIM or config.pim_unit]
    for s, info in SPADS.items():
        name = s.name.lower()
        writers = [(u, getattr(units[u], f"w_{name}"),
                    units[u].w_act_mask if (u, s) == (Unit.VEC, Spad.ACT) else None)
                   for u in info.writers if u in present]
        readers = [getattr(units[u], f"r_{name}") for u in info.readers if u in present]
        if s == Spad.ACT:
            readers.append(units[Unit.GEMM].r_wact)
        out[s] = (writers, readers)
    return out


def connect_spads(m, cfg, units, host):
    """Build the scratchpads (submodules ``spad_<name>``) and connect ``units`` and ``host``.

    Returns per scratchpad the word the host read in the previous cycle.
    """
    host_reads = {s: connect_spad(m, cfg, s, writers, readers, host)
                  for s, (writers, readers) in spad_ports(cfg, units).items()}
    assert Shape.cast(word_shape(cfg, Spad.ACT)).width % cfg.rows == 0
    return host_reads


def connect_spad(m, cfg, s, writers, readers, host=None):
    """Build scratchpad ``s`` (submodule ``spad_<name>``) with a port per writer (``(unit, port,
    lane mask or None)``) and reader of :func:`spad_ports`; ``host`` (a :class:`HostAccess`, or
    None: no host) takes the first writer's and reader's ports while not running.

    Returns the word the host read in the previous cycle (None without a host).
    """
    lanes = max([len(p.en) for _, p, _ in writers] + [p.data.shape().length for p in readers])
    granules = cfg.rows if s == Spad.ACT else 1
    mem = SpadMemory(word_shape(cfg, s), cfg.spad_words(s), banks=1 << ceil_log2(lanes),
                     granules=granules, name=f"spad_{s.name.lower()}", block_ram=s == Spad.VPARAM)
    m.submodules[f"spad_{s.name.lower()}"] = mem
    width, full = mem.width, (1 << granules) - 1
    host_read = None
    for k, (_, port, mask) in enumerate(writers):
        n = len(port.en)
        wp = mem.write_port(n)
        en = Cat(Mux(port.en[i], full if mask is None else mask, 0) for i in range(n))
        words = [Value.cast(port.data[i]) for i in range(n)]
        addr = port.addr
        if k == 0 and host is not None:   # the host's while not running
            en = Mux(host.run, en, Mux(host.write[s], full, 0))
            # word and address by the host's write (0 while running), not by ``run``: the same
            # ports, and no select reaching every scratchpad's write data across the die
            words[0] = Mux(host.write[s], host.wdata[:width], words[0])
            addr = Mux(host.write[s], host.addr, addr)
        m.d.comb += [wp.addr.eq(addr), wp.en.eq(en)]
        m.d.comb += [wp.data.as_value().word_select(i, width).eq(w) for i, w in enumerate(words)]
    for k, port in enumerate(readers):
        n = port.data.shape().length
        rp = mem.read_port(n)
        addr, en = port.addr, port.en
        if k == 0 and host is not None:   # the host's while not running
            addr, en = Mux(host.run, addr, host.addr), Mux(host.run, en, host.read[s])
            host_read = rp.data.as_value().word_select(0, width)
        m.d.comb += [rp.addr.eq(addr), rp.en.eq(en)]
        m.d.comb += [port.data[i].eq(rp.data[i]) for i in range(n)]
    return host_read
