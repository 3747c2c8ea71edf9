"""The KV caches of a decoder in the PIM banks: one :class:`~.decode_attention.KVCache` per block
(:func:`layer_caches`), filled with a prompt's keys and values by the prefill program
(:func:`cache_prompt`) and appended to by every decode step (:func:`~.decode_attention.decode_attention`).

:func:`cache_prompt` moves one request's prompt from the K-major INT8 tensors its epilogue wrote
(lane t of a token block's words = token t) into the request's cache rows: per KV head and kind,
the tokens that share a bank row (``tokens_per_bank`` consecutive tokens) are gathered one by one
into the channel's global buffer (``PIM_GBUF`` of the token's lane, at ``gaddr = j * head_dim``)
and written with one ``PIM_WRITE``.
"""

from mixpim.models.isa import Spad

from .decode_attention import KVCache
from .emit import CompileError

__all__ = ["layer_caches", "block_caches", "flat_caches", "cache_prompt"]


def layer_caches(cfg, model_config, *, batch, capacity):
    """One :class:`KVCache` per block of ``model_config`` (consecutive bank rows from row 0) for
    ``batch`` requests of up to ``capacity`` tokens each."""
    caches, row = [], 0
    for _ in range(model_config.layers):
        c = KVCache.create(cfg, batch=batch, kv_heads=model_config.kv_heads,
                           head_dim=model_config.head_dim, capacity=capacity, base_row=row)
        caches.append(c)
        row = c.end_row
    return caches


def block_caches(cfg, model_config, capacities, *, layers=None, shared=False, share_requests=False):
    """Per block of ``model_config`` (the first ``layers``, default all) a tuple of
    :class:`KVCache` s, one per request block of ``rows`` requests (the last may be smaller), the
    j-th holding ``capacities[j]`` tokens per request: a decode step of more requests than the
    array has rows (:meth:`~.llama_decoder.LlamaCompiler.lower_step`). ``capacities`` gives one
    capacity per request, grouped here into PIM slots (``dram_channels`` consecutive requests;
    each slot takes its largest). ``shared``:
    every block gets the same caches (the same bank rows); ``share_requests``: every request block
    too, one cache of ``rows`` requests whose slot j holds the longest slot j of any block:
    timing-only programs of models whose caches do not all fit the DRAM (:mod:`mixpim.sim.perf`)."""
    r, nch = cfg.rows, cfg.dram_channels
    caps = [int(c) for c in capacities]
    sizes = [min(r, len(caps) - j) for j in range(0, len(caps), r)]
    slot_caps = [[max(caps[j * r:j * r + size][s:s + nch]) for s in range(0, size, nch)]
                 for j, size in enumerate(sizes)]
    if share_requests:  # one cache, the first block's size (the largest), made once below
        slot_caps = [[max(c[s] for c in slot_caps if s < len(c)) for s in range(len(slot_caps[0]))]] * len(sizes)
    n = model_config.layers if layers is None else layers
    out, row = [], 0
    for _ in range(1 if shared else n):
        blocks = []
        for size, mine in zip(sizes, slot_caps):
            if share_requests and blocks:
                blocks.append(blocks[0])
                continue
            c = KVCache.create(cfg, batch=size, kv_heads=model_config.kv_heads,
                               head_dim=model_config.head_dim, capacity=mine, base_row=row)
            blocks.append(c)
            row = c.end_row
        out.append(tuple(blocks))
    return out * n if shared else out


def flat_caches(caches):
    """Every :class:`KVCache` of ``caches`` (each a cache or a tuple of them) once, in order."""
    out = {}
    for layer in caches:
        for c in layer if isinstance(layer, tuple) else (layer,):
            out.setdefault(id(c), c)
    return list(out.values())


def cache_prompt(b, reg, k, v, cache, request):
    """Emit the writes of the prompt's keys ``k`` and values ``v`` (:class:`~.model_build.ActTensor`
    of ``m`` tokens x ``kv_heads * head_dim`` INT8 integers as FP16) into ``cache`` rows 0 .. m-1
    of ``request``."""
    cfg = b.cfg
    r, hd = cfg.rows, cache.head_dim
    m = k.m
    if m > cache.capacity:
        raise CompileError(f"a prompt of {m} tokens does not fit a KV cache of {cache.capacity}")
    if not 0 <= request < cache.batch:
        raise CompileError(f"request {request} is outside the cache's batch of {cache.batch}")
    per = min(cache.geo.per_bank, cfg.pim_gbuf_bytes // hd)  # tokens per PIM_WRITE
    blocks = [reg.act_out.end, reg.act_out.end + hd]  # two ACT slots of a token block's head
    for g in range(cache.kv_heads):
        for kind, src in (("k", k), ("v", v)):
            loaded, t0 = None, 0
            while t0 < m:
                ch, bank, row, col = cache.where(request, g, kind, t0)
                n = min(per, m - t0, cache.geo.per_bank - col // hd)  # stay in the bank row
                for j in range(n):
                    t = t0 + j
                    if t // r != loaded:
                        loaded = t // r
                        at = blocks[loaded % 2]
                        b.load(Spad.ACT, at, src.addr(cfg, loaded, g * hd), hd,
                               comment=f"prompt {kind.upper()}, KV head {g}, block {loaded}")
                    b.op("PIM_GBUF", ch=ch, chans=1, gaddr=j * hd, act_addr=at, len=hd, lane=t % r)
                b.op("PIM_WRITE", ch=ch, chans=1, bank=bank, row=row, col=col, gaddr=0, len=n * hd,
                     comment=f"request {request}: prompt {kind.upper()} {t0}..{t0 + n - 1}, KV head {g}")
                t0 += n
