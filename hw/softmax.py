"""Softmax datapath of the vector unit: executes one VSOFT (a MAX, EXP or NORM pass of the integer
softmax, docs/numerics.md "Softmax on the vector unit") at a time, bit for bit as
:func:`mixpim.models.softmax.soft_apply` (with the ACT writes of
:func:`mixpim.models.vec_exec.exec_vsoft`) and busy for exactly
:func:`mixpim.models.tile_timing.vsoft_cycles`.

Registers kept between instructions: ``rmax`` (int32) and ``rsum`` (uint32, sums wrap), reset to
:class:`~mixpim.models.softmax.SoftState`'s values with the unit (the tile resets its units when a
run begins). ``first`` restarts its pass's register in the start cycle (MAX: ``rmax = INT32_MIN``,
EXP: ``rsum = 0``; NORM ignores it).

Schedule (cycle ``c`` counted from the ``start`` cycle; ``P`` = ``SOFT_DIV_CYCLES`` for NORM, else
0; ``w`` = ``c - P``; ``W`` the write cycles of NORM: ``ceil(count / rows) * vec_passes`` packed,
``words * cols`` with ``col``):

* NORM, ``c`` in ``0 .. P-1``: ``R = N // rsum`` by restoring division, one quotient bit per
  cycle (a 32-bit subtractor; ``N`` = ``DIVIDEND[pfmt]``; ``rsum == 0`` never subtracts, so
  ``R == 0``);
* ``c`` in ``P .. P+words-1``: read ACC[``acc_addr + w``] (``col``: ACC[``acc_addr + w * rows``];
  ``cols`` values) and VPARAM[``kparam + w*cols ..``] (their ``cols`` score multipliers);
* ``c + 1``: ``v = sat32(round_shift(x * kmult, kshift))`` per value (``cols`` multipliers of
  ``acc_bits`` x 16 bits);
* ``c + 2``: MAX: ``rmax = max(rmax, v ..)`` over the word's values below ``count``; EXP / NORM:
  ``e`` per value from ``d = clamp(rmax - v, 0, D_MAX)`` (``cols`` copies of the 32 x 16-bit
  ``EXP_TABLE`` ROM and a 0..15 right shifter); NORM keeps the ``e`` in the row buffer
  (``rows * cols`` x 16 bits: value ``t`` at entry ``t``);
* ``c + 3``: EXP: ``rsum += e ..`` (the word's values below ``count``). MAX and EXP end here
  (``done`` at ``c = words + 2``);
* NORM, ``c`` in ``P+words+2 .. P+words+1+W``: one pass over ``L`` = ``vec_lanes`` = ``rows /
  vec_passes`` lanes per cycle, lane ``l`` of pass ``p`` of word ``k`` being value ``k*rows +
  p*L + l``: read VPARAM[``vparam + k*rows + p*L ..``] (``L`` V multipliers) and compute ``q =
  round_shift(e * R, 9)`` of those values (``L`` multipliers of 16 x 32 bits). Packed, word
  ``k`` takes the ``vec_passes`` cycles ``k * vec_passes + p``; with ``col``, write ``x`` (from
  0, one a cycle) computes only the pass holding value ``x`` (``k`` = ``x // rows``, ``p`` =
  ``x % rows // L``);
* ``c + 1``: the value ``round_shift(q * vmult, vshift)`` of each lane (``L`` multipliers of
  38 x 16 bits) in ``pfmt`` (``sat8``; the 14-bit ``clip(.., 0, 16383)``'s high or low 7 bits;
  FP16 ``fp16_from_fixed``), 0 from value ``count`` on; then packed, the last pass writes word
  ``act_addr + k`` with lane ``i`` = value ``k*rows + i`` (every lane enabled; the earlier
  passes' lanes wait in registers); ``col``, every write: word ``act_addr + x`` with value ``x``
  (lane ``x % L`` of the pass) in lane ``lane`` only (``w_act_mask``). The last write is
  ``done``.

Output lanes (``w_act``): int8 on INT8 configurations; on FP16 configurations the unit writes the
ACT words' 16-bit lanes itself: FP16 bit patterns, the INT8, HI and LO values converted exactly
(they are integers in -128..127), FP16 values rounded to nearest even from ``q * 2**-16`` and
saturated at +-65504 (one :func:`~.vec_fixed.fp16_from_fixed` per lane serves both: an int8 value
``y`` is converted as ``y << 16``).

VPARAM lanes past the value ``count - 1`` (and ACC values past it) are read and ignored.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.isa import Opcode, ProbFormat, SoftFunc, Spad
from ..models.softmax import (D_MAX, DIGITS_MAX, DIVIDEND, EXP_FRAC_BITS, EXP_ONE, EXP_TABLE,
                              NORM_SHIFT, SOFT_DIV_CYCLES, SoftState)
from ..models.vec_fixed import FRAC
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .vec_fixed import fp16_from_fixed
from .vector_common import VPARAM_BITS, round_shift, sat_round_shift, saturate, vparam_layout

__all__ = ["SOFT_REG_BITS", "soft_layout", "soft_vparam_lanes", "soft_act_layout", "SoftmaxUnit"]

#: Width of rmax (int32), rsum (uint32) and v (sat32).
SOFT_REG_BITS = 32
_RESET = SoftState()
_E_BITS = EXP_ONE.bit_length()
_Q_BITS = max(((EXP_ONE * n + (1 << (NORM_SHIFT - 1))) >> NORM_SHIFT).bit_length()
              for n in DIVIDEND.values())
assert max(DIVIDEND.values()) < 1 << SOFT_DIV_CYCLES, "one quotient bit per division cycle"
assert SOFT_DIV_CYCLES >= 2 and len(EXP_TABLE) == 1 << EXP_FRAC_BITS
assert max(EXP_TABLE) < 1 << _E_BITS
assert DIGITS_MAX == (1 << 14) - 1  # HI / LO: two 7-bit digits
#: ``N`` of INT8 probabilities and of the others (FP16, HI, LO share one).
_N_INT8 = DIVIDEND[ProbFormat.INT8]
_N_OTHER = DIVIDEND[ProbFormat.FP16]
assert all(DIVIDEND[f] == _N_OTHER for f in ProbFormat if f != ProbFormat.INT8)


def soft_layout():
    """Operands of VSOFT (from the ISA)."""
    return operand_layout(Opcode.VSOFT)


def soft_vparam_lanes(config):
    """VPARAM words the vector unit reads per cycle: ``cols`` score multipliers, or the
    ``vec_lanes`` V multipliers of a NORM write pass; 1 on a tile without the softmax datapath
    (VEC and VNORM read one word)."""
    return max(config.vec_lanes, config.cols) if config.softmax_unit else 1


def soft_act_layout(config):
    """The ``rows`` lanes of an ACT word the unit writes: int8, or FP16 bit patterns (uint16) on
    FP16 configurations (the ACT word's own lanes)."""
    return data.ArrayLayout(unsigned(16) if config.act_format == "fp16" else signed(8), config.rows)


class _State(enum.Enum, shape=2):
    IDLE = 0
    DIV = 1    # NORM: the division
    READ = 2   # ACC words after the first
    TAIL = 3   # the pipeline after the last read (NORM: and the ACT writes)


def _exp(rmax, v):
    """``e`` of one value: ``EXP_TABLE[d % 32] >> (d // 32)``, ``d = clamp(rmax - v, 0, D_MAX)``."""
    table = Const(sum(e << (_E_BITS * k) for k, e in enumerate(EXP_TABLE)),
                  _E_BITS * len(EXP_TABLE))
    diff = rmax - v
    d = Mux(diff < 0, 0, Mux(diff > D_MAX, D_MAX, diff))[:D_MAX.bit_length()]
    return table.word_select(d[:EXP_FRAC_BITS], _E_BITS) >> d[EXP_FRAC_BITS:]


def _max(m, values, name):
    """The largest of ``values`` (signed, ``SOFT_REG_BITS``): a balanced tree of comparisons, each
    result a signal (as one expression, every level would repeat its operands: 2**n nodes)."""
    level, depth = list(values), 0
    while len(level) > 1:
        pairs = [level[k:k + 2] for k in range(0, len(level), 2)]
        level = []
        for k, pair in enumerate(pairs):
            if len(pair) == 1:
                level.append(pair[0])
                continue
            top = Signal(signed(SOFT_REG_BITS), name=f"{name}_{depth}_{k}")
            m.d.comb += top.eq(Mux(pair[0] > pair[1], pair[0], pair[1]))
            level.append(top)
        depth += 1
    return level[0]


def _clamp(x, lo, hi):
    return Mux(x > hi, hi, Mux(x < lo, lo, x))


class SoftmaxUnit(ConfigComponent):
    """Executes one VSOFT at a time (the schedule above).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_inst`` and start (only while ``busy`` is low)
    i_inst : In(:func:`soft_layout`), the decoded operands (must pass ``check_instruction``)
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 word of ``cols`` values
    r_vparam : Out(SpadReadSignature), :func:`soft_vparam_lanes` consecutive words
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 ACT word of :func:`soft_act_layout` lanes
        (int8, or FP16 bit patterns on FP16 configurations)
    w_act_mask : Out(rows), lane ``i`` of ``w_act`` is written (with ``w_act.en``): every lane
        for a packed NORM, only lane ``lane`` for ``col``; the other lanes keep their contents
    o_rmax : Out(signed(32)), o_rsum : Out(32), the registers (updated at the end of their pass)
    """

    def _members(self, config):
        return {
            "start": In(1),
            "i_inst": In(soft_layout()),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), soft_vparam_lanes(config))),
            "w_act": Out(SpadWriteSignature(soft_act_layout(config), 1)),
            "w_act_mask": Out(config.rows),
            "o_rmax": Out(signed(SOFT_REG_BITS)),
            "o_rsum": Out(SOFT_REG_BITS),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        rows, cols = cfg.rows, cfg.cols
        passes, nl = cfg.vec_passes, cfg.vec_lanes  # NORM writes: lane l of pass p is p * nl + l
        lp = exact_log2(passes)
        fp16 = cfg.act_format == "fp16"
        m = Module()

        rmax = Signal(signed(SOFT_REG_BITS), init=_RESET.rmax)
        rsum = Signal(SOFT_REG_BITS, init=_RESET.rsum)
        m.d.comb += [self.o_rmax.eq(rmax), self.o_rsum.eq(rsum)]

        state = Signal(_State)
        idle = state == _State.IDLE
        go = Signal()
        m.d.comb += [go.eq(self.start & idle), self.busy.eq(self.start | ~idle)]
        inst = Signal(soft_layout())
        # the operands: from i_inst in the start cycle (MAX/EXP read there), then registered
        cur = data.View(soft_layout(), Mux(idle, self.i_inst.as_value(), inst.as_value()))
        norm = cur.func == SoftFunc.NORM
        with m.If(go):
            m.d.sync += inst.eq(self.i_inst)
            with m.If(self.i_inst.first & (self.i_inst.func == SoftFunc.MAX)):
                m.d.sync += rmax.eq(-(1 << (SOFT_REG_BITS - 1)))
            with m.If(self.i_inst.first & (self.i_inst.func == SoftFunc.EXP)):
                m.d.sync += rsum.eq(0)

        # -- NORM: R = N // rsum, quotient bits MSB first; quo holds the dividend's unused bits,
        # then R (stable until the next NORM)
        step = Signal(range(SOFT_DIV_CYCLES))
        rem = Signal(SOFT_DIV_CYCLES)
        quo = Signal(SOFT_DIV_CYCLES)
        r_in = Mux(go, 0, rem)
        a_in = Mux(go, Mux(cur.pfmt == ProbFormat.INT8, _N_INT8, _N_OTHER), quo)
        shifted = Signal(SOFT_DIV_CYCLES + 1)
        take = Signal()
        m.d.comb += [shifted.eq(Cat(a_in[-1], r_in)), take.eq((rsum != 0) & (shifted >= rsum))]
        with m.If((go & norm) | (state == _State.DIV)):
            m.d.sync += [rem.eq(Mux(take, shifted - rsum, shifted)), quo.eq(Cat(take, a_in[:-1]))]

        # -- reads: one ACC word and its score multipliers per cycle
        w = Signal.like(inst.words)                       # ACC word read this cycle
        t0 = Signal(len(w) + cols.bit_length())           # its first value (w * cols)
        aoff = Signal(len(cur.acc_addr))                  # its offset: w, or w * rows (col)
        reading = Signal()
        last_rd = Signal()
        m.d.comb += [reading.eq((go & ~norm) | (state == _State.READ)),
                     last_rd.eq(w + 1 == cur.words)]
        with m.If(reading):
            m.d.sync += [w.eq(w + 1), t0.eq(t0 + cols), aoff.eq(aoff + Mux(cur.col, rows, 1))]
            m.d.comb += [self.r_acc.en.eq(1), self.r_vparam.en.eq(1)]
        m.d.comb += self.r_acc.addr.eq(cur.acc_addr + aoff)

        done = Signal()
        m.d.comb += self.done.eq(done)
        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.start):
                    m.d.sync += state.eq(Mux(norm, _State.DIV,
                                             Mux(last_rd, _State.TAIL, _State.READ)))
                    m.d.sync += step.eq(1)
            with m.Case(_State.DIV):
                m.d.sync += step.eq(step + 1)
                with m.If(step == SOFT_DIV_CYCLES - 1):
                    m.d.sync += state.eq(_State.READ)
            with m.Case(_State.READ):
                with m.If(last_rd):
                    m.d.sync += state.eq(_State.TAIL)
            with m.Case(_State.TAIL):
                with m.If(done):
                    m.d.sync += [state.eq(_State.IDLE), w.eq(0), t0.eq(0), aoff.eq(0)]

        # -- c + 1: v per value (valid lanes: value index < count)
        rd_valid, rd_last, rd_w = Signal(), Signal(), Signal.like(w)
        rd_mask = Signal(cols)
        m.d.sync += [rd_valid.eq(reading), rd_last.eq(reading & last_rd), rd_w.eq(w),
                     rd_mask.eq(Cat(t0 + j < cur.count for j in range(cols)))]
        v = Signal(data.ArrayLayout(signed(SOFT_REG_BITS), cols))
        v_valid, v_last, v_w, v_mask = Signal(), Signal(), Signal.like(w), Signal(cols)
        m.d.sync += [v_valid.eq(rd_valid), v_last.eq(rd_last), v_w.eq(rd_w), v_mask.eq(rd_mask)]
        for j in range(cols):
            km = data.View(vparam_layout(), self.r_vparam.data[j])
            m.d.sync += v[j].eq(sat_round_shift(m, self.r_acc.data[0][j] * km.mult, km.shift,
                                                SOFT_REG_BITS, f"v_{j}"))

        # -- c + 2: MAX updates rmax; EXP/NORM: e per value (NORM: into the row buffer)
        e = Signal(data.ArrayLayout(unsigned(_E_BITS), cols))
        e_valid, e_last, e_mask = Signal(), Signal(), Signal(cols)
        m.d.sync += [e_valid.eq(v_valid), e_last.eq(v_last), e_mask.eq(v_mask)]
        e_now = [Signal(_E_BITS, name=f"e_now_{j}") for j in range(cols)]
        m.d.comb += [e_now[j].eq(_exp(rmax, v[j])) for j in range(cols)]
        m.d.sync += e.eq(Cat(e_now))
        buf = Signal(rows * cols * _E_BITS)  # e of value t at entry t
        func = inst.func
        lo = -(1 << (SOFT_REG_BITS - 1))  # neutral for the lanes past count
        new_max = _max(m, [rmax] + [Mux(v_mask[j], v[j], lo) for j in range(cols)], "max")
        with m.If(v_valid):
            with m.If(func == SoftFunc.MAX):
                m.d.sync += rmax.eq(new_max)
            with m.If(func == SoftFunc.NORM):
                m.d.sync += buf.word_select(v_w, cols * _E_BITS).eq(Cat(e_now))

        # -- c + 3: EXP accumulates (wrapping at 32 bits); MAX and EXP are done
        with m.If(e_valid & (func == SoftFunc.EXP)):
            m.d.sync += rsum.eq(sum((Mux(e_mask[j], e[j], 0) for j in range(cols)), rsum))

        # -- NORM writes: from the cycle after the last e, q of one pass (nl values of a word of e)
        # per cycle; packed, a word's passes one after another, by column the pass holding value
        # x = pbase + sel (each pass of a word reused for nl writes) ...
        writing = Signal()
        kp = Signal(range(cols * passes + 1))              # pass of e (word kp >> lp, pass kp[:lp])
        pbase = Signal(range(rows * cols + rows + 1))      # its first value (kp * nl)
        sel = Signal(range(max(nl, 2)))                    # col: the value's lane in the pass
        x = Signal(range(rows * cols + 1))                 # col: the value (and ACT word) written
        with m.If(v_valid & v_last & (func == SoftFunc.NORM)):
            m.d.sync += writing.eq(1)
        q = Signal(data.ArrayLayout(unsigned(_Q_BITS), nl))
        q_valid, q_last, q_mask = Signal(), Signal(), Signal(nl)
        q_off, q_sel = Signal(len(x)), Signal.like(sel)
        q_pass = Signal(range(passes)) if passes > 1 else None  # (no zero-width signal)
        word_end = pbase + nl >= inst.count  # the last pass of the word holding value count - 1
        if passes > 1:
            word_end &= kp[:lp] == passes - 1
            m.d.sync += q_pass.eq(kp[:lp])
        wr_last = Mux(inst.col, x + 1 == inst.words * cols, word_end)
        m.d.sync += [q_valid.eq(writing), q_last.eq(writing & wr_last),
                     q_off.eq(Mux(inst.col, x, kp[lp:])), q_sel.eq(sel),
                     q_mask.eq(Cat(pbase + i < inst.count for i in range(nl)))]
        entries = buf.word_select(kp, nl * _E_BITS)
        for i in range(nl):
            er = entries[i * _E_BITS:(i + 1) * _E_BITS] * quo
            m.d.sync += q[i].eq((er + (1 << (NORM_SHIFT - 1))) >> NORM_SHIFT)
        m.d.comb += self.r_vparam.addr.eq(Mux(writing, inst.vparam + pbase, cur.kparam + t0))
        next_pass = ~inst.col | (sel == nl - 1)
        with m.If(writing):
            m.d.sync += [x.eq(x + 1), sel.eq(Mux(next_pass, 0, sel + 1))]
            with m.If(next_pass):
                m.d.sync += [kp.eq(kp + 1), pbase.eq(pbase + nl)]
            m.d.comb += self.r_vparam.en.eq(1)
            with m.If(wr_last):
                m.d.sync += [writing.eq(0), kp.eq(0), pbase.eq(0), sel.eq(0), x.eq(0)]

        # ... and its lanes the cycle after (with the V multipliers read with q): packed, the last
        # pass writes the word (the earlier passes' lanes wait in out_buf)
        pfmt = inst.pfmt
        lanes = []
        for i in range(nl):
            vm = data.View(vparam_layout(), self.r_vparam.data[i])
            p = Signal(signed(_Q_BITS + 1 + len(vm.mult)), name=f"p_{i}")
            m.d.comb += p.eq(round_shift(q[i] * vm.mult, vm.shift))
            digits = _clamp(p, 0, DIGITS_MAX)[:14]
            y8 = Signal(signed(8), name=f"y8_{i}")
            with m.Switch(pfmt):
                with m.Case(ProbFormat.HI):
                    m.d.comb += y8.eq(digits[7:])
                with m.Case(ProbFormat.LO):
                    m.d.comb += y8.eq(digits[:7])
                with m.Default():
                    m.d.comb += y8.eq(saturate(p, 8))
            if fp16:
                # one converter: FP16 values from q * 2**-16, the int8 values as y8 << 16 (exact)
                y = fp16_from_fixed(m, Mux(pfmt == ProbFormat.FP16, p, y8 << FRAC), name=f"prob_{i}")
            else:
                y = y8
            lane = Signal.like(y, name=f"lane_{i}")
            m.d.comb += lane.eq(Mux(q_mask[i], y, 0))
            lanes.append(lane)
        out_buf = [Signal.like(lanes[i % nl], name=f"out_{i}") for i in range(rows - nl)]
        for i in range(rows - nl):
            with m.If(q_valid & ~inst.col & (q_pass == i // nl)):
                m.d.sync += out_buf[i].eq(lanes[i % nl])
        out = Signal(soft_act_layout(cfg))
        with m.If(inst.col):
            # value x = pbase + sel: lane sel of the computed pass, into lane `lane`
            pick = Signal.like(lanes[0])
            with m.Switch(q_sel):
                for i in range(nl):
                    with m.Case(i):
                        m.d.comb += pick.eq(lanes[i])
            m.d.comb += [out[j].eq(pick) for j in range(rows)]
            m.d.comb += self.w_act_mask.eq(Cat(inst.lane == j for j in range(rows)))
        with m.Else():
            m.d.comb += [out[i].eq(lane) for i, lane in enumerate(out_buf + lanes)]
            m.d.comb += self.w_act_mask.eq((1 << rows) - 1)
        wr_en = q_valid
        if passes > 1:
            wr_en &= inst.col | (q_pass == passes - 1)
        m.d.comb += [
            self.w_act.en.eq(wr_en),
            self.w_act.addr.eq(inst.act_addr + q_off),
            self.w_act.data[0].eq(out),
        ]
        m.d.comb += done.eq((e_valid & e_last & (func != SoftFunc.NORM)) | (q_valid & q_last))
        return m
