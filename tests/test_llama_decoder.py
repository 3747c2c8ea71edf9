"""The LLaMA decoder's prefill compiled to one tile program (compiler/llama_decoder.py): small
random checkpoints written as real GGUF files (tests/tiny_gguf.py) on the golden model and on the
tile RTL, and SmolLM2's first blocks against its float32 reference."""

import dataclasses

import numpy as np
import pytest
from helpers import TINY16, WHOLE_MODEL_IMEM, rejects
from tiny_gguf import write_tiny_llama

from mixpim.compiler.calibrate import calibrate_llama
from mixpim.compiler.emit import CompileError
from mixpim.compiler.gguf_checkpoint import llama_weights
from mixpim.compiler.llama_decoder import LlamaCompiler
from mixpim.compiler.llama_float import LlamaFloat
from mixpim.models.config import preset
from mixpim.models.executor import execute

IDS = [3, 17, 22, 5, 9, 28, 1]
PROMPT2 = [4, 8, 15, 16, 23]


def _tiny(tmp_path, **kw):
    w = llama_weights(write_tiny_llama(tmp_path / "tiny.gguf", **kw))
    model = LlamaFloat(w, w.config)
    # static scales from sample sequences (a random model has no text to calibrate on)
    return model, calibrate_llama(model, [IDS, PROMPT2, list(range(20))])


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_grouped_query_attention_on_golden(tmp_path):
    # 6 query heads on 2 KV heads, 7 tokens: causal, RoPE, SwiGLU, RMSNorm, the Q8_0 LM head
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2)
    cl = LlamaCompiler(model, preset("llm"), ranges).lower(IDS)
    res = execute(cl.program)
    assert res.ok and not res.races
    got, ref = cl.logits(res), model.forward(IDS)
    assert _cosines(got, ref).min() > 0.999
    assert (got.argmax(1) == ref.argmax(1)).all()
    # logits of the last token block only (generation): the same rows
    ids = IDS * 3  # 21 tokens: the last block holds tokens 16..20
    cl = LlamaCompiler(model, preset("llm"), ranges).lower(ids, logits="last")
    last = cl.logits(execute(cl.program))
    assert last.shape == (5, 40)
    ref = model.forward(ids)[16:]
    assert _cosines(last, ref).min() > 0.995 and (last.argmax(1) == ref.argmax(1)).all()


def test_hidden_state_of_the_first_blocks(tmp_path):
    """``logits="none"``: no final norm or LM head; the residual stream after the compiled blocks
    (prefill into the first block's KV cache, then a one-block decode step) against float32."""
    from mixpim.compiler.llama_cache import layer_caches
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2, layers=2)
    cfg = preset("llm")
    lc = LlamaCompiler(model, cfg, ranges)
    caches = layer_caches(cfg, model.config, batch=1, capacity=16)
    seen = {}

    def trace(layer, name, a):
        if layer == 0 and name == "residual":
            seen.setdefault("res", []).append(a.copy())
    model.forward(IDS + [11], trace=trace)
    ref = seen["res"][0]
    cl = lc.lower(IDS, layers=1, logits="none", caches=caches[:1])
    res = execute(cl.program)
    assert res.ok and not res.races and cl.logits_at is None
    got = cl.hidden(res)
    assert got.shape == (len(IDS), 192) and _cosines(got, ref[:len(IDS)]).min() > 0.999
    st = lc.lower_step([11], [len(IDS)], caches[:1], [caches[0].segment(res.dram)], layers=1, logits="none")
    got = st.hidden(execute(st.program))
    assert got.shape == (1, 192) and _cosines(got, ref[-1:])[0] > 0.999
    rejects(CompileError, "2 KV caches for 1 compiled blocks",
            lambda: lc.lower(IDS, layers=1, caches=caches))
    rejects(CompileError, "a decode step's logits must be 'all' or 'none', not 'last'",
            lambda: lc.lower_step([11], [7], caches[:1], layers=1, logits="last"))
    rejects(CompileError, "layers must be in 0..2, not 3", lambda: lc.lower(IDS, layers=3))


def test_tiny_decoder_layer_rtl_equals_golden(tmp_path):
    """A whole decoder block and the LM head on the Verilated FP16 tile with group offsets:
    bit- and cycle-exact with the golden model (one build for every whole-model RTL test)."""
    from mixpim.sim.tile_cosim import run_programs
    model, ranges = _tiny(tmp_path)
    cl = LlamaCompiler(model, TINY16, ranges).lower(IDS)
    [run] = run_programs(TINY16, [cl.program], imem_words=WHOLE_MODEL_IMEM)
    assert run.ok, run.report()[:3000]
    assert run.bit_exact and run.cycle_exact
    assert _cosines(cl.logits(run.golden), model.forward(IDS)).min() > 0.999


