"""Passes over the IR, in pipeline order:

upgrade (V1 layers and legacy inputs, on load) -> phase (include/exclude rules) ->
wiring (SSA blob ids, graph edges, Caffe's blob checks) -> shapes (Caffe's shape rules) ->
validate (located diagnostics with hints).
"""
