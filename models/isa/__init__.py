"""The tile's instruction set: tables (:mod:`.tables`), instructions and their 128-bit encoding
(:mod:`.instruction`), assembly text (:mod:`.assembly`) and the generated reference (:mod:`.doc`).

The names most code needs are importable from here, together with the unit and scratchpad ids of
:mod:`mixpim.models.units` that the instruction fields use.
"""

from ..units import MASK_BITS, TOKEN_MAX, Spad, Unit, UnitMask
from .assembly import parse_instruction, parse_number
from .instruction import Instruction, decode, mask_text
from .tables import (HEADER, HEADER_BITS, OPCODE_FORMATS, PIM_OPCODES, UNIT_OF, WORD_BITS, WORD_BYTES, DecodeError,
                     ErrorCode, Field, Format, IsaError, NormFunc, Opcode, ProbFormat, SoftFunc, VecFunc, fields,
                     format_of,
                     header_fields, is_int, reach)

__all__ = [
    "WORD_BITS", "WORD_BYTES", "HEADER_BITS", "PIM_OPCODES", "MASK_BITS", "TOKEN_MAX",
    "Unit", "UnitMask", "Opcode", "Spad", "VecFunc", "SoftFunc", "ProbFormat", "NormFunc", "ErrorCode", "IsaError", "DecodeError",
    "Field", "Format", "HEADER", "OPCODE_FORMATS", "UNIT_OF", "format_of", "header_fields", "fields", "reach",
    "is_int", "Instruction", "decode", "mask_text", "parse_instruction", "parse_number",
]
