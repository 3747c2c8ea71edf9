"""The mixpim compiler: lowering quantized layers to tile programs (docs/compiler.md).

Modules: :mod:`.linear` (Linear entry points), :mod:`.ffn` (FFN block), :mod:`.attention`
(decode attention on PIM), :mod:`.plan` (plans and the cost model), :mod:`.tune` (plan choice on
the cycle model), :mod:`.layout` (result types), :mod:`.dram_alloc` and :mod:`.operands` (DRAM
placement and images), :mod:`.steps`, :mod:`.rings` and :mod:`.schedule` (the list scheduler),
:mod:`.emit` and :mod:`.tokens` (instructions and dependency tokens), :mod:`.checkpoint` (weights
from checkpoints).
"""

from .attention import AttentionBatch, CompiledAttention, attention_reference, lower_decode_attention
from .emit import CompileError, Emitter
from .ffn import CompiledFfn, compile_ffn, ffn_reference, lower_ffn
from .layout import CompiledLinear, LinearLayout
from .linear import compile_linear, emit_linear, lower_linear, schedule_linear
from .plan import LinearPlan, choose_order, plan_candidates, plan_linear
from .tune import TUNE_BUDGET, TUNE_PLANS

__all__ = ["AttentionBatch", "CompiledAttention", "attention_reference", "lower_decode_attention",
           "Emitter", "CompileError", "CompiledLinear", "LinearLayout", "choose_order",
           "compile_linear", "lower_linear", "CompiledFfn", "compile_ffn", "ffn_reference", "lower_ffn",
           "schedule_linear", "emit_linear", "LinearPlan", "plan_linear", "plan_candidates",
           "TUNE_PLANS", "TUNE_BUDGET"]
