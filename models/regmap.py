"""The tile's register map, defined once: what a driver sees on the tile's 32-bit register bus.

:func:`regmap` gives the table of one tile (a :class:`TileConfig` and its instruction memory
depth); everything else derives from it: the RTL bridge (``hw/tile_csr.py``) builds its storage,
read multiplexer and port wiring from the table, and ``sim/regmap_doc.py`` writes the markdown
reference (``docs/registers.md``) and the C header of the same table.

Registers are 32 bits wide at byte offsets that are multiples of 4; fields are bit ranges of a
register. Four blocks:

* **ID** (0x000, read only): magic, version, a CRC of the configuration's JSON and the
  configuration a driver needs (array, PE kind, widths, each memory window's depth and word bits).
* **Control and status** (0x080): ``CTRL.start``, ``LENGTH``, ``STATE`` and the status counters of
  docs/tile.md (valid while ``STATE.done``).
* **Memory window** (0x100): ``WIN_SEL`` picks a memory (:class:`Window`: the instruction memory
  or a scratchpad), ``WIN_ADDR`` a word of it, ``WIN_DATA0..`` stage one word (32 bits per
  register, least significant first) and ``WIN_CMD`` moves it: ``write`` stores the staged word at
  ``WIN_ADDR``, ``read`` loads the word at ``WIN_ADDR`` into the staging registers (readable by the
  next bus access), ``step`` adds 1 to ``WIN_ADDR`` afterwards. DRAM is not a window: it sits
  outside the tile behind its own memory port.
"""

import enum
import zlib
from dataclasses import dataclass

from .config import PE_KINDS, TileConfig
from .errors import MixpimError
from .isa import WORD_BITS, ErrorCode
from .units import Spad, Unit

__all__ = ["MAGIC", "VERSION", "REG_BITS", "REG_BYTES", "Access", "Window", "PeKind", "Field",
           "Register", "RegMap", "RegMapError", "regmap", "check_registers", "window_bits",
           "window_depth", "data_words"]

#: ``MAGIC`` register: "MXPT" in little-endian bytes.
MAGIC = int.from_bytes(b"MXPT", "little")
#: (major, minor) of this register map; a driver refuses another major.
VERSION = (1, 1)
REG_BITS = 32
REG_BYTES = REG_BITS // 8

ID_BASE = 0x000
CTRL_BASE = 0x080
BUSY_BASE = 0x0A0
WIN_BASE = 0x100
WIN_DATA_BASE = 0x110


class RegMapError(MixpimError, ValueError):
    """A register table is malformed (overlaps, fields outside the register, values too wide)."""


class Access(enum.Enum):
    """How the bus accesses a register."""
    RO = "RO"     # read only: writes are ignored
    RW = "RW"     # read and write storage
    W1P = "W1P"   # write 1 to a bit to pulse it for one cycle; reads as 0


#: Memories reachable through the window: the instruction memory, then each scratchpad.
Window = enum.IntEnum("Window", {"IMEM": 0, **{s.name: 1 + s for s in Spad}}, module=__name__)
Window.__doc__ = "WIN_SEL values: IMEM, then each scratchpad (named and ordered as Spad)."

#: PE.kind values: the index of the PE kind in :data:`~.config.PE_KINDS`.
PeKind = enum.IntEnum("PeKind", {k.upper().replace("-", "_"): i for i, k in enumerate(PE_KINDS)},
                      module=__name__)
PeKind.__doc__ = "PE.kind values, one per TileConfig.pe kind."


def window_bits(config, window):
    """Bits of one word of ``window``: an instruction; a scratchpad word as its DRAM bytes, except
    ACC: ``cols`` ``acc_bits``-bit accumulators (LSB first)."""
    window = Window(window)
    if window == Window.IMEM:
        return WORD_BITS
    spad = Spad[window.name]
    return config.cols * config.acc_bits if spad == Spad.ACC else 8 * config.word_bytes(spad)


