"""DMA engine of the tile: executes one decoded LOAD or STORE between the memory port and a scratchpad.

Timing (docs/tile.md, "DRAM"): ``busy`` is high from the ``start`` cycle ``s`` to the ``done``
cycle ``last_col + t_cl`` inclusive, where ``last_col`` is the last beat's column command: the
duration :func:`mixpim.models.dram_timing.dma_cycles` charges. The engine is a counter machine:
the ``start`` cycle and ``DMA_SETUP_CYCLES - 1`` more are the setup, so the first beat arrives
exactly at ``s + DMA_SETUP_CYCLES`` (the DRAM model derives the instruction's start from that);
then one beat request is held on the memory port (:mod:`.mem_bus`, a Wishbone block cycle) at a
time, each next one in the cycle after the previous ``ack``, and the memory system (in
co-simulation the DRAM model, :mod:`.dram`) decides in which cycle each beat's column command (its
access, ``ack``) happens. After the last beat's ``ack`` the engine stays busy ``t_cl`` more cycles
(the CAS latency of the last data); ``done`` pulses in the last of them. The last scratchpad or
DRAM write happens at the clock edge that ends the last beat's ``ack`` cycle.

Data: the scratchpad words ``spad_addr ...`` form one contiguous byte stream (each word its DRAM
bytes, little-endian); the beats deliver (LOAD) or take (STORE) the stream's bytes in transfer
order, beat by beat, each beat the bytes ``[lo, hi)`` of its bus chunk that its transfer row
touches. A packer per scratchpad assembles whole words from the beats; an unpacker per scratchpad
prefetches words ahead of the beats.

Scratchpad ports are multi-word: one beat can carry up to ``ceil(bus_bytes / word_bytes)`` words
(a one-word port could not keep up with a beat per cycle), so each port has
:func:`port_lanes` lanes of consecutive words (1 lane when a word is at least a bus beat).
"""

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.dram_timing import DMA_SETUP_CYCLES
from ..models.isa import OPCODE_FORMATS, Opcode, Spad
from .common import ConfigComponent
from .decoder import operand_layout
from .mem_bus import MemBusSignature

__all__ = ["dma_layout", "port_lanes", "word_shape", "SpadWriteSignature", "SpadReadSignature",
           "DmaEngine"]

#: Scratchpads a LOAD may write and a STORE may read (the ISA's ``spad`` ``allowed`` values).
LOAD_SPADS = OPCODE_FORMATS[Opcode.LOAD].field("spad").allowed
STORE_SPADS = OPCODE_FORMATS[Opcode.STORE].field("spad").allowed
SPAD_ADDR_BITS = OPCODE_FORMATS[Opcode.LOAD].field("spad_addr").width
# the start cycle latches the operands and a STORE's first scratchpad read needs one more cycle
# before its first beat
assert DMA_SETUP_CYCLES >= 2


def dma_layout():
    """Operands of LOAD and STORE (the two formats share their fields)."""
    layout = operand_layout(Opcode.LOAD)
    assert layout == operand_layout(Opcode.STORE)
    return layout


def port_lanes(config, spad):
    """Words of scratchpad ``spad`` one port transfer carries: the most words one beat can touch."""
    wb = config.word_bytes(spad)
    return (wb - 1 + config.dram_bus_bytes) // wb


def word_shape(config, spad):
    """Shape of one word at the scratchpad's port: its DRAM bytes (LE), except ACC, whose words are
    ``cols`` ``acc_bits``-bit accumulators (the DMA sign-extends them to whole bytes)."""
    if Spad(spad) == Spad.ACC:
        return data.ArrayLayout(signed(config.acc_bits), config.cols)
    return unsigned(8 * config.word_bytes(spad))


