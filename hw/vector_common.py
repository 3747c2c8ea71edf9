"""What the vector unit's two datapaths (hw/vector.py: VEC, hw/softmax.py: VSOFT) share: the
VPARAM word and the fixed-point steps of models/vector.py as combinational Amaranth expressions."""

from amaranth.hdl import Mux, signed, unsigned
from amaranth.lib import data

from ..models.vector import MULT_BITS, SHIFT_BITS

__all__ = ["VPARAM_BITS", "vparam_layout", "round_shift", "saturate"]

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
