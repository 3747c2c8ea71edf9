"""Golden functional executor of the tile: runs a :class:`~mixpim.models.program.Program` bit-exactly.

:func:`execute` first runs the cycle model (:func:`~mixpim.models.tile_timing.simulate`, the only
timing model), which decides which instructions run, when, and how the run ends (HALT or an error
code). It then applies the effect of every instruction that started, in (start cycle, pc) order,
each as one vectorized numpy step on DRAM (a byte array) and the scratchpads:

* LOAD / STORE move bytes between DRAM rows and scratchpad words (word formats:
  :mod:`~mixpim.models.config`);
* GEMM decodes its ACT/WGT/META words into activations, weight codes, zero points (BitMoD:
  type selectors, giving the weight values), scale mantissas (and, with ``group_offset``, offset
  mantissas) and calls the arithmetic of :func:`~mixpim.models.mixpe.mixpe_gemm` and
  :func:`~mixpim.models.bitmod_gemm.bitmod_gemm` (:func:`~mixpim.models.mixpe.gemm_values`), so
  one tile is computed exactly as the array computes it; accumulators wrap at ``acc_bits``;
* VEC, VSOFT and VNORM are :mod:`~mixpim.models.vec_exec` (the vector unit's numerics and
  where it reads and writes);
* the PIM instructions call :func:`~mixpim.models.pim.apply_pim` (the global buffers and result
  registers are :class:`~mixpim.models.pim.PimState`).

Applying instructions atomically in start order is exact for every program whose conflicting
accesses are ordered by tokens or SYNC (the compiler's job). Accesses of instructions on different
units that overlap in time and touch a common address, at least one writing, are reported in
:attr:`Result.races` (for such a program the result depends on cycle-level details; fix the
tokens).
"""

from dataclasses import dataclass, replace

import numpy as np

from .config import TileConfig
from .errors import ShapeError
from .isa import ErrorCode, Opcode, Spad
from .mixpe import GroupedOperand, fp16_values, gemm_values
from .numerics import wrap
from .pim import PIM_OPS, PimState, apply_pim
from .program import Program, ProgramError, Segment
from .footprint import dma_spans, footprint
from .tile_array import array_params, bitmod_weight_values
from .tile_timing import TimingResult, simulate
from .vec_exec import VectorState, exec_vec, exec_vnorm, exec_vsoft
from .vector import fp16_bits_to_int8

__all__ = ["Status", "Race", "Result", "execute", "run",
           "pack_act", "unpack_act", "pack_wgt", "unpack_wgt", "pack_meta", "unpack_meta", "unpack_offsets",
           "pack_acc", "unpack_acc", "wrap"]


# -- word formats (docs/tile.md, "Scratchpads and layouts") ------------------------------------

def _words(data, word_bytes):
    a = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) else data
    a = np.asarray(a, dtype=np.uint8)
    if a.ndim == 1:
        if a.size % word_bytes:
            raise ShapeError(f"{a.size} bytes are not a whole number of {word_bytes}-byte words")
        a = a.reshape(-1, word_bytes)
    if a.shape[1] != word_bytes:
        raise ShapeError(f"expected {word_bytes}-byte words, not shape {a.shape}")
    return a


def _matrix(values, width, name):
    v = np.asarray(values)
    if v.ndim != 2 or v.shape[1] != width:
        raise ShapeError(f"{name} must have shape (words, {width}), not {v.shape}")
    return v


def pack_act(config, values):
    """ACT words as bytes: ``values`` (words, rows) int8, or float16 / uint16 bit patterns for FP16
    configurations."""
    v = _matrix(values, config.rows, "activations")
    if config.act_format == "int8":
        if v.dtype.kind not in "iu" or v.min(initial=0) < -128 or v.max(initial=0) > 127:
            raise ShapeError("INT8 activations must be integers in -128..127")
        return v.astype(np.int8).tobytes()
    if v.dtype not in (np.float16, np.uint16):
        raise ShapeError(f"FP16 activations must be float16 or uint16 bit patterns, not {v.dtype}")
    return v.view(np.uint16).astype("<u2").tobytes()


