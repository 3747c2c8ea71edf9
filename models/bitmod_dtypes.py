"""BitMoD weight data types: value tables, names, named formats, and their per-cycle terms.

The rules and the code tables are in :mod:`mixpim.models.bitmod` (the executable specification
of BitMoD's numerics; a test keeps its tables equal to :func:`code_table_markdown`), which also
re-exports every name here. This module holds the types themselves: :data:`DTYPES` (a table from
code to small integer value per type), the BitMoD :data:`MIXTURES`, the named :data:`FORMATS`, and
the signed power-of-two terms the bit-serial PE consumes (:func:`terms`, :func:`booth_digits`,
:func:`code_terms`).
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import ConfigError, RangeError

__all__ = [
    "DType", "DTYPES", "dtype", "MIXTURES", "FORMATS", "ASYM_FORMATS",
    "terms", "booth_digits", "cycles_per_slice", "code_terms", "term_sum_max", "code_table_markdown",
]

_FP3_MAG = (0, 1, 2, 4)
_FP4_MAG = (0, 1, 2, 3, 4, 6, 8, 12)
_FLINT4_MAG = (0, 1, 2, 3, 4, 6, 8, 16)

# The value tables, once: name -> (bits, kind, magnitudes by magnitude code, special value).
# "int" types are two's complement and take neither; "fp"/"flint" types are sign-magnitude.
_SPECS = {
    **{f"INT{b}": (b, "int", None, None) for b in range(2, 9)},
    "FP3": (3, "fp", _FP3_MAG, None),
    "FP3_ER_POS": (3, "fp", _FP3_MAG, +3),
    "FP3_ER_NEG": (3, "fp", _FP3_MAG, -3),
    "FP3_EA_POS": (3, "fp", _FP3_MAG, +6),
    "FP3_EA_NEG": (3, "fp", _FP3_MAG, -6),
    "FP4": (4, "fp", _FP4_MAG, None),
    "FP4_ER_POS": (4, "fp", _FP4_MAG, +10),
    "FP4_ER_NEG": (4, "fp", _FP4_MAG, -10),
    "FP4_EA_POS": (4, "fp", _FP4_MAG, +16),
    "FP4_EA_NEG": (4, "fp", _FP4_MAG, -16),
    "FLINT4": (4, "flint", _FLINT4_MAG, None),
}

#: The per-group candidates of the BitMoD mixture at 3 and 4 bits; the index is the selector.
MIXTURES = {
    3: ("FP3_ER_POS", "FP3_ER_NEG", "FP3_EA_POS", "FP3_EA_NEG"),
    4: ("FP4_ER_POS", "FP4_ER_NEG", "FP4_EA_POS", "FP4_EA_NEG"),
}



@dataclass(frozen=True, eq=False)
class DType:
    """One weight data type.

    Members
    -------
    name : str (e.g. ``"FP3_ER_POS"``)
    bits : int
    kind : ``"int"`` (two's complement, Booth terms), ``"fp"`` or ``"flint"`` (sign-magnitude)
    codes : tuple of int or None, length ``2**bits``
        The value of each code; ``None`` marks a reserved code.
    special : int or None
        The value held by the negative-zero code (BitMoD variants only).
    """

    name: str
    bits: int
    kind: str
    codes: tuple
    special: object = None

    def __repr__(self):
        return f"DType({self.name})"

    @cached_property
    def values(self):
        """The distinct representable values, ascending."""
        return tuple(sorted({v for v in self.codes if v is not None}))

    @property
    def maxmag(self):
        """``max |value|``: the scale maps a group's absmax onto it."""
        return max(abs(v) for v in self.values)

    @property
    def special_code(self):
        return None if self.special is None else 1 << (self.bits - 1)

    def encode(self, value):
        """The canonical code of ``value`` (0 for zero); :class:`RangeError` if not representable."""
        for c, v in enumerate(self.codes):
            if v == value:
                return c
        raise RangeError(f"{value!r} is not a value of {self.name} ({', '.join(map(str, self.values))})")

    def decode(self, code):
        if not 0 <= code < len(self.codes) or self.codes[code] is None:
            raise RangeError(f"code {code!r} is not a valid {self.name} code")
        return self.codes[code]

    # numpy tables for the quantizer (mixpim.models.bitmod)
    @cached_property
    def sorted_values(self):
        """:attr:`values` as an int64 array."""
        return np.array(self.values, dtype=np.int64)

    @cached_property
    def sorted_codes(self):
        """The canonical code of each of :attr:`values`, uint8."""
        return np.array([self.encode(v) for v in self.values], dtype=np.uint8)

    @cached_property
    def thresholds(self):
        """Midpoints between consecutive :attr:`values` (multiples of 1/2), float64."""
        v = self.sorted_values.astype(np.float64)
        return (v[:-1] + v[1:]) / 2

    @cached_property
    def threshold_counts(self):
        """``(lo, cnt)``: ``cnt[c - lo]`` thresholds ``h/2`` have ``h <= c``, for ``c`` in
        ``lo .. 2*max threshold``."""
        h = (2 * self.thresholds).astype(np.int64)
        lo = int(h[0]) - 1
        return lo, np.searchsorted(h, np.arange(lo, int(h[-1]) + 1), side="right")

    @cached_property
    def zero_index(self):
        """Index of the value 0 in :attr:`values`."""
        return self.values.index(0)

    @cached_property
    def value_lut(self):
        """Value of each code as int64; reserved codes hold 0 (and are rejected by the checks)."""
        return np.array([0 if v is None else v for v in self.codes], dtype=np.int64)


def _build(name, spec):
    bits, kind, mags, special = spec
    n = 1 << bits
    if kind == "int":
        codes = tuple(None if c == n >> 1 else (c - n if c >= n >> 1 else c) for c in range(n))
    else:
        half = n >> 1
        codes = tuple(mags) + tuple(special if m == 0 and special is not None else -mags[m] if m else 0
                                    for m in range(half))
    return DType(name, bits, kind, codes, special)


#: Every data type by name.
DTYPES = {name: _build(name, spec) for name, spec in _SPECS.items()}


def dtype(t):
    """The :class:`DType` ``t`` or named ``t`` (case-insensitive, ``-`` or ``_``)."""
    if isinstance(t, DType):
        return t
    if isinstance(t, str):
        key = t.upper().replace("-", "_")
        if key in DTYPES:
            return DTYPES[key]
    raise ConfigError(f"unknown data type {t!r}; known types are {', '.join(DTYPES)}")


#: Named weight formats: name -> candidate type names (one type, or a per-group mixture).
FORMATS = {
    "bitmod3": MIXTURES[3],
    "bitmod4": MIXTURES[4],
    "fp3": ("FP3",),
    "fp4": ("FP4",),
    "flint4": ("FLINT4",),
    "int3-sym": ("INT3",),
    "int4-sym": ("INT4",),
    **{name.lower().replace("_", "-"): (name,) for name in MIXTURES[3] + MIXTURES[4]},
}

#: Asymmetric integer baselines (scale and zero point per group, :mod:`mixpim.models.quant`).
ASYM_FORMATS = {"int3-asym": 3, "int4-asym": 4}


# -- terms ------------------------------------------------------------------------------------------

def _naf(v):
    """Non-adjacent form of ``v``: the fewest signed powers of two."""
    out, i = [], 0
    while v:
        if v & 1:
            d = 2 - (v & 3)  # +1 or -1
            out.append((d, i))
            v -= d
        v >>= 1
        i += 1
    return sorted(out, key=lambda t: -t[1])


def terms(value):
    """``value`` as the fewest signed powers of two: a list of ``(sign, shift)``, largest shift first,
    with ``sum(sign << shift) == value``. Plain binary is preferred when it is as short (the FP
    exponent + mantissa form). ``terms(0) == []``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"value must be an integer, not {value!r}")
    v = int(value)
    if v == 0:
        return []
    sign = 1 if v > 0 else -1
    a = abs(v)
    binary = [(sign, s) for s in reversed(range(a.bit_length())) if a >> s & 1]
    naf = _naf(v)
    return binary if len(binary) <= len(naf) else naf


def booth_digits(v, bits):
    """Radix-4 Booth digits of the ``bits``-bit two's complement integer ``v``.

    Returns ``ceil(bits/2)`` digits in {-2, -1, 0, 1, 2}, least significant first, with
    ``sum(d * 4**i) == v``. Digit ``i`` is ``-2*b[2i+1] + b[2i] + b[2i-1]`` (``b[-1] = 0``, bits of
    ``v`` sign-extended).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ConfigError(f"bits must be a positive integer, not {bits!r}")
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"v must be an integer, not {v!r}")
    v = int(v)
    if not -(1 << (bits - 1)) <= v < 1 << (bits - 1):
        raise RangeError(f"{v} does not fit {bits}-bit two's complement")
    bit = lambda i: (v >> i) & 1 if i >= 0 else 0  # noqa: E731 -- Python's >> sign-extends
    return tuple(-2 * bit(2 * i + 1) + bit(2 * i) + bit(2 * i - 1) for i in range(-(-bits // 2)))


def cycles_per_slice(t):
    """Cycles the bit-serial PE spends on one weight slice of type ``t``: 2 for every FP/FLINT and
    BitMoD type (at most two terms), ``ceil(bits/2)`` Booth digits for INT-b."""
    t = dtype(t)
    return -(-t.bits // 2) if t.kind == "int" else 2


def code_terms(t):
    """The per-cycle terms of every code of ``t``: a tuple (by code) of tuples of exactly
    :func:`cycles_per_slice` ``(sign, shift)`` slots, or ``None`` for a reserved code.

    FP/FLINT types: :func:`terms` of the value (largest first), padded with ``(0, 0)``. INT types:
    slot ``i`` is Booth digit ``i`` as ``(sign, 2*i + (|d| == 2))`` (``(0, 2*i)`` for a zero digit).
    """
    t = dtype(t)
    n = cycles_per_slice(t)
    out = []
    for v in t.codes:
        if v is None:
            out.append(None)
        elif t.kind == "int":
            out.append(tuple((int(np.sign(d)), 2 * i + (abs(d) == 2))
                             for i, d in enumerate(booth_digits(v, t.bits))))
        else:
            tt = terms(v)
            if len(tt) > n:
                raise AssertionError(f"{t.name} value {v} needs {len(tt)} terms")
            out.append(tuple(tt) + ((0, 0),) * (n - len(tt)))
    return tuple(out)


def term_sum_max(types):
    """Largest ``|partial sum of a weight's terms|`` over every code of ``types`` (the terms in
    the order the PE adds them): bounds the PE's intermediate sums, and is at least the largest
    ``|value|`` (Booth digits of INT-b can pass beyond the weight on the way)."""
    top = 0
    for t in types:
        for tt in code_terms(t):
            run = 0
            for sign, shift in tt or ():
                run += sign << shift
                top = max(top, abs(run))
    return top


def code_table_markdown(bits):
    """The code -> value table of the ``bits``-bit types (3 or 4) as markdown; the special values are
    bold, ``res`` marks a reserved code, ``-0`` the redundant negative zero."""
    names = [f"INT{bits}", f"FP{bits}", *MIXTURES[bits]] + (["FLINT4"] if bits == 4 else [])
    lines = ["| code | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for c in range(1 << bits):
        cells = []
        for name in names:
            t = DTYPES[name]
            v = t.codes[c]
            if v is None:
                cells.append("res")
            elif c == t.special_code:
                cells.append(f"**{v:+d}**")
            elif c == 1 << (bits - 1):
                cells.append("-0")
            else:
                cells.append(str(v))
        lines.append(f"| {c:0{bits}b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

