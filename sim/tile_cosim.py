"""Co-simulation of the tile: programs -> golden executor and Verilated tile -> every difference.

:func:`run_programs` runs a batch of programs of one configuration in one simulator process: for
each it writes the program and the memory words that differ from what the previous program left
(so every run starts from zeros plus its segments, as the golden model does), starts the tile,
waits for ``done`` and reads back the status registers, the DRAM words the STOREs wrote and (by
default, for small configurations) every scratchpad word. The golden model
(:func:`mixpim.models.executor.run`) gives the expected values; :class:`TileRun` lists every
difference. The last program of a batch also reads back the whole DRAM when it is small, so a
stray write anywhere is caught.
"""

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hw.tile import COUNTER_BITS, MAX_IMEM_WORDS, HostSel
from ..hw.tile_system import TileSystem
from ..models.config import TileConfig
from ..models.errors import ConfigError
from ..models.executor import run as golden_run
from ..models.isa import DecodeError, ErrorCode, Instruction, Opcode, Spad, Unit, decode
from ..models.program import Program, ProgramError
from . import cosim
from .cosim import TB_DIR
from .tile_harness import harness_top, harness_verilog

__all__ = ["TileRun", "RTL_MAX_PES", "RTL_MAX_SPAD_BYTES", "rtl_size_problem", "tile_top", "imem_words_for",
           "rtl_config", "run_programs", "run_tile"]

#: Below this many scratchpad words in all, every word is compared after every program.
FULL_CHECK_WORDS = 8192
#: Below this many DRAM bus words, the last program of a batch compares the whole DRAM.
DRAM_CHECK_WORDS = 1 << 16
#: DRAMs up to this size are simulated whole; larger ones are cut to what the programs touch.
RTL_DRAM_BYTES = 1 << 20
#: Largest array (rows x cols PEs) the tile RTL is generated or simulated for: the 16x16 ``fpga``
#: preset, the largest configuration built so far (about 7 minutes to Verilate). Larger ones, such
#: as the 128x128 ``npu128`` preset, are for the golden/timing model only (docs/decisions.md).
RTL_MAX_PES = 256
#: Largest total scratchpad size (every scratchpad, bytes) for the tile RTL: about six times
#: the ``fpga`` preset's 160 KiB.
RTL_MAX_SPAD_BYTES = 1 << 20


def rtl_size_problem(cfg):
    """Why the tile RTL of ``cfg`` is too large to generate or simulate, or ``None``."""
    pes = cfg.rows * cfg.cols
    if pes > RTL_MAX_PES:
        return (f"a {cfg.rows}x{cfg.cols} array ({pes} PEs) is beyond the RTL size limit "
                f"({RTL_MAX_PES} PEs, e.g. 16x16)")
    spad = sum(cfg.spad_words(s) * cfg.word_bytes(s) for s in Spad)
    if spad > RTL_MAX_SPAD_BYTES:
        return (f"{spad} bytes of scratchpads are beyond the RTL size limit "
                f"({RTL_MAX_SPAD_BYTES} bytes)")
    return None


_SPAD_SEL = {s: HostSel[s.name] for s in Spad}


@dataclass
class TileRun:
    """One program on the RTL tile and the golden model.

    ``golden``: the executor's :class:`~mixpim.models.executor.Result`; ``rtl_status``: the RTL's
    status registers (``cycles``, ``busy`` per unit, ``dispatched``, ``error``, ``error_pc``,
    ``nonfinite``); ``data_mismatches`` / ``status_mismatches``: one line per difference;
    ``words_compared``: memory words read back and compared; ``sim_seconds``: wall time of the run
    (without loading and reading back).
    """

    golden: object
    rtl_status: dict
    data_mismatches: list = field(default_factory=list)
    status_mismatches: list = field(default_factory=list)
    words_compared: int = 0
    sim_seconds: float = 0.0

    @property
    def bit_exact(self):
        return not self.data_mismatches

    @property
    def cycle_exact(self):
        return not self.status_mismatches

    @property
    def ok(self):
        return self.bit_exact and self.cycle_exact

    def report(self):
        """Every difference, one per line ('' when RTL equals golden)."""
        return "\n".join(self.status_mismatches + self.data_mismatches)