class SpadWriteSignature(wiring.Signature):
    """A scratchpad write port, seen from the DMA: lane i writes ``data[i]`` to word ``addr + i``
    where ``en[i]`` is set (the set lanes are always the lowest ones).

    Members
    -------
    addr : Out(16), word address of lane 0
    en : Out(lanes), lane write enables
    data : Out(ArrayLayout(shape, lanes))
    """

    def __init__(self, shape, lanes):
        super().__init__({
            "addr": Out(SPAD_ADDR_BITS),
            "en": Out(lanes),
            "data": Out(data.ArrayLayout(shape, lanes)),
        })


class SpadReadSignature(wiring.Signature):
    """A scratchpad read port, seen from the DMA: ``en`` with ``addr`` in one cycle, ``data[i]`` =
    word ``addr + i`` in the next (synchronous read, latency 1). Lanes past the transfer's last
    word may be read; their data is ignored.

    Members
    -------
    addr : Out(16), word address of lane 0
    en : Out(1)
    data : In(ArrayLayout(shape, lanes))
    """

    def __init__(self, shape, lanes):
        super().__init__({
            "addr": Out(SPAD_ADDR_BITS),
            "en": Out(1),
            "data": In(data.ArrayLayout(shape, lanes)),
        })


class _State(enum.Enum, shape=2):
    IDLE = 0
    SETUP = 1   # the cycles after ``start`` before the first beat
    RUN = 2     # beats on the DRAM bus
    TAIL = 3    # the CAS latency after the last beat


def align_bytes(config, spad):
    """``g``: every byte offset a LOAD or STORE of ``spad`` shifts by (where a transfer row starts
    or ends in a beat, how many bytes wait in a packer) is a multiple of ``g = gcd(word bytes,
    dram_bus_bytes)``, a power of two: rows start at word multiples (the dispatcher checks
    ``dram_addr`` and ``stride``) and beats at bus multiples. So the shifters move ``g``-byte
    units, not bytes."""
    return math.gcd(config.word_bytes(spad), config.dram_bus_bytes)


def _shift(amount, g):
    """The bit shift of ``amount`` bytes, a count known to be a multiple of ``g``: its low bits
    are constant zero, so a shifter by it has no stages for them."""
    return Cat(Const(0, 3 + exact_log2(g)), amount[exact_log2(g):])


def _bytes_of(config, spad, word):
    """The DRAM bytes (a Value of ``8 * word_bytes`` bits) of one port word."""
    if Spad(spad) != Spad.ACC:
        return Value.cast(word)
    bits, eb = config.acc_bits, config.acc_elem_bytes
    return Cat(*(Cat(x, x[-1].replicate(8 * eb - bits))
                 for x in (Value.cast(word[j]) for j in range(config.cols))))


def _word_of(config, spad, raw):
    """The port word of DRAM bytes ``raw`` (``8 * word_bytes`` bits): ACC keeps each value's low
    ``acc_bits`` bits (a STORE's sign extension round-trips)."""
    if Spad(spad) != Spad.ACC:
        return raw
    eb = config.acc_elem_bytes
    return Cat(*(raw.word_select(j, 8 * eb)[:config.acc_bits] for j in range(config.cols)))


