"""The engine of performance reports: a whole model's prefill or batched decode step timed by
the cycle model (:func:`~mixpim.models.tile_timing.simulate`, the one the RTL is checked
against) on timing-only programs (:class:`~mixpim.compiler.llama_shapes.LlamaShapes`: the
compiler's instructions, blank weights), with every cycle, MAC and byte attributed to an
operator of the layer graph.

**Identical blocks are simulated a few times, not L times.** One program of
:data:`SIMULATED_BLOCKS` blocks (then the final norm and the LM head) is simulated; once the
first block's different start has died out, every instruction of a block runs a fixed number of
cycles (the *shift*) after its twin in the block before, checked instruction by instruction, and
the model's cycles are ``T(n) + (L - n) shift``. A program whose blocks do not yet repeat is
compiled again with one block more (up to the limit); scaling is refused if they never do.
``tests/test_perf.py`` checks the scaled cycles against a whole ``L``-block program, cycle for
cycle.

**Attribution.** An instruction belongs to the operator its compiler kernel was emitting
(:meth:`~mixpim.compiler.emit.Emitter.operator`). Cycles are charged in program order: walking
the instructions by pc, each one is charged the cycles from the end of everything before it to
its completion, so the charges of a program add up to its cycles exactly (waiting time goes to
the instruction that waited). Per operator the report also gives each unit's busy cycles, the
MACs the array and PIM issued, and the DRAM bytes its LOADs and STOREs moved, by the kind of
region they touch.
"""

import dataclasses
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from mixpim.compiler.dram_alloc import DramFull
from mixpim.compiler.graph import layer_graph
from mixpim.compiler.llama_cache import block_caches
from mixpim.compiler.gpt_shapes import GptShapes
from mixpim.compiler.llama_shapes import LlamaShapes
from mixpim.compiler.npu_attention import npu_block_caches
from mixpim.models.errors import MixpimError
from mixpim.models.isa import Opcode, Spad
from mixpim.models.tile_timing import simulate
from mixpim.models.units import Unit

__all__ = ["PerfError", "Workload", "OpStats", "PerfResult", "MODES", "SYSTEMS", "BYTE_KINDS",
           "order_requests", "analyze"]

MODES = ("prefill", "decode")
#: Decode systems: ``plain`` (one batch, attention on PIM after the projections),
#: ``interleaved`` (two sub-batches, NeuPIMs' schedule: :mod:`mixpim.compiler.llama_interleave`)
#: and ``npu`` (attention on the array, the KV cache in plain DRAM:
#: :mod:`mixpim.compiler.npu_attention`).
SYSTEMS = ("plain", "interleaved", "npu")
_BLOCK_LABEL = re.compile(r"L\d+\.")
#: Kinds of bytes a report counts (module doc of :func:`byte_kind`).
BYTE_KINDS = ("weights", "scales", "activations", "kv_cache")


class PerfError(MixpimError, ValueError):
    """A report cannot be made (the message says why)."""


@dataclass(frozen=True)
class Workload:
    """What is timed: ``mode`` ``"prefill"`` (one prompt of ``lengths[0]`` tokens) or
    ``"decode"`` (one step of ``len(lengths)`` requests, request i with ``lengths[i]`` tokens
    cached; its new token is at position ``lengths[i]``)."""

    mode: str
    lengths: tuple

    def __post_init__(self):
        if self.mode not in MODES:
            raise PerfError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.lengths or any(isinstance(n, bool) or int(n) != n or n < (1 if self.mode == "prefill" else 0)
                                   for n in self.lengths):
            raise PerfError(f"lengths must be a non-empty sequence of token counts, not {self.lengths!r}")
        if self.mode == "prefill" and len(self.lengths) != 1:
            raise PerfError(f"a prefill report takes one prompt, not {len(self.lengths)}")
        object.__setattr__(self, "lengths", tuple(int(n) for n in self.lengths))

    @property
    def batch(self):
        return len(self.lengths)


@dataclass
class OpStats:
    """One operator's share of a program (module doc): ``cycles`` charged in program order,
    ``busy`` per :class:`~mixpim.models.units.Unit`, ``instructions``, ``array_macs`` and
    ``pim_macs`` issued, ``bytes`` moved over the DRAM bus by kind (:data:`BYTE_KINDS`),
    ``pim_bytes`` read or written inside the PIM banks."""

    name: str
    cycles: int = 0
    busy: list = field(default_factory=lambda: [0] * len(Unit))
    instructions: int = 0
    array_macs: int = 0
    pim_macs: int = 0
    bytes: dict = field(default_factory=lambda: dict.fromkeys(BYTE_KINDS, 0))
    pim_bytes: int = 0

    def add(self, other, times=1):
        """Add ``times`` x ``other``'s figures to these."""
        self.cycles += times * other.cycles
        self.busy = [a + times * b for a, b in zip(self.busy, other.busy)]
        self.instructions += times * other.instructions
        self.array_macs += times * other.array_macs
        self.pim_macs += times * other.pim_macs
        for k in BYTE_KINDS:
            self.bytes[k] += times * other.bytes[k]
        self.pim_bytes += times * other.pim_bytes

    @property
    def bus_bytes(self):
        return sum(self.bytes.values())


