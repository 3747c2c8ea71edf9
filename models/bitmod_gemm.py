"""Golden semantics and exact cycle model of the BitMoD bit-serial array.

Arithmetic (docs/bitmod.md; the same integers as the MixPE array, with BitMoD's weight values)::

    a_val[m, k] = sig[m, k] << (exp[m, k] - 1)            FP16 activations, units of 2**-24
                = a[m, k]                                 INT8 activations
    v[n, k]     = value of code q[n, k] in type types[sel[n, g]]   a small integer (models.bitmod)
    I[m, n, g]  = sum_{k in group g} a_val[m, k] * v[n, k]        exact group partial sum (PE)
    acc[m, n]   = sum_g sm[n, g] * I[m, n, g]                      exact, acc_bits (column edge)

The real-valued result is ``acc * 2**-e[n] * 2**-24`` (FP16) or ``acc * 2**-e[n] * sa[m]`` (INT8),
:func:`mixpim.models.mixpe.output_to_float`. Nothing is rounded inside the array. FP16 infinities
and NaN are taken as 0 and reported per token (``GemmResult.nonfinite``).

How the hardware gets there: the PE consumes each weight as ``terms`` signed powers of two, one per
cycle (:func:`term_table`, from :func:`mixpim.models.bitmod.code_terms`: at most two terms for
every FP3/FP4/FLINT4/BitMoD value, ``ceil(b/2)`` radix-4 Booth digits for INT-b), adding
``+-(a_val << shift)`` to its group partial sum; the column edge multiplies each group sum by the
integer scale mantissa one mantissa bit per cycle and accumulates. Every beat takes the same
``terms`` cycles (unused slots are zero terms), so timing never depends on the data.

Cycle model (:func:`bitmod_timing`). A cycle is one clock edge; a transfer is an edge with valid and
ready high. Let ``t`` be the edge on which a tile's last beat is transferred, ``T`` =
``params.terms``, ``S`` = ``params.scale_bits``. Registers along the path of output (i, j):

=====================================================  =======================================
stage                                                  edge at which it is registered
=====================================================  =======================================
input stage: held activation; term ``s`` of the beat   ``t + s``, s = 0 .. T-1
PE (i, j) inputs (row skew i, column skew j)           ``t + s + i + j``
PE (i, j) group result (after the last term)           ``t + T + i + j``
dequantizer of column j accepts row i's job            ``t + T + j + 1 + i*S``
dequantizer's last add (row i's tile total)            ``t + T + j + 1 + (i+1)*S``
after deskew (``cols - 1 - j`` registers)              ``t + T + cols + (i+1)*S``
output transfer of row i                               ``t + T + cols + 1 + (i+1)*S``
=====================================================  =======================================

So the latency from a tile's last beat to its first output row is ``L = T + cols + 1 + S`` and the
rows follow every ``S`` cycles. The input takes one beat every ``T`` cycles; a GEMM of ``n_t``
tiles of ``B`` beats fed back to back (output always ready) gives::

    first_output = (B - 1) * T + L
    total        = (n_t * B - 1) * T + L + (rows - 1) * S + 1

The column's single bit-serial dequantizer needs ``rows * S`` cycles per group and a group's results
arrive at most every ``group * T`` cycles: hence the constraint ``rows * scale_bits <= group *
terms`` (:class:`BitmodParams` checks it). Under it, tiles overlap completely and the cycle counts
above are exact.
"""

from dataclasses import dataclass, fields

import numpy as np

from .bitmod import BitmodWeights
from .bitmod_dtypes import MIXTURES, code_terms, cycles_per_slice, dtype, term_sum_max
from .config import GROUP_SIZES, check_int
from .errors import ConfigError, RangeError
from .mixpe import (accumulate_groups, activation_values, array_unstream, check_gemm_shapes, check_weights,
                    gemm_tiles, group_sums, output_to_float, stream_tiles)
from .widths import AccumulatorWidths, bitmod_psum_max, signed_bits

__all__ = ["SEL_BITS", "BitmodParams", "BitmodTiming", "term_table", "value_table", "array_selectors", "bitmod_gemm", "bitmod_stream",
           "bitmod_timing", "array_unstream", "output_to_float"]

