"""The assembly text of instructions: one line ``MNEMONIC name=value ...`` per instruction.

:func:`parse_instruction` reads the form ``str(Instruction)`` writes (docs/isa.md, "Assembly
syntax"); numbers are decimal, ``0x`` hex, ``0b`` binary or ``0o`` octal, with single underscores
between digits only.
"""

import re

from ..units import Unit, UnitMask
from .instruction import Instruction
from .tables import OPCODE_FORMATS, ErrorCode, IsaError, Opcode, no_field_error

__all__ = ["parse_instruction", "parse_number"]

# A digit must follow a base prefix (``0x_1`` is not a number here, although Python reads it).
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[bB][01][01_]*|0[oO][0-7][0-7_]*|[0-9][0-9_]*)")


def parse_number(text):
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
    number = parse_number(text)
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
    fmt = OPCODE_FORMATS[Opcode[mnemonic]]
    operands = {f.name: f for f in fmt.operands}
    texts = {}
    for token in tokens[1:]:
        name, eq, value = token.partition("=")
        if not (name and eq and value):
            raise IsaError(f"expected name=value, not {token!r}")
        name = name.lower()
        if name not in operands and name not in ("wait", "signal"):
            raise no_field_error(fmt, name)
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
        number = parse_number(value)
        if number is not None:
            kwargs[name] = number
        elif operands[name].kind == "enum":
            kwargs[name] = value.upper()
        else:
            kwargs[name] = value  # rejected by Instruction with the field's range
    return Instruction(fmt.opcode, **kwargs)


