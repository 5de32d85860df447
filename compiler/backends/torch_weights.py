"""Caffe blobs <-> the parameters and buffers of a built module, matched by layer name.

Loading is strict by default: a layer of the net whose blobs the file lacks, a layer of
the file that the net lacks, or a blob of the wrong count or shape is an error naming
them all. `strict=False` loads what matches and returns the rest as a report.
"""
import numpy as np
import torch

from compiler.accounting import blob_fits, blobs_by_layer
from compiler.backends.record import record_of
from compiler.errors import NetdefError
from compiler.layers import registry


def net_blob_slots(net, gm):
    """[(layer, [(attr name, tensor, Caffe shape)])] for every layer that has blobs."""
    inverse = {caffe: mod for mod, caffe in record_of(gm).layer_names.items()}
    slots = []
    for layer in net.layers:
        defn = registry.get(layer.type)
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        blob_shapes = defn.blob_shapes(layer, shapes)
        if not blob_shapes:
            continue
        module = gm.get_submodule(inverse[layer.name])
        attrs = defn.blob_attrs(layer, shapes)
        slots.append((layer, [(a, getattr(module, a), tuple(s)) for a, s in zip(attrs, blob_shapes)]))
    return slots


def load_blobs(net, gm, file_layers, strict=True, file=None):
    """file_layers: list of ir.LayerBlobs. Returns {"missing", "extra", "mismatched"}."""
    by_name = blobs_by_layer(file_layers)
    report = {"missing": [], "extra": [], "mismatched": []}
    assignments = []
    for layer, slots in net_blob_slots(net, gm):
        fl = by_name.get(layer.name)
        if fl is None:
            report["missing"].append(layer.name)
            continue
        if len(fl.blobs) != len(slots):
            report["mismatched"].append("%s: %d blobs in the file, %d expected"
                                        % (layer.name, len(fl.blobs), len(slots)))
            continue
        for i, ((attr, tensor, want), arr, legacy) in enumerate(zip(slots, fl.blobs, fl.legacy)):
            if not blob_fits(arr.shape, want, legacy):
                report["mismatched"].append("%s blob %d (%s): %s in the file, %s expected"
                                            % (layer.name, i, attr, list(arr.shape), list(want)))
                continue
            assignments.append((tensor, arr.reshape(tensor.shape)))
    in_net = {layer.name for layer in net.layers}
    report["extra"] = [n for n in by_name if n not in in_net]
    if strict and any(report.values()):
        parts = []
        if report["missing"]:
            parts.append("no blobs in the file for %s" % _names(report["missing"]))
        if report["mismatched"]:
            parts.append("wrong blobs: " + "; ".join(report["mismatched"][:5]) +
                         (" (and %d more)" % (len(report["mismatched"]) - 5) if len(report["mismatched"]) > 5 else ""))
        if report["extra"]:
            parts.append("layers in the file but not in the net: %s" % _names(report["extra"]))
        raise NetdefError(file, None, None, "weights do not match the net: " + "; ".join(parts),
                          "check that the weights belong to this prototxt (layers match by name); "
                          "pass strict=False (--no-strict) to load what matches")
    with torch.no_grad():
        for tensor, arr in assignments:
            # ascontiguousarray makes a 0-axis blob (a shared PReLU slope) 1-axis: reshape back.
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)).reshape(tensor.shape))
    return report


def _names(names):
    shown = ", ".join("'%s'" % n for n in names[:6])
    return shown + (" and %d more" % (len(names) - 6) if len(names) > 6 else "")


def module_blobs(net, gm):
    """{layer name: [float32 numpy array per blob]} from the module's current values."""
    return {layer.name: [t.detach().cpu().to(torch.float32).numpy().reshape(shape) for _, t, shape in slots]
            for layer, slots in net_blob_slots(net, gm)}