def imem_words_for(n):
    """Instruction memory depth for an ``n``-instruction program: a power of two >= 1024 (so
    programs share cached builds)."""
    if n > MAX_IMEM_WORDS:
        raise ProgramError(f"a program of {n} instructions does not fit the tile's instruction "
                           f"memory (at most {MAX_IMEM_WORDS})")
    return max(1024, 1 << max(0, n - 1).bit_length())


def tile_top(config, imem_words):
    """Verilog module name of the tile of ``config``: it names the array and hashes the rest."""
    key = cosim.content_hash(config.to_json() + f"\0{imem_words}")[:10]
    return f"tile_r{config.rows}c{config.cols}_{config.pe.replace('-', '_')}_i{imem_words}_{key}"


#: How the tile is driven, both on the tile behind registered inputs
#: (:func:`~.tile_harness.harness_verilog`) and without Python per cycle: ``"cocotb"``
#: (``tb/tile_tb.py`` over VPI, the regression's driver) or ``"native"`` (:data:`NATIVE_MAIN`, a
#: C++ main; opt-in, docs/decisions.md "FPGA-ready tile" 5).
DRIVERS = ("cocotb", "native")
#: The native driver: the cocotb driver's cycle-by-cycle protocol in C++.
NATIVE_MAIN = TB_DIR / "tile_main.cpp"

_BUILDS = {}


def _build(config, imem_words, build_root, driver="cocotb"):
    # Generating the tile's Verilog (to find the cached build) takes seconds: once per process.
    key = (config, imem_words, None if build_root is None else str(build_root), driver)
    b = _BUILDS.get(key)
    if b is None or not (b.build_dir / b.name).is_file():
        native = driver == "native"
        b = _BUILDS[key] = cosim.build(TileSystem(config, imem_words), tile_top(config, imem_words),
                                       params={"config": config.to_dict(), "imem_words": imem_words},
                                       build_root=build_root, params_complete=True,
                                       main=NATIVE_MAIN if native else None, wrapper=_harness)
    return b


def _harness(tile, name):
    return harness_top(name), harness_verilog(tile, name)


# -- memory images: per host memory, (words, bytes) uint8 (ACC: (words, cols) integers) ----------

def _images(cfg, res):
    """Memory images of an executor result per host memory; the DRAM cut to ``cfg``'s size (the
    RTL's, see :func:`rtl_config`)."""
    bus = cfg.dram_bus_bytes
    out = {HostSel.DRAM: res.dram[:cfg.dram_bytes].reshape(-1, bus)}
    for s in Spad:
        out[_SPAD_SEL[s]] = res.spads[s.name]
    return out


def _word(cfg, sel, row):
    """One image row as the host port's integer word."""
    if sel == HostSel.ACC:
        mask = (1 << cfg.acc_bits) - 1
        return sum((int(v) & mask) << (j * cfg.acc_bits) for j, v in enumerate(row))
    return int.from_bytes(np.asarray(row, np.uint8).tobytes(), "little")


def _diff(before, after):
    """Rows of ``after`` that differ from ``before``."""
    if before.dtype == object or after.dtype == object:
        return [i for i in range(len(after)) if list(before[i]) != list(after[i])]
    return np.flatnonzero(np.any(before != after, axis=1)).tolist()


def _footprint(cfg, items):
    """One past the highest DRAM byte any segment, LOAD/STORE or PIM row access (or PIM_ACT) of
    ``items`` can touch (a PIM row counts as that row of every bank: the row check sees the same
    bound)."""
    top = 0
    for instructions, segments in items:
        top = max([top] + [seg.end for seg in segments if seg.target == "dram"])
        for inst in instructions:
            if not isinstance(inst, Instruction):
                try:
                    inst = decode(inst)
                except DecodeError:
                    continue
            if inst.op in (Opcode.LOAD, Opcode.STORE):
                top = max(top, inst.dram_addr + (inst.rows - 1) * inst.stride
                          + inst.words * cfg.word_bytes(inst.spad))
            elif inst.op in (Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_ACT):
                group = cfg.dram_channels * cfg.dram_banks * cfg.dram_row_bytes
                top = max(top, (inst.row + 1) * group)
    return top


