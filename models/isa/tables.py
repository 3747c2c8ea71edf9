"""The tile's instruction set, defined once: opcodes, field layouts, legality rules.

Every other part derives from the tables here: the RTL decoder builds its ``amaranth.lib.data``
layouts from :func:`fields` / :func:`header_fields`, the compiler builds
:class:`~.instruction.Instruction` objects and encodes them, the golden executor decodes with
:func:`~.instruction.decode`, and ``docs/isa.md`` embeds :func:`~.doc.isa_markdown`. Units and
scratchpads (ids, who reads and writes what) are :mod:`mixpim.models.units`; the architecture
contract is ``docs/tile.md``.

An instruction is 128 bits, fields packed LSB first. The 24-bit header (``opcode``, ``wait``,
``signal``, ``reserved``) is common; the operands follow from bit 24 and every bit above the last
operand is ``unused`` and must be 0.

What :func:`~.instruction.decode` checks is exactly what the tile's decoder flags without knowing
the configuration: ``ILLEGAL_OPCODE`` and ``BAD_FIELD``. Checks that need a :class:`TileConfig`
(scratchpad depths, DRAM size, alignment, VEC ``rows`` <= array rows) belong to the cycle model's
dispatch checks.
"""

import enum
import functools
from dataclasses import dataclass

from ..errors import MixpimError
from ..units import MASK_BITS, SPADS, TOKEN_MAX, UNITS, Spad, Unit

__all__ = [
    "WORD_BITS", "WORD_BYTES", "HEADER_BITS", "PIM_OPCODES",
    "Opcode", "VecFunc", "SoftFunc", "ProbFormat", "NormFunc", "ErrorCode", "IsaError", "DecodeError",
    "Field", "Format", "HEADER", "OPCODE_FORMATS", "UNIT_OF", "format_of", "header_fields", "fields",
    "reach", "is_int", "no_field_error", "DOCS",
]

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
HEADER_BITS = 24

#: Opcodes of the PIM group (0x40-0x4f); those not in :class:`Opcode` are reserved (illegal).
PIM_OPCODES = range(0x40, 0x50)


class Opcode(enum.IntEnum):
    """Operation codes (the ``opcode`` field, bits [0:8])."""
    NOP = 0x00
    SYNC = 0x01
    HALT = 0x02
    LOAD = 0x10
    STORE = 0x11
    GEMM = 0x20
    VEC = 0x30
    VSOFT = 0x31
    VNORM = 0x32
    PIM_GBUF = 0x40
    PIM_WRITE = 0x41
    PIM_GEMV = 0x42
    PIM_READ = 0x43
    PIM_ACT = 0x44


class VecFunc(enum.IntEnum):
    """Vector-unit functions (the ``func`` field of VEC)."""
    REQUANT = 0
    RELU = 1
    GELU = 2
    ADD = 3
    SILU = 4
    GLU = 5
    ROPE_LO = 6
    ROPE_HI = 7
    RES = 8


class SoftFunc(enum.IntEnum):
    """Softmax passes of the vector unit (the ``func`` field of VSOFT)."""
    MAX = 0
    EXP = 1
    NORM = 2


class ProbFormat(enum.IntEnum):
    """How VSOFT NORM writes probabilities (the ``pfmt`` field)."""
    INT8 = 0
    FP16 = 1
    HI = 2
    LO = 3


class NormFunc(enum.IntEnum):
    """Passes of a LayerNorm / RMSNorm (the ``func`` field of VNORM)."""
    SUM = 0
    SQ = 1
    NORM = 2


class ErrorCode(enum.IntEnum):
    """Codes of the tile's ``error`` status register."""
    OK = 0
    ILLEGAL_OPCODE = 1
    BAD_FIELD = 2
    SPAD_RANGE = 3
    DRAM_RANGE = 4
    TOKEN_OVERFLOW = 5
    DEADLOCK = 6
    NO_HALT = 7
    ARRAY_STREAM = 8
    PIM_RANGE = 9


