"""DRAM model of the tile: ``dram_channels`` x ``dram_banks`` banks of storage, timed on timestamps.

A simulation model (not a memory controller to synthesize) that times every bus beat exactly as
:meth:`mixpim.models.dram_timing.DramTiming.transfer` does (docs/tile.md, "DRAM").

**Storage.** One ``lib.memory.Memory`` per bank (:attr:`DramModel.memories`, index
``ch * dram_banks + bank``), each ``dram_rows * dram_row_bytes / dram_bus_bytes`` words of
``8 * dram_bus_bytes`` bits. A beat address ``beat`` (DRAM byte address // ``dram_bus_bytes``)
maps as in :func:`mixpim.models.dram_timing.dram_location`: with ``cpr = row_bytes / bus_bytes``
beats per DRAM row and ``g = beat // cpr`` the global DRAM row, channel ``g % channels``, bank
``(g // channels) % banks``, row ``g // (channels * banks)``, word ``row * cpr + beat % cpr`` of
the bank's memory (:func:`bank_word`). Every size is a power of two except ``dram_rows``, so this
is bit slicing: ``beat = [row | bank | channel | column beat]`` from the MSB.

**Time.** ``now`` counts cycles from :data:`~.dram_rows.TIME_ORIGIN` (in the first cycle after a
reset, which :class:`~.tile_system.TileSystem` applies at the start of a run: the golden model's
cycle 0); every timestamp
register resets to 0, "never". The bank row buffers and channel activation windows are a
:class:`~.dram_rows.RowState`; per channel the model keeps ``t_col`` (its last column command) and
``bg_col`` (that command's bank group, ``bank % dram_bank_groups``).

**A beat.** The requester is the tile's memory port (:mod:`.mem_bus`, Wishbone classic): it
raises ``stb`` (within ``cyc``) with a beat and holds it (and the payload) until ``ack``. In the
first cycle of the request (its arrival) the model computes the beat's column command cycle::

    col = max(arrival, activation + t_rcd,
              t_col[ch] + (t_ccd_l if bg_col[ch] == the bank's group else t_ccd_s))

where on a row miss the activation (after a precharge when another row is open) follows
:class:`~.dram_rows.RowState`'s rule with look-ahead from the instruction's ``start``, and on a
hit it is the open row's (which a ``PIM_ACT`` may have issued ahead in ``pim_mode`` "single":
the model's ``RowState.ready``). The model records the column command (and the activation) in
the state in the arrival cycle, once per beat (``ack`` may come in that very cycle, and the
next beat must see it); ``ack`` is asserted in cycle ``col``. The instruction's start is not
on the bus: its first beat (the cycle ``cyc`` rises) arrives exactly ``DMA_SETUP_CYCLES`` after
it (the DMA engine's contract), so the model latches ``start = arrival - DMA_SETUP_CYCLES``
there; every later beat arrives in the cycle after the previous ``ack`` (the other contract),
which is the model's ``previous beat + 1``. Latency: ``col - arrival`` cycles, 0 when nothing
binds. The access happens in the ``ack`` cycle: ``dat_r`` is valid combinationally in that cycle
(an asynchronous read: this is the simulation side of the port), a write (``dat_w`` bytes where
``sel`` is set) is visible from the next cycle. The CAS latency ``t_cl`` after the last beat is
the DMA engine's to wait.

**PIM port.** ``pim`` (:class:`PimDramSignature`) is the PIM unit's: the banks' PIM row buffers
as a :class:`~.dram_rows.RowState` of their own (``pim_rows``, ``pim_row_buffers`` buffers per
bank) in ``pim_mode`` "dual", the normal one (``rows``, shared with the bus) in "single"
(docs/pim.md, "Row-buffer modes"); ``now``;
and the MAC lanes' and the write path's access to the banks in lock step: every bank reads word
``addr`` (``rdata``, combinational, one word per bank), and the banks of ``we`` write the bytes
``wmask`` of their channel's ``wdata`` to it at the clock edge. The PIM unit times its accesses
itself (:mod:`.pim_unit`); the port has no latency and no timing of its own.

**Host port.** ``host`` reads and writes DRAM as linear ``dram_bus_bytes``-byte words (word ``a``
is beat address ``a``): a write with ``we`` takes effect at the clock edge, ``rdata`` holds the
word addressed in the previous cycle (latency 1, as a ``Memory`` read port).
"""

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.dram_timing import DMA_SETUP_CYCLES, dram_location
from .common import ConfigComponent, check_config
from .mem_bus import MemBusSignature, beat_bits
from .dram_rows import TIME_BITS, TIME_ORIGIN, GroupRequestSignature, RowState, time_max

