"""How much memory one training step of a compiled module needs, worked out before any
of it is allocated.

A training step holds the weights, their gradients, the solver's history (one set per
history blob: SGD's momentum, Adam's two moments) and, between forward and backward,
every tensor autograd keeps for the backward pass. Which tensors those are depends on the
backend's choices (a ReLU computed in place keeps nothing new, a fused BatchNorm+Scale
keeps one tensor, a max pool keeps its indices), so instead of guessing them from the
net, the module runs once on PyTorch's "meta" device, which computes shapes and nothing
else, and autograd's saved-tensor hook counts each kept storage once. Weights that a
layer keeps for its backward are weights, not activations. (`summary` and the memory
budget, which build no module, count a training step from the shapes instead:
compiler.accounting.training_step_bytes, held within 20% of this measurement by tests.)
"""
import copy

import torch

from compiler.accounting import StepMemory


def training_step_memory(gm, input_shapes, history_sets=1):
    """StepMemory of one training step of `gm` (in its current train/eval mode) on inputs of
    `input_shapes` ({blob name: shape}, float32), with `history_sets` history blobs per
    learnable parameter (the solver type's count). `gm` itself is not touched."""
    import netdef
    meta = copy.deepcopy(gm).to("meta")
    state = list(meta.parameters()) + list(meta.buffers())
    own = {t.untyped_storage()._cdata for t in state}
    learnable = sum(p.numel() * p.element_size() for p in meta.parameters() if p.requires_grad)
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in own:
            saved[storage._cdata] = storage.nbytes()
        return t

    inputs = [torch.empty(input_shapes[name], device="meta") for name in netdef.record(gm).input_names]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        meta(*inputs)
    return StepMemory(weights=sum(t.numel() * t.element_size() for t in state), gradients=learnable,
                      history=history_sets * learnable, activations=sum(saved.values()),
                      inputs=sum(t.numel() * t.element_size() for t in inputs))
