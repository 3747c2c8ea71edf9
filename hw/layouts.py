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
    and scale mantissa of column j (zero and scale constant within a group); ``last``: last beat
    of the tile.
    """
    return data.StructLayout({
        "act": data.ArrayLayout(stream_act_shape(p.act), p.rows),
        "code": data.ArrayLayout(unsigned(p.wbits), p.cols),
        "zero": data.ArrayLayout(unsigned(p.wbits), p.cols),
        "scale": data.ArrayLayout(unsigned(p.scale_bits), p.cols),
        "last": 1,
    })


def array_output_layout(p):
    """One output beat: the accumulators of one token row, one per column."""
    return data.ArrayLayout(signed(p.acc_bits), p.cols)


def _fields(layout, prefix=()):
    """(path, offset, width, signed) of every leaf field of a layout."""
    if isinstance(layout, data.StructLayout):
        for name, field in layout:
            for path, off, width, sgn in _fields(field.shape, prefix + (name,)):
                yield path, field.offset + off, width, sgn
    elif isinstance(layout, data.ArrayLayout):
        esize = Shape.cast(layout.elem_shape).width
        for i in range(layout.length):
            for path, off, width, sgn in _fields(layout.elem_shape, prefix + (i,)):
                yield path, i * esize + off, width, sgn
    else:
        shape = Shape.cast(layout)
        yield prefix, 0, shape.width, shape.signed


def pack(layout, fields):
    """Pack beats into payload integers (a numpy object array, one Python int per beat).

    ``fields`` maps a top-level field name to an array of shape (beats,) or (beats, length) for
    array fields; values are masked to their width (two's complement for signed fields).
    """
    total = None
    for path, off, width, _ in _fields(layout):
        vals = fields[path[0]]
        vals = vals[:, path[1]] if len(path) > 1 else vals
        vals = (vals.astype(object) & ((1 << width) - 1)) << off
        total = vals if total is None else total | vals
    return total


def unpack_array(layout, words):
    """Unpack payload integers of an ``ArrayLayout`` of signed/unsigned elements: (beats, length)
    numpy object array of Python ints."""
    out = np.empty((len(words), layout.length), dtype=object)
    for path, off, width, sgn in _fields(layout):
        col = [(w >> off) & ((1 << width) - 1) for w in words]
        if sgn:
            col = [v - (1 << width) if v >> (width - 1) else v for v in col]
        out[:, path[0]] = col
    return out
