"""Decode attention on the PIM banks (docs/compiler.md, "Decode attention").

One decode step of multi-head attention for a batch of requests with different context lengths:
request i has ``L_i`` cached tokens (K and V, already in its PIM rows) and one new token (query,
key, value). Per head the program

1. appends the new key and value to the request's cache (``PIM_GBUF`` gathers the batch's vectors
   from ACT, ``PIM_WRITE`` puts each into its request's next slot);
2. computes the scores ``q . k_t`` on PIM (``PIM_GBUF`` the queries, one dot ``PIM_GEMV`` per
   row group, ``PIM_READ`` into ACC; with two PIM row buffers per bank ``PIM_ACT`` s open each
   row group ahead: the first while the queries load, the next while the lanes compute, the first
   V row group while the scores are read and the softmax runs);
3. takes an integer softmax of each request's scores on the vector unit (``VSOFT`` MAX, EXP, NORM
   over the request's ``L_i + 1`` scores, with per-token multipliers that fold in the K scales,
   the query scale and ``1 / sqrt(head_dim)``, and per-token V scales into the probabilities);
4. computes ``sum_t p_t v_t`` on PIM (``PIM_GBUF`` the packed probabilities, one bcast
   ``PIM_GEMV`` per row group accumulating in the result registers, ``PIM_READ`` with ``reduce``
   into ACC, in the layout of a projection's output tile);
5. requantizes the output to INT8 (``VEC REQUANT``, per-request token multipliers per head) into
   ACT in the K-major layout the next projection reads, and stores it to DRAM.

**Placement.** Request i is pinned to channel ``i % channels`` (its *slot* is ``i // channels``;
the requests of one slot run in lock step, one PIM instruction for all their channels). Within a
channel a request's tokens fill *row groups*: row ``r`` of every bank, ``tokens_per_bank =
row_bytes // head_dim`` tokens per bank, bank after bank; token t of a head's K (V) cache is in
row ``base + t // group_tokens``, bank ``(t % group_tokens) // tokens_per_bank``, column
``(t % tokens_per_bank) * head_dim``. Every bank of every channel holds the same share of a
slot's tokens (balanced to within one bank row), and one GEMV keeps all banks busy.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from mixpim.models.config import VPARAM_WORD_BYTES
from mixpim.models.isa import Opcode, SoftFunc, Spad, VecFunc
from mixpim.models.numerics import quantize_act_int8
from mixpim.models.pim import pim_row_addr
from mixpim.models.program import Segment
from mixpim.models.softmax import EXP_ONE, exp_step
from mixpim.models.tile_timing import simulate
from mixpim.models.vector import fixed_multiplier, pack_vparam

from .dram_alloc import DramAllocator
from .emit import CompileError, Emitter

__all__ = ["AttentionBatch", "CompiledAttention", "attention_reference", "lower_decode_attention"]


@dataclass(frozen=True)
class AttentionBatch:
    """A decode step's inputs, float32: ``q``, ``k_new``, ``v_new`` (B, heads, head_dim) and per
    request its cached ``k_cache[i]``, ``v_cache[i]`` (L_i, heads, head_dim)."""
    q: np.ndarray
    k_new: np.ndarray
    v_new: np.ndarray
    k_cache: tuple
    v_cache: tuple

    @property
    def batch(self):
        return self.q.shape[0]

    @property
    def heads(self):
        return self.q.shape[1]

    @property
    def head_dim(self):
        return self.q.shape[2]

    def keys(self, i):
        """Request i's keys after the append (L_i + 1, heads, head_dim)."""
        return np.concatenate([self.k_cache[i], self.k_new[i][None]], axis=0)

    def values(self, i):
        return np.concatenate([self.v_cache[i], self.v_new[i][None]], axis=0)


def attention_reference(batch):
    """Float64 attention of every request: (B, heads * head_dim)."""
    out = []
    for i in range(batch.batch):
        k, v = batch.keys(i).astype(np.float64), batch.values(i).astype(np.float64)
        q = batch.q[i].astype(np.float64)
        s = np.einsum("hd,thd->ht", q, k) / math.sqrt(batch.head_dim)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out.append(np.einsum("ht,thd->hd", p, v).reshape(-1))
    return np.stack(out)


