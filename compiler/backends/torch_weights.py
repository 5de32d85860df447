"""Caffe blobs <-> the parameters and buffers of a built module, matched by layer name.

Loading follows Caffe's Net::CopyTrainedLayersFrom (compiler/passes/weights.py): layers of
the file that the net lacks are skipped, layers of the net that the file lacks keep their
filler values, a blob of the wrong count or shape is an error naming both shapes, and
the WeightsReport returned says which layers were loaded, kept their fillers or were
ignored. `strict=True` makes ignored and unfilled layers errors too.
"""
import numpy as np
import torch

from compiler.backends.record import record_of
from compiler.layers import registry
from compiler.passes.weights import match_weights


def net_blob_slots(net, gm):
    """[(layer, [(attr name, tensor, Caffe shape)])] for every layer that has blobs, the
    first of a name only: weights are Caffe's {layer name: blobs}, which fill the first."""
    inverse = {}
    for mod, caffe in record_of(gm).layer_names.items():      # in net order
        inverse.setdefault(caffe, mod)
    slots = []
    for layer in net.layers:
        if layer.key != layer.name:
            continue
        defn = registry.get(layer.type)
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        blob_shapes = defn.blob_shapes(layer, shapes)
        if not blob_shapes:
            continue
        module = gm.get_submodule(inverse[layer.name])
        attrs = defn.blob_attrs(layer, shapes)
        slots.append((layer, [(a, getattr(module, a), tuple(s)) for a, s in zip(attrs, blob_shapes)]))
    return slots


def copy_blob(tensor, arr):
    """Copy a numpy blob into a module's tensor of the same count. On the CPU through numpy:
    torch's copy_ spreads a big copy over its thread pool, which on a loaded machine waits
    on descheduled threads (a ResNet-50's weights took 2-10x longer than numpy's
    single-threaded copy, which runs at memory speed)."""
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64):
        np.copyto(tensor.detach().numpy(), arr.reshape(tuple(tensor.shape)), casting="same_kind")
    else:
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)).reshape(tensor.shape))


def load_blobs(net, gm, file_layers, strict=False, file=None):
    """file_layers: list of ir.LayerBlobs. Copies the blobs that match into the module
    (nothing when any does not fit) and returns the WeightsReport."""
    filled, report = match_weights(net, file_layers, file, strict)
    with torch.no_grad():
        for layer, slots in net_blob_slots(net, gm):
            for (_, tensor, _), arr in zip(slots, filled.get(layer.name, ())):
                copy_blob(tensor, arr)
    return report


def module_blobs(net, gm):
    """{layer name: [float32 numpy array per blob]} from the module's current values."""
    return {layer.name: [t.detach().cpu().to(torch.float32).numpy().reshape(shape) for _, t, shape in slots]
            for layer, slots in net_blob_slots(net, gm)}
