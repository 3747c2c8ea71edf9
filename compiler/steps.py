"""What one Linear layer does, before any ordering: its GEMM steps, the operand pieces they read
and the LOADs that fill them (:class:`LayerSteps`, docs/compiler.md, "Schedule").

A *step* (:class:`Step`) is one GEMM: a tile and a K chunk, or a K segment of the first block.
Operands move in *pieces* (:class:`~.rings.Piece`): one strided LOAD brings all the token blocks
(feature blocks) of a block and K chunk; the first block's first chunk runs K-outer in segments
of 1, 1, 2, 4 ... groups, with one LOAD per block and segment, so the array starts after one
group's operands. For ``out="int8"`` the column multipliers (and, unless per token, the GELU
table and token multipliers) are pieces too. :mod:`.schedule` orders all of it.
"""

from dataclasses import dataclass, field

from .rings import Load, Piece, PieceRef

__all__ = ["Step", "LayerSteps", "block_groups", "fill_segments"]


@dataclass(eq=False)
class Step:
    """One GEMM: tile (``i``, ``j``) of block ``block`` (index of its token-block group and
    feature-block group), K chunk ``ch``, ``groups`` groups of operands at ``x``, ``w``,
    ``meta``. ``first``: it starts the tile's accumulation; ``last``: it completes the tile.
    ``acc_group``: the tiles whose ACC words are allocated (as one piece) at this step, if any;
    ``deps``: the loads whose words it reads."""
    i: int
    j: int
    ch: int
    groups: int
    x: PieceRef
    w: PieceRef
    meta: PieceRef
    first: bool
    last: bool
    block: tuple
    acc_group: list = None
    deps: list = field(default_factory=list)

    @property
    def tile(self):
        return (self.i, self.j)


def block_groups(total, size):
    """``total`` blocks cut into consecutive groups of ``size`` (lists of block indices)."""
    return [list(range(a, min(a + size, total))) for a in range(0, total, size)]


def fill_segments(groups):
    """Group counts 1, 1, 2, 4, ... summing to ``groups``: the K segments of the first block."""
    out, done = [], 0
    while done < groups:
        s = min(max(1, done), groups - done)
        out.append(s)
        done += s
    return out