@pytest.fixture(scope="module")
def smollm2():
    from mixpim.compiler.gguf_checkpoint import smollm2_path
    from mixpim.compiler.gguf_tokenizer import gguf_tokenizer
    from mixpim.compiler.sample_text import CALIBRATION_TEXT
    w = llama_weights(smollm2_path())
    model, tok = LlamaFloat(w, w.config), gguf_tokenizer(smollm2_path())
    return model, tok, calibrate_llama(model, [tok.encode(CALIBRATION_TEXT).ids])


def test_smollm2_first_blocks(smollm2):
    model, tok, ranges = smollm2
    ids = tok.encode("The capital of France is").ids
    cl = LlamaCompiler(model, preset("llm"), ranges).lower(ids, layers=2, tune=False)
    res = execute(cl.program, check_races=False)
    assert res.ok
    w = model.weights
    two = LlamaFloat(dataclasses.replace(w, blocks=w.blocks[:2]), dataclasses.replace(w.config, layers=2))
    got, ref = cl.logits(res), two.forward(ids)
    assert _cosines(got, ref).min() > 0.999 and (got.argmax(1) == ref.argmax(1)).all()


def test_refusals(smollm2):
    model, tok, ranges = smollm2
    rejects(CompileError, "Q4_1 weights need a tile with group_offset and group 32 (the llm preset)",
            lambda: LlamaCompiler(model, preset("llm").replace(group_offset=False), ranges))
    rejects(CompileError, "whole models run on FP16-activation (W4A16) tiles, not mixpe-w4a8",
            lambda: LlamaCompiler(model, preset("fpga"), ranges))


def _generate(lc, model, cfg, prompts, steps, run=execute, interleave=False):
    """Prefill every prompt into its KV cache rows, then ``steps`` batched decode steps; returns
    the tile's tokens, the float32 model's logits of the same sequences, and the step programs
    (with ``interleave``, each step also as an interleaved program, whose logits and KV caches
    must equal the plain step's bit for bit)."""
    from mixpim.compiler.llama_cache import layer_caches
    caches = layer_caches(cfg, model.config, batch=len(prompts), capacity=32)
    data, seqs, lengths, progs, agree = [], [], [], [], []
    for i, p in enumerate(prompts):
        cl = lc.lower(p, logits="last", caches=caches, request=i, cache_data=data)
        res = execute(cl.program)
        assert res.ok and not res.races
        data = [c.segment(res.dram) for c in caches]
        seqs.append(list(p) + [int(np.argmax(cl.logits(res)[-1]))])
        lengths.append(len(p))
    for _ in range(steps):
        cl = lc.lower_step([s[-1] for s in seqs], lengths, caches, data)
        progs.append(cl.program)
        # compiled ahead for placeholder tokens, then given the tokens and caches: the same program
        ahead = lc.retarget(lc.lower_step([0] * len(seqs), lengths, caches), [s[-1] for s in seqs], data)
        assert ahead.program.to_bytes() == cl.program.to_bytes()
        if not progs[1:]:  # the Linears' streams re-emitted from the compiler's memo: the same program
            memo, lc.linear_memo = lc.linear_memo, None
            try:
                assert memo and lc.lower_step([s[-1] for s in seqs], lengths, caches,
                                              data).program.to_bytes() == cl.program.to_bytes()
            finally:
                lc.linear_memo = memo
        res = run(cl.program)
        assert res.ok and not res.races
        got = cl.logits(res)
        if interleave:
            il = lc.lower_step([s[-1] for s in seqs], lengths, caches, data, interleave=True)
            progs.append(il.program)
            twin = run(il.program)
            assert twin.ok and not twin.races
            assert np.array_equal(il.logits(twin), got)
            assert all(c.segment(twin.dram) == c.segment(res.dram) for c in caches)
        data = [c.segment(res.dram) for c in caches]
        for i, s in enumerate(seqs):
            ref = model.forward(s)[-1]
            agree.append(_cosines(got[i:i + 1], ref[None])[0])
            s.append(int(np.argmax(got[i])))
        lengths = [n + 1 for n in lengths]
    return seqs, np.array(agree), progs


