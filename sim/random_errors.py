"""Designed-error programs of the random program generator (:mod:`.random_program`).

:class:`ErrorGen` is the part of the generator that builds, for each designed error code, a
program that must end with exactly that code at a known pc: illegal opcodes, malformed fields,
scratchpad, DRAM and PIM ranges, token overflow, deadlock and a missing HALT. It is a mixin of
the generator, whose operand drawing (``fields``, ``vec``, ``_int``, ...) it uses.

``BAD_FIELD`` variants (:data:`BAD_FIELD_KINDS`, drawn uniformly among those the configuration
can express):

================  =========================================================================
reserved          reserved header bits set (raw word)
unused            bits above the last operand set (raw word)
own_token         a unit's own bit in its wait or signal mask (raw word)
dispatcher_mask   a token mask on NOP, SYNC or HALT (raw word)
spad              a LOAD/STORE ``spad`` the unit has no port for (raw word)
func              VEC, VSOFT or VNORM ``func`` beyond its table (raw word)
zero_count        a count field of 0 (raw word)
vec_rows          VEC ``rows`` > array rows
add_overlap       ADD output and residual words overlap without coinciding
vsoft_count       VSOFT ``words`` > array rows or ``count`` > ``words * cols``
vec_fmt           VEC ``fmt`` 1 on INT8 activations
gate_fmt          SILU or GLU with ``fmt`` 0
rope_int8         ROPE_LO / ROPE_HI on INT8 activations
res_fmt           RES with ``fmt`` 1 (FP16 configurations) or ``direct`` 1
direct_add        ADD with ``direct`` 1
direct_shape      ``direct`` 1 where ``rows < cols``
pfmt_fp16         VSOFT ``pfmt`` FP16 on INT8 activations
vsoft_lane        VSOFT ``col`` 1 with ``lane`` >= rows, or ``col`` 0 with ``lane`` > 0
vnorm_rows        VNORM ``rows`` > array rows
vnorm_fmt         VNORM ``fmt`` 1 on INT8 activations
vnorm_to_acc      VNORM ``to_acc`` 1 with ``fmt`` 1 (FP16 configurations)
wsrc_meta         GEMM ``wsrc`` 1 with ``meta_addr`` > 0
wsrc_config       GEMM ``wsrc`` 1 where the configuration has no INT8-weight path (``rows <
                  cols``, ``wbits`` != 4 or ``scale_bits`` < 5)
rope_overlap      a transposed ROPE whose output words overlap its table words (FP16
                  configurations)
vec_bias_pair     ``bias`` 1 on GLU, ROPE_LO or ROPE_HI (their second parameter word per
                  column is the partner's multiplier; FP16 configurations)
================  =========================================================================

``SPAD_RANGE`` moves one address field of a LOAD/STORE, GEMM, VEC, VSOFT or VNORM (any access of
its footprint: :func:`~mixpim.models.footprint.footprint`) beyond its scratchpad, or a VPARAM
multiplier address below the column region; the variant names the instruction and the field.
"""

from ..models.footprint import footprint
from ..models.isa import (OPCODE_FORMATS, PIM_OPCODES, ErrorCode, Instruction, Opcode, ProbFormat,
                          Spad, Unit, VecFunc)
from ..models.units import TOKEN_MAX

__all__ = ["NOP", "SYNC", "HALT", "ErrorGen", "BAD_FIELD_KINDS"]

NOP, SYNC, HALT = (Instruction(op) for op in (Opcode.NOP, Opcode.SYNC, Opcode.HALT))

#: The designed BAD_FIELD errors (the ``variant`` after ``BAD_FIELD:``; module doc).
BAD_FIELD_KINDS = ("reserved", "unused", "own_token", "dispatcher_mask", "spad", "func", "zero_count",
                   "vec_rows", "add_overlap", "vsoft_count", "vec_fmt", "gate_fmt",
                   "rope_int8", "res_fmt", "direct_add", "direct_shape", "pfmt_fp16", "vsoft_lane",
                   "vnorm_rows", "vnorm_fmt", "vnorm_to_acc", "wsrc_meta", "wsrc_config", "rope_overlap",
                   "vec_bias_pair")

