"""The instruction decoder (hw/decoder.py) against :func:`mixpim.models.isa.decode`, in the Amaranth
simulator: valid words of every opcode with boundary values, every token mask, every opcode byte,
every value of every enum field, single- and double-bit corruptions, random garbage; plus the
layouts, an ISA changed in models/isa.py, and Verilator lint of the generated Verilog."""

import dataclasses
import io
import random
import tokenize
from collections import Counter
from pathlib import Path

import pytest
from amaranth.hdl import Shape

from mixpim.hw import decoder as decoder_module
from mixpim.hw.decoder import (InstructionDecoder, header_layout, operand_layout, operand_port,
                               word_layout)
from mixpim.models.isa import (OPCODE_FORMATS, MASK_BITS, PIM_OPCODES, WORD_BITS, DecodeError, ErrorCode,
                               Instruction, IsaError, Opcode, Spad, Unit, decode, fields,
                               header_fields)
from mixpim.sim.designs import LINT_WAIVER
from mixpim.sim.verilog import to_verilog
from helpers import rejects, run, verilator_lint

HEADER = ("opcode", "wait", "signal")


# -- running the decoder -----------------------------------------------------------------------

def simulate(words, dut=None):
    """Per word: ``{port: int}`` of every output (operand views as whole integers)."""
    dut = InstructionDecoder() if dut is None else dut
    ports = ["o_opcode", "o_wait", "o_signal", "o_dispatcher", "o_unit", "o_error"]
    views = [operand_port(fmt.opcode) for fmt in dut.formats if fmt.operands]
    out = []

    async def testbench(ctx):
        for w in words:
            ctx.set(dut.i_word, w)
            row = {p: ctx.get(getattr(dut, p)) for p in ports}
            row.update({v: ctx.get(getattr(dut, v).as_value()) for v in views})
            out.append(row)

    run(dut, testbench, clock=False)
    return out


def golden(word):
    """``(code, instruction or None, error or None)`` as :func:`decode` sees ``word``."""
    try:
        return ErrorCode.OK, decode(word), None
    except DecodeError as e:
        return e.code, None, e


def mismatches(word, got):
    """What the decoder's outputs ``got`` for ``word`` get wrong, as a list of strings."""
    code, inst, err = golden(word)
    bad = []
    if got["o_error"] != code:
        bad.append(f"o_error {ErrorCode(got['o_error']).name}, decode says {code.name}"
                   + (f" ({err})" if err else ""))
    # Header and operand views show the word's raw bits whatever the verdict.
    for name, lo, width in header_fields():
        if name in HEADER and got[f"o_{name}"] != word >> lo & ((1 << width) - 1):
            bad.append(f"o_{name} {got[f'o_{name}']:#x}")
    for fmt in OPCODE_FORMATS.values():
        if fmt.operands:
            layout, raw = operand_layout(fmt.opcode), got[operand_port(fmt.opcode)]
            for f in fmt.operands:
                if raw >> layout[f.name].offset & f.maximum != f.extract(word):
                    bad.append(f"{operand_port(fmt.opcode)}.{f.name}")
    if inst is not None:
        if (got["o_opcode"], got["o_wait"], got["o_signal"]) != (inst.op, inst.wait, inst.signal):
            bad.append("header differs from the Instruction")
        if got["o_dispatcher"] != (inst.unit is None) or got["o_unit"] != (inst.unit or 0):
            bad.append(f"o_dispatcher {got['o_dispatcher']} o_unit {got['o_unit']}, unit {inst.unit}")
        if inst.format.operands:
            layout, raw = operand_layout(inst.op), got[operand_port(inst.op)]
            for name, value in inst.operands.items():
                if raw >> layout[name].offset & ((1 << layout[name].width) - 1) != int(value):
                    bad.append(f"{name} differs from the Instruction")
    elif code is ErrorCode.ILLEGAL_OPCODE and (got["o_dispatcher"], got["o_unit"]) != (0, 0):
        bad.append("o_dispatcher/o_unit set for an illegal opcode")
    return bad


