"""The torch side of the layer definitions: the nn.Module classes that a LayerDef's
`lower()` (compiler/layers) instantiates, one module per layer family, named after the
family's file there.

Only lowering imports this package (inside `lower()`), so that reading, checking,
summarising, drawing and converting a net never import torch. What a layer type is, its
parameters, shape rule, MACs and how it lowers, stays in its LayerDef; these classes
compute it, with the arithmetic they share with the shape rules taken from
compiler/layers/arithmetic.py. compiler/layers/base.py says what the modules hold (plain
values and their tensors, so that they pickle, rebuild and export).
"""