class DmaEngine(ConfigComponent):
    """Executes one LOAD or STORE at a time.

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_store`` / ``i_inst`` and start (only while ``busy`` is low)
    i_store : In(1), 1: STORE (scratchpad -> DRAM), 0: LOAD
    i_inst : In(:func:`dma_layout`), the decoded operands
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle (``t_cl`` after the last beat's ``ack``)
    dram : Out(:class:`~.mem_bus.MemBusSignature`), the tile's memory port (Wishbone classic)
    w_act, w_wgt, w_meta, w_acc, w_vparam : Out(:class:`SpadWriteSignature`), one per scratchpad
        a LOAD writes (``w_`` + lower-case name; ACC values keep the low ``acc_bits`` bits)
    r_act, r_acc : Out(:class:`SpadReadSignature`), one per scratchpad a STORE reads

    A ``spad`` the format does not allow (the decoder flags it) still spends the instruction's
    cycles but moves no data. Operands must pass ``check_instruction`` (the dispatcher's checks).
    """

    def _members(self, config):
        ports = {
            "start": In(1),
            "i_store": In(1),
            "i_inst": In(dma_layout()),
            "busy": Out(1),
            "done": Out(1),
            "dram": Out(MemBusSignature(config)),
        }
        for s in LOAD_SPADS:
            ports[f"w_{s.name.lower()}"] = Out(SpadWriteSignature(word_shape(config, s),
                                                                  port_lanes(config, s)))
        for s in STORE_SPADS:
            ports[f"r_{s.name.lower()}"] = Out(SpadReadSignature(word_shape(config, s),
                                                                 port_lanes(config, s)))
        return ports

    def elaborate(self, platform):
        cfg = self._cfg
        bus = cfg.dram_bus_bytes
        bus_bits = exact_log2(bus)
        inst = self.i_inst
        dram = self.dram
        m = Module()

        state = Signal(_State)
        store = Signal()
        spad = Signal.like(inst.spad)
        rows_left = Signal.like(inst.rows)
        stride = Signal.like(inst.stride)
        length = Signal(32)           # bytes per transfer row
        row_addr = Signal(32)         # DRAM byte address of the current transfer row
        beat = Signal(len(dram.adr))
        # cycles left in SETUP after this one; in TAIL, before ``done``
        count = Signal(range(max(DMA_SETUP_CYCLES - 1, cfg.t_cl, 1)))

        # geometry of the current transfer row and beat
        row_end = Signal(32)          # last byte of the row
        m.d.comb += row_end.eq(row_addr + length - 1)
        c0 = row_addr[bus_bits:]
        c1 = row_end[bus_bits:]
        lo = Signal(range(bus))
        hi = Signal(range(bus + 1))   # bytes [lo, hi) of the beat belong to the row
        m.d.comb += [
            lo.eq(Mux(beat == c0, row_addr[:bus_bits] if bus_bits else 0, 0)),
            hi.eq(Mux(beat == c1, (row_end[:bus_bits] if bus_bits else 0) + 1, bus)),
        ]
        row_last = beat == c1
        last = row_last & (rows_left == 1)
        xfer = Signal()               # a beat's access happens in this cycle
        m.d.comb += [
            dram.cyc.eq(state == _State.RUN),   # low between instructions: see mem_bus
            dram.stb.eq(state == _State.RUN),
            dram.adr.eq(beat),
            dram.we.eq(store),
            xfer.eq(dram.stb & dram.ack),
            self.busy.eq(self.start | (state != _State.IDLE)),
            self.done.eq((xfer & last) if cfg.t_cl == 0
                         else (state == _State.TAIL) & (count == 0)),
        ]

        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.start):
                    m.d.sync += [
                        state.eq(_State.SETUP),
                        count.eq(DMA_SETUP_CYCLES - 2),
                        store.eq(self.i_store),
                        spad.eq(inst.spad),
                        rows_left.eq(inst.rows),
                        stride.eq(inst.stride),
                        row_addr.eq(inst.dram_addr),
                        beat.eq(inst.dram_addr[bus_bits:]),
                    ]
                    with m.Switch(inst.spad):
                        for s in Spad:
                            with m.Case(s):
                                m.d.sync += length.eq(inst.words * cfg.word_bytes(s))
                        with m.Default():
                            m.d.sync += length.eq(inst.words)
            with m.Case(_State.SETUP):
                with m.If(count == 0):
                    m.d.sync += state.eq(_State.RUN)
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.Case(_State.RUN):
                with m.If(xfer):
                    with m.If(last):
                        if cfg.t_cl == 0:
                            m.d.sync += state.eq(_State.IDLE)
                        else:
                            m.d.sync += [state.eq(_State.TAIL), count.eq(cfg.t_cl - 1)]
                    with m.Elif(row_last):
                        next_addr = row_addr + stride
                        m.d.sync += [
                            rows_left.eq(rows_left - 1),
                            row_addr.eq(next_addr),
                            beat.eq(next_addr[bus_bits:]),
                        ]
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
            with m.Case(_State.TAIL):
                with m.If(count == 0):
                    m.d.sync += state.eq(_State.IDLE)
                with m.Else():
                    m.d.sync += count.eq(count - 1)

        starting = self.start & (state == _State.IDLE)
        for s in LOAD_SPADS:
            self._packer(m, s, getattr(self, f"w_{s.name.lower()}"), starting,
                         xfer & ~store & (spad == s), lo, hi)
        wdata = {s: self._unpacker(m, s, getattr(self, f"r_{s.name.lower()}"), starting,
                                   xfer & store & (spad == s), lo, hi,
                                   store & (spad == s) & (state != _State.IDLE))
                 for s in STORE_SPADS}
        with m.Switch(spad):
            for s in STORE_SPADS:
                with m.Case(s):
                    m.d.comb += dram.dat_w.eq(wdata[s])
        # bytes [lo, hi): (2**hi - 1) without the low lo bits
        m.d.comb += dram.sel.eq(((Const(1, bus + 1) << hi) - 1) & ~((Const(1, bus + 1) << lo) - 1))
        return m

    def _packer(self, m, s, port, starting, act, lo, hi):
        """LOAD: append each beat's bytes to a buffer, write out the whole words."""
        cfg = self._cfg
        bus, wb, lanes = cfg.dram_bus_bytes, cfg.word_bytes(s), port_lanes(cfg, s)
        g = align_bytes(cfg, s)
        name = s.name.lower()
        buf = Signal(8 * max(1, wb - 1), name=f"ld_{name}_buf")   # fewer than wb bytes wait here
        fill = Signal(range(wb), name=f"ld_{name}_fill")
        addr = Signal(SPAD_ADDR_BITS, name=f"ld_{name}_addr")
        rdata = self.dram.dat_r
        beat_bytes = Cat(*(Mux(i < hi, rdata.word_select(i, 8), 0) for i in range(bus)))
        incoming = Signal(8 * bus, name=f"ld_{name}_in")
        m.d.comb += incoming.eq(beat_bytes >> _shift(lo, g))
        new = Signal(8 * (wb - 1 + bus), name=f"ld_{name}_new")
        total = Signal(range(wb + bus), name=f"ld_{name}_total")
        m.d.comb += [
            new.eq(buf | (incoming << _shift(fill, g))),
            total.eq(fill + hi - lo),
        ]
        k = Signal(range(lanes + 1), name=f"ld_{name}_k")   # whole words completed by this beat
        m.d.comb += k.eq(sum(total >= i * wb for i in range(1, lanes + 1)))
        m.d.comb += [
            port.addr.eq(addr),
            port.en.eq(Mux(act, Cat(*(k > i for i in range(lanes))), 0)),
        ]
        m.d.comb += [port.data[i].eq(_word_of(cfg, s, new.word_select(i, 8 * wb))) for i in range(lanes)]
        with m.If(starting):
            m.d.sync += [buf.eq(0), fill.eq(0), addr.eq(self.i_inst.spad_addr)]
        with m.Elif(act):
            m.d.sync += [
                buf.eq(new >> (k * (8 * wb))),
                fill.eq(total - k * wb),
                addr.eq(addr + k),
            ]

    def _unpacker(self, m, s, port, starting, act, lo, hi, active):
        """STORE: prefetch words into a buffer, hand each beat its bytes.

        The buffer holds ``3 * span`` bytes (``span``: one read's bytes) as three slots of one
        read each, in stream order around a ring: a read lands whole in the next slot (no
        shifter on the write side: each slot is written by one source or not at all), and a
        beat takes its ``bus`` bytes from where the stream's next byte is, in ``g``-byte
        units (``g`` = :func:`align_bytes`), the read of this cycle straight from the port.
        """
        cfg = self._cfg
        bus, wb, lanes = cfg.dram_bus_bytes, cfg.word_bytes(s), port_lanes(cfg, s)
        g = align_bytes(cfg, s)
        name = s.name.lower()
        span = lanes * wb             # bytes of one read (>= bus)
        cap = 3 * span                # buffer bytes: never overrun or underrun (see below)
        unit = 8 * g                  # bits of a g-byte unit
        span_u, cap_u, bus_u = span // g, cap // g, bus // g
        slots = [Signal(8 * span, name=f"st_{name}_slot{k}") for k in range(3)]
        slot = Signal(range(3), name=f"st_{name}_slot")       # where the next read lands
        head = Signal(range(cap_u), name=f"st_{name}_head")   # the stream's next unit
        fill = Signal(range(cap + 1), name=f"st_{name}_fill")
        addr = Signal(SPAD_ADDR_BITS, name=f"st_{name}_addr")
        left = Signal(len(self.i_inst.rows) + len(self.i_inst.words), name=f"st_{name}_left")
        inflight = Signal(name=f"st_{name}_inflight")
        read = Cat(*(_bytes_of(cfg, s, port.data[i]) for i in range(lanes)))
        avail_n = Signal(range(cap + 1), name=f"st_{name}_avail_n")
        m.d.comb += avail_n.eq(fill + Mux(inflight, span, 0))
        # A read is issued while the buffer has room for it even if no beat drains it. Then the
        # bytes waiting never decrease while they are at most 2 * span, and otherwise stay above
        # span: at least span >= bus (a beat's bytes) from the first beat (one read in SETUP)
        # until the stream's words are all read; after that the buffer holds the rest of the
        # stream. A read lands in the slot after the waiting bytes, which leave it room.
        en = Signal(name=f"st_{name}_en")
        m.d.comb += en.eq(active & (left != 0) & (avail_n <= cap - span))
        m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
        n = Signal(range(bus + 1), name=f"st_{name}_n")
        m.d.comb += n.eq(hi - lo)
        m.d.sync += inflight.eq(en)

        def ring(x):                  # x mod cap_u for 0 <= x < 2 * cap_u
            return Mux(x >= cap_u, x - cap_u, x)

        stored = Cat(*slots)
        landing = Signal(range(cap_u), name=f"st_{name}_landing")   # the read's first unit
        m.d.comb += landing.eq(Mux(slot == 0, 0, Mux(slot == 1, span_u, 2 * span_u)))
        units = []                    # the stream's next bus_u units
        for j in range(bus_u):
            pos = Signal(range(cap_u), name=f"st_{name}_pos{j}")
            m.d.comb += pos.eq(ring(head + j))
            off = Signal(range(cap_u), name=f"st_{name}_off{j}")   # pos in the landing read
            m.d.comb += off.eq(ring(pos + cap_u - landing))
            fresh = inflight & (off < span_u)
            units.append(Mux(fresh, read.word_select(off, unit),
                             stored.word_select(pos, unit)))
        with m.If(starting):
            m.d.sync += [slot.eq(0), head.eq(0), fill.eq(0), addr.eq(self.i_inst.spad_addr),
                         left.eq(self.i_inst.rows * self.i_inst.words), inflight.eq(0)]
        with m.Else():
            with m.If(inflight):
                m.d.sync += slot.eq(Mux(slot == 2, 0, slot + 1))
                with m.Switch(slot):
                    for k in range(3):
                        with m.Case(k):
                            m.d.sync += slots[k].eq(read)
            with m.If(act):
                m.d.sync += [head.eq(ring(head + (n >> exact_log2(g)))), fill.eq(avail_n - n)]
            with m.Else():
                m.d.sync += fill.eq(avail_n)
            with m.If(en):
                m.d.sync += [addr.eq(addr + lanes), left.eq(Mux(left > lanes, left - lanes, 0))]
        return (Cat(*units) << _shift(lo, g))[:8 * bus]
