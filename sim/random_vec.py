"""The vector-unit part of the seeded random programs (:mod:`.random_program`): random legal
operands of VEC, VSOFT and VNORM, the VPARAM and ACC contents of the DRAM layout, and a rough
record of the magnitude of every ACC word so that multipliers fit the data they scale.

**Legal forms** (all drawn where the configuration has them; :func:`vec_feature_set`):

* VEC ``func``: REQUANT, RELU, GELU, ADD, RES (weight 1 each) and on FP16 configurations also
  SILU, GLU (1) and ROPE_LO, ROPE_HI (0.6 each; they need ``3 cols`` ACT words); ``fmt`` 1
  (FP16 values) for half of the others on FP16 configurations (always for SILU and GLU, never
  for RES); ``direct`` 1 for a quarter of all but ADD and RES where ``rows >= cols``; ``bias`` 1
  for 40 % of all but GLU and ROPE, on FP16 configurations with ``fmt`` 1 (but RES), drawn from
  a stream of their own (they do not move the other draws); its ``2 cols`` VPARAM
  words are mostly the last ``cols`` multipliers of G8 (INT8 configurations) or G16 (FP16 ones)
  and the bias zone after them. ADD reads
  its residual in place or from separate ACT words, GLU and ROPE a partner ACC block at
  ``res_addr`` (mostly a recent result), RES reads and writes the ACC rows at ``res_addr``
  (mostly results below 2**31, 15 % ``acc_addr`` itself); ROPE reads ``2 cols`` ACT words
  (random FP16 values read as int16 lanes are in the range of ``2**14 cos``) that a transposed
  output does not overlap. Unused address fields hold random values.
* VSOFT mostly runs **rows**: 1..3 chunks (0.6, 0.3, 0.1) of ACC words (``words`` 1..rows,
  ``count`` mostly up to the score zone) of one magnitude class, the MAX pass over them
  (``first`` 1 on the first chunk, 0 after), then EXP, then NORM (MAX and EXP each left out of
  10 % of the rows, so NORM sees older registers), with one ``pfmt`` (uniform over INT8, HI, LO
  and on FP16 configurations FP16) and, in 40 % of the rows, ``col`` 1 (words ``rows`` apart,
  NORM writes one ``lane`` of ``words * cols`` ACT words). While a row is under way a drawn
  VSOFT continues it (90 %) or is a lone pass with random ``func``, ``first``, ``col`` (10 %;
  20 % when no row is under way).
* VNORM mostly runs **norms** over 1..3 ACC blocks (0.5, 0.35, 0.15) of ``rows`` tokens: SUM
  (LayerNorm; none with ``rms``, 40 %), SQ, NORM, each pass over every block (``first`` 1 on the
  first), one of SUM and SQ left out of 10 %; NORM writes INT8 (on FP16 configurations half of
  the time FP16) ACT values, or (25 %) ACC rows (``to_acc``); the blocks mostly hold values
  below 2**31 and ``qshift`` fits their magnitude, so that ``x - mean`` squares without
  saturating (``d`` ~ 2**17; 10 %: random). Lone passes as for VSOFT.

**VPARAM** (word addresses; the DRAM region holds the same words at ``4 *`` the address, where
LOADs mostly take them from): the GELU table (random), the token words (identity or small), then
zones of ``2 cols`` words (``cols`` for the bias zone, ``2 cols + 2`` for the norm zones; the later
ones ``cols`` words, then overlapping, where the configuration has less room) from
``vparam_param_base``, in this order:

======  ========================================================================================
G8      column multipliers for GEMM results (``G``: ``|acc| ~ 2**acc_log2``) to INT8 values
        (``2**T8`` times ``2**-2 .. 2**2``, 1 % fully random); on FP16 configurations, where most
        VEC outputs are fixed-point, ``cols`` words where the region is short (before V15)
B8      INT8 configurations: ``cols`` VEC biases for INT8 outputs (int32 ``normal *
        2**(T8 - 1)``, 5 % fully random), after G8: a biased VEC (RES too) reads G8's last
        ``cols`` multipliers, then these
N8      a norm's ``(1/H, eps, gamma x cols, beta x cols)`` for INT8 outputs
V15     VSOFT NORM's V multipliers for INT8 probabilities: ``vmult / 2**vshift`` ~ ``2**-15``
        (times 0.5 .. 2; models/softmax.py)
S8      column multipliers for small results (``S``: 2**15 on INT8 configurations: ``wsrc``
        GEMMs, PIM_READ, the ACC region; 2**32 on FP16 ones, between ``wsrc`` GEMMs and the ACC
        region) to INT8 values
N16     a norm's parameters for FP16 or ACC (``to_acc``) outputs
G16     GEMM results to fixed-point values (``2**T16``: 1 in ``2**-16`` units; FP16 ``fmt`` 1
        outputs, gates in their interesting range, RES additions; ``2**-3 .. 2**3``, 5 % random);
        ``2 cols`` words where GLU and ROPE read two per column (FP16 configurations), else ``cols``
        where the region is short
B16     FP16 configurations: ``cols`` VEC biases for fixed-point outputs (``normal *
        2**(T16 - 1)``), after G16
V8      V multipliers for HI and LO probabilities (``2**-8``)
S16     small results to fixed-point values
V6      V multipliers for FP16 probabilities (``2**-6``; FP16 configurations)
======  ========================================================================================

VEC takes its multipliers from the zone of the recorded magnitude class of its ACC words (``G``
or ``S``, whichever is nearer) and of its output (``8``: INT8 values, ``16``: ``fmt`` 1 and
RES); with ``bias`` from the G zone before the bias zone (``S`` results then come out near their
biases); VSOFT its score multipliers from the ``8`` zone of its first chunk and its V multipliers
from the zone of its ``pfmt``; VNORM its parameters from N8 (INT8 output) or N16; 10 % of them
anywhere in the column region instead. Words past the zones are G8 words with 5 % fully random
ones (the ignored bits [22:32] set, extreme shifts).

**ACC** region (LOADs into ACC): values ``normal * 2**(L +- 2)`` (``L`` = 15, 29 on FP16
configurations; 5 % random bytes), so that on FP16 configurations, whose GEMM results saturate
``sat32``, VNORM has blocks to work on.
"""