def window_depth(config, imem_words, window):
    """Words of ``window``."""
    window = Window(window)
    return imem_words if window == Window.IMEM else config.spad_words(Spad[window.name])


def data_words(config):
    """Staging registers ``WIN_DATA0..``: enough 32-bit registers for the widest window word."""
    return -(-max(window_bits(config, w) for w in Window) // REG_BITS)


@dataclass(frozen=True)
class Field:
    """Bits ``lsb .. lsb + width - 1`` of a register.

    Members
    -------
    name : str
        Lower-case identifier, unique in its register.
    lsb, width : int
    doc : str
    enum : IntEnum class or None
        The values the field takes (documented and emitted into the C header).
    port : str or None
        The tile port the field reflects (RO) or drives (RW, W1P); ``index`` selects one element of
        an array port (``busy[unit]``).
    index : int or None
    value : int or None
        The constant an RO field without a port reads as.
    """
    name: str
    lsb: int
    width: int
    doc: str
    enum: type = None
    port: str = None
    index: int = None
    value: int = None

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One 32-bit register: ``name`` (upper-case identifier), byte ``offset``, :class:`Access`,
    ``doc``, ``fields`` (a tuple of :class:`Field`) and ``reset`` (RW: the value after reset)."""
    name: str
    offset: int
    access: Access
    doc: str
    fields: tuple
    reset: int = 0

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    @property
    def value(self):
        """An RO register of constant fields: the value it reads as (else ``None``)."""
        if self.access != Access.RO or any(f.value is None for f in self.fields):
            return None
        return sum(f.value << f.lsb for f in self.fields)


def _whole(name, offset, access, doc, *, port=None, index=None, value=None, width=REG_BITS,
           enum_=None, field=None):
    """A register of one field from bit 0 (named ``field``, default the register's name in lower case)."""
    f = Field(field or name.lower(), 0, width, doc, enum=enum_, port=port, index=index, value=value)
    return Register(name, offset, access, doc, (f,))


def _const(name, offset, doc, value=None, fields=None):
    if fields is None:
        return _whole(name, offset, Access.RO, doc, value=value)
    return Register(name, offset, Access.RO, doc, tuple(Field(n, lsb, w, d, value=v, enum=e)
                                                        for n, lsb, w, v, d, e in fields))


@dataclass(frozen=True)
class RegMap:
    """The register table of one tile: ``registers`` in offset order; ``config``, ``imem_words``.

    ``rm["NAME"]`` is a register; :attr:`size` the bytes of address space (a power of two) and
    :attr:`addr_bits` the width of a word address on the bus.
    """
    config: TileConfig
    imem_words: int
    registers: tuple

    def __getitem__(self, name):
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(f"no register {name!r}")

    @property
    def size(self):
        top = max(r.offset for r in self.registers) + REG_BYTES
        return 1 << (top - 1).bit_length()

    @property
    def addr_bits(self):
        return (self.size // REG_BYTES - 1).bit_length()

    def ports(self):
        """``{port: (access, width, elements)}`` of every tile port a field names (``elements``:
        1 + the largest ``index``, 0 for a plain port)."""
        out = {}
        for r in self.registers:
            for f in r.fields:
                if f.port is not None:
                    _, w, n = out.get(f.port, (r.access, f.width, 0))
                    out[f.port] = (r.access, f.width, n if f.index is None else max(n, f.index + 1))
        return out


def regmap(config, imem_words):
    """The :class:`RegMap` of the tile of ``config`` with ``imem_words`` instruction words.

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    ValueError
        If ``imem_words`` is not an integer in 1..65536.
    """
    if not isinstance(config, TileConfig):
        raise TypeError(f"config must be a TileConfig, not {config!r}")
    if isinstance(imem_words, bool) or not isinstance(imem_words, int) or not 1 <= imem_words <= 65536:
        raise ValueError(f"imem_words must be an integer in 1..65536, not {imem_words!r}")
    c = config
    err_bits = max(ErrorCode).bit_length()
    regs = [
        _const("MAGIC", 0x000, f"reads {MAGIC:#010x} (\"MXPT\"): a mixpim tile is here", MAGIC),
        _const("VERSION", 0x004, "register map version", fields=(
            ("minor", 0, 16, VERSION[1], "compatible additions", None),
            ("major", 16, 16, VERSION[0], "incompatible changes", None))),
        _const("CONFIG_ID", 0x008, "CRC-32 of the configuration's JSON (TileConfig.to_json): "
               "a program file's configuration must give the same", zlib.crc32(c.to_json().encode())),
        _const("ARRAY", 0x00C, "NPU array size", fields=(
            ("rows", 0, 16, c.rows, "array rows (tokens per tile)", None),
            ("cols", 16, 16, c.cols, "array columns (features per tile)", None))),
        _const("PE", 0x010, "processing elements", fields=(
            ("kind", 0, 8, PeKind[c.pe.upper().replace("-", "_")], "PE kind", PeKind),
            ("wbits", 8, 8, c.wbits, "widest weight code, bits", None),
            ("group", 16, 8, c.group, "quantization group size", None),
            ("scale_bits", 24, 8, c.scale_bits, "scale mantissa bits", None))),
        _const("NUMERICS", 0x014, "datapath widths and options", fields=(
            ("acc_bits", 0, 8, c.acc_bits, "accumulator bits", None),
            ("queue_depth", 8, 8, c.queue_depth, "instructions per unit queue", None),
            ("group_offset", 16, 1, int(c.group_offset), "per-group weight offsets", None),
            ("softmax_unit", 17, 1, int(c.softmax_unit), "VSOFT datapath (else VSOFT is "
             "ILLEGAL_OPCODE)", None),
            ("norm_unit", 18, 1, int(c.norm_unit), "VNORM datapath (else VNORM is ILLEGAL_OPCODE)",
             None),
            ("pim_unit", 19, 1, int(c.pim_unit), "PIM unit (else every PIM opcode is "
             "ILLEGAL_OPCODE)", None))),
        _const("WIN_DATA_WORDS", 0x018, "staging registers WIN_DATA0.. (32 bits each)", data_words(c)),
    ]
    for w in Window:
        base = 0x020 + 8 * w
        regs += [_const(f"WIN_{w.name}_DEPTH", base, f"words of window {w.name}",
                        window_depth(c, imem_words, w)),
                 _const(f"WIN_{w.name}_BITS", base + 4, f"bits of one word of window {w.name}",
                        window_bits(c, w))]
    regs += [
        Register("CTRL", CTRL_BASE, Access.W1P, "control", (
            Field("start", 0, 1, "begin a run from pc 0 (ignored while running): status registers, "
                  "tokens, queues and units are reset, memories kept", port="start"),)),
        _whole("LENGTH", CTRL_BASE + 0x4, Access.RW, "program length in instructions (pc == LENGTH "
               "is NO_HALT); writes are ignored while running", port="length", width=17),
        Register("STATE", CTRL_BASE + 0x8, Access.RO, "run state", (
            Field("running", 0, 1, "a run is in progress", port="running"),
            Field("done", 1, 1, "the run ended: the status registers are valid", port="done"),
            Field("nonfinite", 2, 1, "sticky: a GEMM met an FP16 inf/NaN activation (taken as 0)",
                  port="nonfinite"))),
        _whole("ERROR", CTRL_BASE + 0xC, Access.RO, "why the run ended (OK after HALT)",
               port="error", width=err_bits, enum_=ErrorCode, field="code"),
        _whole("ERROR_PC", CTRL_BASE + 0x10, Access.RO, "pc of the instruction ERROR names",
               port="error_pc"),
        _whole("CYCLES", CTRL_BASE + 0x14, Access.RO, "cycles of the run, from the first cycle "
               "after start", port="cycles"),
        _whole("DISPATCHED", CTRL_BASE + 0x18, Access.RO, "instructions retired by the dispatcher",
               port="dispatched"),
    ]
    regs += [_whole(f"BUSY_{u.name}", BUSY_BASE + REG_BYTES * u, Access.RO,
                    f"cycles the {u.name} unit was busy", port="busy", index=int(u), field="cycles")
             for u in Unit]
    regs += [
        _whole("WIN_SEL", WIN_BASE, Access.RW, "memory of the window", width=max(Window).bit_length(),
               enum_=Window, field="window"),
        _whole("WIN_ADDR", WIN_BASE + 0x4, Access.RW, "word address in the window's memory",
               field="addr"),
        Register("WIN_CMD", WIN_BASE + 0x8, Access.W1P, "window command (write before read; "
                 "writes are ignored while running)", (
                     Field("write", 0, 1, "store WIN_DATA* at WIN_ADDR of WIN_SEL"),
                     Field("read", 1, 1, "load the word at WIN_ADDR of WIN_SEL into WIN_DATA*; "
                           "ignored with write"),
                     Field("step", 2, 1, "then add 1 to WIN_ADDR"))),
    ]
    regs += [_whole(f"WIN_DATA{i}", WIN_DATA_BASE + REG_BYTES * i, Access.RW,
                    f"bits {32 * i}..{32 * i + 31} of the staged word", field="data")
             for i in range(data_words(c))]
    regs.sort(key=lambda r: r.offset)
    check_registers(regs)
    return RegMap(c, imem_words, tuple(regs))


def check_registers(registers):
    """``registers`` is a valid table, else :class:`RegMapError` naming the first problem:
    identifiers, alignment, unique names and offsets, fields inside the register and disjoint,
    constants and reset values that fit, and every field of an RO register a port or a constant."""
    names, offsets = set(), {}
    for r in registers:
        if not (r.name.isidentifier() and r.name.isupper()):
            raise RegMapError(f"register name must be an upper-case identifier, not {r.name!r}")
        if r.name in names:
            raise RegMapError(f"register {r.name} is defined twice")
        names.add(r.name)
        if not isinstance(r.access, Access):
            raise RegMapError(f"register {r.name}: access must be an Access, not {r.access!r}")
        if r.offset < 0 or r.offset % REG_BYTES:
            raise RegMapError(f"register {r.name}: offset {r.offset:#x} is not a non-negative "
                              f"multiple of {REG_BYTES}")
        if r.offset in offsets:
            raise RegMapError(f"registers {offsets[r.offset]} and {r.name} share offset {r.offset:#x}")
        offsets[r.offset] = r.name
        if not r.fields:
            raise RegMapError(f"register {r.name} has no fields")
        used, fnames = 0, set()
        for f in r.fields:
            where = f"register {r.name} field {f.name}"
            if not (f.name.isidentifier() and f.name.islower()) or f.name in fnames:
                raise RegMapError(f"{where}: a field name must be a unique lower-case identifier")
            fnames.add(f.name)
            if f.width < 1 or f.lsb < 0 or f.lsb + f.width > REG_BITS:
                raise RegMapError(f"{where}: bits {f.lsb}..{f.lsb + f.width - 1} leave the "
                                  f"{REG_BITS}-bit register")
            if used & f.mask:
                raise RegMapError(f"{where}: bits {f.lsb}..{f.lsb + f.width - 1} overlap another field")
            used |= f.mask
            if f.value is not None and (r.access != Access.RO or f.port is not None):
                raise RegMapError(f"{where}: only a read-only field without a port has a constant value")
            if f.value is not None and not 0 <= f.value < 1 << f.width:
                raise RegMapError(f"{where}: value {f.value} does not fit {f.width} bits")
            if r.access == Access.RO and f.value is None and f.port is None:
                raise RegMapError(f"{where}: a read-only field needs a port or a constant value")
        if r.reset and (r.access != Access.RW or r.reset & ~used):
            raise RegMapError(f"register {r.name}: reset {r.reset:#x} must be 0 or lie in the "
                              f"fields of an RW register")
