"""A scratchpad memory with many ports built from block-RAM-shaped memories (1 write, 1 read port).

The tile's units all reach a scratchpad in the same cycle (the timing contract of docs/tile.md:
any unit reads or writes any word in any cycle, no bank conflicts). An FPGA block RAM has two
ports, so a memory with ``W`` write ports and ``R`` read ports is built the way multi-ported FPGA
memories are (LaForest and Steffan, "Efficient multi-ported memories for FPGAs", FPGA 2010):

* **Banks.** Word ``a`` is in bank ``a % banks`` at index ``a // banks`` (``banks`` a power of
  two). A port of ``lanes`` consecutive words (``lanes <= banks``; the DMA's beat carries several
  words) touches each bank at most once per cycle, so it is one port of each bank.
* **Replication and the live value table.** Per bank, writer ``w`` owns ``R`` copies, one per
  reader, each with one write port (``w``'s) and one read port: ``W * R`` simple dual-port
  memories. The live value table (LVT: ``ceil(log2 W)`` bits per word and write granule)
  records which writer wrote each granule last; a read returns, per granule, the copy the LVT
  names. With one writer there is no LVT and each reader has its own copy. The LVT is XOR-based
  (LaForest et al.'s XOR memory, FPGA 2012, applied to the LVT, as in Abdelhadi and Lemieux's
  I-LVT, FPGA 2014): one table per writer, each with one write port and asynchronous reads,
  which an FPGA holds in LUT RAM (a table of flip-flops with ``W`` write ports costs
  ``depth``:1 read multiplexers per reader and a write decoder per bit: 24k ECP5 LUTs for the
  8x8 tile's ACT, 5k with the XOR tables).

Ports behave as ``lib.memory.Memory``'s synchronous ports: a read of address ``a`` with ``en`` in
cycle c gives the word in cycle c + 1 as it was before the writes of cycle c (not transparent) and
holds it while ``en`` is low; a write in cycle c is visible to reads from cycle c + 1. Two writes of
one granule in one cycle are not defined (the tile's programs never race, docs/tile.md).
"""

import operator
from dataclasses import dataclass
from functools import reduce

from amaranth.hdl import Array, Elaboratable, Module, Mux, Shape, Signal
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["SpadWritePort", "SpadReadPort", "SpadMemory"]


@dataclass(frozen=True)
class SpadWritePort:
    """``lanes`` words ``addr .. addr + lanes - 1``: ``data[i]`` to word ``addr + i`` under the
    enables ``en[i * granules:(i + 1) * granules]`` (granule ``g`` = bits ``[g * gw, (g + 1) * gw)``
    of the word, ``gw = width / granules``)."""
    addr: Signal
    en: Signal
    data: data.View
    lanes: int


@dataclass(frozen=True)
class SpadReadPort:
    """``lanes`` words ``addr .. addr + lanes - 1`` read in the cycle ``en`` is high, in ``data``
    from the next cycle."""
    addr: Signal
    en: Signal
    data: data.View
    lanes: int


