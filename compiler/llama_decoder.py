"""A LLaMA-family decoder (SmolLM2-135M) on the tile: quantization from the GGUF codes, a prompt's
prefill as one program and batched decode steps with attention on PIM (docs/compiler.md, "Whole
models", "Generation").

Numbers (docs/decisions.md, "Whole models"): the projections keep the checkpoint's Q4_1 codes
exactly (zero point 0, group offsets: the ``llm`` preset), FP16 activations, the residual stream
32-bit fixed point in ACC (``2**-res_frac``), keys INT8 per RoPE pair and values INT8 per channel
(static scales from :func:`~.calibrate.calibrate_llama`; the key scale and ``1/sqrt(head_dim)``
fold into the query's RoPE multipliers), FP16 probabilities; the tied LM head is the Q8_0
embedding as two 4-bit planes (:mod:`.nibble_planes`), exactly. The host gathers the embedding
rows into DRAM (residual units) and reads the logits' accumulators. Per block (pre-norm):

    RMSNorm -> QKV (one Linear) -> RoPE epilogue (Q FP16, K INT8), V INT8 direct -> causal GQA
    attention -> O Linear -> RES + RMSNorm -> gate|up (one Linear) -> GLU -> down Linear -> RES
    (+ the next block's RMSNorm)

and after the last block the final RMSNorm and the LM head.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mixpim.models.executor import unpack_acc
from mixpim.models.isa import VecFunc
from mixpim.models.vec_fixed import FRAC as FIX
from mixpim.models.mixpe import ArrayParams, output_to_float
from mixpim.models.program import Segment
from mixpim.models.vector import pack_vparam

from .decode_attention import decode_attention
from .emit import CompileError
from .gguf_checkpoint import Q4_1Weights
from .llama_cache import cache_prompt, flat_caches
from .llama_interleave import build_interleaved
from .llama_kernels import RopeLayout, RopePair, glu_epilogue, rope_epilogue, rope_words
from .model_build import DirectTensor, ModelBuild
from .model_kernels import (NormParams, PackedLinear, Regions, TileOut, epilogue, linear_acc, norm_words,
                            pack_linear, residual_image, residual_norm, residual_units, start_program,
                            acc_multipliers, param_blocks)
from .nibble_planes import PLANES, planes_of_codes
from .npu_attention import NpuKVCache, npu_cache_prompt, npu_decode_attention
from .prefill_attention import context_words, prefill_attention, soft_words

__all__ = ["LlamaCompiler", "CompiledLlama", "on_npu"]


def _rows_q4_1(mats):
    """One :class:`Q4_1Weights` of matrices stacked by rows."""
    return Q4_1Weights(*(np.concatenate([getattr(w, f) for w in mats]) for f in ("d", "m", "q")))


def _blocks(cfg, mult, shift, partner=None):
    """VPARAM image (bytes), ``2 cols`` words per feature block: the multipliers ``(mult,
    shift)``, then each column's partner's (``partner[n]``: the feature n is paired with; None:
    zeros, no bias)."""
    second = None if partner is None else pack_vparam(mult[partner], shift[partner])
    return param_blocks(cfg, pack_vparam(mult, shift), second)


@dataclass(frozen=True)
class _Block:
    """One block's packed weights and VPARAM images; ``step_params``: the QKV epilogue of a
    decode step (INT8 queries for PIM, one unit = ``q_scale[h]``); ``v_scale`` per KV feature."""

    qkv: object
    o: object
    gate_up: object
    down: object
    qkv_params: bytes
    o_params: bytes
    glu_params: bytes
    down_params: bytes
    ctx: bytes
    norm1: tuple
    norm2: tuple
    step_params: bytes
    q_scale: np.ndarray
    v_scale: np.ndarray


def on_npu(cache):
    """Whether ``cache`` (a block's, or a tuple of them) is for attention on the array."""
    return isinstance(cache[0] if isinstance(cache, tuple) and cache else cache, NpuKVCache)


def _rows(cfg, t, j, n):
    """Tokens ``j .. j + n - 1`` (``j`` a multiple of ``rows``) of the tensor ``t``."""
    if isinstance(t, DirectTensor):
        return dataclasses.replace(t, base=t.addr(cfg, 0, j), m=n)
    return dataclasses.replace(t, base=t.addr(cfg, j // cfg.rows), m=n)


@dataclass(frozen=True)
class _Kv:
    """KV caches of a program: ``caches`` (one per block); a prompt's ``request``, or a decode
    step's ``lengths`` (per request)."""

    caches: list
    request: object
    lengths: object


@dataclass
class CompiledLlama:
    """A compiled prefill: ``program``, ``logits_at`` (:class:`~.model_build.AccRows` of the
    LM head, a tuple of them whose rows follow each other (sub-batches), or None), ``lm_head``
    (its QuantizedWeights), ``tokens``, ``vocab``; ``hidden_at``
    the residual stream after the last compiled block (:class:`~.model_build.ResTensor`) in
    units of ``2**-res_frac``; ``operators``: each instruction's operator (the layer graph's
    names: ``qkv_proj`` is q, k and v; performance reports); ``timing``: the program's cycle
    model run if compiling made one (:attr:`~.emit.Emitter.timing`), else None."""

    program: object
    logits_at: object
    lm_head: object
    tokens: int
    vocab: int
    hidden_at: object = None
    res_frac: int = 0
    operators: tuple = ()
    timing: object = None

    def hidden(self, result):
        """The residual stream (tokens, hidden) float64 after the last compiled block (before
        the final norm), from an executor result."""
        return self.hidden_at.read(self.program.config, result, self.res_frac)

    def logits(self, result):
        """The logits (tokens, vocab) float64 from an executor result."""
        cfg = self.program.config
        parts = self.logits_at if isinstance(self.logits_at, tuple) else (self.logits_at,)
        acc = np.concatenate([np.asarray(unpack_acc(cfg, result.read(y.base, y.m * y.nb * cfg.acc_word_bytes)))
                              .reshape(y.m, y.nb * cfg.cols)[:, :self.vocab] for y in parts])
        return output_to_float(ArrayParams.from_config(cfg), acc, self.lm_head)


class LlamaCompiler:
    """Quantizes ``model`` (:class:`~.llama_float.LlamaFloat` of a GGUF checkpoint) for ``config``
    (FP16 square tile with group offsets and group 32) with ``ranges``
    (:func:`~.calibrate.calibrate_llama`); :meth:`lower` compiles a prompt's prefill."""

    def __init__(self, model, config, ranges):
        cfg, mc = ModelBuild.check(config), model.config
        if not cfg.group_offset or cfg.group != 32:
            raise CompileError("Q4_1 weights need a tile with group_offset and group 32 (the llm preset)")
        self.model, self.cfg, self.mc = model, cfg, mc
        self.linear_memo = {}  # the Linears' recorded streams by layout (model_kernels.linear_acc)
        self.dram_key = None  # DRAM placement: region by region (dram_alloc.DramAllocator)
        self.restart_slots = False  # each block's slot rings go on from the last block's
        self.rms, self.bias = True, False  # RMSNorm; no projection biases
        self.hd = mc.head_dim
        self.reg = Regions.of(cfg, mc.hidden)
        self.res_frac, self.qshift = residual_units(ranges.residual)
        w = model.weights
        self.rope = RopeLayout.of(cfg, self.hd)
        self.inv_freq = self.rope.freqs(mc.rope_base ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd))
        self.blocks = [self._block(i, w.blocks[i], ranges.blocks[i]) for i in range(mc.layers)]
        self.final_norm = self._norm_words(w.norm)
        e = w.source.quantized("token_embd.weight")
        self.head_copies = PLANES  # the LM head reads the final norm's output in two planes
        self.lm_head = pack_linear(cfg, planes_of_codes(e.q.astype(np.int64) + 128, np.full(e.d.shape, 128),
                                                        e.d, cfg.group, cfg.scale_bits))

    def constants(self):
        """Every ``bytes`` image this compiler places unchanged in its programs (packed weights,
        VPARAM and norm images), in a fixed order: a program's segments hold these very objects,
        so a process forked from this one can name them instead of copying them
        (:mod:`mixpim.sim.generate`)."""
        out = []

        def walk(v):
            if type(v) is bytes:
                out.append(v)
            elif isinstance(v, PackedLinear):
                walk(v.wgt)
                walk(v.meta)
            elif isinstance(v, tuple):
                for x in v:
                    walk(x)

        for blk in self.blocks:
            walk(tuple(getattr(blk, f.name) for f in dataclasses.fields(blk)))
        walk(self.final_norm)
        walk(self.lm_head)
        return tuple(out)

    def _norm_words(self, gamma):
        mc = self.mc
        return norm_words(self.cfg, mc.hidden, gamma, np.zeros(mc.hidden), eps=mc.norm_eps, rms=True,
                          res_frac=self.res_frac, out_frac=FIX, qshift=self.qshift)

    def _block(self, i, bw, rg):
        cfg, mc, hd = self.cfg, self.mc, self.hd
        w = self.model.weights
        group = mc.heads // mc.kv_heads
        h, kvw = mc.hidden, mc.kv_width
        # the output rows in RoPE's order (llama_kernels.RopeLayout): queries, keys, then values
        order = np.concatenate([self.rope.perm(h), h + self.rope.perm(kvw), np.arange(h + kvw, h + 2 * kvw)])
        q4 = _rows_q4_1([w.quantized(i, n) for n in ("wq", "wk", "wv")])
        qkv = Q4_1Weights(q4.d[order], q4.m[order], q4.q[order]).to_quantized(cfg.scale_bits)
        # per output feature: its pair partner within the head and its output scale
        half = hd // 2
        idx = np.arange(h + 2 * kvw)
        within = idx % hd
        where = np.argsort(order)  # feature -> output row
        partner = where[np.where(idx < h + kvw, idx - within + (within + half) % hd, idx)][order]
        s_k = np.concatenate([rg.k, rg.k], axis=1).reshape(-1) / 127        # (kv_width,) per pair
        s_k = np.where(s_k > 0, s_k, 1.0)
        s_v = np.where(rg.v.reshape(-1) > 0, rg.v.reshape(-1) / 127, 1.0)
        s_kq = np.repeat(s_k.reshape(mc.kv_heads, hd), group, axis=0).reshape(-1)  # per query feature
        scale = np.concatenate([s_kq / math.sqrt(hd) * 2.0 ** FIX, 1 / s_k, 1 / s_v])
        scale = scale[order]
        qkv_params = _blocks(cfg, *acc_multipliers(qkv, scale), partner)
        # a decode step's queries go to PIM as INT8: q * s_k in units of the head's q_scale
        q_scale = np.where(rg.q_folded > 0, rg.q_folded / 127, 1.0)
        step = scale.copy()
        step[:h] = (s_kq / np.repeat(q_scale, hd))[order[:h]]
        step_params = _blocks(cfg, *acc_multipliers(qkv, step), partner)
        o = w.quantized(i, "wo").to_quantized(cfg.scale_bits)
        gu = _rows_q4_1([w.quantized(i, "w_gate"), w.quantized(i, "w_up")]).to_quantized(cfg.scale_bits)
        down = w.quantized(i, "w_down").to_quantized(cfg.scale_bits)
        res = 2.0 ** self.res_frac
        f = mc.ffn
        gm, gs = acc_multipliers(gu, 2.0 ** FIX)
        s_vq = np.repeat(s_v.reshape(mc.kv_heads, hd), group, axis=0).reshape(-1)
        return _Block(pack_linear(cfg, qkv), pack_linear(cfg, o), pack_linear(cfg, gu),
                      pack_linear(cfg, down), qkv_params, _blocks(cfg, *acc_multipliers(o, res)),
                      param_blocks(cfg, pack_vparam(gm[:f], gs[:f]), pack_vparam(gm[f:], gs[f:])),
                      _blocks(cfg, *acc_multipliers(down, res)), context_words(cfg, s_vq),
                      self._norm_words(bw.attn_norm), self._norm_words(bw.ffn_norm), step_params,
                      q_scale, s_v)

    def _norm(self, b, name, words):
        nparam, act, _ = words
        return NormParams(b.region(f"{name}.nparam", len(nparam), 4, nparam),
                          b.region(f"{name}.act", len(act), 4, act), None, self.rms, self.qshift)

    def lower(self, ids, *, layers=None, logits="all", tune=True, caches=None, request=0, cache_data=()):
        """A :class:`CompiledLlama`: the prefill of the prompt ``ids`` through the first ``layers``
        blocks (default all), then the final norm and the LM head: the logits of every token
        (``logits="all"``) or of the last token block only (``"last"``: what generation needs;
        :meth:`CompiledLlama.logits` then has a row per token of that block), or none (``"none"``:
        no final norm or LM head; :meth:`CompiledLlama.hidden` reads the residual stream).

        ``caches`` (:func:`~.llama_cache.layer_caches`, one per compiled block): the prompt's keys and values
        also go into request ``request``'s KV cache rows; ``cache_data``: DRAM segments of the
        caches so far (e.g. other requests' prompts, ``KVCache.segment(result.dram)``)."""
        if logits not in ("all", "last", "none"):
            raise CompileError(f"logits must be 'all', 'last' or 'none', not {logits!r}")
        ids = self.check_ids(ids, 0)
        n_layers = self._layers(layers)
        kv = None if caches is None else _Kv(caches, request, None)
        return self._build(ids, np.arange(len(ids)), n_layers, logits, tune, kv, cache_data)

    def lower_step(self, ids, lengths, caches, cache_data=(), *, tune=False, layers=None, logits="all",
                   interleave=False):
        """One batched decode step: request i (``ids[i]``, its newest token, at position
        ``lengths[i]``: the tokens its cache holds) through the first ``layers`` blocks (default
        all) with attention on PIM against ``caches`` (one per block, their DRAM contents
        ``cache_data``), which gain the new keys and values; the logits of every request
        (:meth:`CompiledLlama.logits`), or none (``logits="none"``, as in :meth:`lower`).
        ``interleave``: split the batch in two and overlap one sub-batch's NPU work with the
        other's attention on PIM (:mod:`.llama_interleave`; at least 2 requests, ``logits="all"``).
        A batch of more than ``rows`` requests runs in request blocks of ``rows``, each with its
        own cache: a block's ``caches`` entry is then a tuple of them (:func:`~.llama_cache.block_caches`)."""
        if logits not in ("all", "none"):
            raise CompileError(f"a decode step's logits must be 'all' or 'none', not {logits!r}")
        ids = np.asarray(ids)
        lengths = [int(n) for n in lengths]
        r = self.cfg.rows
        most = r * len(caches[0]) if caches and isinstance(caches[0], tuple) else r
        if ids.ndim != 1 or len(ids) != len(lengths) or not 1 <= len(ids) <= most:
            raise CompileError(f"a decode step takes 1..{most} requests, one id and one "
                               f"length each (got {ids.shape} ids, {len(lengths)} lengths)")
        for i, n in zip(ids, lengths):  # each request adds one position to its own cache
            self.check_ids([i], n)
        if interleave:
            if on_npu(caches[0] if caches else None):
                raise CompileError("sub-batch interleaving overlaps attention on PIM; these caches are "
                                   "for attention on the array")
            if logits != "all":
                raise CompileError("an interleaved decode step computes the logits (logits='all')")
            kv = _Kv(caches, None, lengths)
            n_layers = self._layers(layers)
            if len(caches) != n_layers:
                raise CompileError(f"{len(caches)} KV caches for {n_layers} compiled blocks")
            b, y = build_interleaved(self, ids, lengths, kv, cache_data, n_layers, tune)
            return self._compiled(b, y, len(ids), None)
        return self._build(ids, np.array(lengths), self._layers(layers), logits, tune,
                           _Kv(caches, None, lengths), cache_data)

    def retarget(self, compiled, ids, cache_data=()):
        """``compiled`` (a plain :meth:`lower_step` compiled for other token ids and without cache
        contents) for the newest tokens ``ids`` and the caches' DRAM contents ``cache_data``: a
        step's instructions depend only on its lengths, so it can be compiled before its tokens
        are known (the host writes their embedding rows, as for any step)."""
        prog = compiled.program
        base = prog.symbols.get("embed")
        ids = self.check_ids(ids, 0)
        if base is None or len(ids) != compiled.tokens:
            raise CompileError(f"retarget takes a plain decode step and {compiled.tokens} ids, not "
                               f"{len(ids)}")
        image = self.embed_image(ids)
        segs = [Segment("dram", base, image) if s.target == "dram" and s.base == base else s
                for s in prog.segments]
        return dataclasses.replace(compiled, program=dataclasses.replace(
            prog, segments=tuple(cache_data) + tuple(segs)))

    def check_ids(self, ids, start):
        """``ids`` as an array, checked to continue ``start`` cached positions."""
        return self.model.check_ids(ids, start)

    def embed_image(self, ids):
        """The residual stream's DRAM image of the embedding rows of ``ids``."""
        return residual_image(self.cfg, self.model.weights.embed[ids], self.res_frac)

    def _compiled(self, b, logits_at, m, res):
        """The :class:`CompiledLlama` of the program built in ``b``."""
        prog = b.program()
        return CompiledLlama(prog, logits_at, None if logits_at is None else self.lm_head.qw, m,
                             self.mc.vocab, res, self.res_frac, b.em.operators(), b.em.timing)

    def _layers(self, layers):
        n = len(self.blocks) if layers is None else layers
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(self.blocks):
            raise CompileError(f"layers must be in 0..{len(self.blocks)}, not {layers!r}")
        return n

    def _build(self, ids, positions, n_layers, logits, tune, kv, cache_data):
        cfg, mc = self.cfg, self.mc
        m, d = len(ids), mc.hidden
        b = ModelBuild(cfg, self.linear_memo, self.dram_key)
        self.reg.restart()  # a program's instructions depend on its inputs only
        if kv is not None:
            if len(kv.caches) != n_layers:
                raise CompileError(f"{len(kv.caches)} KV caches for {n_layers} compiled blocks")
            for c in flat_caches(kv.caches):
                c.attach(b)
            b.segments.extend(cache_data)
        start_program(b)
        res = b.res("embed", m, d, self.embed_image(ids))
        table = rope_words(cfg, positions, self.inv_freq)
        table_at = b.region("rope", len(table), cfg.act_word_bytes, table)
        norm = self._norm(b, "l0.norm1", self.blocks[0].norm1) if n_layers else None
        x = b.act("x0", m, d)
        if n_layers:
            with b.operator("attn_norm"):
                residual_norm(b, self.reg, res, norm, x, res)
        for i in range(n_layers):
            last = i == n_layers - 1
            nxt = (self._norm(b, "final_norm", self.final_norm) if last
                   else self._norm(b, f"l{i + 1}.norm1", self.blocks[i + 1].norm1))
            x, res = self._layer(b, i, x, res, table_at, nxt, self.head_copies if last else 1, tune, kv,
                                 "final_norm" if last else "attn_norm")
        if logits == "none":
            return self._compiled(b, None, m, res)
        if not n_layers:
            x = b.act("x_final", m, d, self.head_copies)
            with b.operator("final_norm"):
                residual_norm(b, self.reg, res, self._norm(b, "final_norm", self.final_norm), x, res)
        if logits == "last":  # the last token block's rows of the final norm's output
            last = (m - 1) // cfg.rows
            x = dataclasses.replace(x, base=x.addr(cfg, last), m=m - last * cfg.rows)
        with b.operator("lm_head"):
            y = linear_acc(b, "lm_head", x, self.lm_head, out="logits", tune=tune)
        return self._compiled(b, y, m, res)

    def _layer(self, b, i, x, res, table, next_norm, next_copies, tune, kv, next_op):
        with b.block(i):
            self._restart(self.reg)
            return self._layer_body(b, i, x, res, table, next_norm, next_copies, tune, kv, next_op)

    def _restart(self, reg):
        """With ``restart_slots``, a block's kernels take their scratchpad slots from the first
        (timing-only programs: every block the same instructions, :mod:`.llama_shapes`)."""
        if self.restart_slots:
            reg.restart()

    def _layer_body(self, b, i, x, res, table, next_norm, next_copies, tune, kv, next_op):
        mc, hd, B = self.mc, self.hd, self.blocks[i]
        m, h, kvw, p = x.m, mc.hidden, mc.kv_width, f"l{i}"
        step = kv is not None and kv.lengths is not None
        if step:
            q, k, v, ctx = self.front(b, i, x, table, tune, npu=on_npu(kv.caches[i]))
            self.attend(b, self.reg, i, q, k, v, ctx, kv.caches[i], kv.lengths)
        else:
            y, q, k, prm = self._qkv(b, i, x, table, False, tune, "")
            ctx = b.act("ctx", m, h)
            v = self._values(b, y, prm, b.direct("v", m, kvw), True)
            soft = soft_words(m)
            with b.operator("attn_context"):
                prefill_attention(b, self.reg, q, k, v, ctx, heads=mc.heads, head_dim=hd,
                                  kv_heads=mc.kv_heads, causal=True,
                                  soft=b.region(f"{p}.soft", len(soft), 4, soft),
                                  ctx=b.region(f"{p}.ctx.params", len(B.ctx), 4, B.ctx))
            if kv is not None and on_npu(kv.caches[i]):
                cache, req = kv.caches[i], kv.request
                if isinstance(cache, tuple):  # request blocks of `rows` requests
                    cache, req = cache[req // self.cfg.rows], req % self.cfg.rows
                with b.operator("kv_append"):
                    npu_cache_prompt(b, self.reg, k, v, cache, req)
            elif kv is not None:
                v_t = self._values(b, y, prm, b.act("v_t", m, kvw), False)
                with b.operator("kv_append"):
                    cache_prompt(b, self.reg, k, v_t, kv.caches[i], kv.request)
        return self.back(b, i, ctx, res, next_norm, next_copies, tune, next_op=next_op)

    def _qkv(self, b, i, x, table, step, tune, tag):
        """The QKV Linear and its epilogue: ``(y, q, k, params)``; ``q`` FP16 (prefill) or INT8
        integers for PIM (``step``), ``k`` INT8; ``tag`` prefixes the workspaces."""
        mc, B, p = self.mc, self.blocks[i], f"l{i}"
        with b.operator("qkv_proj"):
            y = linear_acc(b, f"{p}.qkv", x, B.qkv, out=f"{tag}qkv.y", tune=tune)
        q, k = b.act(f"{tag}q", x.m, mc.hidden), b.act(f"{tag}k", x.m, mc.kv_width)
        img = B.step_params if step else B.qkv_params
        prm = b.region(f"{p}.qkv.params", len(img), 4, img)
        self._qk_epilogue(b, y, q, k, prm, step, table)
        return y, q, k, prm

    def _qk_epilogue(self, b, y, q, k, prm, step, table):
        """RoPE on the queries and keys of the QKV accumulators ``y`` (column parameters at
        ``prm``) into ``q`` and ``k``."""
        c, h, kvw = self.cfg.cols, self.mc.hidden, self.mc.kv_width
        pairs = []
        for base, tensor, fmt, width in ((0, q, int(not step), h), (h // c, k, 0, kvw)):
            for lo, hi, freq, at_lo, at_hi in self.rope.pairs(width):
                lo, hi = base + lo, base + hi
                pairs.append(RopePair(lo, hi, prm + lo * 2 * c * 4, prm + hi * 2 * c * 4, fmt, tensor,
                                      at_lo, at_hi, freq))
        with b.operator("rope"):
            rope_epilogue(b, self.reg, y, pairs, table, len(self.inv_freq))

    def _values(self, b, y, prm, tensor, direct):
        """V as INT8 per channel from the QKV accumulators: direct rows (P V) or K-major (PIM)."""
        c, mc = self.cfg.cols, self.mc
        vb = (mc.hidden + mc.kv_width) // c
        outs = [None] * vb + [TileOut(prm + (vb + j) * 2 * c * 4, VecFunc.REQUANT, 0, self.bias, tensor,
                                      j if direct else j * c, direct=direct) for j in range(mc.kv_width // c)]
        with b.operator("v_quant"):
            epilogue(b, self.reg, y, outs)
        return tensor

    def front(self, b, i, x, table, tune, tag="", npu=False):
        """A decode step's NPU work before attention in block i: QKV, RoPE, V: ``(q, k, v, ctx)``
        (``ctx`` the workspace attention writes); ``npu``: for attention on the array (prefill
        attention's formats: FP16 queries, V as direct rows)."""
        with b.block(i):
            self._restart(self.reg)
            return self._front(b, i, x, table, tune, tag, npu)

    def _front(self, b, i, x, table, tune, tag, npu=False):
        y, q, k, prm = self._qkv(b, i, x, table, not npu, tune, tag)
        ctx = b.act(f"{tag}ctx", x.m, self.mc.hidden)
        kvw = self.mc.kv_width
        v = (b.direct(f"{tag}v", x.m, kvw) if npu else b.act(f"{tag}v_new", x.m, kvw))
        return q, k, self._values(b, y, prm, v, npu), ctx

    def attend(self, b, reg, i, q, k, v, ctx, cache, lengths, first=0):
        """A decode step's attention on PIM in block i into ``ctx`` (scratchpad regions ``reg``,
        requests ``first ..`` of ``cache``: a :class:`~.decode_attention.KVCache`, or a tuple of
        them, one per request block of ``rows`` requests)."""
        with b.block(i):
            self._restart(reg)
            self._attend(b, reg, i, q, k, v, ctx, cache, lengths, first)

    def _attend(self, b, reg, i, q, k, v, ctx, cache, lengths, first):
        mc, B, cfg = self.mc, self.blocks[i], self.cfg
        if isinstance(cache, tuple) and len(cache) == 1:
            cache = cache[0]
        if not isinstance(cache, tuple):
            cache, parts = (cache,), [(q, k, v, ctx, lengths, 0, first)]
        else:  # request blocks of `rows` requests, each with its own cache
            r = cfg.rows
            if first % r:
                raise CompileError(f"internal: a sub-batch of request blocks starts at {first}")
            parts = []
            for j in range(0, len(lengths), r):
                n = min(r, len(lengths) - j)
                parts.append((*(_rows(cfg, t, j, n) for t in (q, k, v, ctx)),
                              lengths[j:j + n], (first + j) // r, 0))
        if on_npu(cache):
            soft_tokens = max(lengths) + 1
            soft = soft_words(soft_tokens)
            soft = b.region(f"l{i}.soft", len(soft), 4, soft)
            prm = b.region(f"l{i}.ctx.params", len(B.ctx), 4, B.ctx)
        for pq, pk, pv, pctx, plen, blk, pfirst in parts:
            with b.operator("attn_context"):
                if on_npu(cache):
                    npu_decode_attention(b, reg, pq, pk, pv, pctx, cache=cache[blk], lengths=plen,
                                         heads=mc.heads, head_dim=self.hd, soft=soft, soft_tokens=soft_tokens,
                                         ctx=prm, first=pfirst)
                    continue
                decode_attention(b, reg, pq, pk, pv, pctx, cache=cache[blk], lengths=plen, heads=mc.heads,
                                 kv_heads=mc.kv_heads, head_dim=self.hd, q_scale=B.q_scale,
                                 v_scale=B.v_scale, name=f"l{i}.attn", first=pfirst)

    def back(self, b, i, ctx, res, next_norm, next_copies, tune, tag="", next_op="attn_norm"):
        """Block i after attention: O, residual + norm, gate|up, GLU, down, residual + the next
        norm (the operator ``next_op``): ``(x, res)`` of the next block."""
        with b.block(i):
            return self._back(b, i, ctx, res, next_norm, next_copies, tune, tag, next_op)

    def _ffn_hidden(self, b, i, x2, tune, tag):
        """The FFN's hidden activations (FP16 :class:`~.model_build.ActTensor`) of block i from
        its normed input ``x2``: gate|up (one Linear), then SwiGLU."""
        mc, B, p = self.mc, self.blocks[i], f"l{i}"
        with b.operator("gate_up_proj"):
            yg = linear_acc(b, f"{p}.gate_up", x2, B.gate_up, out=f"{tag}gate_up.y", tune=tune)
        hid = b.act(f"{tag}h", x2.m, mc.ffn)
        with b.operator("glu"):
            glu_epilogue(b, self.reg, yg, mc.ffn // self.cfg.cols,
                         b.region(f"{p}.glu.params", len(B.glu_params), 4, B.glu_params), hid)
        return hid

    def _back(self, b, i, ctx, res, next_norm, next_copies, tune, tag, next_op):
        mc, B, p = self.mc, self.blocks[i], f"l{i}"
        m, h = ctx.m, mc.hidden
        with b.operator("o_proj"):
            yo = linear_acc(b, f"{p}.o", ctx, B.o, out=f"{tag}o.y", tune=tune)
        x2 = b.act(f"{tag}x2", m, h)
        r2 = b.res(f"{tag}r2", m, h)
        residual_norm(b, self.reg, res, self._norm(b, f"{p}.norm2", B.norm2), x2, r2,
                      update=(yo, b.region(f"{p}.o.params", len(B.o_params), 4, B.o_params)),
                      ops=("attn_residual", "ffn_norm"))
        hid = self._ffn_hidden(b, i, x2, tune, tag)
        with b.operator("down_proj"):
            yd = linear_acc(b, f"{p}.down", hid, B.down, out=f"{tag}down.y", tune=tune)
        x3 = b.act(tag + ("x3" if next_copies == 1 else "x_final"), m, h, next_copies)
        r3 = b.res(f"{tag}r3", m, h)
        residual_norm(b, self.reg, r2, next_norm, x3, r3,
                      update=(yd, b.region(f"{p}.down.params", len(B.down_params), 4, B.down_params)),
                      ops=("ffn_residual", next_op))
        return x3, r3
