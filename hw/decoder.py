"""Instruction decoder of the tile: one 128-bit word -> unit, token masks, operands, error code.

Everything is derived from :mod:`mixpim.models.isa`: the layouts from :func:`~mixpim.models.isa.fields`
and :func:`~mixpim.models.isa.header_fields`, the checks from each :class:`~mixpim.models.isa.Field`'s
``kind``, ``minimum`` and ``allowed`` and each :class:`~mixpim.models.isa.Format`'s ``unit``. No bit
position is written here, so an ISA change in ``models/isa.py`` reaches the RTL on regeneration.

``o_error`` flags exactly the words :func:`mixpim.models.isa.decode` rejects, with the same code:
``ILLEGAL_OPCODE`` for an opcode without a format (the PIM group included), else ``BAD_FIELD`` for
reserved or unused bits set, a token bit the format may not carry, an ``enum`` field outside
``allowed`` or a count below its ``minimum``. Range checks that need the configuration
(``SPAD_RANGE``, ``DRAM_RANGE``) belong to the dispatcher.
"""

from amaranth.hdl import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..models.isa import OPCODE_FORMATS, MASK_BITS, WORD_BITS, ErrorCode, Unit, fields, format_of, header_fields
from .common import any_of

__all__ = ["header_layout", "word_layout", "operand_layout", "operand_port", "InstructionDecoder"]


def _struct(triples):
    """``StructLayout`` of ``[(name, lo, width)]``; the fields must be contiguous from the first."""
    layout = data.StructLayout({name: width for name, _, width in triples})
    base = triples[0][1] if triples else 0
    for name, lo, _ in triples:
        assert layout[name].offset == lo - base, (name, lo)
    return layout


def header_layout():
    """The common header (``opcode``, ``wait``, ``signal``, ``reserved``), LSB first."""
    return _struct(header_fields())


def word_layout(opcode):
    """All 128 bits of ``opcode``'s format: header, operands, ``unused`` (if any bits are left).

    ``opcode`` is an :class:`~mixpim.models.isa.Opcode`, its value or its mnemonic; an unknown one
    raises :class:`~mixpim.models.isa.IsaError` (code ``ILLEGAL_OPCODE``).
    """
    return _struct(fields(opcode))


def operand_layout(opcode):
    """Only the operands of ``opcode``'s format (possibly empty), in field order."""
    fmt = format_of(opcode)
    return _struct([(f.name, f.lo, f.width) for f in fmt.operands])


def operand_port(opcode):
    """Name of the decoder's operand view for ``opcode``: ``o_`` + the lower-case mnemonic."""
    return f"o_{format_of(opcode).mnemonic.lower()}"


def _zero_bad(fmt, f, value):
    return value != 0


def _mask_bad(fmt, f, value):
    # The dispatcher holds no tokens; a unit never waits on or signals itself.
    legal = 0 if fmt.unit is None else ((1 << MASK_BITS) - 1) & ~(1 << fmt.unit)
    return (value & (f.maximum & ~legal)) != 0


def _enum_bad(fmt, f, value):
    return ~value.matches(*(int(v) for v in f.allowed))


def _uint_bad(fmt, f, value):
    # The largest legal value is the field's maximum, so only the minimum can be broken.
    return value < f.minimum if f.minimum > 0 else 0


#: Field kind -> ``(fmt, field, raw value) -> 1-bit expression``: the value breaks ``decode``'s
#: rule for the field. ``opcode`` is checked by the opcode switch.
_CHECKS = {"zero": _zero_bad, "mask": _mask_bad, "enum": _enum_bad,
           "uint": _uint_bad, "addr": _uint_bad, "flag": _uint_bad}


class InstructionDecoder(wiring.Component):
    """Combinational instruction decoder (latency 0 cycles); takes no arguments.

    The formats of :data:`mixpim.models.isa.OPCODE_FORMATS` are read when the decoder is built.

    Members
    -------
    i_word : In(128), the instruction word
    o_opcode : Out(8), the ``opcode`` field
    o_wait, o_signal : Out(4), the token masks (bit u = :class:`~mixpim.models.isa.Unit` u)
    o_dispatcher : Out(1), the dispatcher executes the instruction (NOP, SYNC, HALT); 0 for an
        illegal opcode
    o_unit : Out(Unit), 2 bits, the unit whose queue takes the instruction; 0 when
        ``o_dispatcher`` is set or the opcode is illegal
    o_load, o_store, o_gemm, o_vec : Out(:func:`operand_layout`), one per format with operands
        (port :func:`operand_port`): the word's operand bits viewed with that format's fields,
        whatever the opcode (the consumer picks the view by ``o_opcode``)
    o_error : Out(ErrorCode), 4 bits, ``OK``, ``ILLEGAL_OPCODE`` or ``BAD_FIELD``; the code
        :func:`mixpim.models.isa.decode` raises for this word

    Widths shown are those of the current ISA; all come from :mod:`mixpim.models.isa`.

    Raises
    ------
    NotImplementedError
        If a format has a field kind the decoder cannot check (a new kind in the ISA).
    """

    def __init__(self):
        self._formats = tuple(OPCODE_FORMATS.values())
        for fmt in self._formats:
            for f in fmt.fields[1:]:
                if f.kind not in _CHECKS:
                    raise NotImplementedError(f"{fmt.mnemonic} {f.name}: the decoder has no check for "
                                              f"field kind {f.kind!r}")
        header = header_layout()
        ports = {
            "i_word": In(WORD_BITS),
            "o_opcode": Out(header["opcode"].shape),
            "o_wait": Out(header["wait"].shape),
            "o_signal": Out(header["signal"].shape),
            "o_dispatcher": Out(1),
            "o_unit": Out(Unit),
            "o_error": Out(ErrorCode),
        }
        for fmt in self._formats:
            if fmt.operands:
                ports[operand_port(fmt.opcode)] = Out(operand_layout(fmt.opcode))
        super().__init__(ports)

    @property
    def formats(self):
        """The :class:`~mixpim.models.isa.Format` objects decoded, in table order."""
        return self._formats

    def elaborate(self, platform):
        m = Module()
        layout = header_layout()
        header = data.View(layout, self.i_word[:layout.size])
        m.d.comb += [
            self.o_opcode.eq(header.opcode),
            self.o_wait.eq(header.wait),
            self.o_signal.eq(header.signal),
        ]
        for fmt in self._formats:
            if fmt.operands:
                word = data.View(word_layout(fmt.opcode), self.i_word)
                port = getattr(self, operand_port(fmt.opcode))
                m.d.comb += [port[f.name].eq(word[f.name]) for f in fmt.operands]

        # Every branch drives every output, so no Verilog case is incomplete.
        with m.Switch(header.opcode):
            for fmt in self._formats:
                with m.Case(int(fmt.opcode)):
                    word = data.View(word_layout(fmt.opcode), self.i_word)
                    bad = any_of(_CHECKS[f.kind](fmt, f, word[f.name]) for f in fmt.fields[1:])
                    m.d.comb += [
                        self.o_error.eq(Mux(bad, ErrorCode.BAD_FIELD, ErrorCode.OK)),
                        self.o_dispatcher.eq(fmt.unit is None),
                        self.o_unit.eq(0 if fmt.unit is None else fmt.unit),
                    ]
            with m.Default():
                m.d.comb += [
                    self.o_error.eq(ErrorCode.ILLEGAL_OPCODE),
                    self.o_dispatcher.eq(0),
                    self.o_unit.eq(0),
                ]
        return m