__all__ = ["DramHostSignature", "PimDramSignature", "DramModel", "bank_word", "bank_depth"]


def bank_depth(config):
    """Words (of ``dram_bus_bytes``) of one bank's memory."""
    return config.dram_rows * config.dram_row_bytes // config.dram_bus_bytes


def bank_word(config, beat):
    """``(bank index, word)`` of beat address ``beat``: the memory ``ch * dram_banks + bank`` of
    :attr:`DramModel.memories` and the word in it."""
    cfg = config
    ch, bank, row, col = dram_location(cfg, beat * cfg.dram_bus_bytes)
    return ch * cfg.dram_banks + bank, (row * cfg.dram_row_bytes + col) // cfg.dram_bus_bytes


class DramHostSignature(wiring.Signature):
    """Linear word access to DRAM, seen from the host.

    Members
    -------
    addr : Out(:func:`beat_bits`), word (beat) address
    we : Out(1), write ``wdata`` to word ``addr`` at the clock edge
    wdata : Out(8 * dram_bus_bytes)
    rdata : In(8 * dram_bus_bytes), word ``addr`` of the previous cycle
    """

    def __init__(self, config):
        bus = check_config(config).dram_bus_bytes
        super().__init__({
            "addr": Out(beat_bits(config)),
            "we": Out(1),
            "wdata": Out(8 * bus),
            "rdata": In(8 * bus),
        })


class PimDramSignature(wiring.Signature):
    """The PIM unit's access to the DRAM, seen from the PIM unit.

    Members
    -------
    now : In(TIME_BITS), the DRAM model's cycle counter
    rows : Out(:class:`~.dram_rows.GroupRequestSignature`), the PIM row buffers' state
    addr : Out(range(:func:`bank_depth`)), the word every bank accesses (``row * row_bytes /
        bus_bytes + column beat``)
    rdata : In(ArrayLayout(8 * dram_bus_bytes, channels * banks)), word ``addr`` of every bank
        (index ``ch * dram_banks + bank``), combinational
    we : Out(channels * banks), the banks that write
    wmask : Out(dram_bus_bytes), the bytes they write
    wdata : Out(ArrayLayout(8 * dram_bus_bytes, channels)), per channel: what its banks write
    """

    def __init__(self, config):
        cfg = check_config(config)
        bus, nch = cfg.dram_bus_bytes, cfg.dram_channels
        n = nch * cfg.dram_banks
        super().__init__({
            "now": In(TIME_BITS),
            "rows": Out(GroupRequestSignature(cfg)),
            "addr": Out(range(bank_depth(cfg))),
            "rdata": In(data.ArrayLayout(unsigned(8 * bus), n)),
            "we": Out(n),
            "wmask": Out(bus),
            "wdata": Out(data.ArrayLayout(unsigned(8 * bus), nch)),
        })


def _bank_images(config, image):
    """Initial words of each bank's memory (lists, possibly shorter than the memory) from
    ``image``, laid out by the address mapping."""
    cfg = config
    n = cfg.dram_channels * cfg.dram_banks
    if not len(image):
        return [[] for _ in range(n)]
    stripe = n * cfg.dram_row_bytes   # one row of every bank: rows rotate over channels, banks
    raw = np.frombuffer(bytes(image) + bytes(-len(image) % stripe), np.uint8)
    # byte address = ((row * banks + bank) * channels + ch) * row_bytes + col
    per_bank = raw.reshape(-1, cfg.dram_banks, cfg.dram_channels, cfg.dram_row_bytes)
    # -> [ch * banks + bank, row * row_bytes + col]
    per_bank = per_bank.transpose(2, 1, 0, 3).reshape(n, -1)
    bus = cfg.dram_bus_bytes
    return [[int.from_bytes(b[i:i + bus], "little") for i in range(0, len(b), bus)]
            for b in (per_bank[k].tobytes() for k in range(n))]