@dataclass
class CompiledAttention:
    """A compiled decode-attention step.

    Members
    -------
    program : Program
    out_addr : int
        DRAM byte address of the output: ``heads * head_dim`` ACT words (K-major: word f holds
        feature f of every request, lane i for request i), INT8.
    out_scale : float64 array (B,)
        Per-request scale of the output: ``o[i, f] = int8 * out_scale[i]``.
    reference : float64 array (B, heads * head_dim)
        The float attention the output approximates.
    """
    program: object
    out_addr: int
    out_scale: np.ndarray
    reference: np.ndarray
    symbols: dict = field(default_factory=dict)

    def output(self, result):
        """The dequantized output (B, heads * head_dim) of an executor (or RTL) result."""
        cfg = self.program.config
        n = self.reference.shape[1]
        raw = np.asarray(result.dram[self.out_addr:self.out_addr + n * cfg.act_word_bytes], np.uint8)
        words = raw.view(np.int8).reshape(n, cfg.rows)
        return words[:, :len(self.out_scale)].T.astype(np.float64) * self.out_scale[:, None]


def _quantize(x):
    """Per-row INT8 quantization of (..., head_dim) vectors: ``(int8 array, scales (...))``."""
    flat = x.reshape(-1, x.shape[-1])
    q, s = quantize_act_int8(flat)
    return q.reshape(x.shape), s.astype(np.float64).reshape(x.shape[:-1])