def check(words, dut=None):
    """The decoder agrees with :func:`decode` on every word; returns Counter of (opcode, code, field)."""
    words = list(words)
    failures = []
    seen = Counter()
    for word, got in zip(words, simulate(words, dut), strict=True):
        code, _, err = golden(word)
        seen[word & 0xff, code, err.field if err else None] += 1
        bad = mismatches(word, got)
        if bad:
            failures.append(f"{word:#034x}: {'; '.join(bad)}")
    assert not failures, f"{len(failures)} of {len(words)} words differ:\n" + "\n".join(failures[:20])
    return seen


# -- word generators ---------------------------------------------------------------------------

def legal_masks(fmt):
    if fmt.unit is None:
        return [0]
    return [m for m in range(1 << MASK_BITS) if not m >> fmt.unit & 1]


def boundary_values(f):
    """Legal values at the ends of ``f``'s range (all legal values of enum and flag fields)."""
    if f.kind == "enum":
        return [int(v) for v in f.allowed]
    lo, hi = f.minimum, f.maximum
    return sorted(v for v in {lo, lo + 1, hi - 1, hi, 1 << (f.width - 1)} if lo <= v <= hi)


def random_legal(rng, f):
    if f.kind == "enum":
        return int(rng.choice(f.allowed))
    if rng.random() < 0.5:
        return rng.choice(boundary_values(f))
    return rng.randint(f.minimum, f.maximum)


def valid_word(rng, form, /, **fixed):
    ops = {f.name: fixed.get(f.name, random_legal(rng, f)) for f in form.operands}
    wait = fixed.get("wait", rng.choice(legal_masks(form)))
    signal = fixed.get("signal", rng.choice(legal_masks(form)))
    return Instruction(form.opcode, wait=wait, signal=signal, **ops).encode()


def with_field(word, f, value):
    return word & ~(f.maximum << f.lo) | value << f.lo


def valid_words(rng, per_format=40, formats=None):
    formats = OPCODE_FORMATS.values() if formats is None else formats
    return [valid_word(rng, fmt) for fmt in formats for _ in range(per_format)]


# -- layouts -----------------------------------------------------------------------------------

def test_header_layout_follows_isa():
    layout = header_layout()
    assert [(n, layout[n].offset, layout[n].width) for n, _, _ in header_fields()] == header_fields()


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_word_and_operand_layouts_follow_isa(op):
    layout = word_layout(op)
    assert layout.size == WORD_BITS
    assert [(n, layout[n].offset, layout[n].width) for n, _, _ in fields(op)] == fields(op)
    operands = operand_layout(op)
    fmt = OPCODE_FORMATS[op]
    assert [n for n, _ in operands] == [f.name for f in fmt.operands]
    for f in fmt.operands:
        assert operands[f.name].offset == f.lo - fmt.operands[0].lo
        assert operands[f.name].width == f.width
    assert word_layout(op.name) == word_layout(int(op)) == layout
    assert operand_port(op) == f"o_{op.name.lower()}"


@pytest.mark.parametrize("op", [0x03, 0x45, 0x4f, 0xff, "BOGUS"])
def test_layouts_reject_unknown_opcodes(op):
    for make in (word_layout, operand_layout, operand_port):
        with pytest.raises(IsaError) as info:
            make(op)
        assert info.value.code is ErrorCode.ILLEGAL_OPCODE


