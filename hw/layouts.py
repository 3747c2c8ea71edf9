"""Port layouts of the arrays and PEs, derived from :class:`mixpim.models.mixpe.ArrayParams`.

Struct fields pack LSB first in the order listed (``amaranth.lib.data.StructLayout``); testbenches
pack and unpack stream payloads through these same layouts.
"""

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

__all__ = ["ctl_layout", "pe_act_layout", "result_layout", "array_input_layout", "array_output_layout",
           "stream_act_shape", "pack", "unpack_array"]

#: Control bits that travel down each column with the weights.
#: ``valid``: a real beat (else a bubble); ``glast``: last beat of a weight group;
#: ``tlast``: last beat of an output tile.
ctl_layout = data.StructLayout({"valid": 1, "glast": 1, "tlast": 1})


def stream_act_shape(act):
    """Activation as it enters the array (``act`` is "int8" or "fp16"): INT8 value or FP16 bits."""
    return signed(8) if act == "int8" else unsigned(16)


def pe_act_layout(act):
    """Activation as it travels along a row: INT8, or FP16 split into significand and shift.

    FP16: ``sig`` signed(12) in -2047..2047, ``sh = exp - 1`` unsigned(5) in 0..29; the value is
    ``sig << sh`` in units of 2**-24.
    """
    if act == "int8":
        return signed(8)
    return data.StructLayout({"sig": signed(12), "sh": unsigned(5)})


def result_layout(width):
    """A PE result on the column bus: ``value`` valid for one cycle; ``tlast`` marks a tile's end."""
    return data.StructLayout({"valid": 1, "tlast": 1, "value": signed(width)})


def array_input_layout(p):
    """One input beat of an array (stream payload).

    ``act[i]``: activation of row i; ``code[j]``, ``zero[j]``, ``scale[j]``: weight code, zero point
    and scale mantissa of column j (zero and scale constant within a group); with
    ``p.group_offset``, ``offset[j]``: the column's signed offset mantissa (``offset_bits``,
    constant within a group); ``last``: last beat of the tile.
    """
    fields = {
        "act": data.ArrayLayout(stream_act_shape(p.act_format), p.rows),
        "code": data.ArrayLayout(unsigned(p.wbits), p.cols),
        "zero": data.ArrayLayout(unsigned(p.wbits), p.cols),
        "scale": data.ArrayLayout(unsigned(p.scale_bits), p.cols),
    }
    if p.group_offset:
        fields["offset"] = data.ArrayLayout(signed(p.offset_bits), p.cols)
    return data.StructLayout({**fields, "last": 1})


def array_output_layout(p):
    """One output beat: the accumulators of one token row, one per column."""
    return data.ArrayLayout(signed(p.acc_bits), p.cols)


def pack(layout, values):
    """Pack beats into payload words: a numpy object array of Python ints, one per beat.

    ``values`` follows the layout: a dict of field values for a ``StructLayout``, an array of shape
    (beats, length) for an ``ArrayLayout`` of plain shapes, an array (beats,) for a plain shape.
    Values are masked to their width (two's complement for signed fields).
    """
    if isinstance(layout, data.StructLayout):
        words = [pack(field.shape, values[name]) << field.offset for name, field in layout]
    elif isinstance(layout, data.ArrayLayout):
        esize = Shape.cast(layout.elem_shape).width
        values = np.asarray(values)
        words = [pack(layout.elem_shape, values[:, i]) << (i * esize) for i in range(layout.length)]
    else:
        width = Shape.cast(layout).width
        values = np.asarray(values)
        values = values if values.dtype == object else values.astype(np.int64).astype(object)
        return values & ((1 << width) - 1)
    total = words[0]
    for w in words[1:]:
        total = total | w
    return total


def unpack_array(layout, words):
    """Unpack payload words of an ``ArrayLayout`` of plain shapes into a (beats, length) object
    array of Python ints (sign-extended for signed elements)."""
    shape = Shape.cast(layout.elem_shape)
    width, mask = shape.width, (1 << shape.width) - 1
    out = np.empty((len(words), layout.length), dtype=object)
    for i in range(layout.length):
        col = [(int(w) >> (i * width)) & mask for w in words]
        if shape.signed:
            col = [v - (1 << width) if v >> (width - 1) else v for v in col]
        out[:, i] = col
    return out
