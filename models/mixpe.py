"""Golden semantics and exact cycle model of the MixPE array (and of the baseline array).

Arithmetic (identical for the MixPE and the baseline array; only where it happens differs)::

    a_val[m, k]  = a[m, k]                                   INT8 activations
                 = sig[m, k] << (exp[m, k] - 1)               FP16 activations, units of 2**-24
    wc[n, k]     = q[n, k] - z[n, g]                          signed, wbits + 1 bits
    I[m, n, g]   = sum_{k in group g} a_val[m, k] * wc[n, k]  exact group partial sum (PE)
    acc[m, n]    = sum_g sm[n, g] * I[m, n, g]                exact, acc_bits two's complement (array edge)

With group offsets (``params.group_offset``; weights ``s (q - z) + om 2**-e``) each group adds the
offset mantissa times the token's activation group sum, also exact::

    A[m, g]      = sum_{k in group g} a_val[m, k]             gsum_bits (row edge, once per token row)
    acc[m, n]    = sum_g (sm[n, g] * I[m, n, g] + om[n, g] * A[m, g])

The real-valued result is ``acc * 2**-e[n] * sa[m]`` (INT8) or ``acc * 2**-e[n] * 2**-24`` (FP16).
Nothing is rounded inside the array. Widths come from :class:`ArrayParams`; the golden model checks
that every intermediate fits them, so the hardware never silently wraps.

Streaming contract (docs/mixpe.md): the array computes one output tile of ``rows`` tokens x ``cols``
output features per ``beats = groups * group`` input beats; a beat carries one activation per row
and one weight code, zero point and scale per column. :func:`array_stream` builds the beat sequence
for an (M, N, K) GEMM (tiles in row-major order of (token block, feature block), padded with zeros),
:func:`array_unstream` places output beats back into (M, N).
"""

import functools
from dataclasses import dataclass

import numpy as np

from .config import TileConfig
from .errors import RangeError, ShapeError
from .numerics import fp16_decode
from .quant import QuantizedWeights, num_groups
from .widths import (AccumulatorWidths, array_offset_max, array_psum_max, array_term_max, centered_weight_max,
                     offset_bits, signed_bits)

__all__ = ["check_weights", "ArrayParams", "ArrayTiming", "GemmResult", "activation_values", "fp16_values",
           "GroupedOperand", "group_sums",
           "activation_group_sums",
           "mixpe_gemm", "gemm_values", "array_stream", "array_unstream", "array_timing", "output_to_float",
           "check_gemm_shapes", "accumulate_groups", "stream_tiles", "gemm_tiles"]


