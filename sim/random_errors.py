"""Designed-error programs of the random program generator (:mod:`.random_program`).

:class:`ErrorGen` is the part of the generator that builds, for each designed error code, a
program that must end with exactly that code at a known pc: illegal opcodes, malformed fields,
scratchpad, DRAM and PIM ranges, token overflow, deadlock and a missing HALT. It is a mixin of
the generator, whose operand drawing (``fields``, ``_vsoft``, ``_int``, ...) it uses.
"""

from ..models.isa import (OPCODE_FORMATS, PIM_OPCODES, ErrorCode, Instruction, Opcode, Spad, Unit,
                          VecFunc)
from ..models.pim import PIM_OPS
from ..models.units import TOKEN_MAX

__all__ = ["NOP", "SYNC", "HALT", "ErrorGen"]

NOP, SYNC, HALT = (Instruction(op) for op in (Opcode.NOP, Opcode.SYNC, Opcode.HALT))


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
        if rng.random() < 0.5:  # the reserved opcodes of the PIM group
            reserved = [x for x in PIM_OPCODES if x not in OPCODE_FORMATS]
            opcode, variant = int(rng.choice(reserved)), "pim"
        else:
            opcode, variant = int(rng.choice([x for x in range(256) if x not in legal])), "other"
        rest = self._any_word() if rng.random() < 0.5 else int(rng.integers(0, 1 << 60)) << 68
        return rest & ~0xFF | opcode, variant

    def _bad_field(self):
        cfg, rng = self.cfg, self.rng
        variants = ["reserved", "unused", "own_token", "dispatcher_mask", "spad", "func", "zero_count"]
        if self.can_vec:  # legal encodings that the configuration rejects
            variants += ["vec_rows"] * (cfg.rows < 255) + ["add_overlap"] * (cfg.cols > 1)
        if self.can_soft:
            variants += ["vsoft_count"]
        if not self.can_pim:  # FP16 activations: every PIM instruction
            variants += ["pim_fp16"] * 2
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
            bad = [x for x in range(16) if x not in {int(s) for s in OPCODE_FORMATS[op].field("spad").allowed}]
            return self._set(self._any_word((op,)), "spad", int(rng.choice(bad))), variant
        if variant == "func" and self.can_vec:
            func = OPCODE_FORMATS[Opcode.VEC].field("func")
            return self._set(self._any_word((Opcode.VEC,)), "func",
                             self._int(max(func.allowed) + 1, func.maximum)), variant
        if variant in ("func", "zero_count"):  # a count (a field whose minimum is 1) of 0
            word = self._any_word(unit_ops)
            names = [f.name for f in OPCODE_FORMATS[Opcode(word & 0xFF)].operands if f.minimum > 0]
            return self._set(word, names[self._int(0, len(names) - 1)], 0), "zero_count"
        if variant == "vsoft_count":  # more values than the words hold, or more words than rows
            f = self._vsoft()
            if cfg.rows < 255 and self.rng.random() < 0.5:
                f["words"] = self._int(cfg.rows + 1, 255)
            else:
                f["count"] = min(f["words"] * cfg.cols + self._int(1, 8), 0xFFFF)
            return Instruction(Opcode.VSOFT, **f), variant
        if variant == "pim_fp16":  # a legal PIM instruction the configuration cannot execute
            op = PIM_OPS[self._int(0, len(PIM_OPS) - 1)]
            return Instruction(op, **self.fields(op)), variant
        f = self.fields(Opcode.VEC)
        if variant == "vec_rows":
            f["rows"] = self._int(cfg.rows + 1, 255)
        else:  # add_overlap: output and residual overlap without coinciding
            d = self._int(1, cfg.cols - 1)
            room = self.win[Spad.ACT] - cfg.cols - d
            if room < 0:
                f["rows"] = min(255, cfg.rows + 1)
                return Instruction(Opcode.VEC, **f), "vec_rows"
            lo = self._int(0, room)
            f.update(func=VecFunc.ADD, act_addr=lo + d, res_addr=lo)
            if rng.random() < 0.5:
                f.update(act_addr=lo, res_addr=lo + d)
        return Instruction(Opcode.VEC, **f), variant

    def _beyond(self, depth, n):
        """A 16-bit address ``a`` with ``a + n > depth``, or None if there is none."""
        a = max(0, depth - n + self._int(1, n))
        return a if a <= 0xFFFF else None

    def _spad_range(self):
        cfg, rng = self.cfg, self.rng
        if self.can_pim and rng.random() < 0.2:  # PIM_GBUF's ACT words, PIM_READ's ACC words
            found = self.pim.spad_error()
            if found is not None:
                return found
        op = Opcode(rng.choice([Opcode.LOAD, Opcode.STORE, Opcode.GEMM] + [Opcode.VEC] * self.can_vec))
        f = self.fields(op)
        if op in (Opcode.LOAD, Opcode.STORE):
            f["words"] += f["rows"] * f["words"] == 1  # a single word cannot leave 65536 words
            f["spad_addr"] = self._beyond(cfg.spad_words(f["spad"]), f["rows"] * f["words"])
            return Instruction(op, **f), f"{op.name}:{f['spad'].name}"
        if op == Opcode.GEMM:
            k, g = f["groups"] * cfg.group, f["groups"]
            targets = [("act_addr", cfg.act_words, k), ("wgt_addr", cfg.wgt_words, k),
                       ("meta_addr", cfg.meta_words, g), ("acc_addr", cfg.acc_words, cfg.rows)]
        else:  # VEC; checks in order ACC, ACT, ADD residual, VPARAM, so one bad field is reported
            targets = [("acc_addr", cfg.acc_words, f["rows"]), ("act_addr", cfg.act_words, cfg.cols),
                       ("res_addr", cfg.act_words, cfg.cols), ("param_high", cfg.vparam_words, cfg.cols)]
        order = [int(i) for i in rng.permutation(len(targets))]
        for name, depth, n in (targets[i] for i in order):
            addr = self._beyond(depth, n)
            if addr is not None:
                f["param_addr" if name == "param_high" else name] = addr
                break
        else:  # every scratchpad is 65536 words: only a VPARAM address below the column region
            name, f["param_addr"] = "param_low", self._int(0, cfg.vparam_param_base - 1)
        if op == Opcode.VEC:
            if name == "res_addr":
                f["func"] = VecFunc.ADD
            elif f["func"] == VecFunc.ADD:
                f["res_addr"] = f["act_addr"]  # a legal residual: the in-place one
            if name == "param_high" and rng.random() < 0.5:
                name, f["param_addr"] = "param_low", self._int(0, cfg.vparam_param_base - 1)
        return Instruction(op, **f), f"{op.name}:{name}"

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


