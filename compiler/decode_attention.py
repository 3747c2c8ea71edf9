"""Decode attention on the PIM banks inside a whole-model program (:class:`~.model_build.ModelBuild`,
FP16-activation tiles): one batched decode step of grouped-query attention against a KV cache
kept in PIM rows across steps.

**KV cache** (:class:`KVCache`, one per layer, persistent): request i of the batch is pinned to
channel ``i % channels`` (its *slot* is ``i // channels``; the requests of a slot run in lock step,
one PIM instruction for all their channels), as in :mod:`.attention`. Per slot, KV head and kind
(keys, then values) the cache owns ``rows_for(capacity)`` consecutive bank rows from
``base_row``; within them token t of a request is ``head_dim`` INT8 bytes in row
``t // group_tokens``, bank ``(t % group_tokens) // tokens_per_bank``, byte ``(t % tokens_per_bank)
* head_dim`` (``tokens_per_bank = row_bytes // head_dim``, ``group_tokens`` = that times the
banks: :class:`~.attention.PimGeometry`). The cache is ordinary DRAM (docs/pim.md), the bank rows
``base_row ..`` of every channel and bank, i.e. the DRAM bytes ``base_row * G .. end_row * G``
(``G = channels * banks * row_bytes``); :meth:`KVCache.attach` reserves them in a program (before
any other region), :meth:`KVCache.segment` carries them from one step's final DRAM into the next
step's program, :meth:`KVCache.image` writes a prefilled cache.

**Numbers.** Keys are INT8 per channel (scale per RoPE pair, folded into the queries by the
producer: ``q`` holds INT8 integers as FP16, one unit of head h is ``q_scale[h]`` in real
``q . k``), values INT8 per channel (``v_scale[c]``). Scores ``q . k_t`` are exact integers (PIM
dot GEMV); the softmax multipliers ``q_scale[h] / (sqrt(head_dim) * exp_step())`` take them to
exponent steps; probabilities are 14-bit integers ``q_t ~ 2**14 p_t`` written as two INT8 digits
(VSOFT NORM ``pfmt`` HI, LO: ``hi = q >> 7``, ``lo = q & 127``); ``P V`` runs as two bcast GEMV
passes whose results combine exactly, ``128 * hi_sum + lo_sum`` (VEC RES, multiplier 128, into
the LO tile), and VEC REQUANT ``fmt`` 1 writes ``sum_t q_t v_t * 2**-14 * v_scale[c]`` as FP16.

**Steps** (per KV head g; per slot of requests):

1. append: LOAD the new key (value) features of g into ACT; ``PIM_GBUF`` (gather, one lane per
   channel) and one ``PIM_WRITE`` per request into its token ``lengths[i]``;
2. per query head h of g: LOAD its queries; ``PIM_GBUF``; per row group a dot ``PIM_GEMV`` and a
   ``PIM_READ`` of the scores into ACC (per request ``s_words`` words, ``cols`` scores a word);
3. per request VSOFT MAX, EXP, NORM HI, NORM LO over its ``lengths[i] + 1`` scores (chunks of at
   most ``rows`` ACC words), packed (``col`` 0) into ACT, the rest of the row groups zeroed;
4. per digit plane: per row group ``PIM_GBUF`` (packed) and a bcast ``PIM_GEMV`` accumulating,
   then ``PIM_READ`` ``reduce`` into an output tile (row = request, ``rows`` words per block of
   ``cols`` features);
5. per feature block: VEC RES (LO tile += 128 * HI tile), VEC REQUANT ``fmt`` 1, STORE into
   ``out`` (features ``h * head_dim ..``).

Scratchpads: ACT from ``reg.act_out.end`` (new K/V, queries, the two digit planes), ACC from
``reg.res_base`` (scores, two output tiles; the residual block is in DRAM while attention runs),
VPARAM from ``reg.soft_base`` (score and probability multipliers of one chunk); the RES and
context multipliers go through ``reg.vp_slots``. Needs the identity token multipliers
(:func:`~.model_kernels.start_program`). One PIM row buffer is assumed (no ``PIM_ACT`` ahead).
"""

