"""Helpers shared by the test modules."""

import re
import subprocess
import traceback

import numpy as np
import pytest
from amaranth.hdl import Elaboratable
from amaranth.sim import Simulator
from hypothesis import strategies as st

from mixpim.models.config import TileConfig, preset
from mixpim.models.executor import run as executor_run
from mixpim.models.isa import ErrorCode, Instruction, Opcode, Spad, UnitMask, format_of
from mixpim.models.mixpe import ArrayParams

__all__ = ["exact", "rejects", "never_elaborated", "to_signed", "params", "run", "ctl",
           "drive_unit", "mixed_weights", "check_cosim_run", "verilator_lint", "instructions",
           "golden_run", "projection_program"]


def exact(text):
    """A ``match=`` pattern for exactly ``text``."""
    return "^" + re.escape(text) + "$"


def rejects(exc, msg, make):
    """``make()`` raises ``exc`` with exactly ``msg``; the half-built component is silenced, so
    Amaranth does not report it as an unused elaboratable."""
    with pytest.raises(exc, match=exact(msg)) as info:
        make()
    for frame, _ in traceback.walk_tb(info.tb):
        obj = frame.f_locals.get("self")
        if isinstance(obj, Elaboratable):
            obj._MustUse__silence = True


def never_elaborated(component):
    """Silence Amaranth's UnusedElaboratable warning for a component a test expects to be rejected."""
    component._MustUse__silence = True
    return component


def to_signed(v, width):
    """The low ``width`` bits of ``v`` as a two's complement integer."""
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


def params(**kw):
    """The :class:`ArrayParams` of ``TileConfig(**kw)``."""
    return ArrayParams.from_config(TileConfig(**kw))


# -- Amaranth simulation -----------------------------------------------------------------------

def run(dut, testbench, clock=True):
    """Simulate ``dut`` with one async ``testbench`` (and a clock unless ``clock=False``)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def ctl(valid, glast, tlast):
    """A stream beat's control bits (``ctl_layout``: valid, glast, tlast, LSB first) as an int."""
    return int(valid) | int(glast) << 1 | int(tlast) << 2


async def drive_unit(ctx, unit, insts, gaps, issue, limit, finished=None):
    """Run ``insts`` one at a time on a unit with ``start`` / ``busy`` / ``done``: ``gap`` idle
    cycles before each (``busy`` must stay low), ``issue(inst)`` sets its operands, ``start`` is
    held for one cycle, then ``busy`` must stay high until ``done``; ``finished(inst)``, if given,
    is called in the ``done`` cycle. Returns the busy cycles of each instruction (at most
    ``limit``); ``busy`` is low again after the last one."""
    measured = []
    for inst, gap in zip(insts, gaps):
        for _ in range(gap):
            _, _, busy = await ctx.tick().sample(unit.busy)
            assert not busy
        issue(inst)
        ctx.set(unit.start, 1)
        cycles = 0
        while True:
            _, _, busy, done = await ctx.tick().sample(unit.busy, unit.done)
            ctx.set(unit.start, 0)
            assert busy, "busy must stay high until done"
            cycles += 1
            if done:
                break
            assert cycles < limit
        measured.append(cycles)
        if finished is not None:
            finished(inst)
    _, _, busy = await ctx.tick().sample(unit.busy)
    assert not busy
    return measured


# -- operands ----------------------------------------------------------------------------------

def mixed_weights(rng, n, k):
    """Rows of different shapes, so a mixture picks different types: uniform, Gaussian, and Gaussian
    with large positive or negative outliers (where the special values +-3/6/10/16 pay off)."""
    w = rng.normal(size=(n, k))
    kind = np.arange(n) % 4
    w[kind == 0] = rng.uniform(-1, 1, size=(int((kind == 0).sum()), k))
    w[kind == 2, ::9] = np.abs(w[kind == 2, ::9]) * 4
    w[kind == 3, ::9] = -np.abs(w[kind == 3, ::9]) * 4
    return w * rng.uniform(0.1, 4, size=(n, 1))