def unpack_act(config, data):
    """ACT words (words, rows): int8 values, or uint16 FP16 bit patterns."""
    w = _words(data, config.act_word_bytes)
    if config.act_format == "int8":
        return w.view(np.int8).copy()
    return np.ascontiguousarray(w).view("<u2").astype(np.uint16)


def pack_wgt(config, codes):
    """WGT words as bytes: ``codes`` (words, cols) in 0..15, column j in the low nibble of byte
    j // 2 when j is even, the high nibble when odd."""
    c = _matrix(codes, config.cols, "weight codes").astype(np.int64)
    if c.min(initial=0) < 0 or c.max(initial=0) > 15:
        raise ShapeError("weight codes must be in 0..15")
    if config.cols % 2:
        c = np.concatenate([c, np.zeros((c.shape[0], 1), np.int64)], axis=1)
    return (c[:, 0::2] | c[:, 1::2] << 4).astype(np.uint8).tobytes()


#: The two 4-bit fields (low nibble: the even column, then the high one) of every byte value.
_NIBBLES = np.stack([np.arange(256) & 0xF, np.arange(256) >> 4], axis=1).astype(np.uint8)


def unpack_wgt(config, data):
    """The 4-bit fields (words, cols) uint8 of WGT words."""
    w = _words(data, config.wgt_word_bytes)
    return _NIBBLES.take(w, axis=0).reshape(w.shape[0], -1)[:, :config.cols]


def pack_meta(config, zeros, scales, offsets=None):
    """META words as bytes: per column (``config.meta_entry_bytes``) a uint16 scale mantissa, a
    uint8 zero point and, with ``config.group_offset``, the offset mantissa as an int24;
    ``zeros``, ``scales`` and ``offsets`` (words, cols) (``offsets`` None: 0; an error on a
    configuration without group offsets)."""
    z = _matrix(zeros, config.cols, "zero points").astype(np.int64)
    s = _matrix(scales, config.cols, "scale mantissas").astype(np.int64)
    if z.shape != s.shape:
        raise ShapeError(f"zero points {z.shape} and scales {s.shape} differ in shape")
    if z.min(initial=0) < 0 or z.max(initial=0) > 0xFF or s.min(initial=0) < 0 or s.max(initial=0) > 0xFFFF:
        raise ShapeError("zero points must be in 0..255 and scale mantissas in 0..65535")
    if offsets is not None and not config.group_offset:
        raise ShapeError("group offsets need a configuration with group_offset; this one's META "
                         "entries have no offset")
    o = np.zeros_like(z) if offsets is None else _matrix(offsets, config.cols, "offset mantissas").astype(np.int64)
    if o.shape != z.shape:
        raise ShapeError(f"offsets {o.shape} and zero points {z.shape} differ in shape")
    if o.min(initial=0) < -(1 << 23) or o.max(initial=0) >= 1 << 23:
        raise ShapeError(f"offset mantissas must be in {-(1 << 23)}..{(1 << 23) - 1}")
    out = np.empty((z.shape[0], config.cols, config.meta_entry_bytes), np.uint8)
    out[:, :, 0] = s & 0xFF
    out[:, :, 1] = s >> 8
    out[:, :, 2] = z
    if config.group_offset:
        for b in range(3):
            out[:, :, 3 + b] = (o >> (8 * b)) & 0xFF
    return out.tobytes()


def _meta_entries(config, data):
    return _words(data, config.meta_word_bytes).reshape(-1, config.cols, config.meta_entry_bytes).astype(np.int64)


def _meta_zeros_scales(w):
    """``(zeros, scales)`` of META entries ``w`` (words, cols, entry bytes) int64."""
    return w[:, :, 2], w[:, :, 0] | w[:, :, 1] << 8


def _meta_offsets(w, bits=24):
    """The int24 offset mantissas of META entries ``w`` (words, cols, entry bytes) int64, or the
    two's complement value of their low ``bits`` <= 24 bits."""
    return wrap(w[:, :, 3] | w[:, :, 4] << 8 | w[:, :, 5] << 16, bits)


