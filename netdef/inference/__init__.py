"""Inference above the compiler: the compiled fast path (compiled.py), export to other
runtimes (export.py), deploy nets (deploy.py), test-time crops and ensembles
(predict.py), feature caches (features.py) and class names (labels.py)."""
from netdef.inference.compiled import CompiledNet, compile_for_inference

__all__ = ["CompiledNet", "compile_for_inference"]