@st.composite
def instructions(draw, ops=tuple(Opcode)):
    """Any legal instruction of ``ops``: every operand over its legal values, token masks without
    the instruction's own unit."""
    fmt = format_of(draw(st.sampled_from(ops)))
    kwargs = {f.name: draw(st.sampled_from(f.allowed) if f.allowed else st.integers(f.minimum, f.maximum))
              for f in fmt.operands}
    if fmt.unit is not None:
        others = 0xF & ~(1 << fmt.unit)
        kwargs["wait"] = draw(st.integers(0, 15)) & others
        kwargs["signal"] = draw(st.integers(0, 15)) & others
    return Instruction(fmt.opcode, **kwargs)


# -- Verilator ---------------------------------------------------------------------------------

def check_cosim_run(result):
    """A cocotb/Verilator array run is bit-exact and, without stalls, cycle-exact."""
    assert result.bit_exact, "RTL accumulators differ from the golden model"
    if not result.stalls:
        assert result.cycle_exact, f"RTL cycles {result.measured} != golden {result.expected}"


def verilator_lint(verilog):
    """``verilator --lint-only`` on the file ``verilog`` passes."""
    from mixpim.sim.toolchain import find_verilator, verilator_env
    v = find_verilator()
    lint = subprocess.run([str(v.executable), "--lint-only", str(verilog)], capture_output=True, text=True,
                          env=verilator_env(v), timeout=300)
    assert lint.returncode == 0, lint.stderr[-3000:]


# -- tile programs -----------------------------------------------------------------------------

def golden_run(cfg, insts, segments):
    """``insts`` then HALT on the golden executor (scratchpads and DRAM preloaded by ``segments``,
    no race check), which must end OK: ``(result, busy cycles of each instruction)``."""
    result = executor_run(cfg, list(insts) + [Instruction(Opcode.HALT)], segments, check_races=False)
    assert result.status.error == ErrorCode.OK, result.timing.summary()
    t = result.timing
    return result, [int(t.end[i] - t.start[i] + 1) for i in range(len(insts))]