class LayerSteps:
    """The steps, pieces and loads of layer ``lay`` under ``plan`` (see the module doc), and the
    VEC parameter pieces of ``out="int8"``: ``params`` (column multipliers: key ``"all"``, or
    one piece per visit of a feature-block group, see :meth:`param_of`) and ``hdr`` (the GELU
    table and token multipliers, loaded once; None with ``per_token``: then the VEC stream loads
    them per token block)."""

    def __init__(self, lay, plan, per_token):
        self.lay, self.plan, self.cfg = lay, plan, lay.config
        self.per_token = per_token
        self.pieces = []
        self.steps = []
        self.j_groups = block_groups(lay.nb, plan.bn)
        self.params = {}
        self.hdr = None
        self._build()
        self._add_outputs()
        self._deps()

    def _piece(self, space, words):
        p = Piece(space, words)
        self.pieces.append(p)
        return p

    def _load(self, piece, need, off, dram, words, rows, stride, comment):
        piece.loads.append(Load(piece, need, off, dram, words, rows, stride if rows > 1 else 0,
                                comment))

    def loads(self):
        """Every queued LOAD, in need order (stable: creation order within a step)."""
        return sorted((ld for p in self.pieces for ld in p.loads), key=lambda ld: ld.need)

    # -- steps and operand pieces --------------------------------------------------------------

    def _build(self):
        lay, plan, cfg = self.lay, self.plan, self.cfg
        g, gc = lay.groups, plan.gc
        grp = cfg.group
        kw = g * grp
        xkw = lay.x_block_words or kw
        nc = -(-g // gc)
        ab, wb, mbb = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes
        i_groups, j_groups = block_groups(lay.mb, plan.bm), self.j_groups
        if plan.outer == "act":
            blocks = [(ii, jj) for ii in range(len(i_groups)) for jj in range(len(j_groups))]
        else:
            blocks = [(ii, jj) for jj in range(len(j_groups)) for ii in range(len(i_groups))]
        act_cache, wgt_cache = {}, {}
        steps = self.steps
        for bi, (ii, jj) in enumerate(blocks):
            I, J = i_groups[ii], j_groups[jj]
            tiles = [(i, j) for i in I for j in J]
            for ch in range(nc):
                g0 = ch * gc
                gch = min(gc, g - g0)
                kwc = gch * grp
                s0 = len(steps)
                # The start: the first block's first chunk runs in K segments of 1, 1, 2, 4 ...
                # groups, each over all its tiles (or over the first tile only, when their
                # accumulators do not fit the ring), with one LOAD per token / feature block and
                # segment: the array starts after one group's operands.
                fill = bi == 0 and ch == 0 and gch > 1
                segs = fill_segments(gch) if fill else [gch]
                if fill and len(tiles) > 1 and (nc > 1 or len(tiles) <= plan.acc_slots - 2):
                    kouter = tiles
                else:
                    kouter = tiles[:1]
                akey = (ii, ch) if nc == 1 and plan.outer == "act" else (ii, jj, ch)
                a = act_cache.get(akey)
                fresh_a = a is None
                if fresh_a:
                    a = act_cache[akey] = self._piece("ACT", len(I) * kwc)
                wkey = (jj, ch) if nc == 1 and plan.outer == "wgt" else (ii, jj, ch)
                pair = wgt_cache.get(wkey)
                fresh_w = pair is None
                if fresh_w:
                    pair = wgt_cache[wkey] = (self._piece("WGT", len(J) * kwc),
                                              self._piece("META", len(J) * gch))
                w, mt = pair
                # the GEMMs: K-outer segments over ``kouter``, then the other tiles whole
                if fill:
                    order = [(si, t) for si in range(len(segs)) for t in kouter]
                    order += [(None, t) for t in tiles if t not in kouter]
                else:
                    order = [(None, t) for t in tiles]
                offs = [sum(segs[:si]) for si in range(len(segs))]
                first_use = {}
                for si, (i, j) in order:
                    sg = gch if si is None else segs[si]
                    done = 0 if si is None else offs[si]
                    t, u = i - I[0], j - J[0]
                    s = len(steps)
                    first_use.setdefault(("a", t, si), s)
                    first_use.setdefault(("w", u, si), s)
                    group = None  # tiles whose ACC is allocated (one piece) at this step
                    if ch == 0:
                        if nc > 1:
                            group = tiles if s == s0 else None
                        elif len(kouter) > 1 and si is not None:
                            group = kouter if si == 0 and (i, j) == kouter[0] else None
                        elif si is None or si == 0:
                            group = [(i, j)]
                    steps.append(Step(
                        i=i, j=j, ch=ch, groups=sg, x=PieceRef(a, t * kwc + done * grp),
                        w=PieceRef(w, u * kwc + done * grp), meta=PieceRef(mt, u * gch + done),
                        first=ch == 0 and (si is None or si == 0),
                        last=ch == nc - 1 and (si is None or si == len(segs) - 1), block=(ii, jj),
                        acc_group=group))
                xd = lay.x + (I[0] * xkw + g0 * grp) * ab
                wd = lay.w + (J[0] * kw + g0 * grp) * wb
                md = lay.meta + (J[0] * g + g0) * mbb
                if not fill:
                    if fresh_a:
                        self._load(a, s0, 0, xd, kwc, len(I), xkw * ab,
                                   f"X blocks {I[0]}..{I[-1]} chunk {ch}")
                    if fresh_w:
                        self._load(w, s0, 0, wd, kwc, len(J), kw * wb,
                                   f"W blocks {J[0]}..{J[-1]} chunk {ch}")
                        self._load(mt, s0, 0, md, gch, len(J), g * mbb,
                                   f"META blocks {J[0]}..{J[-1]} chunk {ch}")
                else:  # one LOAD per block and segment (per block for rows outside ``kouter``)
                    for t, i in enumerate(I):
                        rsegs = ([(si, offs[si], segs[si]) for si in range(len(segs))]
                                 if ("a", t, 0) in first_use else [(None, 0, gch)])
                        for si, o, sg in rsegs:
                            self._load(a, first_use[("a", t, si)], t * kwc + o * grp,
                                       xd + (t * xkw + o * grp) * ab, sg * grp, 1, 0,
                                       f"X block {i} chunk {ch}" + (f" groups {o}..{o + sg - 1}"
                                                                    if sg < gch else ""))
                    for u, j in enumerate(J):
                        wsegs = ([(si, offs[si], segs[si]) for si in range(len(segs))]
                                 if ("w", u, 0) in first_use else [(None, 0, gch)])
                        self._load(mt, first_use[("w", u, wsegs[0][0])], u * gch, md + u * g * mbb,
                                   gch, 1, 0, f"META block {j} chunk {ch}")
                        for si, o, sg in wsegs:
                            self._load(w, first_use[("w", u, si)], u * kwc + o * grp,
                                       wd + (u * kw + o * grp) * wb, sg * grp, 1, 0,
                                       f"W block {j} chunk {ch}" + (f" groups {o}..{o + sg - 1}"
                                                                    if sg < gch else ""))
                for p in (a, w, mt):
                    p.last = len(steps) - 1

    # -- VEC parameters ------------------------------------------------------------------------

    def _add_outputs(self):
        lay, cfg = self.lay, self.cfg
        c = cfg.cols
        vb = cfg.vparam_word_bytes
        if lay.out != "int8":
            return
        room = cfg.vparam_words - cfg.vparam_param_base
        first_last = next(s for s, st in enumerate(self.steps) if st.last)
        if lay.nb * c <= room:  # every column multiplier at once
            p = self._piece("VPARAM", lay.nb * c)
            self._load(p, first_last, 0, lay.params, lay.nb * c, 1, 0, "column multipliers")
            p.uses = sum(1 for st in self.steps if st.last)
            self.params["all"] = p
        else:  # one piece per visit of a feature-block group
            for s, st in enumerate(self.steps):
                if not st.last:
                    continue
                key = self._param_key(st.block)
                p = self.params.get(key)
                if p is None:
                    J = self.j_groups[st.block[1]]
                    p = self.params[key] = self._piece("VPARAM", len(J) * c)
                    self._load(p, s, 0, lay.params + J[0] * c * vb, len(J) * c, 1, 0,
                               f"column multipliers {J[0]}..{J[-1]}")
                p.uses += 1
        if not self.per_token:  # the table and token multipliers, once, before the first VEC
            hdr = self.hdr = self._piece("HDR", cfg.vparam_param_base)
            hdr.addr = 0
            self._load(hdr, first_last, 0, lay.token_mults, cfg.vparam_param_base, 1, 0,
                       "token multipliers")

    def _param_key(self, block):
        return block if self.plan.outer == "act" else block[1]

    def param_of(self, block, j):
        """:class:`~.rings.PieceRef` of the column multipliers of feature block ``j`` (in
        ``block``)."""
        c = self.cfg.cols
        if "all" in self.params:
            return PieceRef(self.params["all"], j * c)
        j0 = self.j_groups[block[1]][0]
        return PieceRef(self.params[self._param_key(block)], (j - j0) * c)

    # -- dependencies --------------------------------------------------------------------------

    def _deps(self):
        """Per step the loads whose words its GEMM reads."""
        grp = self.cfg.group
        by_piece = {}
        for p in self.pieces:
            by_piece[id(p)] = [(ld.off, ld.off + ld.words * ld.rows, ld) for ld in p.loads]
        for st in self.steps:
            beats = st.groups * grp
            deps = []
            for (p, off), n in ((st.x, beats), (st.w, beats), (st.meta, st.groups)):
                deps += [ld for lo, hi, ld in by_piece[id(p)] if lo < off + n and off < hi]
            st.deps = deps
