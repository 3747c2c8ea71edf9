"""DRAM row state in RTL: per-bank row buffers and per-channel activation windows on timestamps.

The RTL mirror of :class:`mixpim.models.dram_timing.RowState` (same members, same rule). Time is a
free-running cycle count (``now`` of :class:`~.dram.DramModel`) that starts at
:data:`TIME_ORIGIN` and never wraps within a run; every timestamp register resets to 0, which lies
further in the past than any constraint reaches, so 0 means "never" (the model's ``NEVER``).

State, for each of the ``dram_channels * dram_banks`` banks (index ``ch * dram_banks + bank``):
``open_valid`` / ``open_row`` (the row in the row buffer), ``t_act`` (its activation) and
``t_last`` (the last column access to the bank); for each channel the cycles of its last four
activations ``acts[ch][0..3]``, oldest first.

A requester names a bank, a row and its instruction's ``start``; combinationally it gets ``hit``
(the row is open) and ``act``, the cycle an activation of that row takes if issued now:

* precharge at ``max(start, t_act + t_ras, t_last + 1)`` when the bank has a row open, then
  ``earliest = precharge + t_rp``; with no row open ``earliest = start``;
* ``act = max(earliest, acts[ch][3] + 1, acts[ch][0] + t_faw)``.

Strobes (effective from the next cycle): ``activate`` opens the row at ``act`` and shifts ``act``
into the channel's window; ``access`` records a column access to the bank at ``t_access``.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .common import ConfigComponent, check_config

__all__ = ["TIME_BITS", "TIME_ORIGIN", "time_max", "RowRequestSignature", "RowState"]

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
    hit : In(1), the bank has ``row`` open
    act : In(TIME_BITS), when not ``hit``: the cycle of the row's activation if it is issued now
    activate : Out(1), strobe: open ``row`` at ``act`` (the channel's activation window shifts)
    access : Out(1), strobe: a column access to the bank at ``t_access``
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


class RowState(ConfigComponent):
    """Row buffers of every bank and activation windows of every channel (module docstring).

    Arguments
    ---------
    config : TileConfig

    Members
    -------
    req : In(:class:`RowRequestSignature`)
    open_valid, open_row, t_act, t_last : ``Array`` of Signals, one per bank (index
        ``ch * dram_banks + bank``), for testbenches and other readers
    acts : list (per channel) of 4 Signals, the last four activations, oldest first
    """

    def __init__(self, config):
        super().__init__(config)
        n = config.dram_channels * config.dram_banks
        self.open_valid = Array(Signal(name=f"open_valid_{i}") for i in range(n))
        self.open_row = Array(Signal(row_bits(config), name=f"open_row_{i}") for i in range(n))
        self.t_act = Array(Signal(TIME_BITS, name=f"t_act_{i}") for i in range(n))
        self.t_last = Array(Signal(TIME_BITS, name=f"t_last_{i}") for i in range(n))
        self.acts = [[Signal(TIME_BITS, name=f"acts_{c}_{k}") for k in range(4)]
                     for c in range(config.dram_channels)]

    def _members(self, config):
        assert max(config.t_ras, config.t_faw) < TIME_ORIGIN
        return {"req": In(RowRequestSignature(config))}

    def elaborate(self, platform):
        cfg = self._cfg
        req = self.req
        m = Module()
        idx = req.bank | (req.ch << exact_log2(cfg.dram_banks))   # ch * banks + bank
        is_open = self.open_valid[idx]
        m.d.comb += req.hit.eq(is_open & (self.open_row[idx] == req.row))

        precharge = time_max(req.start, self.t_act[idx] + cfg.t_ras, self.t_last[idx] + 1)
        earliest = Mux(is_open, precharge + cfg.t_rp, req.start)
        acts = Array(Array(w) for w in self.acts)[req.ch]
        m.d.comb += req.act.eq(time_max(earliest, acts[3] + 1, acts[0] + cfg.t_faw))

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
        return m