#: One-line meanings, per enum (members of different IntEnums compare equal, so one dict per enum).
DOCS = {Unit: {u: info.doc for u, info in UNITS.items()},
        Spad: {s: info.doc for s, info in SPADS.items()},
        VecFunc: {
    VecFunc.REQUANT: "y = v",
    VecFunc.RELU: "y = max(v, 0)",
    VecFunc.GELU: "y = GELU_LUT[sat8(v)] (INT8 output); v * Phi(v) (FP16 output)",
    VecFunc.ADD: "y = v + residual",
    VecFunc.SILU: "y = v * sigmoid(v) (FP16 output)",
    VecFunc.GLU: "y = silu(v) * v_partner (FP16 output)",
    VecFunc.ROPE_LO: "y = v * cos - v_partner * sin (FP16 tiles)",
    VecFunc.ROPE_HI: "y = v * cos + v_partner * sin (FP16 tiles)",
    VecFunc.RES: "ACC[res_addr + i] = sat32(v + ACC[res_addr + i]) (residual add in ACC)",
}, SoftFunc: {
    SoftFunc.MAX: "rmax = max(rmax, v)",
    SoftFunc.EXP: "rsum += e(rmax - v)",
    SoftFunc.NORM: "p = e(rmax - v) / rsum (x V scale), written as pfmt says",
}, ProbFormat: {
    ProbFormat.INT8: "sat8(127 p)",
    ProbFormat.FP16: "FP16 p (FP16 tiles)",
    ProbFormat.HI: "the high INT8 digit of 14-bit p: min(2**14 p, 16383) >> 7",
    ProbFormat.LO: "the low INT8 digit of 14-bit p: min(2**14 p, 16383) & 127",
}, NormFunc: {
    NormFunc.SUM: "s1 += x (LayerNorm's mean)",
    NormFunc.SQ: "s2 += d * d, d = (x - mean) >> qshift",
    NormFunc.NORM: "y = d / sqrt(s2 + eps) * gamma + beta",
}, ErrorCode: {
    ErrorCode.OK: "no error",
    ErrorCode.ILLEGAL_OPCODE: "opcode not in the table (incl. the reserved PIM opcodes 0x45-0x4f), "
                              "or a VSOFT / VNORM on a tile without that datapath",
    ErrorCode.BAD_FIELD: "reserved or unused bits set; a field outside its legal values (`spad`, "
                         "`func`, a zero count); an own-unit token bit; a token mask on NOP, SYNC "
                         "or HALT",
    ErrorCode.SPAD_RANGE: "an access would leave a scratchpad",
    ErrorCode.DRAM_RANGE: "an access would leave DRAM",
    ErrorCode.TOKEN_OVERFLOW: f"a token counter would exceed {TOKEN_MAX}",
    ErrorCode.DEADLOCK: "no unit can make progress (docs/tile.md, Dependency tokens)",
    ErrorCode.NO_HALT: "the program counter ran past the last instruction",
    ErrorCode.ARRAY_STREAM: "the array flagged a malformed stream",
    ErrorCode.PIM_RANGE: "a PIM channel, bank, row, column, global-buffer byte, result register or "
                         "ACT lane out of range, or a GEMV len, col or gaddr not a multiple of "
                         "pim_lanes",
}}


class IsaError(MixpimError, ValueError):
    """An instruction, instruction word or assembly line breaks the ISA.

    Members
    -------
    code : ErrorCode or None
        The code the tile's decoder raises for this problem (``ILLEGAL_OPCODE`` or ``BAD_FIELD``),
        or ``None`` for problems the hardware cannot see (assembly syntax, a word that is not an
        integer).
    field : str or None
        The offending field, if one is to blame.
    """

    def __init__(self, message, code=None, field=None):
        super().__init__(message)
        self.code = code
        self.field = field


class DecodeError(IsaError):
    """A 128-bit word is not a legal instruction; :attr:`code` is always set."""


# -- fields and formats ------------------------------------------------------------------------

_KINDS = ("opcode", "mask", "zero", "uint", "addr", "flag", "enum")


