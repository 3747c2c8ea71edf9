"""DRAM row state in RTL: per-bank row buffers and per-channel activation windows on timestamps.

The RTL mirror of :class:`mixpim.models.dram_timing.RowState` (same members, same rule). Time is a
free-running cycle count (``now`` of :class:`~.dram.DramModel`) that starts at
:data:`TIME_ORIGIN` and never wraps within a run; every timestamp register resets to 0, which lies
further in the past than any constraint reaches, so 0 means "never" (the model's ``NEVER``).

State, for each of the ``dram_channels * dram_banks * buffers`` entries (``buffers`` row buffers
per bank, 1 or 2; entry ``(ch * dram_banks + bank) * buffers + row % buffers`` holds the rows of
that parity, the model's ``RowState.entry``): ``open_valid`` / ``open_row`` (the row in the row
buffer), ``t_act`` (its activation) and ``t_last`` (the last column access to it); for each
channel the cycles of its last four activations ``acts[ch][0..3]``, oldest first.

A requester names a bank, a row and its instruction's ``start``; combinationally it gets ``hit``
(the row is open in its entry) and ``act``, the row's activation: on a hit the open row's
``t_act`` (which may lie in the future: a ``PIM_ACT`` issued it ahead; the access waits until
``t_rcd`` after it, the model's ``RowState.ready``), else the cycle an activation issued now
takes:

* precharge at ``max(start, t_act + t_ras, t_last + 1)`` when the entry has a row open, then
  ``earliest = precharge + t_rp``; with no row open ``earliest = start``;
* ``act = max(earliest, acts[ch][3] + 1, acts[ch][0] + t_faw)``.

Strobes (effective from the next cycle): ``activate`` opens the row at ``act`` and shifts ``act``
into the channel's window; ``access`` records a column access to the entry at ``t_access``.

A second request interface, ``grp`` (:class:`GroupRequestSignature`), serves the PIM unit: the
rule of :meth:`~mixpim.models.dram_timing.RowState.activate_group`, applied as
:func:`mixpim.models.pim_timing.pim_cycles` applies it. For every channel of a channel mask at
once (channels share nothing), bank group by bank group in group order, the banks of a bank mask
whose entry for ``row`` (``row % buffers``) does not hold it are opened by one ``G_ACT``: each
open one precharged as above, the command at the latest of their ``earliest`` cycles and the
channel's window, shifted into the window once. ``ready[ch]`` is the latest ``act + t_rcd`` of
the channel's commands and of ``t_act + t_rcd`` of its masked entries that hold the row already
(``start`` when neither binds). This is one combinational chain of ``dram_bank_groups`` steps
per channel; the ``open`` strobe records it all at the clock edge, and ``access`` sets ``t_last``
of the entry of every masked bank to its channel's ``t_access``. The two interfaces are never
active in one cycle (the DMA and the PIM unit share one row state only in ``pim_mode`` "single",
where they never execute at the same time).
"""

from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .common import ConfigComponent, check_config

__all__ = ["TIME_BITS", "TIME_ORIGIN", "time_max", "row_bits", "RowRequestSignature",
           "GroupRequestSignature", "RowState"]

#: Width of every timestamp: the counter never wraps within 2**40 - TIME_ORIGIN cycles, far more
#: than a run's 32-bit status counters reach.
TIME_BITS = 40
#: Value of the cycle counter in the first cycle of a run (the golden model's cycle 0). Larger
#: than any timing parameter (each at most 255, models/config.py) plus one, so a timestamp of 0
#: plus any of them stays below every real cycle: 0 is "never".
TIME_ORIGIN = 1 << 10


def time_max(*values):
    """The largest of ``values`` (timestamps, unsigned), as a ``TIME_BITS``-bit value."""
    out = values[0]
    for v in values[1:]:
        out = Mux(v > out, v, out)[:TIME_BITS]
    return out


def row_bits(config):
    """Width of a row number within a bank."""
    return max(1, ceil_log2(config.dram_rows))


class RowRequestSignature(wiring.Signature):
    """A request to :class:`RowState`, seen from the requester.

    Members
    -------
    ch : Out(log2 dram_channels), bank : Out(log2 dram_banks), row : Out(row bits)
        The bank and the row the requester wants open.
    start : Out(TIME_BITS), the requesting instruction's start: no precharge or activation is
        issued before it (look-ahead from the start, not from the request)
    hit : In(1), the bank has ``row`` open (in the row's entry)
    act : In(TIME_BITS), the row's activation: on a ``hit`` the open row's (perhaps ahead of
        ``now``; the access waits until ``act + t_rcd``), else the cycle of an activation
        issued now
    activate : Out(1), strobe: open ``row`` at ``act`` (the channel's activation window shifts)
    access : Out(1), strobe: a column access to the row's entry at ``t_access``
    t_access : Out(TIME_BITS)
    """

    def __init__(self, config):
        cfg = check_config(config)
        super().__init__({
            "ch": Out(exact_log2(cfg.dram_channels)),
            "bank": Out(exact_log2(cfg.dram_banks)),
            "row": Out(row_bits(cfg)),
            "start": Out(TIME_BITS),
            "hit": In(1),
            "act": In(TIME_BITS),
            "activate": Out(1),
            "access": Out(1),
            "t_access": Out(TIME_BITS),
        })


