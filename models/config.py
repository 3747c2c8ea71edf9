"""Hardware configuration of a mixpim tile: one frozen, validated dataclass and its named presets.

The same :class:`TileConfig` drives the RTL generators, the compiler and the golden model. It
round-trips through JSON and TOML; unknown keys and out-of-range values are rejected with a
:class:`~mixpim.models.errors.ConfigError` that names the field.

Besides the array (``rows`` .. ``acc_headroom``) a configuration fixes the tile around it
(docs/tile.md): the depth of every unit queue, the depth of every scratchpad in words, and the
geometry and timing of DRAM. The byte size of each scratchpad's word *as stored in DRAM* (what a
LOAD or STORE moves per word, and the alignment of its DRAM addresses) is derived here:

=========  ===========================================================================
``ACT``    ``rows`` activations: INT8 one byte each, FP16 two bytes each (bit pattern, LE)
``WGT``    ``cols`` 4-bit weight codes, two per byte, column ``j`` in byte ``j // 2``,
           low nibble for even ``j``; ``ceil(cols / 2)`` bytes
``META``   ``cols`` entries of ``meta_entry_bytes``: scale mantissa (uint16 LE), zero point
           (uint8; the type selector on BitMoD tiles), and with ``group_offset`` the offset
           mantissa (int24 LE); 3 or 6 bytes
``ACC``    ``cols`` accumulators, each two's complement in ``ceil(acc_bits / 8)`` bytes LE
``VPARAM`` 4 bytes, one column's (or token's) fixed-point multiplier, or 4 GELU table entries
=========  ===========================================================================
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass

from .errors import ConfigError, parse_problem
from .isa import UNIT_OF, Opcode, reach
from .units import Spad, Unit
from .bitmod_dtypes import MIXTURES, cycles_per_slice
from .widths import acc_bits as _acc_bits, array_acc_bits, bitmod_psum_max, offset_bits

__all__ = ["PE_KINDS", "GROUP_SIZES", "PIM_MODES", "SPAD_NAMES", "VPARAM_WORD_BYTES", "VPARAM_LUT_WORDS",
           "META_ENTRY_BYTES", "META_BYTE2", "META_OFFSET_BYTES", "TileConfig", "PRESETS", "preset"]

#: Processing-element kinds the array can be built from. ``mixpe-*`` are the shift-and-add PEs,
#: ``baseline-*`` the conventional dequantize-then-multiply PEs they are compared against,
#: ``bitmod-*`` the bit-serial BitMoD PEs (docs/bitmod.md; weights of the BitMoD mixture of
#: ``wbits`` 3 or 4, no zero points).
PE_KINDS = ("mixpe-w4a8", "mixpe-w4a16", "baseline-w4a8", "baseline-w4a16", "bitmod-w4a8", "bitmod-w4a16")

#: Weight quantization group sizes (elements of K sharing one scale and zero point).
GROUP_SIZES = (32, 64, 128)

MAX_DIM = 256

#: Row-buffer modes of the PIM banks (docs/pim.md).
PIM_MODES = ("dual", "single")

#: Scratchpads in :class:`~mixpim.models.units.Spad` order (names equal the ``Spad`` member names).
SPAD_NAMES = tuple(s.name for s in Spad)

#: Bytes of one VPARAM word (docs/tile.md, "Vector unit").
VPARAM_WORD_BYTES = 4
#: VPARAM words 0..63 hold the 256-entry GELU table, four int8 entries per word.
VPARAM_LUT_WORDS = 256 // VPARAM_WORD_BYTES
#: Bytes of one column's META entry: scale mantissa (uint16) and zero point (uint8); on BitMoD
#: tiles the zero point's byte holds the group's type selector instead (:data:`META_BYTE2`).
META_ENTRY_BYTES = 3
#: What byte 2 of a META entry holds, per array family: MixPE and the baseline a zero point (the
#: array takes its low ``wbits`` bits), BitMoD the type selector (its low
#: :data:`~mixpim.models.bitmod_gemm.SEL_BITS` bits index the mixture ``MIXTURES[wbits]``).
META_BYTE2 = {"mixpe": "zero", "baseline": "zero", "bitmod": "sel"}
#: Bytes a group offset adds to a META entry (with ``group_offset``): a two's complement int24,
#: which holds every offset mantissa (``offset_bits`` = ``scale_bits`` + 8 <= 24).
META_OFFSET_BYTES = 3

#: Largest scratchpad depth: the reach of the scratchpad address fields (every one of them).
MAX_SPAD_WORDS = reach(Opcode.LOAD, "spad_addr") + 1
assert all(reach(op, f"{name}_addr") + 1 == MAX_SPAD_WORDS for op, name in (
    (Opcode.GEMM, "act"), (Opcode.GEMM, "wgt"), (Opcode.GEMM, "meta"), (Opcode.GEMM, "acc"),
    (Opcode.VEC, "acc"), (Opcode.VEC, "act"), (Opcode.VEC, "res"), (Opcode.VEC, "param")))
#: Largest PIM global buffer (bytes per channel): the reach of ``gaddr``.
MAX_PIM_GBUF_BYTES = reach(Opcode.PIM_GBUF, "gaddr") + 1
#: Most result registers per bank: the reach of ``res``.
MAX_PIM_RES_REGS = reach(Opcode.PIM_GEMV, "res") + 1
#: Most channels and banks per channel: the reach of ``ch`` and ``bank``.
MAX_CHANNELS = reach(Opcode.PIM_GEMV, "ch") + 1
MAX_BANKS = reach(Opcode.PIM_GEMV, "bank") + 1
#: Largest DRAM: the reach of the ``dram_addr`` field.
MAX_DRAM_BYTES = reach(Opcode.LOAD, "dram_addr") + 1


#: Fields serialized only when they differ from these values (they came after configurations
#: were first written to files).
_OPTIONAL_FIELDS = {"group_offset": False, "vec_passes": 1, "softmax_unit": True, "norm_unit": True,
                    "pim_unit": True}


def check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


def _check_pow2(name, value, lo, hi):
    if (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
            or value & (value - 1)):
        raise ConfigError(f"{name} must be a power of two in {lo}..{hi}, not {value!r}")


@dataclass(frozen=True)
class TileConfig:
    """Configuration of one tile.

    Arguments
    ---------
    rows, cols : int
        NPU array size, 1..256 each. ``rows`` must not exceed ``group`` (the array's column result
        bus carries one group result per cycle; see docs/mixpe.md).
    pe : str
        One of :data:`PE_KINDS`. The ``a8``/``a16`` suffix selects INT8 or FP16 activations.
        A ``bitmod-*`` tile needs ``wbits`` 3 or 4 (its weights are the BitMoD mixture of that
        width), no ``group_offset``, and ``rows * scale_bits <= group * terms`` (:attr:`terms`
        cycles per beat; each column's bit-serial dequantizer spends ``scale_bits`` cycles per
        row of a group, docs/bitmod.md).
    wbits : int
        Widest weight code the PEs accept, 2..4. Narrower codes run on the same hardware
        (MixPE and baseline; a BitMoD tile's types have exactly ``wbits`` bits).
    group : int
        Weight quantization group size along K, one of :data:`GROUP_SIZES`.
    scale_bits : int
        Width of the unsigned per-group scale mantissa, 4..16.
    acc_headroom : int
        Extra accumulator bits above one scaled group result, 1..24: the array sums up to
        ``2**acc_headroom`` groups (K up to ``group * 2**acc_headroom``) without overflow.
    group_offset : bool
        Weights ``w = s (q - z) + o`` with a per-group offset ``o`` (Q4_1's minimum): the array adds
        ``om[n, g] * A[m, g]``, the offset mantissa times the group sum of the token's activations
        (docs/numerics.md), and each META entry carries the offset. Default False; serialized
        only when True, so configurations without it read and write as before.
    queue_depth : int
        Instructions each unit queue holds, 1..64 (docs/tile.md, "Units").
    vec_passes : int
        Passes the vector unit's per-token datapaths make over a column's ``rows`` tokens, a
        power of two that divides ``rows``: they have :attr:`vec_lanes` = ``rows / vec_passes``
        lanes, and each column slot of a VEC, each column of a VNORM NORM and each packed word a
        VSOFT NORM writes takes ``vec_passes`` times the cycles
        (:func:`~mixpim.models.tile_timing.vec_cycles`, ``vnorm_cycles``, ``vsoft_cycles``).
        Default 1 (a lane per token); more passes trade vector-unit cycles for logic on FPGAs.
        Serialized only when not 1.
    softmax_unit, norm_unit : bool
        Whether the vector unit has its softmax (VSOFT) and norm (VNORM) datapaths. Without one,
        its opcode is illegal on the tile (``ILLEGAL_OPCODE`` at dispatch,
        :func:`~mixpim.models.tile_timing.check_instruction`) and the compiler refuses programs
        that need it: an FPGA trades them for logic (without the softmax datapath the VPARAM
        scratchpad needs no ``cols``-word read port either). Default True; serialized only when
        False.
    act_words, wgt_words, meta_words, acc_words, vparam_words : int
        Scratchpad depths in words, 1..65536 (the reach of a 16-bit scratchpad address).
        ``act_words`` and ``wgt_words`` hold at least one group (a GEMM streams whole groups),
        ``acc_words`` at least one output tile (``rows`` words), ``vparam_words`` at least the
        GELU table, the token multipliers and one VEC's column multipliers
        (``64 + rows + cols`` words). The defaults satisfy these rules for every legal array, so
        a configuration that names only array fields is valid.
    dram_channels : int
        DRAM channels, a power of two in 1..64; each has its own banks, command and data bus.
    dram_banks : int
        Banks per channel, a power of two in 1..64.
    dram_bank_groups : int
        Bank groups per channel, a power of two in 1..``dram_banks``; bank ``k`` is in group
        ``k % dram_bank_groups`` (column commands to one group are ``t_ccd_l`` apart).
    dram_rows : int
        Rows per bank, 1..16777216.
    dram_row_bytes : int
        Bytes per DRAM row (the row buffer), a power of two in 16..65536.
    dram_bus_bytes : int
        Bytes per data-bus beat (one column command), a power of two in 1..256, at most
        ``dram_row_bytes``. DRAM holds ``dram_channels * dram_banks * dram_rows *
        dram_row_bytes`` bytes, at most 2**32.
    t_rcd, t_rp, t_cl : int
        Activate-to-column, precharge and CAS latencies in cycles, 0..255.
    t_ras : int
        Row active time: least cycles from an activation to the precharge of that row, 0..255.
    t_faw : int
        Four-activation window: a channel's fifth activation comes at least ``t_faw`` cycles
        after the fourth-last one, 0..255.
    t_ccd_s, t_ccd_l : int
        Column-to-column delay in one channel, between different bank groups (short) and within
        one bank group (long), 1..255, ``t_ccd_s <= t_ccd_l``. A channel's peak is one beat per
        ``t_ccd_s`` cycles.
    pim_mode : str
        ``"dual"``: each bank has a second row buffer for PIM, so PIM compute and the DMA's
        accesses proceed at once; ``"single"``: one row buffer, PIM and the DMA block each other
        (docs/pim.md).
    pim_row_buffers : int
        PIM row buffers per bank, 1 or 2 (2 only in ``pim_mode`` "dual"): with 2, even rows open
        into one and odd rows into the other (two subarray groups), so a ``PIM_ACT`` can open the
        next row while the MAC lanes compute on the current one (docs/pim.md).
    pim_lanes : int
        MAC lanes per bank (INT8 x INT8 multipliers; bytes of the row one MAC step reads), a
        power of two in 1..64, at most ``dram_bus_bytes``.
    pim_gbuf_bytes : int
        Bytes of each channel's global buffer (the PIM input vector), a power of two in
        16..4096.
    pim_res_regs : int
        Result registers (32-bit accumulators) per bank, 1..256.
    pim_unit : bool
        Whether the tile has its PIM unit: the front end that hands PIM instructions to the PIM
        banks, and the banks' ports on the ACT and ACC scratchpads (a read port of ACT, a write
        port of ACC: 2 of ACT's 8 block-RAM copies, 3 of ACC's 12). Without it every PIM opcode
        is illegal on the tile (``ILLEGAL_OPCODE`` at dispatch) and the compiler refuses
        programs with PIM instructions: a tile on an FPGA board, whose DRAM has no PIM banks,
        leaves it out (decision 22). The ``pim_*`` fields above still describe the memory
        model. Default True; serialized only when False.

    Raises
    ------
    ConfigError
        If any field is out of range or fields are inconsistent (fields are checked in
        declaration order, then the cross-field rules).
    """

    rows: int = 4
    cols: int = 4
    pe: str = "mixpe-w4a8"
    wbits: int = 4
    group: int = 32
    scale_bits: int = 16
    acc_headroom: int = 12
    group_offset: bool = False
    queue_depth: int = 4
    vec_passes: int = 1
    softmax_unit: bool = True
    norm_unit: bool = True
    act_words: int = 4096
    wgt_words: int = 4096
    meta_words: int = 256
    acc_words: int = 512
    vparam_words: int = 1024
    dram_channels: int = 1
    dram_banks: int = 4
    dram_bank_groups: int = 1
    dram_rows: int = 1024
    dram_row_bytes: int = 1024
    dram_bus_bytes: int = 8
    t_rcd: int = 3
    t_rp: int = 3
    t_cl: int = 2
    t_ras: int = 0
    t_faw: int = 0
    t_ccd_s: int = 1
    t_ccd_l: int = 1
    pim_mode: str = "dual"
    pim_row_buffers: int = 1
    pim_lanes: int = 4
    pim_gbuf_bytes: int = 256
    pim_res_regs: int = 16
    pim_unit: bool = True

    def __post_init__(self):
        check_int("rows", self.rows, 1, MAX_DIM)
        check_int("cols", self.cols, 1, MAX_DIM)
        if self.pe not in PE_KINDS:
            raise ConfigError(f"pe must be one of {', '.join(PE_KINDS)}, not {self.pe!r}")
        check_int("wbits", self.wbits, 2, 4)
        if isinstance(self.group, bool) or not isinstance(self.group, int) or self.group not in GROUP_SIZES:
            raise ConfigError(f"group must be one of {GROUP_SIZES}, not {self.group!r}")
        check_int("scale_bits", self.scale_bits, 4, 16)
        check_int("acc_headroom", self.acc_headroom, 1, 24)
        for name in ("group_offset", "softmax_unit", "norm_unit", "pim_unit"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.rows > self.group:
            raise ConfigError(f"rows ({self.rows}) must not exceed group ({self.group}): a column "
                              f"of the array delivers one group result per cycle")
        if self.family == "bitmod":
            self._check_bitmod()
        check_int("queue_depth", self.queue_depth, 1, 64)
        _check_pow2("vec_passes", self.vec_passes, 1, MAX_DIM)
        for name in ("act_words", "wgt_words", "meta_words", "acc_words", "vparam_words"):
            check_int(name, getattr(self, name), 1, MAX_SPAD_WORDS)
        _check_pow2("dram_channels", self.dram_channels, 1, MAX_CHANNELS)
        _check_pow2("dram_banks", self.dram_banks, 1, MAX_BANKS)
        _check_pow2("dram_bank_groups", self.dram_bank_groups, 1, MAX_BANKS)
        check_int("dram_rows", self.dram_rows, 1, 1 << 24)
        _check_pow2("dram_row_bytes", self.dram_row_bytes, 16, 65536)
        _check_pow2("dram_bus_bytes", self.dram_bus_bytes, 1, 256)
        for name in ("t_rcd", "t_rp", "t_cl", "t_ras", "t_faw"):
            check_int(name, getattr(self, name), 0, 255)
        for name in ("t_ccd_s", "t_ccd_l"):
            check_int(name, getattr(self, name), 1, 255)
        if self.pim_mode not in PIM_MODES:
            raise ConfigError(f"pim_mode must be one of {', '.join(PIM_MODES)}, not {self.pim_mode!r}")
        check_int("pim_row_buffers", self.pim_row_buffers, 1, 2)
        _check_pow2("pim_lanes", self.pim_lanes, 1, 64)
        _check_pow2("pim_gbuf_bytes", self.pim_gbuf_bytes, 16, MAX_PIM_GBUF_BYTES)
        check_int("pim_res_regs", self.pim_res_regs, 1, MAX_PIM_RES_REGS)
        # cross-field rules
        for name in ("act_words", "wgt_words"):
            if getattr(self, name) < self.group:
                raise ConfigError(f"{name} ({getattr(self, name)}) must hold at least one group "
                                  f"({self.group} words): a GEMM streams whole groups")
        if self.rows % self.vec_passes:
            raise ConfigError(f"vec_passes ({self.vec_passes}) must divide rows ({self.rows}): "
                              f"each pass covers rows / vec_passes token lanes")
        if self.acc_words < self.rows:
            raise ConfigError(f"acc_words ({self.acc_words}) must hold at least one output tile "
                              f"(rows = {self.rows} words)")
        need = VPARAM_LUT_WORDS + self.rows + self.cols
        if self.vparam_words < need:
            raise ConfigError(f"vparam_words ({self.vparam_words}) must hold the GELU table "
                              f"({VPARAM_LUT_WORDS} words), the token multipliers (rows = "
                              f"{self.rows}) and one VEC's column multipliers (cols = {self.cols}): "
                              f"at least {need}")
        if self.dram_bank_groups > self.dram_banks:
            raise ConfigError(f"dram_bank_groups ({self.dram_bank_groups}) must not exceed "
                              f"dram_banks ({self.dram_banks})")
        if self.t_ccd_s > self.t_ccd_l:
            raise ConfigError(f"t_ccd_s ({self.t_ccd_s}) must not exceed t_ccd_l ({self.t_ccd_l})")
        if self.pim_row_buffers > 1 and self.pim_mode != "dual":
            raise ConfigError(f"pim_row_buffers ({self.pim_row_buffers}) must be 1 in pim_mode "
                              f"{self.pim_mode!r}: PIM shares the banks' one row buffer")
        if self.pim_lanes > self.dram_bus_bytes:
            raise ConfigError(f"pim_lanes ({self.pim_lanes}) must not exceed dram_bus_bytes "
                              f"({self.dram_bus_bytes}): a MAC step reads one bus word of the row")
        if self.dram_bus_bytes > self.dram_row_bytes:
            raise ConfigError(f"dram_bus_bytes ({self.dram_bus_bytes}) must not exceed "
                              f"dram_row_bytes ({self.dram_row_bytes})")
        if self.dram_bytes > MAX_DRAM_BYTES:
            raise ConfigError(f"DRAM size dram_channels * dram_banks * dram_rows * dram_row_bytes = "
                              f"{self.dram_bytes} must not exceed 2**32 bytes (the reach of "
                              f"dram_addr)")

    def _check_bitmod(self):
        if self.wbits not in MIXTURES:
            raise ConfigError(f"wbits must be 3 or 4 on a {self.pe} tile (the BitMoD mixtures), "
                              f"not {self.wbits}")
        if self.group_offset:
            raise ConfigError(f"group_offset must be false on a {self.pe} tile: BitMoD weights "
                              f"have no group offsets")
        if self.rows * self.scale_bits > self.group * self.terms:
            raise ConfigError(
                f"rows * scale_bits ({self.rows} * {self.scale_bits} = {self.rows * self.scale_bits}) "
                f"must not exceed group * terms ({self.group} * {self.terms} = "
                f"{self.group * self.terms}) on a {self.pe} tile: each column's bit-serial "
                f"dequantizer spends scale_bits cycles on each row of a group")

    @property
    def act_format(self):
        """Activation format of the PE kind: ``"int8"`` or ``"fp16"``."""
        return "fp16" if self.pe.endswith("a16") else "int8"

    @property
    def family(self):
        """``"mixpe"``, ``"baseline"`` or ``"bitmod"``."""
        return self.pe.split("-")[0]

    @property
    def weight_types(self):
        """BitMoD tiles: the names of the types a group selects from, in selector order (the
        mixture ``MIXTURES[wbits]``); other tiles: None (unsigned codes with zero points)."""
        return MIXTURES[self.wbits] if self.family == "bitmod" else None

    @property
    def terms(self):
        """Array cycles per beat: 1, or on BitMoD tiles the bit-serial PE's cycles per weight
        (:func:`~mixpim.models.bitmod_dtypes.cycles_per_slice`, 2 for both mixtures)."""
        types = self.weight_types
        return 1 if types is None else max(cycles_per_slice(t) for t in types)

    @property
    def vec_lanes(self):
        """Lanes of the vector unit's per-token datapaths: ``rows / vec_passes`` tokens a
        cycle."""
        return self.rows // self.vec_passes

    # -- derived sizes -------------------------------------------------------------------------

    @property
    def acc_bits(self):
        """Width of one accumulator (two's complement): :func:`~mixpim.models.widths.array_acc_bits`,
        as :class:`~mixpim.models.mixpe.ArrayParams` derives it (BitMoD: from
        :func:`~mixpim.models.widths.bitmod_psum_max`, as ``BitmodParams``)."""
        if self.family == "bitmod":
            return _acc_bits(bitmod_psum_max(self.group, self.act_format, self.weight_types), self.scale_bits,
                            self.acc_headroom)
        return array_acc_bits(self.group, self.act_format, self.wbits, self.scale_bits, self.acc_headroom,
                              self.group_offset)

    @property
    def offset_bits(self):
        """Width of a signed group-offset mantissa as the array takes it (the low bits of the META
        entry's int24): ``scale_bits + 8``; meaningful with ``group_offset``."""
        return offset_bits(self.scale_bits)

    @property
    def meta_entry_bytes(self):
        """Bytes of one column's META entry: :data:`META_ENTRY_BYTES`, plus
        :data:`META_OFFSET_BYTES` with ``group_offset``. The one definition of the entry size."""
        return META_ENTRY_BYTES + (META_OFFSET_BYTES if self.group_offset else 0)

    @property
    def act_word_bytes(self):
        """Bytes of one ACT word in DRAM: ``rows`` INT8 bytes or ``rows`` FP16 (2-byte) values."""
        return self.rows * (2 if self.act_format == "fp16" else 1)

    @property
    def wgt_word_bytes(self):
        """Bytes of one WGT word in DRAM: ``cols`` 4-bit codes, two per byte."""
        return (self.cols + 1) // 2

    @property
    def meta_word_bytes(self):
        """Bytes of one META word in DRAM: ``cols`` entries of :attr:`meta_entry_bytes`."""
        return self.meta_entry_bytes * self.cols

    @property
    def acc_elem_bytes(self):
        """Bytes of one accumulator in DRAM: ``acc_bits`` rounded up to whole bytes."""
        return -(-self.acc_bits // 8)

    @property
    def acc_word_bytes(self):
        """Bytes of one ACC word (a token row of ``cols`` accumulators) in DRAM."""
        return self.cols * self.acc_elem_bytes

    @property
    def vparam_word_bytes(self):
        return VPARAM_WORD_BYTES

    def word_bytes(self, spad):
        """Bytes in DRAM of one word of scratchpad ``spad`` (a ``Spad``, its value or its name)."""
        if type(spad) is Spad:
            return getattr(self, _WORD_BYTES_FIELD[spad])
        return getattr(self, f"{_spad_name(spad).lower()}_word_bytes")

    def spad_words(self, spad):
        """Depth in words of scratchpad ``spad`` (a ``Spad``, its value or its name)."""
        if type(spad) is Spad:
            return getattr(self, _WORDS_FIELD[spad])
        return getattr(self, f"{_spad_name(spad).lower()}_words")

    @property
    def vparam_token_base(self):
        """First VPARAM word of the per-token multipliers (``rows`` words, after the GELU table)."""
        return VPARAM_LUT_WORDS

    @property
    def vparam_param_base(self):
        """First VPARAM word a VEC's ``param_addr`` may name (after the table and token words)."""
        return VPARAM_LUT_WORDS + self.rows

    @property
    def dram_bytes(self):
        """DRAM size in bytes."""
        return self.dram_channels * self.dram_banks * self.dram_rows * self.dram_row_bytes

    def missing_datapath(self, op):
        """Why this tile cannot run opcode ``op`` (a VSOFT without ``softmax_unit``, a VNORM
        without ``norm_unit``, a PIM instruction without ``pim_unit``), or None."""
        for opcode, name, what in ((Opcode.VSOFT, "softmax_unit", "softmax"),
                                   (Opcode.VNORM, "norm_unit", "norm")):
            if op == opcode and not getattr(self, name):
                return f"{op.name} needs the vector unit's {what} datapath; this tile has {name} = false"
        if UNIT_OF.get(op) == Unit.PIM and not self.pim_unit:
            return f"{op.name} needs the PIM unit; this tile has pim_unit = false"
        return None

    def in_pim_mode(self, mode):
        """This tile with PIM row-buffer mode ``mode`` ("dual" or "single"; single mode has no
        PIM row buffers of its own, so ``pim_row_buffers`` becomes 1)."""
        keep = self.pim_row_buffers if mode == "dual" else 1
        return self.replace(pim_mode=mode, pim_row_buffers=keep)

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self):
        """The fields by name, in declaration order; ``group_offset`` only when True,
        ``vec_passes`` only when not 1, ``softmax_unit`` and ``norm_unit`` only when False (so
        every configuration without them serializes, and program files hash, as before they
        existed)."""
        d = dataclasses.asdict(self)
        for name, default in _OPTIONAL_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ConfigError(f"a tile configuration must be a table of fields, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration field(s) {', '.join(unknown)}; "
                              f"known fields are {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(_parse(text, "JSON"))

    def to_toml(self):
        lines = []
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")  # ints, booleans, strings: JSON syntax is TOML syntax
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text):
        return cls.from_dict(_parse(text, "TOML"))

    @classmethod
    def load(cls, path):
        """Read a ``.json`` or ``.toml`` file (UTF-8, at most :data:`MAX_CONFIG_BYTES`), or a preset
        name."""
        path = str(path)
        if path in PRESETS:
            return PRESETS[path]
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"cannot read configuration {path!r}: {e.strerror or e} "
                              f"(presets are {', '.join(PRESETS)})") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"configuration {path!r} is larger than {MAX_CONFIG_BYTES} bytes: not "
                              f"a configuration file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"configuration {path!r} is not UTF-8 text (byte 0x{raw[e.start]:02x} "
                              f"at offset {e.start})") from None
        return cls.from_dict(_parse(text, "TOML" if path.endswith(".toml") else "JSON", path))


#: Largest configuration file :meth:`TileConfig.load` reads (a configuration is a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20


def _parse(text, fmt, path=None):
    """The document ``text`` (``fmt`` ``"JSON"`` or ``"TOML"``) parsed and checked by
    :func:`_scalars`; every parser failure (syntax, an integer too long for Python to convert,
    nesting too deep) is a :class:`ConfigError`, naming ``path`` if given."""
    try:
        data = tomllib.loads(text) if fmt == "TOML" else json.loads(text)
    except (RecursionError, ValueError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        problem = parse_problem(e)
    else:
        return _scalars(data)
    where = f" (file {path!r})" if path is not None else ""
    raise ConfigError(f"configuration is not valid {fmt}: {problem}{where}")


def _scalars(data):
    """``data``, with a field whose value is a large or nested list or table, a long string or a huge
    integer refused naming only its kind: the field's range message would print its repr, which
    could be huge or nested too deeply to print. (Small values get the field's own message, e.g.
    ``not [16]``.)"""
    if isinstance(data, dict):
        known = {f.name for f in dataclasses.fields(TileConfig)}
        for key, value in data.items():
            if key in known and isinstance(value, (list, dict)):
                items = value.values() if isinstance(value, dict) else value
                if len(value) > 16 or any(isinstance(v, (list, dict)) for v in items):
                    kind = "table" if isinstance(value, dict) else "list"
                    raise ConfigError(f"{key} must be a single value, not a nested or long {kind}")
            elif key in known and isinstance(value, str) and len(value) > 100:
                raise ConfigError(f"{key} is out of range: a {len(value)}-character string")
            elif key in known and isinstance(value, int) and abs(value) >= 1 << 64:
                raise ConfigError(f"{key} is out of range: a {len(str(abs(value)))}-digit integer")
    return data


# the field (property) of each scratchpad's depth (word size), by Spad member: the fast path of
# TileConfig.spad_words and word_bytes, which the cycle model calls per instruction
_WORDS_FIELD = {s: f"{s.name.lower()}_words" for s in Spad}
_WORD_BYTES_FIELD = {s: f"{s.name.lower()}_word_bytes" for s in Spad}


def _spad_name(spad):
    if isinstance(spad, str) and spad.upper() in SPAD_NAMES:
        return spad.upper()
    if isinstance(spad, int) and not isinstance(spad, bool) and 0 <= spad < len(SPAD_NAMES):
        return SPAD_NAMES[spad]
    raise ConfigError(f"scratchpad must be one of {', '.join(SPAD_NAMES)} (or 0..{len(SPAD_NAMES) - 1}), "
                      f"not {spad!r}")


#: Named configurations. ``tiny`` keeps RTL tests fast (the default array with small scratchpads,
#: a 256 KiB DRAM of 2 channels with short timings that still exercise every DRAM rule); ``fpga``
#: fits a mid-size FPGA (ECP5-85k: about 160 KiB of scratchpads); ``llm`` is ``fpga`` for whole
#: LLMs: W4A16 with Q4_1's groups of 32 and their offsets (``group_offset``), and a 512 MiB DRAM
#: (32768 rows per bank) that holds a 135M-parameter model at 4 bits and a 256-token prompt's
#: logits; ``npu128`` is a paper-scale 128x128 NPU on one wide HBM-like channel and ``neupims``
#: the NeuPIMs system (128x128 NPU with FP16 activations as theirs, HBM2 with 32 channels x 32
#: banks, 16 MAC lanes per bank, dual row buffers; accumulators that hold a token block's whole
#: residual stream up to GPT-3 175B's 12,288 features, docs/decisions.md), both for the timing
#: model only (docs/tile.md, docs/pim.md).
PRESETS = {
    "tiny": TileConfig(rows=4, cols=4, pe="mixpe-w4a8", wbits=4, group=32, queue_depth=4,
                       act_words=256, wgt_words=256, meta_words=64, acc_words=64, vparam_words=128,
                       dram_channels=2, dram_banks=4, dram_bank_groups=2, dram_rows=128,
                       dram_row_bytes=256, dram_bus_bytes=8, t_rcd=3, t_rp=3, t_cl=2, t_ras=8,
                       t_faw=12, t_ccd_s=1, t_ccd_l=2, pim_mode="dual", pim_row_buffers=2,
                       pim_lanes=4, pim_gbuf_bytes=256, pim_res_regs=32),
    "fpga": TileConfig(rows=16, cols=16, pe="mixpe-w4a8", wbits=4, group=128, queue_depth=4,
                       act_words=4096, wgt_words=4096, meta_words=256, acc_words=512,
                       vparam_words=1024, dram_channels=2, dram_banks=8, dram_bank_groups=2,
                       dram_rows=2048, dram_row_bytes=1024, dram_bus_bytes=16, t_rcd=4, t_rp=4,
                       t_cl=4, t_ras=10, t_faw=16, t_ccd_s=1, t_ccd_l=1, pim_mode="dual",
                       pim_lanes=8, pim_gbuf_bytes=1024, pim_res_regs=64),
    "llm": TileConfig(rows=16, cols=16, pe="mixpe-w4a16", wbits=4, group=32, group_offset=True,
                      queue_depth=4, act_words=4096, wgt_words=4096, meta_words=256, acc_words=1024,
                      vparam_words=1024, dram_channels=2, dram_banks=8, dram_bank_groups=2,
                      dram_rows=32768, dram_row_bytes=1024, dram_bus_bytes=16, t_rcd=4, t_rp=4,
                      t_cl=4, t_ras=10, t_faw=16, t_ccd_s=1, t_ccd_l=1, pim_mode="dual",
                      pim_lanes=8, pim_gbuf_bytes=1024, pim_res_regs=64),
    "npu128": TileConfig(rows=128, cols=128, pe="mixpe-w4a8", wbits=4, group=128, queue_depth=8,
                         act_words=16384, wgt_words=16384, meta_words=512, acc_words=1024,
                         vparam_words=4096, dram_channels=1, dram_banks=16, dram_bank_groups=4,
                         dram_rows=32768, dram_row_bytes=1024, dram_bus_bytes=64, t_rcd=14,
                         t_rp=14, t_cl=14, t_ras=34, t_faw=30, t_ccd_s=1, t_ccd_l=1),
    # HBM2 timing of the NeuPIMs simulator (docs/pim.md): tCCD_S 1 and tCCD_L 2 tCK, but a BL4
    # burst holds the data bus 2 tCK, so both column-to-column gaps are 2 here
    "neupims": TileConfig(rows=128, cols=128, pe="mixpe-w4a16", wbits=4, group=128, queue_depth=8,
                          act_words=16384, wgt_words=16384, meta_words=512, acc_words=16384,
                          vparam_words=40960, dram_channels=32, dram_banks=32, dram_bank_groups=4,
                          dram_rows=4096, dram_row_bytes=1024, dram_bus_bytes=32, t_rcd=14,
                          t_rp=14, t_cl=14, t_ras=34, t_faw=30, t_ccd_s=2, t_ccd_l=2,
                          pim_mode="dual", pim_lanes=16, pim_gbuf_bytes=1024, pim_res_regs=128),
}


def preset(name):
    """The preset called ``name``; :class:`ConfigError` naming the presets if there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"no preset {name!r}; presets are {', '.join(PRESETS)}") from None
