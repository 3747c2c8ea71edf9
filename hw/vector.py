"""Vector unit of the tile: executes one VEC (elementwise functions) or one VSOFT (a softmax pass,
:class:`~.softmax.SoftmaxUnit`) at a time; :class:`VectorUnit` holds both datapaths, starts the one
of the queued opcode and shares the scratchpad ports between them.

VEC numerics (:func:`mixpim.models.vector.vec_apply` and :mod:`mixpim.models.vec_fixed` bit for
bit), per element of token ``i``, column ``j``::

    v(x, m) = round_shift(sat32(round_shift(x * m.mult, m.shift)) * tmult[i], tshift[i])
    v  = v(ACC[acc_addr + i][j], VPARAM[param_addr + j])  (+ beta[j] with bias)
    beta[j] = VPARAM[param_addr + cols + j] read as int32           bias (not GLU, ROPE)
    vb = v(ACC[res_addr + i][j], VPARAM[param_addr + cols + j])       GLU, ROPE_LO, ROPE_HI
    y  = v | max(v, 0) | GELU: lut[sat8(v)] (fmt 0), gelu_fixed(v) (fmt 1)
       | ADD: v + residual lane (int8; fmt 1: fixed_from_fp16) | silu_fixed(v) | glu_fixed(v, vb)
       | rope_fixed(v, vb, c, s) (c, s: int16 lane i of ACT words table_addr + 2j, + 2j + 1)
    out = sat8(y) (FP16 tiles: its FP16) | fp16_from_fixed(y) (fmt 1)
    RES: ACC[res_addr + i][j] = sat32(v + ACC[res_addr + i][j]), no ACT write

VEC schedule (cycle ``c`` counted from the ``start`` cycle, ``r`` = the instruction's ``rows``,
``pair`` = GLU or ROPE, ``two`` = ``pair`` or ``bias``, ``R`` reads, ``K`` column slots): busy
for exactly ``R + K + W + 3`` cycles (:func:`mixpim.models.tile_timing.vec_cycles`), ``done`` in
the last.

* reads, ``c`` in ``0 .. R-1`` (``R`` = ``r``, ``2r`` for pair and RES): ACC[``acc_addr + c``]
  into the operand buffer, then ACC[``res_addr + c - r``] into the partner buffer (the partner or
  residual rows), both ``rows x cols`` (the transposition);
* column slots, ``c = R + k`` for ``k`` in ``0 .. K-1`` (``K`` = ``cols * P``, twice that for
  two; ``P`` = ``vec_passes``, each a pass over ``L`` = ``vec_lanes`` = ``rows / P`` token lanes,
  lane ``l`` of pass ``p`` being token ``p * L + l``), in the order column ``j``, pass ``p``, and
  for two the column's first then second slot: a slot of column ``j`` reads
  VPARAM[``param_addr + j``] and, for ADD, ACT[``res_addr + j``]; for two, the first slot of a
  pass reads column ``j``'s own multiplier and the second VPARAM[``param_addr + cols + j``], the
  partner's multiplier or the bias (ADD reads its residual word in both), and ROPE reads
  ACT[``table_addr + 2j``] in the first and ACT[``table_addr + 2j + 1``] in the second (the
  cosines, then the sines);
* stage 1 (``c + 1``): ``sat32(round_shift(x * mult, shift))`` of the slot's operand (a pair's
  partner's in the second slot; unused there with bias) for the pass's ``L`` lanes (``L``
  multipliers of ``acc_bits`` x 16 bits); the residual / cosine / sine lane or the RES residual
  is latched;
* stage 2 (``c + 2``): ``v`` (``L`` multipliers of 32 x 16 bits), the gate (one ROM read a
  lane) and the function (``L`` multipliers of 32 x 33 bits, shared by the gate product, the
  SwiGLU product and both RoPE products); the first slot of a pair keeps ``silu(v)`` or ``v * c``
  for the second (the next cycle); with bias, the first slot keeps ``v + bias`` (its bias word
  arrives for the second slot's stage 1 in the same cycle), and the second applies the function
  to it;
* stage 3 (``c + 3``): the output lanes are encoded (``sat8``, FP16); transposed (``W`` = 0):
  the last pass writes ACT[``act_addr + j``], lane ``i`` = token ``i`` (0 for lanes ``i >= r``;
  the earlier passes' lanes wait in registers); ``direct`` and RES: keep the lanes in the
  output buffer (``rows x cols`` x 32 bits; RES values are ``sat32``);
* writes (``direct`` and RES, ``W`` = ``r``), ``c = R + K + 3 + i``: ACT[``act_addr + i``] with
  lane ``j`` = column ``j`` (0 for lanes ``j >= cols``), or ACC[``res_addr + i``].

Every residual word is read before the word of the same address is written (an ADD or a RES in
place is exact) and every direct or RES write follows all reads. Only a transposed ROPE whose
output words overlap its table words is not in-place safe: output word ``act_addr + j`` is
written in cycle ``R + (2j + 2) P + 2``, table word ``table_addr + 2j + h`` read first in cycle
``R + 2jP + h``.

The GELU table (VPARAM words 0..63) and the token multipliers (words 64..64+rows-1) are looked
up through ``lookup`` (:class:`~.vparam_mirror.VParamLookupSignature`, combinational: the tile's
:class:`~.vparam_mirror.VParamMirror`, which the DMA's writes to those words update; docs/tile.md,
Decision 5): in stage 2, each lane its token's multiplier and the GELU entry of ``sat8(v)``; they
must be stable while ``busy``.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..models.isa import Opcode, Spad, VecFunc
from ..models.tile_timing import VEC_FILL_CYCLES
from ..models.vector import MULT_BITS
from .common import ConfigComponent, any_of
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .norm import NormUnit, norm_layout
from .softmax import SOFT_REG_BITS, SoftmaxUnit, soft_layout, soft_vparam_lanes
from .vec_fixed import fixed_from_fp16, fp16_from_fixed, gate, gate_rom
from .vector_common import VPARAM_BITS, round_shift, sat_round_shift, saturate, vparam_layout
from .vparam_mirror import VParamLookupSignature

__all__ = ["VPARAM_BITS", "vec_layout", "vparam_layout", "vector_inst_layout", "VectorOp",
           "ElementwiseUnit", "VectorUnit"]

_PAIR = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
#: ``v`` and ``y``: ``|v1 * tmult| <= 2**46``; ADD adds ``|fixed_from_fp16| < 2**32``, GLU's
#: ``round_shift(silu * vb, 16)`` stays within ``2**46``, RoPE within ``2**33``. ``v + bias`` is
#: held one bit wider; ``|v + bias| <= 2**46 + 2**31``, so ``y`` (ADD: ``+ 2**32``) still fits.
_V_BITS = 48
#: The latched side operand: a residual (``< 2**32``), a cosine / sine (int16), or a RES
#: residual clamped to 50 bits (``sat32(v + r)`` is the same for any ``|r| >= 2**49``).
_SIDE_BITS = 50


def vec_layout():
    """Operands of VEC (from the ISA)."""
    return operand_layout(Opcode.VEC)


def vector_inst_layout():
    """The operands of the vector unit's instruction: a union of ``vec`` (:func:`vec_layout`),
    ``soft`` (:func:`~.softmax.soft_layout`) and ``norm`` (:func:`~.norm.norm_layout`), all from
    operand bit 0."""
    return data.UnionLayout({"vec": vec_layout(), "soft": soft_layout(), "norm": norm_layout()})


class VectorOp(enum.Enum, shape=2):
    """Which datapath of :class:`VectorUnit` an instruction starts."""
    VEC = 0
    VSOFT = 1
    VNORM = 2


class _State(enum.Enum, shape=1):
    IDLE = 0
    RUN = 1


def _flag(m, inst, funcs, name):
    """A Signal: ``inst.func`` is one of ``funcs``."""
    s = Signal(name=name)
    m.d.comb += s.eq(Cat(*(inst.func == int(f) for f in funcs)).any())
    return s


def _lut_ram(m, name, shape, depth, waddr, wen, wdata, raddr):
    """A ``depth``-word memory of ``shape`` with a synchronous write (``wdata`` to ``waddr`` in
    the cycle ``wen`` is high, visible from the next) and an asynchronous read of ``raddr``:
    LUT RAM on an FPGA. Returns the word read."""
    mem = Memory(shape=shape, depth=depth, init=[], attrs={"ram_style": "distributed"})
    m.submodules[name] = mem
    wp, rp = mem.write_port(), mem.read_port(domain="comb")
    m.d.comb += [wp.addr.eq(waddr), wp.en.eq(wen), wp.data.eq(wdata), rp.addr.eq(raddr)]
    return rp.data


def _pass_lane(rows, nl, row):
    """The pass and the lane of token row ``row`` (a Signal): token ``p * nl + l`` is lane ``l``
    of pass ``p``."""
    return (Array(Const(i // nl, range(rows // nl)) for i in range(rows))[row],
            Array(Const(i % nl, range(nl)) for i in range(rows))[row])


def _lane_rows(m, name, shape, rows, nl, row, en, word, pass_):
    """``rows`` words of ``shape`` written a row at a time (``word`` to row ``row`` in the cycle
    ``en`` is high, visible from the next) and read by token lane, combinationally: returns, per
    lane ``l``, the word of token ``pass_ * nl + l``. With one pass: flip-flops. With more, lane
    ``l``'s rows (tokens ``p * nl + l``) are a ``passes``-deep LUT RAM: no ``rows``:1
    multiplexer, whose select would reach every bit of the buffer (on the 8x8 tile of
    ``bench/fpga8_narrow.toml`` the nets the router fought over most, docs/results.md)."""
    passes = rows // nl
    if passes == 1:
        buf = Signal(data.ArrayLayout(shape, rows), name=name)
        for i in range(rows):
            with m.If(en & (row == i)):
                m.d.sync += buf[i].eq(word)
        return [buf[lane] for lane in range(nl)]
    wpass, wlane = _pass_lane(rows, nl, row)
    return [_lut_ram(m, f"{name}_{lane}", shape, passes, wpass, en & (wlane == lane), word, pass_)
            for lane in range(nl)]


def _round_const(x, s):
    """``round_shift(x, s)`` for a constant ``s >= 1``."""
    return (x + (1 << (s - 1))) >> s


class ElementwiseUnit(ConfigComponent):
    """Executes one VEC at a time (the VEC schedule above).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_inst`` and start (only while ``busy`` is low)
    i_inst : In(:func:`vec_layout`), the decoded operands (must pass ``check_instruction``)
    lookup : Out(:class:`~.vparam_mirror.VParamLookupSignature`) of ``rows`` tokens and
        ``vec_lanes`` lanes: per lane (stage 2) its token's multiplier (VPARAM word 64 + token)
        and the GELU table entry of ``sat8(v)``, combinational
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 lane of ``cols`` accumulators
    r_act : Out(SpadReadSignature), 1 ACT word (the ADD residual, the RoPE table)
    r_vparam : Out(SpadReadSignature), 1 VPARAM word (the column multipliers, biases)
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 ACT word (int8 lanes, or 16-bit FP16
        lanes in FP16 configurations)
    w_acc : Out(SpadWriteSignature), 1 ACC word (RES)
    """

    def _members(self, config):
        act = word_shape(config, Spad.ACT)
        return {
            "start": In(1),
            "i_inst": In(vec_layout()),
            "lookup": Out(VParamLookupSignature(config.rows, config.vec_lanes)),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_act": Out(SpadReadSignature(act, 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), 1)),
            "w_act": Out(SpadWriteSignature(act, 1)),
            "w_acc": Out(SpadWriteSignature(word_shape(config, Spad.ACC), 1)),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        rows, cols, acc_bits = cfg.rows, cfg.cols, cfg.acc_bits
        passes, nl = cfg.vec_passes, cfg.vec_lanes  # lane l of pass p is token p * nl + l
        lp = exact_log2(passes)
        fp16 = cfg.act_format == "fp16"  # fmt 1, the gates and the pair functions exist only here
        lane_bits = 16 if fp16 else 8
        acc_word = word_shape(cfg, Spad.ACC)
        m = Module()

        state = Signal(_State)
        inst = Signal(vec_layout())
        t = Signal(range(3 * rows + 2 * cols * passes + VEC_FILL_CYCLES))  # since start (0 idle)

        res = _flag(m, inst, (VecFunc.RES,), "res")
        add = _flag(m, inst, (VecFunc.ADD,), "add")
        if fp16:
            pair = _flag(m, inst, _PAIR, "pair")
            rope = _flag(m, inst, (VecFunc.ROPE_LO, VecFunc.ROPE_HI), "rope")
            rope_hi = _flag(m, inst, (VecFunc.ROPE_HI,), "rope_hi")
            glu = _flag(m, inst, (VecFunc.GLU,), "glu")
            phi = _flag(m, inst, (VecFunc.GELU,), "phi")
        else:
            pair = rope = Const(0)
        wr = Signal()  # rows written after the tile (direct, RES)
        two = Signal()  # two VPARAM words per column: the partner's multiplier or the bias
        n_reads = Signal(range(2 * rows + 1))
        slots_end = Signal(range(2 * rows + 2 * cols * passes + 1))
        wr_start = Signal(range(2 * rows + 2 * cols * passes + VEC_FILL_CYCLES + 1))
        last = Signal.like(t)
        m.d.comb += [
            wr.eq(res | inst.direct),
            two.eq(pair | inst.bias),
            n_reads.eq(Mux(pair | res, inst.rows << 1, inst.rows)),
            slots_end.eq(n_reads + Mux(two, 2 * cols * passes, cols * passes)),
            wr_start.eq(slots_end + VEC_FILL_CYCLES),
            last.eq(Mux(wr, wr_start + inst.rows, wr_start) - 1),
        ]

        m.d.comb += self.busy.eq(self.start | (state == _State.RUN))
        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [inst.eq(self.i_inst), t.eq(1), state.eq(_State.RUN)]
        with m.Else():
            m.d.sync += t.eq(t + 1)
            with m.If(t == last):
                m.d.comb += self.done.eq(1)
                m.d.sync += [t.eq(0), state.eq(_State.IDLE)]

        # reads: ACC rows in cycles 0 .. r-1 (cycle 0 from i_inst), partner / residual rows in
        # r .. 2r-1; captured one cycle later
        acc_row = Signal(range(rows))
        acc_part = Signal()
        acc_valid = Signal()
        with m.If((state == _State.IDLE) & self.start):
            m.d.comb += [self.r_acc.en.eq(1), self.r_acc.addr.eq(self.i_inst.acc_addr)]
            m.d.sync += [acc_valid.eq(1), acc_row.eq(0), acc_part.eq(0)]
        with m.Elif((state == _State.RUN) & (t < n_reads)):
            m.d.comb += self.r_acc.en.eq(1)
            m.d.sync += acc_valid.eq(1)
            with m.If(t < inst.rows):
                m.d.comb += self.r_acc.addr.eq(inst.acc_addr + t)
                m.d.sync += [acc_row.eq(t), acc_part.eq(0)]
            with m.Else():
                m.d.comb += self.r_acc.addr.eq(inst.res_addr + (t - inst.rows))
                m.d.sync += [acc_row.eq(t - inst.rows), acc_part.eq(1)]
        with m.Else():
            m.d.sync += acc_valid.eq(0)

        # column slots in cycles R .. R+K-1, in the order column, pass, half (the two slots of a
        # column's pass are adjacent: the first one's stage 2 hands its lanes to the second's)
        rd = Signal()
        k = Signal(range(2 * cols * passes))  # slot of the read issued this cycle
        q = Signal(range(cols * passes))  # its column and pass
        j = Signal(range(cols))  # its column
        multi = passes > 1   # else no pass signals (zero-width ones trip Verilator's lint)
        p = Signal(range(passes)) if multi else None  # its pass over the token lanes
        h = Signal()  # the second slot of a column (the partner's multiplier or the bias)
        m.d.comb += [
            rd.eq((state == _State.RUN) & (t >= n_reads) & (t < slots_end)),
            k.eq(t - n_reads),
            q.eq(Mux(two, k >> 1, k)),
            j.eq(q >> lp),
            h.eq(two & k[0]),
            self.r_vparam.en.eq(rd),
            self.r_vparam.addr.eq(inst.param_addr + j + Mux(h, cols, 0)),
            self.r_act.en.eq(rd & (add | rope)),
            self.r_act.addr.eq(Mux(rope, inst.table_addr + Cat(h, j), inst.res_addr + j)),
        ]
        s1_j, s2_j, s3_j = (Signal.like(j, name=f"s{n}_j") for n in (1, 2, 3))
        s1_p, s2_p, s3_p = ((Signal.like(p, name=f"s{n}_p") for n in (1, 2, 3)) if multi
                            else (None, None, None))
        s1_h, s2_h, s3_h = (Signal(name=f"s{n}_h") for n in (1, 2, 3))
        s1_valid, s2_valid, s3_valid = (Signal(name=f"s{n}_valid") for n in (1, 2, 3))
        m.d.sync += [s1_valid.eq(rd), s1_j.eq(j), s1_h.eq(h),
                     s2_valid.eq(s1_valid), s2_j.eq(s1_j), s2_h.eq(s1_h),
                     s3_valid.eq(s2_valid), s3_j.eq(s2_j), s3_h.eq(s2_h)]
        if multi:
            m.d.comb += p.eq(q[:lp])
            m.d.sync += [s1_p.eq(p), s2_p.eq(s1_p), s3_p.eq(s2_p)]
        s3_out = Signal()  # stage 3 holds a column's outputs (not the first slot of two)
        m.d.comb += s3_out.eq(s3_valid & (~two | s3_h))

        def token(pass_, lane):
            """The token lane ``lane`` of pass ``pass_`` (a Signal) works on."""
            if passes == 1:
                return lane
            if nl & (nl - 1) == 0:   # a power of two: wires, no adder
                return Cat(Const(lane, exact_log2(nl)), pass_)
            return pass_ * nl + lane

        # the operand and partner / residual buffers: a lane's words of its pass's token
        acc_buf, part_buf = (
            _lane_rows(m, name, acc_word, rows, nl, acc_row, acc_valid & (acc_part == part),
                       self.r_acc.data[0], s1_p)
            for name, part in (("acc_buf", 0), ("part_buf", 1)))

        # stage 1: v1 = sat32(round_shift(x * mult, shift)) per lane; the side operand
        param = data.View(vparam_layout(), self.r_vparam.data[0])
        v1 = Signal(data.ArrayLayout(signed(32), nl))
        side = Signal(data.ArrayLayout(signed(_SIDE_BITS), nl))
        for i in range(nl):
            tok = token(s1_p, i)   # acc_buf[i] / part_buf[i]'s token
            a = Signal(signed(acc_bits), name=f"a_{i}")
            b = Signal(signed(acc_bits), name=f"b_{i}")
            p1 = Signal(signed(acc_bits + MULT_BITS), name=f"p1_{i}")
            m.d.comb += [
                a.eq(acc_buf[i][s1_j]),
                b.eq(part_buf[i][s1_j]),
                p1.eq((Mux(s1_h, b, a) if fp16 else a) * param.mult),
            ]
            m.d.sync += v1[i].eq(sat_round_shift(m, p1, param.shift, 32, f"r1_{i}"))

            lane = Value.cast(self.r_act.data[0]).word_select(tok, lane_bits)
            if fp16:  # ADD: the FP16 residual in 2**-16 units, or its int8 (fmt 0)
                fx = fixed_from_fp16(m, lane, name=f"fx_{i}")
                fx8 = Signal(signed(8), name=f"fx8_{i}")
                rfx = Signal(signed(len(fx)), name=f"rfx_{i}")
                m.d.comb += [rfx.eq(_round_const(fx, 16)), fx8.eq(saturate(rfx, 8))]
                operand = Mux(rope, lane.as_signed(), Mux(inst.fmt, fx, fx8))
            else:
                operand = lane.as_signed()
            r_res = saturate(b, _SIDE_BITS) if acc_bits > _SIDE_BITS else b
            m.d.sync += side[i].eq(Mux(res, r_res, operand))

        # stage 2: v = round_shift(v1 * tmult, tshift); the function; slot 2j of two is kept
        # (bias: v + the bias word, which stage 1 of slot 2j + 1 has in this cycle)
        y = Signal(data.ArrayLayout(signed(_V_BITS), nl))
        hold = Signal(data.ArrayLayout(signed(_V_BITS + 1), nl))
        beta = Signal(signed(32))
        m.d.comb += beta.eq(Value.cast(self.r_vparam.data[0]).as_signed())
        if fp16:
            m.submodules.gate_rom = rom = gate_rom()
        for i in range(nl):
            m.d.comb += self.lookup.tparam_addr[i].eq(token(s2_p, i))
            tp = self.lookup.tparam_data[i]
            p2 = Signal(signed(32 + MULT_BITS), name=f"p2_{i}")
            v = Signal(signed(_V_BITS), name=f"v_{i}")
            vb = Signal(signed(_V_BITS + 1), name=f"vb_{i}")  # v + bias, kept for slot 2j + 1
            ve = Signal(signed(_V_BITS + 1), name=f"ve_{i}")  # the function's v
            vsum = Signal(signed(_SIDE_BITS + 1), name=f"vsum_{i}")
            m.d.comb += [
                p2.eq(Value.cast(v1[i]) * tp.mult),
                v.eq(round_shift(p2, tp.shift)),
                vb.eq(v + beta),
                ve.eq(Mux(inst.bias, hold[i], v)),
                vsum.eq(ve + side[i]),
            ]
            m.d.comb += self.lookup.lut_addr[i].eq(saturate(ve, 8).as_unsigned())
            lut = self.lookup.lut_data[i]
            out = Signal(signed(_V_BITS), name=f"y_{i}")
            if fp16:
                vs = Signal(signed(32), name=f"vs_{i}")
                m.d.comb += vs.eq(saturate(ve, 32))
                g = gate(m, rom.read_port(domain="comb"), vs, phi, name=f"gate_{i}")
                op = Signal(signed(33), name=f"op_{i}")  # gate, cosine / sine, or silu(v_a)
                prod = Signal(signed(65), name=f"prod_{i}")
                g15 = Signal(signed(34), name=f"g15_{i}")  # v * gate: silu(v), gelu(v)
                rsum = Signal(signed(_V_BITS + 1), name=f"rsum_{i}")
                m.d.comb += [
                    op.eq(Mux(rope, Value.cast(side[i])[:16].as_signed(),
                              Mux(glu & s2_h, Value.cast(hold[i])[:33].as_signed(), g))),
                    prod.eq(vs * op),
                    g15.eq(_round_const(prod, 15)),
                    rsum.eq(Mux(rope_hi, hold[i] + prod, hold[i] - prod)),
                ]
                # read by the column's next slot (a pair's partner; bias: v + bias is its v)
                m.d.sync += hold[i].eq(Mux(inst.bias, vb, Mux(glu, g15, prod)))
            else:
                m.d.sync += hold[i].eq(vb)
            with m.Switch(inst.func):
                with m.Case(int(VecFunc.REQUANT)):
                    m.d.comb += out.eq(ve)
                with m.Case(int(VecFunc.RELU)):
                    m.d.comb += out.eq(Mux(ve < 0, 0, ve))
                with m.Case(int(VecFunc.GELU)):
                    m.d.comb += out.eq(Mux(inst.fmt, g15, lut) if fp16 else lut)
                with m.Case(int(VecFunc.ADD)):
                    m.d.comb += out.eq(vsum)
                with m.Case(int(VecFunc.RES)):
                    m.d.comb += out.eq(saturate(vsum, 32))
                if fp16:
                    with m.Case(int(VecFunc.SILU)):
                        m.d.comb += out.eq(g15)
                    with m.Case(int(VecFunc.GLU)):
                        m.d.comb += out.eq(_round_const(prod, 16))
                    with m.Case(int(VecFunc.ROPE_LO), int(VecFunc.ROPE_HI)):
                        m.d.comb += out.eq(_round_const(rsum, 14))
            m.d.sync += y[i].eq(out)

        # stage 3: output lanes; a transposed column goes to ACT once its last pass is here (the
        # earlier passes' lanes wait in out_buf), direct / RES ones wait in out_rows (rows x
        # cols x 32 bits, RES values sat32; apart from the partner buffer, so that no flip-flop
        # has two write sources, a LUT per bit on an FPGA)
        lanes = []
        for i in range(nl):
            yi = Value.cast(y[i])
            s8 = Signal(signed(8), name=f"s8_{i}")
            m.d.comb += s8.eq(saturate(yi, 8))
            if fp16:
                z = Signal(signed(_V_BITS), name=f"z_{i}")
                m.d.comb += z.eq(Mux(inst.fmt, yi, s8 << 16))
                lane = fp16_from_fixed(m, z, name=f"out_{i}")
            else:
                lane = s8
            lanes.append(lane)
        outs = [Mux(res, Value.cast(y[i]), lanes[i]) for i in range(nl)]
        out_buf = [Signal.like(lanes[i % nl], name=f"out_{i}") for i in range(rows - nl)]
        wrow = Signal(range(rows))   # the row written (below)
        row = Signal(acc_word)       # out_rows[wrow]
        if multi:   # out_rows as LUT RAMs, one a column and lane, a word a pass
            rpass, rlane = _pass_lane(rows, nl, wrow)
            for c in range(cols):
                words = [_lut_ram(m, f"out_rows_{c}_{lane}", signed(32), passes, s3_p,
                                  s3_out & wr & (s3_j == c), outs[lane], rpass)
                         for lane in range(nl)]
                m.d.comb += row[c].eq(Array(words)[rlane] if nl > 1 else words[0])
        else:
            out_rows = Signal(data.ArrayLayout(data.ArrayLayout(signed(32), cols), rows))
            for i in range(rows):
                with m.If(s3_out & wr):
                    m.d.sync += out_rows[i][s3_j].eq(outs[i])
            m.d.comb += [row[c].eq(out_rows[wrow][c]) for c in range(cols)]
        for i in range(rows):
            pass_, lane = divmod(i, nl)
            this_pass = s3_p == pass_ if multi else 1
            if i < rows - nl:
                with m.If(s3_out & ~wr & this_pass):
                    m.d.sync += out_buf[i].eq(lanes[lane])
        col_out = s3_out & ~wr & ((s3_p == passes - 1) if multi else 1)

        # writes: row i of out_rows in cycles R+K+3+i
        in_wr = Signal()
        m.d.comb += [
            wrow.eq(t - wr_start),
            in_wr.eq((state == _State.RUN) & wr & (t >= wr_start)),
        ]
        col_lanes = out_buf + lanes  # the column's rows lanes, the last pass's from stage 3
        col_word = Cat(*(Mux(i < inst.rows, col_lanes[i], 0) for i in range(rows)))
        row_word = Cat(*(Value.cast(row[c])[:lane_bits] for c in range(cols)))
        m.d.comb += [
            self.w_act.en.eq(col_out | (in_wr & ~res)),
            self.w_act.addr.eq(inst.act_addr + Mux(in_wr, wrow, s3_j)),
            self.w_act.data[0].eq(Mux(in_wr, row_word, col_word)),
            self.w_acc.en.eq(in_wr & res),
            self.w_acc.addr.eq(inst.res_addr + wrow),
            self.w_acc.data[0].eq(row),
        ]
        return m


class VectorUnit(ConfigComponent):
    """The tile's VEC unit: one VEC (:class:`ElementwiseUnit`), one VSOFT
    (:class:`~.softmax.SoftmaxUnit`) or one VNORM (:class:`~.norm.NormUnit`) at a time, with their
    timings (:func:`~mixpim.models.tile_timing.vec_cycles`, ``vsoft_cycles``, ``vnorm_cycles``);
    the softmax and norm registers persist between instructions until the unit is reset. A tile
    without ``softmax_unit`` or ``norm_unit`` has no such datapath (``o_rmax`` and ``o_rsum`` are
    0 without the softmax one): the dispatch checker never lets its opcode start.

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_op`` / ``i_inst`` and start (only while ``busy`` is low)
    i_op : In(:class:`VectorOp`), the datapath the instruction runs on
    i_inst : In(:func:`vector_inst_layout`), the decoded operands (must pass
        ``check_instruction``)
    lookup : Out(:class:`~.vparam_mirror.VParamLookupSignature`) of ``rows`` tokens and
        ``vec_lanes`` lanes: per lane (stage 2) its token's multiplier (VPARAM word 64 + token)
        and the GELU table entry of ``sat8(v)``, combinational
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 word of ``cols`` accumulators
    r_act : Out(SpadReadSignature), 1 ACT word (the ADD residual, the RoPE table)
    r_vparam : Out(SpadReadSignature), :func:`~.softmax.soft_vparam_lanes` consecutive words (VEC
        and VNORM use lane 0)
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 ACT word: int8 lanes, or in FP16
        configurations 16-bit lanes (FP16 values, or the FP16 bit patterns of int8 results)
    w_act_mask : Out(rows), the lanes of ``w_act`` written (all for VEC and VNORM; one for a
        by-column VSOFT NORM)
    w_acc : Out(SpadWriteSignature), 1 ACC word (VEC RES, VNORM to_acc)
    o_rmax : Out(signed(32)), o_rsum : Out(32), the softmax registers (for observation)
    """

    def _members(self, config):
        act = word_shape(config, Spad.ACT)
        return {
            "start": In(1),
            "i_op": In(VectorOp),
            "i_inst": In(vector_inst_layout()),
            "lookup": Out(VParamLookupSignature(config.rows, config.vec_lanes)),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_act": Out(SpadReadSignature(act, 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), soft_vparam_lanes(config))),
            "w_act": Out(SpadWriteSignature(act, 1)),
            "w_act_mask": Out(config.rows),
            "w_acc": Out(SpadWriteSignature(word_shape(config, Spad.ACC), 1)),
            "o_rmax": Out(signed(SOFT_REG_BITS)),
            "o_rsum": Out(SOFT_REG_BITS),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        fp16 = cfg.act_format == "fp16"
        m = Module()
        m.submodules.vec = vec = ElementwiseUnit(cfg)
        paths = {VectorOp.VEC: (vec, self.i_inst.vec)}
        # a datapath the configuration leaves out is not built: the dispatch checker makes its
        # opcode ILLEGAL_OPCODE, so it is never started
        soft = norm = None
        if cfg.softmax_unit:
            m.submodules.soft = soft = SoftmaxUnit(cfg)
            paths[VectorOp.VSOFT] = (soft, self.i_inst.soft)
            m.d.comb += [self.o_rmax.eq(soft.o_rmax), self.o_rsum.eq(soft.o_rsum)]
        if cfg.norm_unit:
            m.submodules.norm = norm = NormUnit(cfg)
            paths[VectorOp.VNORM] = (norm, self.i_inst.norm)
        units = [u for u, _ in paths.values()]
        for op, (unit, inst) in paths.items():
            m.d.comb += [unit.start.eq(self.start & (self.i_op == op)), unit.i_inst.eq(inst)]
        m.d.comb += [self.busy.eq(any_of(u.busy for u in units)),
                     self.done.eq(any_of(u.done for u in units))]
        wiring.connect(m, wiring.flipped(self.r_act), vec.r_act)
        wiring.connect(m, wiring.flipped(self.lookup), vec.lookup)

        # one datapath is busy at a time: the others' port enables are low
        for port, users in ((self.r_acc, [u.r_acc for u in units]),
                            (self.r_vparam, [u.r_vparam for u in units])):
            m.d.comb += [port.en.eq(any_of(u.en for u in users)), port.addr.eq(_pick(users, "addr"))]
            for u in users:
                if len(u.data) == len(port.data):
                    m.d.comb += u.data.eq(port.data)
                else:
                    m.d.comb += u.data[0].eq(port.data[0])
        acc_writers = [vec.w_acc] + ([norm.w_acc] if norm is not None else [])
        m.d.comb += [self.w_acc.en.eq(any_of(w.en for w in acc_writers)),
                     self.w_acc.addr.eq(_pick(acc_writers, "addr")),
                     self.w_acc.data.eq(_pick(acc_writers, "data"))]  # one word: the same bits

        writers = [(vec.w_act.en, vec.w_act.addr, Value.cast(vec.w_act.data[0]))]
        if soft is not None:
            writers.append((soft.w_act.en, soft.w_act.addr, Value.cast(soft.w_act.data[0])))  # encoded
        if norm is not None:
            norm_en, norm_addr, norm_word = norm.w_act.en, norm.w_act.addr, Value.cast(norm.w_act.data[0])
            if fp16:  # int8 results as their FP16 patterns; fmt 1 values come ready-made on the FP16 port
                lanes = norm.w_act.data[0]
                int8s = Cat(*(fp16_from_fixed(m, lanes[i], 0, name=f"norm_fp16_{i}") for i in range(cfg.rows)))
                norm_word = Mux(norm.w_act_fp16.en, Value.cast(norm.w_act_fp16.data[0]), int8s)
                norm_en = norm_en | norm.w_act_fp16.en
                norm_addr = Mux(norm.w_act_fp16.en, norm.w_act_fp16.addr, norm_addr)
            writers.append((norm_en, norm_addr, norm_word))
        addr, word = writers[0][1], writers[0][2]
        for en, a, w in writers[1:]:
            addr, word = Mux(en, a, addr), Mux(en, w, word)
        mask = Mux(soft.w_act.en, soft.w_act_mask, -1) if soft is not None else -1
        m.d.comb += [self.w_act.en.eq(any_of(en for en, _, _ in writers)), self.w_act.addr.eq(addr),
                     self.w_act.data[0].eq(word), self.w_act_mask.eq(mask)]
        return m


def _pick(ports, name):
    """The ``name`` of the port whose ``en`` is set (the first otherwise)."""
    out = getattr(ports[0], name)
    for p in ports[1:]:
        out = Mux(p.en, getattr(p, name), out)
    return out
