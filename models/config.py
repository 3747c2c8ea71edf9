"""Hardware configuration of a mixpim tile: one frozen, validated dataclass and its named presets.

The same :class:`TileConfig` drives the RTL generators, the compiler and the golden model. It
round-trips through JSON and TOML; unknown keys and out-of-range values are rejected with a
:class:`~mixpim.models.errors.ConfigError` that names the field.
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["PE_KINDS", "GROUP_SIZES", "TileConfig", "PRESETS", "preset"]

#: Processing-element kinds the array can be built from. ``mixpe-*`` are the shift-and-add PEs,
#: ``baseline-*`` the conventional dequantize-then-multiply PEs they are compared against.
PE_KINDS = ("mixpe-w4a8", "mixpe-w4a16", "baseline-w4a8", "baseline-w4a16")

#: Weight quantization group sizes (elements of K sharing one scale and zero point).
GROUP_SIZES = (32, 64, 128)

MAX_DIM = 256


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


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
    wbits : int
        Widest weight code the PEs accept, 2..4. Narrower codes run on the same hardware.
    group : int
        Weight quantization group size along K, one of :data:`GROUP_SIZES`.
    scale_bits : int
        Width of the unsigned per-group scale mantissa, 4..16.
    acc_headroom : int
        Extra accumulator bits above one scaled group result, 1..24: the array sums up to
        ``2**acc_headroom`` groups (K up to ``group * 2**acc_headroom``) without overflow.

    Raises
    ------
    ConfigError
        If any field is out of range or fields are inconsistent.
    """

    rows: int = 4
    cols: int = 4
    pe: str = "mixpe-w4a8"
    wbits: int = 4
    group: int = 32
    scale_bits: int = 16
    acc_headroom: int = 12

    def __post_init__(self):
        _check_int("rows", self.rows, 1, MAX_DIM)
        _check_int("cols", self.cols, 1, MAX_DIM)
        if self.pe not in PE_KINDS:
            raise ConfigError(f"pe must be one of {', '.join(PE_KINDS)}, not {self.pe!r}")
        _check_int("wbits", self.wbits, 2, 4)
        if isinstance(self.group, bool) or not isinstance(self.group, int) or self.group not in GROUP_SIZES:
            raise ConfigError(f"group must be one of {GROUP_SIZES}, not {self.group!r}")
        _check_int("scale_bits", self.scale_bits, 4, 16)
        _check_int("acc_headroom", self.acc_headroom, 1, 24)
        if self.rows > self.group:
            raise ConfigError(f"rows ({self.rows}) must not exceed group ({self.group}): a column "
                              f"of the array delivers one group result per cycle")

    @property
    def act(self):
        """Activation format of the PE kind: ``"int8"`` or ``"fp16"``."""
        return "fp16" if self.pe.endswith("a16") else "int8"

    @property
    def family(self):
        """``"mixpe"`` or ``"baseline"``."""
        return self.pe.split("-")[0]

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self):
        return dataclasses.asdict(self)

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
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"configuration is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def to_toml(self):
        lines = []
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")  # ints and strings: JSON syntax is TOML syntax
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration is not valid TOML: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path):
        """Read a ``.json`` or ``.toml`` file, or a preset name."""
        path = str(path)
        if path in PRESETS:
            return PRESETS[path]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read configuration {path!r}: {e.strerror}") from None
        return cls.from_toml(text) if path.endswith(".toml") else cls.from_json(text)


#: Named configurations. ``tiny`` keeps RTL tests fast; ``fpga`` fits a mid-size FPGA (ECP5-85k).
PRESETS = {
    "tiny": TileConfig(rows=4, cols=4, pe="mixpe-w4a8", wbits=4, group=32),
    "fpga": TileConfig(rows=16, cols=16, pe="mixpe-w4a8", wbits=4, group=128),
}


def preset(name):
    """The preset called ``name``; :class:`ConfigError` naming the presets if there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"no preset {name!r}; presets are {', '.join(PRESETS)}") from None