@dataclass
class PerfResult:
    """A timed workload (module doc).

    Members
    -------
    model, config, workload, system
        What was timed (:class:`~mixpim.compiler.model_config.ModelConfig`,
        :class:`~mixpim.models.config.TileConfig`, :class:`Workload`, one of :data:`SYSTEMS`).
    cycles : int
        The whole model: ``simulated + (layers - blocks) * layer_cycles``.
    simulated : int
        Cycles of the program simulated: ``blocks`` blocks, then the final norm and the LM head.
    blocks : int
        Blocks in that program (all of the model's when it has so few).
    layer_cycles : int
        What each further block adds: how much later every instruction of the program's last
        block ran than its twin in the block before (0 when nothing was scaled).
    layer_ops : dict
        ``{name: OpStats}`` of the program's last block (one layer in the steady state), in
        program order; its cycles add up to ``layer_cycles`` when blocks were scaled.
    outside_ops : dict
        ``{name: OpStats}`` of the program outside its blocks (the first norm; the final norm
        is charged to the last block, the LM head and what the program ends with).
    all_ops : dict
        ``{label: OpStats}`` of the whole program (``"L{i}.name"`` in block i).
    useful_macs : dict
        ``{name: MACs}`` one layer needs by the layer graph's shapes (:func:`useful_macs`).
    instructions : int
        Instructions of the simulated program.
    seconds : dict
        Wall time of ``compile`` and ``simulate``.
    timeline : dict
        Per unit the ``(start, end, operator)`` of the last block's instructions (the
        one-layer timeline plot).
    """

    model: object
    config: object
    workload: Workload
    system: str
    cycles: int
    simulated: int
    blocks: int
    layer_cycles: int
    layer_ops: dict
    outside_ops: dict
    all_ops: dict
    useful_macs: dict
    instructions: int
    seconds: dict
    timeline: dict

    def total_ops(self):
        """``{name: OpStats}`` of the whole model: the simulated program's (blocks merged by
        operator) plus ``layers - blocks`` times the layer's. Their cycles add up to
        :attr:`cycles`."""
        out = {}
        for label, st in self.all_ops.items():
            name = label.split(".", 1)[1] if _BLOCK_LABEL.match(label) else label
            out.setdefault(name, OpStats(name)).add(st)
        for name, st in self.layer_ops.items():
            out.setdefault(name, OpStats(name)).add(st, self.model.layers - self.blocks)
        return out


def byte_kind(name):
    """The kind (:data:`BYTE_KINDS`) of the DRAM region ``name``: a Linear's packed weights
    (``*.w``), their group scales (``*.meta``) and the VPARAM images of multipliers, biases and
    norm parameters (scales), the KV cache, else activations."""
    if name.startswith("kv_cache@"):
        return "kv_cache"
    if name.endswith(".w"):
        return "weights"
    if name.endswith((".meta", ".params", ".nparam", ".act", ".soft", ".ctx", "vparam_header")):
        return "scales"
    return "activations"


_WORD_BYTES = {Spad.ACT: "act_word_bytes", Spad.WGT: "wgt_word_bytes", Spad.META: "meta_word_bytes",
               Spad.ACC: "acc_word_bytes", Spad.VPARAM: None}


def _attribute(cfg, program, operators, timing):
    """``{operator: OpStats}`` of one simulated program, in program order (module doc)."""
    syms = sorted((a, byte_kind(n)) for n, a in program.symbols.items())
    bases = np.array([a for a, _ in syms], np.int64)
    word = {s: 4 if attr is None else getattr(cfg, attr) for s, attr in _WORD_BYTES.items()}
    ops = {}
    frontier = 0
    for pc, inst in enumerate(timing.instructions):
        name = operators[pc] or "other"
        st = ops.get(name)
        if st is None:
            st = ops[name] = OpStats(name)
        done = int(timing.complete[pc]) if timing.start[pc] >= 0 else int(timing.dispatch[pc])
        if done >= frontier:
            st.cycles += done + 1 - frontier
            frontier = done + 1
        if timing.start[pc] < 0:
            continue
        st.instructions += 1
        st.busy[inst.unit] += int(timing.end[pc] - timing.start[pc] + 1)
        op = inst.op
        if op is Opcode.GEMM:
            st.array_macs += inst.groups * cfg.group * cfg.rows * cfg.cols
        elif op in (Opcode.LOAD, Opcode.STORE):
            kind = syms[int(np.searchsorted(bases, inst.dram_addr, "right")) - 1][1] if syms else "activations"
            st.bytes[kind] += inst.words * inst.rows * word[Spad(inst.spad)]
        elif op is Opcode.PIM_GEMV:
            st.pim_macs += inst.chans * inst.banks * inst.n * inst.len
            st.pim_bytes += inst.chans * inst.banks * inst.n * inst.len
        elif op is Opcode.PIM_WRITE:
            st.pim_bytes += inst.chans * inst.len
    return ops


