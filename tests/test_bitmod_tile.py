"""BitMoD as a PE kind of the tile (``pe="bitmod-w4a8"`` / ``"bitmod-w4a16"``), golden side:

* the GEMM cycle model: a beat every ``terms`` cycles, output rows every ``scale_bits`` cycles
  (hand-derived numbers from docs/tile.md's rules);
* ``wsrc`` is refused at dispatch (``BAD_FIELD``);
* META entries carry the type selector in the zero point's byte;
* compiled Linear layers with BitMoD-quantized weights: the golden run equals the layer computed
  without the tile, both by :func:`~mixpim.models.bitmod_gemm.bitmod_gemm` and by a plain
  integer numpy product of the dequantized weights (``mant * value``) and the activations;
* the compiler refuses weights the tile cannot take.

The Verilated tile is compared with the golden model in tests/test_tile_rtl.py.
"""

import numpy as np
import pytest

from mixpim.compiler.emit import CompileError
from mixpim.compiler.linear import lower_linear
from mixpim.compiler.operands import weight_blocks
from mixpim.models.bitmod import quantize_bitmod, quantize_format
from mixpim.models.config import preset
from mixpim.models.errors import RangeError, ShapeError
from mixpim.models.executor import execute, unpack_meta, unpack_wgt
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Unit
from mixpim.models.quant import quantize_weights
from mixpim.models.tile_array import array_params
from mixpim.models.tile_timing import check_instruction, gemm_cycles, simulate

TINY = preset("tiny")
BITMOD = TINY.replace(pe="bitmod-w4a16")  # 4 x 4, group 32, 16-bit scales: 4 * 16 <= 32 * 2
HALT = Instruction(Opcode.HALT)


def gemm(groups=1, acc_addr=0, **kw):
    return Instruction(Opcode.GEMM, groups=groups, acc_addr=acc_addr, **kw)


def test_gemm_timing_is_bit_serial():
    # T = 2 cycles per beat, S = 16 between rows, L = T + cols + 1 + S = 23. One group: D = 64,
    # busy 1..64; the last beat is read in 63 and enters in 64; row r leaves in 64 + 23 + 16 r:
    # the last (r = 3) in 135 = 1 + 64 - 1 + tail, tail = L + 2 - T + 3 S = 71.
    assert tuple(gemm_cycles(BITMOD, 1)) == (64, 71)
    r = simulate(BITMOD, [gemm(), gemm(acc_addr=4), HALT])
    assert (int(r.start[0]), int(r.end[0]), int(r.complete[0])) == (1, 64, 135)
    # the second GEMM's beats overlap the first one's drain: busy 65..128, done 128 + 71
    assert (int(r.start[1]), int(r.end[1]), int(r.complete[1])) == (65, 128, 199)
    assert (r.cycles, r.busy[Unit.GEMM]) == (201, 128)
    # 3-bit mixture, INT8 activations, 8-bit scales, 2 x 3: L = 2 + 3 + 1 + 8 = 14, two groups
    cfg = TINY.replace(pe="bitmod-w4a8", wbits=3, rows=2, cols=3, scale_bits=8)
    assert tuple(gemm_cycles(cfg, 2)) == (2 * 32 * 2, 14 + 2 - 2 + 8)
    p = array_params(cfg)
    assert (p.cycles_per_beat, p.latency, p.row_interval) == (2, 14, 8)


@pytest.mark.parametrize("cfg", [BITMOD, TINY.replace(pe="bitmod-w4a8", wbits=3, rows=3, cols=5, group=64,
                                                      scale_bits=8), TINY, TINY.replace(pe="baseline-w4a16")])
def test_gemm_duration_agrees_with_the_array_cycle_models(cfg):
    # One GEMM is one array tile fed back to back: from its first beat's transfer (start + 1)
    # to its last row's ACC write (the completion) the arrays' own models count ``total`` cycles.
    from mixpim.models.bitmod_gemm import bitmod_timing
    from mixpim.models.mixpe import array_timing
    p = array_params(cfg)
    timing = bitmod_timing if cfg.family == "bitmod" else array_timing
    for groups in (1, 3):
        busy, tail = gemm_cycles(cfg, groups)
        assert busy - 1 + tail == timing(p, cfg.rows, cfg.cols, groups * cfg.group).total


def test_wsrc_is_refused():
    fault = check_instruction(BITMOD, gemm(wsrc=1))
    assert fault == (ErrorCode.BAD_FIELD, "GEMM wsrc needs weights with zero points (4-bit nibble "
                                          "passes); bitmod-w4a16 has none")
    r = simulate(BITMOD, [gemm(wsrc=1), HALT])
    assert (r.error, r.error_pc) == (ErrorCode.BAD_FIELD, 0)