def test_signature():
    dut = InstructionDecoder()
    sig = dut.signature.members
    width = {name: Shape.cast(member.shape).width for name, member in sig.items()}
    assert width["i_word"] == WORD_BITS
    assert [width[p] for p in ("o_opcode", "o_wait", "o_signal", "o_dispatcher")] == [8, MASK_BITS, MASK_BITS, 1]
    assert sig["o_unit"].shape is Unit and sig["o_error"].shape is ErrorCode
    views = {n for n in sig if n not in
             ("i_word", "o_opcode", "o_wait", "o_signal", "o_dispatcher", "o_unit", "o_error")}
    assert views == {f"o_{op.name.lower()}" for op in OPCODE_FORMATS if OPCODE_FORMATS[op].unit is not None}
    assert {"o_load", "o_store", "o_gemm", "o_vec", "o_vsoft", "o_vnorm", "o_pim_gbuf", "o_pim_write",
            "o_pim_gemv", "o_pim_read", "o_pim_act"} == views
    for name in views:
        assert sig[name].shape == operand_layout(name[2:].upper())
    assert dut.formats == tuple(OPCODE_FORMATS.values())
    check([0], dut)  # NOP; also elaborates the decoder


def test_no_bit_position_written_by_hand():
    """Every number in hw/decoder.py is 0 or 1: positions and widths come from models.isa."""
    source = Path(decoder_module.__file__).read_text()
    numbers = {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
               if t.type == tokenize.NUMBER}
    assert numbers <= {"0", "1"}, numbers


# -- agreement with decode() -------------------------------------------------------------------

def test_valid_words_of_every_format():
    rng = random.Random(1)
    seen = check(valid_words(rng, per_format=300))
    assert {(op, code) for op, code, _ in seen} == {(int(op), ErrorCode.OK) for op in OPCODE_FORMATS}


def test_every_boundary_value_of_every_field():
    rng = random.Random(2)
    words = []
    for fmt in OPCODE_FORMATS.values():
        for f in fmt.operands:
            for v in boundary_values(f):
                words += [valid_word(rng, fmt, **{f.name: v}) for _ in range(3)]
        words.append(valid_word(rng, fmt, **{f.name: f.maximum for f in fmt.operands if f.kind != "enum"}))
        words.append(valid_word(rng, fmt, **{f.name: f.minimum for f in fmt.operands if f.kind != "enum"}))
    seen = check(words)
    assert all(code is ErrorCode.OK for _, code, _ in seen)


def test_every_token_mask_pair():
    """All 16 x 16 wait/signal pairs on every opcode: own-unit bits and masks on NOP/SYNC/HALT."""
    rng = random.Random(3)
    base = {fmt.opcode: valid_word(rng, fmt, wait=0, signal=0) for fmt in OPCODE_FORMATS.values()}
    wait, signal = OPCODE_FORMATS[Opcode.NOP].field("wait"), OPCODE_FORMATS[Opcode.NOP].field("signal")
    words = [with_field(with_field(w, wait, a), signal, b)
             for w in base.values() for a in range(1 << MASK_BITS) for b in range(1 << MASK_BITS)]
    seen = check(words)
    for fmt in OPCODE_FORMATS.values():
        legal = len(legal_masks(fmt))
        assert seen[fmt.opcode, ErrorCode.OK, None] == legal * legal
        assert seen[fmt.opcode, ErrorCode.BAD_FIELD, "wait"] == (16 - legal) * 16
        assert seen[fmt.opcode, ErrorCode.BAD_FIELD, "signal"] == legal * (16 - legal)


def test_every_opcode_byte():
    """All 256 opcodes over zero operands and over valid operand bits of each format."""
    rng = random.Random(4)
    opcode = OPCODE_FORMATS[Opcode.NOP].fields[0]
    bodies = [0] + [valid_word(rng, fmt, wait=0, signal=0) for fmt in OPCODE_FORMATS.values() for _ in range(4)]
    seen = check(with_field(w, opcode, op) for w in bodies for op in range(1 << opcode.width))
    illegal = {op for op, code, _ in seen if code is ErrorCode.ILLEGAL_OPCODE}
    assert illegal == set(range(256)) - {int(op) for op in OPCODE_FORMATS}
    assert set(PIM_OPCODES) - {int(op) for op in OPCODE_FORMATS} <= illegal  # the reserved ones
    assert seen[Opcode.NOP, ErrorCode.OK, None] and seen[Opcode.NOP, ErrorCode.BAD_FIELD, "unused"]


