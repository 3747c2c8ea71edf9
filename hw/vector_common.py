"""What the vector unit's two datapaths (hw/vector.py: VEC, hw/softmax.py: VSOFT) share: the
VPARAM word and the fixed-point steps of models/vector.py as combinational Amaranth expressions."""

from amaranth.hdl import Cat, Const, Mux, Signal, signed, unsigned
from amaranth.lib import data

from ..models.vector import MULT_BITS, SHIFT_BITS

__all__ = ["VPARAM_BITS", "vparam_layout", "round_shift", "saturate", "sat_round_shift"]

VPARAM_BITS = 32


def vparam_layout():
    """One VPARAM word: ``mult`` (int16), ``shift`` (0..63), 10 ignored bits."""
    return data.StructLayout({"mult": signed(MULT_BITS), "shift": unsigned(SHIFT_BITS),
                              "unused": VPARAM_BITS - MULT_BITS - SHIFT_BITS})


def round_shift(x, s):
    """``(x + 2**(s-1)) >> s`` (``x`` for ``s == 0``), as ``((x >> (s-1)) + 1) >> 1``: the
    model's :func:`~mixpim.models.vector.round_shift` without a wider adder than ``x``."""
    s1 = (s - 1)[:len(s)]
    return Mux(s == 0, x, ((x >> s1) + 1) >> 1)


def saturate(x, bits, lo=None):
    """Clamp the signed value ``x`` to ``bits``-bit two's complement (and below by ``lo``)."""
    hi = (1 << (bits - 1)) - 1
    lo_ = -(1 << (bits - 1)) if lo is None else lo
    return Mux(x > hi, hi, Mux(x < lo_, lo_, x))[:bits].as_signed()


def sat_round_shift(m, x, s, bits, name):
    """``saturate(round_shift(x, s), bits)`` for a signed ``x`` and an unsigned shift ``s``, as
    a Signal of ``m``, with a shifter that makes only the result's ``bits + 2`` low bits: ``y =
    (2 x) >> s`` gives ``round_shift(x, s) = (y + 1) >> 1`` for every ``s`` (``s = 0`` too), and
    ``y`` needs more than ``bits + 2`` bits exactly when ``2 x`` has a sign change at or above
    bit ``s + bits + 1`` (then the result saturates by the sign of ``x``). On ECP5, 61% of the
    logic cells of the two steps written out (a full-width shifter and two full-width
    comparisons) at 63 x 32 bits, 80% at 33 x 24."""
    width = len(x)
    big = Signal(signed(width + 1), name=f"{name}_2x")
    m.d.comb += big.eq(x << 1)
    keep = bits + 2                                  # low bits of y kept
    # y's low `keep` bits: stages from the largest shift, each keeping the bits later ones need
    cur, reach = big, width + 1
    for k in reversed(range(len(s))):
        step = 1 << k
        need = min(reach, keep + step - 1)           # bits the stages below this one read
        nxt = Signal(signed(need), name=f"{name}_sh{k}")
        m.d.comb += nxt.eq(Mux(s[k], (cur >> step)[:need], cur[:need]))
        cur, reach = nxt, need
    low = Signal(signed(keep), name=f"{name}_y")
    m.d.comb += low.eq(cur[:keep].as_signed() if len(cur) > keep else cur)
    # y fits in `keep` bits iff z = 2x ^ sign has no bit set at or above s + bits + 1
    z = Signal(width + 1, name=f"{name}_z")
    m.d.comb += z.eq(big ^ big[-1].replicate(width + 1))
    # bit i of zh is bit bits + 1 + i of z, which must be 0 for i >= s: a table of s (logic, not
    # the carry chains of comparisons)
    zh = z[bits + 1:]
    fits = Signal(name=f"{name}_fits")
    if len(zh):
        masks = Cat(*(Const(((1 << len(zh)) - 1) >> v << v, len(zh)) for v in range(1 << len(s))))
        m.d.comb += fits.eq(~(masks.word_select(s, len(zh)) & zh).any())
    else:
        m.d.comb += fits.eq(1)
    hi_v, lo_v = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    out = Signal(signed(bits), name=name)
    # (y + 1) >> 1 >= hi_v iff y >= 2**bits - 1; <= lo_v iff y <= -2**bits - 1 (as logic)
    over = ~low[-1] & (low[bits] | low[:bits].all())
    under = low[-1] & ~low[bits]
    m.d.comb += out.eq(Mux(fits & ~over & ~under, ((low + 1) >> 1)[:bits],
                           Mux(fits, Mux(over, hi_v, lo_v), Mux(x < 0, lo_v, hi_v))))
    return out
