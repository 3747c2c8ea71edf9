"""Vector unit of the tile: executes one VEC (requantize, RELU, GELU or residual ADD) or one VSOFT
(a softmax pass, :class:`~.softmax.SoftmaxUnit`) at a time; :class:`VectorUnit` holds both
datapaths, starts the one of the queued opcode and shares the scratchpad ports between them.

VEC numerics (docs/tile.md, "Vector unit numerics"; :func:`mixpim.models.vector.vec_apply` bit for
bit), per element of token ``i``, column ``j``::

    v1 = sat32(round_shift(acc * mult[j], shift[j]))
    v  = round_shift(v1 * tmult[i], tshift[i])
    y  = sat8(v) | sat8(max(v, 0)) | lut[sat8(v) & 0xff] | sat8(v + residual)

VEC schedule (cycle ``c`` counted from the ``start`` cycle, ``r`` = the instruction's ``rows``): the
unit is busy for exactly ``r + cols + 3`` cycles (:func:`mixpim.models.tile_timing.vec_cycles`).

* ``c`` in ``0 .. r-1``: read ACC[``acc_addr + c``] (one token row of ``cols`` accumulators); the
  rows are kept in a ``rows x cols`` buffer (the transposition);
* ``c`` in ``r .. r+cols-1``: read VPARAM[``param_addr + j``] and, for ADD, ACT[``res_addr + j``]
  (``j = c - r``);
* stage 1 (``c + 1``): ``v1`` of column ``j`` for all ``rows`` lanes (``rows`` multipliers of
  ``acc_bits`` x 16 bits); stage 2 (``c + 2``): ``v`` and the function (``rows`` multipliers of
  32 x 16 bits);
* ``c + 3``: write ACT[``act_addr + j``], lane ``i`` = token ``i`` (0 for lanes ``i >= r``).

Every residual word is read before the word of the same address is written, so an ADD in place
(``act_addr == res_addr``) is exact; ``done`` is the cycle of the last write.

The GELU table (VPARAM words 0..63) and the token multipliers (words 64..64+rows-1) are inputs
(docs/tile.md, Decision 5: the tile holds them in registers that DMA writes to those addresses
update); they must be stable while ``busy``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..models.isa import Opcode, Spad, VecFunc
from ..models.tile_timing import VEC_FILL_CYCLES
from ..models.vector import LUT_ENTRIES, int8_to_fp16_bits
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape
from .softmax import SOFT_REG_BITS, SoftmaxUnit, soft_layout, soft_vparam_lanes
from .vector_common import VPARAM_BITS, round_shift, saturate, vparam_layout

__all__ = ["VPARAM_BITS", "vec_layout", "vparam_layout", "vector_inst_layout", "ElementwiseUnit",
           "VectorUnit"]


def vec_layout():
    """Operands of VEC (from the ISA)."""
    return operand_layout(Opcode.VEC)


def vector_inst_layout():
    """The operands of the vector unit's instruction: a union of ``vec`` (:func:`vec_layout`) and
    ``soft`` (:func:`~.softmax.soft_layout`), both from operand bit 0."""
    return data.UnionLayout({"vec": vec_layout(), "soft": soft_layout()})


class _State(enum.Enum, shape=1):
    IDLE = 0
    RUN = 1


def _int8_lanes(config):
    return data.ArrayLayout(signed(8), config.rows)


def _fp16_to_int8(bits):
    """``fp16_bits_to_int8`` of one FP16 bit pattern (a 16-bit Value): int8 Value."""
    sign, efield, frac = bits[15], bits[10:15], bits[:10]
    nonfinite = efield == 31
    mag = Mux(nonfinite, 0, Mux(efield == 0, frac, Cat(frac, Const(1, 1))))
    sig = Mux(sign, -mag, mag)  # signed(12)
    exp = Mux(efield == 0, 1, efield)  # nonfinite: sig is 0, exp irrelevant
    # exp >= 25: sig << (exp - 25) (at most 5); else round_shift(sig, 25 - exp) (1..24)
    up = sig << (exp - 25)[:3]
    down = round_shift(sig, (25 - exp)[:5])
    return saturate(Mux(exp >= 25, up, down), 8)


class ElementwiseUnit(ConfigComponent):
    """Executes one VEC at a time (the VEC schedule above).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_inst`` and start (only while ``busy`` is low)
    i_inst : In(:func:`vec_layout`), the decoded operands (must pass ``check_instruction``)
    i_lut : In(ArrayLayout(signed(8), 256)), the GELU table (VPARAM words 0..63)
    i_tparam : In(ArrayLayout(:func:`vparam_layout`, rows)), the token multipliers of the lanes
        (VPARAM words 64..64+rows-1)
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle (the last ACT write)
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 lane of ``cols`` accumulators
    r_act : Out(SpadReadSignature), 1 ACT word (the ADD residual)
    r_vparam : Out(SpadReadSignature), 1 VPARAM word (the column multipliers)
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 word of ``rows`` int8 lanes: lane i is
        token i (:class:`VectorUnit` encodes it as an ACT word)
    """

    def _members(self, config):
        act = word_shape(config, Spad.ACT)
        return {
            "start": In(1),
            "i_inst": In(vec_layout()),
            "i_lut": In(data.ArrayLayout(signed(8), LUT_ENTRIES)),
            "i_tparam": In(data.ArrayLayout(vparam_layout(), config.rows)),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_act": Out(SpadReadSignature(act, 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), 1)),
            "w_act": Out(SpadWriteSignature(_int8_lanes(config), 1)),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        rows, cols = cfg.rows, cfg.cols
        fp16 = cfg.act_format == "fp16"
        lane_bits = 16 if fp16 else 8
        m = Module()

        state = Signal(_State)
        inst = Signal(vec_layout())
        t = Signal(range(rows + cols + VEC_FILL_CYCLES + 1))  # cycles since start (0 when idle)
        last = inst.rows + (cols + VEC_FILL_CYCLES - 1)

        m.d.comb += self.busy.eq(self.start | (state == _State.RUN))
        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [inst.eq(self.i_inst), t.eq(1), state.eq(_State.RUN)]
        with m.Else():
            m.d.sync += t.eq(t + 1)
            with m.If(t == last):
                m.d.comb += self.done.eq(1)
                m.d.sync += [t.eq(0), state.eq(_State.IDLE)]

        # ACC rows: read in cycles 0 .. r-1 (cycle 0 from i_inst), captured one cycle later
        acc_buf = Signal(data.ArrayLayout(word_shape(cfg, Spad.ACC), rows))
        acc_row = Signal(range(max(rows, 2)))
        acc_valid = Signal()
        with m.If((state == _State.IDLE) & self.start):
            m.d.comb += [self.r_acc.en.eq(1), self.r_acc.addr.eq(self.i_inst.acc_addr)]
            m.d.sync += [acc_valid.eq(1), acc_row.eq(0)]
        with m.Elif((state == _State.RUN) & (t < inst.rows)):
            m.d.comb += [self.r_acc.en.eq(1), self.r_acc.addr.eq(inst.acc_addr + t)]
            m.d.sync += [acc_valid.eq(1), acc_row.eq(t)]
        with m.Else():
            m.d.sync += acc_valid.eq(0)
        with m.If(acc_valid):
            for i in range(rows):
                with m.If(acc_row == i):
                    m.d.sync += acc_buf[i].eq(self.r_acc.data[0])

        # column reads in cycles r .. r+cols-1
        col = Signal(range(cols + 1))  # column of the read issued this cycle
        rd = Signal()
        m.d.comb += [col.eq(t - inst.rows),
                     rd.eq((state == _State.RUN) & (t >= inst.rows) & (t < inst.rows + cols))]
        m.d.comb += [
            self.r_vparam.en.eq(rd), self.r_vparam.addr.eq(inst.param_addr + col),
            self.r_act.en.eq(rd & (inst.func == int(VecFunc.ADD))),
            self.r_act.addr.eq(inst.res_addr + col),
        ]
        rd_col = Signal.like(col)
        rd_valid = Signal()
        m.d.sync += [rd_valid.eq(rd), rd_col.eq(col)]

        # stage 1: v1 = sat32(round_shift(acc * mult, shift)) per lane; residual to int8
        param = data.View(vparam_layout(), self.r_vparam.data[0])
        v1 = Signal(data.ArrayLayout(signed(32), rows))
        res = Signal(data.ArrayLayout(signed(8), rows))
        s1_valid = Signal()
        m.d.sync += s1_valid.eq(rd_valid)
        res_word = self.r_act.data[0]
        for i in range(rows):
            a = Value.cast(acc_buf[i][rd_col])
            m.d.sync += v1[i].eq(saturate(round_shift(a * param.mult, param.shift), 32))
            lane = res_word[i * lane_bits:(i + 1) * lane_bits]
            m.d.sync += res[i].eq(_fp16_to_int8(lane) if fp16 else lane.as_signed())

        # stage 2: v = round_shift(v1 * tmult, tshift); the function; lanes >= r give 0
        y = Signal(data.ArrayLayout(signed(8), rows))
        y_valid = Signal()
        m.d.sync += y_valid.eq(s1_valid)
        for i in range(rows):
            tp = self.i_tparam[i]
            v = Signal(signed(50), name=f"v_{i}")
            m.d.comb += v.eq(round_shift(Value.cast(v1[i]) * tp.mult, tp.shift))
            s8 = saturate(v, 8)
            out = Signal(signed(8), name=f"y_{i}")
            with m.Switch(inst.func):
                with m.Case(int(VecFunc.REQUANT)):
                    m.d.comb += out.eq(s8)
                with m.Case(int(VecFunc.RELU)):
                    m.d.comb += out.eq(saturate(v, 8, lo=0))
                with m.Case(int(VecFunc.GELU)):
                    m.d.comb += out.eq(self.i_lut.as_value().word_select(s8.as_unsigned(), 8))
                with m.Default():  # ADD
                    m.d.comb += out.eq(saturate(v + Value.cast(res[i]), 8))
            m.d.sync += y[i].eq(Mux(i < inst.rows, out, 0))

        # write: one ACT word per cycle, lane i = token i
        wcol = Signal(range(cols + 1))
        with m.If(y_valid):
            m.d.sync += wcol.eq(wcol + 1)
        with m.If(self.start & (state == _State.IDLE)):
            m.d.sync += wcol.eq(0)
        m.d.comb += [
            self.w_act.en.eq(y_valid),
            self.w_act.addr.eq(inst.act_addr + wcol),
            self.w_act.data[0].eq(y),
        ]
        return m


class VectorUnit(ConfigComponent):
    """The tile's VEC unit: one VEC (:class:`ElementwiseUnit`) or one VSOFT
    (:class:`~.softmax.SoftmaxUnit`) at a time, with their timings (``rows + cols + 3``,
    :func:`~mixpim.models.tile_timing.vsoft_cycles`); the softmax registers persist between
    instructions until the unit is reset.

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    start : In(1), take ``i_soft`` / ``i_inst`` and start (only while ``busy`` is low)
    i_soft : In(1), 1: VSOFT, 0: VEC
    i_inst : In(:func:`vector_inst_layout`), the decoded operands (must pass
        ``check_instruction``)
    i_lut : In(ArrayLayout(signed(8), 256)), the GELU table (VPARAM words 0..63)
    i_tparam : In(ArrayLayout(:func:`vparam_layout`, rows)), the token multipliers of the lanes
        (VPARAM words 64..64+rows-1)
    busy : Out(1), high from the ``start`` cycle to the ``done`` cycle inclusive
    done : Out(1), the instruction's last cycle
    r_acc : Out(:class:`~.dma.SpadReadSignature`), 1 word of ``cols`` accumulators
    r_act : Out(SpadReadSignature), 1 ACT word (the ADD residual)
    r_vparam : Out(SpadReadSignature), :func:`~.softmax.soft_vparam_lanes` consecutive words (VEC
        uses lane 0)
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 ACT word: int8 lanes, or in FP16
        configurations the FP16 bit patterns of the int8 results (VSOFT never reaches an FP16
        unit: the dispatcher rejects it)
    o_rmax : Out(signed(32)), o_rsum : Out(32), the softmax registers (for observation)
    """

    def _members(self, config):
        act = word_shape(config, Spad.ACT)
        return {
            "start": In(1),
            "i_soft": In(1),
            "i_inst": In(vector_inst_layout()),
            "i_lut": In(data.ArrayLayout(signed(8), LUT_ENTRIES)),
            "i_tparam": In(data.ArrayLayout(vparam_layout(), config.rows)),
            "busy": Out(1),
            "done": Out(1),
            "r_acc": Out(SpadReadSignature(word_shape(config, Spad.ACC), 1)),
            "r_act": Out(SpadReadSignature(act, 1)),
            "r_vparam": Out(SpadReadSignature(unsigned(VPARAM_BITS), soft_vparam_lanes(config))),
            "w_act": Out(SpadWriteSignature(act, 1)),
            "o_rmax": Out(signed(SOFT_REG_BITS)),
            "o_rsum": Out(SOFT_REG_BITS),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.vec = vec = ElementwiseUnit(cfg)
        m.submodules.soft = soft = SoftmaxUnit(cfg)
        m.d.comb += [
            vec.start.eq(self.start & ~self.i_soft), vec.i_inst.eq(self.i_inst.vec),
            soft.start.eq(self.start & self.i_soft), soft.i_inst.eq(self.i_inst.soft),
            vec.i_lut.eq(self.i_lut), vec.i_tparam.eq(self.i_tparam),
            self.busy.eq(vec.busy | soft.busy), self.done.eq(vec.done | soft.done),
            self.o_rmax.eq(soft.o_rmax), self.o_rsum.eq(soft.o_rsum),
        ]
        wiring.connect(m, wiring.flipped(self.r_act), vec.r_act)

        # one datapath is busy at a time: the other's port enables are low
        for port, a, b in ((self.r_acc, vec.r_acc, soft.r_acc),
                           (self.r_vparam, vec.r_vparam, soft.r_vparam)):
            m.d.comb += [port.en.eq(a.en | b.en), port.addr.eq(Mux(b.en, b.addr, a.addr)),
                         b.data.eq(port.data), a.data[0].eq(port.data[0])]
        y = Mux(soft.w_act.en, soft.w_act.data[0].as_value(), vec.w_act.data[0].as_value())
        y = data.View(_int8_lanes(cfg), y)
        if cfg.act_format == "fp16":
            table = Const(sum(int(b) << (16 * k) for k, b in
                              enumerate(int8_to_fp16_bits([(k ^ 0x80) - 0x80 for k in range(256)]))),
                          16 * 256)
            lanes = [table.word_select(Value.cast(y[i]).as_unsigned(), 16) for i in range(cfg.rows)]
        else:
            lanes = [Value.cast(y[i]) for i in range(cfg.rows)]
        m.d.comb += [
            self.w_act.en.eq(vec.w_act.en | soft.w_act.en),
            self.w_act.addr.eq(Mux(soft.w_act.en, soft.w_act.addr, vec.w_act.addr)),
            self.w_act.data[0].eq(Cat(*lanes)),
        ]
        return m
