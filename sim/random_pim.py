"""The PIM part of the seeded random programs (:mod:`.random_program`): random legal operands of
PIM_GBUF, PIM_WRITE, PIM_GEMV, PIM_READ and PIM_ACT, the KV rows of the DRAM layout, and the
designed PIM errors.

Every range comes from the configuration (channels, banks, rows, row bytes, ``pim_lanes``,
``pim_gbuf_bytes``, ``pim_res_regs``, the ACT and ACC windows of the generator) and the field
widths of the ISA tables (:func:`~mixpim.models.isa.reach`); :func:`~mixpim.models.pim.pim_problem`
decides whether the configuration has PIM at all. Configurations with FP16 activations have it
too: a PIM_GBUF converts their 16-bit ACT lanes to INT8 (the generator's random FP16 ACT data
gives small integers, fractions that round, values beyond +-127 that saturate and now and then
inf/NaN, which give 0), and everything after the global buffer is the INT8 tile's.

**Valid PIM instructions** chain through the PIM unit's state so that results are rarely zero: a
GEMV (and a PIM_WRITE) mostly takes its channels and buffer bytes from a recent PIM_GBUF, a
PIM_READ its channels, banks and registers from a recent GEMV. A PIM_GBUF gathers one lane per
channel or copies packed words, each channel from its own ACT words (``act_stride`` > 0: apart,
adjacent or overlapping) or all from the same ones (``act_stride`` 0). A GEMV is a dot product or
a broadcast, overwriting or accumulating, over 1..all banks and channels; a PIM_READ reduces the
banks or not, with ``word_stride`` 1 or more and a ``chan_stride`` that puts the channels apart,
adjacent or overlapping (the later channel wins). PIM_WRITE and PIM_GEMV act on a byte of the
**KV region** (whole bank rows of random bytes after the other regions, which LOADs read and
STOREs overwrite too) or of the ACT and OUT regions (rows LOADs read and STOREs write), so DRAM
conflicts between the DMA and PIM units need tokens; sometimes on a row a PIM_WRITE wrote. A
PIM_ACT (no data, no tokens needed) opens the row of such a byte in 1..all banks and channels
(KV rows: the two adjacent bank rows have both parities, so with two PIM row buffers one opens
while GEMVs compute on the other), and the next PIM instruction is then mostly a PIM_WRITE /
PIM_GEMV on that byte, which finds the row opening (still ``t_rcd`` away after a precharge).

**Designed errors**: ``PIM_RANGE`` of kind ``channel``, ``bank``, ``row``, ``column``,
``buffer``, ``register``, ``lane``, or a GEMV's ``len``, ``col`` or (dot) ``gaddr`` not a
multiple of ``pim_lanes`` (``len``, ``col_align``, ``gaddr_align``; PIM_ACT among the
instructions of ``channel``, ``bank`` and ``row``), each made by moving one operand of a legal
instruction out of range (kinds the configuration cannot express are skipped); ``SPAD_RANGE`` of
a PIM_GBUF's ACT words or a PIM_READ's ACC words.
"""

from typing import NamedTuple

from ..models.dram_timing import dram_location
from ..models.isa import ErrorCode, Instruction, IsaError, Spad, reach
from ..models.pim import PIM_OPS, gbuf_words, pim_problem, pim_row_addr, read_words
from ..models.tile_timing import check_instruction

__all__ = ["PimGen", "pim_capable", "pim_features", "PIM_RANGE_KINDS"]

#: The designed PIM_RANGE errors (the ``variant`` after ``PIM_RANGE:``).
PIM_RANGE_KINDS = ("channel", "bank", "row", "column", "buffer", "register", "lane", "len",
                   "col_align", "gaddr_align")

GBUF, WRITE, GEMV, READ, ACT = PIM_OPS


def pim_capable(config):
    """Whether ``config`` executes PIM instructions (it has the PIM unit, and its
    ``pim_problem`` of the smallest legal PIM_READ is none): INT8 or FP16 activations."""
    return config.pim_unit and pim_problem(config, Instruction(READ, chans=1, banks=1, n=1)) is None


