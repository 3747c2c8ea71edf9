"""Result types of a compiled Linear layer: :class:`LinearLayout` (where its tensors live in DRAM
and how it is tiled) and :class:`CompiledLinear` (program, layout, operands, reference output)."""

from dataclasses import dataclass, field

import numpy as np

from mixpim.models.config import TileConfig
from mixpim.models.executor import unpack_acc, unpack_act
from mixpim.models.isa import VecFunc
from mixpim.models.quant import QuantizedWeights
from mixpim.models.tile_array import tile_gemm

from .plan import LinearPlan

__all__ = ["LinearLayout", "CompiledLinear"]


@dataclass
class LinearLayout:
    """Where a compiled Linear layer lives. DRAM byte addresses ``x``, ``w``, ``meta``, ``params``
    (column multipliers, int8 output only), ``token_mults`` (token multipliers, per-token scales only)
    and ``y``; the tiling (``mb`` x ``nb`` tiles, ``groups`` per K, ``chunk_groups`` per GEMM);
    ``plan`` the :class:`~.plan.LinearPlan` (None: :func:`~.linear.emit_linear` plans, and fills
    in ``plan``, ``order`` and ``chunk_groups``)."""

    config: TileConfig
    m: int
    n: int
    k: int
    mb: int
    nb: int
    groups: int
    chunk_groups: int
    order: str
    out: str
    x: int
    w: int
    meta: int
    y: int
    params: int = -1
    token_mults: int = -1
    y_block_words: int = 0  # int8 output: ACT words per token block in DRAM
    x_block_words: int = 0  # ACT words per token block of X in DRAM (0: K padded to whole groups)
    res: int = -1  # residual (ADD): DRAM base of K-major int8 blocks, ``res_block_words`` apart
    res_block_words: int = 0
    plan: LinearPlan = None

    def output(self, result):
        """The layer's output read from an executor :class:`~mixpim.models.executor.Result`:
        accumulators (M, N) for ``out="acc"``, int8 (M, N) for ``out="int8"``."""
        cfg = self.config
        if self.out == "acc":
            wb = cfg.acc_word_bytes
            acc = unpack_acc(cfg, result.read(self.y, self.m * self.nb * wb))
            return acc.reshape(self.m, self.nb * cfg.cols)[:, :self.n]
        ab = cfg.act_word_bytes
        blocks = []
        for i in range(self.mb):
            w = unpack_act(cfg, result.read(self.y + i * self.y_block_words * ab, self.n * ab))
            blocks.append(w.T)  # (rows, n)
        return np.concatenate(blocks, axis=0)[:self.m]


@dataclass
class CompiledLinear:
    """A compiled layer: the program, its layout, and the operands it was compiled with
    (``act`` the activations in DRAM; ``mult``/``shift``/``tmult``/``tshift`` the requantization
    multipliers for ``out="int8"``)."""

    program: object
    layout: LinearLayout
    act: np.ndarray
    qw: QuantizedWeights  # or BitmodWeights (BitMoD tiles)
    extra: dict = field(default_factory=dict)

    def reference(self):
        """The expected output, computed without the tile: ``mixpe_gemm`` or ``bitmod_gemm`` (then the vector unit's
        requantization for ``out="int8"``)."""
        from mixpim.models.vector import vec_apply
        acc = tile_gemm(self.layout.config, self.act, self.qw).acc
        if self.layout.out == "acc":
            return acc
        e = self.extra
        return vec_apply(VecFunc.REQUANT, acc, e["mult"], e["shift"], e["tmult"], e["tshift"])
