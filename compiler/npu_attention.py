"""Decode attention on the NPU's array: the *npu-only* system of the NeuPIMs comparison
(docs/compiler.md, "Decode attention on the array"), a batched decode step's attention with the
KV cache in plain DRAM and every score and context computed by ``wsrc`` GEMMs.

**Cache** (:class:`NpuKVCache`, one per block and request block of at most ``rows`` requests):
request i's keys and values in the formats of prefill attention (:mod:`.prefill_attention`,
INT8 values per channel written as FP16): per KV head and key block of ``rows`` keys, ``head_dim``
ACT words (lane = key), then per feature block of ``cols`` value channels ``mpad`` ACT words (one
per key, lanes = channels). A prompt fills it with whole words (:func:`npu_cache_prompt`).

**A decode step** (:func:`npu_decode_attention`) for request lane t at position ``L_t``:

1. *append*: the new value is one word per feature block (a LOAD and a STORE per request); the
   new key goes into lane ``L_t % rows`` of its key block's words, which DMA cannot address: the
   batch's keys are transposed on the array (``wsrc`` GEMM with the identity: ACC row t = key t)
   and stored; when attention has loaded a request's key blocks, its row goes back into ACC
   between zero words, where a ``VEC ADD`` of ``rows`` rows starting ``L_t % rows`` words before
   it adds the key to the last block's lane; that block is written back (one block per request
   and KV head: the price of a cache whose words hold ``rows`` keys) and the scores read it;
2. per KV head, per request, per query head of the group: one score GEMM per key block (the
   queries of all the block's requests are the rows; only row t is the request's: the array runs
   at one row in ``rows``, as an NPU without PIM does), VSOFT MAX, EXP, NORM of row t (lane t of
   the probability words), one ``P V`` GEMM per feature block, and ``VEC RES`` of its row t into a
   collector tile;
3. per query head and feature block: VEC REQUANT of the collector (the prefill's context
   multipliers) into the context.

The arithmetic per request is prefill attention's for its last token, so a step's logits equal
the prefill's of the same tokens bit for bit (``tests/test_npu_attention.py``).
"""

from dataclasses import dataclass

import numpy as np

from mixpim.models.isa import ProbFormat, SoftFunc, Spad, VecFunc
from mixpim.models.program import Segment
from mixpim.models.vector import fixed_multiplier, pack_vparam

from .dram_alloc import DramFull
from .emit import CompileError
from .model_build import DirectTensor, Slots

__all__ = ["NpuKVCache", "npu_block_caches", "npu_cache_prompt", "npu_decode_attention", "npu_constants"]


