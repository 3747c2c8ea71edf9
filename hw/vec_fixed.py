"""The fixed-point steps of the VEC datapath on FP16 tiles (:mod:`mixpim.models.vec_fixed` bit for
bit) as combinational Amaranth logic: FP16 to and from ``2**-frac`` fixed point, FP16 to INT8
(:func:`fp16_to_int8`, also the GEMM unit's and the PIM unit's), and the interpolated gates
(sigmoid, Phi) read from one ROM.

Each helper adds its logic to a module ``m`` and returns a Signal; every value used more than once
is a Signal, so the Verilog holds each expression once (Amaranth re-emits an expression at each
use).
"""

from amaranth.hdl import Cat, Const, Mux, Signal, Value, signed, unsigned
from amaranth.lib.memory import Memory

from ..models.vec_fixed import FRAC, GATE_POINTS, PHI_SHIFT, PHI_TABLE, SIGMOID_SHIFT, SIGMOID_TABLE
from .vector_common import round_shift, saturate

__all__ = ["FIXED_FP16_BITS", "GATE_BITS", "fp16_from_fixed", "fixed_from_fp16", "fp16_to_int8",
           "gate_rom", "gate"]

#: Width of :func:`fixed_from_fp16`'s result: ``|x| <= 65504 * 2**16 < 2**32``.
FIXED_FP16_BITS = 34
#: Width of a gate value (Q15, 0 .. 2**15).
GATE_BITS = 16
_FP16_MAX = 65504
_SEGMENTS = GATE_POINTS - 1


def fp16_from_fixed(m, y, frac=FRAC, name="fp16"):
    """FP16 bits (unsigned(16) Signal) of ``y * 2**-frac``: nearest, ties to even, saturated at
    +-65504, 0 gives +0 (:func:`~mixpim.models.vec_fixed.fp16_from_fixed` for ``frac`` = 16).

    ``y`` is a signed Value; ``frac`` is at most 24 (every value is then a multiple of the
    smallest subnormal)."""
    if not 0 <= frac <= 24:
        raise ValueError(f"frac must be in 0..24, not {frac!r}")
    y = Value.cast(y)
    if not isinstance(y, Signal):
        y_ = Signal(y.shape(), name=f"{name}_in")
        m.d.comb += y_.eq(y)
        y = y_
    top = _FP16_MAX << frac
    n = top.bit_length()  # magnitude bits
    if len(y) > n:  # |y| may exceed the largest FP16 (top >= 2**(n - 1))
        yc = Signal(signed(n + 1), name=f"{name}_clip")
        m.d.comb += yc.eq(Mux(y > top, top, Mux(y < -top, -top, y)))
    else:
        yc = y
    neg = yc < 0
    mag = Signal(unsigned(n), name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(neg, -yc, yc))

    lz = Signal(range(n), name=f"{name}_lz")  # leading zeros of mag (0 when mag is 0)
    for b in range(n):
        with m.If(mag[b]):
            m.d.comb += lz.eq(n - 1 - b)
    width = max(n, 12)  # the significand, a guard bit and at least one sticky bit
    nrm = Signal(width, name=f"{name}_nrm")  # leading one at the top
    m.d.comb += nrm.eq((Cat(Const(0, width - n), mag) << lz)[:width])
    sig, guard = nrm[width - 11:], nrm[width - 12]
    sticky = nrm[:width - 12].any() if width > 12 else Const(0)
    # biased exponent - 1 = p - frac + 14 = 29 - lz (p = n - 1 - lz the leading one's position,
    # n = frac + 16); the rounding carry of the significand steps the exponent by itself
    e1 = (Const(n + 13 - frac, 6) - lz)[:5]
    normal = ((e1 << 10) + sig + (guard & (sticky | sig[0])))[:15]
    if frac > 14:  # p < frac - 14: a subnormal, exact (and 0)
        bits = Mux(lz > n + 13 - frac, (mag << (24 - frac))[:15], normal)
    else:
        bits = normal
    out = Signal(16, name=name)
    m.d.comb += out.eq(Mux(mag == 0, 0, Cat(bits, neg)))
    return out