#: Width of the per-group type selector in the array's input beats (up to 4 types per array).
SEL_BITS = 2



def default_types(wbits):
    """The BitMoD mixture at 3 and 4 bits, else the single type INT-``wbits``."""
    return MIXTURES.get(wbits, (f"INT{wbits}",))


@dataclass(frozen=True)
class BitmodParams(AccumulatorWidths):
    """Configuration, widths and latency of one BitMoD array.

    Arguments
    ---------
    rows, cols : int, 1..256
        Array size (tokens x output features per tile).
    group : int, one of 32, 64, 128
        Weights per quantization group along K.
    wbits : int, 2..8
        Width of the weight codes.
    types : sequence of 1..4 type names (or :class:`~mixpim.models.bitmod.DType`), optional
        The types a group may select, in selector order; all ``wbits`` wide. Default: the BitMoD
        mixture ``MIXTURES[wbits]`` for 3 and 4 bits, else ``("INT<wbits>",)`` (INT8 mode).
        Stored as a tuple of canonical names.
    act_format : ``"fp16"`` (default, BitMoD's format) or ``"int8"``
    scale_bits : int, 2..16
        Width of the unsigned per-group scale mantissa (default 8); the dequantizer spends one
        cycle per bit.
    acc_headroom : int, 1..24
        Accumulator bits above one scaled group result: up to ``2**acc_headroom`` groups per tile.

    Members (derived; widths of two's complement values unless noted)
    -------
    terms : cycles per beat, ``max(cycles_per_slice(t))`` over ``types`` (2 for FP3/FP4/BitMoD and
        INT3/INT4, 4 for INT8)
    max_shift, shift_bits : largest term shift and the unsigned width carrying it
    value_max : largest ``|value|`` of any type; ``term_sum_max``: largest ``|partial sum of a
        weight's terms|`` (bounds the PE's intermediate sums; >= ``value_max``)
    act_bits : activation as it travels the rows (INT8: 8; FP16: 12-bit significand, 5-bit shift)
    prod_bits : one term ``+-(a_val << shift)``
    psum_bits : the PE's group partial sum
    scaled_bits : ``sm * I``; ``acc_bits = scaled_bits + acc_headroom``
    latency : cycles from a tile's last input transfer to its first output transfer
    row_interval : cycles between a tile's output rows (``scale_bits``)
    scale_fifo_depth : scales of groups in flight between the input and the column edges

    Raises
    ------
    ConfigError : a field is out of range, or ``rows * scale_bits > group * terms``.
    """

    rows: int = 4
    cols: int = 4
    group: int = 32
    wbits: int = 4
    types: tuple = None
    act_format: str = "fp16"
    scale_bits: int = 8
    acc_headroom: int = 12

    def __post_init__(self):
        check_int("rows", self.rows, 1, 256)
        check_int("cols", self.cols, 1, 256)
        if isinstance(self.group, bool) or self.group not in GROUP_SIZES:
            raise ConfigError(f"group must be one of {GROUP_SIZES}, not {self.group!r}")
        check_int("wbits", self.wbits, 2, 8)
        types = default_types(self.wbits) if self.types is None else self.types
        if isinstance(types, str) or not isinstance(types, (tuple, list)):
            raise ConfigError(f"types must be a sequence of type names, not {types!r}")
        ts = tuple(dtype(t) for t in types)
        if not 1 <= len(ts) <= 1 << SEL_BITS:
            raise ConfigError(f"types must hold 1 to {1 << SEL_BITS} types, not {len(ts)}")
        for t in ts:
            if t.bits != self.wbits:
                raise ConfigError(f"types must all be {self.wbits}-bit types, not {t.name} ({t.bits} bits)")
        if len({t.name for t in ts}) != len(ts):
            raise ConfigError(f"types repeat: {', '.join(t.name for t in ts)}")
        object.__setattr__(self, "types", tuple(t.name for t in ts))
        if self.act_format not in ("fp16", "int8"):
            raise ConfigError(f"act_format must be 'fp16' or 'int8', not {self.act_format!r}")
        check_int("scale_bits", self.scale_bits, 2, 16)
        check_int("acc_headroom", self.acc_headroom, 1, 24)
        if self.rows * self.scale_bits > self.group * self.terms:
            raise ConfigError(
                f"rows * scale_bits ({self.rows} * {self.scale_bits} = {self.rows * self.scale_bits}) must "
                f"not exceed group * terms ({self.group} * {self.terms} = {self.group * self.terms}): each "
                f"column's bit-serial dequantizer spends scale_bits cycles on each of the rows results of "
                f"a group, and a column receives a group's results every group * terms cycles")

    @property
    def family(self):
        return "bitmod"

    @property
    def dtypes(self):
        return tuple(dtype(t) for t in self.types)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["types"] = list(self.types)
        return d

    @property
    def terms(self):
        return max(cycles_per_slice(t) for t in self.types)

    @property
    def max_shift(self):
        slots, _ = term_table(self)
        return int(slots[..., 2].max())

    @property
    def shift_bits(self):
        return max(1, self.max_shift.bit_length())

    @property
    def value_max(self):
        return max(t.maxmag for t in self.dtypes)

    @property
    def term_sum_max(self):
        return term_sum_max(self.types)

    @property
    def prod_bits(self):
        return signed_bits(self.act_val_max << self.max_shift)

    @property
    def psum_max(self):
        # earlier weights of the group at full value, the current one part way through its terms
        return bitmod_psum_max(self.group, self.act_format, self.types)

    @property
    def row_interval(self):
        return self.scale_bits

    @property
    def cycles_per_beat(self):
        return self.terms

    @property
    def latency(self):
        # input stage (T terms), skews (i + j), PE result, dequantizer job, S adds, deskew, transfer
        return self.terms + self.cols + 1 + self.scale_bits

    @property
    def scale_fifo_depth(self):
        # A group's scale is written at its first beat and read by column j at edge t + T + j + 1
        # (t: the group's last beat); the slot is rewritten D groups later, no earlier than
        # t + T + (D - 1) * group * T. So (D - 1) * group * T >= cols suffices.
        return 1 + -(-self.cols // (self.group * self.terms))


def term_table(params):
    """The decoder's table, derived from :func:`mixpim.models.bitmod.code_terms`.

    Returns ``(slots, reserved)``: ``slots`` int64 (2**SEL_BITS, 2**wbits, terms, 3) holding
    ``(valid, sign, shift)`` of the term consumed in each cycle of a beat (``sign`` 1 = negative;
    ``valid`` 0 = a zero term, which also pads types with fewer cycles per slice); ``reserved``
    bool (2**SEL_BITS, 2**wbits): the code is reserved in its type, or the selector names no type.
    Reserved entries have only zero terms.
    """
    return _term_table(params.types, params.wbits)


_TABLES = {}


def _term_table(types, wbits):
    key = (types, wbits)
    if key not in _TABLES:
        n = max(cycles_per_slice(t) for t in types)
        slots = np.zeros((1 << SEL_BITS, 1 << wbits, n, 3), np.int64)
        reserved = np.ones((1 << SEL_BITS, 1 << wbits), bool)
        for s, t in enumerate(types):
            for c, tt in enumerate(code_terms(t)):
                if tt is None:
                    continue
                reserved[s, c] = False
                for i, (sign, shift) in enumerate(tt):
                    if sign:
                        slots[s, c, i] = (1, int(sign < 0), shift)
        slots.flags.writeable = reserved.flags.writeable = False
        _TABLES[key] = (slots, reserved)
    return _TABLES[key]


def value_table(params):
    """The value of each (selector, code): int64 (2**SEL_BITS, 2**wbits), from
    :attr:`~mixpim.models.bitmod.DType.codes` of ``params.types``; reserved codes and selectors
    naming no type hold 0 (the decoder gives them zero terms)."""
    table = np.zeros((1 << SEL_BITS, 1 << params.wbits), np.int64)
    for s, t in enumerate(params.dtypes):
        table[s] = [0 if v is None else v for v in t.codes]
    return table


def _selector_map(params, qw):
    """Array selector of each of ``qw``'s candidate types; :class:`RangeError` if one is missing."""
    out = []
    for t in qw.types:
        if t.name not in params.types:
            raise RangeError(f"the weights use {t.name}, which this array does not have "
                             f"(types {', '.join(params.types)})")
        out.append(params.types.index(t.name))
    return np.array(out, np.int64)


def _check_operands(params, act, qw):
    if not isinstance(params, BitmodParams):
        raise TypeError(f"params must be a BitmodParams, not {params!r}")
    if not isinstance(qw, BitmodWeights):
        raise TypeError(f"weights must be BitmodWeights, not {type(qw).__name__}")
    check_weights(params, qw, codes=False)  # code widths: the types (_selector_map)
    sel_map = _selector_map(params, qw)
    act = check_gemm_shapes(act, qw.codes)
    if params.act_format == "fp16" and act.dtype != np.float16:
        raise TypeError(f"FP16 activations must be a float16 array, not {act.dtype}")
    return act, sel_map


def array_selectors(params: BitmodParams, qw: BitmodWeights):
    """The array's selector of every group of ``qw``: int64 (N, groups), what a tile's META entry
    holds in its selector byte. Raises as :func:`bitmod_gemm` does for weights the array cannot
    take (group size, scale width, a type the array lacks)."""
    _check_operands(params, np.zeros((1, qw.codes.shape[1]), np.float16 if params.act_format == "fp16"
                                     else np.int8), qw)
    return _selector_map(params, qw)[qw.selector]


def bitmod_gemm(params: BitmodParams, act, qw: BitmodWeights):
    """Golden GEMM ``act`` (M, K) x ``qw`` (N, K)^T as the BitMoD array computes it.

    Returns a :class:`~mixpim.models.mixpe.GemmResult`: ``acc`` (M, N) (int64 for INT8
    activations, Python ints for FP16) and ``nonfinite`` (M,). Raises :class:`ShapeError` on shape
    mismatches and :class:`RangeError` if the weights use a type the array lacks, their scales are
    too wide, or the accumulator would overflow.
    """
    act, _ = _check_operands(params, act, qw)
    a_val, nonfinite = activation_values(act, params.act_format)
    isum = group_sums(a_val, qw.table_values(), qw.group)  # |I| < 2**55: exact in int64
    return accumulate_groups(params, isum, qw.scales.mant, nonfinite)  # INT8: < 2**44


def bitmod_stream(params: BitmodParams, act, qw: BitmodWeights):
    """The input beats that compute ``act`` x ``qw``^T on the array.

    Returns a dict of numpy arrays, one row per beat: ``act`` (beats, rows) int64 (FP16 bit patterns
    or INT8 values), ``code``/``sel``/``scale`` (beats, cols) int64 (``sel`` is the array's selector
    of the group's type, ``scale`` its mantissa, both constant over a group), ``last`` (beats,) bool
    on the last beat of every tile. Tiles run in row-major order of (token block, feature block);
    padding rows, columns and K carry activation 0 and code 0 (value 0 in every type).
    """
    act, sel_map = _check_operands(params, act, qw)
    g = params.group
    return stream_tiles(params, act, {"code": qw.codes, "sel": np.repeat(sel_map[qw.selector], g, axis=1),
                                      "scale": np.repeat(qw.scales.mant, g, axis=1)})


@dataclass(frozen=True)
class BitmodTiming:
    """Cycle counts of one GEMM streamed through the BitMoD array with no stalls.

    ``first_output``: cycles from the first input transfer to the first output transfer.
    ``total``: cycles from the first input transfer to the last output transfer, both included.
    ``cycles_per_beat`` (``terms``), ``latency`` and ``row_interval`` are the model's constants.
    """

    tiles: int
    beats_per_tile: int
    cycles_per_beat: int
    latency: int
    row_interval: int
    first_output: int
    total: int


def bitmod_timing(params: BitmodParams, m, n, k):
    """Exact cycle model of the array for an (M, N, K) GEMM fed back to back (module doc)."""
    tiles, beats = gemm_tiles(params, m, n, k)
    t, lat, s = params.terms, params.latency, params.row_interval
    return BitmodTiming(tiles, beats, t, lat, s, (beats - 1) * t + lat,
                        (tiles * beats - 1) * t + lat + (params.rows - 1) * s + 1)
