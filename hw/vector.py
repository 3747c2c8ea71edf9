"""Vector unit of the tile: executes one VEC (requantize, RELU, GELU or residual ADD) at a time.

Numerics (docs/tile.md, "Vector unit numerics"; :func:`mixpim.models.vector.vec_apply` bit for bit),
per element of token ``i``, column ``j``::

    v1 = sat32(round_shift(acc * mult[j], shift[j]))
    v  = round_shift(v1 * tmult[i], tshift[i])
    y  = sat8(v) | sat8(max(v, 0)) | lut[sat8(v) & 0xff] | sat8(v + residual)

Schedule (cycle ``c`` counted from the ``start`` cycle, ``r`` = the instruction's ``rows``): the
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
from amaranth.lib import data, enum
from amaranth.lib.wiring import In, Out

from ..models.isa import Opcode, Spad, VecFunc
from ..models.tile_timing import VEC_FILL_CYCLES
from ..models.vector import LUT_ENTRIES, MULT_BITS, SHIFT_BITS, int8_to_fp16_bits
from .common import ConfigComponent
from .decoder import operand_layout
from .dma import SpadReadSignature, SpadWriteSignature, word_shape

__all__ = ["vec_layout", "vparam_layout", "VectorUnit"]

VPARAM_BITS = 32


def vec_layout():
    """Operands of VEC (from the ISA)."""
    return operand_layout(Opcode.VEC)


def vparam_layout():
    """One VPARAM word: ``mult`` (int16), ``shift`` (0..63), 10 ignored bits."""
    return data.StructLayout({"mult": signed(MULT_BITS), "shift": unsigned(SHIFT_BITS),
                              "unused": VPARAM_BITS - MULT_BITS - SHIFT_BITS})


class _State(enum.Enum, shape=1):
    IDLE = 0
    RUN = 1


def _round_shift(x, s):
    """``(x + 2**(s-1)) >> s`` (``x`` for ``s == 0``), as ``((x >> (s-1)) + 1) >> 1``."""
    s1 = (s - 1)[:len(s)]
    return Mux(s == 0, x, ((x >> s1) + 1) >> 1)


def _sat(x, bits, lo=None):
    """Clamp the signed value ``x`` to ``bits``-bit two's complement (and below by ``lo``)."""
    hi = (1 << (bits - 1)) - 1
    lo_ = -(1 << (bits - 1)) if lo is None else lo
    return Mux(x > hi, hi, Mux(x < lo_, lo_, x))[:bits].as_signed()


def _fp16_to_int8(bits):
    """``fp16_bits_to_int8`` of one FP16 bit pattern (a 16-bit Value): int8 Value."""
    sign, efield, frac = bits[15], bits[10:15], bits[:10]
    nonfinite = efield == 31
    mag = Mux(nonfinite, 0, Mux(efield == 0, frac, Cat(frac, Const(1, 1))))
    sig = Mux(sign, -mag, mag)  # signed(12)
    exp = Mux(efield == 0, 1, efield)  # nonfinite: sig is 0, exp irrelevant
    # exp >= 25: sig << (exp - 25) (at most 5); else round_shift(sig, 25 - exp) (1..24)
    up = sig << (exp - 25)[:3]
    down = _round_shift(sig, (25 - exp)[:5])
    return _sat(Mux(exp >= 25, up, down), 8)


class VectorUnit(ConfigComponent):
    """Executes one VEC at a time.

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
    w_act : Out(:class:`~.dma.SpadWriteSignature`), 1 ACT word: lane i of the word is token i
        (int8, or the FP16 bit pattern of the int8 result in FP16 configurations)
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
            "w_act": Out(SpadWriteSignature(act, 1)),
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
            m.d.sync += v1[i].eq(_sat(_round_shift(a * param.mult, param.shift), 32))
            lane = res_word[i * lane_bits:(i + 1) * lane_bits]
            m.d.sync += res[i].eq(_fp16_to_int8(lane) if fp16 else lane.as_signed())

        # stage 2: v = round_shift(v1 * tmult, tshift); the function; lanes >= r give 0
        y = Signal(data.ArrayLayout(signed(8), rows))
        y_valid = Signal()
        m.d.sync += y_valid.eq(s1_valid)
        for i in range(rows):
            tp = self.i_tparam[i]
            v = Signal(signed(50), name=f"v_{i}")
            m.d.comb += v.eq(_round_shift(Value.cast(v1[i]) * tp.mult, tp.shift))
            s8 = _sat(v, 8)
            out = Signal(signed(8), name=f"y_{i}")
            with m.Switch(inst.func):
                with m.Case(int(VecFunc.REQUANT)):
                    m.d.comb += out.eq(s8)
                with m.Case(int(VecFunc.RELU)):
                    m.d.comb += out.eq(_sat(v, 8, lo=0))
                with m.Case(int(VecFunc.GELU)):
                    m.d.comb += out.eq(self.i_lut.as_value().word_select(s8.as_unsigned(), 8))
                with m.Default():  # ADD
                    m.d.comb += out.eq(_sat(v + Value.cast(res[i]), 8))
            m.d.sync += y[i].eq(Mux(i < inst.rows, out, 0))

        # write: one ACT word per cycle, lane i = token i
        wcol = Signal(range(cols + 1))
        with m.If(y_valid):
            m.d.sync += wcol.eq(wcol + 1)
        with m.If(self.start & (state == _State.IDLE)):
            m.d.sync += wcol.eq(0)
        if fp16:
            table = Const(sum(int(b) << (16 * k) for k, b in
                              enumerate(int8_to_fp16_bits([(k ^ 0x80) - 0x80 for k in range(256)]))),
                          16 * 256)
            lanes = [table.word_select(Value.cast(y[i]).as_unsigned(), 16) for i in range(rows)]
        else:
            lanes = [Value.cast(y[i]) for i in range(rows)]
        m.d.comb += [
            self.w_act.en.eq(y_valid),
            self.w_act.addr.eq(inst.act_addr + wcol),
            self.w_act.data[0].eq(Cat(*lanes)),
        ]
        return m