@dataclass(frozen=True)
class Field:
    """One field of an instruction format.

    Members
    -------
    name : str
    lo, width : int
        Bits ``[lo : lo + width]`` of the 128-bit word.
    doc : str
        One-line meaning (shown in docs/isa.md).
    kind : str
        ``"opcode"``; ``"mask"`` (wait/signal); ``"zero"`` (reserved/unused, must be 0);
        ``"uint"``; ``"addr"`` (an unsigned DRAM byte quantity, written in hex);
        ``"flag"`` (0 or 1); ``"enum"`` (one of :attr:`allowed`).
    minimum : int
        Smallest legal value (``uint`` and ``addr``); the largest is ``2**width - 1``.
    allowed : tuple of IntEnum members
        Legal values of an ``enum`` field.
    """
    name: str
    lo: int
    width: int
    doc: str = ""
    kind: str = "uint"
    minimum: int = 0
    allowed: tuple = ()

    def __post_init__(self):
        assert self.kind in _KINDS and self.width > 0 and self.lo >= 0, self
        assert (self.kind == "enum") == bool(self.allowed), self
        assert all(int(v) <= self.maximum for v in self.allowed), self

    @property
    def hi(self):
        """One past the field's top bit."""
        return self.lo + self.width

    @property
    def maximum(self):
        return (1 << self.width) - 1

    @property
    def values(self):
        """The IntEnum type of an ``enum`` field (else ``None``)."""
        return type(self.allowed[0]) if self.allowed else None

    @property
    def required(self):
        """Whether 0 is illegal, so the field cannot be omitted in assembly."""
        if self.kind == "enum":
            return 0 not in self.allowed
        return self.minimum > 0

    def extract(self, word):
        """The field's raw value in ``word``."""
        return (word >> self.lo) & self.maximum


HEADER = (
    Field("opcode", 0, 8, "operation code", kind="opcode"),
    Field("wait", 8, MASK_BITS, "take one token from each unit in the mask before starting",
          kind="mask"),
    Field("signal", 12, MASK_BITS, "give one token to each unit in the mask on completion",
          kind="mask"),
    Field("reserved", 16, 8, "must be 0", kind="zero"),
)


