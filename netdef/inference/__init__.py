"""Inference above the compiler: the compiled fast path (compiled.py)."""
from netdef.inference.compiled import CompiledNet, compile_for_inference

__all__ = ["CompiledNet", "compile_for_inference"]