def _split(ops, layer, rename=None):
    """``(the block's ops without their "L{layer}." prefix, the ops outside any block)``;
    ``rename`` maps some of the block's names to others."""
    mine, outside = {}, {}
    tag = f"L{layer}."
    for name, st in ops.items():
        if name.startswith(tag):
            short = name[len(tag):]
            short = (rename or {}).get(short, short)
            mine[short] = dataclasses.replace(st, name=short)
        elif not _BLOCK_LABEL.match(name):
            outside[name] = st
    return mine, outside


def useful_macs(model, workload):
    """``{operator: MACs}`` one layer needs (and ``lm_head``), from the layer graph's shapes:
    a projection ``tokens x N x K``, attention's ``attn_score`` and ``attn_context``
    ``heads x head_dim`` per (query, visible key) pair."""
    mc = model
    graph = layer_graph(mc, layers=1)
    prefill = workload.mode == "prefill"
    tokens = workload.lengths[0] if prefill else workload.batch
    fused = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj"}
    if mc.gated:  # one Linear computes the gate and up projections
        fused.update(gate_proj="gate_up_proj", up_proj="gate_up_proj")
    out = defaultdict(int)
    for op in graph:
        name = op.name.split(".", 1)[-1]
        if op.kind == "linear":
            out[fused.get(name, name)] += tokens * op.width * op.k
        elif op.kind == "lm_head":
            out["lm_head"] += (1 if prefill else tokens) * op.width * op.k
    if prefill:
        m = workload.lengths[0]
        pairs = m * (m + 1) // 2  # causal: query t sees t + 1 keys
    else:
        pairs = sum(n + 1 for n in workload.lengths)  # each new token sees its cache and itself
    out["attn_score"] = out["attn_context"] = mc.heads * mc.head_dim * pairs
    return dict(out)


#: The timing-only compiler of each decoder family.
_SHAPES = {"llama": LlamaShapes, "gpt": GptShapes}


def _programs(model, config, workload, system, layers):
    """The compiled program of ``layers`` blocks (then the final norm and the LM head)."""
    shapes = _SHAPES.get(model.family)
    if shapes is None:
        raise PerfError(f"reports time decoders (families {', '.join(_SHAPES)}), not the {model.family} family")
    lc = shapes(model, config)
    if workload.mode == "prefill":
        ids = np.zeros(workload.lengths[0], np.int64)
        return lc.lower(ids, layers=layers, logits="last", tune=False)
    lengths = list(workload.lengths)
    caps = [n + 1 for n in lengths]
    make = npu_block_caches if system == "npu" else block_caches
    for share in (False, True):  # docs/decisions.md, "Performance reports" 15
        try:
            caches = make(config, model, caps, layers=layers, shared=True, share_requests=share)
            return lc.lower_step(np.zeros(len(lengths), np.int64), lengths, caches, layers=layers,
                                 logits="all", interleave=system == "interleaved")
        except DramFull:
            if share:
                raise


def _timeline(timing, operators, layer):
    """Per unit the ``(start, end, operator)`` of block ``layer``'s instructions."""
    tag = f"L{layer}."
    out = defaultdict(list)
    for pc, inst in enumerate(timing.instructions):
        name = operators[pc]
        if timing.start[pc] >= 0 and name.startswith(tag):
            out[Unit(inst.unit).name].append((int(timing.start[pc]), int(timing.end[pc]), name[len(tag):]))
    return dict(out)


@dataclass
class _Timed:
    """One simulated program of ``blocks`` blocks: its ``cycles``, ``{operator: OpStats}``,
    number of ``instructions``, ``seconds`` (compile, simulate), ``shift`` (how much later each
    instruction of block ``steady`` (the last; interleaved: the one before it) ran than its twin
    in the block before: an int when all by the same, else None) and the ``timeline`` of block
    ``steady``."""

    blocks: int
    cycles: int
    ops: dict
    instructions: int
    seconds: tuple
    steady: int
    shift: object
    timeline: dict


