"""The designs users can generate, synthesize and simulate by name (``mixpim rtl DESIGN``).

A design is a component kind plus its configuration: a :class:`~mixpim.models.config.TileConfig`
for the MixPE and baseline designs, a :class:`~mixpim.models.bitmod_gemm.BitmodParams` for the BitMoD
ones (TileConfig does not describe BitMoD arrays yet). Its Verilog module name encodes every
parameter so build caches and output files never collide.
"""

import json
from dataclasses import dataclass, replace

from ..hw.array import BaselineArray, MixPEArray
from ..hw.baseline_pe import BaselinePE
from ..hw.bitmod_array import BitmodArray
from ..hw.bitmod_parallel_pe import BitmodParallelPE
from ..hw.bitmod_pe import BitmodPE
from ..hw.mixpe_pe import MixPE
from ..models.bitmod_gemm import BitmodParams, default_types
from ..models.config import TileConfig
from ..models.errors import ConfigError
from ..models.mixpe import ArrayParams
from ..models.tile_array import array_params
from .verilog import to_verilog

__all__ = ["DESIGNS", "Design", "make_design", "design_for", "write_rtl", "LINT_WAIVER"]

#: design name -> (PE family, component class)
DESIGNS = {
    "mixpe-pe": ("mixpe", MixPE),
    "mixpe-array": ("mixpe", MixPEArray),
    "baseline-pe": ("baseline", BaselinePE),
    "baseline-array": ("baseline", BaselineArray),
    "bitmod-pe": ("bitmod", BitmodPE),
    "bitmod-array": ("bitmod", BitmodArray),
    "bitparallel-pe": ("bitmod", BitmodParallelPE),  # reference: bit-parallel PE for the BitMoD types
}


@dataclass(frozen=True)
class Design:
    """``kind`` (a :data:`DESIGNS` key), ``config``, ``params`` and the Verilog ``top`` name.

    For BitMoD designs ``config`` and ``params`` are the same :class:`BitmodParams`.
    """

    kind: str
    config: TileConfig | BitmodParams
    params: ArrayParams | BitmodParams

    @property
    def top(self):
        p = self.params
        dims = "" if self.kind.endswith("-pe") else f"_r{p.rows}c{p.cols}"
        wbits = f"w{p.wbits}"
        if isinstance(p, BitmodParams) and p.types != default_types(p.wbits):
            wbits += "_" + "_".join(t.lower() for t in p.types)
        offsets = "_go" if getattr(p, "group_offset", False) else ""  # group offsets
        return (f"{self.kind.replace('-', '_')}{dims}_{wbits}_{p.act_format}_g{p.group}"
                f"_s{p.scale_bits}_h{p.acc_headroom}{offsets}")

    def component(self):
        return DESIGNS[self.kind][1](self.params)

    def manifest(self):
        p = self.params
        if isinstance(p, BitmodParams):
            return {"design": self.kind, "top": self.top, "config": p.to_dict(),
                    "widths": {"act_bits": p.act_bits, "shift_bits": p.shift_bits, "prod_bits": p.prod_bits,
                               "psum_bits": p.psum_bits, "scaled_bits": p.scaled_bits, "acc_bits": p.acc_bits},
                    "cycles_per_beat": p.terms, "latency": p.latency, "row_interval": p.row_interval}
        widths = {"act_bits": p.act_bits, "wc_bits": p.wc_bits, "prod_bits": p.prod_bits,
                  "psum_bits": p.psum_bits, "scaled_bits": p.scaled_bits, "acc_bits": p.acc_bits}
        if p.group_offset:
            widths |= {"offset_bits": p.offset_bits, "gsum_bits": p.gsum_bits,
                       "offset_prod_bits": p.offset_prod_bits, "term_bits": p.term_bits}
        return {"design": self.kind, "top": self.top, "config": self.config.to_dict(),
                "widths": widths, "latency": p.latency}


