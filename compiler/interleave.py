"""Sub-batch interleaving (NeuPIMs): two instruction streams merged into one program so that the
NPU works on one sub-batch while PIM runs the other's attention.

The tile dispatches in program order into per-unit queues (``queue_depth`` deep), so two kernels
emitted one after the other overlap only at their seam. To overlap whole kernels, their
instructions are *recorded* (:func:`~.record.record`: the kernels emit into a
:class:`~.record.Recorder` instead of the program's emitter) and then *merged* (:func:`merge`):
a stream's instructions keep their order, the two streams alternate in proportion to their
lengths, and the emitter plans the tokens of the merged order as of any program
(docs/compiler.md, "Sub-batch interleaving"). Kernels whose streams overlap must not share
scratchpad words or DRAM workspaces, or the tokens serialize them again: :class:`SplitSpads`
gives the NPU kernels the low words of ACT and ACC and decode attention the words above (and
VPARAM slots of its own); workspaces are named per sub-batch.
"""

from dataclasses import dataclass

from .emit import CompileError
from .model_build import Slots
from .model_kernels import Regions

__all__ = ["merge", "SplitSpads"]


def merge(b, first, second):
    """Emit the calls ``first`` and ``second`` into ``b``'s program, each stream in its own order,
    the two alternating in proportion to their lengths (the one further behind goes next)."""
    n1, n2 = len(first), len(second)
    i = j = 0
    while i < n1 or j < n2:
        if j >= n2 or (i < n1 and i * n2 <= j * n1):
            c, i = first[i], i + 1
        else:
            c, j = second[j], j + 1
        b.em.append(c.inst, fence=c.fence, comment=c.comment, label=c.label)


@dataclass(frozen=True)
class SplitSpads:
    """Scratchpads split between the NPU kernels and decode attention: ``npu`` and ``pim``
    (:class:`~.model_kernels.Regions`), and ``linear`` the configuration the Linears plan with
    (``act_words`` / ``acc_words`` cut to the NPU's share). ACT and ACC: attention's words at
    the top, the NPU's below; VPARAM: attention's column slots and softmax multipliers above the
    NPU's."""

    npu: Regions
    pim: Regions
    linear: object

    @classmethod
    def of(cls, cfg, hidden, scratch):
        """The split for a model of ``hidden`` features whose attention needs ``scratch``
        (:class:`~.decode_attention.Scratch`) words."""
        npu = Regions.of(cfg, hidden)
        r, c = cfg.rows, cfg.cols
        out = Slots(0, max(r, c), npu.act_out.count)
        act_split = cfg.act_words - scratch.act - out.size * out.count
        acc_split = cfg.acc_words - scratch.acc
        if acc_split < npu.res_base + -(-hidden // c) * r or act_split < npu.act_out.end:
            raise CompileError(f"the scratchpads (act_words {cfg.act_words}, acc_words "
                               f"{cfg.acc_words}) cannot hold the NPU kernels and decode attention "
                               f"side by side (sub-batch interleaving)")
        vp = Slots(npu.soft_base, 2 * c, npu.vp_slots.count)
        pim = Regions(Slots(acc_split, 0, 1), acc_split, Slots(act_split, out.size, out.count),
                      npu.nparam, vp, vp.end)
        return cls(npu, pim, cfg.replace(act_words=act_split, acc_words=acc_split))