import math
from dataclasses import dataclass
from typing import NamedTuple
from functools import cached_property

import numpy as np

from mixpim.models.isa import ProbFormat, SoftFunc, Spad, VecFunc
from mixpim.models.pim import pim_row_addr
from mixpim.models.program import Segment
from mixpim.models.softmax import exp_step
from mixpim.models.vector import fixed_multiplier, pack_vparam

from .attention import PimGeometry
from .dram_alloc import DramFull
from .emit import CompileError
from .model_build import ActTensor
from .model_kernels import param_blocks

__all__ = ["KVCache", "decode_attention", "PROB_BITS", "soft_image", "context_image"]

#: Bits of a probability: ``q = round(2**PROB_BITS p)`` (clipped to 14 bits), two 7-bit digits.
PROB_BITS = 14
#: Weight of the high digit.
_HI = 1 << 7
#: NORM (``N = 2**31``) gives ``p * 2**22`` before the V multiplier; this takes it to ``2**-14``.
_P_MULT = (1, 22 - PROB_BITS)
#: VEC fmt 1 reads values in units of ``2**-16``.
_FIX = 16


@dataclass(frozen=True)
class KVCache:
    """The PIM placement of one layer's KV cache (module doc): ``batch`` requests (at most the
    array's rows), ``kv_heads`` heads of ``head_dim``, up to ``capacity`` tokens per request
    (``slot_capacity``: per slot, if the slots differ), from bank row ``base_row``. Build with
    :meth:`create`; the same object serves every step."""

    cfg: object
    batch: int
    kv_heads: int
    head_dim: int
    capacity: int
    base_row: int
    rows_per: int  # bank rows of one (slot, head, kind) cache (the largest slot's)
    slot_capacity: tuple = ()

    @classmethod
    def create(cls, cfg, *, batch, kv_heads, head_dim, capacity, base_row=0):
        """The placement, or :class:`CompileError` if it does not fit ``cfg``. ``capacity``: the
        tokens of every request, or a sequence of them per slot (``dram_channels`` requests
        each): a slot of short requests then takes fewer bank rows."""
        caps = tuple(capacity) if isinstance(capacity, (tuple, list)) else ()
        slots = -(-batch // cfg.dram_channels) if isinstance(batch, int) and batch > 0 else 0
        if caps and len(caps) != slots:
            raise CompileError(f"KV cache: {len(caps)} slot capacities for {slots} slots")
        for name, v in (("batch", batch), ("kv_heads", kv_heads)) + tuple(("capacity", c) for c in caps or (capacity,)):
            if int(v) != v or v < 1:
                raise CompileError(f"KV cache: {name} must be a positive integer, not {v!r}")
        if batch > cfg.rows:
            raise CompileError(f"KV cache: batch {batch} exceeds the array's rows ({cfg.rows}): one "
                               f"ACT lane per request")
        geo = PimGeometry(cfg, head_dim)
        top = max(caps) if caps else capacity
        cache = cls(cfg, batch, kv_heads, head_dim, top, base_row, geo.rows_for(top),
                    caps if len(set(caps)) > 1 else ())
        if cache.end_row > min(cfg.dram_rows, 1 << 16):
            raise DramFull(f"KV cache: {cache.end_row - base_row} bank rows from row {base_row} "
                           f"exceed the {min(cfg.dram_rows, 1 << 16)} rows PIM reaches")
        return cache

    @cached_property
    def geo(self):
        """The placement arithmetic (:class:`~.attention.PimGeometry`)."""
        return PimGeometry(self.cfg, self.head_dim)

    @property
    def slots(self):
        return -(-self.batch // self.cfg.dram_channels)

    def capacity_of(self, i):
        """Tokens request i can hold."""
        return self.slot_capacity[i // self.cfg.dram_channels] if self.slot_capacity else self.capacity

    @cached_property
    def _slot_rows(self):
        """``(first row, rows per head and kind)`` of each slot."""
        out, row = [], self.base_row
        for s in range(self.slots):
            n = self.geo.rows_for(self.slot_capacity[s]) if self.slot_capacity else self.rows_per
            out.append((row, n))
            row += self.kv_heads * 2 * n
        return tuple(out)

    @property
    def end_row(self):
        if self.slot_capacity:
            first, n = self._slot_rows[-1]
            return first + self.kv_heads * 2 * n
        return self.base_row + self.slots * self.kv_heads * 2 * self.rows_per

    @property
    def group_bytes(self):
        """DRAM bytes of one bank row of every channel and bank."""
        cfg = self.cfg
        return cfg.dram_channels * cfg.dram_banks * cfg.dram_row_bytes

    @property
    def base(self):
        return self.base_row * self.group_bytes

    @property
    def nbytes(self):
        return (self.end_row - self.base_row) * self.group_bytes

    def first_row(self, slot, head, kind):
        """First bank row of the (slot, KV head, ``"k"`` | ``"v"``) cache."""
        if self.slot_capacity:
            first, n = self._slot_rows[slot]
            return first + (head * 2 + "kv".index(kind)) * n
        return self.base_row + ((slot * self.kv_heads + head) * 2 + "kv".index(kind)) * self.rows_per

    def where(self, i, head, kind, t):
        """``(channel, bank, row, col)`` of token t of request i."""
        ch, slot = i % self.cfg.dram_channels, i // self.cfg.dram_channels
        row, bank, col = self.geo.where(self.first_row(slot, head, kind), t)
        return ch, bank, row, col

    def addr(self, i, head, kind, t):
        """DRAM byte address of token t's ``head_dim`` bytes."""
        ch, bank, row, col = self.where(i, head, kind, t)
        return pim_row_addr(self.cfg, ch, bank, row) + col

    def attach(self, b):
        """Reserve the cache's DRAM in the program ``b`` (call before any other region)."""
        if b.dram.top > self.base:
            raise CompileError(f"KV cache at DRAM 0x{self.base:x}: the program already allocated up to "
                               f"0x{b.dram.top:x}; attach the cache first")
        if self.base + self.nbytes > self.cfg.dram_bytes:
            raise DramFull(f"KV cache needs DRAM up to 0x{self.base + self.nbytes:x}")
        b.dram.top = self.base + self.nbytes
        b.dram.symbols[f"kv_cache@{self.base_row}"] = self.base

    def image(self, keys, values):
        """A DRAM :class:`Segment` of a prefilled cache: ``keys[i]``, ``values[i]`` int8
        (L_i, kv_heads, head_dim) of request i (L_i <= capacity)."""
        img = np.zeros(self.nbytes, np.uint8)
        for kind, per in (("k", keys), ("v", values)):
            if len(per) > self.batch:
                raise CompileError(f"KV cache image: {len(per)} requests, the cache holds {self.batch}")
            for i, x in enumerate(per):
                x = np.asarray(x)
                if x.ndim != 3 or x.shape[1:] != (self.kv_heads, self.head_dim) or len(x) > self.capacity:
                    raise CompileError(f"KV cache image: request {i} has shape {x.shape}, not (<= "
                                       f"{self.capacity}, {self.kv_heads}, {self.head_dim})")
                for g in range(self.kv_heads):
                    for t in range(len(x)):
                        a = self.addr(i, g, kind, t) - self.base
                        img[a:a + self.head_dim] = x[t, g].astype(np.int8).view(np.uint8)
        return Segment("dram", self.base, img.tobytes())

    def segment(self, dram):
        """The cache's bytes of a final DRAM (``result.dram``) as a :class:`Segment` for the next
        step's program."""
        return Segment("dram", self.base, bytes(np.asarray(dram, np.uint8)[self.base:self.base + self.nbytes]))

    def read(self, dram, i, length):
        """Request i's cached ``(keys, values)`` (int8, (length, kv_heads, head_dim)) in ``dram``."""
        dram = np.asarray(dram, np.uint8)
        out = []
        for kind in "kv":
            x = np.zeros((length, self.kv_heads, self.head_dim), np.int8)
            for g in range(self.kv_heads):
                for t in range(length):
                    a = self.addr(i, g, kind, t)
                    x[t, g] = dram[a:a + self.head_dim].view(np.int8)
            out.append(x)
        return tuple(out)


class Scratch(NamedTuple):
    """Scratchpad words decode attention takes above its regions' bases: ``act`` from
    ``reg.act_out.end`` (new K and V, queries, two digit planes), ``acc`` from ``reg.res_base``
    (scores, two output tiles)."""
    act: int
    acc: int


def scratch_words(cfg, cache, counts):
    """The :class:`Scratch` of attention over ``counts`` tokens per request (the new included)."""
    geo, r, nch, hd = cache.geo, cfg.rows, cfg.dram_channels, cache.head_dim
    rmax = geo.rows_for(max(counts))
    return Scratch(3 * hd + 2 * nch * (rmax * geo.group // r),
                   nch * (rmax * geo.group // cfg.cols) + 2 * (hd // cfg.cols) * r)


def _chunk(cfg):
    """Scores per VSOFT: at most ``rows`` ACC words, whole ACC and packed ACT words."""
    unit = math.lcm(cfg.rows, cfg.cols)
    return cfg.rows * cfg.cols // unit * unit


def soft_image(cfg, q_scale, head_dim):
    """VPARAM image (bytes): per query head ``chunk`` score multipliers, then ``chunk``
    probability multipliers (the same for every head and token)."""
    n = _chunk(cfg)
    km, ks = fixed_multiplier(np.asarray(q_scale, np.float64) / (math.sqrt(head_dim) * exp_step()))
    heads = b"".join(pack_vparam(np.full(n, m), np.full(n, s)) for m, s in zip(km, ks))
    return heads + pack_vparam(np.full(n, _P_MULT[0]), np.full(n, _P_MULT[1]))


def context_image(cfg, v_scale):
    """VPARAM image (bytes), ``2 cols`` words per block of ``cols`` value channels: the context
    multipliers ``v_scale * 2**(16 - PROB_BITS)``, then the RES multipliers (128: the high digit)."""
    m, s = fixed_multiplier(np.asarray(v_scale, np.float64) * 2.0 ** (_FIX - PROB_BITS))
    hi = pack_vparam(np.full(len(m), _HI), np.zeros(len(m), np.int64))  # RES: the high digit's weight
    return param_blocks(cfg, pack_vparam(m, s), hi)


def _check_tensor(name, t, m, k):
    if not isinstance(t, ActTensor):
        raise CompileError(f"decode attention: {name} must be an ActTensor, not {type(t).__name__}")
    if t.copies != 1 or t.m != m or t.k != k:
        raise CompileError(f"decode attention: {name} is {t.m} x {t.k} (copies {t.copies}), "
                           f"expected {m} x {k} (one copy)")


def _check(b, reg, cache, first, lengths, heads, kv_heads, head_dim, q_scale, v_scale):
    cfg = b.cfg
    if not isinstance(cache, KVCache) or cache.cfg != cfg:
        raise CompileError("decode attention: cache must be a KVCache of this program's configuration")
    if (kv_heads, head_dim) != (cache.kv_heads, cache.head_dim):
        raise CompileError(f"decode attention: kv_heads {kv_heads}, head_dim {head_dim}; the cache "
                           f"holds {cache.kv_heads} heads of {cache.head_dim}")
    if heads < 1 or heads % kv_heads:
        raise CompileError(f"decode attention: heads ({heads}) must be a positive multiple of "
                           f"kv_heads ({kv_heads})")
    B = len(lengths)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0 or not 1 <= first + B <= cache.batch:
        raise CompileError(f"decode attention: requests {first}..{first + B - 1}; the cache holds "
                           f"0..{cache.batch - 1}")
    for i, n in enumerate(lengths):
        if int(n) != n or not 0 <= n < cache.capacity_of(first + i):
            raise CompileError(f"decode attention: request {i} has {n} cached tokens; the cache holds "
                               f"{cache.capacity_of(first + i)} per request, the new one included")
    qs, vs = np.asarray(q_scale, np.float64), np.asarray(v_scale, np.float64)
    if qs.shape != (heads,) or not np.all(np.isfinite(qs)) or np.any(qs <= 0):
        raise CompileError(f"decode attention: q_scale must be {heads} positive finite scales")
    if vs.shape != (kv_heads * head_dim,) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise CompileError(f"decode attention: v_scale must be {kv_heads * head_dim} positive finite scales")
    if reg.soft_base + 2 * _chunk(cfg) > cfg.vparam_words:
        raise CompileError(f"vparam_words ({cfg.vparam_words}) cannot hold the softmax multipliers "
                           f"({reg.soft_base + 2 * _chunk(cfg)} words needed)")
    if 2 * cfg.cols > reg.vp_slots.size:
        raise CompileError("internal: VPARAM slots smaller than 2 cols words")


def decode_attention(b, reg, q, k_new, v_new, out, *, cache, lengths, heads, kv_heads, head_dim,
                     q_scale, v_scale, name="attn", first=0):
    """Emit one decode step (module doc) into ``b`` (:class:`~.model_build.ModelBuild`) with the
    scratchpad regions ``reg`` (:class:`~.model_kernels.Regions`).

    ``q`` (B x heads*head_dim), ``k_new``, ``v_new`` (B x kv_heads*head_dim): :class:`ActTensor` s
    of INT8 integers as FP16 (lane i = request i); ``out`` (B x heads*head_dim): the context,
    FP16. ``cache``: the :class:`KVCache` (attached to ``b``); ``lengths[i]``: tokens request i
    has cached (the new token goes to position ``lengths[i]``); ``q_scale[h]``: the real ``q . k``
    of one integer unit of head h; ``v_scale[c]``: value channel c's scale. ``name`` prefixes the
    DRAM regions of the multipliers (unique per layer). ``first``: the requests are the cache's
    ``first ..`` (lane i of the tensors is request ``first + i``: a sub-batch)."""
    cfg = b.cfg
    r, c, ab = cfg.rows, cfg.cols, cfg.act_word_bytes
    _check(b, reg, cache, first, list(lengths), heads, kv_heads, head_dim, q_scale, v_scale)
    lengths = [int(n) for n in lengths]
    B, hd = len(lengths), head_dim
    _check_tensor("q", q, B, heads * hd)
    _check_tensor("k_new", k_new, B, kv_heads * hd)
    _check_tensor("v_new", v_new, B, kv_heads * hd)
    _check_tensor("out", out, B, heads * hd)
    geo, nch = cache.geo, cfg.dram_channels
    # lanes whose requests share a cache slot (one PIM instruction for their channels)
    slots = [[j for j in range(B) if (first + j) // nch == s]
             for s in range(first // nch, (first + B - 1) // nch + 1)]
    counts = [n + 1 for n in lengths]
    srows = [geo.rows_for(max(counts[i] for i in m)) for m in slots]  # row groups per slot
    rmax = max(srows)
    fpb, chunk = hd // c, _chunk(cfg)

    # -- scratchpads ------------------------------------------------------------------------------
    p_words = rmax * geo.group // r  # one request's packed probabilities
    s_words = rmax * geo.group // c  # one request's scores
    need = scratch_words(cfg, cache, counts)
    kn = reg.act_out.end
    vn, qa = kn + hd, kn + 2 * hd
    p_hi = qa + hd
    p_lo = p_hi + nch * p_words
    if kn + need.act > cfg.act_words:
        raise CompileError(f"act_words ({cfg.act_words}) cannot hold decode attention over "
                           f"{max(counts)} tokens (needs {kn + need.act})")
    sa = reg.res_base
    o_hi = sa + nch * s_words
    o_lo = o_hi + fpb * r
    if sa + need.acc > cfg.acc_words:
        raise CompileError(f"acc_words ({cfg.acc_words}) cannot hold the scores of {max(counts)} "
                           f"tokens and two output tiles (needs {sa + need.acc})")
    kp = reg.soft_base
    vp = kp + chunk
    soft = soft_image(cfg, q_scale, hd)
    soft_at = b.region(f"{name}.soft", len(soft), 4, soft)
    ctx = context_image(cfg, v_scale)
    ctx_at = b.region(f"{name}.ctx", len(ctx), 4, ctx)
    zeros = b.zeros(ab, p_words)
    b.load(Spad.VPARAM, vp, soft_at + heads * chunk * 4, chunk, comment="probability multipliers")
    group = heads // kv_heads
    pim = dict(bank=0, banks=cfg.dram_banks)

    for g in range(kv_heads):
        # 1. append the new key and value of every request
        with b.operator("kv_append"):
            _append(b, cache, g, first, slots, kn, vn, k_new, v_new, lengths)
        for h in range(g * group, (g + 1) * group):
            with b.operator("attn_score"):
                b.load(Spad.VPARAM, kp, soft_at + h * chunk * 4, chunk, comment=f"score multipliers, head {h}")
                b.load(Spad.ACT, qa, q.addr(cfg, 0, h * hd), hd, comment=f"queries of head {h}")
            for mem, rows_s in zip(slots, srows):
                _slot(b, cache, g, first, mem, rows_s, counts, h, qa, sa, s_words, p_hi, p_lo, p_words,
                      o_hi, o_lo, kp, vp, chunk, zeros, pim)
            # 5. combine the digits, scale, store
            for f in range(fpb):
                pv = reg.vp_slots.take()
                b.load(Spad.VPARAM, pv, ctx_at + (g * fpb + f) * 2 * c * 4, 2 * c)
                b.op("VEC", func=VecFunc.RES, acc_addr=o_hi + f * r, res_addr=o_lo + f * r,
                     param_addr=pv + c, rows=B, comment=f"head {h} block {f}: lo += 128 hi")
                o = reg.act_out.take()
                b.op("VEC", func=VecFunc.REQUANT, acc_addr=o_lo + f * r, act_addr=o, param_addr=pv,
                     rows=B, fmt=1)
                b.store_act(o, out, 0, h * hd + f * c, c, comment=f"context, head {h} block {f}")


def _append(b, cache, g, first, slots, kn, vn, k_new, v_new, lengths):
    """Step 1: the new key and value of every request into KV head g's cache rows."""
    cfg, hd, nch = b.cfg, cache.head_dim, b.cfg.dram_channels
    for kind, at, src in (("k", kn, k_new), ("v", vn, v_new)):
        b.load(Spad.ACT, at, src.addr(cfg, 0, g * hd), hd, comment=f"new {kind.upper()}, KV head {g}")
        for mem in slots:
            ch0 = (first + mem[0]) % nch
            b.op("PIM_GBUF", ch=ch0, chans=len(mem), gaddr=0, act_addr=at, len=hd, lane=mem[0],
                 comment=f"KV head {g} slot {(first + mem[0]) // nch}: new {kind.upper()}")
            for i in mem:
                ch, bank, row, col = cache.where(first + i, g, kind, lengths[i])
                b.op("PIM_WRITE", ch=ch, chans=1, bank=bank, row=row, col=col, gaddr=0, len=hd)


def _slot(b, cache, g, first, mem, rows_s, counts, h, qa, sa, s_words, p_hi, p_lo, p_words, o_hi, o_lo,
          kp, vp, chunk, zeros, pim):
    """Steps 2-4 (module doc) of query head h for the lanes ``mem`` (requests ``first + mem``) of
    one cache slot."""
    cfg, geo = b.cfg, cache.geo
    r, c = cfg.rows, cfg.cols
    chans, lane = len(mem), mem[0]
    s, ch = divmod(first + lane, cfg.dram_channels)
    kbase, vbase = cache.first_row(s, g, "k"), cache.first_row(s, g, "v")
    # 2. scores
    with b.operator("attn_score"):
        b.op("PIM_GBUF", ch=ch, chans=chans, gaddr=0, act_addr=qa, len=cache.head_dim, lane=lane,
             comment=f"head {h} slot {s}: queries")
        for rg in range(rows_s):
            b.op("PIM_GEMV", ch=ch, chans=chans, row=kbase + rg, col=0, gaddr=0, len=cache.head_dim,
                 n=geo.per_bank, res=0, **pim, comment=f"scores, row group {rg}")
            b.op("PIM_READ", ch=ch, chans=chans, res=0, n=geo.per_bank, acc_addr=sa + rg * geo.group // c,
                 chan_stride=s_words, word_stride=1, **pim)
    # 3. softmax of each request into two digit planes
    with b.operator("softmax"):
        _softmax(b, mem, counts, rows_s, geo, sa, s_words, p_hi, p_lo, p_words, kp, vp, chunk, zeros)
    # 4. P V, one pass per digit
    for pa, oa, d in ((p_hi, o_hi, "hi"), (p_lo, o_lo, "lo")):
        for rg in range(rows_s):
            # the first pass waits for the whole digit plane: one VEC->PIM token per plane, not
            # one per row group (more than a token counter holds while the VEC runs ahead)
            fence = (("ACT", pa, chans * p_words),) if rg == 0 else ()
            b.op("PIM_GBUF", ch=ch, chans=chans, gaddr=0, act_addr=pa + rg * geo.group // r,
                 len=geo.group, packed=1, act_stride=p_words, fence=fence,
                 comment=f"P {d}, row group {rg}")
            b.op("PIM_GEMV", ch=ch, chans=chans, row=vbase + rg, col=0, gaddr=0, len=cache.head_dim,
                 n=geo.per_bank, res=0, bcast=1, accumulate=int(rg > 0), **pim)
        b.op("PIM_READ", ch=ch, chans=chans, res=0, n=cache.head_dim, reduce=1, acc_addr=oa + lane,
             chan_stride=1, word_stride=r, **pim, comment=f"head {h} slot {s}: P {d} V")


def _softmax(b, mem, counts, rows_s, geo, sa, s_words, p_hi, p_lo, p_words, kp, vp, chunk, zeros):
    """Step 3: the softmax of each request of ``mem`` into two digit planes."""
    r, c = b.cfg.rows, b.cfg.cols
    used = rows_s * geo.group // r  # packed words the P V passes read
    for j, i in enumerate(mem):
        n = counts[i]
        acc = sa + j * s_words
        passes = [(SoftFunc.MAX, None, 0), (SoftFunc.EXP, None, 0),
                  (SoftFunc.NORM, ProbFormat.HI, p_hi), (SoftFunc.NORM, ProbFormat.LO, p_lo)]
        for func, pfmt, pa in passes:
            for t0 in range(0, n, chunk):
                cnt = min(chunk, n - t0)
                extra = {} if pfmt is None else dict(pfmt=pfmt, act_addr=pa + j * p_words + t0 // r)
                b.op("VSOFT", func=func, acc_addr=acc + t0 // c, words=-(-cnt // c), count=cnt,
                     kparam=kp, vparam=vp, first=int(t0 == 0), **extra)
        valid = -(-n // r)
        if valid < used:
            for pa in (p_hi, p_lo):
                b.load(Spad.ACT, pa + j * p_words + valid, zeros, used - valid, comment="P padding: zeros")
