"""Co-simulation of arrays and PEs: golden case -> Verilator run -> bit- and cycle-exact verdict.

:func:`run_array` is what the tests, the demo and the CLI call: it computes the golden result and
cycle counts with :mod:`mixpim.models.mixpe`, builds (or reuses) the Verilated design, runs the
cocotb module :mod:`mixpim.sim.tb.array_tb` which asserts every output beat and the cycle counts,
and returns what the RTL produced.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amaranth.hdl import signed

from ..hw.layouts import (array_input_layout, array_output_layout, ctl_layout, pack, pe_act_layout,
                          result_layout, unpack_array)
from ..models.mixpe import (ArrayParams, GemmResult, activation_values, array_stream, array_timing,
                            array_unstream, group_sums, mixpe_gemm)
from ..models.numerics import fp16_decode
from . import cosim
from .cosim import TB_DIR
from .designs import Design, design_for

__all__ = ["ArrayRun", "run_array", "run_golden_case", "make_pe_case", "run_pe", "build_design", "hex_words",
           "run_case", "scatter_cycles"]


def hex_words(words):
    """Integers (of any width) as an array of hex strings: how cases carry port words."""
    return np.array([format(int(w), "x") for w in words])


@dataclass
class ArrayRun:
    """Result of one array co-simulation.

    ``golden``: :class:`GemmResult`; ``rtl_acc``: (M, N) accumulators read from the RTL;
    ``bit_exact`` / ``cycle_exact``: the verdicts (the cocotb test also asserts both);
    ``measured`` / ``expected``: cycle counts (``first_output``, ``total``).
    """

    design: Design
    golden: GemmResult
    rtl_acc: np.ndarray
    measured: dict
    expected: dict
    stalls: bool

    @property
    def bit_exact(self):
        return bool(np.array_equal(self.rtl_acc.astype(object), self.golden.acc.astype(object)))

    @property
    def cycle_exact(self):
        return all(self.measured[k] == self.expected[k] for k in ("first_output", "total"))


def build_design(design, build_root=None):
    """The Verilated build of ``design`` (a :class:`~mixpim.sim.designs.Design`), cached by content."""
    return cosim.build(design.component(), design.top, params=design.manifest(), build_root=build_root)


def run_array(config, act, qw, *, stall_seed=None, perturb=None, build_root=None, workdir=None):
    """Run ``act`` x ``qw``^T on the RTL array of ``config`` and compare with the golden model.

    ``stall_seed``: random input bubbles and output backpressure (cycle counts then differ from the
    stall-free model and are not compared). ``perturb``: ``"output"`` or ``"cycles"`` corrupts the
    golden expectation, to show the comparison catches it (raises :class:`cosim.CosimFailure`).
    """
    design = design_for(config)
    p = design.params
    golden = mixpe_gemm(p, act, qw)
    m, n = np.asarray(act).shape[0], qw.codes.shape[0]
    timing = array_timing(p, m, n, qw.codes.shape[1])
    beats = array_stream(p, act, qw)
    in_words = pack(array_input_layout(p), beats)

    return run_golden_case(design, golden, timing, in_words, m, n, stall_seed=stall_seed, perturb=perturb,
                           build_root=build_root, workdir=workdir,
                           max_cycles=4 * len(in_words) + 4 * timing.latency + 1000)


def run_golden_case(design, golden, timing, in_words, m, n, *, stall_seed, perturb, build_root, workdir,
                    max_cycles):
    """Run input words on the array of ``design`` under :mod:`mixpim.sim.tb.array_tb`, expecting the
    golden (M, N) result ``golden`` and the stall-free cycle counts ``timing`` (any array family)."""
    p = design.params
    # Expected output beats, in stream order, from the golden (M, N) result.
    r, c = p.rows, p.cols
    mb, nb = -(-m // r), -(-n // c)
    full = np.zeros((mb * r, nb * c), dtype=object)
    full[:m, :n] = golden.acc
    out_beats = full.reshape(mb, r, nb, c).transpose(0, 2, 1, 3).reshape(-1, c)
    out_words = pack(array_output_layout(p), out_beats)

    expected = {"first_output": timing.first_output, "total": timing.total}
    case = {
        "in_words": hex_words(in_words), "out_words": hex_words(out_words),
        "first_output": -1 if stall_seed is not None else timing.first_output,
        "total": -1 if stall_seed is not None else timing.total,
        "stall_seed": -1 if stall_seed is None else int(stall_seed),
        "nonfinite": int(golden.nonfinite.any()), "error": 0,
        "max_cycles": max_cycles,
    }
    if perturb == "output":
        case["out_words"][0] = format(int(out_words[0]) ^ 1, "x")
    elif perturb == "cycles":
        case["total"] = timing.total + 1
    elif perturb is not None:
        raise ValueError(f"perturb must be 'output', 'cycles' or None, not {perturb!r}")

    measured = run_case(build_design(design, build_root), "array_tb", case, workdir)
    words = [int(h, 16) for h in measured.pop("outputs")]
    rtl = array_unstream(p, unpack_array(array_output_layout(p), words), m, n)
    return ArrayRun(design, golden, rtl, measured, expected, stall_seed is not None)


def run_case(build, module, case, workdir=None):
    """Run testbench ``module`` of :data:`~mixpim.sim.cosim.TB_DIR` on ``build`` with ``case`` (a dict
    of arrays, saved as ``.npz`` at ``$MIXPIM_CASE``); returns the JSON the testbench wrote to
    ``$MIXPIM_RESULT``. Temporary files go under ``workdir`` (default: the system's)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        case_path = Path(tmp) / "case.npz"
        result_path = Path(tmp) / "result.json"
        np.savez(case_path, **case)
        cosim.run(build, module, test_dir=TB_DIR,
                  extra_env={"MIXPIM_CASE": case_path, "MIXPIM_RESULT": result_path})
        return json.loads(result_path.read_text())


# -- single PEs ---------------------------------------------------------------------------------

def make_pe_case(params: ArrayParams, *, groups=6, tile_groups=2, seed=0, bubbles=True, extremes=False):
    """Stimulus and golden ``o_res`` words for one PE over ``groups`` weight groups.

    Tiles of ``tile_groups`` groups; random bubbles between beats if ``bubbles``; ``extremes`` draws
    only the ends of each operand's range (and FP16 subnormals, zeros and the largest finite values).
    Returns the case dict for :mod:`mixpim.sim.tb.pe_tb`: inputs per cycle, and the ``o_res`` word
    expected after that cycle's clock edge.
    """
    rng = np.random.default_rng(seed)
    g, k = params.group, groups * params.group
    top = (1 << params.wbits) - 1

    def pick(ends, lo, hi, n):
        """``n`` values: only the range's ends (``extremes``), else uniform in lo..hi-1."""
        return rng.choice(ends, n) if extremes else rng.integers(lo, hi, n)

    if params.act_format == "int8":
        act = pick([-128, 127], -128, 128, k).astype(np.int8)
    else:
        pool = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x0000, 0x8000]  # max, -max, subnormals, +-0
        bits = pick(pool, 0, 1 << 16, k).astype(np.uint16)
        bits = np.where((bits >> 10) & 0x1F == 31, bits & 0x83FF, bits).astype(np.uint16)  # PEs see finite values
        act = bits.view(np.float16)
    code = pick([0, top], 0, top + 1, k)
    zero = np.repeat(pick([0, top], 0, top + 1, groups), g)
    scale = np.repeat(pick([0, 1, (1 << params.scale_bits) - 1], 0, 1 << params.scale_bits, groups), g)

    # golden: group sums, and for the baseline PE their scaled sum over each tile
    a_val, _ = activation_values(act[None, :], params.act_format)
    isum = group_sums(a_val, (code - zero)[None, :], g)[0, 0]
    gidx = np.arange(k) // g
    glast = np.arange(k) % g == g - 1
    tlast = glast & (((gidx + 1) % tile_groups == 0) | (gidx == groups - 1))
    if params.family == "mixpe":
        emit, value, width = glast, isum[gidx], params.psum_bits
    else:
        tile = np.cumsum(tlast) - tlast  # tile index of each beat
        scaled = np.array([int(s) * int(i) for s, i in zip(scale[::g], isum)], dtype=object)
        per_tile = [sum(scaled[(tile[::g] == t)]) for t in range(int(tile.max()) + 1)]
        emit, value, width = tlast, np.array([per_tile[t] for t in tile], dtype=object), params.acc_bits

    # cycle-level stimulus: each beat possibly preceded by bubbles
    gaps = rng.geometric(0.8, k) - 1 if bubbles else np.zeros(k, int)
    cyc = np.cumsum(gaps + 1) - 1  # cycle of each beat
    n = int(cyc[-1]) + 2
    col = lambda v, dtype=np.int64: scatter_cycles(n, cyc, v, dtype)
    valid = col(np.ones(k, bool))
    if params.act_format == "int8":
        act_words = pack(pe_act_layout("int8"), col(act))
    else:
        sig, exp, _ = fp16_decode(act)
        act_words = pack(pe_act_layout("fp16"), {"sig": col(sig), "sh": col(exp - 1)})
    ctl = pack(ctl_layout, {"valid": valid, "glast": col(glast), "tlast": col(tlast)})
    inputs = {"i_act": act_words, "i_ctl": ctl, "i_wc": pack(signed(params.wc_bits), col(code - zero)),
              "i_code": col(code), "i_zero": col(zero), "i_scale": col(scale)}
    ports = ["i_act", "i_ctl"] + (["i_wc"] if params.family == "mixpe" else ["i_code", "i_zero", "i_scale"])
    res = pack(result_layout(width), {"valid": col(emit), "tlast": col(tlast), "value": col(value, object)})
    rows = np.stack([hex_words(inputs[p]) for p in ports], axis=1)
    return {"ports": np.array(ports), "inputs": rows, "res": hex_words(res)}


def scatter_cycles(n, cycles, values, dtype):
    """An ``n``-cycle column of ``dtype`` holding ``values`` at ``cycles`` and zeros elsewhere."""
    out = np.zeros(n, dtype=dtype)
    out[cycles] = values
    return out


def run_pe(config, case, *, build_root=None):
    """Run a :func:`make_pe_case` case on the PE of ``config``; returns the measured dict."""
    design = design_for(config, "pe")
    return run_case(build_design(design, build_root), "pe_tb", case)