import math

import numpy as np

from ..models.config import VPARAM_LUT_WORDS
from ..models.footprint import footprint
from ..models.isa import NormFunc, Opcode, ProbFormat, SoftFunc, Spad, VecFunc
from ..models.tile_array import wsrc_supported

__all__ = ["VecGen", "vec_features", "vec_feature_set", "T8", "T16"]

#: log2 of the typical |value| the multipliers aim at: INT8 outputs and fixed-point (2**-16) ones.
T8, T16 = 4, 16
_PAIR = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
_ROPE = (VecFunc.ROPE_LO, VecFunc.ROPE_HI)
_GATES = (VecFunc.SILU, VecFunc.GLU)
_FP16_FUNCS = (VecFunc.SILU, VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)
_WEIGHT = {VecFunc.ROPE_LO: 0.6, VecFunc.ROPE_HI: 0.6}
#: The V multipliers of each probability format: ``vmult / 2**vshift`` ~ ``2**-15`` (INT8), ``2**-6``
#: (FP16), ``2**-8`` (HI, LO) for a V factor of 1 (models/softmax.py).
_V_ZONE = {ProbFormat.INT8: "V15", ProbFormat.FP16: "V6", ProbFormat.HI: "V8", ProbFormat.LO: "V8"}


def vec_features(inst):
    """Labels of the vector-unit forms (and GEMM ``wsrc``, LOAD into ACC) ``inst`` exercises."""
    op = inst.op
    if op == Opcode.GEMM:
        return ("GEMM wsrc",) if inst.wsrc else ()
    if op == Opcode.LOAD:
        return ("LOAD ACC",) if inst.spad == Spad.ACC else ()
    if op == Opcode.VEC:
        return (f"VEC {inst.func.name}",) + (("VEC fmt 1",) if inst.fmt else ()) + \
            (("VEC direct",) if inst.direct else ()) + (("VEC bias",) if inst.bias else ())
    if op == Opcode.VSOFT:
        out = (f"VSOFT {inst.func.name}",) + (("VSOFT continue",) if not inst.first else ()) + \
            (("VSOFT col",) if inst.col else ())
        if inst.func == SoftFunc.NORM:
            out += (f"VSOFT pfmt {inst.pfmt.name}",) + (("VSOFT NORM col",) if inst.col else ())
        return out
    if op == Opcode.VNORM:
        out = (f"VNORM {inst.func.name}",) + (("VNORM rms",) if inst.rms else ())
        if inst.func == NormFunc.NORM:
            out += ("VNORM to_acc" if inst.to_acc else f"VNORM fmt {inst.fmt}",)
        elif not inst.first:
            out += (f"VNORM {inst.func.name} continue",)
        return out
    return ()