def pim_features(inst):
    """Labels of what a PIM instruction exercises (the summary's and the tests' coverage)."""
    op = inst.op
    if op not in PIM_OPS:
        return ()
    multi = inst.chans > 1
    if op == GBUF:
        return (("GBUF packed" if inst.packed else "GBUF gather"),) + (
            ("GBUF chans>1", "GBUF act_stride 0" if inst.act_stride == 0 else "GBUF act_stride>0")
            if multi else ())
    if op == WRITE:
        return ("WRITE",) + (("WRITE chans>1",) if multi else ())
    if op == GEMV:
        return (("GEMV bcast" if inst.bcast else "GEMV dot"),) + \
            (("GEMV accumulate",) if inst.accumulate else ()) + \
            (("GEMV banks>1",) if inst.banks > 1 else ()) + (("GEMV chans>1",) if multi else ())
    if op == READ:
        return (("READ reduce" if inst.reduce else "READ banks"),) + \
            (("READ word_stride>1",) if inst.word_stride > 1 else ()) + \
            (("READ chan_stride",) if multi else ())
    if op == ACT:
        return ("ACT",) + (("ACT banks>1",) if inst.banks > 1 else ()) + \
            (("ACT chans>1",) if multi else ())


class _Gbuf(NamedTuple):
    """Buffer bytes ``gaddr .. gaddr + len - 1`` of channels ``ch .. ch + chans - 1`` loaded."""
    ch: int
    chans: int
    gaddr: int
    len: int


class _Regs(NamedTuple):
    """Result registers ``res .. res + n - 1`` of banks ``bank ..`` of channels ``ch ..`` set."""
    ch: int
    chans: int
    bank: int
    banks: int
    res: int
    n: int


