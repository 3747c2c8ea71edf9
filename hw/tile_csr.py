"""The tile's register interface: a Wishbone CSR bridge built from the register map, and TileTop.

:class:`TileCsr` turns 32-bit Wishbone B4 classic accesses into the tile's control, status and
host ports, as :func:`mixpim.models.regmap.regmap` defines them (docs/registers.md): nothing here
is written per register. :class:`TileTop` is the tile an FPGA design instantiates: the tile, the
bridge on its ``csr`` bus, and every other tile port forwarded unchanged.
"""

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..models.regmap import REG_BITS, REG_BYTES, Access, Window, regmap
from .common import ConfigComponent, check_config
from .tile import HostSel, Tile
from . import wishbone

__all__ = ["TileCsr", "TileTop", "HOST_PORTS"]

#: The tile's host port, driven by the memory window (``WIN_*`` registers).
HOST_PORTS = ("host_sel", "host_addr", "host_we", "host_wdata", "host_rdata")


class TileCsr(ConfigComponent):
    """Wishbone target of the tile's register map.

    Timing: ``ack`` one cycle after the request (then one idle cycle before the next request is
    taken); a read returns the register's value of the request cycle. A ``CTRL.start`` write
    pulses ``start`` in the ack cycle. ``WIN_CMD.write`` drives ``host_we`` in the request cycle;
    ``WIN_CMD.read`` addresses the memory in the request cycle and captures ``host_rdata`` in the
    ack cycle, so the next access reads the staged word. Unmapped offsets read 0 and ignore
    writes. ``sel`` masks writes per byte.

    Arguments
    ---------
    config : TileConfig
    imem_words : int
        Instruction memory depth, 1..65536 (the ``WIN_IMEM_DEPTH`` register).

    Members
    -------
    bus : In(wishbone.Signature(addr_width=regmap.addr_bits, data_width=32, granularity=8))
    one member per tile port the register map names: ``Out`` for ports it drives (``start``,
    ``length``), ``In`` for ports it reads (``running``, ``done``, ``cycles``, ``busy`` as an
    ``ArrayLayout``, ...); and the host port: ``host_sel`` : Out(HostSel), ``host_addr`` : Out(32),
    ``host_we`` : Out(1), ``host_wdata`` : Out(32 * WIN_DATA_WORDS), ``host_rdata`` : In(same).

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    ValueError
        If ``imem_words`` is out of range.
    """

    def __init__(self, config, imem_words=1024):
        self._regmap = regmap(check_config(config), imem_words)
        super().__init__(config)

    @property
    def regmap(self):
        return self._regmap

    def _members(self, config):
        rm = self._regmap
        members = {"bus": In(wishbone.Signature(addr_width=rm.addr_bits, data_width=REG_BITS,
                                                granularity=8))}
        for port, (access, width, elements) in rm.ports().items():
            shape = data.ArrayLayout(width, elements) if elements else width
            members[port] = In(shape) if access == Access.RO else Out(shape)
        staged = REG_BITS * len(self._data_regs())
        members |= {"host_sel": Out(HostSel), "host_addr": Out(32), "host_we": Out(1),
                    "host_wdata": Out(staged), "host_rdata": In(staged)}
        return members

    def _data_regs(self):
        return [r for r in self._regmap.registers if r.name.startswith("WIN_DATA") and r.name[8:].isdigit()]

    def elaborate(self, platform):
        m = Module()
        rm, bus = self._regmap, self.bus
        ack = Signal()
        req = Signal()
        m.d.comb += [bus.ack.eq(ack), req.eq(bus.cyc & bus.stb & ~ack)]
        m.d.sync += ack.eq(req)
        wr, rd = req & bus.we, req & ~bus.we
        mask = Cat(*(bus.sel[i].replicate(8) for i in range(REG_BYTES)))
        running = self.running if "running" in rm.ports() else Const(0, 1)

        def hit(r):
            return bus.adr == r.offset // REG_BYTES

        def used(r):
            return reduce(lambda a, b: a | b, (f.mask for f in r.fields))

        storage, pulse = {}, {}
        for r in rm.registers:
            if r.access == Access.RW:
                storage[r.name] = reg = Signal(REG_BITS, init=r.reset, name=f"reg_{r.name.lower()}")
                drives = any(f.port is not None for f in r.fields)   # held while the tile runs
                with m.If(wr & hit(r) & ~(running if drives else Const(0, 1))):
                    m.d.sync += reg.eq(((reg & ~mask) | (bus.dat_w & mask)) & used(r))
            elif r.access == Access.W1P:
                pulse[r.name] = p = Signal(REG_BITS, name=f"pulse_{r.name.lower()}")
                m.d.comb += p.eq(Mux(wr & hit(r), bus.dat_w & mask & used(r), 0))
            for f in r.fields:
                if f.port is None or r.access == Access.RO:
                    continue
                src = (storage[r.name] if r.access == Access.RW else pulse[r.name])[f.lsb:f.lsb + f.width]
                if r.access == Access.W1P:   # registered: the pulse comes in the ack cycle
                    m.d.sync += getattr(self, f.port).eq(src)
                else:
                    m.d.comb += getattr(self, f.port).eq(src)

        # -- reads: the register's fields at their bit positions -------------------------------------
        rdata = Signal(REG_BITS)
        with m.Switch(bus.adr):
            for r in rm.registers:
                if r.access == Access.W1P:
                    continue
                parts = []
                for f in r.fields:
                    if r.access == Access.RW:
                        src = storage[r.name][f.lsb:f.lsb + f.width]
                    elif f.port is None:
                        src = Const(f.value, f.width)
                    else:
                        src = getattr(self, f.port)
                        src = Value.cast(src if f.index is None else src[f.index])[:f.width]
                    parts.append(src.as_unsigned() << f.lsb)
                with m.Case(r.offset // REG_BYTES):
                    m.d.comb += rdata.eq(reduce(lambda a, b: a | b, parts))
        with m.If(rd):
            m.d.sync += bus.dat_r.eq(rdata)

        # -- the memory window ---------------------------------------------------------------------
        cmd, cmd_reg = pulse["WIN_CMD"], rm["WIN_CMD"]
        do_write, do_read, do_step = (cmd[cmd_reg.field(n).lsb] for n in ("write", "read", "step"))
        sel = storage["WIN_SEL"]
        addr = storage["WIN_ADDR"]
        staged = [storage[r.name] for r in self._data_regs()]
        valid = Signal()
        with m.Switch(sel):
            for w in Window:
                with m.Case(w):
                    m.d.comb += [self.host_sel.eq(HostSel[w.name]), valid.eq(1)]
        m.d.comb += [self.host_addr.eq(addr), self.host_wdata.eq(Cat(*staged)),
                     self.host_we.eq(do_write & valid & ~running)]
        fetch = Signal()
        m.d.sync += fetch.eq(do_read & ~do_write & valid)
        with m.If(fetch):
            m.d.sync += [reg.eq(self.host_rdata[REG_BITS * i:REG_BITS * (i + 1)])
                         for i, reg in enumerate(staged)]
        with m.If(do_step):
            m.d.sync += addr.eq(addr + 1)
        return m


def _lookup(obj, path):
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


class TileTop(ConfigComponent):
    """The tile behind its register interface: :class:`~.tile.Tile` + :class:`TileCsr`.

    Arguments
    ---------
    config : TileConfig
    imem_words : int
        Instruction memory depth, 1..65536.

    Members
    -------
    csr : In(wishbone.Signature(...)), the register bus (docs/registers.md)
    every member of the tile's signature that the bridge does not consume (those named by the
    register map and the host port), with the tile's own name, flow and shape, wired through.

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    ValueError
        If ``imem_words`` is out of range, or the tile lacks a port the register map names, or
        already has a ``csr`` member.
    """

    def __init__(self, config, imem_words=1024):
        check_config(config)
        self._csr = TileCsr(config, imem_words)
        self._tile = Tile(config, imem_words)
        # elaborated with this top: no warnings of their own when only the top is unused
        self._csr._MustUse__silence = self._tile._MustUse__silence = True
        super().__init__(config)

    def _members(self, config):
        tile = self._tile.signature.members
        inner = [n for n in self._csr.signature.members if n != "bus"]
        missing = [n for n in inner if n not in tile]
        if missing:
            raise ValueError(f"the tile has no port {', '.join(missing)} that the register map names")
        if "csr" in tile:
            raise ValueError("the tile already has a member named 'csr'")
        self._forwarded = {n: mem for n, mem in tile.items() if n not in inner}
        return {"csr": self._csr.signature.members["bus"], **self._forwarded}

    @property
    def tile(self):
        return self._tile

    @property
    def forwarded(self):
        """Names of the tile members TileTop forwards."""
        return tuple(self._forwarded)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tile = tile = self._tile
        m.submodules.csr = csr = self._csr
        wiring.connect(m, wiring.flipped(self.csr), csr.bus)
        for name, member in csr.signature.members.items():
            if name == "bus":
                continue
            ours, theirs = getattr(csr, name), getattr(tile, name)
            m.d.comb += theirs.eq(ours) if member.flow == Out else ours.eq(theirs)
        for path, member, value in wiring.Signature(self._forwarded).flatten(self):
            inner = _lookup(tile, path)
            m.d.comb += inner.eq(value) if member.flow == In else value.eq(inner)
        return m