def vec_feature_set(config):
    """Every label of :func:`vec_features` a valid program on ``config`` can show."""
    fp16 = config.act_format == "fp16"
    funcs = [f for f in VecFunc if fp16 or f not in _FP16_FUNCS]
    out = {f"VEC {f.name}" for f in funcs} | {"LOAD ACC", "VEC bias"}
    out |= {"VEC fmt 1"} if fp16 else set()
    out |= {"VEC direct"} if config.rows >= config.cols else set()
    out |= {"GEMM wsrc"} if wsrc_legal(config) else set()
    out |= {f"VSOFT {f.name}" for f in SoftFunc} | {"VSOFT continue", "VSOFT col", "VSOFT NORM col"}
    out |= {f"VSOFT pfmt {p.name}" for p in ProbFormat if fp16 or p != ProbFormat.FP16}
    out |= {f"VNORM {f.name}" for f in NormFunc} | {"VNORM rms", "VNORM to_acc", "VNORM fmt 0",
                                                     "VNORM SUM continue", "VNORM SQ continue"}
    out |= {"VNORM fmt 1"} if fp16 else set()
    return out


def wsrc_legal(config):
    """Whether GEMM ``wsrc`` 1 is legal on ``config`` (models/tile_timing.py ``_gemm_problem``)."""
    return wsrc_supported(config)


def _pack(mult, shift):
    """VPARAM words of multipliers and shifts (int arrays)."""
    return (np.clip(mult, -32768, 32767).astype(np.int64) & 0xFFFF) | \
        np.clip(shift, 0, 63).astype(np.int64) << 16