def test_batched_decode_on_pim(tmp_path):
    """Two prompts prefilled into their KV caches in the PIM banks, then batched decode steps
    (grouped-query attention on PIM): every step's logits match the float32 model's on the same
    sequence."""
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2)
    lc = LlamaCompiler(model, preset("llm"), ranges)
    seqs, agree, _ = _generate(lc, model, preset("llm"), [IDS, PROMPT2], 3)
    assert agree.min() > 0.99 and all(len(s) == n + 4 for s, n in zip(seqs, (7, 5)))


def test_sub_batch_interleaving(tmp_path):
    """Three requests in two sub-batches (a whole PIM slot of two, then one), two blocks: every
    interleaved step computes the plain step's logits and KV caches bit for bit, and its PIM
    work overlaps GEMMs (the plain step's attention overlaps none)."""
    from mixpim.compiler.llama_cache import layer_caches
    from mixpim.compiler.llama_interleave import split_batch
    from mixpim.models.units import Unit
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2, layers=2)
    cfg = preset("llm")
    lc = LlamaCompiler(model, cfg, ranges)
    assert [split_batch(cfg, n) for n in (2, 3, 4, 5, 16)] == [1, 2, 2, 4, 8]
    _, agree, progs = _generate(lc, model, cfg, [IDS, PROMPT2, list(range(1, 6))], 2, interleave=True)
    assert agree.min() > 0.98  # the plain steps against float32 (a random two-block model)

    def overlap(prog):  # cycles in which both PIM and GEMM are busy
        t = execute(prog, timing_only=True).timing
        busy = {u: np.zeros(t.cycles + 1, bool) for u in (Unit.GEMM, Unit.PIM)}
        for pc in t.executed:
            u = prog.instructions[pc].unit
            if u in busy:
                busy[u][t.start[pc]:t.end[pc] + 1] = True
        return int((busy[Unit.GEMM] & busy[Unit.PIM]).sum())
    assert overlap(progs[0]) == 0 and overlap(progs[1]) > 1000
    caches = layer_caches(cfg, model.config, batch=2, capacity=16)
    rejects(CompileError, "sub-batch interleaving needs at least 2 requests, not 1",
            lambda: lc.lower_step([5], [3], caches, interleave=True))
    rejects(CompileError, "an interleaved decode step computes the logits (logits='all')",
            lambda: lc.lower_step([5, 6], [3, 3], caches, interleave=True, logits="none"))


def test_decode_step_rtl_equals_golden(tmp_path):
    """A batched decode step (two requests, attention on PIM, every block and the LM head), plain
    and with sub-batch interleaving, on the Verilated tile: bit- and cycle-exact with golden."""
    from mixpim.sim.tile_cosim import run_programs
    model, ranges = _tiny(tmp_path)
    lc = LlamaCompiler(model, TINY16, ranges)
    _, agree, progs = _generate(lc, model, TINY16, [IDS, PROMPT2], 1, interleave=True)
    runs = run_programs(TINY16, progs, imem_words=WHOLE_MODEL_IMEM)  # plain, then interleaved
    for run in runs:
        assert run.ok and run.bit_exact and run.cycle_exact, run.report()[:3000]
        assert run.rtl_status["busy"][3] > 0 and agree.min() > 0.999  # the PIM unit ran


def test_rope_when_half_a_head_is_narrower_than_the_array(tmp_path):
    """head_dim 32 on 32 columns: the QKV rows are permuted so that two heads' first halves share
    a feature block and their second halves the next (llama_kernels.RopeLayout); prefill and a
    decode step on PIM still match the float32 model."""
    from mixpim.compiler.llama_kernels import RopeLayout
    cfg = preset("llm").replace(rows=32, cols=32, vparam_words=4096)
    lay = RopeLayout.of(cfg, 32)
    assert (lay.blocks, lay.heads_per) == (1, 2)
    assert list(lay.perm(64)) == list(range(16)) + list(range(32, 48)) + list(range(16, 32)) + list(range(48, 64))
    assert list(RopeLayout.of(preset("llm"), 64).perm(128)) == list(range(128))  # 16 columns: as before
    rejects(CompileError, "RoPE needs half a head (24 / 2) to be a multiple or a divisor of the array's cols (32)",
            lambda: RopeLayout.of(cfg, 24))
    model, ranges = _tiny(tmp_path, hidden=128, heads=4, kv_heads=2)
    lc = LlamaCompiler(model, cfg, ranges)
    cl = lc.lower(IDS)
    res = execute(cl.program)
    got, ref = cl.logits(res), model.forward(IDS)
    assert res.ok and _cosines(got, ref).min() > 0.999 and (got.argmax(1) == ref.argmax(1)).all()
    seqs, agree, _ = _generate(lc, model, cfg, [IDS, PROMPT2], 2)
    assert agree.min() > 0.99
