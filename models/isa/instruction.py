"""Instructions: validated construction, the 128-bit encoding and its decoding.

:class:`Instruction` checks every operand against its :class:`~.tables.Field` (the same rules the
tile's decoder applies), :meth:`Instruction.encode` packs the word and :func:`decode` unpacks and
checks one, raising :class:`~.tables.DecodeError` with the code the RTL decoder flags.
"""

import enum

from ..units import MASK_BITS, Unit, UnitMask
from .tables import (HEADER, OPCODE_FORMATS, PIM_OPCODES, WORD_BITS, DecodeError, ErrorCode,
                     IsaError, Opcode, format_of, is_int, no_field_error)

__all__ = ["Instruction", "decode", "mask_text"]

def mask_text(mask):
    """A token mask as assembly text: ``DMA|VEC``, or ``-`` for none."""
    return "|".join(u.name for u in Unit if mask >> u & 1) or "-"


#: Every token mask as a UnitMask (building an IntFlag member per instruction is slow).
_MASKS = tuple(UnitMask(m) for m in range(1 << MASK_BITS))


def _check_mask(fmt, name, value):
    if type(value) is int and 0 <= value < len(_MASKS) or type(value) is UnitMask:
        if fmt.unit is None and value:
            raise IsaError(f"{fmt.mnemonic} {name} must be empty, not {mask_text(value)}: the "
                           f"dispatcher executes {fmt.mnemonic} and holds no tokens",
                           ErrorCode.BAD_FIELD, name)
        if fmt.unit is not None and value >> fmt.unit & 1:
            raise IsaError(f"{fmt.mnemonic} {name} must not include its own unit {fmt.unit.name}",
                           ErrorCode.BAD_FIELD, name)
        return _MASKS[value]
    if isinstance(value, Unit):
        raise IsaError(f"{fmt.mnemonic} {name} must be a unit mask (a UnitMask or an integer in "
                       f"0..{len(_MASKS) - 1}), not {value!r}; write UnitMask.{value.name}",
                       ErrorCode.BAD_FIELD, name)
    if (not is_int(value) or not 0 <= value < len(_MASKS)
            or isinstance(value, enum.Enum) and not isinstance(value, UnitMask)):
        raise IsaError(f"{fmt.mnemonic} {name} must be a unit mask (a UnitMask or an integer in "
                       f"0..{len(_MASKS) - 1}), not {value!r}", ErrorCode.BAD_FIELD, name)
    return _check_mask(fmt, name, int(value))  # an int subclass: checked as its value


def _check_operand(fmt, f, value):
    op = fmt.mnemonic
    if f.kind == "enum":
        enum_type = f.values
        member = None
        if isinstance(value, enum.Enum) and not isinstance(value, enum_type):
            pass  # a member of another enum (Spad.ACT == 0 == VecFunc.REQUANT) is a mistake
        elif isinstance(value, str) and value in enum_type.__members__:
            member = enum_type[value]
        elif is_int(value) and value in enum_type._value2member_map_:
            member = enum_type(value)
        if member is not None and member in f.allowed:
            return member
        shown = member.name if member is not None else repr(value)
        raise IsaError(f"{op} {f.name} must be one of {', '.join(v.name for v in f.allowed)}, "
                       f"not {shown}", ErrorCode.BAD_FIELD, f.name)
    if f.kind == "flag" and isinstance(value, bool):
        return int(value)
    if not is_int(value) or not f.minimum <= value <= f.maximum:
        raise IsaError(f"{op} {f.name} must be an integer in {f.minimum}..{f.maximum} "
                       f"({f.width} bits), not {value!r}", ErrorCode.BAD_FIELD, f.name)
    return int(value)


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
        The format's operands by name (see :data:`~.tables.OPCODE_FORMATS`); an omitted operand is 0. ``enum``
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
        index = fmt.operand_index
        for name in operands:
            if name not in index:
                raise no_field_error(fmt, name)
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
        i = self._fmt.operand_index.get(name)
        if i is None:
            raise KeyError(f"{self._fmt.mnemonic} has no operand {name!r}")
        return self._values[i]

    def __getattr__(self, name):
        i = self._fmt.operand_index.get(name) if not name.startswith("_") else None
        if i is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._values[i]

    def with_tokens(self, wait, signal):
        """A copy with these token masks (validated; the operands are kept as they are)."""
        new = object.__new__(Instruction)
        object.__setattr__(new, "_fmt", self._fmt)
        object.__setattr__(new, "_wait", _check_mask(self._fmt, "wait", wait))
        object.__setattr__(new, "_signal", _check_mask(self._fmt, "signal", signal))
        object.__setattr__(new, "_values", self._values)
        return new

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
            parts.append(f"wait={mask_text(self._wait)}")
            parts.append(f"signal={mask_text(self._signal)}")
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
        the table (an unused opcode of the PIM group 0x40-0x4f says "a reserved PIM opcode"), ``BAD_FIELD``
        for reserved or unused bits set, an illegal ``spad``/``func``, a zero count, an own-unit
        token bit or a token mask on NOP/SYNC/HALT; the message names the field.
    IsaError
        If ``word`` is not an integer in 0..2**128-1.
    """
    if not is_int(word) or not 0 <= word < 1 << WORD_BITS:
        raise IsaError(f"an instruction word must be an integer in 0..2**128-1, not {word!r}")
    opcode = HEADER[0].extract(word)
    if opcode not in OPCODE_FORMATS:
        if opcode in PIM_OPCODES:
            raise DecodeError(f"opcode 0x{opcode:02x} is a reserved PIM opcode",
                              ErrorCode.ILLEGAL_OPCODE, "opcode")
        raise DecodeError(f"illegal opcode 0x{opcode:02x}", ErrorCode.ILLEGAL_OPCODE, "opcode")
    fmt = OPCODE_FORMATS[Opcode(opcode)]
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