def unpack_meta(config, data):
    """``(zeros, scales)`` (words, cols) int64 of META words."""
    return _meta_zeros_scales(_meta_entries(config, data))


def unpack_offsets(config, data):
    """The offset mantissas (words, cols) int64 of META words (the int24 fields; zeros on a
    configuration without ``group_offset``)."""
    w = _meta_entries(config, data)
    if not config.group_offset:
        return np.zeros(w.shape[:2], np.int64)
    return _meta_offsets(w)


def _acc_dtype(config):
    return np.int64 if config.acc_bits <= 62 else object


def pack_acc(config, values):
    """ACC words as bytes: (words, cols) accumulators, each ``acc_elem_bytes`` two's complement LE."""
    v = _matrix(values, config.cols, "accumulators")
    eb, bits = config.acc_elem_bytes, config.acc_bits
    if v.dtype != object and eb <= 8:
        v = v.astype(np.int64)
        lim = 1 << (bits - 1)
        if v.size and (v.min() < -lim or v.max() >= lim):
            raise ShapeError(f"accumulators must fit {bits} bits")
        return _acc_bytes(v, eb)
    out = bytearray()
    for x in v.flat:
        x = int(x)
        if not -(1 << (bits - 1)) <= x < 1 << (bits - 1):
            raise ShapeError(f"accumulators must fit {bits} bits")
        out += x.to_bytes(eb, "little", signed=True)
    return bytes(out)


def _acc_bytes(v, eb):
    """:func:`pack_acc` of accumulators ``v`` (words, cols) known to fit ``eb`` bytes (int64 for
    ``eb`` <= 8, else integers of any type)."""
    if v.dtype != object and eb <= 8:
        return v.astype("<i8").view(np.uint8).reshape(v.shape[0], v.shape[1], 8)[:, :, :eb].tobytes()
    return b"".join([int(x).to_bytes(eb, "little", signed=True) for x in v.flat])


def _sign_extend(w):
    """The little-endian two's complement numbers of ``w`` (..., bytes <= 8) uint8, int64 (...)."""
    nb = w.shape[-1]
    full = np.empty(w.shape[:-1] + (8,), np.uint8)
    full[..., :nb] = w
    full[..., nb:] = np.where(w[..., nb - 1:] >= 0x80, 0xFF, 0)
    return full.view("<i8")[..., 0]


def _acc_limbs(w):
    """``(hi, lo)`` of ACC words ``w`` (words, cols, 9..16 bytes) uint8: each accumulator is
    ``hi * 2**64 + lo``, ``hi`` int64 (its high bytes, signed), ``lo`` uint64 (its low 8 bytes)."""
    return _sign_extend(w[:, :, 8:]), np.ascontiguousarray(w[:, :, :8]).view("<u8")[:, :, 0]


def _acc_ints(w):
    """Accumulators (words, cols) of ACC words ``w`` (words, cols, elem bytes) uint8: int64 up to
    8 bytes, else Python ints (an object array)."""
    eb = w.shape[2]
    if eb <= 8:
        return _sign_extend(w)
    if eb <= 16:
        hi, lo = _acc_limbs(w)
        return hi.astype(object) * (1 << 64) + lo.astype(object)
    out = np.empty(w.shape[:2], dtype=object)
    for idx in np.ndindex(*w.shape[:2]):
        out[idx] = int.from_bytes(w[idx].tobytes(), "little", signed=True)
    return out


def _acc_values(w, bits):
    """``wrap(unpack_acc(...), bits)`` of ACC words ``w`` (words, cols, ``ceil(bits / 8)`` bytes)
    uint8: the accumulators (words, cols) as int64 for ``bits`` <= 62, else as Python ints."""
    eb = w.shape[2]
    if eb <= 8:
        v = _sign_extend(w)
        return wrap(v if bits <= 62 else v.astype(object), bits)
    if eb > 16:
        return wrap(_acc_ints(w), bits)
    # bits > 64: hi' = wrap(hi, bits - 64) gives hi' * 2**64 + lo = hi * 2**64 + lo mod 2**bits,
    # within -2**(bits-1) .. 2**(bits-1) - 1: it is the wrapped accumulator
    hi, lo = _acc_limbs(w)
    return np.asarray(wrap(hi, bits - 64), object) * (1 << 64) + lo.astype(object)


