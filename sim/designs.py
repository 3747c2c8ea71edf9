"""The designs users can generate, synthesize and simulate by name (``mixpim rtl DESIGN``).

A design is a component kind plus a :class:`~mixpim.models.config.TileConfig`; its Verilog module
name encodes every parameter so build caches and output files never collide.
"""

from dataclasses import dataclass

from ..hw.array import BaselineArray, MixPEArray
from ..hw.baseline_pe import BaselinePE
from ..hw.mixpe_pe import MixPE
from ..models.config import TileConfig
from ..models.errors import ConfigError
from ..models.mixpe import ArrayParams

__all__ = ["DESIGNS", "Design", "make_design"]

#: design name -> (PE family, component class)
DESIGNS = {
    "mixpe-pe": ("mixpe", MixPE),
    "mixpe-array": ("mixpe", MixPEArray),
    "baseline-pe": ("baseline", BaselinePE),
    "baseline-array": ("baseline", BaselineArray),
}


@dataclass(frozen=True)
class Design:
    """``kind`` (a :data:`DESIGNS` key), ``config``, ``params`` and the Verilog ``top`` name."""

    kind: str
    config: TileConfig
    params: ArrayParams

    @property
    def top(self):
        p = self.params
        dims = "" if self.kind.endswith("-pe") else f"_r{p.rows}c{p.cols}"
        return (f"{self.kind.replace('-', '_')}{dims}_w{p.wbits}_{p.act}_g{p.group}"
                f"_s{p.scale_bits}_h{p.acc_headroom}")

    def component(self):
        return DESIGNS[self.kind][1](self.params)

    def manifest(self):
        p = self.params
        return {"design": self.kind, "top": self.top, "config": self.config.to_dict(),
                "widths": {"act_bits": p.act_bits, "wc_bits": p.wc_bits, "prod_bits": p.prod_bits,
                           "psum_bits": p.psum_bits, "scaled_bits": p.scaled_bits, "acc_bits": p.acc_bits},
                "latency": p.latency}


def make_design(kind, *, rows=4, cols=4, wbits=4, act="int8", group=32, scale_bits=16, acc_headroom=12):
    """The :class:`Design` ``kind`` with these parameters; :class:`ConfigError` if out of range."""
    if kind not in DESIGNS:
        raise ConfigError(f"unknown design {kind!r}; designs are {', '.join(DESIGNS)}")
    if act not in ("int8", "fp16"):
        raise ConfigError(f"act must be int8 or fp16, not {act!r}")
    family = DESIGNS[kind][0]
    if kind.endswith("-pe"):
        rows = cols = 1
    cfg = TileConfig(rows=rows, cols=cols, pe=f"{family}-w4{'a8' if act == 'int8' else 'a16'}",
                     wbits=wbits, group=group, scale_bits=scale_bits, acc_headroom=acc_headroom)
    return Design(kind, cfg, ArrayParams.from_config(cfg))


def design_for(config: TileConfig, kind="array"):
    """The array (or PE) design of a tile configuration."""
    p = ArrayParams.from_config(config)
    return Design(f"{p.family}-{kind}", config, p)