class DramModel(ConfigComponent):
    """DRAM storage and beat timing (module docstring).

    Arguments
    ---------
    config : TileConfig
    image : bytes-like, optional
        Initial contents from byte 0 (the rest is zero); at most ``config.dram_bytes`` bytes.

    Members
    -------
    bus : In(:class:`~.mem_bus.MemBusSignature`), the tile's memory port (the DMA's)
    host : In(:class:`DramHostSignature`)
    pim : In(:class:`PimDramSignature`), the PIM unit's
    now : Out(TIME_BITS), the cycle counter (``TIME_ORIGIN`` in the first cycle after reset)
    memories : list of ``lib.memory.Memory``, one per bank (index ``ch * dram_banks + bank``,
        words as :func:`bank_word`); ``memories[i].data`` for testbenches
    rows : :class:`~.dram_rows.RowState`, the banks' row buffers (a submodule)
    pim_rows : :class:`~.dram_rows.RowState`, the PIM row buffers: another submodule of
        ``pim_row_buffers`` buffers per bank in ``pim_mode`` "dual", ``rows`` in "single"
    t_col, bg_col : ``Array`` of Signals, per channel: last column command and its bank group

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig or ``image`` is not bytes-like.
    ValueError
        If ``image`` is larger than the DRAM.
    """

    def __init__(self, config, image=b""):
        super().__init__(config)
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise TypeError(f"image must be bytes-like, not {type(image).__name__}")
        if len(image) > config.dram_bytes:
            raise ValueError(f"image must fit the DRAM ({config.dram_bytes} bytes), not "
                             f"{len(image)} bytes")
        bus = config.dram_bus_bytes
        self.memories = [Memory(shape=8 * bus, depth=bank_depth(config), init=init)
                         for init in _bank_images(config, image)]
        self.rows = RowState(config)
        self.pim_rows = (RowState(config, config.pim_row_buffers) if config.pim_mode == "dual"
                         else self.rows)
        # elaborated with this model: no warnings of their own when only the model is unused
        self.rows._MustUse__silence = self.pim_rows._MustUse__silence = True
        nch = config.dram_channels
        self.t_col = Array(Signal(TIME_BITS, name=f"t_col_{c}") for c in range(nch))
        self.bg_col = Array(Signal(exact_log2(config.dram_bank_groups), name=f"bg_col_{c}")
                            for c in range(nch))

    def _members(self, config):
        assert max(config.t_rcd, config.t_ccd_l) < TIME_ORIGIN
        return {"bus": In(MemBusSignature(config)), "host": In(DramHostSignature(config)),
                "pim": In(PimDramSignature(config)), "now": Out(TIME_BITS)}

    def _decode(self, beat):
        """``(index, channel, bank, row, word)`` of a beat address (Values)."""
        cfg = self._cfg
        cpr = exact_log2(cfg.dram_row_bytes // cfg.dram_bus_bytes)
        chb, bkb = exact_log2(cfg.dram_channels), exact_log2(cfg.dram_banks)
        ch = beat[cpr:cpr + chb]
        bank = beat[cpr + chb:cpr + chb + bkb]
        row = beat[cpr + chb + bkb:]
        return Cat(bank, ch), ch, bank, row, Cat(beat[:cpr], row)

    def elaborate(self, platform):
        cfg = self._cfg
        bus, host = self.bus, self.host
        m = Module()
        m.submodules.rows = rows = self.rows
        if self.pim_rows is not rows:
            m.submodules.pim_rows = self.pim_rows
        wiring.connect(m, wiring.flipped(self.pim.rows), self.pim_rows.grp)
        req = rows.req

        now = Signal(TIME_BITS, init=TIME_ORIGIN)
        m.d.sync += now.eq(now + 1)
        m.d.comb += [self.now.eq(now), self.pim.now.eq(now)]

        # -- timing of the beat on the bus --------------------------------------------------------
        idx, ch, bank, row, word = self._decode(bus.adr)
        bg = bank[:exact_log2(cfg.dram_bank_groups)]   # bank k is in group k % bank_groups
        valid, first, cyc_q = Signal(), Signal(), Signal()
        m.d.sync += cyc_q.eq(bus.cyc)
        # an instruction's first beat: the cycle ``cyc`` rises (mem_bus)
        m.d.comb += [valid.eq(bus.cyc & bus.stb), first.eq(bus.cyc & ~cyc_q)]
        start = Signal(TIME_BITS)   # the instruction's start, latched at its first beat
        m.d.comb += [req.ch.eq(ch), req.bank.eq(bank), req.row.eq(row),
                     req.start.eq(Mux(first, now - DMA_SETUP_CYCLES, start))]
        ccd = Mux(self.bg_col[ch] == bg, cfg.t_ccd_l, cfg.t_ccd_s)
        col = Signal(TIME_BITS)     # the beat's column command cycle (valid in its arrival)
        # on a hit ``act`` is the open row's activation: a PIM_ACT's may be recent (t_rcd)
        m.d.comb += col.eq(time_max(now, req.act + cfg.t_rcd, self.t_col[ch] + ccd))

        waiting = Signal()          # the beat's cycle was computed: ``ready`` at ``target``
        target = Signal(TIME_BITS)
        with m.If(waiting):
            m.d.comb += bus.ack.eq(now == target)
        with m.Elif(valid):         # arrival: compute, record the commands in the state now
            m.d.comb += [bus.ack.eq(col == now), req.activate.eq(~req.hit), req.access.eq(1),
                         req.t_access.eq(col)]
            m.d.sync += [self.t_col[ch].eq(col), self.bg_col[ch].eq(bg)]
            with m.If(first):
                m.d.sync += start.eq(req.start)
            with m.If(col != now):
                m.d.sync += [waiting.eq(1), target.eq(col)]
        xfer = Signal()
        m.d.comb += xfer.eq(valid & bus.ack)
        with m.If(xfer):
            m.d.sync += waiting.eq(0)

        # -- storage: per bank a bus and a PIM read (comb) and write port, a host write and read
        # port
        pim = self.pim
        hidx, _, _, _, hword = self._decode(host.addr)
        hsel = Signal.like(hidx)    # the bank of the previous cycle's host address
        m.d.sync += hsel.eq(hidx)
        bus_reads, host_reads = [], []
        for i, mem in enumerate(self.memories):
            m.submodules[f"bank_{i}"] = mem
            rd = mem.read_port(domain="comb")
            wr = mem.write_port(granularity=8)
            hw = mem.write_port()
            hr = mem.read_port()
            m.d.comb += [
                rd.addr.eq(word), wr.addr.eq(word), wr.data.eq(bus.dat_w),
                wr.en.eq(Mux(xfer & bus.we & (idx == i), bus.sel, 0)),
                hw.addr.eq(hword), hw.data.eq(host.wdata), hw.en.eq(host.we & (hidx == i)),
                hr.addr.eq(hword),
            ]
            bus_reads.append(rd.data)
            host_reads.append(hr.data)
            prd = mem.read_port(domain="comb")
            pwr = mem.write_port(granularity=8)
            m.d.comb += [prd.addr.eq(pim.addr), pim.rdata[i].eq(prd.data),
                         pwr.addr.eq(pim.addr), pwr.data.eq(pim.wdata[i // cfg.dram_banks]),
                         pwr.en.eq(Mux(pim.we[i], pim.wmask, 0))]
        m.d.comb += [bus.dat_r.eq(Array(bus_reads)[idx]), host.rdata.eq(Array(host_reads)[hsel])]
        return m