def test_every_raw_value_of_every_constrained_field():
    """Each enum field over all its raw values, each count with a minimum over 0..minimum + 1."""
    rng = random.Random(5)
    words = []
    for fmt in OPCODE_FORMATS.values():
        for f in fmt.operands:
            if f.kind == "enum":
                values = range(1 << f.width)
            elif f.minimum > 0:
                values = range(0, f.minimum + 2)
            else:
                continue
            words += [with_field(valid_word(rng, fmt), f, v) for v in values for _ in range(4)]
    seen = check(words)
    assert seen[Opcode.LOAD, ErrorCode.BAD_FIELD, "spad"] == 4 * (16 - 5)
    assert seen[Opcode.STORE, ErrorCode.BAD_FIELD, "spad"] == 4 * (16 - 2)
    assert seen[Opcode.STORE, ErrorCode.OK, None] >= 4 * 2
    for op, name in [(Opcode.LOAD, "words"), (Opcode.LOAD, "rows"), (Opcode.STORE, "words"),
                     (Opcode.STORE, "rows"), (Opcode.GEMM, "groups"), (Opcode.VEC, "rows")]:
        assert seen[op, ErrorCode.BAD_FIELD, name] == 4


def test_single_and_double_bit_corruptions():
    rng = random.Random(6)
    words = []
    for w in valid_words(rng, per_format=40):
        words += [w ^ 1 << b for b in range(WORD_BITS)]
        words += [w ^ 1 << rng.randrange(WORD_BITS) ^ 1 << rng.randrange(WORD_BITS) for _ in range(32)]
    seen = check(words)
    # Every rule decode() enforces was broken somewhere, and attributed to its field.
    for fmt in OPCODE_FORMATS.values():
        for f in fmt.fields[1:]:
            constrained = (f.kind == "zero" or f.minimum > 0
                           or f.kind == "enum" and len(f.allowed) < 1 << f.width
                           or f.kind == "mask" and len(legal_masks(fmt)) < 1 << MASK_BITS)
            if constrained:
                assert seen[fmt.opcode, ErrorCode.BAD_FIELD, f.name], (fmt.mnemonic, f.name)
    assert sum(n for (_, code, _), n in seen.items() if code is ErrorCode.ILLEGAL_OPCODE) > 0
    assert sum(n for (_, code, _), n in seen.items() if code is ErrorCode.OK) > 0


def test_random_garbage():
    rng = random.Random(7)
    opcode = OPCODE_FORMATS[Opcode.NOP].fields[0]
    legal = [int(op) for op in OPCODE_FORMATS]
    words = [rng.getrandbits(WORD_BITS) for _ in range(20000)]
    # Garbage behind a legal opcode, and valid words with one whole field replaced by garbage.
    words += [with_field(rng.getrandbits(WORD_BITS), opcode, rng.choice(legal)) for _ in range(20000)]
    for w in valid_words(rng, per_format=500):
        f = rng.choice(OPCODE_FORMATS[w & opcode.maximum].fields[1:])
        words.append(with_field(w, f, rng.getrandbits(f.width)))
    seen = check(words)
    codes = Counter()
    for (_, code, _), n in seen.items():
        codes[code] += n
    assert codes[ErrorCode.OK] > 500 and codes[ErrorCode.BAD_FIELD] > 20000
    # the random words: (256 - len(OPCODE_FORMATS)) / 256 of them illegal, some 18980
    assert codes[ErrorCode.ILLEGAL_OPCODE] > 18800


# -- an ISA change in models/isa.py reaches the decoder ----------------------------------------

def _replace_operand(fmt, name, **changes):
    return dataclasses.replace(fmt, operands=tuple(
        dataclasses.replace(f, **changes) if f.name == name else f for f in fmt.operands))


