"""The tile's instruction set, defined once: units, opcodes, field layouts, legality rules, text form.

Every other part derives from the tables here: the RTL decoder builds its ``amaranth.lib.data``
layouts from :func:`fields` / :func:`header_fields`, the compiler builds :class:`Instruction`
objects and calls :meth:`Instruction.encode`, the golden executor calls :func:`decode`, and
``docs/isa.md`` embeds :func:`isa_markdown`. The architecture contract is ``docs/tile.md``.

An instruction is 128 bits, fields packed LSB first. The 24-bit header (``opcode``, ``wait``,
``signal``, ``reserved``) is common; the operands follow from bit 24 and every bit above the last
operand is ``unused`` and must be 0.

What :func:`decode` checks is exactly what the tile's decoder flags without knowing the
configuration: ``ILLEGAL_OPCODE`` and ``BAD_FIELD``. Checks that need a :class:`TileConfig`
(scratchpad depths, DRAM size, alignment, VEC ``rows`` <= array rows) belong to the executor.
"""

import enum
import re
from dataclasses import dataclass

from .errors import MixpimError

__all__ = [
    "WORD_BITS", "WORD_BYTES", "HEADER_BITS", "PIM_OPCODES",
    "Unit", "UnitMask", "Opcode", "Spad", "VecFunc", "ErrorCode",
    "IsaError", "DecodeError",
    "Field", "Format", "FORMATS", "format_of", "header_fields", "fields",
    "Instruction", "decode", "parse_instruction", "isa_markdown", "MARKDOWN_BEGIN", "MARKDOWN_END",
]

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
HEADER_BITS = 24

#: Opcodes of the PIM group: reserved, illegal until the PIM step defines them.
PIM_OPCODES = range(0x40, 0x50)


class Unit(enum.IntEnum):
    """Execution units; ``1 << unit`` is the unit's bit in a token mask."""
    DMA = 0
    GEMM = 1
    VEC = 2
    PIM = 3


#: A ``wait`` / ``signal`` token mask: ``UnitMask.DMA | UnitMask.VEC``. Bit u is :class:`Unit` u.
UnitMask = enum.IntFlag("UnitMask", {u.name: 1 << u for u in Unit}, module=__name__)
UnitMask.__doc__ = "A wait/signal token mask; bit u is :class:`Unit` u."

MASK_BITS = len(Unit)


class Opcode(enum.IntEnum):
    """Operation codes (the ``opcode`` field, bits [0:8])."""
    NOP = 0x00
    SYNC = 0x01
    HALT = 0x02
    LOAD = 0x10
    STORE = 0x11
    GEMM = 0x20
    VEC = 0x30


class Spad(enum.IntEnum):
    """Scratchpad ids (the ``spad`` field of LOAD and STORE)."""
    ACT = 0
    WGT = 1
    META = 2
    ACC = 3
    VPARAM = 4


class VecFunc(enum.IntEnum):
    """Vector-unit functions (the ``func`` field of VEC)."""
    REQUANT = 0
    RELU = 1
    GELU = 2
    ADD = 3


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


