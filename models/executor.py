"""Golden functional executor of the tile: runs a :class:`~mixpim.models.program.Program` bit-exactly.

:func:`execute` first runs the cycle model (:func:`~mixpim.models.tile_timing.simulate`, the only
timing model), which decides which instructions run, when, and how the run ends (HALT or an error
code). It then applies the effect of every instruction that started, in (start cycle, pc) order,
each as one vectorized numpy step on DRAM (a byte array) and the scratchpads:

* LOAD / STORE move bytes between DRAM rows and scratchpad words (word formats:
  :mod:`~mixpim.models.config`);
* GEMM decodes its ACT/WGT/META words into activations, weight codes, zero points, scale
  mantissas (and, with ``group_offset``, offset mantissas) and calls :func:`~mixpim.models.mixpe.mixpe_gemm`, so one tile is computed exactly as
  the array computes it; the accumulators wrap at ``acc_bits`` like the hardware's registers;
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
from .mixpe import ArrayParams, mixpe_gemm
from .numerics import FixedScales, wrap
from .pim import PIM_OPS, PimState, apply_pim
from .program import Program, ProgramError, Segment
from .quant import QuantizedWeights
from .footprint import dma_spans, footprint
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


def unpack_wgt(config, data):
    """The 4-bit fields (words, cols) uint8 of WGT words."""
    w = _words(data, config.wgt_word_bytes)
    nib = np.stack([w & 0xF, w >> 4], axis=2).reshape(w.shape[0], -1)
    return nib[:, :config.cols].astype(np.uint8)


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


def unpack_meta(config, data):
    """``(zeros, scales)`` (words, cols) int64 of META words."""
    w = _meta_entries(config, data)
    return w[:, :, 2], w[:, :, 0] | w[:, :, 1] << 8


def unpack_offsets(config, data):
    """The offset mantissas (words, cols) int64 of META words (the int24 fields; zeros on a
    configuration without ``group_offset``)."""
    w = _meta_entries(config, data)
    if not config.group_offset:
        return np.zeros(w.shape[:2], np.int64)
    return wrap(w[:, :, 3] | w[:, :, 4] << 8 | w[:, :, 5] << 16, 24)


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
        return v.astype("<i8").view(np.uint8).reshape(v.shape[0], v.shape[1], 8)[:, :, :eb].tobytes()
    out = bytearray()
    for x in v.flat:
        x = int(x)
        if not -(1 << (bits - 1)) <= x < 1 << (bits - 1):
            raise ShapeError(f"accumulators must fit {bits} bits")
        out += x.to_bytes(eb, "little", signed=True)
    return bytes(out)


def unpack_acc(config, data):
    """Accumulators (words, cols) from ACC words (int64, or Python ints beyond 62 bits)."""
    eb = config.acc_elem_bytes
    w = _words(data, config.acc_word_bytes).reshape(-1, config.cols, eb)
    if _acc_dtype(config) is np.int64:
        full = np.zeros(w.shape[:2] + (8,), np.uint8)
        full[:, :, :eb] = w
        full[:, :, eb:] = np.where(w[:, :, eb - 1:eb] >= 0x80, 0xFF, 0)
        return full.view("<i8").reshape(w.shape[:2]).astype(np.int64)
    out = np.empty(w.shape[:2], dtype=object)
    for idx in np.ndindex(*w.shape[:2]):
        out[idx] = int.from_bytes(w[idx].tobytes(), "little", signed=True)
    return out


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

def execute(program, *, timing_only=False, check_races=True):
    """Run ``program`` on the golden tile.

    Arguments
    ---------
    program : Program
    timing_only : bool
        Only the cycle model: no memories are allocated (for paper-scale configurations).
    check_races : bool
        Look for conflicting accesses that tokens do not order (:attr:`Result.races`).

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
               timing_only=timing_only, check_races=check_races)