class SpadMemory(Elaboratable):
    """A ``depth``-word memory of ``shape`` words with any number of ports (module docstring).

    Arguments
    ---------
    shape : shape-castable, the word (e.g. ``unsigned(32)`` or an ``ArrayLayout``)
    depth : int, words (>= 1)
    banks : int, a power of two >= the most lanes of any port
    granules : int, write granules per word (dividing the word's width); 1: whole words
    name : str, prefix of the memories' names
    block_ram : bool, mark the data copies ``ram_style = "block"`` (Yosys maps them to block RAM
        even where its cost model prefers LUT RAM: on an ECP5, LUT RAM costs about eight logic
        cells per 64 bits, and logic runs out before block RAM does)

    Raises
    ------
    ValueError
        On a depth, bank or granule count out of range, or a port of more lanes than banks.
    """

    def __init__(self, shape, depth, *, banks=1, granules=1, name="spad", block_ram=False):
        width = Shape.cast(shape).width
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if not isinstance(banks, int) or banks < 1 or banks & (banks - 1):
            raise ValueError(f"banks must be a power of two, not {banks!r}")
        if not isinstance(granules, int) or granules < 1 or width % granules:
            raise ValueError(f"granules must divide the word's {width} bits, not {granules!r}")
        self.shape, self.depth, self.banks, self.granules = shape, depth, banks, granules
        self.width = width
        self.name = name
        self._attrs = {"ram_style": "block"} if block_ram else {}
        self.writers, self.readers = [], []

    def _lanes(self, lanes):
        if not isinstance(lanes, int) or not 1 <= lanes <= self.banks:
            raise ValueError(f"a port of {self.name} has 1..{self.banks} lanes, not {lanes!r}")
        return lanes

    def write_port(self, lanes=1):
        """A new :class:`SpadWritePort` of ``lanes`` words."""
        lanes = self._lanes(lanes)
        n = len(self.writers)
        port = SpadWritePort(Signal(range(self.depth), name=f"{self.name}_w{n}_addr"),
                             Signal(lanes * self.granules, name=f"{self.name}_w{n}_en"),
                             Signal(data.ArrayLayout(self.shape, lanes), name=f"{self.name}_w{n}_data"),
                             lanes)
        self.writers.append(port)
        return port

    def read_port(self, lanes=1):
        """A new :class:`SpadReadPort` of ``lanes`` words."""
        lanes = self._lanes(lanes)
        n = len(self.readers)
        port = SpadReadPort(Signal(range(self.depth), name=f"{self.name}_r{n}_addr"),
                            Signal(name=f"{self.name}_r{n}_en"),
                            Signal(data.ArrayLayout(self.shape, lanes), name=f"{self.name}_r{n}_data"),
                            lanes)
        self.readers.append(port)
        return port

    def elaborate(self, platform):
        m = Module()
        nb, G = self.banks, self.granules
        lb = exact_log2(nb)
        bank_depth = -(-self.depth // nb)
        gw = self.width // G
        nw, nr = len(self.writers), len(self.readers)

        def lane_of(addr, b, lanes):
            """The lane of a port at ``addr`` that touches bank ``b`` and its index there."""
            if not lb:
                return 0, addr, True
            lane = Signal(range(nb), name=f"{self.name}_lane")
            m.d.comb += lane.eq(b - addr[:lb])
            return lane, (addr + lane) >> lb, lane < lanes

        # per bank, per reader: the registered rotation of the read (which bank lane i came from)
        rot = [Signal(lb, name=f"{self.name}_r{r}_rot") for r in range(nr)] if lb else []
        for r, port in enumerate(self.readers[:len(rot)]):
            with m.If(port.en):
                m.d.sync += rot[r].eq(port.addr[:lb])
        bank_out = [[None] * nb for _ in range(nr)]   # [reader][bank] -> the bank's word
        for b in range(nb):
            writes = []   # per writer: (index, granule enables, word)
            for w, port in enumerate(self.writers):
                lane, index, ok = lane_of(port.addr, b, port.lanes)
                en = Array(port.en[i * G:(i + 1) * G] for i in range(port.lanes))[lane]
                word = Array(port.data.as_value().word_select(i, self.width)
                             for i in range(port.lanes))[lane]
                writes.append((index, Mux(ok, en, 0) if lb else en, word))
            reads = []    # per reader: (index, en)
            for r, port in enumerate(self.readers):
                lane, index, _ = lane_of(port.addr, b, port.lanes)
                reads.append((index, port.en))
            # copies[w][r]
            outs = [[None] * nr for _ in range(nw)]
            for w, (windex, wen, wword) in enumerate(writes):
                for r, (rindex, ren) in enumerate(reads):
                    mem = Memory(shape=self.width, depth=bank_depth, init=[], attrs=self._attrs)
                    m.submodules[f"{self.name}_b{b}_w{w}_r{r}"] = mem
                    wp = mem.write_port(granularity=gw) if G > 1 else mem.write_port()
                    rp = mem.read_port()
                    m.d.comb += [wp.addr.eq(windex), wp.data.eq(wword), wp.en.eq(wen),
                                 rp.addr.eq(rindex), rp.en.eq(ren)]
                    outs[w][r] = rp.data
            if nw == 1:
                for r in range(nr):
                    bank_out[r][b] = outs[0][r]
                continue
            bank_out_r = self._live_value_table(m, b, bank_depth, writes, reads)
            for r in range(nr):
                word = Signal(self.width, name=f"{self.name}_b{b}_r{r}_word")
                for g in range(G):
                    m.d.comb += word[g * gw:(g + 1) * gw].eq(
                        Array(outs[w][r][g * gw:(g + 1) * gw] for w in range(nw))[bank_out_r[r][g]])
                bank_out[r][b] = word
        for r, port in enumerate(self.readers):
            for i in range(port.lanes):
                src = Array(bank_out[r])[(rot[r] + i)[:lb]] if lb else bank_out[r][0]
                m.d.comb += port.data.as_value().word_select(i, self.width).eq(src)
        return m

    def _live_value_table(self, m, b, depth, writes, reads):
        """Bank ``b``'s live value table: per reader, per granule, the writer of the word read
        in the previous cycle (``ceil(log2 W)`` bits, valid when the read's data is).

        XOR-based (module docstring): writer ``w`` owns a table ``T_w`` whose XOR with the
        others' at a granule is the granule's last writer; writing granule ``g`` of word ``a``,
        ``w`` stores ``w ^ XOR of T_v[a][g], v != w`` (its other granules keep their value).
        Every table has one write port and an asynchronous read port per consumer (the writers,
        which read all tables at their write address in the cycle they write; the readers,
        which register what they read), so it maps to LUT RAM.
        """
        nw, G = len(writes), self.granules
        sb = ceil_log2(nw)
        lw = sb * G
        addrs = [windex for windex, _, _ in writes] + [rindex for rindex, _ in reads]
        tables = [[Memory(shape=lw, depth=depth, init=[]) for _ in addrs] for _ in range(nw)]
        seen = [[None] * len(addrs) for _ in range(nw)]   # [table][consumer] -> word at its address
        for v in range(nw):
            for c, addr in enumerate(addrs):
                m.submodules[f"{self.name}_b{b}_t{v}_c{c}"] = tables[v][c]
                rp = tables[v][c].read_port(domain="comb")
                m.d.comb += rp.addr.eq(addr)
                seen[v][c] = rp.data
        for w, (windex, wen, _) in enumerate(writes):
            new = Signal(lw, name=f"{self.name}_b{b}_t{w}_new")
            others = reduce(operator.xor, (seen[v][w] for v in range(nw) if v != w))
            for g in range(G):
                part = slice(g * sb, (g + 1) * sb)
                m.d.comb += new[part].eq(Mux(wen[g], others[part] ^ w, seen[w][w][part]))
            for table in tables[w]:
                wp = table.write_port()
                m.d.comb += [wp.addr.eq(windex), wp.data.eq(new), wp.en.eq(wen.any())]
        live = []
        for r, (_, ren) in enumerate(reads):
            word = Signal(lw, name=f"{self.name}_b{b}_r{r}_live")
            with m.If(ren):
                m.d.sync += word.eq(reduce(operator.xor, (seen[v][nw + r] for v in range(nw))))
            live.append([word[g * sb:(g + 1) * sb] for g in range(G)])
        return live
