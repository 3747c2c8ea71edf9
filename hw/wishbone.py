"""Wishbone B4 classic bus signature (amaranth-soc is not installable here; same member names).

Seen from the initiator: ``cyc``, ``stb``, ``we``, ``adr`` (a *word* address), ``dat_w``, ``sel``
(one enable per ``granularity`` bits) are outputs, ``dat_r`` and ``ack`` inputs. A target takes
``In(Signature(...))``. Classic cycles: the initiator holds ``cyc``, ``stb`` and the request until
the target raises ``ack`` for one cycle (as early as the request's first cycle; the CSR bridge's
``ack`` is registered, one cycle after the request at the earliest); ``dat_r`` is valid with
``ack``.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Signature", "DATA_WIDTHS"]

#: Allowed ``data_width`` values.
DATA_WIDTHS = tuple(8 << i for i in range(9))


class Signature(wiring.Signature):
    """Wishbone B4 classic, without the optional signals (err, rty, stall, lock, cti, bte).

    Arguments
    ---------
    addr_width : int
        Width of ``adr`` (word address), 0..64.
    data_width : int
        A power of two, 8..2048 (B4 names 8..64; the tile's memory port is a DRAM beat wide).
    granularity : int
        Bits per ``sel`` bit: 8, 16, 32 or 64, at most ``data_width``.

    Members
    -------
    cyc, stb, we : Out(1); adr : Out(addr_width); dat_w : Out(data_width); dat_r : In(data_width)
    sel : Out(data_width // granularity); ack : In(1)

    Raises
    ------
    TypeError, ValueError
        If an argument is not an integer, or out of range.
    """

    def __init__(self, *, addr_width, data_width=32, granularity=8):
        for name, value in (("addr_width", addr_width), ("data_width", data_width),
                            ("granularity", granularity)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 0 <= addr_width <= 64:
            raise ValueError(f"addr_width must be in 0..64, not {addr_width}")
        if data_width not in DATA_WIDTHS:
            raise ValueError(f"data_width must be a power of two in 8..2048, not {data_width}")
        if granularity not in (8, 16, 32, 64) or granularity > data_width:
            raise ValueError(f"granularity must be one of 8, 16, 32, 64 and at most data_width "
                             f"({data_width}), not {granularity}")
        self._addr_width, self._data_width, self._granularity = addr_width, data_width, granularity
        super().__init__({
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width),
            "dat_w": Out(data_width), "dat_r": In(data_width),
            "sel": Out(data_width // granularity), "ack": In(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    @property
    def granularity(self):
        return self._granularity

    def __eq__(self, other):
        return isinstance(other, Signature) and (self.addr_width, self.data_width, self.granularity) \
            == (other.addr_width, other.data_width, other.granularity)

    def __repr__(self):
        return (f"wishbone.Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"granularity={self.granularity})")