@pytest.fixture
def formats_in_order():
    """Puts the opcode table back in its order after ``monkeypatch`` (which re-inserts a deleted
    format at the end): the mnemonic lists and docs/isa.md follow the table's order."""
    saved = list(OPCODE_FORMATS.items())
    yield
    OPCODE_FORMATS.clear()
    OPCODE_FORMATS.update(saved)


def test_isa_changes_flow_through(formats_in_order, monkeypatch):
    store, load, gemm, vec = (OPCODE_FORMATS[op] for op in (Opcode.STORE, Opcode.LOAD, Opcode.GEMM, Opcode.VEC))
    monkeypatch.setitem(OPCODE_FORMATS, Opcode.STORE,
                        _replace_operand(store, "spad", allowed=(Spad.ACT, Spad.WGT, Spad.ACC)))
    monkeypatch.setitem(OPCODE_FORMATS, Opcode.LOAD, _replace_operand(load, "stride", minimum=16))
    monkeypatch.setitem(OPCODE_FORMATS, Opcode.GEMM, dataclasses.replace(gemm, unit=Unit.VEC))
    monkeypatch.setitem(OPCODE_FORMATS, Opcode.VEC, _replace_operand(vec, "bias", width=4, kind="uint"))  # unused shrinks
    monkeypatch.delitem(OPCODE_FORMATS, Opcode.SYNC)
    dut = InstructionDecoder()
    assert dut.o_vec.shape().size == sum(f.width for f in OPCODE_FORMATS[Opcode.VEC].operands)

    rng = random.Random(8)
    words = []
    for w in valid_words(rng, per_format=40):
        words += [w ^ 1 << b for b in range(WORD_BITS)]
    words += [valid_word(rng, OPCODE_FORMATS[Opcode.VEC], bias=OPCODE_FORMATS[Opcode.VEC].field("bias").maximum)]
    words += [rng.getrandbits(WORD_BITS) for _ in range(2000)]
    spad, stride = OPCODE_FORMATS[Opcode.STORE].field("spad"), OPCODE_FORMATS[Opcode.LOAD].field("stride")
    words += [with_field(valid_word(rng, OPCODE_FORMATS[Opcode.STORE]), spad, v) for v in range(16)]
    words += [with_field(valid_word(rng, OPCODE_FORMATS[Opcode.LOAD]), stride, v) for v in (0, 15, 16)]
    seen = check(words, dut)
    assert seen[Opcode.SYNC, ErrorCode.ILLEGAL_OPCODE, "opcode"]
    assert seen[Opcode.LOAD, ErrorCode.BAD_FIELD, "stride"]
    assert seen[Opcode.GEMM, ErrorCode.BAD_FIELD, "wait"]
    assert sum(n for (op, code, _), n in seen.items() if op == Opcode.STORE and code is ErrorCode.OK) >= 3


def test_unknown_field_kind_is_refused(monkeypatch):
    gemm = OPCODE_FORMATS[Opcode.GEMM]
    odd = dataclasses.replace(gemm.operands[-1])
    object.__setattr__(odd, "kind", "float")  # a kind models/isa.py does not have yet
    monkeypatch.setitem(OPCODE_FORMATS, Opcode.GEMM, dataclasses.replace(gemm, operands=gemm.operands[:-1] + (odd,)))
    rejects(NotImplementedError,
                              "GEMM wsrc: the decoder has no check for field kind 'float'",
                              InstructionDecoder)


# -- Verilog -----------------------------------------------------------------------------------

def test_verilog_passes_verilator_lint(tmp_path):
    text = to_verilog(InstructionDecoder(), "instruction_decoder")
    assert "clk" not in text  # purely combinational
    verilog = tmp_path / "instruction_decoder.v"
    verilog.write_text(LINT_WAIVER + text)
    verilator_lint(verilog)
