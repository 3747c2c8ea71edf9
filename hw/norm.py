"""Norm datapath of the vector unit: executes one VNORM (a SUM, SQ or NORM pass of an integer
LayerNorm / RMSNorm, docs/numerics.md "Norms") at a time, bit for bit as
:func:`mixpim.models.norm.norm_apply` and busy for exactly
:func:`mixpim.models.tile_timing.vnorm_cycles`.

Registers kept between instructions, per token lane ``i < rows``: ``s1[i]`` (int48, wraps) and
``s2[i]`` (uint64, wraps), 0 after reset (the tile resets its units when a run begins). ``first``
restarts its pass's register (SUM: ``s1``, SQ: ``s2``) of the tokens the instruction covers, in
their update cycle.

Schedule (cycle ``c`` counted from the ``start`` cycle; ``r`` = the instruction's ``rows``, ``C``
= ``cols``; ``P`` = ``vec_passes``, the passes the N, Y and W stages make over a column's tokens
with their ``L`` = ``vec_lanes`` = ``rows / P`` lanes, lane ``l`` of pass ``p`` being token ``p *
L + l``; ``x`` = ``sat32`` of an ACC value):

* ``c`` in ``0 .. r-1``: read ACC[``acc_addr + c``] (token ``c``); ``c = 0``: VPARAM[``nparam``]
  (``hm``, ``hs``; SQ without ``rms`` and NORM), ``c = 1``: VPARAM[``nparam + 1``] (``eps``,
  NORM);
* A, ``c + 1``: ``x`` of the word's ``C`` values; ``mu = sat32(round_shift(s1[c] * hm, hs))`` (0
  with ``rms``; one 48 x 16-bit multiplier);
* B, ``c + 2``: ``d = sat24(round_shift(x - mu, qshift))`` per value; SUM: ``s1[c] += x ..``;
  NORM: ``d`` into row ``c`` of the tile buffer (``rows x C`` x 24 bits) and ``(r, e) =
  rsqrt(s2[c] + eps)`` (a 65-bit sum, a leading-one detector, the 768 x 20-bit
  ``RSQRT_TABLE`` ROM, read into a register: block RAM on an FPGA), ``e`` into the token's
  register;
* C, ``c + 3``: SQ: ``s2[c] += d * d ..`` (``C`` 24 x 24-bit squarers); NORM: ``r`` into the
  token's register (an N stage in this cycle takes it from the ROM's register). SUM and SQ end
  at ``c = r + 2``;
* NORM, per column ``j`` in ``0 .. C-1`` and pass ``p`` in ``0 .. P-1``, slot ``s = j P + p``:
  read VPARAM[``param_addr + j``] (``gm``, ``gs``) at ``r + 1 + 2s`` and VPARAM[``param_addr + C
  + j``] (``beta``) at ``r + 2 + 2s``; N, ``r + 2 + 2s``: ``n = round_shift(d * r, e/2 + 4)`` of
  column ``j``, the pass's ``L`` lanes (24 x 20-bit multipliers); Y, ``r + 3 + 2s``: ``y =
  round_shift(n * gm, gs) + beta`` (43 x 16-bit multipliers); W, ``r + 4 + 2s``: the last pass
  writes ACT[``act_addr + j``], lane ``i`` = token ``i`` (0 for ``i >= r``; the earlier passes'
  ``rows - L`` lanes wait in registers, encoded: 8 bits, 16 on FP16 tiles): ``sat8(y)`` on
  ``w_act`` (``fmt`` 0) or ``fp16_from_fixed(y)`` on ``w_act_fp16`` (``fmt`` 1); with
  ``to_acc``, ``sat32(y)`` goes into column ``j`` of the pass's rows of the output buffer
  (``rows x C`` x 32 bits) instead. Without ``to_acc`` the last write is ``done`` (``c = r
  + 2CP + 2``);
* NORM with ``to_acc``, ``c`` in ``r + 2CP + 3 .. 2r + 2CP + 2``: write ACC[``act_addr + i``] =
  row ``i`` of the output buffer (``i = c - r - 2CP - 3``; after every read, so in place is
  exact); the last write is ``done``.

Widths: ``|d * r| <= 2**42`` whatever the registers hold, so ``n`` is kept whole (43 bits), not
the ~21 bits of a ``d`` that was itself squared into ``s2``: any legal program is bit-exact.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.isa import NormFunc, Opcode, Spad
from ..models.norm import D_BITS, RSQRT_LO, RSQRT_TABLE
from ..models.tile_timing import VEC_FILL_CYCLES
from ..models.vector import MULT_BITS
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .vec_fixed import fp16_from_fixed
from .vector_common import VPARAM_BITS, round_shift, sat_round_shift, saturate, vparam_layout

__all__ = ["S1_BITS", "S2_BITS", "norm_layout", "rsqrt", "NormUnit"]

#: Widths of the per-token registers (models/norm.py: int48 ``s1``, uint64 ``s2``).
S1_BITS, S2_BITS = 48, 64
_X_BITS = 32                                   # x = sat32(ACC value)
_R_BITS = max(RSQRT_TABLE).bit_length()        # r: 20 bits
_SH_BITS = (S2_BITS // 2).bit_length()         # e/2 + 4 = p >> 1: 0..32
# |d * r| <= 2**23 * 2**19; round_shift by >= 0 keeps it in range: n is int43
_N_BITS = ((1 << (D_BITS - 1)) * max(RSQRT_TABLE) - 1).bit_length() + 1
# |n * gm| <= 2**42 * 2**15, plus an int32 beta: y is int59
_Y_BITS = ((1 << (_N_BITS - 1)) * (1 << (MULT_BITS - 1)) + (1 << 31)).bit_length() + 1
assert len(RSQRT_TABLE) == 3 * RSQRT_LO and min(RSQRT_TABLE) > 0


def norm_layout():
    """Operands of VNORM (from the ISA)."""
    return operand_layout(Opcode.VNORM)


def _leading_one(m, value, name, offset=0):
    """Signal: ``|offset - k|`` for ``k`` the position of ``value``'s highest set bit (``offset``
    for ``value == 0``): the position for ``offset = 0``, the leading zeros for ``len - 1``."""
    width = len(value)
    pos = Signal(range(max(width, offset + 1)), name=name, init=offset)
    for k in range(width):  # the last true condition wins: the highest set bit
        with m.If(value[k]):
            m.d.comb += pos.eq(abs(offset - k))
    return pos


def rsqrt(m, value, name="rsqrt"):
    """:func:`mixpim.models.norm.rsqrt` of the unsigned Value ``value`` (up to 65 bits: ``s2 +
    eps``), combinationally in ``m`` (which gets the ROM as submodule ``name``): Signals ``(r,
    sh)`` with ``sh = e / 2 + 4``, the shift of ``n`` (0..32); ``r = 0`` for ``value == 0``."""
    assert len(value) <= S2_BITS + 1
    p = _leading_one(m, value, f"{name}_msb")
    # e + 8 = p rounded down to even (e = bit length - 10, rounded up to even); m = value >> e
    mant = Signal(10, name=f"{name}_m")                     # 256..1023
    m.d.comb += mant.eq(Cat(Const(0, 8), value) >> Cat(Const(0, 1), p[1:]))
    m.submodules[name] = rom = Memory(shape=_R_BITS, depth=len(RSQRT_TABLE), init=RSQRT_TABLE)
    port = rom.read_port(domain="comb")
    m.d.comb += port.addr.eq(mant - RSQRT_LO)
    r = Signal(_R_BITS, name=f"{name}_r")
    sh = Signal(_SH_BITS, name=f"{name}_sh")
    m.d.comb += [r.eq(Mux(value == 0, 0, port.data)), sh.eq(p[1:])]
    return r, sh


class NormUnit(ConfigComponent):
    """Executes one VNORM at a time (the schedule above).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_inst`` and start (only while ``busy`` is low)
    i_inst : In(:func:`norm_layout`), the decoded operands (must pass ``check_instruction``)
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 word of ``cols`` accumulators
    r_vparam : Out(SpadReadSignature), 1 VPARAM word
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 word of ``rows`` int8 lanes, ``sat8(y)``
        (``fmt`` 0): lane i is token i (on an FP16 tile the integrator writes their FP16 values)
    w_act_fp16 : Out(SpadWriteSignature), FP16 configurations only: 1 word of ``rows`` 16-bit
        lanes, the FP16 bit patterns ``fp16_from_fixed(y)`` (``fmt`` 1); exactly one of the two
        ACT ports writes per column
    w_acc : Out(SpadWriteSignature), 1 ACC word: ``to_acc``'s ``sat32(y)``, sign-extended
    o_s1 : Out(ArrayLayout(signed(48), rows)), o_s2 : Out(ArrayLayout(unsigned(64), rows)), the
        registers (for observation; updated by the done cycle)
    """

    def _members(self, config):
        members = {
            "start": In(1),
            "i_inst": In(norm_layout()),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), 1)),
            "w_act": Out(SpadWriteSignature(data.ArrayLayout(signed(8), config.rows), 1)),
            "w_acc": Out(SpadWriteSignature(word_shape(config, Spad.ACC), 1)),
            "o_s1": Out(data.ArrayLayout(signed(S1_BITS), config.rows)),
            "o_s2": Out(data.ArrayLayout(unsigned(S2_BITS), config.rows)),
        }
        if config.act_format == "fp16":
            members["w_act_fp16"] = Out(SpadWriteSignature(data.ArrayLayout(16, config.rows), 1))
        return members

    def elaborate(self, platform):
        cfg = self._cfg
        rows, cols = cfg.rows, cfg.cols
        passes = cfg.vec_passes
        lp = exact_log2(passes)
        m = Module()

        s1 = Signal(data.ArrayLayout(signed(S1_BITS), rows))
        s2 = Signal(data.ArrayLayout(unsigned(S2_BITS), rows))
        m.d.comb += [self.o_s1.eq(s1), self.o_s2.eq(s2)]

        # -- control: t counts the cycles since start (0 when idle)
        running = Signal()
        slots = cols * passes                # column phase: a slot per column and pass
        t = Signal(range(2 * rows + 2 * slots + VEC_FILL_CYCLES))
        go = Signal()
        m.d.comb += [go.eq(self.start & ~running), self.busy.eq(self.start | running)]
        inst = Signal(norm_layout())
        # the read addresses: from i_inst in the start cycle, then registered
        acc_addr, nparam = Signal.like(inst.acc_addr), Signal.like(inst.nparam)
        m.d.comb += [acc_addr.eq(Mux(running, inst.acc_addr, self.i_inst.acc_addr)),
                     nparam.eq(Mux(running, inst.nparam, self.i_inst.nparam))]
        is_sum, is_sq, is_norm, to_acc = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [is_sum.eq(inst.func == NormFunc.SUM), is_sq.eq(inst.func == NormFunc.SQ),
                     is_norm.eq(inst.func == NormFunc.NORM), to_acc.eq(is_norm & inst.to_acc)]
        t1, t2 = Signal(), Signal()       # the cycles hm and eps arrive
        m.d.comb += [t1.eq(running & (t == 1)), t2.eq(running & (t == 2))]
        r = inst.rows
        last = Signal.like(t)
        m.d.comb += last.eq(Mux(is_norm, r + (2 * slots + VEC_FILL_CYCLES - 1) + Mux(to_acc, r, 0),
                                r + (VEC_FILL_CYCLES - 1)))
        with m.If(go):
            m.d.sync += [inst.eq(self.i_inst), running.eq(1), t.eq(1)]
        with m.If(running):
            m.d.sync += t.eq(t + 1)
            with m.If(t == last):
                m.d.comb += self.done.eq(1)
                m.d.sync += [running.eq(0), t.eq(0)]

        # -- reads: ACC word c in cycle c; hm in cycle 0, eps in cycle 1; the column parameters
        rd = Signal()
        m.d.comb += [rd.eq(go | (running & (t < r))),
                     self.r_acc.en.eq(rd), self.r_acc.addr.eq(acc_addr + t)]
        u = Signal(range(2 * slots))         # parameter word of the column phase: u[0] beta,
        col_rd = Signal()                    # u[1:] the slot, column u[1 + lp:], pass u[1:1 + lp]
        m.d.comb += [u.eq(t - r - 1),
                     col_rd.eq(running & is_norm & (t > r) & (t <= r + 2 * slots))]
        want_hm = self.i_inst.func == NormFunc.NORM
        want_hm |= (self.i_inst.func == NormFunc.SQ) & ~self.i_inst.rms
        m.d.comb += [
            self.r_vparam.en.eq((go & want_hm) | (t1 & is_norm) | col_rd),
            self.r_vparam.addr.eq(Mux(col_rd, inst.param_addr + Mux(u[0], cols, 0) + u[1 + lp:],
                                      nparam + t)),
        ]
        vp_word = self.r_vparam.data[0]
        hm_reg = Signal(VPARAM_BITS)
        eps_reg = Signal(VPARAM_BITS)
        with m.If(t1):
            m.d.sync += hm_reg.eq(vp_word)
        with m.If(t2):
            m.d.sync += eps_reg.eq(vp_word)

        # -- A: x and mu of the token read the cycle before
        a_valid, a_tok = Signal(), Signal(range(rows))
        m.d.sync += [a_valid.eq(rd), a_tok.eq(t)]
        hm = data.View(vparam_layout(), Mux(t1, vp_word, hm_reg))
        s1_a = Signal(signed(S1_BITS))
        prod = Signal(signed(S1_BITS + MULT_BITS))
        m.d.comb += [s1_a.eq(s1[a_tok]), prod.eq(s1_a * hm.mult)]
        x = Signal(data.ArrayLayout(signed(_X_BITS), cols))
        mu = Signal(signed(_X_BITS))
        s2_b = Signal(S2_BITS)            # s2 of the token in B
        m.d.sync += [x[j].eq(saturate(self.r_acc.data[0][j], _X_BITS)) for j in range(cols)]
        m.d.sync += [mu.eq(Mux(inst.rms, 0, sat_round_shift(m, prod, hm.shift, _X_BITS, "mu_r"))),
                     s2_b.eq(s2[a_tok])]

        # -- B: d per value; SUM accumulates; NORM fills the buffer and the token's (r, e)
        b_valid, b_tok = Signal(), Signal.like(a_tok)
        m.d.sync += [b_valid.eq(a_valid), b_tok.eq(a_tok)]
        d = Signal(data.ArrayLayout(signed(D_BITS), cols))
        for j in range(cols):
            m.d.comb += d[j].eq(sat_round_shift(m, x[j] - mu, inst.qshift, D_BITS, f"d_{j}"))
        d_c = Signal.like(d)              # d of the token in C
        m.d.sync += d_c.eq(d)
        with m.If(b_valid & is_sum):
            base = Mux(inst.first, 0, s1[b_tok])
            m.d.sync += s1[b_tok].eq(sum((x[j] for j in range(cols)), base)[:S1_BITS])

        big_d = Signal(S2_BITS + 1)
        m.d.comb += big_d.eq(s2_b + Mux(t2, vp_word, eps_reg))
        rsq_r, rsq_sh = rsqrt(m, big_d)
        tok_r = Signal(data.ArrayLayout(_R_BITS, rows))
        tok_sh = Signal(data.ArrayLayout(_SH_BITS, rows))
        # written by rows only; the column phase's to_acc results go to their own buffer, so no
        # flip-flop has two write sources (a LUT per bit on an FPGA)
        buf = Signal(data.ArrayLayout(data.ArrayLayout(signed(D_BITS), cols), rows))
        ybuf = Signal(data.ArrayLayout(data.ArrayLayout(signed(_X_BITS), cols), rows))
        with m.If(b_valid & is_norm):
            m.d.sync += tok_sh[b_tok].eq(rsq_sh)
            m.d.sync += [buf[b_tok][j].eq(d[j]) for j in range(cols)]

        # -- C: SQ accumulates d * d; NORM's r into the token's register from the ROM's registered
        # read (so an FPGA holds the ROM in block RAM; the N stage takes the last token's r from
        # that register, the cycle its own register is written)
        c_valid, c_tok = Signal(), Signal.like(a_tok)
        m.d.sync += [c_valid.eq(b_valid), c_tok.eq(b_tok)]
        rsq_q = Signal(_R_BITS)
        m.d.sync += rsq_q.eq(rsq_r)
        with m.If(c_valid & is_norm):
            m.d.sync += tok_r[c_tok].eq(rsq_q)
        with m.If(c_valid & is_sq):
            base = Mux(inst.first, 0, s2[c_tok])
            sq = sum((d_c[j] * d_c[j] for j in range(cols)), base)
            m.d.sync += s2[c_tok].eq(sq[:S2_BITS])

        self._column_phase(m, inst, to_acc, col_rd, u, vp_word, buf, ybuf, tok_r, tok_sh,
                           (c_valid, c_tok, rsq_q))

        # -- to_acc: the output buffer's rows into ACC, after every read
        row = Signal(range(rows))
        acc_wr = Signal()
        m.d.comb += [row.eq(t - (r + 2 * slots + VEC_FILL_CYCLES)),
                     acc_wr.eq(running & to_acc & (t >= r + 2 * slots + VEC_FILL_CYCLES))]
        m.d.comb += [
            self.w_acc.en.eq(acc_wr),
            self.w_acc.addr.eq(inst.act_addr + row),
        ]
        m.d.comb += [self.w_acc.data[0][j].eq(ybuf[row][j]) for j in range(cols)]
        return m

    def _column_phase(self, m, inst, to_acc, col_rd, u, vp_word, buf, ybuf, tok_r, tok_sh,
                      r_fwd):
        """NORM's N, Y and W stages (the schedule above): a slot per column and pass, in the
        order column, pass, over ``vec_lanes`` token lanes. ``u`` is the column phase's VPARAM
        word (``u[0]``: beta) while ``col_rd``; ``r_fwd`` = ``(valid, token, r)``: the ``r`` the
        C stage writes into ``tok_r`` this cycle."""
        fwd_valid, fwd_tok, fwd_r = r_fwd
        cfg = self._cfg
        rows, cols = cfg.rows, cfg.cols
        passes, nl = cfg.vec_passes, cfg.vec_lanes   # lane l of pass p is token p * nl + l
        lp = exact_log2(passes)

        def stage(name):
            """A stage's valid, column and pass registers (no pass register for one pass)."""
            return (Signal(name=f"{name}_valid"), Signal(range(cols), name=f"{name}_col"),
                    Signal(range(passes), name=f"{name}_pass") if passes > 1 else None)

        def follow(dst, src):
            return [a.eq(b) for a, b in zip(dst, src) if a is not None]

        def of_lane(per_token, pass_, lane):
            """The element of ``per_token`` of the token ``lane`` of the pass in a stage works
            on: a mux over the pass (no multiplier for ``pass_ * nl``)."""
            if pass_ is None:
                return per_token[lane]
            return Array(per_token[p * nl + lane] for p in range(passes))[pass_]

        def in_pass(cond, pass_, i):
            """``cond``, and token ``i`` is a lane of the pass in a stage."""
            return cond if pass_ is None else cond & (pass_ == i // nl)

        # -- N: n of one column, the pass's lanes; the gamma word arrives
        n_stage = n_valid, n_col, n_pass = stage("n")
        m.d.sync += follow(n_stage, (col_rd & ~u[0], u[1 + lp:], u[1:1 + lp]))
        gm = Signal(vparam_layout())
        n = Signal(data.ArrayLayout(signed(_N_BITS), nl))
        with m.If(n_valid):
            m.d.sync += gm.eq(vp_word)
            for i in range(nl):
                d_i = of_lane(buf, n_pass, i)[n_col]
                dr = Signal(signed(D_BITS + _R_BITS + 1), name=f"dr_{i}")
                fwd = fwd_valid & (fwd_tok == (i if n_pass is None else n_pass * nl + i))
                m.d.comb += dr.eq(d_i * Mux(fwd, fwd_r, of_lane(tok_r, n_pass, i)))
                m.d.sync += n[i].eq(round_shift(dr, of_lane(tok_sh, n_pass, i)))

        # -- Y: y of the lanes; the beta word arrives
        y_stage = y_valid, _, _ = stage("y")
        m.d.sync += follow(y_stage, n_stage)
        y = Signal(data.ArrayLayout(signed(_Y_BITS), nl))
        with m.If(y_valid):
            for i in range(nl):
                ng = Signal(signed(_N_BITS + MULT_BITS), name=f"ng_{i}")
                m.d.comb += ng.eq(n[i] * gm.mult)
                m.d.sync += y[i].eq(round_shift(ng, gm.shift) + vp_word.as_signed())

        # -- W: the ACT word of a column, by its last pass; with to_acc, each pass's lanes into
        # the output buffer's column instead
        w_stage = w_valid, w_col, w_pass = stage("w")
        m.d.sync += follow(w_stage, y_stage)
        w_last = w_valid if w_pass is None else w_valid & (w_pass == passes - 1)
        y32 = [Signal(signed(_X_BITS), name=f"y32_{i}") for i in range(nl)]
        m.d.comb += [y32[i].eq(saturate(y[i], _X_BITS)) for i in range(nl)]
        for i in range(rows):
            with m.If(in_pass(w_valid & to_acc, w_pass, i)):
                m.d.sync += ybuf[i][w_col].eq(y32[i % nl])
        fp16 = cfg.act_format == "fp16"
        s8 = [saturate(y[i], 8) for i in range(nl)]
        f16 = [fp16_from_fixed(m, y[i], name=f"fp16_{i}") for i in range(nl)] if fp16 else []
        # the earlier passes' lanes wait for the last, encoded as the instruction writes them
        held = [Signal(16 if fp16 else 8, name=f"held_{i}") for i in range(rows - nl)]
        for i, reg in enumerate(held):
            enc = Mux(inst.fmt, f16[i % nl], s8[i % nl]) if fp16 else s8[i % nl]
            with m.If(in_pass(w_valid, w_pass, i)):
                m.d.sync += reg.eq(enc)
        live = [i < inst.rows for i in range(rows)]
        lanes8 = [reg[:8] for reg in held] + s8
        m.d.comb += [
            self.w_act.en.eq(w_last & ~inst.to_acc & ~inst.fmt),
            self.w_act.addr.eq(inst.act_addr + w_col),
        ]
        m.d.comb += [self.w_act.data[0][i].eq(Mux(live[i], lanes8[i], 0)) for i in range(rows)]
        if fp16:
            lanes16 = held + f16
            m.d.comb += [
                self.w_act_fp16.en.eq(w_last & inst.fmt),
                self.w_act_fp16.addr.eq(inst.act_addr + w_col),
            ]
            m.d.comb += [self.w_act_fp16.data[0][i].eq(Mux(live[i], lanes16[i], 0))
                         for i in range(rows)]