class GroupRequestSignature(wiring.Signature):
    """A group activation request to :class:`RowState` (the PIM unit's), seen from the requester.

    Members
    -------
    chans : Out(dram_channels), banks : Out(dram_banks)
        Masks: the banks ``banks`` of every channel of ``chans`` must hold ``row``.
    row : Out(row bits)
    start : Out(TIME_BITS), the requesting instruction's start (look-ahead from it)
    ready : In(ArrayLayout(TIME_BITS, dram_channels)), per channel: when its banks hold ``row``
        ready for access (the latest ``act + t_rcd`` of its ``G_ACT`` s and of the rows already
        open), ``start`` when nothing binds
    open : Out(1), strobe: issue the ``G_ACT`` s ``ready`` was computed for
    access : Out(1), strobe: the row's entries of the masked banks of channel ``ch`` were last
        accessed at ``t_access[ch]``
    t_access : Out(ArrayLayout(TIME_BITS, dram_channels))
    """

    def __init__(self, config):
        cfg = check_config(config)
        nch = cfg.dram_channels
        super().__init__({
            "chans": Out(nch),
            "banks": Out(cfg.dram_banks),
            "row": Out(row_bits(cfg)),
            "start": Out(TIME_BITS),
            "ready": In(data.ArrayLayout(TIME_BITS, nch)),
            "open": Out(1),
            "access": Out(1),
            "t_access": Out(data.ArrayLayout(TIME_BITS, nch)),
        })