class PimGeometry:
    """Placement arithmetic of one configuration and head size (module doc)."""

    def __init__(self, cfg, head_dim):
        self.cfg = cfg
        self.dk = head_dim
        if head_dim > cfg.dram_row_bytes or cfg.dram_row_bytes % head_dim:
            raise CompileError(f"head_dim {head_dim} must divide the DRAM row ({cfg.dram_row_bytes} bytes)")
        if head_dim % cfg.pim_lanes or head_dim % cfg.cols:
            raise CompileError(f"head_dim {head_dim} must be a multiple of pim_lanes ({cfg.pim_lanes}) "
                               f"and of the array's cols ({cfg.cols})")
        if head_dim > cfg.pim_res_regs:
            raise CompileError(f"head_dim {head_dim} needs as many PIM result registers "
                               f"(pim_res_regs = {cfg.pim_res_regs})")
        self.per_bank = cfg.dram_row_bytes // head_dim
        self.group = self.per_bank * cfg.dram_banks
        if self.per_bank > cfg.pim_res_regs:
            raise CompileError(f"{self.per_bank} tokens per bank row need as many PIM result "
                               f"registers (pim_res_regs = {cfg.pim_res_regs})")
        if self.group % cfg.cols or self.group % cfg.rows or self.group > cfg.pim_gbuf_bytes:
            raise CompileError(f"a row group of {self.group} tokens must be a multiple of the array's "
                               f"rows and cols and fit the {cfg.pim_gbuf_bytes}-byte global buffer")

    def rows_for(self, tokens):
        return -(-tokens // self.group)

    def where(self, base_row, t):
        """``(row, bank, col)`` of token t of a cache whose first row is ``base_row``."""
        row, rest = divmod(t, self.group)
        bank, pos = divmod(rest, self.per_bank)
        return base_row + row, bank, pos * self.dk


def lower_decode_attention(config, batch, *, open_ahead=None):
    """Compile one decode step of attention for ``batch`` (:class:`AttentionBatch`) on ``config``.

    ``open_ahead``: emit the ``PIM_ACT`` s that open row groups ahead (needs ``pim_row_buffers``
    2). None (the default): with two PIM row buffers, compile with and without them and keep the
    program the cycle model finds faster (opening ahead costs the PIM unit 3 cycles and a queue
    slot per row group, which short rows on fast DRAM timing do not repay).

    Raises
    ------
    CompileError
        If the batch, the heads or the contexts do not fit the configuration, or ``open_ahead``
        is asked for with one PIM row buffer.
    """
    if open_ahead is None:
        if config.pim_row_buffers < 2:
            return _lower(config, batch, False)
        both = [_lower(config, batch, ahead) for ahead in (True, False)]
        return min(both, key=lambda c: simulate(config, c.program.instructions).cycles)
    if open_ahead and config.pim_row_buffers < 2:
        raise CompileError("opening row groups ahead needs two PIM row buffers per bank "
                           "(pim_row_buffers 2)")
    return _lower(config, batch, open_ahead)


def _lower(config, batch, open_ahead):
    cfg = config
    b, heads, dk = batch.batch, batch.heads, batch.head_dim
    if cfg.act_format != "int8":
        raise CompileError(f"decode attention needs INT8 activations; {cfg.pe} has FP16 ones")
    if b > cfg.rows:
        raise CompileError(f"batch {b} exceeds the array's rows ({cfg.rows}): one ACT lane per request")
    geo = PimGeometry(cfg, dk)
    nch = cfg.dram_channels
    slots = [list(range(s, min(s + nch, b))) for s in range(0, b, nch)]
    lens = [len(batch.k_cache[i]) + 1 for i in range(b)]  # tokens after the append

    # -- quantize (per token and head) and the multipliers of the softmax ------------------------
    qi, sq = _quantize(batch.q)
    kv = [(_quantize(batch.keys(i)), _quantize(batch.values(i))) for i in range(b)]
    step = exp_step()
    soft_words = []  # per (request, head): VPARAM words: score multipliers, then V multipliers
    for i in range(b):
        (_, sk), (_, sv) = kv[i]
        per_head = []
        for h in range(heads):
            kscale = sq[i, h] * sk[:, h] / (math.sqrt(dk) * step)
            vscale = sv[:, h] / (sv[:, h].max() * EXP_ONE)
            per_head.append(pack_vparam(*fixed_multiplier(np.concatenate([kscale, vscale]))))
        soft_words.append(per_head)
    reference = attention_reference(batch)
    out_scale = np.maximum(np.abs(reference).max(axis=1), 1e-30) / 127

    # -- DRAM: the KV cache rows first, then everything else -----------------------------------
    group_bytes = nch * cfg.dram_banks * cfg.dram_row_bytes
    base = {}  # (slot, head, "k" | "v") -> first row
    row = 0
    for s, members in enumerate(slots):
        need = geo.rows_for(max(lens[i] for i in members))
        for h in range(heads):
            for kind in "kv":
                base[(s, h, kind)] = row
                row += need
    if row > cfg.dram_rows:
        raise CompileError(f"the KV cache needs {row} rows per bank; the DRAM has {cfg.dram_rows}")
    dram = DramAllocator(cfg)
    dram.top = row * group_bytes
    image = np.zeros(row * group_bytes, np.uint8)
    for s, members in enumerate(slots):
        for j, i in enumerate(members):
            for kind, (vals, _) in zip("kv", kv[i]):
                for h in range(heads):
                    for t in range(lens[i] - 1):  # the cached tokens (the new one is appended)
                        r, bank, col = geo.where(base[(s, h, kind)], t)
                        a = pim_row_addr(cfg, j, bank, r) + col
                        image[a:a + dk] = vals[t, h].view(np.uint8)
    segments = [Segment("dram", 0, image.tobytes())]
    soft_addr = {}
    for i in range(b):
        for h in range(heads):
            data = soft_words[i][h]
            soft_addr[(i, h)] = a = dram.alloc(f"soft_{i}_{h}", len(data), VPARAM_WORD_BYTES)
            segments.append(Segment("dram", a, data))
    # token multipliers per head (lane i: the output scale of request i), column identity
    tok_addr = {}
    for h in range(heads):
        scales = [kv[i][1][1][:, h].max() / 127 / out_scale[i] if i < b else 1.0
                  for i in range(cfg.rows)]
        data = pack_vparam(*fixed_multiplier(np.array(scales)))
        tok_addr[h] = a = dram.alloc(f"tok_{h}", len(data), VPARAM_WORD_BYTES)
        segments.append(Segment("dram", a, data))
    ident = pack_vparam([1] * cfg.cols, [0] * cfg.cols)
    ident_addr = dram.alloc("identity", len(ident), VPARAM_WORD_BYTES)
    segments.append(Segment("dram", ident_addr, ident))
    aw = cfg.act_word_bytes
    max_rows = max(geo.rows_for(max(lens[i] for i in m)) for m in slots)
    p_words = max_rows * geo.group // cfg.rows  # one request's probabilities, packed
    zero_addr = dram.alloc("zeros", p_words * aw, aw)
    out_addr = dram.alloc("out", heads * dk * aw, aw)

    # -- scratchpads --------------------------------------------------------------------------
    feats = heads * dk
    q_act, kn_act, vn_act = 0, feats, 2 * feats
    p_act = 3 * feats
    if p_act + nch * p_words > cfg.act_words:
        raise CompileError(f"ACT ({cfg.act_words} words) cannot hold the queries, new keys and values "
                           f"and the probabilities ({p_act + nch * p_words} words)")
    out_act = q_act  # the output overwrites the queries (all read before)
    acts = np.zeros((cfg.act_words, cfg.rows), np.int8)
    for i in range(b):
        acts[q_act:q_act + feats, i] = qi[i].reshape(-1)
        acts[kn_act:kn_act + feats, i] = kv[i][0][0][-1].reshape(-1)
        acts[vn_act:vn_act + feats, i] = kv[i][1][0][-1].reshape(-1)
    segments.append(Segment("ACT", 0, acts[:p_act].tobytes(), aw))
    s_words = max_rows * geo.group // cfg.cols  # one request's scores in ACC
    s_acc = 0
    o_acc = nch * s_words
    o_tiles = dk // cfg.cols
    if o_acc + o_tiles * cfg.rows > cfg.acc_words:
        raise CompileError(f"ACC ({cfg.acc_words} words) cannot hold the scores and one head's "
                           f"output ({o_acc + o_tiles * cfg.rows} words)")
    vp_base = cfg.vparam_param_base
    ident_vp = vp_base
    soft_vp = vp_base + cfg.cols
    soft_room = cfg.vparam_words - soft_vp
    chunk = _soft_chunk(cfg, soft_room)

    em = Emitter(cfg)
    em.load(Spad.VPARAM, ident_vp, ident_addr, cfg.cols, comment="column multipliers: identity")
    for h in range(heads):
        for s, members in enumerate(slots):
            ch, lane = 0, members[0]
            chans = len(members)
            # 1. append the new key and value
            for kind, src in (("k", kn_act), ("v", vn_act)):
                em.emit(Opcode.PIM_GBUF, ch=ch, chans=chans, gaddr=0, act_addr=src + h * dk, len=dk,
                        lane=lane, comment=f"head {h} slot {s}: new {kind.upper()}")
                for j, i in enumerate(members):
                    r, bank, col = geo.where(base[(s, h, kind)], lens[i] - 1)
                    em.emit(Opcode.PIM_WRITE, ch=j, chans=1, bank=bank, row=r, col=col, gaddr=0,
                            len=dk)
            # 2. scores
            rows_s = geo.rows_for(max(lens[i] for i in members))
            _open_ahead(em, open_ahead, ch, chans, base[(s, h, "k")])  # while the queries load
            em.emit(Opcode.PIM_GBUF, ch=ch, chans=chans, gaddr=0, act_addr=q_act + h * dk, len=dk,
                    lane=lane, comment=f"head {h} slot {s}: queries")
            for r in range(rows_s):
                if r + 1 < rows_s:
                    _open_ahead(em, open_ahead, ch, chans, base[(s, h, "k")] + r + 1)
                em.emit(Opcode.PIM_GEMV, ch=ch, chans=chans, bank=0, banks=cfg.dram_banks,
                        row=base[(s, h, "k")] + r, col=0, gaddr=0, len=dk, n=geo.per_bank, res=0,
                        comment=f"scores, row group {r}")
                if r + 1 == rows_s:  # while the scores are read and the softmax runs
                    _open_ahead(em, open_ahead, ch, chans, base[(s, h, "v")])
                em.emit(Opcode.PIM_READ, ch=ch, chans=chans, bank=0, banks=cfg.dram_banks, res=0,
                        n=geo.per_bank, acc_addr=s_acc + r * geo.group // cfg.cols,
                        chan_stride=s_words, word_stride=1)
            # 3. softmax per request
            for j, i in enumerate(members):
                _softmax(em, cfg, chunk, soft_room, lens[i], s_acc + j * s_words, soft_vp,
                         soft_addr[(i, h)], p_act + j * p_words)
                valid = -(-lens[i] // cfg.rows)
                if valid < rows_s * geo.group // cfg.rows:  # zero the probabilities past the end
                    em.load(Spad.ACT, p_act + j * p_words + valid, zero_addr,
                            rows_s * geo.group // cfg.rows - valid, comment="zero padding")
            # 4. probabilities x V
            for r in range(rows_s):
                em.emit(Opcode.PIM_GBUF, ch=ch, chans=chans, gaddr=0,
                        act_addr=p_act + r * geo.group // cfg.rows, len=geo.group, packed=1,
                        act_stride=p_words, comment=f"probabilities, row group {r}")
                if r + 1 < rows_s:
                    _open_ahead(em, open_ahead, ch, chans, base[(s, h, "v")] + r + 1)
                em.emit(Opcode.PIM_GEMV, ch=ch, chans=chans, bank=0, banks=cfg.dram_banks,
                        row=base[(s, h, "v")] + r, col=0, gaddr=0, len=dk, n=geo.per_bank, res=0,
                        bcast=1, accumulate=int(r > 0))
            em.emit(Opcode.PIM_READ, ch=ch, chans=chans, bank=0, banks=cfg.dram_banks, res=0, n=dk,
                    reduce=1, acc_addr=o_acc + members[0], chan_stride=1, word_stride=cfg.rows,
                    comment=f"head {h} slot {s}: output")
        # 5. the head's output, requantized per request, into ACT
        em.load(Spad.VPARAM, cfg.vparam_token_base, tok_addr[h], cfg.rows,
                comment=f"head {h}: token multipliers")
        for f in range(o_tiles):
            em.vec(VecFunc.REQUANT, o_acc + f * cfg.rows, out_act + h * dk + f * cfg.cols, ident_vp,
                   b)
    em.store(Spad.ACT, out_act, out_addr, feats, comment="output")
    symbols = {"out": out_addr, **{f"soft_{i}_{h}": a for (i, h), a in soft_addr.items()}}
    program = em.program(segments, symbols)
    return CompiledAttention(program, out_addr, out_scale, reference, symbols)


def _open_ahead(em, ahead, ch, chans, row):
    """If ``ahead``: open ``row`` in every bank of the slot's channels now, while the unit does
    something else (it lands in the other PIM row buffer)."""
    cfg = em.config
    if ahead:
        em.emit(Opcode.PIM_ACT, ch=ch, chans=chans, bank=0, banks=cfg.dram_banks, row=row)


def _soft_chunk(cfg, room):
    """Values per VSOFT: whole ACC words, whole packed ACT words, at most ``rows`` ACC words, and
    room in VPARAM for their score and V multipliers."""
    unit = math.lcm(cfg.cols, cfg.rows)
    chunk = min(cfg.rows * cfg.cols, room // 2) // unit * unit
    if chunk == 0:
        raise CompileError(f"VPARAM ({cfg.vparam_words} words) has no room for the softmax "
                           f"multipliers of {unit} values")
    return chunk


def _softmax(em, cfg, chunk, room, n, acc_addr, vp, dram, act_addr):
    """MAX, EXP and NORM passes over ``n`` scores at ACC ``acc_addr``; the multipliers (``n``
    score, then ``n`` V words at DRAM ``dram``) are loaded into the ``room`` VPARAM words from
    ``vp``: once when all fit, else chunk by chunk for each pass."""
    word = VPARAM_WORD_BYTES
    whole = 2 * n <= room
    if whole:
        em.load(Spad.VPARAM, vp, dram, n)
        em.load(Spad.VPARAM, vp + n, dram + n * word, n)
    for func in SoftFunc:
        for t0 in range(0, n, chunk):
            c = min(chunk, n - t0)
            if whole:
                kp, vpv = vp + t0, vp + n + t0
            else:
                kp, vpv = vp, vp + chunk
                em.load(Spad.VPARAM, kp, dram + t0 * word, c)
                if func == SoftFunc.NORM:
                    em.load(Spad.VPARAM, vpv, dram + (n + t0) * word, c)
            em.emit(Opcode.VSOFT, func=func, acc_addr=acc_addr + t0 // cfg.cols,
                    words=-(-c // cfg.cols), count=c, kparam=kp, vparam=vpv,
                    act_addr=act_addr + t0 // cfg.rows, first=int(t0 == 0))