# One-line meanings, per enum (members of different IntEnums compare equal, so one dict per enum).
_DOCS = {Unit: {
    Unit.DMA: "LOAD, STORE: DRAM channel 0 and the scratchpads' DMA ports",
    Unit.GEMM: "GEMM: ACT/WGT/META read ports, the array, the ACC write port",
    Unit.VEC: "VEC: ACC read port, ACT/VPARAM read ports, ACT write port",
    Unit.PIM: "reserved for the PIM banks (a later step)",
}, Spad: {
    Spad.ACT: "activations, one array beat per word (K-major)",
    Spad.WGT: "weight codes, one array beat per word",
    Spad.META: "per-group zero points and scale mantissas",
    Spad.ACC: "accumulators, one token row per word",
    Spad.VPARAM: "per-column vector-unit parameters",
}, VecFunc: {
    VecFunc.REQUANT: "y = sat8(v)",
    VecFunc.RELU: "y = sat8(max(v, 0))",
    VecFunc.GELU: "y = GELU_LUT[sat8(v)]",
    VecFunc.ADD: "y = sat8(v + residual)",
}, ErrorCode: {
    ErrorCode.OK: "no error",
    ErrorCode.ILLEGAL_OPCODE: "opcode not in the table (incl. PIM opcodes before the PIM step)",
    ErrorCode.BAD_FIELD: "reserved or unused bits set; a field outside its legal values (`spad`, "
                         "`func`, a zero count); an own-unit token bit; a token mask on NOP, SYNC "
                         "or HALT",
    ErrorCode.SPAD_RANGE: "an access would leave a scratchpad",
    ErrorCode.DRAM_RANGE: "an access would leave DRAM",
    ErrorCode.TOKEN_OVERFLOW: "a token counter would exceed 7",
    ErrorCode.DEADLOCK: "no unit can make progress (docs/tile.md, Dependency tokens)",
    ErrorCode.NO_HALT: "the program counter ran past the last instruction",
    ErrorCode.ARRAY_STREAM: "the array flagged a malformed stream",
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


# LOAD/STORE reach exactly the scratchpads the tile gives DMA ports (docs/tile.md, "Scratchpads").
_FORMATS = (
    Format(Opcode.NOP, None, (), "do nothing for one dispatch cycle"),
    Format(Opcode.SYNC, None, (), "wait until every queue is empty and every unit is idle"),
    Format(Opcode.HALT, None, (), "SYNC, then stop with done and error code 0"),
    Format(Opcode.LOAD, Unit.DMA,
           _dma_operands("scratchpad written", (Spad.ACT, Spad.WGT, Spad.META, Spad.VPARAM)),
           "move rows x words scratchpad words from DRAM rows at dram_addr + r * stride into "
           "spad[spad_addr ...]"),
    Format(Opcode.STORE, Unit.DMA,
           _dma_operands("scratchpad read", (Spad.ACT, Spad.ACC)),
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
    ), "stream one rows x cols output tile through the array into ACC"),
    Format(Opcode.VEC, Unit.VEC, (
        Field("func", 24, 4, "function applied per element", kind="enum", allowed=tuple(VecFunc)),
        Field("acc_addr", 28, 16, "first ACC word read (token row 0)"),
        Field("act_addr", 44, 16, "ACT word written for output column 0"),
        Field("res_addr", 60, 16, "ACT word of residual column 0 (read by ADD only)"),
        Field("param_addr", 76, 16, "VPARAM word of column 0"),
        Field("rows", 92, 8, "ACC words (tokens) read; at most the array's rows", minimum=1),
    ), "read rows ACC words, apply func per element, write the result transposed into ACT"),
)

#: :class:`Format` of every legal opcode.
FORMATS = {fmt.opcode: fmt for fmt in _FORMATS}


def _opcode_error(value):
    if isinstance(value, int) and not isinstance(value, bool) and value in PIM_OPCODES:
        return IsaError(f"opcode 0x{value:02x} is reserved for PIM, not implemented",
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
        return FORMATS[Opcode[opcode]]
    if isinstance(opcode, bool) or not isinstance(opcode, int) or opcode not in FORMATS:
        raise _opcode_error(opcode)
    return FORMATS[Opcode(opcode)]


def header_fields():
    """``[(name, lo, width), ...]`` of the common header, LSB first."""
    return [(f.name, f.lo, f.width) for f in HEADER]


def fields(opcode):
    """``[(name, lo, width), ...]`` covering all 128 bits of ``opcode``'s format, LSB first.

    Contiguous and in bit order, so ``StructLayout({name: width for name, _, width in fields(op)})``
    reproduces the encoding.
    """
    return [(f.name, f.lo, f.width) for f in format_of(opcode).fields]


# -- instructions ------------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _mask_text(mask):
    return "|".join(u.name for u in Unit if mask >> u & 1) or "-"


def _check_mask(fmt, name, value):
    op = fmt.mnemonic
    if isinstance(value, Unit):
        raise IsaError(f"{op} {name} must be a unit mask (a UnitMask or an integer in 0..15), not "
                       f"{value!r}; write UnitMask.{value.name}", ErrorCode.BAD_FIELD, name)
    if (not _is_int(value) or not 0 <= value < 1 << MASK_BITS
            or isinstance(value, enum.Enum) and not isinstance(value, UnitMask)):
        raise IsaError(f"{op} {name} must be a unit mask (a UnitMask or an integer in 0..15), "
                       f"not {value!r}", ErrorCode.BAD_FIELD, name)
    if fmt.unit is None and value:
        raise IsaError(f"{op} {name} must be empty, not {_mask_text(value)}: the dispatcher "
                       f"executes {op} and holds no tokens", ErrorCode.BAD_FIELD, name)
    if fmt.unit is not None and value >> fmt.unit & 1:
        raise IsaError(f"{op} {name} must not include its own unit {fmt.unit.name}",
                       ErrorCode.BAD_FIELD, name)
    return UnitMask(value)


def _check_operand(fmt, f, value):
    op = fmt.mnemonic
    if f.kind == "enum":
        enum_type = f.values
        member = None
        if isinstance(value, enum.Enum) and not isinstance(value, enum_type):
            pass  # a member of another enum (Spad.ACT == 0 == VecFunc.REQUANT) is a mistake
        elif isinstance(value, str) and value in enum_type.__members__:
            member = enum_type[value]
        elif _is_int(value) and value in enum_type._value2member_map_:
            member = enum_type(value)
        if member is not None and member in f.allowed:
            return member
        shown = member.name if member is not None else repr(value)
        raise IsaError(f"{op} {f.name} must be one of {', '.join(v.name for v in f.allowed)}, "
                       f"not {shown}", ErrorCode.BAD_FIELD, f.name)
    if f.kind == "flag" and isinstance(value, bool):
        return int(value)
    if not _is_int(value) or not f.minimum <= value <= f.maximum:
        raise IsaError(f"{op} {f.name} must be an integer in {f.minimum}..{f.maximum} "
                       f"({f.width} bits), not {value!r}", ErrorCode.BAD_FIELD, f.name)
    return int(value)


def _no_field(fmt, name):
    names = [f.name for f in fmt.operands] + ["wait", "signal"]
    return IsaError(f"{fmt.mnemonic} has no field {name!r}; its fields are {', '.join(names)}",
                    ErrorCode.BAD_FIELD, name)


class Instruction:
    """One legal instruction: an opcode, its operands and its token masks. Immutable.

    Arguments
    ---------
    op : Opcode, int or str
        The opcode, its value or its mnemonic.
    wait, signal : UnitMask or int
        Token masks (bit u = :class:`Unit` u), default empty. Must not contain the instruction's
        own unit; must be empty for NOP, SYNC and HALT (the dispatcher has no tokens).
    **operands
        The format's operands by name (see :data:`FORMATS`); an omitted operand is 0. ``enum``
        operands take a member, its value or its name; ``flag`` operands also take a bool.

    Members
    -------
    op : Opcode
    format : Format
    unit : Unit or None
    wait, signal : UnitMask
    operands : dict
        ``{name: value}`` in field order (``enum`` fields as enum members).

    Operands are also readable as attributes (``inst.spad_addr``) and items (``inst["words"]``).

    Raises
    ------
    IsaError
        If the opcode is unknown (code ``ILLEGAL_OPCODE``), an operand is unknown, or a value is
        not legal for its field, e.g. too wide (code ``BAD_FIELD``); the message names the field.
    """

    __slots__ = ("_fmt", "_wait", "_signal", "_values")

    def __init__(self, op, *, wait=0, signal=0, **operands):
        fmt = format_of(op)
        for name in operands:
            if name not in {f.name for f in fmt.operands}:
                raise _no_field(fmt, name)
        wait = _check_mask(fmt, "wait", wait)
        signal = _check_mask(fmt, "signal", signal)
        values = tuple(_check_operand(fmt, f, operands.get(f.name, 0)) for f in fmt.operands)
        object.__setattr__(self, "_fmt", fmt)
        object.__setattr__(self, "_wait", wait)
        object.__setattr__(self, "_signal", signal)
        object.__setattr__(self, "_values", values)

    def __setattr__(self, name, value):
        raise AttributeError("Instruction is immutable; use replace()")

    def __delattr__(self, name):
        raise AttributeError("Instruction is immutable; use replace()")

    @property
    def op(self):
        return self._fmt.opcode

    @property
    def format(self):
        return self._fmt

    @property
    def unit(self):
        return self._fmt.unit

    @property
    def wait(self):
        return self._wait

    @property
    def signal(self):
        return self._signal

    @property
    def operands(self):
        return {f.name: v for f, v in zip(self._fmt.operands, self._values)}

    def __getitem__(self, name):
        for f, v in zip(self._fmt.operands, self._values):
            if f.name == name:
                return v
        raise KeyError(f"{self._fmt.mnemonic} has no operand {name!r}")

    def __getattr__(self, name):
        if not name.startswith("_"):
            for f, v in zip(self._fmt.operands, self._values):
                if f.name == name:
                    return v
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def replace(self, **changes):
        """A copy with ``changes`` (operands, ``wait``, ``signal``) applied and validated."""
        kwargs = dict(self.operands, wait=self._wait, signal=self._signal)
        kwargs.update(changes)
        return Instruction(self.op, **kwargs)

    def encode(self):
        """The 128-bit instruction word."""
        word = self.op | self._wait << HEADER[1].lo | self._signal << HEADER[2].lo
        for f, v in zip(self._fmt.operands, self._values):
            word |= int(v) << f.lo
        return word

    def __eq__(self, other):
        if not isinstance(other, Instruction):
            return NotImplemented
        return (self._fmt.opcode, self._wait, self._signal, self._values) == \
            (other._fmt.opcode, other._wait, other._signal, other._values)

    def __hash__(self):
        return hash((self._fmt.opcode, self._wait, self._signal, self._values))

    def __reduce__(self):
        return decode, (self.encode(),)

    def __str__(self):
        """The canonical assembly line (see docs/isa.md, "Assembly syntax")."""
        parts = []
        for f, v in zip(self._fmt.operands, self._values):
            parts.append(f"{f.name}={_value_text(f, v)}")
        if self._fmt.unit is not None:
            parts.append(f"wait={_mask_text(self._wait)}")
            parts.append(f"signal={_mask_text(self._signal)}")
        if not parts:
            return self._fmt.mnemonic
        return f"{self._fmt.mnemonic:<6} " + " ".join(parts)

    def __repr__(self):
        return f"<Instruction {self}>"


def _value_text(f, v):
    if f.kind == "enum":
        return v.name
    if f.kind == "addr":
        return f"0x{v:x}"
    return str(v)


def decode(word):
    """The :class:`Instruction` encoded by the 128-bit integer ``word``.

    Raises
    ------
    DecodeError
        If ``word`` is not a legal instruction: ``code`` is ``ILLEGAL_OPCODE`` for an opcode not in
        the table (the PIM group 0x40-0x4f says "reserved for PIM, not implemented"), ``BAD_FIELD``
        for reserved or unused bits set, an illegal ``spad``/``func``, a zero count, an own-unit
        token bit or a token mask on NOP/SYNC/HALT; the message names the field.
    IsaError
        If ``word`` is not an integer in 0..2**128-1.
    """
    if not _is_int(word) or not 0 <= word < 1 << WORD_BITS:
        raise IsaError(f"an instruction word must be an integer in 0..2**128-1, not {word!r}")
    opcode = HEADER[0].extract(word)
    if opcode not in FORMATS:
        if opcode in PIM_OPCODES:
            raise DecodeError(f"opcode 0x{opcode:02x} is reserved for PIM, not implemented",
                              ErrorCode.ILLEGAL_OPCODE, "opcode")
        raise DecodeError(f"illegal opcode 0x{opcode:02x}", ErrorCode.ILLEGAL_OPCODE, "opcode")
    fmt = FORMATS[Opcode(opcode)]
    values = {}
    for f in fmt.fields[1:]:
        raw = f.extract(word)
        if f.kind == "zero":
            if raw:
                raise DecodeError(f"{fmt.mnemonic} {f.name} bits [{f.lo}:{f.hi}] must be 0, "
                                  f"not 0x{raw:x}", ErrorCode.BAD_FIELD, f.name)
        else:
            values[f.name] = raw
    try:
        return Instruction(fmt.opcode, **values)
    except IsaError as e:
        raise DecodeError(str(e), e.code, e.field) from None


# -- assembly text -----------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|[0-9][0-9_]*)")


def _parse_number(text):
    """The integer ``text`` spells, or None. Decimal may have leading zeros (``007``)."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    try:
        return int(text, 0 if match[1][:2].lower() in ("0x", "0b", "0o") else 10)
    except ValueError:  # misplaced underscores
        return None


def _parse_mask(name, text):
    if text == "-":
        return 0
    number = _parse_number(text)
    if number is not None:
        return number
    mask = 0
    for part in text.split("|"):
        unit = part.upper()
        if unit not in Unit.__members__:
            raise IsaError(f"{name}: unknown unit {part!r}; units are "
                           f"{', '.join(u.name for u in Unit)} (or - for none)", field=name)
        if mask >> Unit[unit] & 1:
            raise IsaError(f"{name}: unit {unit} appears twice", field=name)
        mask |= 1 << Unit[unit]
    return UnitMask(mask)


def parse_instruction(text):
    """The :class:`Instruction` written as one assembly line (without comment).

    Syntax: ``MNEMONIC name=value ...``; see docs/isa.md, "Assembly syntax".

    Raises
    ------
    IsaError
        Naming the problem: unknown mnemonic, a word that is not ``name=value``, an unknown,
        duplicate or missing field, a bad unit name, a value out of range.
    """
    if not isinstance(text, str):
        raise IsaError(f"an assembly line must be a string, not {text!r}")
    tokens = text.split()
    if not tokens:
        raise IsaError("empty instruction")
    mnemonic = tokens[0].upper()
    if mnemonic not in Opcode.__members__:
        raise IsaError(f"unknown mnemonic {tokens[0]!r}; mnemonics are "
                       f"{', '.join(op.name for op in Opcode)}", field="opcode")
    fmt = FORMATS[Opcode[mnemonic]]
    operands = {f.name: f for f in fmt.operands}
    texts = {}
    for token in tokens[1:]:
        name, eq, value = token.partition("=")
        if not (name and eq and value):
            raise IsaError(f"expected name=value, not {token!r}")
        name = name.lower()
        if name not in operands and name not in ("wait", "signal"):
            raise _no_field(fmt, name)
        if name in texts:
            raise IsaError(f"duplicate field {name}", field=name)
        texts[name] = value
    for f in fmt.operands:
        if f.required and f.name not in texts:
            raise IsaError(f"{fmt.mnemonic} needs {f.name} (it cannot be 0, so it cannot be "
                           f"omitted)", ErrorCode.BAD_FIELD, f.name)
    kwargs = {}
    for name, value in texts.items():
        if name in ("wait", "signal"):
            kwargs[name] = _parse_mask(name, value)
            continue
        number = _parse_number(value)
        if number is not None:
            kwargs[name] = number
        elif operands[name].kind == "enum":
            kwargs[name] = value.upper()
        else:
            kwargs[name] = value  # rejected by Instruction with the field's range
    return Instruction(fmt.opcode, **kwargs)


# -- documentation -----------------------------------------------------------------------------

def _values_text(f):
    if f.kind == "enum":
        return ", ".join(f"{int(v)} {v.name}" for v in f.allowed)
    if f.kind == "flag":
        return "0, 1"
    if f.kind == "zero":
        return "0"
    if f.kind == "mask":
        return "unit mask"
    if f.kind == "opcode":
        return "see Opcodes"
    if f.kind == "addr":
        return f"0x{f.minimum:x}..0x{f.maximum:x}"
    return f"{f.minimum}..{f.maximum}"


def _field_rows(fs):
    rows = ["| bits | width | field | values | meaning |", "|---|---|---|---|---|"]
    for f in fs:
        rows.append(f"| [{f.lo}:{f.hi}] | {f.width} | `{f.name}` | {_values_text(f)} | {f.doc} |")
    return rows


def isa_markdown():
    """The generated tables of docs/isa.md (units, opcodes, formats, ids, error codes)."""
    out = ["### Units", "",
           "| id | unit | mask bit | executes |", "|---|---|---|---|"]
    for u in Unit:
        out.append(f"| {int(u)} | {u.name} | 0x{1 << u:x} | {_DOCS[Unit][u]} |")
    out += ["", "### Opcodes", "",
            "| opcode | mnemonic | unit | operands | operation |", "|---|---|---|---|---|"]
    for fmt in _FORMATS:
        unit = fmt.unit.name if fmt.unit is not None else "dispatcher"
        ops = ", ".join(f"`{f.name}`" for f in fmt.operands) or "—"
        out.append(f"| 0x{fmt.opcode:02x} | {fmt.mnemonic} | {unit} | {ops} | {fmt.doc} |")
    out.append(f"| 0x{PIM_OPCODES.start:02x}-0x{PIM_OPCODES.stop - 1:02x} | — | PIM | — | "
               f"reserved for PIM, not implemented (`ILLEGAL_OPCODE`) |")
    out += ["", "Every other opcode is illegal (`ILLEGAL_OPCODE`).", "",
            "### Header (every instruction)", ""]
    out += _field_rows(HEADER)
    for fmt in _FORMATS:
        unit = fmt.unit.name if fmt.unit is not None else "dispatcher"
        doc = fmt.doc[0].upper() + fmt.doc[1:] + "."
        out += ["", f"### {fmt.mnemonic} (0x{fmt.opcode:02x}, {unit})", "", doc, ""]
        out += _field_rows(fmt.fields[len(HEADER):])
    for title, enum_type in (("Scratchpad ids", Spad), ("Vector functions", VecFunc),
                             ("Error codes", ErrorCode)):
        out += ["", f"### {title}", "", "| code | name | meaning |", "|---|---|---|"]
        for m in enum_type:
            out.append(f"| {int(m)} | {m.name} | {_DOCS[enum_type][m]} |")
    return "\n".join(out) + "\n"


#: Markers around the generated part of docs/isa.md.
MARKDOWN_BEGIN = "<!-- BEGIN GENERATED by `python -m mixpim.models.isa docs/isa.md`; do not edit -->"
MARKDOWN_END = "<!-- END GENERATED -->"


def _update_markdown(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, begin, rest = text.partition(MARKDOWN_BEGIN)
    _, end, tail = rest.partition(MARKDOWN_END)
    if not (begin and end):
        raise SystemExit(f"{path}: no {MARKDOWN_BEGIN!r} ... {MARKDOWN_END!r} block")
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n\n" + isa_markdown() + "\n" + end + tail)


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1:
        _update_markdown(sys.argv[1])
    else:
        print(isa_markdown(), end="")