def test_meta_entries_hold_the_selector():
    rng = np.random.default_rng(0)
    qw = quantize_bitmod(rng.normal(size=(6, 70)), 4, 32, scale_bits=16)
    wgt, meta = weight_blocks(BITMOD, qw)
    assert len(wgt) == len(meta) == 2  # two feature blocks of 4
    codes = np.concatenate([unpack_wgt(BITMOD, w).T for w in wgt])  # (8, 96)
    assert (codes[:6, :70] == qw.codes).all() and not codes[6:].any() and not codes[:, 70:].any()
    sel, mant = (np.concatenate([x.T for x in xs]) for xs in zip(*(unpack_meta(BITMOD, m) for m in meta)))
    assert (sel[:6] == qw.selector).all() and (mant[:6] == qw.scales.mant).all()
    assert set(np.unique(qw.selector)) > {0}  # several types chosen


def integer_reference(cfg, act, qw):
    """``acc`` (M, N) as Python ints: activations in the array's units (INT8 values; FP16 times
    2**24, exact) times ``mant[n, g] * value[n, k]``, summed by numpy over object arrays."""
    if cfg.act_format == "fp16":
        a = np.array([[int(np.float64(x) * 2 ** 24) if np.isfinite(x) else 0 for x in row] for row in act],
                     dtype=object)
    else:
        a = act.astype(np.int64).astype(object)
    k = act.shape[1]
    mant = np.repeat(qw.scales.mant, qw.group, axis=1)[:, :k].astype(np.int64)
    return a.dot((mant * qw.table_values()).astype(object).T)


@pytest.mark.parametrize("pe,wbits", [("bitmod-w4a16", 4), ("bitmod-w4a16", 3), ("bitmod-w4a8", 4),
                                      ("bitmod-w4a8", 3)])
@pytest.mark.parametrize("m,n,k", [(7, 10, 80), (4, 4, 32), (9, 5, 200)])
def test_golden_linear_equals_the_layer(pe, wbits, m, n, k):
    cfg = TINY.replace(pe=pe, wbits=wbits)
    rng = np.random.default_rng(m * n + k)
    qw = quantize_bitmod(rng.normal(size=(n, k)), wbits, cfg.group, scale_bits=cfg.scale_bits)
    cl = lower_linear(cfg, (m, k), qw, seed=k)
    res = execute(cl.program)
    assert res.status.error == ErrorCode.OK and not res.races
    got = np.asarray(cl.layout.output(res), dtype=object)
    ref = integer_reference(cfg, cl.act, qw)
    assert (got == ref).all()
    assert (np.asarray(cl.reference(), dtype=object) == ref).all()
    # and the real-valued layer: acc * 2**-e (* 2**-24 for FP16) = act @ dequantized weights
    scale = 2.0 ** -24 if cfg.act_format == "fp16" else 1.0
    y = np.ldexp(got.astype(np.float64), -qw.scales.exp[None, :]) * scale
    y_ref = cl.act.astype(np.float64) @ qw.dequantize().T
    assert np.allclose(y, y_ref, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("fmt,wbits", [("bitmod3", 3), ("fp4-ea-pos", 4), ("fp3-er-neg", 3)])
def test_golden_linear_with_mixpim_quant_formats(fmt, wbits):
    # the formats of `mixpim quant` (models.bitmod.quantize_format): the mixtures, or one of the
    # mixture's types, which the compiler maps to its selector on the tile
    cfg = BITMOD.replace(wbits=wbits)
    rng = np.random.default_rng(wbits)
    qw = quantize_format(rng.normal(size=(6, 64)), fmt, cfg.group, scale_bits=cfg.scale_bits)
    cl = lower_linear(cfg, (5, 64), qw, seed=1)
    got = np.asarray(cl.layout.output(execute(cl.program)), dtype=object)
    assert (got == integer_reference(cfg, cl.act, qw)).all()


def test_golden_linear_int8_output():
    cfg = TINY.replace(pe="bitmod-w4a8", wbits=3)
    rng = np.random.default_rng(5)
    qw = quantize_bitmod(rng.normal(size=(10, 96)), 3, cfg.group, scale_bits=cfg.scale_bits)
    cl = lower_linear(cfg, (6, 96), qw, seed=2, out="int8", x_scale=0.05)
    res = execute(cl.program)
    assert res.status.error == ErrorCode.OK
    out = cl.layout.output(res)
    assert (out == cl.reference()).all() and np.abs(out).max() > 64


def test_compiler_refuses_weights_the_tile_cannot_take():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 64))
    with pytest.raises(CompileError, match="weights must be BitmodWeights on a bitmod-w4a16 tile, "
                                           "not QuantizedWeights"):
        lower_linear(BITMOD, (4, 64), quantize_weights(w, 4, 32))
    with pytest.raises(CompileError, match="weights must be QuantizedWeights on a mixpe-w4a8 tile, "
                                           "not BitmodWeights"):
        lower_linear(TINY, (4, 64), quantize_bitmod(w, 4, 32))
    with pytest.raises(RangeError, match="the weights use FP4, which this array does not have"):
        lower_linear(BITMOD, (4, 64), quantize_format(w, "fp4", 32))
    with pytest.raises(RangeError, match="the weights use FP3_ER_POS"):
        lower_linear(BITMOD, (4, 64), quantize_bitmod(w, 3, 32))  # a 4-bit tile
    with pytest.raises(ShapeError, match="weights are quantized in groups of 64, the array uses 32"):
        lower_linear(BITMOD, (4, 64), quantize_bitmod(w, 4, 64))
    with pytest.raises(RangeError, match="16-bit scales do not fit the array's 8-bit scales"):
        lower_linear(BITMOD.replace(scale_bits=8), (4, 64), quantize_bitmod(w, 4, 32, scale_bits=16))


