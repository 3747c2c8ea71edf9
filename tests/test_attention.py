"""Decode attention on PIM (compiler/attention.py): real MiniLM vectors, a batch of requests with
different context lengths, golden model; accuracy against float attention; both row-buffer modes;
the chunked softmax path; what does not fit is refused. (The RTL runs are in test_pim_rtl.py.)"""

import dataclasses

import numpy as np
import pytest

from mixpim.compiler.attention import AttentionBatch, attention_reference, lower_decode_attention
from mixpim.compiler.emit import CompileError
from mixpim.models.config import preset
from mixpim.models.executor import execute
from mixpim.models.isa import ErrorCode, Opcode

TINY = preset("tiny")


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def minilm_batch():
    ck = pytest.importorskip("mixpim.compiler.checkpoint")
    from mixpim.sim.attention_data import minilm_attention_batch
    try:
        return minilm_attention_batch(heads=2)
    except ck.CheckpointError as e:
        pytest.skip(str(e))


def synthetic(lengths, heads=2, dk=32, seed=0, qk=2.0):
    """Random requests; queries and keys of standard deviation ``qk`` (2: attention about as
    peaked as MiniLM's; with 1 it is nearly uniform over long contexts, the output a small average
    dominated by quantization noise)."""
    rng = np.random.default_rng(seed)
    b = len(lengths)
    return AttentionBatch(rng.normal(0, qk, (b, heads, dk)).astype(np.float32),
                          rng.normal(0, qk, (b, heads, dk)).astype(np.float32),
                          rng.normal(0, 1, (b, heads, dk)).astype(np.float32),
                          tuple(rng.normal(0, qk, (n, heads, dk)).astype(np.float32) for n in lengths),
                          tuple(rng.normal(0, 1, (n, heads, dk)).astype(np.float32) for n in lengths))


def run(compiled, mode=None):
    prog = compiled.program
    if mode is not None:
        prog = dataclasses.replace(prog, config=prog.config.in_pim_mode(mode))
    r = execute(prog)
    assert r.status.error == ErrorCode.OK and not r.races
    return r


def test_minilm_decode_attention_is_accurate_in_both_modes(minilm_batch):
    b = minilm_batch
    assert len({len(k) for k in b.k_cache}) == b.batch == 4  # different context lengths
    c = lower_decode_attention(TINY, b)
    ops = {i.op for i in c.program.instructions}
    assert {Opcode.PIM_GBUF, Opcode.PIM_WRITE, Opcode.PIM_GEMV, Opcode.PIM_READ, Opcode.VSOFT} <= ops
    dual, single = run(c, "dual"), run(c, "single")
    out = c.output(dual)
    assert np.array_equal(out, c.output(single))
    assert dual.status.cycles != single.status.cycles
    for i in range(b.batch):
        assert cosine(out[i], c.reference[i]) >= 0.99, i


def test_the_append_writes_the_new_key_and_value_into_the_cache():
    b = synthetic([3, 7])
    c = lower_decode_attention(TINY, b)
    r = run(c)
    # the PIM_WRITEs are program outputs: 2 heads x (K, V) x 2 requests of head_dim bytes
    writes = [s for s in r.outputs if len(s.data) == 32]
    assert len(writes) == 8


def test_reference_is_softmax_attention():
    b = synthetic([0, 2], heads=1, dk=4)
    ref = attention_reference(b)
    # one token in the cache of nothing: the output is that token's value
    assert np.allclose(ref[0], b.v_new[0].reshape(-1))


def test_chunked_softmax_equals_the_whole_row_path():
    # a VPARAM too small for a row's multipliers: they are loaded chunk by chunk for every pass
    b = synthetic([20, 27])
    small = TINY.replace(vparam_words=96)  # 96 - 72 = 24 words: 12 values per chunk
    big, chunked = lower_decode_attention(TINY, b), lower_decode_attention(small, b)
    assert len(chunked.program.instructions) > len(big.program.instructions)
    assert np.array_equal(big.output(run(big)), chunked.output(run(chunked)))


def test_contexts_longer_than_a_row_group():
    b = synthetic([40, 70, 5, 33], heads=1)  # row groups of 32 tokens: 2 or 3 groups per request
    c = lower_decode_attention(TINY.replace(act_words=512, acc_words=128, vparam_words=512), b)
    out = c.output(run(c))
    for i in range(4):
        assert cosine(out[i], c.reference[i]) >= 0.99


@pytest.mark.parametrize("cfg, batch, message", [
    (TINY, synthetic([1] * 5), "batch 5 exceeds the array's rows (4)"),
    (TINY, synthetic([1], dk=24), "head_dim 24 must divide the DRAM row (256 bytes)"),
    (TINY.replace(pe="mixpe-w4a16"), synthetic([1]), "decode attention needs INT8 activations"),
    (TINY, synthetic([1], heads=3), "ACT (256 words) cannot hold"),
])
def test_what_does_not_fit_is_refused(cfg, batch, message):
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lower_decode_attention(cfg, batch)


def test_opening_row_groups_ahead_keeps_the_outputs_and_is_chosen_by_cycles():
    b = synthetic([40, 20], heads=1)  # two row groups (32 tokens each) on tiny
    ahead = lower_decode_attention(TINY, b, open_ahead=True)
    plain = lower_decode_attention(TINY, b, open_ahead=False)
    assert Opcode.PIM_ACT in {i.op for i in ahead.program.instructions}
    assert Opcode.PIM_ACT not in {i.op for i in plain.program.instructions}
    ra, rp = run(ahead), run(plain)
    assert np.array_equal(ahead.output(ra), plain.output(rp))
    auto = lower_decode_attention(TINY, b)
    fastest = min(ra.status.cycles, rp.status.cycles)
    assert run(auto).status.cycles == fastest
    with pytest.raises(CompileError, match="needs two PIM row buffers"):
        lower_decode_attention(TINY.replace(pim_row_buffers=1), b, open_ahead=True)
    one = lower_decode_attention(TINY.replace(pim_row_buffers=1), b)
    assert Opcode.PIM_ACT not in {i.op for i in one.program.instructions}