class VecGen:
    """Random vector-unit operands of one program; ``gen`` is the program generator (its config,
    rng, scratchpad windows and address helpers). Build it before the DRAM layout: :attr:`top`
    is the end of the VPARAM words the generator uses."""

    def __init__(self, gen):
        cfg = gen.cfg
        self.gen, self.cfg, self.rng = gen, cfg, gen.rng
        #: the biases' own stream (VEC ``bias``, its parameters, the bias zone): drawing them
        #: does not move the other draws
        self.brng = gen.rng.spawn(1)[0]
        r, c = cfg.rows, cfg.cols
        self.fp16 = cfg.act_format == "fp16"
        self.base = cfg.vparam_param_base
        room = cfg.vparam_words - self.base  # column-region words
        #: log2 |ACC| of GEMM results (G), of the small class (S: between wsrc GEMMs and the ACC
        #: region on FP16 configurations), of the ACC region (L: below 2**31), of wsrc GEMMs (W)
        act = 24 + 5 if self.fp16 else math.log2(74)  # FP16: units of 2**-24, |x| ~ 32
        self.G = act + math.log2(6.5) + 0.5 * math.log2(cfg.group) + cfg.scale_bits - 1
        self.S, self.L = (32, 29) if self.fp16 else (15, 15)
        self.W = self.G - (cfg.scale_bits - 1) - math.log2(6.5) + (4.5 if self.fp16 else math.log2(74))
        self.can_vec = cfg.act_words >= c and room >= c
        self.can_bias = room >= 2 * c
        self.can_soft = cfg.softmax_unit and room > 0
        self.can_norm = cfg.norm_unit and self.can_vec and room >= 2 * c + 2
        self.can_wsrc = wsrc_legal(cfg)
        self.can_direct = r >= c
        funcs = [f for f in VecFunc if (self.fp16 or f not in _FP16_FUNCS)
                 and (f not in _PAIR or room >= 2 * c) and (f not in _ROPE or gen.win[Spad.ACT] >= 3 * c)]
        w = np.array([_WEIGHT.get(f, 1.0) for f in funcs])
        self.funcs, self.func_p = funcs, w / w.sum()
        self.zones = self._zones(room)
        self.top = self.base + max([s + n - self.base for s, n in self.zones.values()] + [c])
        self.mag = np.full(cfg.acc_words, -1.0)  # log2 |value| of each ACC word's last writer (-1: 0)
        self.soft_plan, self.norm_plan = [], []

    def _zones(self, room):
        """``{name: (first word, words)}`` (module doc), wrapping around in a small region."""
        c, fp16 = self.cfg.cols, self.fp16
        n = 2 * c + 2
        # {name: (full, least)} in address order: one bias zone, after the G zone of the biased
        # VECs' outputs; G16 needs 2 cols words only for GLU and ROPE (FP16 configurations), G8
        # only on INT8 ones (FP16: most VEC outputs are fixed-point)
        zones = {"G8": (2 * c, c if fp16 else 2 * c), **({} if fp16 else {"B8": (c, c)}),
                 "N8": (n, n), "V15": (2 * c, c), "S8": (2 * c, c), "N16": (n, n),
                 "G16": (2 * c, 2 * c if fp16 else c), **({"B16": (c, c)} if fp16 else {}),
                 "V8": (2 * c, c), "S16": (2 * c, c), **({"V6": (2 * c, c)} if fp16 else {})}
        sizes = {name: full for name, (full, _) in zones.items()}
        order = [name for name in reversed(zones) if name != "G8"]
        order.insert(order.index("V15"), "G8")  # G8 gives way before V15 and the first zones
        for name in order:  # down to their least size, the last ones first, until they fit
            if sum(sizes.values()) > room:
                sizes[name] = zones[name][1]
        out, at = {}, 0
        for name, n in sizes.items():
            n = min(n, room)
            start = at if at + n <= room else at % max(room - n + 1, 1)
            out[name] = (self.base + start, n)
            at += n
        return out

    # -- DRAM contents ---------------------------------------------------------------------------

    def _columns(self, n, src, target, wild=0.05, spread=3):
        """``n`` column words scaling values of ``2**src`` to ``2**target`` (times ``2**-spread``
        .. ``2**spread``; a fraction ``wild`` fully random)."""
        rng = self.rng
        m = rng.integers(0, 11, size=n)  # |mult| ~ 2**m
        mult = rng.integers(1 << m, 1 << (m + 1)) * rng.choice([-1, 1], size=n)
        shift = np.round(src + m - target) + rng.integers(-spread, spread + 1, size=n)
        word = _pack(mult, shift)
        odd = rng.random(n) < wild  # fully random: ignored bits, extreme shifts
        return np.where(odd, rng.integers(0, 1 << 32, size=n), word)

    def _biases(self, n, target):
        """``n`` int32 VEC biases of about ``2**(target - 1)`` (5 % fully random)."""
        rng = self.brng
        b = np.round(rng.normal(size=n) * 2.0 ** (target - 1)).astype(np.int64)
        return np.where(rng.random(n) < 0.05, rng.integers(0, 1 << 32, size=n), b & 0xFFFFFFFF)

    def _v_words(self, n, unit):
        """V multipliers ``2**-unit`` times 0.5..2 (10 % negative)."""
        rng = self.rng
        m = rng.integers(0, 11, size=n)
        mult = rng.integers(1 << m, 1 << (m + 1)) * np.where(rng.random(n) < 0.1, -1, 1)
        return _pack(mult, m + unit + rng.integers(0, 2, size=n))

    def _norm_words(self, n, target):
        """A norm zone: ``(1/H, eps)``, then ``gamma`` multipliers and ``beta`` of ``cols``."""
        rng, c = self.rng, self.cfg.cols
        h = c * int(rng.integers(1, 4))
        eps = (0, int(rng.integers(0, 1 << int(rng.integers(1, 25)))), int(rng.integers(0, 1 << 32)))[
            int(rng.choice(3, p=[0.2, 0.7, 0.1]))]
        m = rng.integers(0, 11, size=c)
        gm = rng.integers(1 << m, 1 << (m + 1)) * np.where(rng.random(c) < 0.2, -1, 1)
        gs = np.round(m + 19 - 0.5 * math.log2(2 * c) - target) + rng.integers(-1, 2, size=c)
        beta = np.round(rng.normal(size=c) * 2.0 ** (target - 2)).astype(np.int64) & 0xFFFFFFFF
        word = np.concatenate([_pack(np.array([round((1 << 14) / h)]), np.array([14])), [eps],
                               _pack(gm, gs), beta])
        return word[:n]

    def vparam_bytes(self, n):
        """``n`` bytes of the VPARAM region (word ``i`` for VPARAM word ``i``)."""
        rng = self.rng
        words = n // 4
        word = self._columns(words, self.G, T8)  # beyond the zones: GEMM results to INT8
        word[:VPARAM_LUT_WORDS] = rng.integers(0, 1 << 32, size=min(words, VPARAM_LUT_WORDS))
        tok = slice(VPARAM_LUT_WORDS, min(self.base, words))  # identity or small
        k = len(range(words)[tok])
        ident = rng.random(k) < 0.5
        word[tok] = _pack(np.where(ident, 1, rng.integers(-8, 9, size=k)),
                          np.where(ident, 0, rng.integers(0, 4, size=k)))
        make = {"G8": lambda n: self._columns(n, self.G, T8, 0.01, 2),
                "S8": lambda n: self._columns(n, self.S, T8, 0.01, 2),
                "G16": lambda n: self._columns(n, self.G, T16),
                "S16": lambda n: self._columns(n, self.S, T16),
                "V15": lambda n: self._v_words(n, 15), "V8": lambda n: self._v_words(n, 8),
                "V6": lambda n: self._v_words(n, 6), "N8": lambda n: self._norm_words(n, T8 - 1),
                "B8": lambda n: self._biases(n, T8), "B16": lambda n: self._biases(n, T16),
                "N16": lambda n: self._norm_words(n, T16)}
        for name in reversed(list(self.zones)):  # the first zones win where they overlap
            start, size = self.zones[name]
            size = min(size, words - start)
            if size > 0:
                word[start:start + size] = make[name](size)
        return word.astype("<u4").tobytes()

    def acc_bytes(self, n):
        """``n`` bytes of the ACC region: ACC values of about ``2**L`` (module doc)."""
        rng, eb = self.rng, self.cfg.acc_elem_bytes
        count = n // eb
        x = np.round(rng.normal(size=count) * np.exp2(self.L + rng.integers(-2, 3, size=count)))
        raw = x.astype("<i8").view(np.uint8).reshape(count, 8)
        if eb > 8:  # sign extension
            ext = np.where(x[:, None] < 0, 0xFF, 0).astype(np.uint8).repeat(eb - 8, axis=1)
            raw = np.concatenate([raw, ext], axis=1)
        raw = raw[:, :eb].copy()
        odd = rng.random(count) < 0.05
        raw[odd] = rng.integers(0, 256, size=(int(odd.sum()), eb), dtype=np.uint8)
        return raw.tobytes() + bytes(n - count * eb)

    # -- ACC magnitudes --------------------------------------------------------------------------

    def wrote_acc(self, first, n, level, add=False):
        """Record that ACC words ``first ..`` (``n``) now hold values of about ``2**level``."""
        s = slice(first, min(first + n, len(self.mag)))
        self.mag[s] = np.maximum(self.mag[s], level) if add else level

    def wrote(self, inst, level):
        """Record the ACC words ``inst`` writes (its footprint) at ``level``."""
        for a in footprint(self.cfg, inst, dram=False).spads:
            if a.spad == Spad.ACC and a.write:
                self.wrote_acc(a.first, a.words, level)

    def _source(self, addr):
        """``"G"`` or ``"S"``: the magnitude class nearer to the ACC words at ``addr`` (unwritten: G)."""
        return "G" if self._is_g(self.mag[min(addr, len(self.mag) - 1)]) else "S"

    def _acc_addr(self, n, p=0.85, small=False, like=None, step=1):
        """An ACC address of ``n`` words ``step`` apart, mostly one whose words hold results: a
        recent one (probability ``p``) or any (else, 90 %); ``small``: of values below 2**31
        (VNORM does not saturate them), ``like``: of the magnitude class (:meth:`_source`) of
        that address."""
        gen, rng = self.gen, self.rng
        span = (n - 1) * step + 1
        hi = gen._depth(Spad.ACC) - span
        level = np.stack([self.mag[i * step:i * step + hi + 1] for i in range(n)])
        good = level.min(axis=0) >= 0
        if small:
            good &= level.max(axis=0) <= 31
        if like is not None:
            good &= self._is_g(level[0]) == self._is_g(self.mag[like])
        near = [a for a in gen.recent[Spad.ACC][-6:] if a <= hi and good[a]]
        x = rng.random()
        if near and x < p:
            return int(rng.choice(near))
        ok = np.flatnonzero(good)
        if len(ok) and x < 0.9 + 0.1 * p:
            return int(rng.choice(ok))
        return gen._int(0, hi)

    def _is_g(self, level):
        """Whether ACC words of ``level`` are nearer the GEMM class than the small one (unwritten:
        yes)."""
        return (level < 0) | (np.abs(level - self.G) <= np.abs(level - self.S))

    def _param(self, zone, n, p=0.9):
        """``n`` VPARAM words: in ``zone`` (probability ``p``), else anywhere in the column region."""
        gen = self.gen
        start, size = self.zones[zone]
        if self.rng.random() < p and n <= size:
            return start + gen._int(0, size - n)
        return gen._int(self.base, max(gen._depth(Spad.VPARAM), self.base + n) - n)

    def _bias_param(self, zone, p=0.9):
        """The ``param_addr`` of a VEC with ``bias``: ``cols`` words before bias ``zone`` (the
        last multipliers of the G zone before it; probability ``p``), else anywhere in the
        column region."""
        c, start, brng = self.cfg.cols, self.zones[zone][0], self.brng
        if brng.random() < p and start - c >= self.base:
            return start - c
        return self.base + int(brng.integers(0, max(self.gen._depth(Spad.VPARAM) - self.base - 2 * c, 0) + 1))

    def _junk(self, n):
        """A value of an unused address field."""
        return self.gen._int(0, 0xFFFF if self.rng.random() < 0.1 else n - 1)

    # -- VEC ---------------------------------------------------------------------------------------

    def vec(self, func=None):
        """The operands of a random legal VEC (of ``func`` if given)."""
        cfg, gen, rng = self.cfg, self.gen, self.rng
        c = cfg.cols
        if func is None:
            func = VecFunc(rng.choice(self.funcs, p=self.func_p))
        rows = gen._int(1, cfg.rows)
        fmt = int(func in _GATES or (self.fp16 and func != VecFunc.RES and rng.random() < 0.5))
        direct = int(self.can_direct and func not in (VecFunc.ADD, VecFunc.RES) and rng.random() < 0.25)
        bias = int(self.can_bias and func not in _PAIR and self.brng.random() < 0.4)
        if bias and self.fp16 and func != VecFunc.RES:  # FP16: biased fixed-point outputs
            fmt = 1
        acc_addr = self._acc_addr(rows)
        out = rows if direct else c
        act_hi = gen._depth(Spad.ACT) - out
        f = dict(func=func, acc_addr=acc_addr, rows=rows, fmt=fmt, direct=direct, bias=bias,
                 act_addr=self._junk(cfg.act_words) if func == VecFunc.RES else gen._int(0, act_hi),
                 res_addr=self._junk(cfg.act_words), table_addr=self._junk(cfg.act_words))
        if func == VecFunc.ADD:
            f["res_addr"] = f["act_addr"]  # in place unless a separate residual fits
            if rng.random() < 0.7:
                apart = [a for a in (gen._int(0, act_hi) for _ in range(8)) if abs(a - f["act_addr"]) >= c]
                f["res_addr"] = apart[0] if apart else f["act_addr"]
        elif func in _PAIR:  # the partner rows: mostly another recent result of the same class
            f["res_addr"] = self._acc_addr(rows, like=acc_addr)
        elif func == VecFunc.RES:  # the residual rows, read and written (sometimes in place)
            res = acc_addr if rng.random() < 0.15 else self._acc_addr(rows, p=0.6, small=True)
            f["res_addr"] = gen._wrote(Spad.ACC, res)
        if func in _ROPE:
            t = f["table_addr"] = gen._addr(Spad.ACT, gen._depth(Spad.ACT) - 2 * c, p=0.3)
            if not direct and t - c < f["act_addr"] < t + 2 * c:  # a transposed ROPE: apart
                tries = [gen._int(0, act_hi) for _ in range(4)] + [0, t - c, t + 2 * c, act_hi]
                legal = [a for a in tries if 0 <= a <= act_hi and not t - c < a < t + 2 * c]
                if not legal:  # (the window holds 3 cols words)
                    f["table_addr"], legal = 0, [act_hi]
                f["act_addr"] = legal[0]
        if func != VecFunc.RES:
            gen._wrote(Spad.ACT, f["act_addr"])
        wide = "16" if fmt or func == VecFunc.RES else "8"
        f["param_addr"] = self._param(self._source(acc_addr) + wide, 2 * c if func in _PAIR else c)
        if bias:  # G multipliers, then the biases (the draw above keeps the other draws in step)
            f["param_addr"] = self._bias_param("B16" if self.fp16 else "B8")
        if func == VecFunc.RES:  # (INT8 configurations: a biased RES adds INT8-scale values)
            self.wrote_acc(f["res_addr"], rows, T8 if bias and not self.fp16 else T16, add=True)
        return f

    # -- VSOFT -----------------------------------------------------------------------------------

    def vsoft(self):
        """The operands of a random legal VSOFT: mostly the next pass of the current row."""
        if self.rng.random() < (0.1 if self.soft_plan else 0.2):
            return self.soft_one()
        self.soft_plan = self.soft_plan or self._soft_row()
        return self.soft_plan.pop(0)

    def _pfmt(self):
        p = np.array([1, self.fp16, 1, 1])  # INT8, FP16, HI, LO: uniform
        return ProbFormat(int(self.rng.choice(4, p=p / p.sum())))

    def _chunk(self, col, pfmt, like=None):
        """One chunk of a softmax row: ACC words (of the magnitude class of ``like``), count,
        multipliers, NORM's ACT words."""
        cfg, gen, rng = self.cfg, self.gen, self.rng
        r, c = cfg.rows, cfg.cols
        depth = gen._depth(Spad.ACC)
        most = min(r, (depth - 1) // r + 1, gen._depth(Spad.ACT) // c) if col else min(r, depth)
        words = gen._int(1, max(most, 1))
        acc_addr = self._acc_addr(words, like=like, step=r if col else 1)
        zone = self._source(acc_addr) + "8"
        room = max(gen._depth(Spad.VPARAM), self.base + 1) - self.base
        cap = self.zones[zone][1] if rng.random() < 0.75 else room
        count = gen._int(1, max(1, min(words * c, cap, room)))
        out = words * c if col else -(-count // r)
        return dict(acc_addr=acc_addr, words=words, count=count, kparam=self._param(zone, count),
                    vparam=self._param(_V_ZONE[pfmt], count, p=0.85),
                    act_addr=gen._int(0, gen._depth(Spad.ACT) - out))

    def soft_one(self):
        """A lone VSOFT pass: random ``func``, ``first``, ``col``."""
        rng = self.rng
        col, pfmt = int(rng.random() < 0.3), self._pfmt()
        f = dict(self._chunk(col, pfmt), func=SoftFunc(self.gen._int(0, len(SoftFunc) - 1)),
                 first=int(rng.random() < 0.5), pfmt=pfmt, col=col,
                 lane=self.gen._int(0, self.cfg.rows - 1) if col else 0)
        if f["func"] == SoftFunc.NORM:
            self.gen._wrote(Spad.ACT, f["act_addr"])
        return f

    def _soft_row(self):
        """MAX, EXP, NORM over 1..3 chunks (module doc)."""
        rng, gen = self.rng, self.gen
        col, pfmt = int(rng.random() < 0.4), self._pfmt()
        common = dict(pfmt=pfmt, col=col, lane=gen._int(0, self.cfg.rows - 1) if col else 0)
        chunks = [self._chunk(col, pfmt)]
        chunks += [self._chunk(col, pfmt, like=chunks[0]["acc_addr"])
                   for _ in range(int(rng.choice(3, p=[0.6, 0.3, 0.1])))]
        passes = [fn for fn in SoftFunc if fn == SoftFunc.NORM or rng.random() >= 0.1]
        plan = []
        for fn in passes:
            for j, ch in enumerate(chunks):
                f = dict(ch, **common, func=fn, first=int(j == 0))
                if fn == SoftFunc.NORM:
                    f["first"] = int(rng.random() < 0.5)  # NORM ignores it
                    gen._wrote(Spad.ACT, f["act_addr"])
                plan.append(f)
        return plan

    # -- VNORM -----------------------------------------------------------------------------------

    def vnorm(self):
        """The operands of a random legal VNORM: mostly the next pass of the current norm."""
        if self.rng.random() < (0.1 if self.norm_plan else 0.2):
            return self.norm_one()
        self.norm_plan = self.norm_plan or self._norm_seq()
        return self.norm_plan.pop(0)

    def _norm_common(self, rows, acc_addr):
        """Fields shared by a norm's passes: ``qshift`` from the magnitude at ``acc_addr``, the
        output form and the parameter zone."""
        cfg, gen, rng = self.cfg, self.gen, self.rng
        level = min(float(self.mag[acc_addr:acc_addr + rows].max()), 31)
        qshift = int(np.clip(round(level - 17) + gen._int(-2, 2), 0, 31))
        if rng.random() < 0.1:
            qshift = gen._int(0, 31)
        to_acc = int(rng.random() < 0.25)
        fmt = int(self.fp16 and not to_acc and rng.random() < 0.5)
        zone = "N16" if fmt or to_acc else "N8"
        start, size = self.zones[zone]
        far = rng.random() < 0.1 or size < 2 * cfg.cols + 2  # anywhere in the column region
        hi = max(gen._depth(Spad.VPARAM), self.base + 2 * cfg.cols + 2)
        nparam = gen._int(self.base, hi - 2) if far else start
        param = gen._int(self.base, hi - 2 * cfg.cols) if far else start + 2
        return dict(rows=rows, qshift=qshift, rms=int(rng.random() < 0.4), fmt=fmt, to_acc=to_acc,
                    nparam=nparam, param_addr=param), T16 if zone == "N16" else T8

    def _norm_out(self, f, level):
        """NORM's output words: ``cols`` ACT words, or (``to_acc``) ``rows`` ACC words."""
        gen = self.gen
        if f["to_acc"]:
            a = gen._wrote(Spad.ACC, self._acc_addr(f["rows"], p=0.4))
            self.wrote_acc(a, f["rows"], level)
            return a
        return gen._wrote(Spad.ACT, gen._int(0, gen._depth(Spad.ACT) - self.cfg.cols))

    def norm_one(self):
        """A lone VNORM pass: random ``func`` and ``first``."""
        cfg, gen, rng = self.cfg, self.gen, self.rng
        rows = gen._int(1, cfg.rows)
        acc_addr = self._acc_addr(rows, small=True)
        f, level = self._norm_common(rows, acc_addr)
        f.update(func=NormFunc(gen._int(0, len(NormFunc) - 1)), acc_addr=acc_addr,
                 first=int(rng.random() < 0.5))
        f["act_addr"] = self._norm_out(f, level) if f["func"] == NormFunc.NORM else self._junk(cfg.act_words)
        return f

    def _norm_seq(self):
        """SUM (not ``rms``), SQ, NORM over 1..3 blocks (module doc)."""
        cfg, gen, rng = self.cfg, self.gen, self.rng
        rows = gen._int(1, cfg.rows)
        blocks = [self._acc_addr(rows, small=True)
                  for _ in range(1 + int(rng.choice(3, p=[0.5, 0.35, 0.15])))]
        common, level = self._norm_common(rows, blocks[0])
        passes = ([] if common["rms"] else [NormFunc.SUM]) + [NormFunc.SQ, NormFunc.NORM]
        if len(passes) > 1 and rng.random() < 0.1:
            del passes[gen._int(0, len(passes) - 2)]
        plan = []
        for fn in passes:
            for j, a in enumerate(blocks):
                f = dict(common, func=fn, acc_addr=a, first=int(j == 0),
                         act_addr=self._junk(cfg.act_words))
                if fn == NormFunc.NORM:
                    f["act_addr"] = self._norm_out(f, level)
                plan.append(f)
        return plan
