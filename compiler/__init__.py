"""The netdef compiler: frontends -> IR -> passes -> backends.

- frontends/: prototxt (V1 and V2), caffemodel and solver readers, the DSL.
- ir.py: the network graph every pass works on.
- passes/: phase filter, graph building (SSA names), shape inference, validation.
- layers/: one definition per Caffe layer type (parameters, shapes, MACs, lowering).
- backends/: torch.fx modules, prototxt and caffemodel writers, summary.
"""