def test_cli_compiles_for_a_bitmod_tile(tmp_path):
    # `mixpim compile` draws weights in the tile's BitMoD mixture; `mixpim run` executes them
    import subprocess
    import sys
    cfg = tmp_path / "bitmod.toml"
    cfg.write_text(TINY.replace(pe="bitmod-w4a8", wbits=3).to_toml(), encoding="utf-8")
    prog = tmp_path / "linear.mxpm"

    def mixpim(*args):
        return subprocess.run([sys.executable, "-m", "mixpim.sim.cli", *args], capture_output=True,
                              text=True, timeout=600)
    r = mixpim("compile", "linear", "--config", str(cfg), "--m", "5", "--n", "6", "--k", "64",
               "-o", str(prog))
    assert r.returncode == 0, r.stderr
    r = mixpim("run", str(prog))
    assert r.returncode == 0, r.stderr
    assert "status    OK" in r.stdout and "races 0" in r.stdout


def test_golden_ffn_on_a_bitmod_tile():
    # the FFN block x + gelu(x w1^T) w2^T (INT8 activations) with both weights in the 3-bit mixture
    from mixpim.compiler import lower_ffn
    from mixpim.models.bitmod import BitmodWeights
    cfg = TINY.replace(pe="bitmod-w4a8", wbits=3)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 40))
    w1, w2 = rng.standard_normal((70, 40)) * 0.2, rng.standard_normal((40, 70)) * 0.2
    cf = lower_ffn(cfg, x, w1, w2)
    assert isinstance(cf.qw1, BitmodWeights) and cf.qw1.format == "bitmod3"
    res = execute(cf.program)
    assert res.status.error == ErrorCode.OK and not res.races
    y = cf.output(res)
    assert (y == cf.reference()).all()
    # and close to the float block (3-bit weights, int8 activations)
    from mixpim.compiler.ffn import ffn_reference
    got, want = cf.dequantize(y).ravel(), np.asarray(ffn_reference(x, w1, w2), np.float64).ravel()
    assert got @ want / np.linalg.norm(got) / np.linalg.norm(want) > 0.97  # 0.9856 measured


def test_weight_packing_refuses_the_other_format():
    # every compiler path packs weights through weight_blocks: a model compiler that quantized
    # to INT codes cannot silently put zero points where a BitMoD tile reads selectors
    w = np.random.default_rng(0).normal(size=(4, 32))
    with pytest.raises(CompileError, match=r"QuantizedWeights cannot run on a bitmod-w4a16 tile \(BitMoD "
                                           r"tiles take BitmodWeights, the others QuantizedWeights\)"):
        weight_blocks(BITMOD, quantize_weights(w, 4, 32))
    with pytest.raises(CompileError, match="BitmodWeights cannot run on a mixpe-w4a8 tile"):
        weight_blocks(TINY, quantize_bitmod(w, 4, 32))


def test_golden_linear_on_minilm_weights():
    # real weights (32 output features of MiniLM's layer-0 query projection, 384 inputs) in the
    # 4-bit mixture, times real FP16 activations (5 tokens' word embeddings)
    from mixpim.compiler.checkpoint import load_tensors, minilm_dir
    t = load_tensors(minilm_dir(), ["encoder.layer.0.attention.self.query.weight",
                                    "embeddings.word_embeddings.weight"])
    w = t["encoder.layer.0.attention.self.query.weight"][:32].astype(np.float64)
    act = t["embeddings.word_embeddings.weight"][[101, 7592, 2088, 2003, 102]].astype(np.float16)
    qw = quantize_bitmod(w, 4, BITMOD.group, scale_bits=BITMOD.scale_bits)
    assert len(set(qw.selector.ravel())) == 4  # every type of the mixture is chosen somewhere
    cl = lower_linear(BITMOD, act, qw)
    got = np.asarray(cl.layout.output(execute(cl.program)), dtype=object)
    assert (got == integer_reference(BITMOD, act, qw)).all()