def fixed_from_fp16(m, bits, name="fixed"):
    """``round_shift`` of the FP16 value of ``bits`` (a 16-bit Value) to ``2**-16`` units, round
    half up, inf and NaN give 0 (:func:`~mixpim.models.vec_fixed.fixed_from_fp16`): a
    signed(:data:`FIXED_FP16_BITS`) Signal."""
    sign, efield, frac = bits[15], bits[10:15], bits[:10]
    mag = Signal(11, name=f"{name}_mag")
    sig = Signal(signed(12), name=f"{name}_sig")
    exp = Signal(5, name=f"{name}_exp")
    m.d.comb += [
        mag.eq(Mux(efield == 31, 0, Mux(efield == 0, frac, Cat(frac, Const(1, 1))))),
        sig.eq(Mux(sign, -mag, mag)),
        exp.eq(Mux(efield == 0, 1, efield)),
    ]
    # value = sig * 2**(exp - 25), in 2**-16 units sig * 2**(exp - 9)
    out = Signal(signed(FIXED_FP16_BITS), name=name)
    m.d.comb += out.eq(Mux(exp >= 9, sig << (exp - 9)[:5], round_shift(sig, (9 - exp)[:4])))
    return out


def fp16_to_int8(bits):
    """:func:`~mixpim.models.vector.fp16_bits_to_int8` of one FP16 bit pattern (a 16-bit Value):
    rounded half up, saturated to -128..127, inf and NaN 0; a signed(8) expression (no module:
    the caller makes it a Signal where it is used more than once)."""
    sign, efield, frac = bits[15], bits[10:15], bits[:10]
    mag = Mux(efield == 31, 0, Mux(efield == 0, frac, Cat(frac, Const(1, 1))))
    sig = Mux(sign, -mag, mag)
    exp = Mux(efield == 0, 1, efield)
    # exp >= 25: sig << (exp - 25) (0..5); else round_shift(sig, 25 - exp) (1..24)
    return saturate(Mux(exp >= 25, sig << (exp - 25)[:3], round_shift(sig, (25 - exp)[:5])), 8)


def _rom_entries():
    entries = []
    for table in (SIGMOID_TABLE, PHI_TABLE):
        for k in range(_SEGMENTS):
            delta = table[k + 1] - table[k]
            assert 0 <= delta < 1 << _DELTA_BITS and table[k] < 1 << GATE_BITS
            entries.append(table[k] | delta << GATE_BITS)
    return entries


_DELTA_BITS = max(max(b - a for a, b in zip(t, t[1:])) for t in (SIGMOID_TABLE, PHI_TABLE)).bit_length()


def gate_rom():
    """The gate ROM: entry ``phi * 256 + k`` holds ``T[k]`` (bits 0..15) and ``T[k + 1] - T[k]``
    (from bit 16; the tables rise) of the sigmoid (``phi`` = 0) or the Phi table."""
    return Memory(shape=unsigned(GATE_BITS + _DELTA_BITS), depth=2 * _SEGMENTS, init=_rom_entries())


def gate(m, port, v, phi, name="gate"):
    """The interpolated gate (Q15, unsigned(:data:`GATE_BITS`) Signal) of ``v`` (a signed(32)
    Signal) read through ``port`` (a combinational read port of :func:`gate_rom`): the sigmoid's,
    or Phi's where ``phi`` (:func:`~mixpim.models.vec_fixed.gate`)."""
    assert SIGMOID_SHIFT == PHI_SHIFT + 1 and _SEGMENTS == 256
    half = 1 << (SIGMOID_SHIFT + 7)
    lo = Mux(phi, -(half >> 1), -half)
    hi = Mux(phi, (half >> 1) - 1, half - 1)
    clip = Signal(signed(SIGMOID_SHIFT + 9), name=f"{name}_clip")
    u = Signal(SIGMOID_SHIFT + 8, name=f"{name}_u")
    f = Signal(SIGMOID_SHIFT, name=f"{name}_f")  # f / 2**13
    m.d.comb += [
        clip.eq(Mux(v > hi, hi, Mux(v < lo, lo, v))),
        u.eq(clip - lo),
        port.addr.eq(Cat(Mux(phi, u[PHI_SHIFT:PHI_SHIFT + 8], u[SIGMOID_SHIFT:]), phi)),
        f.eq(Mux(phi, Cat(Const(0, 1), u[:PHI_SHIFT]), u[:SIGMOID_SHIFT])),
    ]
    base, delta = port.data[:GATE_BITS], port.data[GATE_BITS:]
    out = Signal(GATE_BITS, name=name)
    m.d.comb += out.eq(base + ((delta * f) >> SIGMOID_SHIFT))
    return out