class RowState(ConfigComponent):
    """Row buffers of every bank and activation windows of every channel (module docstring).

    Arguments
    ---------
    config : TileConfig
    buffers : int, 1 or 2
        Row buffers per bank (2: the PIM row buffers of ``pim_row_buffers`` 2).

    Members
    -------
    req : In(:class:`RowRequestSignature`), the DMA's (one bank per request)
    grp : In(:class:`GroupRequestSignature`), the PIM unit's (group activations)
    buffers : int
    open_valid, open_row, t_act, t_last : ``Array`` of Signals, one per entry (index
        ``(ch * dram_banks + bank) * buffers + row % buffers``), for testbenches and other
        readers
    acts : list (per channel) of 4 Signals, the last four activations, oldest first

    Raises
    ------
    ValueError
        If ``buffers`` is not 1 or 2.
    """

    def __init__(self, config, buffers=1):
        super().__init__(config)
        if buffers not in (1, 2):
            raise ValueError(f"buffers must be 1 or 2, not {buffers!r}")
        self.buffers = buffers
        n = config.dram_channels * config.dram_banks * buffers
        self.open_valid = Array(Signal(name=f"open_valid_{i}") for i in range(n))
        self.open_row = Array(Signal(row_bits(config), name=f"open_row_{i}") for i in range(n))
        self.t_act = Array(Signal(TIME_BITS, name=f"t_act_{i}") for i in range(n))
        self.t_last = Array(Signal(TIME_BITS, name=f"t_last_{i}") for i in range(n))
        self.acts = [[Signal(TIME_BITS, name=f"acts_{c}_{k}") for k in range(4)]
                     for c in range(config.dram_channels)]

    def _members(self, config):
        assert max(config.t_ras, config.t_faw) < TIME_ORIGIN
        return {"req": In(RowRequestSignature(config)), "grp": In(GroupRequestSignature(config))}

    def _parity(self, row):
        """The bits of ``row`` that select its entry of a bank (none for one buffer)."""
        return row[:exact_log2(self.buffers)]

    def elaborate(self, platform):
        req = self.req
        m = Module()
        idx = Cat(self._parity(req.row), req.bank, req.ch)   # the row's entry
        is_open = self.open_valid[idx]
        m.d.comb += req.hit.eq(is_open & (self.open_row[idx] == req.row))

        earliest = Mux(is_open, self._precharged(self.t_act[idx], self.t_last[idx], req.start),
                       req.start)
        acts = Array(Array(w) for w in self.acts)[req.ch]
        # a hit: the open row's activation (an access waits t_rcd after it, RowState.ready)
        m.d.comb += req.act.eq(Mux(req.hit, self.t_act[idx], self._command(earliest, acts)))

        with m.If(req.activate):
            m.d.sync += [
                self.open_valid[idx].eq(1),
                self.open_row[idx].eq(req.row),
                self.t_act[idx].eq(req.act),
                acts[0].eq(acts[1]), acts[1].eq(acts[2]), acts[2].eq(acts[3]),
                acts[3].eq(req.act),
            ]
        with m.If(req.access):
            m.d.sync += self.t_last[idx].eq(req.t_access)
        self._groups(m)
        return m

    def _precharged(self, t_act, t_last, start):
        """The earliest activation of an entry activated at ``t_act`` and last accessed at
        ``t_last`` after precharging its open row (from ``start``, ``t_ras`` after its
        activation, after its last access; then ``t_rp``)."""
        cfg = self._cfg
        return time_max(start, t_act + cfg.t_ras, t_last + 1) + cfg.t_rp

    def _command(self, earliest, window):
        """An activation command at ``earliest`` or later: one per cycle, four per ``t_faw`` in
        the channel whose last four activations are ``window`` (oldest first)."""
        return time_max(earliest, window[3] + 1, window[0] + self._cfg.t_faw)

    @staticmethod
    def _chain(m, a, b, name):
        """``max(a, b)`` as a new signal (timestamps; 0 is "never")."""
        out = Signal(TIME_BITS, name=name)
        m.d.comb += out.eq(time_max(a, b))
        return out

    def _groups(self, m):
        """The ``grp`` interface: per channel, a chain of one ``G_ACT`` per bank group."""
        cfg = self._cfg
        g = self.grp
        nb, ng, nbuf = cfg.dram_banks, cfg.dram_bank_groups, self.buffers
        par = self._parity(g.row)

        def pick(signals, q):
            """Bank ``q``'s (``ch * banks + bank``) entry for ``g.row``: a mux over its
            buffers, not over every entry."""
            own = signals[q * nbuf:(q + 1) * nbuf]
            return Array(own)[par] if nbuf > 1 else own[0]

        for ch in range(cfg.dram_channels):
            window = list(self.acts[ch])
            ready = g.start
            for group in range(ng):
                qs = [ch * nb + b for b in range(group, nb, ng)]   # bank b is in group b % ng
                need = {q: Signal(name=f"gact_need_{q}") for q in qs}
                earliest = g.start
                for q in qs:
                    valid, t_act = pick(self.open_valid, q), pick(self.t_act, q)
                    holds = valid & (pick(self.open_row, q) == g.row)
                    masked = g.chans[ch] & g.banks[q - ch * nb]
                    m.d.comb += need[q].eq(masked & ~holds)
                    # the chains go through signals: an expression used twice by each max
                    # would be duplicated in the Verilog at every step
                    pre = Signal(TIME_BITS, name=f"gact_pre_{q}")
                    m.d.comb += pre.eq(Mux(need[q] & valid,
                                           self._precharged(t_act, pick(self.t_last, q), g.start),
                                           0))
                    earliest = self._chain(m, earliest, pre, f"gact_earliest_{q}")
                    # open already, perhaps still opening (a PIM_ACT's): ready t_rcd after it
                    opened = Signal(TIME_BITS, name=f"gact_opened_{q}")
                    m.d.comb += opened.eq(Mux(masked & holds, t_act + cfg.t_rcd, 0))
                    ready = self._chain(m, ready, opened, f"gact_ready_{q}")
                issue = reduce(lambda a, b: a | b, need.values(), Const(0, 1))
                act = Signal(TIME_BITS, name=f"gact_{ch}_{group}")
                m.d.comb += act.eq(self._command(earliest, window))
                window = [Mux(issue, new, old) for old, new in zip(window, window[1:] + [act])]
                ready = self._chain(m, ready, Mux(issue, act + cfg.t_rcd, 0),
                                    f"gact_ready_{ch}_{group}")
                with m.If(g.open):
                    for q in qs:
                        with m.If(need[q]):
                            m.d.sync += [pick(self.open_valid, q).eq(1),
                                         pick(self.open_row, q).eq(g.row),
                                         pick(self.t_act, q).eq(act)]
            m.d.comb += g.ready[ch].eq(ready)
            with m.If(g.open):
                m.d.sync += [w.eq(v) for w, v in zip(self.acts[ch], window)]
            with m.If(g.access & g.chans[ch]):
                for b in range(nb):
                    with m.If(g.banks[b]):
                        m.d.sync += pick(self.t_last, ch * nb + b).eq(g.t_access[ch])
