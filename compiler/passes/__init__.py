"""Passes over the IR, in the order compiler/pipeline.py runs them:

phase (include/exclude rules against a NetState) -> wiring (SSA blob ids, graph edges,
Caffe's blob checks) -> shapes (Caffe's shape rules; a data layer's shapes from its
registered source) -> validate (fillers, learnable blob shapes, shared parameters, the
memory budget; and, on request, a weights file against the net). Each reports every
problem it finds as located NetdefErrors; validate reads the net and changes nothing.
"""