def _shift(timing, operators, a, b):
    """The cycles by which every instruction of block ``b`` ran after its twin in block ``a``
    (start, end and completion alike), or None if they differ."""
    pa = [pc for pc, o in enumerate(operators) if o.startswith(f"L{a}.")]
    pb = [pc for pc, o in enumerate(operators) if o.startswith(f"L{b}.")]
    if len(pa) != len(pb) or not pa:
        return None
    pa, pb = np.array(pa), np.array(pb)
    ran = timing.start[pa] >= 0  # SYNCs are only dispatched
    if not np.array_equal(ran, timing.start[pb] >= 0):
        return None
    d = [timing.dispatch[pb] - timing.dispatch[pa]] + [x[pb[ran]] - x[pa[ran]] for x in
                                                       (timing.start, timing.end, timing.complete)]
    first = int(d[0][0])
    return first if all(np.all(x == first) for x in d) else None


def _timed(model, config, workload, system, n):
    """Compile and simulate the ``n``-block program (module doc)."""
    t0 = time.perf_counter()
    compiled = _programs(model, config, workload, system, n)
    t1 = time.perf_counter()
    timing = compiled.timing or simulate(config, compiled.program.instructions)
    t2 = time.perf_counter()
    if not timing.ok:
        raise PerfError(f"the {n}-block program failed on the cycle model: {timing.summary()}")
    ops = _attribute(config, compiled.program, compiled.operators, timing)
    # an interleaved step's last block has no next block's front to overlap: compare the two
    # blocks before it
    last = n - 2 if system == "interleaved" else n - 1
    shift = _shift(timing, compiled.operators, last - 1, last) if last > 0 else None
    return _Timed(n, timing.cycles, ops, len(compiled.program.instructions), (t1 - t0, t2 - t1),
                  max(last, 0), shift, _timeline(timing, compiled.operators, max(last, 0)))


#: Blocks of the first program simulated for a model of more blocks, and of the largest: a
#: block repeats the one before it once the first block's different start has died out, which
#: takes one or two blocks (module doc).
SIMULATED_BLOCKS = (3, 6)


def order_requests(config, lengths):
    """The order a report runs a decode batch in: sorted by length into PIM slots of
    ``dram_channels`` requests (a slot's KV cache rows are sized by its longest request), the
    full slots dealt alternately to the two halves of the batch (the sub-batches of interleaving
    get alike attention work, as NeuPIMs balances its sub-batches), a partial slot last."""
    nch = config.dram_channels
    srt = sorted(lengths, reverse=True)
    slots = [srt[i:i + nch] for i in range(0, len(srt), nch)]
    tail = slots.pop() if len(slots[-1]) < nch else []
    return tuple(x for half in (slots[0::2], slots[1::2]) for slot in half for x in slot) + tuple(tail)


def analyze(model, config, workload, *, system="plain"):
    """The :class:`PerfResult` of ``workload`` on ``model`` (a decoder's
    :class:`~mixpim.compiler.model_config.ModelConfig`: LLaMA or GPT family) and ``config``
    (module doc)."""
    if system not in SYSTEMS:
        raise PerfError(f"system must be one of {', '.join(SYSTEMS)}, not {system!r}")
    if system != "plain" and workload.mode != "decode":
        raise PerfError(f"the {system} system is a decode schedule; a prefill runs plain")
    if workload.mode == "decode":
        workload = Workload("decode", order_requests(config, workload.lengths))
    L = model.layers
    n = min(L, SIMULATED_BLOCKS[0])
    run = _timed(model, config, workload, system, n)
    while L > run.blocks and run.shift is None and run.blocks < SIMULATED_BLOCKS[1]:
        run = _timed(model, config, workload, system, run.blocks + 1)
    step = 0
    if L > run.blocks:
        if run.shift is None:
            raise PerfError(f"the last two of {run.blocks} simulated blocks do not time alike; the "
                            f"model's {L} blocks cannot be scaled from them")
        step = run.shift
    # the last block normalizes for the LM head what other blocks normalize for the next block:
    # the same work (and placement), an attn_norm of a block that is not the last
    layer_ops, outside = _split(run.ops, run.steady, {"final_norm": "attn_norm"})
    return PerfResult(
        model=model, config=config, workload=workload, system=system,
        cycles=run.cycles + (L - run.blocks) * step, simulated=run.cycles, blocks=run.blocks,
        layer_cycles=step, layer_ops=layer_ops, outside_ops=outside, all_ops=run.ops,
        useful_macs=useful_macs(model, workload), instructions=run.instructions,
        seconds={"compile": run.seconds[0], "simulate": run.seconds[1]}, timeline=run.timeline)
