"""A LLaMA decode step with sub-batch interleaving (NeuPIMs): the batch split in two, the NPU
running one sub-batch's projections and FFN while PIM runs the other's attention.

Per block ``l`` and sub-batch ``s`` a step has three parts: ``F(s, l)`` (NPU: QKV, RoPE, V),
``P(s, l)`` (PIM: decode attention) and ``N(s, l)`` (NPU: O, norms, FFN). The program is

    F(A,0) | F(B,0) + P(A,0) | N(A,0) F(A,1) + P(B,0) | N(B,0) F(B,1) + P(A,1) | ...
    ... | N(A,L-1) head(A) + P(B,L-1) | N(B,L-1) head(B)

where ``X + Y`` is two recorded streams merged (:func:`~.interleave.merge`), so each stage's NPU
work overlaps the other sub-batch's attention. Every weight is streamed once per sub-batch (twice
per step), which is what interleaving costs; it pays only when attention outweighs that (on the
16-row ``llm`` tile it did not, up to 16 requests of 2000 tokens: docs/results.md). The arithmetic of each request is that of
:meth:`~.llama_decoder.LlamaCompiler.lower_step` without interleaving, bit for bit.
"""

from .decode_attention import scratch_words
from .emit import CompileError
from .interleave import SplitSpads, merge
from .llama_cache import flat_caches
from .llama_kernels import rope_words
from .model_build import ModelBuild
from .model_kernels import linear_acc, residual_norm, start_program
from .record import record

__all__ = ["split_batch", "build_interleaved"]


def split_batch(cfg, batch):
    """The first sub-batch's size: half the batch (rounded up), in whole PIM slots
    (``dram_channels`` requests) when that leaves the second sub-batch some requests."""
    if batch < 2:
        raise CompileError(f"sub-batch interleaving needs at least 2 requests, not {batch}")
    if batch > cfg.rows:  # request blocks (llama_cache.block_caches): whole ones each
        return -(-batch // cfg.rows // 2) * cfg.rows
    nch = cfg.dram_channels
    a = -(-batch // 2)
    whole = -(-a // nch) * nch
    return whole if whole < batch else a


class _SubBatch:
    """One sub-batch's state while the step is built: requests ``first ..`` (``ids``,
    ``lengths``), its residual stream and the tensors passed between parts."""

    def __init__(self, lc, b, tag, first, ids, lengths):
        cfg = lc.cfg
        self.tag, self.first, self.lengths = tag, first, list(lengths)
        m = len(ids)
        self.res = b.res(f"{tag}embed", m, lc.mc.hidden, lc.embed_image(ids))
        table = rope_words(cfg, lengths, lc.inv_freq)
        self.table = b.region(f"{tag}rope", len(table), cfg.act_word_bytes, table)
        self.x = b.act(f"{tag}x0", m, lc.mc.hidden)
        self.qkv = None
        self.logits = None


def build_interleaved(lc, ids, lengths, kv, cache_data, n_layers, tune):
    """The :class:`~.model_build.ModelBuild` of an interleaved decode step of ``lc``
    (:class:`~.llama_decoder.LlamaCompiler`) through ``n_layers`` blocks and the LM head, and
    the two sub-batches' logits (:class:`~.model_build.AccRows`)."""
    cfg, mc = lc.cfg, lc.mc
    if n_layers < 1:
        raise CompileError("sub-batch interleaving needs at least one block")
    a = split_batch(cfg, len(ids))
    caches = flat_caches(kv.caches)
    spads = SplitSpads.of(cfg, mc.hidden, scratch_words(cfg, caches[0], [n + 1 for n in lengths]))
    b = ModelBuild(cfg, lc.linear_memo, lc.dram_key)
    lc.reg.restart()  # a program's instructions depend on its inputs only
    b.linear_config = spads.linear
    for c in caches:
        c.attach(b)
    b.segments.extend(cache_data)
    start_program(b)
    subs = [_SubBatch(lc, b, "s0.", 0, ids[:a], lengths[:a]),
            _SubBatch(lc, b, "s1.", a, ids[a:], lengths[a:])]
    norm = lc._norm(b, "l0.norm1", lc.blocks[0].norm1)
    for s in subs:
        with b.operator("attn_norm"):
            residual_norm(b, lc.reg, s.res, norm, s.x, s.res)

    def front(s, layer):
        s.qkv = lc.front(b, layer, s.x, s.table, tune, s.tag)

    def attend(s, layer):
        q, k, v, ctx = s.qkv
        lc.attend(b, spads.pim, layer, q, k, v, ctx, kv.caches[layer], s.lengths, first=s.first)

    def back(s, layer):
        last = layer == n_layers - 1
        nxt = (lc._norm(b, "final_norm", lc.final_norm) if last
               else lc._norm(b, f"l{layer + 1}.norm1", lc.blocks[layer + 1].norm1))
        s.x, s.res = lc.back(b, layer, s.qkv[3], s.res, nxt, lc.head_copies if last else 1, tune, s.tag,
                             next_op="final_norm" if last else "attn_norm")
        if last:
            with b.operator("lm_head"):
                s.logits = linear_acc(b, "lm_head", s.x, lc.lm_head, out=f"{s.tag}logits", tune=tune)
        else:
            front(s, layer + 1)

    def stage(npu, pim):
        with record(b) as first:
            npu()
        with record(b) as second:
            pim()
        merge(b, first, second)

    A, B = subs
    front(A, 0)
    stage(lambda: front(B, 0), lambda: attend(A, 0))
    for layer in range(n_layers):
        stage(lambda: back(A, layer), lambda: attend(B, layer))
        if layer + 1 < n_layers:
            stage(lambda: back(B, layer), lambda: attend(A, layer + 1))
        else:
            back(B, layer)
    return b, (A.logits, B.logits)

