"""Co-simulation of BitMoD arrays and PEs: golden case -> Verilator run -> bit- and cycle-exact verdict.

The same flow as :mod:`.array_cosim` (and the same cocotb modules, :mod:`mixpim.sim.tb.array_tb`
and :mod:`mixpim.sim.tb.pe_tb`, which only see payload words, expected words and cycle counts):
:func:`run_bitmod_array` computes the golden result with :func:`mixpim.models.bitmod_gemm.bitmod_gemm`
and the cycle counts with :func:`~mixpim.models.bitmod_gemm.bitmod_timing`, builds (or reuses) the
Verilated design, runs it and returns an :class:`~.array_cosim.ArrayRun`.
"""

import numpy as np

from ..hw.bitmod_array import bitmod_input_layout
from ..hw.bitmod_decoder import term_layout
from ..hw.layouts import ctl_layout, pack, pe_act_layout, result_layout
from ..models.bitmod_gemm import BitmodParams, bitmod_gemm, bitmod_stream, bitmod_timing, term_table
from ..models.mixpe import activation_values, group_sums
from ..models.numerics import fp16_decode
from .array_cosim import build_design, hex_words, run_case, run_golden_case, scatter_cycles
from .designs import design_for

__all__ = ["run_bitmod_array", "make_bitmod_pe_case", "run_bitmod_pe"]


def run_bitmod_array(params: BitmodParams, act, qw, *, stall_seed=None, perturb=None, build_root=None,
                     workdir=None):
    """Run ``act`` x ``qw``^T (:class:`~mixpim.models.bitmod.BitmodWeights`) on the RTL BitMoD array
    of ``params`` and compare with the golden model.

    ``stall_seed``: random input bubbles and output backpressure (cycle counts then differ from the
    stall-free model and are not compared). ``perturb``: ``"output"`` or ``"cycles"`` corrupts the
    golden expectation, to show the comparison catches it (raises :class:`.cosim.CosimFailure`).
    """
    design = design_for(params)
    p = design.params
    golden = bitmod_gemm(p, act, qw)
    m, n = np.asarray(act).shape[0], qw.codes.shape[0]
    timing = bitmod_timing(p, m, n, qw.codes.shape[1])
    in_words = pack(bitmod_input_layout(p), bitmod_stream(p, act, qw))

    # stalls pass ~3 of 4 cycles: allow 4x the stall-free run plus slack
    return run_golden_case(design, golden, timing, in_words, m, n, stall_seed=stall_seed, perturb=perturb,
                           build_root=build_root, workdir=workdir, max_cycles=4 * timing.total + 1000)


def make_bitmod_pe_case(params: BitmodParams, *, groups=6, tile_groups=2, seed=0, bubbles=True, extremes=False):
    """Stimulus and golden ``o_res`` words for one BitMoD PE over ``groups`` weight groups.

    Weights are random codes of random types of ``params.types`` per group (reserved codes avoided),
    consumed as the decoder's terms, ``params.terms`` cycles per weight; random bubbles between
    cycles if ``bubbles``; ``extremes`` draws only the largest-magnitude codes and the ends of the
    activation range (FP16: +-max, subnormals, zeros). Tiles of ``tile_groups`` groups. Returns the
    case dict for :mod:`mixpim.sim.tb.pe_tb`.
    """
    rng = np.random.default_rng(seed)
    g, k, t = params.group, groups * params.group, params.terms
    slots, reserved = term_table(params)
    sel = rng.integers(0, len(params.types), groups)
    code = np.empty(k, np.int64)
    for gi, s in enumerate(sel):
        ok = np.flatnonzero(~reserved[s])
        if extremes:  # the codes of largest magnitude (the two ends of the type)
            vals = np.array([params.dtypes[s].codes[c] for c in ok])
            ok = ok[np.abs(vals) == np.abs(vals).max()]
        code[gi * g:(gi + 1) * g] = rng.choice(ok, g)
    values = np.array([params.dtypes[sel[i // g]].codes[code[i]] for i in range(k)], np.int64)
    if params.act_format == "int8":
        act = (rng.choice([-128, 127], k) if extremes else rng.integers(-128, 128, k)).astype(np.int8)
    else:
        pool = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x0000, 0x8000]
        bits = (rng.choice(pool, k) if extremes else rng.integers(0, 1 << 16, k)).astype(np.uint16)
        bits = np.where((bits >> 10) & 0x1F == 31, bits & 0x83FF, bits).astype(np.uint16)  # finite
        act = bits.view(np.float16)

    a_val, _ = activation_values(act[None, :], params.act_format)
    isum = group_sums(a_val, values[None, :], g)[0, 0]
    gidx = np.arange(k) // g
    glast_w = np.arange(k) % g == g - 1
    tlast_w = glast_w & (((gidx + 1) % tile_groups == 0) | (gidx == groups - 1))

    # one slot per cycle: weight w's term s; a group ends on its last weight's last term
    w_of = np.repeat(np.arange(k), t)
    s_of = np.tile(np.arange(t), k)
    term = slots[sel[gidx[w_of]], code[w_of], s_of]  # (k*t, 3): valid, sign, shift
    last_slot = s_of == t - 1
    glast, tlast = glast_w[w_of] & last_slot, tlast_w[w_of] & last_slot
    gaps = rng.geometric(0.8, k * t) - 1 if bubbles else np.zeros(k * t, int)
    cyc = np.cumsum(gaps + 1) - 1
    n = int(cyc[-1]) + 2
    col = lambda v, dtype=np.int64: scatter_cycles(n, cyc, v, dtype)  # noqa: E731
    if params.act_format == "int8":
        act_words = pack(pe_act_layout("int8"), col(act[w_of]))
    else:
        sig, exp, _ = fp16_decode(act)
        act_words = pack(pe_act_layout("fp16"), {"sig": col(sig[w_of]), "sh": col(exp[w_of] - 1)})
    term_words = pack(term_layout(params), {"valid": col(term[:, 0]), "sign": col(term[:, 1]),
                                            "shift": col(term[:, 2])})
    ctl = pack(ctl_layout, {"valid": col(np.ones(k * t, bool)), "glast": col(glast), "tlast": col(tlast)})
    res = pack(result_layout(params.psum_bits), {"valid": col(glast), "tlast": col(tlast),
                                                 "value": col(isum[gidx[w_of]], object)})
    ports = ["i_act", "i_term", "i_ctl"]
    rows = np.stack([hex_words(w) for w in (act_words, term_words, ctl)], axis=1)
    return {"ports": np.array(ports), "inputs": rows, "res": hex_words(res)}


def run_bitmod_pe(params: BitmodParams, case, *, build_root=None):
    """Run a :func:`make_bitmod_pe_case` case on the PE of ``params``; returns the measured dict."""
    return run_case(build_design(design_for(params, "pe"), build_root), "pe_tb", case)