def run(config, instructions, segments=(), *, timing_only=False, check_races=True):
    """:func:`execute` on parts: ``instructions`` may also hold raw 128-bit words (illegal ones
    end the run with ``ILLEGAL_OPCODE`` / ``BAD_FIELD`` when the dispatcher reaches them)."""
    if not isinstance(config, TileConfig):
        raise ProgramError(f"config must be a TileConfig, not {type(config).__name__}")
    mem = None if timing_only else _Memory(config, segments)
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
        self.params = ArrayParams.from_config(cfg)
        self.dram = np.zeros(cfg.dram_bytes, np.uint8)
        self.spads = {s.name: np.zeros((cfg.spad_words(s), cfg.word_bytes(s)), np.uint8)
                      for s in Spad if s != Spad.ACC}
        self.spads["ACC"] = np.zeros((cfg.acc_words, cfg.cols), _acc_dtype(cfg))
        self.stored = []  # (starts, length) of every STORE and PIM_WRITE
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
        op = inst.op
        if op == Opcode.LOAD:
            self._load(inst)
        elif op == Opcode.STORE:
            self._store(inst)
        elif op == Opcode.GEMM:
            return self._gemm(inst)
        elif op == Opcode.VEC:
            exec_vec(self.cfg, self.spads, inst)
        elif op == Opcode.VSOFT:
            exec_vsoft(self.cfg, self.spads, self.vec, inst)
        elif op == Opcode.VNORM:
            exec_vnorm(self.cfg, self.spads, self.vec, inst)
        elif op in PIM_OPS:
            self._pim(inst)
        return False

    def _pim(self, inst):
        cfg = self.cfg
        apply_pim(cfg, self.pim, self.dram, self.spads["ACT"], self.spads["ACC"],
                  lambda v: wrap(v, cfg.acc_bits), inst)
        if inst.op == Opcode.PIM_WRITE:
            fp = footprint(cfg, inst)
            self.stored.append((fp.dram.starts, fp.dram.length))

    def _dram_index(self, starts, length):
        return (starts[:, None] + np.arange(length, dtype=np.int64)[None, :])

    def _load(self, inst):
        cfg = self.cfg
        starts, length = dma_spans(cfg, inst)
        wb = cfg.word_bytes(inst.spad)
        if inst.rows == 1 or inst.stride == length:
            data = self.dram[int(starts[0]):int(starts[0]) + inst.rows * length]
        else:
            data = self.dram[self._dram_index(starts, length)]
        n = inst.rows * inst.words
        if inst.spad == Spad.ACC:  # the low acc_bits bits of each value (a STORE round-trips)
            values = unpack_acc(cfg, data.reshape(n, wb))
            self.spads["ACC"][inst.spad_addr:inst.spad_addr + n] = wrap(values, cfg.acc_bits)
            return
        self.spads[inst.spad.name][inst.spad_addr:inst.spad_addr + n] = data.reshape(n, wb)

    def _store(self, inst):
        cfg = self.cfg
        starts, length = dma_spans(cfg, inst)
        n = inst.rows * inst.words
        words = self.spads[inst.spad.name][inst.spad_addr:inst.spad_addr + n]
        if inst.spad == Spad.ACC:
            data = np.frombuffer(pack_acc(cfg, words), np.uint8)
        else:
            data = words.reshape(-1)
        data = data.reshape(inst.rows, length)
        if inst.rows == 1 or inst.stride == length:
            self.dram[int(starts[0]):int(starts[0]) + inst.rows * length] = data.reshape(-1)
        elif inst.stride > length:
            self.dram[self._dram_index(starts, length)] = data
        else:  # rows overlap in DRAM: they are written in order, later rows win
            for r in range(inst.rows):
                self.dram[int(starts[r]):int(starts[r]) + length] = data[r]
        self.stored.append((starts, length))

    def _gemm(self, inst):
        cfg = self.cfg
        g = inst.groups
        k = g * cfg.group
        act = unpack_act(cfg, self.spads["ACT"][inst.act_addr:inst.act_addr + k]).T  # (rows, K)
        if inst.wsrc:
            passes = self._int8_weights(inst, k)
        else:
            codes = unpack_wgt(cfg, self.spads["WGT"][inst.wgt_addr:inst.wgt_addr + k]).T  # (cols, K)
            meta = self.spads["META"][inst.meta_addr:inst.meta_addr + g]
            zeros, scales = unpack_meta(cfg, meta)
            # the array takes the low wbits / scale_bits / offset_bits bits of the 4-bit / 8-bit /
            # 16-bit / 24-bit fields (the offset as two's complement)
            wmask, smask = (1 << cfg.wbits) - 1, (1 << cfg.scale_bits) - 1
            offsets = wrap(unpack_offsets(cfg, meta), cfg.offset_bits).T if cfg.group_offset else None
            passes = [(codes & wmask, zeros.T & wmask, scales.T & smask, offsets)]
        tile, nonfinite = None, False
        for codes, zeros, scales, offsets in passes:
            qw = QuantizedWeights(
                codes=np.ascontiguousarray(codes), zeros=np.ascontiguousarray(zeros),
                scales=FixedScales(np.ascontiguousarray(scales), np.zeros(cfg.cols, np.int64),
                                   cfg.scale_bits),
                bits=cfg.wbits, group=cfg.group, symmetric=False,
                offsets=None if offsets is None else np.ascontiguousarray(offsets))
            part, flag = self._array(g, act, qw)
            tile = part if tile is None else tile + part
            nonfinite = nonfinite or flag
        acc = self.spads["ACC"]
        dst = slice(inst.acc_addr, inst.acc_addr + cfg.rows)
        if inst.accumulate:
            tile = acc[dst] + tile
        acc[dst] = wrap(tile if acc.dtype == object else np.asarray(tile, np.int64), cfg.acc_bits)
        return nonfinite

    def _int8_weights(self, inst, k):
        """GEMM ``wsrc``: INT8 weights from ACT lanes 0..cols-1 as two passes of 4-bit codes: high
        nibbles + 8 (zero point 8, scale 16), then low nibbles (zero point 0, scale 1)."""
        cfg = self.cfg
        lanes = unpack_act(cfg, self.spads["ACT"][inst.wgt_addr:inst.wgt_addr + k])[:, :cfg.cols]
        w = (lanes if cfg.act_format == "int8" else fp16_bits_to_int8(lanes)).astype(np.int64).T
        g = inst.groups
        ones = np.ones((cfg.cols, g), np.int64)
        return [((w >> 4) + 8, 8 * ones, 16 * ones, None), (w & 15, 0 * ones, ones, None)]

    def _array(self, g, act, qw):
        """One pass of the array: ``(acc tile, nonfinite)``."""
        # The hardware accumulator wraps at acc_bits; mixpe_gemm refuses to overflow, so give it
        # the headroom of this GEMM's group count and wrap afterwards (same integers mod 2**bits).
        params = self.params
        headroom = max(params.acc_headroom, g.bit_length() + 1)
        result = mixpe_gemm(replace(params, acc_headroom=headroom), np.ascontiguousarray(act), qw)
        return result.acc, bool(result.nonfinite.any())

    def outputs(self):
        """Merged DRAM ranges written by STOREs and PIM_WRITEs, as Segments with their final
        contents."""
        if not self.stored:
            return ()
        lo = np.concatenate([s for s, _ in self.stored])
        hi = np.concatenate([s + n for s, n in self.stored])
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
