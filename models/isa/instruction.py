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

    __slots__ = ("_fmt", "_wait", "_signal", "_values", "_hash")

    def __new__(cls, op, *, wait=0, signal=0, **operands):
        fmt = OPCODE_FORMATS.get(op) if type(op) is Opcode else None
        if fmt is None:
            fmt = format_of(op)
        index = fmt.operand_index
        for name in operands:
            if name not in index:
                raise no_field_error(fmt, name)
        # (no tokens, the common case, needs no check)
        wait = _MASKS[0] if type(wait) is int and wait == 0 else _check_mask(fmt, "wait", wait)
        signal = _MASKS[0] if type(signal) is int and signal == 0 else _check_mask(fmt, "signal", signal)
        values = []
        klass, checks = _format_info(fmt)
        for f, name, lo, hi, members, allowed in checks:
            v = operands.get(name, 0)
            # the common legal cases of _check_operand (an int in range, an allowed member of the
            # field's enum), which decides all others
            if members is None:
                if type(v) is not int or not lo <= v <= hi:
                    v = _check_operand(fmt, f, v)
            elif type(v) is not members or v not in allowed:
                v = _check_operand(fmt, f, v)
            values.append(v)
        return _new(fmt, wait, signal, tuple(values), klass)

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

    def with_tokens(self, wait, signal):
        """A copy with these token masks (validated; the operands are kept as they are)."""
        fmt = self._fmt
        return _new(fmt, _check_mask(fmt, "wait", wait), _check_mask(fmt, "signal", signal), self._values)

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
        try:
            return self._hash
        except AttributeError:  # the first time (instructions are immutable: computed once)
            h = hash((self._fmt.opcode, self._wait, self._signal, self._values))
            object.__setattr__(self, "_hash", h)
            return h

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


def _operand_property(i):
    return property(lambda self: self._values[i])


def _format_class(fmt):
    """The class of ``fmt``'s instructions: :class:`Instruction` with each operand a property
    (what makes operands readable as attributes; other names raise AttributeError)."""
    ns = {"__slots__": (), "__module__": Instruction.__module__, "__qualname__": Instruction.__qualname__,
          "__doc__": Instruction.__doc__}
    for i, f in enumerate(fmt.operands):
        assert not hasattr(Instruction, f.name), f.name
        ns[f.name] = _operand_property(i)
    return type(Instruction.__name__, (Instruction,), ns)


_INFO = {}  # id(format) -> (format, _format_class(format), the fast checks of its operands)


def _format_info(fmt):
    """``(class, checks)`` of a :class:`Format`: the class of its instructions and what the fast
    checks of its operands need, ``(field, name, minimum, maximum, enum type, allowed members)``
    (no enum type for integer fields). Made once per format object (the table can change: see
    tests/test_decoder.py)."""
    info = _INFO.get(id(fmt))
    if info is None or info[0] is not fmt:
        checks = tuple((f, f.name, f.minimum, f.maximum, f.values, frozenset(f.allowed))
                       for f in fmt.operands)
        info = _INFO[id(fmt)] = (fmt, _format_class(fmt), checks)
    return info[1:]


_set = object.__setattr__


def _new(fmt, wait, signal, values, klass=None):
    """An instruction of checked parts."""
    new = object.__new__(klass or _format_info(fmt)[0])
    _set(new, "_fmt", fmt)
    _set(new, "_wait", wait)
    _set(new, "_signal", signal)
    _set(new, "_values", values)
    return new


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


