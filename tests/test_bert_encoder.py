"""The BERT encoder compiled to one tile program (compiler/bert_encoder.py): MiniLM on the golden
model against its float32 reference, and a small random encoder layer on the tile RTL."""

import numpy as np
import pytest

from mixpim.compiler.bert_encoder import BertCompiler, calibrate_bert
from mixpim.compiler.bert_float import BertFloat, BertLayerWeights, BertWeights, Norm
from mixpim.compiler.emit import CompileError
from mixpim.compiler.model_config import ModelConfig
from mixpim.models.config import preset
from mixpim.models.executor import execute

from helpers import TINY16, WHOLE_MODEL_IMEM, rejects

LLM = preset("llm")


def _cos(a, b):
    return float((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def minilm():
    from mixpim.compiler.checkpoint import minilm_dir
    from mixpim.compiler.bert_float import minilm_tokenizer
    from mixpim.sim.embed import calibration_ids
    model = BertFloat.load(minilm_dir())
    tok = minilm_tokenizer(minilm_dir())
    return model, tok, calibrate_bert(model, calibration_ids(tok))


def test_minilm_layer_on_golden(minilm):
    model, tok, cal = minilm
    ids = tok.encode("Shift and add.").ids
    bc = BertCompiler(model, LLM, cal)
    cb = bc.lower(ids, layers=1)
    res = execute(cb.program)
    assert res.ok and not res.races
    tr = {}
    model.forward(ids, trace=tr)
    got, ref = cb.hidden(res), tr["layer1.qkv_in"]
    assert min(_cos(g, r) for g, r in zip(got, ref)) > 0.998
    # the embedding LayerNorm alone (no layer) is within the FP16/rsqrt rounding
    e = BertCompiler(model, LLM, cal).lower(ids, layers=0)
    assert min(_cos(g, r) for g, r in zip(e.hidden(execute(e.program)), tr["layer0.qkv_in"])) > 0.9999


def _tiny_bert(seed=0, hidden=32, heads=1, ffn=64, vocab=50, positions=16):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig("bert", 1, hidden, heads, heads, ffn, vocab, positions, 1e-12)

    def m(*shape, s=0.3):
        return (rng.normal(size=shape) * s).astype(np.float32)

    def norm():
        return Norm(1 + m(hidden, s=0.1), m(hidden, s=0.1))
    layer = BertLayerWeights(m(hidden, hidden), m(hidden), m(hidden, hidden), m(hidden), m(hidden, hidden),
                             m(hidden), m(hidden, hidden), m(hidden), norm(), m(ffn, hidden), m(ffn),
                             m(hidden, ffn, s=0.15), m(hidden), norm())
    w = BertWeights(m(vocab, hidden, s=1), m(positions, hidden, s=0.5), m(2, hidden, s=0.1), norm(), (layer,))
    return BertFloat(w, cfg)


def test_tiny_encoder_layer_rtl_equals_golden():
    """A whole encoder layer (attention, FFN, both LayerNorms, the embedding LayerNorm) on the
    Verilated FP16 tile: bit- and cycle-exact with the golden model, and close to float32."""
    from mixpim.sim.tile_cosim import run_programs
    cfg = TINY16
    model = _tiny_bert()
    ids = [3, 17, 42, 5, 9, 28]
    cal = calibrate_bert(model, [ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    cb = BertCompiler(model, cfg, cal).lower(ids)
    [run] = run_programs(cfg, [cb.program], imem_words=WHOLE_MODEL_IMEM)
    assert run.ok, run.report()[:3000]
    assert run.bit_exact and run.cycle_exact
    assert min(_cos(g, r) for g, r in zip(cb.hidden(run.golden), model.forward(ids))) > 0.99


def test_refusals(minilm):
    model, tok, cal = minilm
    rejects(CompileError, "whole models run on FP16-activation (W4A16) tiles, not mixpe-w4a8",
            lambda: BertCompiler(model, preset("fpga"), cal).lower([101, 102]))
    rejects(CompileError, "planes must name Linears of qkv, o, up, down, not ['ffn']",
            lambda: BertCompiler(model, LLM, cal, planes=("ffn",)))
    bc = BertCompiler(model, LLM, cal)
    rejects(CompileError, "prefill attention takes at most 256 tokens on a 16x16 array (a softmax "
            "row spans at most 16 ACC words), not 257", lambda: bc.lower([101] * 257, layers=1))
