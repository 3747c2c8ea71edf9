"""Decode attention on the NPU's array (the npu-only system, compiler/npu_attention.py): a decode
step computes prefill attention's arithmetic for each request's newest token, so its logits equal
the prefill's of the same tokens bit for bit; its KV caches hold what the prefill's hold."""

import numpy as np
from helpers import TINY16, WHOLE_MODEL_IMEM, rejects
from test_llama_decoder import IDS, _tiny

from mixpim.compiler.emit import CompileError
from mixpim.compiler.llama_decoder import LlamaCompiler
from mixpim.compiler.npu_attention import NpuKVCache, npu_block_caches
from mixpim.models.config import preset
from mixpim.models.executor import execute

LONG = [(7 * i + 3) % 40 for i in range(18)]  # a second key block on a 16-row array


def _prefill(lc, cfg, model, seq, cap):
    """The last row of the prefill's logits of ``seq`` and its last block's cached (keys, values)."""
    caches = npu_block_caches(cfg, model.config, [cap])
    cl = lc.lower(seq, logits="last", caches=caches, request=0)
    res = execute(cl.program)
    assert res.ok and not res.races
    return cl.logits(res)[-1], caches[-1][0].read(res.dram, 0, len(seq))


def _steps(lc, cfg, model, prompts, steps, cap=32):
    """Prefill each prompt into its cache (request i), then ``steps`` greedy decode steps of all of
    them; per step the program, its logits and the prefill logits of the same sequences, and
    whether every request's last-block cache equals the prefill's."""
    caches = npu_block_caches(cfg, model.config, [cap] * len(prompts))
    data, seqs = [], []
    for i, p in enumerate(prompts):
        cl = lc.lower(p, logits="last", caches=caches, request=i, cache_data=data)
        res = execute(cl.program)
        assert res.ok and not res.races
        data = [c.segment(res.dram) for layer in caches for c in layer]
        seqs.append(list(p) + [int(np.argmax(cl.logits(res)[-1]))])
    out = []
    for _ in range(steps):
        cl = lc.lower_step([s[-1] for s in seqs], [len(s) - 1 for s in seqs], caches, data)
        res = execute(cl.program)
        assert res.ok and not res.races
        got = cl.logits(res)
        ref, same = [], True
        for i, s in enumerate(seqs):
            logits, kv = _prefill(lc, cfg, model, s, cap)
            ref.append(logits)
            mine = caches[-1][i // cfg.rows].read(res.dram, i % cfg.rows, len(s))
            same &= all(np.array_equal(a, b) for a, b in zip(mine, kv))
        out.append((cl.program, got, np.array(ref), same))
        data = [c.segment(res.dram) for layer in caches for c in layer]
        for i, s in enumerate(seqs):
            s.append(int(np.argmax(got[i])))
    return out


def test_decode_step_on_the_array_equals_prefill_bit_for_bit(tmp_path):
    # grouped-query attention (6 heads on 2 KV heads), a request past the first key block
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2, layers=2)
    cfg = preset("llm")
    steps = _steps(LlamaCompiler(model, cfg, ranges), cfg, model, [IDS, LONG], 2)
    for prog, got, ref, same in steps:
        assert np.array_equal(got, ref) and same
        assert not any(ins.op.name.startswith("PIM") for ins in prog.instructions)


def test_more_requests_than_rows(tmp_path):
    """Six requests on a 4-row array: two request blocks, each with its own caches."""
    model, ranges = _tiny(tmp_path)
    [(prog, got, ref, same)] = _steps(LlamaCompiler(model, TINY16, ranges), TINY16, model,
                                      [IDS[:n] for n in (3, 7, 5, 4, 6, 2)], 1, cap=16)
    assert got.shape[0] == 6 and np.array_equal(got, ref) and same


def test_decode_step_on_the_array_rtl_equals_golden(tmp_path):
    """A decode step with attention on the array on the Verilated tile: bit- and cycle-exact."""
    from mixpim.sim.tile_cosim import run_programs
    model, ranges = _tiny(tmp_path)
    lc = LlamaCompiler(model, TINY16, ranges)
    [(prog, got, ref, same)] = _steps(lc, TINY16, model, [IDS, IDS[:5]], 1, cap=16)
    assert np.array_equal(got, ref) and same
    [run] = run_programs(TINY16, [prog], imem_words=WHOLE_MODEL_IMEM)
    assert run.ok and run.bit_exact and run.cycle_exact, run.report()[:3000]
    assert run.rtl_status["busy"][3] == 0  # no PIM


def test_refusals(tmp_path):
    model, ranges = _tiny(tmp_path, hidden=192, heads=6, kv_heads=2)
    cfg = preset("llm")
    mk = dict(kv_heads=2, head_dim=32, capacity=8)
    rejects(CompileError, "KV cache: batch 17 exceeds the array's rows (16): one ACT lane per request",
            lambda: NpuKVCache.create(cfg, batch=17, **mk))
    rejects(CompileError, "KV cache: head_dim 24 must be a multiple of the array's cols (16) and of the group (32)",
            lambda: NpuKVCache.create(cfg, batch=1, kv_heads=2, head_dim=24, capacity=8))
    rejects(CompileError, "KV cache: attention on the array takes at most 256 tokens (a softmax row spans at most 16 "
                            "ACC words), not 257",
            lambda: NpuKVCache.create(cfg, batch=1, kv_heads=2, head_dim=32, capacity=257))
    lc = LlamaCompiler(model, cfg, ranges)
    caches = npu_block_caches(cfg, model.config, [8, 8])
    rejects(CompileError, "sub-batch interleaving overlaps attention on PIM; these caches are for attention "
                          "on the array",
            lambda: lc.lower_step([1, 2], [3, 4], caches, interleave=True))
    rejects(CompileError, "a request at position 8 does not fit a KV cache of 8",
            lambda: lc.lower_step([1, 2], [3, 8], caches))


def test_zero_regions_grow():
    """``ModelBuild.zeros``: a later, larger request gets a new, larger zero region (attention on
    the array asks for its largest first, but a program may ask again for more)."""
    from mixpim.compiler.model_build import ModelBuild
    b = ModelBuild(preset("llm"))
    small = b.zeros(32, 8)
    assert b.zeros(32, 100) == small  # within the first 4,096 bytes
    big = b.zeros(32, 1000)
    assert big != small and b.zeros(32, 1000) == big and set(b.dram.symbols) >= {"zeros", "zeros2"}
    assert not any(bytes(s.data).strip(b"\0") for s in b.segments)