#: The VEC functions with a partner (whose second VPARAM word per column is its multiplier).
_PAIR = (VecFunc.GLU, VecFunc.ROPE_LO, VecFunc.ROPE_HI)

#: The instruction field behind each footprint access name (SPAD_RANGE errors).
_FIELD_OF = {"ACC": "acc_addr", "ACT": "act_addr", "WGT": "wgt_addr", "weight ACT": "wgt_addr",
             "META": "meta_addr", "residual ACT": "res_addr", "residual ACC": "res_addr",
             "partner ACC": "res_addr", "VPARAM": "param_addr", "RoPE table ACT": "table_addr",
             "score VPARAM": "kparam", "V VPARAM": "vparam", "norm VPARAM": "nparam",
             "output ACC": "act_addr"}


class ErrorGen:
    """The designed errors (a mixin of the generator)."""

    def error_program(self, code, prefix, n):
        """``(instructions, expected_pc, variant)``: ``prefix``, an error of ``code``, more."""
        rng = self.rng
        tail = [self._unit_inst(u) if rng.random() < 0.7 else NOP
                for u in rng.choice(self._units(), size=self._int(0, min(n, 5)))] + [HALT]
        if code == ErrorCode.NO_HALT:
            prefix = prefix or [NOP]  # not an empty program
            return prefix, len(prefix), "end"
        if code == ErrorCode.TOKEN_OVERFLOW:
            u = Unit(rng.choice(self._units()))
            v = Unit(rng.choice([x for x in Unit if x != u]))
            block = [SYNC]
            for _ in range(TOKEN_MAX + 1):
                block += [NOP] * int(rng.integers(0, 2))
                block.append(self._unit_inst(u, signal=1 << v))
            pc = len(prefix) + len(block) - 1  # HALT next: nothing else runs beside the block
            return prefix + block + [HALT], pc, f"{u.name}->{v.name}"
        if code == ErrorCode.DEADLOCK:
            variant = ("pim", "never", "cycle")[self._int(0, 2)]
            units = self._units()
            if variant == "pim":  # a wait on the PIM unit, which nothing signals: not from PIM
                units = [x for x in units if x != Unit.PIM]
            u = Unit(rng.choice(units))
            others = [x for x in self._units() if x != u]
            if variant == "cycle" and others:
                v = Unit(rng.choice(others))
                block = [self._unit_inst(u, wait=1 << v, signal=1 << v),
                         self._unit_inst(v, wait=1 << u, signal=1 << u)]
            else:
                variant = "never" if variant != "pim" and others else "pim"
                wait = 1 << Unit.PIM if variant == "pim" else 1 << int(rng.choice(others))
                block = [self._unit_inst(u, wait=wait)]
                # same-unit followers queue behind it (some fill the queue: stall on push)
                block += [self._unit_inst(u) for _ in range(self._int(0, self.cfg.queue_depth + 1))]
            return prefix + block + [HALT], None, variant
        word, variant = {ErrorCode.ILLEGAL_OPCODE: self._illegal, ErrorCode.BAD_FIELD: self._bad_field,
                         ErrorCode.SPAD_RANGE: self._spad_range, ErrorCode.DRAM_RANGE: self._dram_range,
                         ErrorCode.PIM_RANGE: self.pim.range_error}[code]()
        return prefix + [word] + tail, len(prefix), variant

    def _any_word(self, ops=None):
        """The word of a random legal instruction of one of ``ops`` (default: any)."""
        ops = ops or [op for op in Opcode if self._usable(op)]
        op = Opcode(self.rng.choice(ops))
        if OPCODE_FORMATS[op].unit is None:
            return Instruction(op).encode()
        u = OPCODE_FORMATS[op].unit
        mask = [x for x in Unit if x != u]
        tok = dict(wait=int(sum(1 << x for x in mask if self.rng.random() < 0.2 and x != Unit.PIM)),
                   signal=int(sum(1 << x for x in mask if self.rng.random() < 0.2)))
        return Instruction(op, **tok, **self.fields(op)).encode()

    @staticmethod
    def _set(word, name, value):
        f = OPCODE_FORMATS[Opcode(word & 0xFF)].field(name)
        return word & ~(f.maximum << f.lo) | value << f.lo

    def _illegal(self):
        rng = self.rng
        legal = set(OPCODE_FORMATS) | set(PIM_OPCODES)
        missing = [op for op in OPCODE_FORMATS if self.cfg.missing_datapath(op)]
        if missing and rng.random() < 0.5:  # a decodable opcode whose datapath the tile lacks
            op = Opcode(rng.choice(missing))
            fmt = OPCODE_FORMATS[op]   # each field at its least legal value
            least = {f.name: (f.allowed[0] if f.allowed else f.minimum) for f in fmt.fields
                     if f.kind not in ("opcode", "mask", "zero")}
            if "func" in least:
                least["func"] = int(rng.integers(0, 2))
            return Instruction(op, **least), "datapath"
        if rng.random() < 0.5:  # the reserved opcodes of the PIM group
            reserved = [x for x in PIM_OPCODES if x not in OPCODE_FORMATS]
            opcode, variant = int(rng.choice(reserved)), "pim"
        else:
            opcode, variant = int(rng.choice([x for x in range(256) if x not in legal])), "other"
        rest = self._any_word() if rng.random() < 0.5 else int(rng.integers(0, 1 << 60)) << 68
        return rest & ~0xFF | opcode, variant

    def bad_field_kinds(self):
        """The BAD_FIELD variants this configuration can express."""
        cfg, v = self.cfg, self.vec
        fp16, vec, soft, norm = v.fp16, self.can_vec, self.can_soft, self.can_norm
        cond = {"func": vec or soft or norm, "vec_rows": vec and cfg.rows < 255,
                "add_overlap": vec and cfg.cols > 1, "vsoft_count": soft,
                "vec_fmt": vec and not fp16, "gate_fmt": vec,
                "rope_int8": vec and not fp16, "res_fmt": vec, "direct_add": vec,
                "direct_shape": vec and not v.can_direct, "pfmt_fp16": soft and not fp16,
                "vsoft_lane": soft, "vnorm_rows": norm and cfg.rows < 255,
                "vnorm_fmt": norm and not fp16, "vnorm_to_acc": norm and fp16,
                "wsrc_meta": v.can_wsrc, "wsrc_config": not v.can_wsrc,
                "rope_overlap": VecFunc.ROPE_LO in v.funcs,
                "vec_bias_pair": any(f in v.funcs for f in _PAIR)}
        kinds = [k for k in BAD_FIELD_KINDS if cond.get(k, True)]
        return kinds

    def _bad_field(self):
        cfg, rng = self.cfg, self.rng
        variants = self.bad_field_kinds()
        variant = variants[self._int(0, len(variants) - 1)]
        usable = [op for op in OPCODE_FORMATS if self._usable(op)]
        unit_ops = tuple(op for op in usable if OPCODE_FORMATS[op].unit is not None)
        if variant == "reserved":
            return self._any_word() | self._int(1, 255) << 16, variant
        if variant == "unused":  # the formats with bits above their last operand (not LOAD/STORE)
            word = self._any_word([op for op in usable
                                   if OPCODE_FORMATS[op].fields[-1].name == "unused"])
            f = OPCODE_FORMATS[Opcode(word & 0xFF)].field("unused")
            return word | 1 << self._int(f.lo, f.hi - 1), variant
        if variant == "own_token":
            word = self._any_word(unit_ops)
            u = OPCODE_FORMATS[Opcode(word & 0xFF)].unit
            return word | 1 << (u + (8 if rng.random() < 0.5 else 12)), variant
        if variant == "dispatcher_mask":
            word = self._any_word((Opcode.NOP, Opcode.SYNC, Opcode.HALT))
            return word | self._int(1, 255) << 8, variant
        if variant == "spad":
            op = (Opcode.LOAD, Opcode.STORE)[self._int(0, 1)]
            legal = {int(s) for s in OPCODE_FORMATS[op].field("spad").allowed}
            bad = [x for x in range(16) if x not in legal]
            return self._set(self._any_word((op,)), "spad", int(rng.choice(bad))), variant
        if variant == "func":  # a func beyond the table of VEC, VSOFT or VNORM
            word = self._any_word([op for op in (Opcode.VEC, Opcode.VSOFT, Opcode.VNORM) if op in usable])
            func = OPCODE_FORMATS[Opcode(word & 0xFF)].field("func")
            return self._set(word, "func", self._int(max(func.allowed) + 1, func.maximum)), variant
        if variant == "zero_count":  # a count (a field whose minimum is 1) of 0
            word = self._any_word(unit_ops)
            names = [f.name for f in OPCODE_FORMATS[Opcode(word & 0xFF)].operands if f.minimum > 0]
            return self._set(word, names[self._int(0, len(names) - 1)], 0), variant
        if variant in ("wsrc_meta", "wsrc_config"):
            f = self._gemm(wsrc=1)
            if variant == "wsrc_meta":
                f["meta_addr"] = self._int(1, 0xFFFF)
            return Instruction(Opcode.GEMM, **f), variant
        if variant.startswith("vsoft") or variant == "pfmt_fp16":
            return Instruction(Opcode.VSOFT, **self._bad_vsoft(variant)), variant
        if variant.startswith("vnorm"):
            f = self.vec.norm_one()
            if variant == "vnorm_rows":
                f["rows"] = self._int(cfg.rows + 1, 255)
            else:  # vnorm_fmt (INT8: fmt 1 on any pass), vnorm_to_acc (FP16: fmt 1 with to_acc)
                f.update(fmt=1, to_acc=int(variant == "vnorm_to_acc" or rng.random() < 0.5))
            return Instruction(Opcode.VNORM, **f), variant
        return self._bad_vec(variant)

    def _bad_vsoft(self, variant):
        cfg, rng = self.cfg, self.rng
        f = self.vec.soft_one()
        if variant == "pfmt_fp16":
            f["pfmt"] = ProbFormat.FP16
        elif variant == "vsoft_lane":  # a lane beyond the rows, or one without col
            f["col"] = int(rng.random() < 0.5)
            f["lane"] = self._int(cfg.rows, 255) if f["col"] else self._int(1, 255)
        elif cfg.rows < 255 and rng.random() < 0.5:  # vsoft_count: more words than rows
            f["words"] = self._int(cfg.rows + 1, 255)
        else:  # or more values than the words hold
            f["count"] = min(f["words"] * cfg.cols + self._int(1, 8), 0xFFFF)
        return f

    def _bad_vec(self, variant):
        """The VEC variants: rows, formats and modes the configuration rejects, ADD overlap."""
        cfg, rng, vec = self.cfg, self.rng, self.vec
        if variant == "gate_fmt":  # SILU / GLU writing INT8 values (INT8 configurations too)
            f = vec.vec(VecFunc.REQUANT)
            f.update(func=(VecFunc.SILU, VecFunc.GLU)[self._int(0, 1)], fmt=0)
        elif variant == "rope_int8":
            f = vec.vec(VecFunc.REQUANT)
            f["func"] = (VecFunc.ROPE_LO, VecFunc.ROPE_HI)[self._int(0, 1)]
        elif variant == "vec_fmt":  # INT8 configurations: FP16 values
            f = vec.vec((VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU, VecFunc.ADD)[self._int(0, 3)])
            f["fmt"] = 1
        elif variant == "res_fmt":  # ACC output: no format, no direct rows
            f = vec.vec(VecFunc.RES)
            key = "fmt" if vec.fp16 and rng.random() < 0.5 else "direct"
            f[key] = 1
        elif variant == "direct_add":
            f = vec.vec(VecFunc.ADD)
            f["direct"] = 1
        elif variant == "direct_shape":  # rows < cols: an ACC row does not fit an ACT word
            f = vec.vec((VecFunc.REQUANT, VecFunc.RELU, VecFunc.GELU)[self._int(0, 2)])
            f["direct"] = 1
        elif variant == "rope_overlap":  # output words among the table's (or just below)
            f = vec.vec((VecFunc.ROPE_LO, VecFunc.ROPE_HI)[self._int(0, 1)])
            c, t = cfg.cols, f["table_addr"]
            hi = min(t + 2 * c - 1, cfg.act_words - c)
            f.update(direct=0, act_addr=self._int(max(t - c + 1, 0), hi))
        elif variant == "vec_rows":
            f = vec.vec()
            f["rows"] = self._int(cfg.rows + 1, 255)
        elif variant == "vec_bias_pair":  # a legal pair function, with a bias
            pairs = [fn for fn in _PAIR if fn in vec.funcs]
            f = vec.vec(pairs[self._int(0, len(pairs) - 1)])
            f["bias"] = 1
        else:  # add_overlap: output and residual overlap without coinciding
            f = vec.vec(VecFunc.ADD)
            d = self._int(1, cfg.cols - 1)
            room = self.win[Spad.ACT] - cfg.cols - d
            if room < 0:
                f["rows"] = min(255, cfg.rows + 1)
                return Instruction(Opcode.VEC, **f), "vec_rows"
            lo = self._int(0, room)
            f.update(act_addr=lo + d, res_addr=lo)
            if rng.random() < 0.5:
                f.update(act_addr=lo, res_addr=lo + d)
        return Instruction(Opcode.VEC, **f), variant

    def _beyond(self, depth, n):
        """A 16-bit address ``a`` with ``a + n > depth``, or None if there is none."""
        a = max(0, depth - n + self._int(1, n))
        return a if a <= 0xFFFF else None

    def _spad_range(self):
        cfg, rng = self.cfg, self.rng
        if self.can_pim and rng.random() < 0.3:  # PIM_GBUF's ACT words, PIM_READ's ACC words
            found = self.pim.spad_error()
            if found is not None:
                return found
        ops = [Opcode.LOAD, Opcode.STORE, Opcode.GEMM] + [Opcode.VEC] * self.can_vec + \
            [Opcode.VSOFT] * self.can_soft + [Opcode.VNORM] * self.can_norm
        while True:
            op = Opcode(rng.choice(ops))
            f = self.fields(op)
            if op in (Opcode.LOAD, Opcode.STORE):
                f["words"] += f["rows"] * f["words"] == 1  # a single word cannot leave 65536 words
                f["spad_addr"] = self._beyond(cfg.spad_words(f["spad"]), f["rows"] * f["words"])
                return Instruction(op, **f), f"{op.name}:{f['spad'].name}"
            # any access of the footprint whose first word is a field (not the fixed VPARAM words)
            runs = [a for a in footprint(cfg, Instruction(op, **f), dram=False).spads if a.name in _FIELD_OF]
            for a in (runs[int(i)] for i in rng.permutation(len(runs))):
                name = _FIELD_OF[a.name]
                addr = self._beyond(cfg.spad_words(a.spad), a.words)
                short = name.replace("_addr", "")  # VPARAM: "param_high", "kparam_low", ...
                if addr is not None and not (a.lo and rng.random() < 0.3):
                    f[name] = addr
                    return Instruction(op, **f), f"{op.name}:{short + '_high' if a.lo else name}"
                if a.lo:  # below the column region
                    f[name] = self._int(0, a.lo - 1)
                    return Instruction(op, **f), f"{op.name}:{short}_low"

    def _dram_range(self):
        cfg = self.cfg
        op = (Opcode.LOAD, Opcode.STORE)[self._int(0, 1)]
        f = self.fields(op)
        wb = cfg.word_bytes(f["spad"])
        variant = ("addr_align", "stride_align", "end", "stride_end")[self._int(0, 3)]
        if variant.endswith("align"):
            if wb == 1:  # a misaligned address needs words wider than a byte: VPARAM, ACC
                f = self.fields(op, Spad.VPARAM if op == Opcode.LOAD else Spad.ACC)
                wb = cfg.word_bytes(f["spad"])
            f["dram_addr" if variant == "addr_align" else "stride"] += self._int(1, wb - 1)
            return Instruction(op, **f), variant
        row = f["words"] * wb
        if variant == "stride_end" and f["rows"] > 1:  # a stride that carries the last row out
            lo = (cfg.dram_bytes - row - f["dram_addr"]) // (f["rows"] - 1) // wb + 1
            hi = ((1 << 24) - 1) // wb
            if lo <= hi:
                f["stride"] = wb * self._int(lo, min(hi, lo + 1000))
                return Instruction(op, **f), variant
        lo = (cfg.dram_bytes - (f["rows"] - 1) * f["stride"] - row) // wb + 1
        f["dram_addr"] = wb * self._int(lo, max(lo, min(lo + 64, ((1 << 32) - 1) // wb)))
        return Instruction(op, **f), "end"