def projection_program(cfg, m, n, k, *, params_per_block=False):
    """An (M x K) x (K x N)^T projection, software-pipelined and double-buffered.

    Returns ``(instructions, layout)``; ``layout`` gives the DRAM byte bases ``act``, ``wgt``,
    ``meta``, ``out`` and the block counts. Tile t = (token block i, feature block j), i major.
    Buffers: ACT activations by i % 2 (words ``(i % 2) * kw``), WGT/META/ACC/VEC output by t % 2.
    Per step t the program issues the loads of tile t + 1 (and the next token block's
    activations), then GEMM(t), VEC(t), STORE(t). Tokens:

    * META load(t) -> GEMM(t) (RAW; the DMA runs in order, so the WGT and ACT loads before it
      are done); GEMM(t) -> VEC(t) (RAW on ACC); VEC(t) -> STORE(t) (RAW on the output words);
    * GEMM(t) -> WGT load(t + 2), VEC(t) -> GEMM(t + 2), STORE(t) -> VEC(t + 2): buffer reuse
      (WAR). The activation load of token block i needs no token: it follows STORE(t - 1) in
      the DMA queue, which waited for VEC(t - 1), hence for GEMM(t - 1) and every earlier GEMM.
    """
    DMA, GEMM, VEC = UnitMask.DMA, UnitMask.GEMM, UnitMask.VEC
    g = -(-k // cfg.group)
    kw = g * cfg.group
    mb, nb = -(-m // cfg.rows), -(-n // cfg.cols)
    act_b, wgt_b, meta_b = cfg.act_word_bytes, cfg.wgt_word_bytes, cfg.meta_word_bytes

    def align(a, b):
        return a + -a % b

    lay = {"kw": kw, "groups": g, "mb": mb, "nb": nb, "act": 0}
    lay["wgt"] = align(mb * kw * act_b, wgt_b)
    lay["meta"] = align(lay["wgt"] + nb * kw * wgt_b, meta_b)
    lay["out"] = align(lay["meta"] + nb * g * meta_b, act_b)
    out_words = 2 * kw  # VEC output buffers follow the two activation buffers
    assert out_words + 2 * cfg.cols <= cfg.act_words and 2 * kw <= cfg.wgt_words
    T = mb * nb
    ins = []

    def loads(t):
        i, j = divmod(t, nb)
        if j == 0:
            ins.append(Instruction(Opcode.LOAD, spad=Spad.ACT, spad_addr=(i % 2) * kw,
                                   dram_addr=lay["act"] + i * kw * act_b, words=kw, rows=1))
        ins.append(Instruction(Opcode.LOAD, spad=Spad.WGT, spad_addr=(t % 2) * kw,
                               dram_addr=lay["wgt"] + j * kw * wgt_b, words=kw, rows=1,
                               wait=GEMM if t >= 2 else 0))
        ins.append(Instruction(Opcode.LOAD, spad=Spad.META, spad_addr=(t % 2) * g,
                               dram_addr=lay["meta"] + j * g * meta_b, words=g, rows=1, signal=GEMM))

    loads(0)
    for t in range(T):
        i, j = divmod(t, nb)
        b = t % 2
        if t + 1 < T:
            loads(t + 1)
        ins.append(Instruction(Opcode.GEMM, act_addr=(i % 2) * kw, wgt_addr=b * kw, meta_addr=b * g,
                               acc_addr=b * cfg.rows, groups=g,
                               wait=DMA | (VEC if t >= 2 else 0), signal=VEC | DMA))
        param = cfg.vparam_param_base + (j * cfg.cols if params_per_block else 0)
        ins.append(Instruction(Opcode.VEC, acc_addr=b * cfg.rows, act_addr=out_words + b * cfg.cols,
                               param_addr=param, rows=min(cfg.rows, m - i * cfg.rows),
                               wait=GEMM | (DMA if t >= 2 else 0), signal=DMA | GEMM))
        ins.append(Instruction(Opcode.STORE, spad=Spad.ACT, spad_addr=out_words + b * cfg.cols,
                               dram_addr=lay["out"] + t * cfg.cols * act_b, words=cfg.cols,
                               rows=1, wait=VEC, signal=VEC))
    ins.append(Instruction(Opcode.HALT))
    return ins, lay


# -- PIM instructions with small defaults (one channel, one bank) ------------------------------

def pim_gbuf(**kw):
    return Instruction(Opcode.PIM_GBUF, **{"chans": 1, "len": 8, **kw})


def pim_write(**kw):
    return Instruction(Opcode.PIM_WRITE, **{"chans": 1, "len": 8, **kw})


def pim_gemv(**kw):
    return Instruction(Opcode.PIM_GEMV, **{"chans": 1, "banks": 1, "len": 4, "n": 1, **kw})


def pim_read(**kw):
    return Instruction(Opcode.PIM_READ, **{"chans": 1, "banks": 1, "n": 1, **kw})


def pim_act(**kw):
    return Instruction(Opcode.PIM_ACT, **{"chans": 1, "banks": 1, **kw})


#: The blocked NPU+PIM baseline as the RTL tests build it: ``tiny`` in single row-buffer mode, on the
#: dequantize-then-multiply PE (the PE kind and the PIM mode are independent, so one Verilator
#: build covers both variants; tests/test_tile_rtl.py, test_pim_rtl.py, test_attention_rtl.py)
TINY_SINGLE = preset("tiny").in_pim_mode("single").replace(pe="baseline-w4a8")
#: The FP16 tile with group offsets that whole-model programs run on in RTL tests (larger ACC and
#: VPARAM than ``tiny`` for attention's scores and multipliers), always built with
#: ``WHOLE_MODEL_IMEM`` instruction words so that those tests share one Verilator build.
TINY16 = preset("tiny").replace(pe="mixpe-w4a16", group_offset=True, acc_words=256, vparam_words=256)
WHOLE_MODEL_IMEM = 2048