@dataclass(frozen=True)
class Format:
    """The encoding of one opcode.

    Members
    -------
    opcode : Opcode
    unit : Unit or None
        The unit that executes it; ``None`` for the dispatcher (NOP, SYNC, HALT), whose
        instructions carry no tokens.
    operands : tuple of Field
        Contiguous fields from bit :data:`HEADER_BITS`.
    doc : str
    """
    opcode: Opcode
    unit: Unit | None
    operands: tuple
    doc: str

    def __post_init__(self):
        at = HEADER_BITS
        for f in self.operands:
            assert f.lo == at and f.kind not in ("opcode", "mask", "zero"), (self.opcode, f)
            at = f.hi
        assert at <= WORD_BITS, self.opcode

    @property
    def mnemonic(self):
        return self.opcode.name

    @functools.cached_property
    def operand_index(self):
        """``{name: position}`` of the operands (the index into an instruction's values)."""
        return {f.name: i for i, f in enumerate(self.operands)}

    @property
    def fields(self):
        """Header, operands and (if any bits are left) ``unused``: exactly the 128 bits, in order."""
        end = self.operands[-1].hi if self.operands else HEADER_BITS
        tail = (Field("unused", end, WORD_BITS - end, "must be 0", kind="zero"),) if end < WORD_BITS else ()
        return HEADER + self.operands + tail

    def field(self, name):
        """The operand (or header field) called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _dma_operands(spad_doc, allowed):
    return (
        Field("spad", 24, 4, spad_doc, kind="enum", allowed=allowed),
        Field("spad_addr", 28, 16, "first scratchpad word (rows are contiguous in the scratchpad)"),
        Field("dram_addr", 44, 32, "DRAM byte address of row 0", kind="addr"),
        Field("words", 76, 16, "scratchpad words per row", minimum=1),
        Field("rows", 92, 12, "rows to move, each `words` scratchpad words", minimum=1),
        Field("stride", 104, 24, "DRAM bytes from one row's start to the next", kind="addr"),
    )


def _dma_spads(role):
    """The scratchpads whose ``role`` (``"readers"`` / ``"writers"``) include the DMA unit."""
    return tuple(s for s, info in SPADS.items() if Unit.DMA in getattr(info, role))


def _pim_channels():
    return (Field("ch", 24, 6, "first channel"),
            Field("chans", 30, 7, "channels, each doing the same on its own banks and buffer",
                  minimum=1))


_PIM_FORMATS = (
    Format(Opcode.PIM_GBUF, Unit.PIM, _pim_channels() + (
        Field("gaddr", 37, 12, "first global-buffer byte written"),
        Field("act_addr", 49, 16, "ACT word of channel ch's byte 0"),
        Field("len", 65, 13, "bytes written into each channel's buffer", minimum=1),
        Field("lane", 78, 8, "gather: the ACT lane of channel ch (channel ch + j reads lane + j)"),
        Field("packed", 86, 1, "0: gather one lane of consecutive words; 1: the words' bytes in "
              "order (rows bytes per word)", kind="flag"),
        Field("act_stride", 87, 16, "ACT words from one channel's source to the next"),
    ), "load each channel's global buffer from ACT (over the channel's data bus)"),
    Format(Opcode.PIM_WRITE, Unit.PIM, _pim_channels() + (
        Field("bank", 37, 6, "bank written in each channel"),
        Field("row", 43, 16, "row of that bank"),
        Field("col", 59, 16, "first byte of the row written"),
        Field("gaddr", 75, 12, "first global-buffer byte copied"),
        Field("len", 87, 13, "bytes copied", minimum=1),
    ), "copy len global-buffer bytes into a PIM bank row of each channel (e.g. a K or V vector)"),
    Format(Opcode.PIM_GEMV, Unit.PIM, _pim_channels() + (
        Field("bank", 37, 6, "first bank"),
        Field("banks", 43, 7, "banks, all computing at once", minimum=1),
        Field("row", 50, 16, "row opened in every bank"),
        Field("col", 66, 16, "first byte of the row read"),
        Field("gaddr", 82, 12, "global-buffer byte of element 0"),
        Field("len", 94, 13, "dot: vector length; bcast: row elements per step (multiples of "
              "pim_lanes)", minimum=1),
        Field("n", 107, 9, "dot: results per bank; bcast: row vectors (and buffer elements) per "
              "bank", minimum=1),
        Field("res", 116, 8, "first result register"),
        Field("bcast", 124, 1, "0: dot products; 1: buffer elements broadcast over row vectors",
              kind="flag"),
        Field("accumulate", 125, 1, "1: add to the result registers, 0: overwrite them",
              kind="flag"),
    ), "MAC lanes of every bank: res[res + r] (+)= row[col + r*len ..] . gbuf[gaddr ..] (dot), or "
       "res[res + e] (+)= sum_t gbuf[gaddr + k*n + t] * row[col + t*len + e] for the k-th bank "
       "(bcast)"),
    Format(Opcode.PIM_READ, Unit.PIM, _pim_channels() + (
        Field("bank", 37, 6, "first bank"),
        Field("banks", 43, 7, "banks read", minimum=1),
        Field("res", 50, 8, "first result register"),
        Field("n", 58, 9, "result registers read per bank", minimum=1),
        Field("reduce", 67, 1, "1: sum the banks' results (n values per channel); 0: all "
              "banks' results, bank after bank", kind="flag"),
        Field("acc_addr", 68, 16, "ACC word of channel ch's values 0 .. cols-1"),
        Field("chan_stride", 84, 16, "ACC words from one channel's first word to the next"),
        Field("word_stride", 100, 16, "ACC words from one word of a channel's values to its next"),
    ), "write result registers into ACC words, cols values per word (over the channel's bus)"),
    Format(Opcode.PIM_ACT, Unit.PIM, _pim_channels() + (
        Field("bank", 37, 6, "first bank"),
        Field("banks", 43, 7, "banks opening the row", minimum=1),
        Field("row", 50, 16, "row opened in every bank"),
    ), "open a row in the banks' PIM row buffers (G_ACTs) and go on without waiting for it: a "
       "later PIM_WRITE / PIM_GEMV of that row finds it open"),
)

# LOAD/STORE reach exactly the scratchpads the tile gives DMA ports (docs/tile.md, "Scratchpads").
_FORMAT_LIST = (
    Format(Opcode.NOP, None, (), "do nothing for one dispatch cycle"),
    Format(Opcode.SYNC, None, (), "wait until every queue is empty and every unit is idle"),
    Format(Opcode.HALT, None, (), "SYNC, then stop with done and error code 0"),
    Format(Opcode.LOAD, Unit.DMA,
           _dma_operands("scratchpad written", _dma_spads("writers")),
           "move rows x words scratchpad words from DRAM rows at dram_addr + r * stride into "
           "spad[spad_addr ...]"),
    Format(Opcode.STORE, Unit.DMA,
           _dma_operands("scratchpad read", _dma_spads("readers")),
           "move rows x words scratchpad words from spad[spad_addr ...] to DRAM rows at "
           "dram_addr + r * stride"),
    Format(Opcode.GEMM, Unit.GEMM, (
        Field("act_addr", 24, 16, "ACT word of beat 0"),
        Field("wgt_addr", 40, 16, "WGT word of beat 0"),
        Field("meta_addr", 56, 16, "META word of group 0"),
        Field("acc_addr", 72, 16, "ACC word of output row 0"),
        Field("groups", 88, 12, "weight groups along K; the GEMM streams groups * group beats",
              minimum=1),
        Field("accumulate", 100, 1, "1: add to the old ACC contents, 0: overwrite them",
              kind="flag"),
        Field("wsrc", 101, 1, "1: INT8 weights from ACT words wgt_addr .. (lanes 0 .. cols-1; "
              "an activation x activation product), no META (meta_addr 0); not on BitMoD tiles", kind="flag"),
    ), "stream one rows x cols output tile through the array into ACC"),
    Format(Opcode.VEC, Unit.VEC, (
        Field("func", 24, 4, "function applied per element", kind="enum", allowed=tuple(VecFunc)),
        Field("acc_addr", 28, 16, "first ACC word read (token row 0)"),
        Field("act_addr", 44, 16, "ACT word written for output column 0 (direct: for row 0; not "
              "used by RES)"),
        Field("res_addr", 60, 16, "ADD: ACT word of residual column 0; GLU, ROPE: ACC word of "
              "the partner row 0; RES: ACC word of the residual row 0 (read and written)"),
        Field("param_addr", 76, 16, "VPARAM word of column 0 (the partner's or the bias: + cols)"),
        Field("rows", 92, 8, "ACC words (tokens) read; at most the array's rows", minimum=1),
        Field("fmt", 100, 1, "0: INT8 values sat8(y); 1: FP16 values y * 2**-16 (FP16 tiles)",
              kind="flag"),
        Field("direct", 101, 1, "1: write ACC row i to ACT word act_addr + i, lanes = columns "
              "(not transposed; rows >= cols)", kind="flag"),
        Field("table_addr", 102, 16, "ROPE: ACT word of column 0's cosines (sines: + 1), two "
              "words per column, int16 lanes"),
        Field("bias", 118, 1, "1: add an int32 bias per column, VPARAM word param_addr + cols + j, "
              "to v before func", kind="flag"),
    ), "read rows ACC words, apply func per element, write the result into ACT (transposed, or "
       "direct) or, for RES, into ACC"),
    Format(Opcode.VSOFT, Unit.VEC, (
        Field("func", 24, 4, "softmax pass", kind="enum", allowed=tuple(SoftFunc)),
        Field("acc_addr", 28, 16, "ACC word of values 0 .. cols-1"),
        Field("words", 44, 8, "ACC words read; at most the array's rows", minimum=1),
        Field("count", 52, 16, "values (the first count of words * cols)", minimum=1),
        Field("kparam", 68, 16, "VPARAM word of value 0's score multiplier"),
        Field("vparam", 84, 16, "VPARAM word of value 0's V multiplier (NORM only)"),
        Field("act_addr", 100, 16, "NORM: ACT word of probabilities 0 .. rows-1 (packed), or of "
              "value 0 (col)"),
        Field("first", 116, 1, "1: start the row (rmax, rsum from scratch), 0: continue it",
              kind="flag"),
        Field("pfmt", 117, 2, "NORM: probability format", kind="enum", allowed=tuple(ProbFormat)),
        Field("col", 119, 1, "1: the row's words are rows apart (ACC words acc_addr + w * rows: "
              "one query's row of each GEMM output tile); NORM writes value t to lane `lane` of "
              "ACT word act_addr + t", kind="flag"),
        Field("lane", 120, 8, "col: the ACT lane NORM writes (the query's token lane)"),
    ), "one softmax pass over count values of a row in ACC (docs/numerics.md, Softmax)"),
    Format(Opcode.VNORM, Unit.VEC, (
        Field("func", 24, 4, "norm pass", kind="enum", allowed=tuple(NormFunc)),
        Field("acc_addr", 28, 16, "ACC word of token 0 (cols features per word)"),
        Field("act_addr", 44, 16, "NORM: ACT word written for column 0 (ACC word of token 0 "
              "with to_acc)"),
        Field("param_addr", 60, 16, "NORM: VPARAM word of column 0's gamma multiplier (biases: "
              "+ cols)"),
        Field("nparam", 76, 16, "VPARAM word of the mean multiplier (1/H); + 1: eps"),
        Field("rows", 92, 8, "ACC words (tokens) read; at most the array's rows", minimum=1),
        Field("qshift", 100, 5, "right shift of x - mean before squaring"),
        Field("first", 105, 1, "1: start the pass (s1 or s2 from 0)", kind="flag"),
        Field("rms", 106, 1, "1: RMSNorm (mean 0), 0: LayerNorm", kind="flag"),
        Field("fmt", 107, 1, "NORM: 0 INT8 values, 1 FP16 values (FP16 tiles)", kind="flag"),
        Field("to_acc", 108, 1, "NORM: write sat32(y) into ACC rows act_addr .. (fmt 0)",
              kind="flag"),
    ), "one pass of a LayerNorm or RMSNorm over rows tokens' ACC words (docs/numerics.md, Norms)"),
) + _PIM_FORMATS

#: :class:`Format` of every legal opcode, in table order.
OPCODE_FORMATS = {fmt.opcode: fmt for fmt in _FORMAT_LIST}

#: The unit that executes each opcode (``None``: the dispatcher).
UNIT_OF = {op: fmt.unit for op, fmt in OPCODE_FORMATS.items()}


def _opcode_error(value):
    if is_int(value) and value in PIM_OPCODES:
        return IsaError(f"opcode 0x{value:02x} is a reserved PIM opcode",
                        ErrorCode.ILLEGAL_OPCODE, "opcode")
    return IsaError(f"opcode must be one of {', '.join(op.name for op in Opcode)}, not {value!r}",
                    ErrorCode.ILLEGAL_OPCODE, "opcode")


def format_of(opcode):
    """The :class:`Format` of ``opcode`` (an :class:`Opcode`, its value or its name).

    Raises
    ------
    IsaError
        With code ``ILLEGAL_OPCODE`` if there is no such opcode.
    """
    if isinstance(opcode, str):
        if opcode not in Opcode.__members__:
            raise _opcode_error(opcode)
        return OPCODE_FORMATS[Opcode[opcode]]
    if isinstance(opcode, bool) or not isinstance(opcode, int) or opcode not in OPCODE_FORMATS:
        raise _opcode_error(opcode)
    return OPCODE_FORMATS[Opcode(opcode)]


def header_fields():
    """``[(name, lo, width), ...]`` of the common header, LSB first."""
    return [(f.name, f.lo, f.width) for f in HEADER]


def fields(opcode):
    """``[(name, lo, width), ...]`` covering all 128 bits of ``opcode``'s format, LSB first.

    Contiguous and in bit order, so ``StructLayout({name: width for name, _, width in fields(op)})``
    reproduces the encoding.
    """
    return [(f.name, f.lo, f.width) for f in format_of(opcode).fields]


def reach(opcode, name):
    """The largest value field ``name`` of ``opcode`` can hold (e.g. ``reach(Opcode.LOAD,
    "words")``): the limit every planner of instructions must respect."""
    return format_of(opcode).field(name).maximum


def is_int(value):
    """``value`` is an integer and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def no_field_error(fmt, name):
    """The :class:`IsaError` for an operand ``name`` that ``fmt`` does not have."""
    names = [f.name for f in fmt.operands] + ["wait", "signal"]
    return IsaError(f"{fmt.mnemonic} has no field {name!r}; its fields are {', '.join(names)}",
                    ErrorCode.BAD_FIELD, name)