def rtl_config(config, items):
    """The configuration the RTL is built for: ``config``, with a DRAM larger than
    :data:`RTL_DRAM_BYTES` cut to the power-of-two number of rows per bank that covers both that
    size and what ``items`` can touch (a DRAM model of the full size would be up to gigabytes of
    Verilog initial values). Channels, banks, row size and timing are unchanged, so the address
    mapping and every cycle are the same; when an access reaches beyond the real DRAM (a ``DRAM_RANGE``
    program) the full size is kept, so that check sees the same bound."""
    top = _footprint(config, items)
    if config.dram_bytes <= RTL_DRAM_BYTES or top > config.dram_bytes:
        return config
    per_row = config.dram_channels * config.dram_banks * config.dram_row_bytes
    rows = 1 << (-(-max(top, RTL_DRAM_BYTES) // per_row) - 1).bit_length()
    return config.replace(dram_rows=min(config.dram_rows, rows))


def _prepare(cfg, item):
    """``(instructions, segments)`` of a Program or of a pair (raw 128-bit words allowed)."""
    if isinstance(item, Program):
        if item.config != cfg:
            raise ConfigError("every program of a batch must be for the same configuration")
        return item.instructions, item.segments
    instructions, segments = item
    return tuple(instructions), tuple(segments)


def run_programs(config, programs, *, full_check=None, build_root=None, workdir=None, imem_words=None,
                 driver="cocotb"):
    """Run ``programs`` (Programs of ``config``, or ``(instructions, segments)`` pairs) on the RTL
    tile and the golden model; returns one :class:`TileRun` per program.

    ``imem_words``: build the tile with at least this instruction memory (default: the least
    power of two the longest program needs), so that batches of different lengths can share one
    cached build.

    ``full_check``: compare every scratchpad word after every program (default: when the
    scratchpads hold at most :data:`FULL_CHECK_WORDS` words); otherwise only the DRAM words the
    STOREs wrote (and whatever the status says).

    ``driver``: ``"cocotb"`` (default) or ``"native"`` (:data:`DRIVERS`); both drive the same
    cycles and compare the same words.

    Raises
    ------
    ConfigError
        If ``config`` is not a TileConfig, is beyond the RTL size limit (:func:`rtl_size_problem`)
        or a program is for another configuration.
    ValueError
        If ``driver`` is not one of :data:`DRIVERS`.
    ProgramError
        If a program is malformed (as :func:`mixpim.models.executor.run` raises) or too long.
    cosim.CosimFailure
        If the simulation fails (e.g. the tile did not raise ``done``: a hang).
    """
    if not isinstance(config, TileConfig):
        raise ConfigError(f"config must be a TileConfig, not {type(config).__name__}")
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    problem = rtl_size_problem(config)
    if problem:
        raise ConfigError(f"this configuration's tile RTL is too large to simulate: {problem}; "
                          f"run it on the golden model")
    items = [_prepare(config, p) for p in programs]
    if not items:
        return []
    cfg = rtl_config(config, items)
    imem = max(imem_words_for(max(len(i) for i, _ in items)), imem_words or 0)
    if full_check is None:
        full_check = sum(cfg.spad_words(s) for s in Spad) <= FULL_CHECK_WORDS
    bus = cfg.dram_bus_bytes
    dram_words = cfg.dram_bytes // bus

    empty = golden_run(config, (), (), check_races=False)  # all-zero memories
    prev = _images(cfg, empty)
    prev_imem = [0] * 0
    cases, goldens, expects = [], [], []
    for n, (instructions, segments) in enumerate(items):
        words = [i.encode() if isinstance(i, Instruction) else int(i) for i in instructions]
        golden = golden_run(config, instructions, segments)
        start = _images(cfg, golden_run(config, (), segments, check_races=False))
        writes = [[HostSel.IMEM.value, pc, format(w, "x")] for pc, w in enumerate(words)
                  if pc >= len(prev_imem) or prev_imem[pc] != w]
        for sel, image in start.items():
            writes += [[sel.value, i, format(_word(cfg, sel, image[i]), "x")]
                       for i in _diff(prev[sel], image)]
        final = _images(cfg, golden)
        reads = []
        if full_check:
            for s in Spad:
                sel = _SPAD_SEL[s]
                reads += [(sel, i) for i in range(cfg.spad_words(s))]
        if n == len(items) - 1 and dram_words <= DRAM_CHECK_WORDS:
            reads += [(HostSel.DRAM, i) for i in range(dram_words)]
        else:
            covered = set()
            for seg in golden.outputs:
                covered.update(range(seg.base // bus, (seg.end - 1) // bus + 1))
            reads += [(HostSel.DRAM, i) for i in sorted(covered)]
        expects.append([(sel, i, _word(cfg, sel, final[sel][i])) for sel, i in reads])
        cases.append({"writes": writes, "length": len(words),
                      "max_cycles": 2 * golden.status.cycles + 1000,
                      "reads": [[sel.value, i] for sel, i in reads]})
        goldens.append(golden)
        prev, prev_imem = final, words

    build = _build(cfg, imem, build_root, driver)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        case_path, result_path = Path(tmp) / "case", Path(tmp) / "result"
        if driver == "native":
            case_path.write_text(native_case(cases))
            cosim.run_main(build, [case_path, result_path])
            measured = native_result(result_path.read_text(), cases)
        else:
            case_path.write_text(json.dumps({"units": len(Unit), "programs": cases}))
            cosim.run(build, "tile_tb", test_dir=TB_DIR,
                      extra_env={"MIXPIM_CASE": case_path, "MIXPIM_RESULT": result_path})
            measured = json.loads(result_path.read_text())["programs"]
    return [_compare(cfg, g, m, e) for g, m, e in zip(goldens, measured, expects)]


def native_case(cases):
    """The case file of :data:`NATIVE_MAIN` for the cocotb driver's ``programs`` list."""
    lines = [f"mixpim-tile-case 1 {len(cases)}"]
    for c in cases:
        lines.append(f"P {c['length']} {c['max_cycles']} {len(c['writes'])} {len(c['reads'])}")
        lines += [f"{sel} {addr} {word}" for sel, addr, word in c["writes"]]
        lines += [f"{sel} {addr}" for sel, addr in c["reads"]]
    return "\n".join(lines) + "\n"


def native_result(text, cases):
    """The cocotb driver's per-program result dicts from :data:`NATIVE_MAIN`'s result file."""
    lines, out, at = text.split("\n"), [], 0
    mask = (1 << COUNTER_BITS) - 1
    for c in cases:
        n = len(c["reads"])
        fields = lines[at].split() if at < len(lines) else []
        if len(fields) != 8 or fields[0] != "P" or len(lines) < at + 1 + n:
            raise cosim.CosimError(f"malformed result of the native tile driver at line {at + 1}: "
                                   f"{lines[at] if at < len(lines) else ''!r}")
        cycles, busy, dispatched, error, error_pc, nonfinite, seconds = fields[1:]
        busy = int(busy, 16)
        out.append({"cycles": int(cycles, 16), "dispatched": int(dispatched, 16),
                    "busy": [(busy >> (COUNTER_BITS * u)) & mask for u in range(len(Unit))],
                    "error": int(error, 16), "error_pc": int(error_pc, 16),
                    "nonfinite": int(nonfinite, 16), "sim_seconds": float(seconds),
                    "reads": lines[at + 1:at + 1 + n]})
        at += 1 + n
    return out


def _compare(cfg, golden, measured, expect):
    st = golden.status
    want = {"cycles": st.cycles, "busy": list(st.busy), "dispatched": st.dispatched,
            "error": int(st.error), "error_pc": st.error_pc, "nonfinite": int(st.nonfinite)}
    status = {k: measured[k] for k in want}
    bad_status = []
    for k, v in want.items():
        if status[k] != v:
            what = (f"{ErrorCode(status[k]).name} vs {ErrorCode(v).name}" if k == "error" and
                    status[k] in ErrorCode._value2member_map_ else f"{status[k]} vs {v}")
            if k == "busy":
                what = ", ".join(f"{u.name} {a} vs {b}" for u, a, b in zip(Unit, status[k], v))
            bad_status.append(f"status {k}: rtl vs golden: {what}")
    bad_data = []
    for (sel, addr, value), got in zip(expect, measured["reads"]):
        got = int(got, 16)
        if got != value:
            bad_data.append(f"{sel.name} word {addr}: rtl 0x{got:x}, golden 0x{value:x}")
    return TileRun(golden, status, bad_data, bad_status, len(expect), measured["sim_seconds"])


def run_tile(program, **kwargs):
    """:func:`run_programs` of one Program."""
    if not isinstance(program, Program):
        raise ProgramError(f"run_tile needs a Program, not {type(program).__name__}")
    return run_programs(program.config, [program], **kwargs)[0]