@dataclass(frozen=True)
class ArrayParams(AccumulatorWidths):
    """Widths and latencies of one array configuration, derived from a :class:`TileConfig`.

    Members (all bit widths of two's complement values unless noted)
    -------
    rows, cols, wbits, group, scale_bits, act_format ("int8" | "fp16"), family ("mixpe" | "baseline"),
    group_offset (bool: the array adds ``om * A`` per group)
    wc_bits : centered weight ``q - z``, ``wbits + 1``
    act_bits : INT8 activation (8), or FP16 significand (12) with a 5-bit unsigned exponent
    act_val_bits : one activation value ``a_val``, ``signed_bits(act_val_max)`` (INT8 9, FP16 41)
    prod_bits : one PE product ``a_val * wc`` (FP16: after alignment)
    psum_bits : one group partial sum ``I``
    scaled_bits : ``sm * I``
    offset_bits : signed offset mantissa ``om`` (``scale_bits + 8``)
    gsum_bits : activation group sum ``A``
    offset_prod_bits : ``om * A``
    term_bits : one group's contribution, ``sm * I`` (``scaled_bits``) or ``sm * I + om * A``
    acc_bits : output accumulator, ``term_bits + acc_headroom``
    latency : cycles from the input transfer of a tile's last beat to the output transfer of the
        tile's first row (rows follow on consecutive cycles)
    scale_fifo_depth : per-column scale FIFO entries of the MixPE edge (groups in flight)
    """

    rows: int
    cols: int
    wbits: int
    group: int
    scale_bits: int
    acc_headroom: int
    act_format: str
    family: str
    group_offset: bool = False

    @classmethod
    def from_config(cls, cfg: TileConfig):
        return cls(cfg.rows, cfg.cols, cfg.wbits, cfg.group, cfg.scale_bits, cfg.acc_headroom,
                   cfg.act_format, cfg.family, cfg.group_offset)

    @property
    def wc_max(self):
        return centered_weight_max(self.wbits)

    @property
    def wc_bits(self):
        return self.wbits + 1

    @property
    def prod_bits(self):
        return signed_bits(self.act_val_max * self.wc_max)

    @property
    def psum_max(self):
        return array_psum_max(self.group, self.act_format, self.wbits)

    @property
    def act_val_bits(self):
        return signed_bits(self.act_val_max)

    @property
    def offset_bits(self):
        return offset_bits(self.scale_bits)

    @property
    def gsum_bits(self):
        return signed_bits(self.group * self.act_val_max)

    @property
    def offset_prod_bits(self):
        return signed_bits(array_offset_max(self.group, self.act_format, self.scale_bits))

    @property
    def term_bits(self):
        return signed_bits(array_term_max(self.group, self.act_format, self.wbits, self.scale_bits,
                                          self.group_offset))

    @functools.cached_property
    def acc_bits(self):
        return self.term_bits + self.acc_headroom

    #: Cycles per input beat and between a tile's output rows (the BitMoD array's ``terms`` and
    #: ``scale_bits``; here one beat and one row per cycle).
    cycles_per_beat = 1
    row_interval = 1

    @property
    def latency(self):
        # MixPE: input reg, row/column skew (i + j), PE group register, column bus register,
        # scale register, accumulator register, deskew (cols - 1 - j)  => cols + 4.
        # Baseline: input reg, skew, PE accumulator register, column bus register, deskew => cols + 2.
        return self.cols + (4 if self.family == "mixpe" else 2)

    @property
    def scale_fifo_depth(self):
        return 2 + -(-(self.rows + self.cols) // self.group)


@dataclass(frozen=True)
class GemmResult:
    """``acc`` (M, N): int64 for INT8 activations, Python ints (object array) for FP16.
    ``nonfinite`` (M,): the token had an inf/NaN activation (treated as 0)."""

    acc: np.ndarray
    nonfinite: np.ndarray


def activation_values(act, fmt):
    """``(a_val, nonfinite)`` int64 (M, K) from INT8 or FP16 activations (see module doc)."""
    act = np.asarray(act)
    if fmt == "int8":
        if act.dtype.kind not in "iu" or act.min(initial=0) < -128 or act.max(initial=0) > 127:
            raise RangeError("INT8 activations must be integers in -128..127")
        return act.astype(np.int64), np.zeros(act.shape, bool)
    if fmt == "fp16":
        if act.dtype not in (np.float16, np.uint16):
            raise RangeError(f"FP16 activations must be float16 (or uint16 bit patterns), not {act.dtype}")
        return fp16_values(act.view(np.uint16))
    raise ValueError(f"activation format must be 'int8' or 'fp16', not {fmt!r}")


@functools.cache
def _fp16_tables():
    """``a_val`` and ``nonfinite`` of every FP16 bit pattern (index = the pattern), from
    :func:`~.numerics.fp16_decode`: ``sig << (exp - 1)``."""
    sig, exp, nonfinite = fp16_decode(np.arange(1 << 16, dtype=np.uint16))
    a_val, nonfinite = sig << (exp - 1), nonfinite
    a_val.flags.writeable = nonfinite.flags.writeable = False
    return a_val, nonfinite


def fp16_values(bits):
    """``(a_val, nonfinite)`` (int64, bool) of FP16 bit patterns ``bits`` (uint16, any shape): the
    FP16 case of :func:`activation_values`, looked up in a table of all 2**16 patterns."""
    a_val, nonfinite = _fp16_tables()
    idx = np.asarray(bits).astype(np.intp)  # (take() with intp indices is the fastest gather)
    return a_val.take(idx), nonfinite.take(idx)


#: Every integer of magnitude below this is exact in float64 (53-bit significand).
FLOAT64_EXACT = 1 << 53


def _max_abs(x):
    """``max |x|`` of an int64 array as a Python int (0 if empty)."""
    return max(int(x.max(initial=0)), -int(x.min(initial=0)))


class GroupedOperand:
    """An integer matrix (rows, K) as the array takes it: cut into groups of ``group`` along K
    (a last, shorter group padded with zeros), with the forms :func:`group_sums` and
    :func:`activation_group_sums` use, each computed once (the golden executor keeps a GEMM's
    activations for the GEMMs that read the same words).

    Members
    -------
    values : int64 array (rows, groups, group)
    k, group : int
    max_abs : int
        ``max |values|``, or the bound ``max_abs`` the caller gave (e.g. of masked fields).
    """

    def __init__(self, values, group, max_abs=None):
        v = np.asarray(values, np.int64)
        m, k = v.shape
        ng = num_groups(k, group)
        if k != ng * group:
            padded = np.zeros((m, ng * group), np.int64)
            padded[:, :k] = v
            v = padded
        self.values = v.reshape(m, ng, group)
        self.k, self.group = k, group
        if max_abs is not None:
            self.max_abs = max_abs

    @functools.cached_property
    def max_abs(self):
        return _max_abs(self.values)

    @functools.cached_property
    def sums_max_abs(self):
        """``max |sums|``."""
        return _max_abs(self.sums)

    @functools.cached_property
    def floats(self):
        """The values as float64 (groups, rows, group): exact while ``max_abs`` < 2**53."""
        return self.values.transpose(1, 0, 2).astype(np.float64)

    @functools.cached_property
    def sums(self):
        """The group sums (rows, groups) int64."""
        return self.values.sum(axis=2)


def group_sums(a_val, wc, group):
    """Exact group partial sums ``I`` int64 (M, N, groups) of ``a_val`` (M, K) x ``wc`` (N, K)."""
    return _group_sums(GroupedOperand(a_val, group), GroupedOperand(wc, group))


def _group_sums(a, w):
    """:func:`group_sums` of two :class:`GroupedOperand`."""
    if a.group * a.max_abs * w.max_abs < FLOAT64_EXACT:
        # Exact in float64 (and faster, as a batched matrix product): every product and every
        # partial sum of a group, in whatever order (or fused multiply-add) the product takes
        # them, is an integer of magnitude at most group * max|a| * max|w| < 2**53, so every
        # operation's exact result is representable and nothing is rounded.
        isum = np.matmul(a.floats, w.floats.transpose(0, 2, 1))  # (G, M, g) x (G, g, N)
        return isum.transpose(1, 2, 0).astype(np.int64)  # (G, M, N) -> (M, N, G)
    # (M, G, g) x (N, G, g) -> (M, N, G); every partial sum is below 2**62 (BitMoD: 2**55), exact in int64.
    return np.einsum("mgk,ngk->mng", a.values, w.values)


def activation_group_sums(a_val, group):
    """Exact activation group sums ``A`` int64 (M, groups) of ``a_val`` (M, K), K padded with 0."""
    return GroupedOperand(a_val, group).sums  # FP16: below 2**48


def check_gemm_shapes(act, codes):
    """``act`` as an array; :class:`ShapeError` unless it is 2-D (tokens, K) with the K of the
    weight ``codes`` (N, K)."""
    act = np.asarray(act)
    if act.ndim != 2:
        raise ShapeError(f"activations must be 2-D (tokens, K), not shape {act.shape}")
    if act.shape[1] != codes.shape[1]:
        raise ShapeError(f"activations have K={act.shape[1]} but weights have K={codes.shape[1]}")
    return act


def accumulate_groups(params, isum, sm, nonfinite, offsets=None, asum=None):
    """The array edge: ``acc[m, n] = sum_g sm[n, g] * I[m, n, g]`` (``+ om[n, g] * A[m, g]`` with
    ``offsets``), exact, as a :class:`GemmResult`.

    ``isum``: the group partial sums ``I`` int64 (M, N, groups); ``sm``: the scale mantissas
    (N, groups); ``nonfinite``: (M, K) from :func:`activation_values`; ``offsets``: the offset
    mantissas ``om`` (N, groups) or None, ``asum``: the activation group sums ``A`` (M, groups).
    INT8 sums stay in int64 (far below 2**63 for every array), FP16 sums use Python ints.
    :class:`RangeError` if a partial sum over the groups would overflow ``params.acc_bits``.
    """
    acc = _accumulate(params, isum, sm, offsets, asum, nonfinite.shape[1])
    if params.act_format != "int8" and acc.dtype != object and isum.shape[2]:
        acc = acc.astype(object)  # FP16 accumulators are Python ints
    return GemmResult(acc, nonfinite.any(axis=1))


def _accumulate(params, isum, sm, offsets, asum, k, asum_max=None):
    """The sums of :func:`accumulate_groups` (``k``: K, for the message; ``asum_max``:
    ``max |asum|`` if known): int64 where every partial sum fits int64, else Python ints; int64
    zeros without groups."""
    # Every partial sum over the groups is at most ``bound`` in magnitude (each term is at most
    # max|I| * max sm + max|om| * max|A|, and there are G of them), so while bound < 2**63 the
    # terms and their running sums are exact in int64 (INT8 always: bound < 2**62); beyond it they
    # are taken as Python ints. The accumulator overflows only if some partial sum leaves
    # acc_bits, which needs bound >= 2**(acc_bits - 1): only then are the partial sums checked.
    ng = isum.shape[2]
    sm = np.asarray(sm, np.int64)
    bound = _max_abs(isum) * _max_abs(sm)
    if offsets is not None:
        offsets = np.asarray(offsets, np.int64)
        bound += _max_abs(offsets) * (_max_abs(asum) if asum_max is None else asum_max)
    bound *= ng
    if bound < 1 << 63:
        term = isum * sm[None, :, :]
        if offsets is not None:
            term += offsets[None, :, :] * asum[:, None, :]
    else:
        term = isum.astype(object) * sm[None, :, :].astype(object)
        if offsets is not None:
            term = term + offsets[None, :, :].astype(object) * asum[:, None, :].astype(object)
    lim = 1 << (params.acc_bits - 1)
    if bound >= lim:
        partial = np.cumsum(term, axis=2)
        if partial.size and (partial.max() >= lim or partial.min() < -lim):
            raise RangeError(f"the accumulator ({params.acc_bits} bits) would overflow for K={k}; "
                             f"raise acc_headroom or split K")
    if not ng:
        return np.zeros(term.shape[:2], np.int64)
    return term.sum(axis=2)


def _operands(params, act, qw):
    """The checks of :func:`mixpe_gemm` and :func:`array_stream`: ``(act, a_val, nonfinite)``."""
    act = check_gemm_shapes(act, qw.codes)
    check_weights(params, qw)
    a_val, nonfinite = activation_values(act, params.act_format)
    return act, a_val, nonfinite


def mixpe_gemm(params: ArrayParams, act, qw: QuantizedWeights):
    """Golden GEMM ``act`` (M, K) x ``qw`` (N, K)^T as the array computes it: a :class:`GemmResult`.

    Raises :class:`ShapeError` on a K mismatch and :class:`RangeError` if the operands do not fit
    the array's widths or the accumulator would overflow.
    """
    _, a_val, nonfinite = _operands(params, act, qw)
    offsets = None if qw.offsets is None else qw.offsets.astype(np.int64)
    acc = gemm_values(params, a_val, qw.centered(), qw.scales.mant, offsets)
    if params.act_format != "int8" and acc.dtype != object and a_val.shape[1]:
        acc = acc.astype(object)  # FP16 accumulators are Python ints
    return GemmResult(acc, nonfinite.any(axis=1))


def gemm_values(params, a_val, wc, sm, offsets=None):
    """The accumulators (M, N) of :func:`mixpe_gemm` (module doc) on operands that fit the array
    (the caller's guarantee; only the accumulator is checked): ``a_val`` (M, K) from
    :func:`activation_values` (or their :class:`GroupedOperand`), the centered weights
    ``wc = q - z`` (N, K; or their :class:`GroupedOperand`), the scale mantissas ``sm`` and the
    offset mantissas ``offsets`` (N, groups; None: no offset term). int64 where every partial
    sum fits int64, else Python ints (whatever the activation format)."""
    a = a_val if isinstance(a_val, GroupedOperand) else GroupedOperand(a_val, params.group)
    w = wc if isinstance(wc, GroupedOperand) else GroupedOperand(wc, params.group)
    isum = _group_sums(a, w)
    if offsets is None:
        return _accumulate(params, isum, sm, None, None, a.k)
    return _accumulate(params, isum, sm, offsets, a.sums, a.k, a.sums_max_abs)


def check_weights(params, qw, *, codes=True):
    """:class:`ShapeError` / :class:`RangeError` unless ``qw`` (after its own ``check()``) has the
    array's group size, scales no wider than ``params.scale_bits``, with ``codes`` codes no
    wider than ``params.wbits``, and group offsets only if the array has them
    (``params.group_offset``), each within ``params.offset_bits`` (two's complement)."""
    qw.check()
    if qw.group != params.group:
        raise ShapeError(f"weights are quantized in groups of {qw.group}, the array uses {params.group}")
    if codes and qw.bits > params.wbits:
        raise RangeError(f"{qw.bits}-bit weights do not fit the array's {params.wbits}-bit codes")
    if qw.scales.bits > params.scale_bits:
        raise RangeError(f"{qw.scales.bits}-bit scales do not fit the array's {params.scale_bits}-bit scales")
    offsets = getattr(qw, "offsets", None)
    if offsets is not None:
        if not getattr(params, "group_offset", False):
            raise RangeError("the weights have group offsets but the array has no offset term "
                             "(TileConfig.group_offset is False)")
        half = 1 << (params.offset_bits - 1)
        if offsets.size and (offsets.min() < -half or offsets.max() >= half):
            raise RangeError(f"group offset mantissas must fit {params.offset_bits} bits "
                             f"(-{half}..{half - 1})")


def output_to_float(params, result: GemmResult, qw: QuantizedWeights, act_scale=None):
    """Real-valued output (M, N) float64 of a golden or RTL accumulator result."""
    acc = np.asarray(result.acc if isinstance(result, GemmResult) else result)
    out = np.ldexp(acc.astype(np.float64), -qw.scales.exp[None, :])
    if params.act_format == "int8":
        return out * np.asarray(act_scale, np.float64)[:, None]
    return np.ldexp(out, -24)


def array_stream(params: ArrayParams, act, qw: QuantizedWeights):
    """The input beats that compute ``act`` x ``qw``^T on the array.

    Returns a dict of numpy arrays, one row per beat: ``act`` (beats, rows) int64 (INT8 values, or
    FP16 bit patterns), ``code``/``zero``/``scale`` (beats, cols) int64, with
    ``params.group_offset`` also ``offset`` (beats, cols) int64 (the signed offset mantissa, 0
    for weights without offsets), ``last`` (beats,) bool — set on the last beat of every tile.
    Padding rows/columns/K carry zeros (code = zero point = 0; activation 0, so padding adds
    nothing to the group sums ``A`` either).
    """
    act, _, _ = _operands(params, act, qw)  # the same checks as the golden GEMM
    k = act.shape[1]
    zero = np.repeat(qw.zeros, params.group, axis=1)
    code = zero.copy()  # padded K: q - z = 0
    code[:, :k] = qw.codes
    columns = {"code": code, "zero": zero, "scale": np.repeat(qw.scales.mant, params.group, axis=1)}
    if params.group_offset:
        off = qw.offsets if qw.offsets is not None else np.zeros_like(qw.zeros)
        columns["offset"] = np.repeat(np.asarray(off, np.int64), params.group, axis=1)
    return stream_tiles(params, act, columns)


def stream_tiles(params, act, columns):
    """Tile a GEMM into array beats (the streaming contract of the module doc).

    ``act``: the checked activations (M, K) (INT8 values; FP16 as float16 or uint16, sent as bit
    patterns). ``columns``: dict, name -> per-column operand (N, K') int along K, ``K'`` at most K
    padded to whole groups. Tiles of ``rows`` tokens x ``cols`` features run in row-major order of
    (token block, feature block), ``num_groups(K, group) * group`` beats each; padding rows,
    columns and K are 0. Returns a dict of numpy arrays, one row per beat: ``act`` (beats, rows)
    int64, each of ``columns`` (beats, cols) int64, ``last`` (beats,) bool on each tile's last beat.
    """
    m, k = act.shape
    n = next(iter(columns.values())).shape[0]
    r, c = params.rows, params.cols
    kp = num_groups(k, params.group) * params.group
    mb, nb = -(-m // r), -(-n // c)

    a = np.zeros((mb * r, kp), np.int64)
    a[:m, :k] = act.view(np.uint16) if params.act_format == "fp16" else act
    # beat (tile (i, j), k): act rows of block i, weights of block j
    a = a.reshape(mb, r, kp).transpose(0, 2, 1)  # -> (mb, nb, kp, r)
    beats = {"act": np.ascontiguousarray(np.broadcast_to(a[:, None], (mb, nb, kp, r)).reshape(-1, r))}
    for name, x in columns.items():
        w = np.zeros((nb * c, kp), np.int64)
        w[:n, :x.shape[1]] = x
        w = w.reshape(nb, c, kp).transpose(0, 2, 1)  # -> (mb, nb, kp, c)
        beats[name] = np.ascontiguousarray(np.broadcast_to(w[None], (mb, nb, kp, c)).reshape(-1, c))
    last = np.zeros((mb, nb, kp), bool)
    last[:, :, -1] = True
    beats["last"] = last.reshape(-1)
    return beats


def array_unstream(params: ArrayParams, beats, m, n):
    """Place output beats (tiles * rows, cols) back into the (M, N) result."""
    r, c = params.rows, params.cols
    mb, nb = -(-m // r), -(-n // c)
    beats = np.asarray(beats)
    if beats.shape != (mb * nb * r, c):
        raise ShapeError(f"expected {mb * nb * r} output beats of {c} values, got shape {beats.shape}")
    full = beats.reshape(mb, nb, r, c).transpose(0, 2, 1, 3).reshape(mb * r, nb * c)
    return full[:m, :n]


@dataclass(frozen=True)
class ArrayTiming:
    """Cycle counts of one GEMM streamed through the array with no stalls.

    ``first_output``: cycles from the first input transfer to the first output transfer.
    ``total``: cycles from the first input transfer to the last output transfer, both included.
    """

    tiles: int
    beats_per_tile: int
    latency: int
    first_output: int
    total: int


def gemm_tiles(params, m, n, k):
    """``(tiles, beats per tile)`` of an (M, N, K) GEMM on an array of ``params`` (rows, cols,
    group); :class:`ShapeError` unless M, N and K are positive integers."""
    for name, v in (("M", m), ("N", n), ("K", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ShapeError(f"{name} must be a positive integer, not {v!r}")
    return -(-m // params.rows) * -(-n // params.cols), num_groups(k, params.group) * params.group


def array_timing(params: ArrayParams, m, n, k):
    """Exact cycle model of the array for an (M, N, K) GEMM fed back to back (see module doc)."""
    tiles, beats = gemm_tiles(params, m, n, k)
    lat = params.latency
    return ArrayTiming(tiles, beats, lat, beats - 1 + lat, tiles * beats + lat + params.rows - 1)