@dataclass(frozen=True)
class NpuKVCache:
    """One block's KV cache in plain DRAM for ``batch`` requests (at most ``rows``) of up to
    ``capacity`` tokens, from DRAM byte ``base`` (module doc). Build with :meth:`create`."""

    cfg: object
    batch: int
    kv_heads: int
    head_dim: int
    capacity: int
    base: int
    shared: bool = False  # every request at the same DRAM (timing-only programs)

    @classmethod
    def create(cls, cfg, *, batch, kv_heads, head_dim, capacity, base=0, shared=False):
        for name, v in (("batch", batch), ("kv_heads", kv_heads), ("capacity", capacity)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise CompileError(f"KV cache: {name} must be a positive integer, not {v!r}")
        if batch > cfg.rows:
            raise CompileError(f"KV cache: batch {batch} exceeds the array's rows ({cfg.rows}): one "
                               f"ACT lane per request")
        if head_dim % cfg.cols or head_dim % cfg.group:
            raise CompileError(f"KV cache: head_dim {head_dim} must be a multiple of the array's cols "
                               f"({cfg.cols}) and of the group ({cfg.group})")
        if capacity > cfg.rows * cfg.cols:
            raise CompileError(f"KV cache: attention on the array takes at most {cfg.rows * cfg.cols} "
                               f"tokens (a softmax row spans at most {cfg.rows} ACC words), not {capacity}")
        c = cls(cfg, int(batch), int(kv_heads), int(head_dim), int(capacity), int(base), bool(shared))
        if c.end > cfg.dram_bytes:
            raise DramFull(f"KV cache needs DRAM up to 0x{c.end:x}, beyond its {cfg.dram_bytes} bytes")
        return c

    @property
    def key_blocks(self):
        return -(-self.capacity // self.cfg.rows)

    @property
    def mpad(self):
        """Value words per feature block (whole groups)."""
        return -(-self.capacity // self.cfg.group) * self.cfg.group

    @property
    def fblocks(self):
        return self.kv_heads * self.head_dim // self.cfg.cols

    @property
    def request_words(self):
        return self.kv_heads * self.key_blocks * self.head_dim + self.fblocks * self.mpad

    @property
    def nbytes(self):
        return (1 if self.shared else self.batch) * self.request_words * self.cfg.act_word_bytes

    @property
    def end(self):
        return self.base + self.nbytes

    def k_addr(self, i, kvh, kb):
        """DRAM address of request i's key block ``kb`` of KV head ``kvh`` (``head_dim`` words)."""
        i = 0 if self.shared else i
        return self.base + (i * self.request_words + (kvh * self.key_blocks + kb) * self.head_dim) \
            * self.cfg.act_word_bytes

    def v_addr(self, i, fb, t=0):
        """DRAM address of request i's value word of key t in feature block ``fb``."""
        k_words, i = self.kv_heads * self.key_blocks * self.head_dim, 0 if self.shared else i
        return self.base + (i * self.request_words + k_words + fb * self.mpad + t) * self.cfg.act_word_bytes

    def attach(self, b):
        """Reserve the cache's DRAM in the program ``b`` (before any other region)."""
        name = f"kv_cache@npu{self.base:x}"
        if b.dram.symbols.get(name) == self.base and b.dram.top >= self.end:
            return  # request blocks that share their DRAM (timing only)
        if b.dram.top > self.base:
            raise CompileError(f"KV cache at DRAM 0x{self.base:x}: the program already allocated up to "
                               f"0x{b.dram.top:x}; attach the cache first")
        b.dram.top = max(b.dram.top, self.end)
        b.dram.symbols[name] = self.base

    def segment(self, dram):
        """The cache's bytes of a final DRAM as a :class:`Segment` for the next program."""
        return Segment("dram", self.base, bytes(np.asarray(dram, np.uint8)[self.base:self.end]))

    def read(self, dram, i, length):
        """Request i's cached ``(keys, values)`` (int8, (length, kv_heads, head_dim)) in ``dram``."""
        cfg, hd, r, c = self.cfg, self.head_dim, self.cfg.rows, self.cfg.cols
        dram = np.asarray(dram, np.uint8)

        def words(addr, n):
            raw = dram[addr:addr + n * cfg.act_word_bytes]
            return raw.view("<u2").view(np.float16).astype(np.float64).reshape(n, r)

        k = np.zeros((length, self.kv_heads, hd))
        for g in range(self.kv_heads):
            for kb in range(-(-length // r)):
                w = words(self.k_addr(i, g, kb), hd)  # (features, keys)
                n = min(r, length - kb * r)
                k[kb * r:kb * r + n, g] = w[:, :n].T
        v = np.concatenate([words(self.v_addr(i, fb), length)[:, :c]
                            for fb in range(self.fblocks)], axis=1).reshape(length, self.kv_heads, hd)
        return k.astype(np.int8), v.astype(np.int8)


def npu_block_caches(cfg, model_config, capacities, *, layers=None, shared=False, share_requests=False):
    """Per block of ``model_config`` (the first ``layers``, default all) a tuple of
    :class:`NpuKVCache`, one per request block of ``rows`` requests, the j-th holding
    ``capacities[j]`` tokens per request (a block takes its largest). ``shared``: every block gets
    the same caches; ``share_requests``: every request the same DRAM, one request's cache of the
    largest capacity (timing-only programs whose caches do not fit the DRAM, :mod:`mixpim.sim.perf`)."""
    r, caps = cfg.rows, [int(c) for c in capacities]
    sizes = [min(r, len(caps) - j) for j in range(0, len(caps), r)]
    n = model_config.layers if layers is None else layers
    out, base = [], 0
    for _ in range(1 if shared else n):
        blocks, first = [], base
        for j, size in enumerate(sizes):
            c = NpuKVCache.create(cfg, batch=size, kv_heads=model_config.kv_heads, head_dim=model_config.head_dim,
                                  capacity=max(caps if share_requests else caps[j * r:j * r + size]),
                                  base=first if share_requests else base, shared=share_requests)
            blocks.append(c)
            base = max(base, c.end)
        out.append(tuple(blocks))
    return out * n if shared else out


def npu_constants(b):
    """DRAM addresses ``(eye, params)`` of the kernel's constants: the identity matrix (ACT words,
    FP16 1.0 on the diagonal, padded with zero words to whole groups) and the VPARAM words of an
    identity column multiplier, then of ``2**-24`` (ACC units of a ``wsrc`` GEMM to integers),
    biases 0."""
    cfg = b.cfg
    c, gi = cfg.cols, -(-cfg.cols // cfg.group) * cfg.group
    eye = np.zeros((gi, cfg.act_word_bytes // 2), np.float16)
    eye[np.arange(c), np.arange(c)] = 1.0
    zeros = pack_vparam(np.zeros(c, np.int64), np.zeros(c, np.int64))
    words = b"".join(pack_vparam(*(np.full(c, v) for v in fixed_multiplier(s))) + zeros
                     for s in (1.0, 2.0 ** -24))
    return (b.region("npu_attn.eye", eye.nbytes, cfg.act_word_bytes, eye.tobytes()),
            b.region("npu_attn.params", len(words), 4, words))


def npu_cache_prompt(b, reg, k, v, cache, request):
    """Emit the copy of a prompt's keys ``k`` (:class:`~.model_build.ActTensor`) and values ``v``
    (:class:`~.model_build.DirectTensor`) into ``cache`` positions 0 .. m-1 of ``request``."""
    cfg = b.cfg
    m, hd, ab, r = k.m, cache.head_dim, cfg.act_word_bytes, cfg.rows
    if m > cache.capacity:
        raise CompileError(f"a prompt of {m} tokens does not fit a KV cache of {cache.capacity}")
    if not 0 <= request < cache.batch:
        raise CompileError(f"request {request} is outside the cache's batch of {cache.batch}")
    kvw, at = cache.kv_heads * hd, reg.act_out.end
    room = cfg.act_words - at
    if room < max(kvw, cfg.group):
        raise CompileError(f"act_words ({cfg.act_words}) cannot hold a token block's keys ({kvw} words)")
    for i in range(-(-m // r)):
        b.load(Spad.ACT, at, k.addr(cfg, i, 0), kvw, comment=f"prompt K, block {i}")
        b.store(Spad.ACT, at, cache.k_addr(request, 0, i), hd, rows=cache.kv_heads,
                stride=cache.key_blocks * hd * ab)
    step = room // cfg.group * cfg.group
    for fb in range(cache.fblocks):
        for t0 in range(0, m, step):
            n = min(step, m - t0)
            b.load(Spad.ACT, at, v.addr(cfg, fb, t0), n, comment=f"prompt V, feature block {fb}")
            b.store(Spad.ACT, at, cache.v_addr(request, fb, t0), n)


@dataclass(frozen=True)
class _Layout:
    """Scratchpad words of one call (module doc). ACT: ``zero`` (a group of zero words), key
    blocks with the new key, then the append's words (identity, new keys of a KV head, a new
    value) or in their place attention's (queries, K and V slots, probabilities); ACC from ``reg.res_base``:
    transposed keys, zeros around two request rows, collectors, ``P V`` tiles, scores."""

    zero: int
    new: Slots
    eye: int
    kin: int
    vst: int
    q: int
    k: Slots
    p: int
    v: Slots
    pw: int  # probability words (the longest count in whole groups)
    t: Slots
    z: int
    coll: int
    pv: Slots
    s: Slots
    ip: int  # VPARAM: identity, then key multipliers
    kp: int


def _fits(spad, need, have, nmax):
    if need > have:
        raise CompileError(f"{spad}_words ({have}) cannot hold decode attention on the array over "
                           f"{nmax} tokens (needs {need})")


def _layout(cfg, reg, cache, group, nmax, soft_tokens):
    r, c, g = cfg.rows, cfg.cols, cfg.group
    hd = cache.head_dim
    gi = -(-c // g) * g
    nkb, mg = -(-nmax // c), -(-nmax // g) * g
    zero = reg.act_out.end
    fpb = hd // c
    attn = group * hd + 2 * nkb * hd + mg + 2 * fpb * mg  # the most attention takes (below)
    new = Slots(zero + g, hd, 2 if zero + g + 2 * hd + max(attn, gi + hd + gi + cache.fblocks) <= cfg.act_words
                else 1)
    eye = new.end
    kin = eye + gi
    vst = kin + hd + gi
    _fits("act", vst + cache.fblocks, cfg.act_words, nmax)
    q = eye
    # a request's V of one KV head stays for the group's heads if it fits, else one feature
    # block at a time (loaded again for each head of a group)
    vw = next((n * mg for n in (fpb, 1) if q + group * hd + 2 * nkb * hd + mg + 2 * n * mg <= cfg.act_words), mg)
    slots = 2 if q + group * hd + 2 * nkb * hd + mg + 2 * vw <= cfg.act_words else 1
    k = Slots(q + group * hd, nkb * hd, slots)
    p = k.end
    v = Slots(p + mg, vw, slots)
    _fits("act", v.end, cfg.act_words, nmax)
    t = Slots(reg.res_base, r, 2)
    z = t.end
    coll = z + 3 * r - 1
    pv = Slots(coll + group * fpb * r, r, 2)
    s = Slots(pv.end, nkb * r, 2 if pv.end + 2 * nkb * r <= cfg.acc_words else 1)
    _fits("acc", s.end, cfg.acc_words, nmax)
    ip = reg.soft_base + 2 * soft_tokens
    _fits("vparam", ip + 4 * c, cfg.vparam_words, nmax)
    return _Layout(zero, new, eye, kin, vst, q, k, p, v, mg, t, z, coll, pv, s, ip, reg.soft_base)


def npu_decode_attention(b, reg, q, k_new, v_new, out, *, cache, lengths, heads, head_dim, soft, soft_tokens,
                         ctx, first=0):
    """Emit one decode step's attention (module doc) for the requests ``first ..`` of ``cache``
    (:class:`NpuKVCache`, attached), request lane t with ``lengths[t]`` tokens cached. ``q``
    (:class:`~.model_build.ActTensor`, B x heads*head_dim, FP16 as prefill attention's), ``k_new``
    (ActTensor, INT8 as FP16) and ``v_new`` (:class:`~.model_build.DirectTensor`): the new
    token's; ``out``: the context. ``soft``, ``ctx``: DRAM addresses of
    :func:`~.prefill_attention.soft_words` of ``soft_tokens`` (at least the longest count) and
    :func:`~.prefill_attention.context_words`."""
    cfg = b.cfg
    r, c, g, ab = cfg.rows, cfg.cols, cfg.group, cfg.act_word_bytes
    lengths = [int(n) for n in lengths]
    B, hd, kvh_n = len(lengths), head_dim, cache.kv_heads
    if not 1 <= B <= r or first < 0 or first + B > cache.batch:
        raise CompileError(f"requests {first}..{first + B - 1} are outside the cache's batch of {cache.batch}")
    if hd != cache.head_dim or heads % kvh_n:
        raise CompileError(f"{heads} heads of {hd} on a cache of {kvh_n} KV heads of {cache.head_dim}")
    if not isinstance(v_new, DirectTensor):
        raise CompileError("internal: the new values must be direct rows")
    for n in lengths:
        if not 0 <= n < cache.capacity:
            raise CompileError(f"a request at position {n} does not fit a KV cache of {cache.capacity}")
    group, fpb, kvw = heads // kvh_n, hd // c, kvh_n * hd
    counts = [n + 1 for n in lengths]
    if not max(counts) <= soft_tokens:
        raise CompileError(f"internal: softmax multipliers of {soft_tokens} tokens for a count of {max(counts)}")
    L = _layout(cfg, reg, cache, group, max(counts), soft_tokens)
    eye, params = npu_constants(b)
    gi = -(-c // g) * g
    knew = b.acc_rows("npu_attn.knew", r, kvw)  # (every request block's: one size)
    pw, resident = L.pw, L.v.size >= fpb * L.pw  # resident: a request's V of a KV head in one slot
    b.zeros(ab, max(g, -(-soft_tokens // g) * g))  # the largest of the layer's calls first: one region
    zacc = b.region("npu_attn.acc_zeros", (3 * r - 1) * cfg.acc_word_bytes, cfg.acc_word_bytes,
                    bytes((3 * r - 1) * cfg.acc_word_bytes))
    with b.operator("kv_append"):
        b.load(Spad.VPARAM, L.ip, params, 4 * c, comment="identity and key multipliers")
        b.load(Spad.ACT, L.zero, b.zeros(ab, g), g)
        b.load(Spad.ACT, L.eye, eye, gi, comment="identity")
        b.load(Spad.ACC, L.z, zacc, 3 * r - 1, comment="zeros around the new keys")
        if gi > c:  # the last block's GEMM reads past a head's keys: zeros
            b.load(Spad.ACT, L.kin + hd, b.zeros(ab, gi - c), gi - c)
        for kvh in range(kvh_n):
            b.load(Spad.ACT, L.kin, k_new.addr(cfg, 0, kvh * hd), hd, comment=f"new keys, KV head {kvh}")
            for f in range(fpb):  # ACC row t = request t's key, feature block j
                j, a = kvh * fpb + f, L.t.take()
                b.op("GEMM", act_addr=L.kin + f * c, wgt_addr=L.eye, meta_addr=0, acc_addr=a,
                     groups=gi // g, wsrc=1, comment=f"new keys transposed, block {j}")
                b.store(Spad.ACC, a, knew.addr(cfg, 0, j), 1, rows=B, stride=knew.nb * cfg.acc_word_bytes)
        for t, pos in enumerate(lengths):
            i = first + t
            b.load(Spad.ACT, L.vst, v_new.addr(cfg, 0, t), 1, rows=cache.fblocks, stride=v_new.mpad * ab,
                   comment=f"request {i}: new value")
            b.store(Spad.ACT, L.vst, cache.v_addr(i, 0, pos), 1, rows=cache.fblocks, stride=cache.mpad * ab)
    b.load(Spad.VPARAM, L.kp, soft, 2 * soft_tokens, comment="score and probability multipliers")
    with b.operator("softmax"):
        b.load(Spad.ACT, L.p, b.zeros(ab, pw), pw, comment="P: zeros")
    vp = L.kp + soft_tokens  # the image's probability multipliers follow its score multipliers
    for kvh in range(kvh_n):
        h0 = kvh * group
        with b.operator("attn_score"):
            b.load(Spad.ACT, L.q, q.addr(cfg, 0, h0 * hd), group * hd, comment=f"Q of heads {h0}..")
        with b.operator("attn_context"):
            for j in range(group * fpb):  # zero the collectors
                b.op("GEMM", act_addr=L.zero, wgt_addr=L.zero, meta_addr=0, acc_addr=L.coll + j * r,
                     groups=1, wsrc=1)
        for t, n in enumerate(counts):
            i, nkb, mg = first + t, -(-n // c), -(-n // g) * g
            ka = L.k.take()
            with b.operator("attn_score"):
                b.load(Spad.ACT, ka, cache.k_addr(i, kvh, 0), nkb * hd, comment=f"request {i}: K, KV head {kvh}")
            # the new key into its block (the last), written back; the scores read the new block
            last, new, lane = ka + (nkb - 1) * hd, L.new.take(), (n - 1) % r
            with b.operator("kv_append"):
                for f in range(fpb):
                    mid = L.z + (f % 2 + 1) * r - 1
                    b.load(Spad.ACC, mid, knew.addr(cfg, t, kvh * fpb + f), 1)
                    b.op("VEC", func=VecFunc.ADD, acc_addr=mid - lane, act_addr=new + f * c,
                         res_addr=last + f * c, param_addr=L.ip + 2 * c, rows=r, fmt=0,
                         comment=f"request {i}: key into lane {lane}")
                b.store(Spad.ACT, new, cache.k_addr(i, kvh, nkb - 1), hd)
            if resident:
                va = L.v.take()
                vs = [va + f * pw for f in range(fpb)]
                with b.operator("attn_context"):
                    for f in range(fpb):
                        b.load(Spad.ACT, vs[f], cache.v_addr(i, kvh * fpb + f), mg, comment=f"request {i}: V {f}")
            for hh in range(group):
                sa = L.s.take()
                with b.operator("attn_score"):
                    for kb in range(nkb):
                        b.op("GEMM", act_addr=L.q + hh * hd, wgt_addr=new if kb == nkb - 1 else ka + kb * hd,
                             meta_addr=0, acc_addr=sa + kb * r, groups=hd // g, wsrc=1)
                with b.operator("softmax"):
                    common = dict(acc_addr=sa + t, words=nkb, count=n, kparam=L.kp, col=1, lane=t)
                    b.op("VSOFT", func=SoftFunc.MAX, first=1, **common)
                    b.op("VSOFT", func=SoftFunc.EXP, first=1, **common)
                    b.op("VSOFT", func=SoftFunc.NORM, vparam=vp, act_addr=L.p, pfmt=ProbFormat.FP16, **common)
                with b.operator("attn_context"):
                    for f in range(fpb):
                        if not resident:
                            vs = {f: L.v.take()}
                            b.load(Spad.ACT, vs[f], cache.v_addr(i, kvh * fpb + f), mg, comment=f"request {i}: V {f}")
                        a = L.pv.take()
                        b.op("GEMM", act_addr=L.p, wgt_addr=vs[f], meta_addr=0, acc_addr=a, groups=mg // g, wsrc=1)
                        b.op("VEC", func=VecFunc.RES, acc_addr=a + t, res_addr=L.coll + (hh * fpb + f) * r + t,
                             param_addr=L.ip, rows=1)
        with b.operator("attn_context"):
            for hh in range(group):
                for f in range(fpb):
                    p = reg.vp_slots.take()
                    b.load(Spad.VPARAM, p, ctx + ((h0 + hh) * fpb + f) * 2 * c * 4, 2 * c)
                    o = reg.act_out.take()
                    b.op("VEC", func=VecFunc.REQUANT, acc_addr=L.coll + (hh * fpb + f) * r, act_addr=o,
                         param_addr=p, rows=B, fmt=1)
                    b.store_act(o, out, 0, (h0 + hh) * hd + f * c, c)
