"""Bit widths of the arrays' integers: one definition of the activation, partial-sum and
accumulator widths, shared by every array model and by :class:`~mixpim.models.config.TileConfig`.

Every array (MixPE, baseline, BitMoD) multiplies an activation value ``a_val`` by a small signed
weight value, sums a group of such products into a partial sum ``I`` (at most ``psum_max`` in
magnitude), multiplies ``I`` by an unsigned ``scale_bits`` mantissa and accumulates ``2**acc_headroom``
such scaled sums::

    act_val_max  = 128                      INT8 activations
                 = 2047 << 29               FP16 activations (significand << exp - 1)
    scaled_bits  = signed_bits(psum_max * (2**scale_bits - 1))
    acc_bits     = scaled_bits + acc_headroom

The MixPE and baseline arrays multiply by the centered weight ``q - z`` (at most ``2**wbits - 1``),
so their ``psum_max`` is ``group * act_val_max * (2**wbits - 1)`` (:func:`array_psum_max`).

With group offsets (``TileConfig.group_offset``) every group adds ``om * A``: a signed
``offset_bits`` offset mantissa times the group sum ``A`` of the token's activations (at most
``group * act_val_max``), so a group's term is bounded by the sum of both maxima::

    offset_bits  = scale_bits + GROUP_OFFSET_EXTRA_BITS
    term_bits    = signed_bits(psum_max * (2**scale_bits - 1) + group * act_val_max * 2**(offset_bits - 1))
    acc_bits     = term_bits + acc_headroom

This module imports nothing from the array models, so the configuration can derive
``acc_bits`` without importing them.
"""

from .bitmod_dtypes import term_sum_max
from .numerics import FP16_SHIFT_MAX, FP16_SIG_MAX

__all__ = ["signed_bits", "act_bits", "act_val_max", "scaled_bits", "acc_bits", "centered_weight_max",
           "array_psum_max", "array_acc_bits", "AccumulatorWidths", "GROUP_OFFSET_EXTRA_BITS",
           "offset_bits", "array_offset_max", "array_term_max", "bitmod_psum_max"]

#: Bits of a group-offset mantissa above the scale mantissa's: an offset of up to ``2**7`` times
#: the row's largest scale fits at the row's exponent (SmolLM2's Q4_1 minima reach 14.6 times).
GROUP_OFFSET_EXTRA_BITS = 8


def signed_bits(maxmag):
    """Bits of a two's complement number holding -maxmag .. maxmag."""
    return int(maxmag).bit_length() + 1


def act_bits(act):
    """Width of an activation as it travels the rows: INT8 8, FP16 12 (the signed significand)."""
    return 8 if act == "int8" else 12


def act_val_max(act):
    """Largest ``|a_val|`` of activation format ``act``: 128 for INT8, ``2047 << 29`` for FP16."""
    return 128 if act == "int8" else FP16_SIG_MAX << FP16_SHIFT_MAX


def scaled_bits(psum_max, scale_bits):
    """Width of a group partial sum (at most ``psum_max``) times a ``scale_bits`` mantissa."""
    return signed_bits(psum_max * ((1 << scale_bits) - 1))


def acc_bits(psum_max, scale_bits, acc_headroom):
    """Width of an accumulator summing ``2**acc_headroom`` scaled group partial sums."""
    return scaled_bits(psum_max, scale_bits) + acc_headroom


def centered_weight_max(wbits):
    """Largest ``|q - z|`` of ``wbits``-bit codes and zero points: ``2**wbits - 1``."""
    return (1 << wbits) - 1


def array_psum_max(group, act, wbits):
    """Largest ``|I|`` of the MixPE and baseline arrays: ``group * act_val_max * (2**wbits - 1)``."""
    return group * act_val_max(act) * centered_weight_max(wbits)


def bitmod_psum_max(group, act, types):
    """Largest ``|I|`` of the BitMoD array with the weight ``types``: ``group * act_val_max`` times
    the largest partial sum of one weight's terms (:func:`~.bitmod_dtypes.term_sum_max`)."""
    return group * act_val_max(act) * term_sum_max(types)


def offset_bits(scale_bits):
    """Width of a signed group-offset mantissa: ``scale_bits + GROUP_OFFSET_EXTRA_BITS``."""
    return scale_bits + GROUP_OFFSET_EXTRA_BITS


def array_offset_max(group, act, scale_bits):
    """Largest ``|om * A|``: ``2**(offset_bits - 1)`` (the most negative mantissa) times the largest
    activation group sum ``group * act_val_max``."""
    return (1 << (offset_bits(scale_bits) - 1)) * group * act_val_max(act)


def array_term_max(group, act, wbits, scale_bits, group_offset=False):
    """Largest ``|sm * I (+ om * A)|``, one group's contribution to an accumulator."""
    top = array_psum_max(group, act, wbits) * ((1 << scale_bits) - 1)
    return top + (array_offset_max(group, act, scale_bits) if group_offset else 0)


def array_acc_bits(group, act, wbits, scale_bits, acc_headroom, group_offset=False):
    """Accumulator width of the MixPE and baseline arrays (``TileConfig.acc_bits``, ``ArrayParams.acc_bits``):
    one group's term (:func:`array_term_max`) summed ``2**acc_headroom`` times."""
    return signed_bits(array_term_max(group, act, wbits, scale_bits, group_offset)) + acc_headroom


class AccumulatorWidths:
    """Widths every array derives the same way from its activation format and its largest group
    partial sum.

    Needs ``act``, ``psum_max``, ``scale_bits`` and ``acc_headroom`` on the class it is mixed into.
    """

    @property
    def act_bits(self):
        return act_bits(self.act_format)

    @property
    def act_val_max(self):
        """Largest |a_val|: 128 for INT8, 2047 << 29 for FP16."""
        return act_val_max(self.act_format)

    @property
    def psum_bits(self):
        return signed_bits(self.psum_max)

    @property
    def scaled_bits(self):
        return scaled_bits(self.psum_max, self.scale_bits)

    @property
    def acc_bits(self):
        return acc_bits(self.psum_max, self.scale_bits, self.acc_headroom)