class PimGen:
    """Random PIM operands of one program; ``gen`` is the program generator (its config, rng,
    scratchpad windows, address helpers and DRAM regions)."""

    def __init__(self, gen):
        cfg = gen.cfg
        self.gen, self.cfg, self.rng = gen, cfg, gen.rng
        self.ok = pim_capable(cfg)
        lanes, gb, rb = cfg.pim_lanes, cfg.pim_gbuf_bytes, cfg.dram_row_bytes
        #: a dot product needs a vector of pim_lanes buffer bytes, a broadcast pim_lanes registers
        self.can_dot = lanes <= min(gb, rb, reach(GEMV, "len"))
        self.can_bcast = lanes <= min(cfg.pim_res_regs, rb, reach(GEMV, "len"))
        #: usual most bytes of one vector (longer ones now and then): a few lanes or groups
        self.cap = min(gb, rb, max(4 * lanes, 2 * cfg.group))
        self.gbufs, self.regs, self.writes = [], [], []  # recent PIM state, to read back
        self.ahead = None  # (bank, row, col) a PIM_ACT opened, for the next WRITE / GEMV
        self.touched = []  # DRAM byte addresses PIM_WRITEs and GEMVs used, for the DMA to use

    # -- the DRAM layout -------------------------------------------------------------------------

    def bank_row_bytes(self):
        """Bytes of one bank row over every channel and bank (what one PIM row index spans)."""
        cfg = self.cfg
        return cfg.dram_channels * cfg.dram_banks * cfg.dram_row_bytes

    def kv_region(self, at):
        """``(base, bytes)`` of the KV region: 1..2 whole bank rows at or after byte ``at`` (a
        bank row apart now and then), or None if the configuration has no PIM or no room."""
        if not self.ok:
            return None
        brb = self.bank_row_bytes()
        apart = int(self.rng.integers(0, 2))
        for rows, gap in ((2, apart), (1, apart), (1, 0)):
            base = (-(-at // brb) + gap) * brb
            if base + rows * brb <= self.cfg.dram_bytes:
                return base, rows * brb
        return None

    # -- random operands ---------------------------------------------------------------------------

    def _int(self, lo, hi):
        return self.gen._int(lo, hi)

    def _recent(self, items, p):
        """One of the last four ``items`` with probability ``p``, else None."""
        if items and self.rng.random() < p:
            return items[-self._int(1, min(4, len(items)))]
        return None

    def _sub(self, lo, n):
        """A sub-range ``(lo2, n2)`` of ``lo .. lo + n - 1``: often the whole range."""
        if self.rng.random() < 0.6:
            return lo, n
        n2 = self._int(1, n)
        return lo + self._int(0, n - n2), n2

    def _span(self, total, limit=None):
        """``(first, count)``: a range of ``count`` (at most ``limit``) of ``total`` items (channels,
        banks); often all of them."""
        limit = total if limit is None else min(limit, total)
        if limit == total and self.rng.random() < 0.4:
            return 0, total
        n = self._int(1, limit)
        return self._int(0, total - n), n

    def _length(self, m):
        """A byte count in 1..m: mostly whole lanes, sometimes short or odd; now and then up to
        ``m`` even beyond the usual cap."""
        cap = m if self.rng.random() < 0.05 else min(m, self.cap)
        lanes, x = self.cfg.pim_lanes, self.rng.random()
        if x < 0.6 and cap >= lanes:
            return lanes * self._int(1, cap // lanes)
        if x < 0.8:
            return self._int(1, min(8, cap))
        return self._int(1, cap)

    def _start(self, hi):
        """A first byte or register in 0..hi: often 0 or a multiple of pim_lanes."""
        x, lanes = self.rng.random(), self.cfg.pim_lanes
        if x < 0.35:
            return 0
        if x < 0.7:
            return lanes * self._int(0, hi // lanes)
        return self._int(0, hi)

    def _target(self):
        """``(bank, row, col)`` of a random byte of the KV, ACT or OUT region (rows the DMA also
        moves) or of a recent STORE, or of a row a PIM_WRITE wrote, or the byte whose row a
        PIM_ACT opened ahead."""
        gen, rng = self.gen, self.rng
        if self.ahead is not None and rng.random() < 0.8:
            ahead, self.ahead = self.ahead, None
            return ahead
        w = self._recent(self.writes, 0.25)
        if w is not None:
            return w
        stored = self._recent(gen.stored, 0.3)
        if stored is not None:
            addr = stored[0] + self._int(0, stored[1] - 1)
        else:
            names, p = (("KV", Spad.ACT, "OUT"), [0.6, 0.15, 0.25]) if "KV" in gen.region else \
                ((Spad.ACT, "OUT"), [0.4, 0.6])
            base, size = gen.region[names[int(rng.choice(len(names), p=p))]]
            addr = base + self._int(0, size - 1)
        _, bank, row, col = dram_location(self.cfg, addr)
        if rng.random() < 0.6:
            col -= col % self.cfg.pim_lanes
        return bank, row, col

    def op(self):
        """The next PIM opcode of a valid program: a GBUF first, mostly a GEMV before a READ, a
        WRITE or GEMV after an ACT."""
        rng = self.rng
        if not self.gbufs and rng.random() < 0.8:
            return GBUF
        if self.ahead is not None and rng.random() < 0.7:
            return GEMV if (self.can_dot or self.can_bcast) and rng.random() < 0.6 else WRITE
        p = {GBUF: 0.2, WRITE: 0.15, GEMV: 0.35 * (self.can_dot or self.can_bcast), READ: 0.3,
             ACT: 0.15}
        if not self.regs and rng.random() < 0.8:
            p[READ] = 0
        ops = list(p)
        w = [p[o] for o in ops]
        return ops[int(rng.choice(len(ops), p=[x / sum(w) for x in w]))]

    def fields(self, op):
        """The operands of a random legal PIM instruction ``op`` (recorded as PIM state)."""
        return {GBUF: self._gbuf, WRITE: self._write, GEMV: self._gemv, READ: self._read,
                ACT: self._act}[op]()

    def _gbuf(self):
        cfg, gen, rng = self.cfg, self.gen, self.rng
        packed = int(rng.random() < 0.4)
        # gather: channel ch + j reads lane lane + j, so at most `rows` channels
        ch, chans = self._span(cfg.dram_channels, None if packed else cfg.rows)
        lane = 0 if packed else self._int(0, cfg.rows - chans)
        depth = gen._depth(Spad.ACT)
        gb = cfg.pim_gbuf_bytes
        length = self._length(min(gb, depth * cfg.rows if packed else depth, reach(GBUF, "len")))
        gaddr = self._start(gb - length)
        words = gbuf_words(cfg, Instruction(GBUF, chans=1, len=length, packed=packed))
        stride = 0
        if chans > 1 and rng.random() < 0.6 and depth - words >= chans - 1:
            room = min((depth - words) // (chans - 1), reach(GBUF, "act_stride"))
            x = rng.random()  # channels apart (adjacent words, a gap) or overlapping
            stride = min(room, words) if x < 0.4 else self._int(1, room) if x < 0.7 else \
                self._int(1, max(1, min(room, words - 1)))
        elif chans == 1 and rng.random() < 0.2:
            stride = self._int(1, min(depth, reach(GBUF, "act_stride")))  # unused by one channel
        act_addr = gen._addr(Spad.ACT, depth - words - (chans - 1) * stride, p=0.85)
        self.gbufs.append(_Gbuf(ch, chans, gaddr, length))
        return dict(ch=ch, chans=chans, gaddr=gaddr, act_addr=act_addr, len=length, lane=lane,
                    packed=packed, act_stride=stride)

    def _channels(self, rec):
        """``(ch, chans)``: those of ``rec`` (a recent _Gbuf or _Regs; a sub-range) or random."""
        return self._sub(rec.ch, rec.chans) if rec is not None else self._span(self.cfg.dram_channels)

    def _write(self):
        cfg = self.cfg
        g = self._recent(self.gbufs, 0.8)
        ch, chans = self._channels(g)
        bank, row, col = self._target()
        rb, gb = cfg.dram_row_bytes, cfg.pim_gbuf_bytes
        gaddr = g.gaddr if g is not None and self.rng.random() < 0.7 else self._start(gb - 1)
        most = min(rb - col, gb - gaddr, reach(WRITE, "len"))
        if g is not None and g.gaddr == gaddr:
            most = min(most, g.len)
        length = self._length(most)
        self.writes.append((bank, row, col))
        self.touched.append(pim_row_addr(cfg, ch, bank, row) + col)
        return dict(ch=ch, chans=chans, bank=bank, row=row, col=col, gaddr=gaddr, len=length)

    def _gemv(self):
        cfg, rng = self.cfg, self.rng
        lanes, rb, gb, nregs = cfg.pim_lanes, cfg.dram_row_bytes, cfg.pim_gbuf_bytes, cfg.pim_res_regs
        bcast = int(self.can_bcast and (not self.can_dot or rng.random() < 0.4))
        bank, banks = self._span(cfg.dram_banks, gb if bcast else None)
        # mostly the elements of a recent GBUF: its bytes from a MAC step's byte 0 (dot); at
        # least one vector (dot) or one element per bank (bcast)
        step, need = (1, banks) if bcast else (lanes, lanes)
        fits = [x for x in self.gbufs[-4:] if x.gaddr + x.len - -(-x.gaddr // step) * step >= need]
        g = fits[-self._int(1, len(fits))] if fits and rng.random() < 0.95 else None
        ch, chans = self._channels(g)
        _, row, col = self._target()
        col = min(col - col % lanes, rb - lanes)  # whole MAC steps; room for one
        rmax, nmax, lmax = nregs - 1, reach(GEMV, "n"), reach(GEMV, "len") // lanes
        first = 0 if g is None else -(-g.gaddr // step) * step
        loaded = 0 if g is None else g.gaddr + g.len - first
        if bcast:  # len registers (whole lanes), n buffer elements (row vectors) per bank
            res = self._start(nregs - lanes)
            k = self._int(1, min((nregs - res) // lanes, (rb - col) // lanes, lmax,
                                 max(1, self.cap // lanes)))
            length = lanes * k
            most = loaded // banks if loaded >= banks else gb // banks
            n = self._int(1, min(most, (rb - col) // length, nmax, self.cap))
            elems = banks * n
        else:  # n registers, len buffer elements (whole lanes)
            res = self._start(rmax)
            most = loaded if loaded >= lanes else gb
            k = self._length(min(most, rb - col, lmax * lanes)) // lanes
            length = lanes * max(1, k)
            n = self._int(1, min(nregs - res, (rb - col) // length, nmax))
            elems = length
        lo, hi = first, min(first + loaded, gb) - elems
        if lo > hi:  # not loaded (or not all of it): anywhere
            lo, hi = 0, gb - elems
        gaddr = step * self._int(-(-lo // step), hi // step)
        regs = length if bcast else n
        self.regs.append(_Regs(ch, chans, bank, banks, res, regs))
        self.touched.append(pim_row_addr(cfg, ch, bank, row) + col)
        return dict(ch=ch, chans=chans, bank=bank, banks=banks, row=row, col=col, gaddr=gaddr,
                    len=length, n=n, res=res, bcast=bcast, accumulate=int(rng.random() < 0.4))

    def _read(self):
        cfg, gen, rng = self.cfg, self.gen, self.rng
        r = self._recent(self.regs, 0.85)
        ch, chans = self._channels(r)
        if r is not None:
            (bank, banks), (res, n) = self._sub(r.bank, r.banks), self._sub(r.res, r.n)
        else:
            bank, banks = self._span(cfg.dram_banks)
            res = self._int(0, cfg.pim_res_regs - 1)
            n = self._int(1, cfg.pim_res_regs - res)
        n = min(n, reach(READ, "n"))
        reduce = int(rng.random() < 0.5)
        depth = gen._depth(Spad.ACC)
        ws = 1 if rng.random() < 0.6 else self._int(2, min(4, reach(READ, "word_stride")))

        def span():  # ACC words from one channel's first word to its last, inclusive
            words = read_words(cfg, Instruction(READ, chans=1, banks=banks, n=n, reduce=reduce))
            return (words - 1) * ws + 1

        while span() > depth:  # fit the ACC window: fewer values, then denser words
            if n > 1:
                n = -(-n // 2)
            elif banks > 1 and not reduce:
                banks = -(-banks // 2)
            else:
                ws = 1
        s = span()
        cs = 0
        if chans > 1:  # channels adjacent, apart or overlapping (the later channel wins)
            x = rng.random()
            cs = s if x < 0.5 else s + self._int(1, 4) if x < 0.75 else self._int(0, max(0, s - 1))
            cs = min(cs, (depth - s) // (chans - 1), reach(READ, "chan_stride"))
        acc_addr = gen._wrote(Spad.ACC, gen._addr(Spad.ACC, depth - s - (chans - 1) * cs))
        return dict(ch=ch, chans=chans, bank=bank, banks=banks, res=res, n=n, reduce=reduce,
                    acc_addr=acc_addr, chan_stride=cs, word_stride=ws)

    def _act(self):
        cfg = self.cfg
        ch, chans = self._span(cfg.dram_channels)
        bank, banks = self._span(cfg.dram_banks)
        t_bank, row, col = self._target()
        # the next WRITE / GEMV's byte, in a bank the ACT opens
        self.ahead = (min(max(t_bank, bank), bank + banks - 1), row, col)
        return dict(ch=ch, chans=chans, bank=bank, banks=banks, row=row)

    # -- designed errors ---------------------------------------------------------------------------

    def range_error(self):
        """``(instruction, kind)``: a PIM instruction whose dispatch check is ``PIM_RANGE`` of one
        of :data:`PIM_RANGE_KINDS` (of those this configuration can express)."""
        kinds = list(PIM_RANGE_KINDS)
        for i in self.rng.permutation(len(kinds)):
            kind = kinds[int(i)]
            for _ in range(8):  # a few draws: some kinds fit only some legal starting points
                inst = self._out_of_range(kind)
                if inst is not None:
                    fault = check_instruction(self.cfg, inst)
                    if fault is not None and fault.code == ErrorCode.PIM_RANGE:
                        return inst, kind
        raise ValueError("no PIM_RANGE error found")  # unreachable: a channel beyond the last fits

    def _out_of_range(self, kind):
        """One draw of a PIM instruction with one operand moved out of range for ``kind`` (an
        Instruction, or None where this draw cannot express it)."""
        cfg, rng = self.cfg, self.rng
        nch, nb, rb, gb, nregs = (cfg.dram_channels, cfg.dram_banks, cfg.dram_row_bytes,
                                  cfg.pim_gbuf_bytes, cfg.pim_res_regs)
        lanes = cfg.pim_lanes
        ops = {"channel": PIM_OPS, "bank": (WRITE, GEMV, READ, ACT), "row": (WRITE, GEMV, ACT),
               "column": (WRITE, GEMV), "buffer": (GBUF, WRITE, GEMV), "register": (GEMV, READ),
               "lane": (GBUF,), "len": (GEMV,), "col_align": (GEMV,), "gaddr_align": (GEMV,)}[kind]
        op = ops[self._int(0, len(ops) - 1)]
        if op == GEMV and not (self.can_dot or self.can_bcast):
            return None
        f = self.fields(op)
        if kind == "lane":
            f["packed"] = 0
        if kind == "channel":
            f["ch"] = self._int(0, min(nch, reach(op, "ch")))
            f["chans"] = self._int(max(1, nch - f["ch"] + 1), nch - f["ch"] + 8)
        elif kind == "bank" and op == WRITE:
            f["bank"] = self._int(nb, nb + 8)
        elif kind == "bank":
            f["bank"] = self._int(0, min(nb, reach(op, "bank")))
            f["banks"] = self._int(max(1, nb - f["bank"] + 1), nb - f["bank"] + 8)
        elif kind == "row":
            f["row"] = self._int(cfg.dram_rows, cfg.dram_rows + 8)
        elif kind == "column" and op == WRITE:
            f["col"] = self._int(0, rb - 1) if rng.random() < 0.7 else self._int(rb, rb + 8)
            f["len"] = self._int(max(1, rb - f["col"] + 1), rb - f["col"] + 16)
        elif kind == "column":  # n vectors of len from col pass the row's end
            f["col"] = lanes * self._int(0, rb // lanes - 1)
            need = rb - f["col"] + 1  # bytes
            k = max(f["len"] // lanes, -(-need // (lanes * reach(GEMV, "n"))))
            f["len"] = lanes * k
            f["n"] = self._int(-(-need // f["len"]), -(-need // f["len"]) + 2)
        elif kind == "buffer" and op == GBUF:
            f["gaddr"] = self._int(0, gb - 1)
            f["len"] = self._int(gb - f["gaddr"] + 1, gb - f["gaddr"] + 16)
        elif kind == "buffer" and op == WRITE:  # the row holds the bytes, the buffer does not
            f["gaddr"] = self._int(max(0, gb - f["len"] + 1), min(gb + 8, reach(WRITE, "gaddr")))
        elif kind == "buffer":  # elements: len (dot, from a MAC step) or n per bank (bcast)
            elems, step = (f["banks"] * f["n"], 1) if f["bcast"] else (f["len"], lanes)
            lo = -(-max(0, gb - elems + 1) // step)
            f["gaddr"] = step * self._int(lo, min(gb + 8, reach(GEMV, "gaddr")) // step)
        elif kind == "register" and op == READ:
            f["res"] = self._int(0, min(nregs, reach(READ, "res")))
            f["n"] = self._int(max(1, nregs - f["res"] + 1), nregs - f["res"] + 8)
        elif kind == "register":  # registers: n (dot) or len (bcast)
            regs = f["len"] if f["bcast"] else f["n"]
            f["res"] = self._int(max(0, nregs - regs + 1), min(nregs + 8, reach(GEMV, "res")))
        elif kind == "lane":
            f["lane"] = self._int(max(0, cfg.rows - f["chans"] + 1), cfg.rows + 8)
        elif kind in ("len", "col_align", "gaddr_align"):  # not at a MAC step's byte 0
            if lanes == 1:
                return None
            name = kind.split("_")[0]
            if name == "gaddr":
                f["bcast"] = 0
            f[name] += self._int(1, lanes - 1)
        try:
            return Instruction(op, **f)
        except IsaError:  # a value beyond its field
            return None

    def spad_error(self):
        """``(instruction, name)``: a PIM_GBUF reading ACT words or a PIM_READ writing ACC words
        beyond the scratchpad (the footprint's SPAD_RANGE), or None."""
        cfg, gen = self.cfg, self.gen
        op = (GBUF, READ)[self._int(0, 1)]
        f = self.fields(op)
        if op == GBUF:
            words = gbuf_words(cfg, Instruction(GBUF, chans=1, len=f["len"], packed=f["packed"]))
            if f["chans"] > 1 and f["act_stride"] and self.rng.random() < 0.5:  # the last channel's
                lo = -(-(cfg.act_words - words - f["act_addr"] + 1) // (f["chans"] - 1))
                f["act_stride"] = self._int(max(1, lo), lo + 8)
            else:
                f["act_addr"] = gen._beyond(cfg.act_words, words)
            name = "ACT"
        else:
            words = read_words(cfg, Instruction(READ, chans=1, banks=f["banks"], n=f["n"],
                                                reduce=f["reduce"]))
            span = (words - 1) * f["word_stride"] + 1
            f["acc_addr"] = gen._beyond(cfg.acc_words, span)
            name = "ACC"
        try:
            inst = Instruction(op, **f)
        except IsaError:
            return None
        fault = check_instruction(cfg, inst)
        return (inst, f"{op.name}:{name}") if fault and fault.code == ErrorCode.SPAD_RANGE else None