def unpack_acc(config, data):
    """Accumulators (words, cols) from ACC words (int64, or Python ints beyond 62 bits)."""
    eb = config.acc_elem_bytes
    w = _words(data, config.acc_word_bytes).reshape(-1, config.cols, eb)
    if _acc_dtype(config) is np.int64:
        return _sign_extend(w).astype(np.int64)
    v = _acc_ints(w)
    return v if v.dtype == object else v.astype(object)


def _exact_sum(a, b):
    """``a + b`` of two integer arrays, exactly: int64 if both are and the sum cannot overflow,
    else Python ints."""
    if a.dtype != object and b.dtype != object:
        top = (max(int(a.max(initial=0)), -int(a.min(initial=0)))
               + max(int(b.max(initial=0)), -int(b.min(initial=0))))
        if top < 1 << 63:
            return a + b
    return np.asarray(a, object) + np.asarray(b, object)


# -- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """The tile's status registers after ``done``.

    Members
    -------
    cycles, busy (per :class:`Unit`), dispatched, error (:class:`ErrorCode`), error_pc :
        As :class:`~mixpim.models.tile_timing.TimingResult`.
    nonfinite : bool
        Sticky: a GEMM met an FP16 inf/NaN activation (taken as 0), as the array's flag.
    """
    cycles: int
    busy: tuple
    dispatched: int
    error: ErrorCode
    error_pc: int
    nonfinite: bool = False


@dataclass(frozen=True)
class Race:
    """Instructions ``first`` and ``second`` (pcs; on different units, overlapping in time) access
    ``space`` (``"dram"`` or a scratchpad name) at ``address`` (byte or word), at least one
    writing."""
    first: int
    second: int
    space: str
    address: int


@dataclass
class Result:
    """Outcome of :func:`execute`.

    Members
    -------
    config : TileConfig
    status : Status
    timing : TimingResult
        Every instruction's dispatch, start, end and completion cycle.
    dram : uint8 array or None
        Final DRAM contents (None in timing-only mode).
    spads : dict or None
        Final scratchpads by name: ``ACT``, ``WGT``, ``META``, ``VPARAM`` as uint8 arrays
        (words, word bytes) holding the words exactly as in DRAM; ``ACC`` as integers
        (words, cols) (int64, or Python ints beyond 62 bits).
    outputs : tuple of Segment
        Every DRAM range written by a STORE or PIM_WRITE, with its final contents (merged,
        ascending).
    races : tuple of Race
        Conflicting accesses not ordered by tokens (empty for a well-formed program; at most
        100 are listed).
    """
    config: TileConfig
    status: Status
    timing: TimingResult
    dram: np.ndarray = None
    spads: dict = None
    outputs: tuple = ()
    races: tuple = ()

    @property
    def ok(self):
        return self.status.error == ErrorCode.OK

    def read(self, addr, nbytes):
        """``nbytes`` bytes of the final DRAM at ``addr``."""
        return bytes(self.dram[addr:addr + nbytes])

    def act(self):
        """ACT decoded: (act_words, rows) int8 or FP16 bit patterns."""
        return unpack_act(self.config, self.spads["ACT"])


# -- execution ---------------------------------------------------------------------------------

def execute(program, *, timing_only=False, check_races=True, timing=None):
    """Run ``program`` on the golden tile.

    Arguments
    ---------
    program : Program
    timing_only : bool
        Only the cycle model: no memories are allocated (for paper-scale configurations).
    check_races : bool
        Look for conflicting accesses that tokens do not order (:attr:`Result.races`).
    timing : TimingResult or None
        The program's cycle model, :func:`~.tile_timing.simulate` of its configuration and
        instructions, if already run (it needs no data: e.g. in the process that compiled the
        program); None runs it here.

    Returns
    -------
    Result

    Raises
    ------
    ProgramError
        If a segment does not fit the configuration (word size, scratchpad depth, DRAM size, an ACC
        value wider than ``acc_bits``). Faults of the instruction stream are not exceptions: they
        end the run with an error code in :attr:`Result.status`.
    """
    if not isinstance(program, Program):
        raise ProgramError(f"execute needs a Program, not {type(program).__name__}")
    return run(program.config, program.instructions, program.segments,
               timing_only=timing_only, check_races=check_races, timing=timing)


def run(config, instructions, segments=(), *, timing_only=False, check_races=True, timing=None):
    """:func:`execute` on parts: ``instructions`` may also hold raw 128-bit words (illegal ones
    end the run with ``ILLEGAL_OPCODE`` / ``BAD_FIELD`` when the dispatcher reaches them)."""
    if not isinstance(config, TileConfig):
        raise ProgramError(f"config must be a TileConfig, not {type(config).__name__}")
    if timing is not None and not (isinstance(timing, TimingResult) and timing.of(config, instructions)):
        raise ProgramError("timing must be the TimingResult of this configuration and these instructions")
    mem = None if timing_only else _Memory(config, segments)
    if timing is None:
        timing = simulate(config, instructions)
    nonfinite = False
    outputs, races = (), ()
    if mem is not None:
        insts = timing.instructions
        for pc in timing.executed:
            nonfinite |= mem.apply(insts[pc])
        outputs = mem.outputs()
        if check_races:
            races = _find_races(config, timing)
    status = Status(timing.cycles, timing.busy, timing.dispatched, timing.error, timing.error_pc,
                    bool(nonfinite))
    return Result(config, status, timing,
                  dram=None if mem is None else mem.dram,
                  spads=None if mem is None else mem.spads,
                  outputs=outputs, races=races)


class _Memory:
    """DRAM and scratchpads, and the functional effect of each instruction."""

    def __init__(self, cfg, segments):
        self.cfg = cfg
        self.params = array_params(cfg)
        self._params = {}  # groups -> the params of a GEMM of that many groups (_array)
        self.acc_bits = cfg.acc_bits
        self.dram = np.zeros(cfg.dram_bytes, np.uint8)
        self.spads = {s.name: np.zeros((cfg.spad_words(s), cfg.word_bytes(s)), np.uint8)
                      for s in Spad if s != Spad.ACC}
        self.spads["ACC"] = np.zeros((cfg.acc_words, cfg.cols), _acc_dtype(cfg))
        self.word_bytes = {s: cfg.word_bytes(s) for s in Spad}
        # the low bits the array takes of the WGT and META fields (offset_bits: 0 without offsets)
        self._masks = ((1 << cfg.wbits) - 1, (1 << cfg.scale_bits) - 1,
                       cfg.offset_bits if cfg.group_offset else 0)
        assert cfg.offset_bits <= 24, "the offset is the low offset_bits bits of an int24 field"
        # largest |weight value| the array multiplies by: |q - z| < 2**wbits, or BitMoD's values
        self._wmax = self.params.value_max if cfg.family == "bitmod" else self._masks[0]
        self._act_cache = {}  # (first ACT word, K) -> _activations(), while no ACT word is written
        self._act_writers = {}  # instruction -> whether it writes ACT
        self.acc_elem_bytes = cfg.acc_elem_bytes
        self.stored = []  # (starts, length) of every STORE and PIM_WRITE
        self._handlers = {Opcode.LOAD: self._load, Opcode.STORE: self._store, Opcode.GEMM: self._gemm,
                          Opcode.VEC: self._vec_op, Opcode.VSOFT: self._vsoft_op,
                          Opcode.VNORM: self._vnorm_op, **{op: self._pim for op in PIM_OPS}}
        self.pim = PimState(cfg)
        self.vec = VectorState(cfg)
        for i, seg in enumerate(segments):
            self._load_segment(i, seg)

    def _load_segment(self, i, seg):
        cfg = self.cfg
        if not isinstance(seg, Segment):
            raise ProgramError(f"segments[{i}] must be a Segment, not {seg!r}")
        if seg.target == "dram":
            if seg.end > cfg.dram_bytes:
                raise ProgramError(f"segment {i} (dram 0x{seg.base:x}..0x{seg.end - 1:x}) leaves "
                                   f"DRAM (0x{cfg.dram_bytes:x} bytes)")
            self.dram[seg.base:seg.end] = np.frombuffer(seg.data, np.uint8)
            return
        wb, depth = cfg.word_bytes(seg.target), cfg.spad_words(seg.target)
        if seg.word_bytes != wb:
            raise ProgramError(f"segment {i} gives {seg.target} {seg.word_bytes}-byte words; this "
                               f"configuration's {seg.target} words are {wb} bytes")
        if seg.end > depth:
            raise ProgramError(f"segment {i} ({seg.target} words {seg.base}..{seg.end - 1}) leaves "
                               f"the scratchpad ({depth} words)")
        if seg.target == "ACC":
            values = unpack_acc(cfg, seg.data)
            bits = cfg.acc_bits
            if any(not -(1 << (bits - 1)) <= int(v) < 1 << (bits - 1) for v in values.flat):
                raise ProgramError(f"segment {i}: an ACC value does not fit acc_bits ({bits})")
            self.spads["ACC"][seg.base:seg.end] = values
        else:
            self.spads[seg.target][seg.base:seg.end] = _words(seg.data, wb)

    # -- instructions --------------------------------------------------------------------------

    def apply(self, inst):
        """Apply ``inst``; returns True if a GEMM met a non-finite FP16 activation."""
        if self._act_cache and self._writes_act(inst):
            self._act_cache.clear()
        handler = self._handlers.get(inst.op)
        return handler(inst) if handler is not None else False

    def _vec_op(self, inst):
        exec_vec(self.cfg, self.spads, inst)
        return False

    def _vsoft_op(self, inst):
        exec_vsoft(self.cfg, self.spads, self.vec, inst)
        return False

    def _vnorm_op(self, inst):
        exec_vnorm(self.cfg, self.spads, self.vec, inst)
        return False

    def _pim(self, inst):
        cfg = self.cfg
        apply_pim(cfg, self.pim, self.dram, self.spads["ACT"], self.spads["ACC"],
                  lambda v: wrap(v, self.acc_bits), inst)
        if inst.op == Opcode.PIM_WRITE:
            fp = footprint(cfg, inst)
            self.stored.append((fp.dram.starts, fp.dram.length))
        return False

    def _dram_index(self, starts, length):
        return (starts[:, None] + np.arange(length, dtype=np.int64)[None, :])

    def _load(self, inst):
        cfg = self.cfg
        spad, rows, addr, stride = inst.spad, inst.rows, inst.dram_addr, inst.stride
        wb = self.word_bytes[spad]
        length = inst.words * wb
        if rows == 1 or stride == length:
            data = self.dram[addr:addr + rows * length]
        else:
            data = self.dram[self._dram_index(dma_spans(cfg, inst)[0], length)]
        n = rows * inst.words
        first = inst.spad_addr
        if spad == Spad.ACC:  # the low acc_bits bits of each value (a STORE round-trips)
            w = data.reshape(n, cfg.cols, wb // cfg.cols)
            self.spads["ACC"][first:first + n] = _acc_values(w, self.acc_bits)
            return False
        self.spads[spad.name][first:first + n] = data.reshape(n, wb)
        return False

    def _store(self, inst):
        cfg = self.cfg
        spad, rows, addr, stride = inst.spad, inst.rows, inst.dram_addr, inst.stride
        length = inst.words * self.word_bytes[spad]
        n = rows * inst.words
        words = self.spads[spad.name][inst.spad_addr:inst.spad_addr + n]
        if spad == Spad.ACC:  # the scratchpad holds acc_bits values: no check
            data = np.frombuffer(_acc_bytes(words, self.acc_elem_bytes), np.uint8)
        else:
            data = words.reshape(-1)
        if rows == 1 or stride == length:
            self.dram[addr:addr + rows * length] = data
            self.stored.append(((addr,), rows * length))  # the rows' ranges, merged
            return False
        starts = dma_spans(cfg, inst)[0]
        data = data.reshape(rows, length)
        if stride > length:
            self.dram[self._dram_index(starts, length)] = data
        else:  # rows overlap in DRAM: they are written in order, later rows win
            for r in range(rows):
                self.dram[int(starts[r]):int(starts[r]) + length] = data[r]
        self.stored.append((starts, length))
        return False

    def _gemm(self, inst):
        cfg = self.cfg
        g = inst.groups
        group = cfg.group
        k = g * group
        # operands as (K, rows) and (K, cols), the scratchpads' layout; the array model takes
        # their transposes (views)
        a_val, nonfinite = self._activations(inst.act_addr, k)
        if inst.wsrc:
            passes = self._int8_weights(inst, k)
        else:
            codes = unpack_wgt(cfg, self.spads["WGT"][inst.wgt_addr:inst.wgt_addr + k])  # (K, cols)
            entries = _meta_entries(cfg, self.spads["META"][inst.meta_addr:inst.meta_addr + g])
            zeros, scales = _meta_zeros_scales(entries)
            # the array takes the low wbits / scale_bits / offset_bits bits of the 4-bit / 8-bit /
            # 16-bit / 24-bit fields (the offset as two's complement; offset_bits <= 24)
            wmask, smask, obits = self._masks
            offsets = _meta_offsets(entries, obits).T if obits else None
            if self.params.family == "bitmod":  # byte 2 is the type selector; values replace q - z
                codes, zeros = bitmod_weight_values(self.params, codes, np.repeat(zeros, group, 0)), zeros & 0
            elif wmask != 0xF:
                codes = codes & wmask
            passes = [(codes, zeros.T & wmask, scales.T & smask, offsets)]
        tile = None
        for codes, zeros, scales, offsets in passes:
            # every field is within the array's widths (masked above), so the checks of
            # mixpe_gemm (QuantizedWeights, check_weights) cannot fail: only its arithmetic
            wc = codes - np.repeat(zeros.T, group, axis=0)  # (K, cols) int64
            # codes and zero points are in 0 .. 2**wbits - 1 (masked): |q - z| < 2**wbits
            part = self._array(g, a_val, GroupedOperand(wc.T, group, self._wmax), scales, offsets)
            tile = part if tile is None else _exact_sum(tile, part)
        acc = self.spads["ACC"]
        dst = slice(inst.acc_addr, inst.acc_addr + cfg.rows)
        if inst.accumulate:
            tile = acc[dst] + tile
        if acc.dtype != object:
            acc[dst] = wrap(np.asarray(tile, np.int64), self.acc_bits)
        elif tile.dtype != object and self.acc_bits >= 64:
            acc[dst] = tile  # int64 values fit acc_bits: wrapping keeps them (as Python ints)
        else:
            acc[dst] = wrap(tile, self.acc_bits)
        return nonfinite

    def _activations(self, first, k):
        """``(a_val, nonfinite)`` of ACT words ``first .. first + k - 1``: the array's activation
        values (rows, K) (:func:`~mixpim.models.mixpe.activation_values` of :func:`unpack_act`,
        transposed) as a :class:`~mixpim.models.mixpe.GroupedOperand`, and whether one is an FP16
        inf/NaN. Kept until an instruction writes ACT (a projection's GEMMs read the same words,
        one output tile after the other)."""
        key = (first, k)
        got = self._act_cache.get(key)
        if got is None:
            words = self.spads["ACT"][first:first + k]
            if self.cfg.act_format == "int8":
                a_val, nonfinite = words.view(np.int8).astype(np.int64).T, False
            else:
                a_val, nonfinite = fp16_values(words.view("<u2"))
                a_val, nonfinite = a_val.T, bool(nonfinite.any())
            got = self._act_cache[key] = (GroupedOperand(a_val, self.cfg.group), nonfinite)
        return got

    def _writes_act(self, inst):
        """Whether ``inst`` writes ACT words (its footprint), memoized per instruction word."""
        w = self._act_writers.get(inst)
        if w is None:
            w = self._act_writers[inst] = any(a.write and a.spad == Spad.ACT
                                              for a in footprint(self.cfg, inst, dram=False).spads)
        return w

    def _int8_weights(self, inst, k):
        """GEMM ``wsrc``: INT8 weights from ACT lanes 0..cols-1 as two passes of 4-bit codes
        (K, cols): high nibbles + 8 (zero point 8, scale 16), then low nibbles (zero point 0,
        scale 1); zero points and scales (cols, groups)."""
        cfg = self.cfg
        lanes = unpack_act(cfg, self.spads["ACT"][inst.wgt_addr:inst.wgt_addr + k])[:, :cfg.cols]
        w = (lanes if cfg.act_format == "int8" else fp16_bits_to_int8(lanes)).astype(np.int64)
        g = inst.groups
        ones = np.ones((cfg.cols, g), np.int64)
        return [((w >> 4) + 8, 8 * ones, 16 * ones, None), (w & 15, 0 * ones, ones, None)]

    def _array(self, g, a_val, wc, scales, offsets):
        """One pass of the array: the accumulator tile (rows, cols), int64 or Python ints."""
        # The hardware accumulator wraps at acc_bits; the array model refuses to overflow, so give
        # it the headroom of this GEMM's group count and wrap afterwards (same integers mod 2**bits).
        params = self._params.get(g)
        if params is None:
            headroom = max(self.params.acc_headroom, g.bit_length() + 1)
            params = self._params[g] = replace(self.params, acc_headroom=headroom)
        return gemm_values(params, a_val, wc, scales, offsets)

    def outputs(self):
        """Merged DRAM ranges written by STOREs and PIM_WRITEs, as Segments with their final
        contents."""
        if not self.stored:
            return ()
        lo = np.concatenate([np.asarray(s, np.int64) for s, _ in self.stored])
        hi = np.concatenate([np.asarray(s, np.int64) + n for s, n in self.stored])
        order = np.argsort(lo, kind="stable")
        lo, hi = lo[order], hi[order]
        out = []
        cur_lo, cur_hi = int(lo[0]), int(hi[0])
        for a, b in zip(lo[1:].tolist(), hi[1:].tolist()):
            if a <= cur_hi:
                cur_hi = max(cur_hi, b)
            else:
                out.append((cur_lo, cur_hi))
                cur_lo, cur_hi = a, b
        out.append((cur_lo, cur_hi))
        return tuple(Segment("dram", a, self.dram[a:b].tobytes()) for a, b in out)


# -- race detection ----------------------------------------------------------------------------

def _accesses(cfg, inst):
    """``[(space, write, starts, length)]`` of one instruction's footprint (starts: ascending
    int64 array; space ``"dram"`` or a scratchpad name)."""
    fp = footprint(cfg, inst)
    out = [(a.spad.name, a.write, np.array([a.first], np.int64), a.words) for a in fp.spads]
    if fp.dram is not None:
        out.append(("dram", fp.dram.write, fp.dram.starts, fp.dram.length))
    return out


def _first_overlap(a, la, b, lb):
    """First address shared by intervals ``[a_i, a_i + la)`` and ``[b_j, b_j + lb)`` (both start
    arrays ascending), or None."""
    idx = np.searchsorted(b, a + la, side="left")
    has = idx > 0
    cand = np.where(has, b[np.maximum(idx - 1, 0)], 0)
    hit = has & (cand + lb > a)
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    return int(max(a[i], cand[i]))


def _find_races(cfg, timing, limit=100):
    insts = timing.instructions
    order = sorted(timing.executed, key=lambda pc: timing.start[pc])
    active = []  # (complete, pc, unit, accesses)
    races = []
    for pc in order:
        s = int(timing.start[pc])
        active = [x for x in active if x[0] >= s]
        inst = insts[pc]
        acc = _accesses(cfg, inst)
        for _, opc, unit, oacc in active:
            if unit == inst.unit:
                continue
            for space, w, starts, n in acc:
                for ospace, ow, ostarts, on in oacc:
                    if space != ospace or not (w or ow):
                        continue
                    addr = _first_overlap(starts, n, ostarts, on)
                    if addr is not None:
                        races.append(Race(opc, pc, space, addr))
                        break
                else:
                    continue
                break
            if len(races) >= limit:
                return tuple(races)
        active.append((int(timing.complete[pc]), pc, inst.unit, acc))
    return tuple(races)
