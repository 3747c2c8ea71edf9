"""Decode attention on PIM inside a whole-model program (compiler/decode_attention.py): the golden
executor's output against float64 attention over the same quantized K/V, the cache append, two
consecutive steps sharing the cache, and the argument checks."""

import math

import numpy as np
import pytest
from helpers import TINY16, WHOLE_MODEL_IMEM

from mixpim.compiler.decode_attention import KVCache, decode_attention
from mixpim.compiler.emit import CompileError
from mixpim.compiler.model_build import ActTensor, ModelBuild
from mixpim.compiler.model_kernels import Regions, start_program
from mixpim.models.config import preset
from mixpim.models.executor import execute

CFG = preset("llm")


def _act_tensor(b, name, x):
    """An ActTensor holding ``x`` (B x k) as FP16 (block 0, K-major)."""
    cfg = b.cfg
    m, k = x.shape
    kw = -(-k // cfg.group) * cfg.group
    words = np.zeros((kw, cfg.rows), np.float16)
    words[:k, :m] = x.T
    base = b.region(name, words.nbytes, cfg.act_word_bytes, words.tobytes())
    return ActTensor(base, m, k, kw)


def _read_act(cfg, res, t):
    raw = res.dram[t.base:t.base + t.kw * cfg.act_word_bytes]
    return np.frombuffer(raw.tobytes(), np.float16).reshape(t.kw, cfg.rows)[:t.k, :t.m].T.astype(np.float64)


def _quant(x, scale):
    return np.clip(np.rint(x / scale), -127, 127).astype(np.int8)


class _Model:
    """Random float attention state: static per-channel K (per RoPE pair) and V scales, the
    quantized cache per request, and per step the quantized queries and new K/V."""

    def __init__(self, rng, lengths, heads, kv_heads, hd):
        self.rng, self.heads, self.kvh, self.hd = rng, heads, kv_heads, hd
        kw = kv_heads * hd
        kmax = rng.uniform(0.5, 2.0, kw)
        kmax = np.maximum(kmax, np.roll(kmax.reshape(kv_heads, 2, hd // 2), 1, axis=1).reshape(kw))
        self.k_scale = kmax / 127  # shared by each RoPE pair (c, c + hd/2)
        self.kmax, self.vmax = kmax, rng.uniform(0.2, 1.5, kw)
        self.v_scale = self.vmax / 127
        self.keys = [self._k(n) for n in lengths]
        self.values = [self._v(n) for n in lengths]

    def _k(self, n):
        x = self.rng.uniform(-1, 1, (n, self.kvh * self.hd)) * self.kmax
        return _quant(x, self.k_scale).reshape(n, self.kvh, self.hd)

    def _v(self, n):
        x = self.rng.uniform(-1, 1, (n, self.kvh * self.hd)) * self.vmax
        return _quant(x, self.v_scale).reshape(n, self.kvh, self.hd)

    def step(self):
        """New inputs: ``(q_int, q_scale, k_new, v_new)`` and the reference after appending."""
        B, H, hd, grp = len(self.keys), self.heads, self.hd, self.heads // self.kvh
        q = self.rng.normal(0, 1.5, (B, H, hd))
        ks = self.k_scale.reshape(self.kvh, hd)[np.arange(H) // grp]  # (H, hd)
        qf = q * ks[None]  # folded into the queries: real q . k = qf . k_int
        q_scale = np.abs(qf).max(axis=(0, 2)) / 127
        q_int = np.clip(np.rint(qf / q_scale[None, :, None]), -127, 127)
        k_new, v_new = self._k(B), self._v(B)
        for i in range(B):
            self.keys[i] = np.concatenate([self.keys[i], k_new[i][None]])
            self.values[i] = np.concatenate([self.values[i], v_new[i][None]])
        ref = np.zeros((B, H, hd))
        for i in range(B):
            k = self.keys[i].astype(np.float64)[:, np.arange(H) // grp]  # (T, H, hd)
            v = self.values[i].astype(np.float64)[:, np.arange(H) // grp] * \
                self.v_scale.reshape(self.kvh, hd)[np.arange(H) // grp][None]
            s = np.einsum("hd,thd->ht", q_int[i], k) * q_scale[:, None] / math.sqrt(hd)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            ref[i] = np.einsum("ht,thd->hd", p, v)
        return q_int, q_scale, k_new, v_new, ref


def _program(cache, model, lengths, q_int, q_scale, k_new, v_new, init):
    H, kvh, hd = model.heads, model.kvh, model.hd
    B = len(lengths)
    b = ModelBuild(cache.cfg)
    cache.attach(b)
    b.segments.append(init)
    start_program(b)
    reg = Regions.of(cache.cfg, H * hd)
    q = _act_tensor(b, "q", q_int.reshape(B, H * hd))
    kn = _act_tensor(b, "k_new", k_new.reshape(B, kvh * hd).astype(np.float64))
    vn = _act_tensor(b, "v_new", v_new.reshape(B, kvh * hd).astype(np.float64))
    out = b.act("ctx", B, H * hd)
    decode_attention(b, reg, q, kn, vn, out, cache=cache, lengths=lengths, heads=H, kv_heads=kvh,
                     head_dim=hd, q_scale=q_scale, v_scale=model.v_scale)
    return b.program(), out


def _check_out(res, out, ref):
    assert res.ok, res.status
    assert not res.races, res.races[:3]
    got = _read_act(res.config, res, out).reshape(ref.shape)
    for i in range(ref.shape[0]):
        for h in range(ref.shape[1]):
            a, e = got[i, h], ref[i, h]
            cos = a @ e / (np.linalg.norm(a) * np.linalg.norm(e))
            assert cos > 0.999, (i, h, cos)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < 0.03, err


def _run_steps(lengths, heads, kv_heads, hd, capacity, steps, seed=0, cfg=CFG, run=execute):
    """``steps`` decode steps from a random cache of ``lengths`` tokens, each program starting from
    the previous one's final DRAM; ``run(program)`` gives the executor's result."""
    rng = np.random.default_rng(seed)
    model = _Model(rng, lengths, heads, kv_heads, hd)
    cache = KVCache.create(cfg, batch=len(lengths), kv_heads=kv_heads, head_dim=hd, capacity=capacity)
    init = cache.image(model.keys, model.values)
    lens = list(lengths)
    for _ in range(steps):
        q_int, q_scale, k_new, v_new, ref = model.step()
        prog, out = _program(cache, model, lens, q_int, q_scale, k_new, v_new, init)
        res = run(prog)
        _check_out(res, out, ref)
        lens = [n + 1 for n in lens]
        for i, n in enumerate(lens):  # the cache holds the appended tokens
            k, v = cache.read(res.dram, i, n)
            assert np.array_equal(k, model.keys[i]) and np.array_equal(v, model.values[i])
        init = cache.segment(res.dram)  # the next step starts from this step's cache


@pytest.mark.parametrize("hd", [64, 32])
def test_decode_attention_gqa(hd):
    _run_steps([5, 17, 40], heads=6, kv_heads=2, hd=hd, capacity=48, steps=1, seed=hd)


def test_decode_attention_two_steps_share_cache():
    _run_steps([5, 17, 40], heads=6, kv_heads=2, hd=64, capacity=48, steps=2, seed=1)


def test_decode_attention_long_context():
    """Several row groups (128 tokens each at head_dim 64) and a softmax over more than one
    VSOFT chunk (256 values); four requests: two slots per channel."""
    _run_steps([300, 0, 129, 7], heads=2, kv_heads=1, hd=64, capacity=320, steps=1, seed=3)


def _emit(**over):
    cache = KVCache.create(CFG, batch=3, kv_heads=2, head_dim=64, capacity=48)
    b = ModelBuild(CFG)
    cache.attach(b)
    start_program(b)
    reg = Regions.of(CFG, 384)
    args = dict(cache=cache, lengths=[5, 17, 40], heads=6, kv_heads=2, head_dim=64,
                q_scale=np.full(6, 0.01), v_scale=np.full(128, 0.01))
    args.update(over)
    B = len(args["lengths"])
    q, out = b.act("q", B, 384), b.act("out", B, 384)
    kn, vn = b.act("kn", B, 128), b.act("vn", B, 128)
    decode_attention(b, reg, q, kn, vn, out, **args)


@pytest.mark.parametrize("over, msg", [
    (dict(lengths=[5, 48, 1]), "request 1 has 48 cached tokens"),
    (dict(heads=5), "heads (5) must be a positive multiple of kv_heads (2)"),
    (dict(head_dim=32), "the cache holds 2 heads of 64"),
    (dict(q_scale=np.full(6, -1.0)), "q_scale must be 6 positive"),
    (dict(v_scale=np.full(64, 0.01)), "v_scale must be 128 positive"),
    (dict(lengths=[1, 2, 3, 4]), "requests 0..3; the cache holds 0..2"),
    (dict(lengths=[1, 2], first=2), "requests 2..3; the cache holds 0..2"),
    (dict(first=-1), "requests -1..1; the cache holds 0..2"),
])
def test_decode_attention_errors(over, msg):
    with pytest.raises(CompileError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        _emit(**over)


def test_kv_cache_errors():
    with pytest.raises(CompileError, match="batch 17 exceeds the array's rows"):
        KVCache.create(CFG, batch=17, kv_heads=1, head_dim=64, capacity=8)
    with pytest.raises(CompileError, match="head_dim 48 must divide the DRAM row"):
        KVCache.create(CFG, batch=2, kv_heads=1, head_dim=48, capacity=8)
    cache = KVCache.create(CFG, batch=2, kv_heads=1, head_dim=64, capacity=8, base_row=0)
    b = ModelBuild(CFG)
    start_program(b)
    with pytest.raises(CompileError, match="attach the cache first"):
        cache.attach(b)


def test_decode_attention_tiny_fp16():
    """The same kernel on a 4x4 FP16 tile with two PIM row buffers (row groups of 64 tokens at
    head_dim 16; VSOFT chunks of 16 values)."""
    _run_steps([5, 70], heads=2, kv_heads=1, hd=16, capacity=80, steps=2, seed=5, cfg=TINY16)


def test_decode_attention_on_the_rtl_tile():
    """Two steps on the Verilated tile (TINY16): every stored word and status counter equal to
    the golden model's (run_programs checks), the outputs accurate (the golden model's above)."""
    cosim = pytest.importorskip("mixpim.sim.tile_cosim")
    progs = []

    def run(prog):
        progs.append(prog)
        return execute(prog)
    _run_steps([5, 70], heads=2, kv_heads=1, hd=16, capacity=80, steps=2, seed=5, cfg=TINY16, run=run)
    for r in cosim.run_programs(TINY16, progs, imem_words=WHOLE_MODEL_IMEM):
        assert r.ok, r.report()
        assert r.rtl_status["busy"][3] > 0  # the PIM unit ran