def make_design(kind, *, rows=4, cols=4, wbits=4, act=None, group=32, scale_bits=None, acc_headroom=12,
                types=None):
    """The :class:`Design` ``kind`` with these parameters; :class:`ConfigError` if out of range.

    ``act`` and ``scale_bits`` default to the family's own defaults: INT8 activations and 16-bit
    scales for MixPE and the baseline, FP16 activations and 8-bit scales for BitMoD. ``types``
    (BitMoD only) are the types a group may select (default: the BitMoD mixture for 3 and 4 bits,
    INT-``wbits`` otherwise; ``wbits=8`` is the INT8 mode).
    """
    if kind not in DESIGNS:
        raise ConfigError(f"unknown design {kind!r}; designs are {', '.join(DESIGNS)}")
    if act is not None and act not in ("int8", "fp16"):
        raise ConfigError(f"act must be int8 or fp16, not {act!r}")
    family = DESIGNS[kind][0]
    if kind.endswith("-pe"):
        rows = cols = 1
    if family == "bitmod":
        p = BitmodParams(rows=rows, cols=cols, group=group, wbits=wbits, types=types, act_format=act or "fp16",
                         scale_bits=8 if scale_bits is None else scale_bits, acc_headroom=acc_headroom)
        return Design(kind, p, p)
    if types is not None:
        raise ConfigError(f"types select BitMoD weight types; {kind} takes none")
    act = act or "int8"
    scale_bits = 16 if scale_bits is None else scale_bits
    cfg = TileConfig(rows=rows, cols=cols, pe=f"{family}-w4{'a8' if act == 'int8' else 'a16'}",
                     wbits=wbits, group=group, scale_bits=scale_bits, acc_headroom=acc_headroom)
    return Design(kind, cfg, ArrayParams.from_config(cfg))


def design_for(config, kind="array"):
    """The array (or PE) design of a tile configuration or of :class:`BitmodParams` (a BitMoD PE
    design is built with ``rows = cols = 1``, so all PEs of one configuration share a build)."""
    if isinstance(config, BitmodParams):
        p = replace(config, rows=1, cols=1) if kind == "pe" else config
        return Design(f"bitmod-{kind}", p, p)
    p = array_params(config)
    if isinstance(p, BitmodParams):  # a BitMoD tile's array
        return design_for(p, kind)
    return Design(f"{p.family}-{kind}", config, p)


#: Prepended to written Verilog. Amaranth's output relies on Verilog's operand sizing rules
#: (implicit zero/sign extension and truncation), which Verilator's default lint reports as
#: WIDTHEXPAND/WIDTHTRUNC warnings, and it lowers switches on enums and ``Array`` indices to
#: ``case`` statements without a ``default`` (CASEINCOMPLETE) after assigning every signal its
#: default value first, so no latch is inferred. These metacomments waive exactly those three
#: rules for this file, so `verilator --lint-only` accepts it. Other tools read them as comments.
LINT_WAIVER = ("// Generated by mixpim from Amaranth HDL; do not edit.\n"
               "/* verilator lint_off WIDTHEXPAND */\n"
               "/* verilator lint_off WIDTHTRUNC */\n"
               "/* verilator lint_off CASEINCOMPLETE */\n")


def rtl_files(design: Design):
    """``{"<top>.v": Verilog, "<top>.json": manifest}`` of ``design`` (text, nothing written)."""
    text = to_verilog(design.component(), design.top)
    verilog = f"{design.top}.v"
    return {verilog: LINT_WAIVER + text,
            f"{design.top}.json": json.dumps({**design.manifest(), "verilog": verilog}, indent=2) + "\n"}


def write_rtl(design: Design, out_dir, *, say=None):
    """Write ``<top>.v`` and ``<top>.json`` (the manifest) into ``out_dir``; return both paths.

    Both files are written atomically as one batch (:func:`mixpim.sim.outputs.write_files`):
    ``out_dir`` must be a folder or creatable; ``say`` gets one line naming the files replaced.
    """
    from .outputs import check_outputs, write_files
    check_outputs(out_dir, (f"{design.top}.v", f"{design.top}.json"))  # before the elaboration
    paths = write_files(out_dir, rtl_files(design), say=say)
    verilog, manifest = paths.values()
    return verilog, manifest
