"""The mixpim compiler: lowering quantized layers to tile programs (docs/compiler.md)."""

from .emit import Emitter
from .ffn import CompiledFfn, compile_ffn, ffn_reference, lower_ffn
from .linear import (CompileError, CompiledLinear, LinearLayout, choose_order, compile_linear,
                     lower_linear)

__all__ = ["Emitter", "CompileError", "CompiledLinear", "LinearLayout", "choose_order",
           "compile_linear", "lower_linear", "CompiledFfn", "compile_ffn", "ffn_reference", "lower_ffn"]
