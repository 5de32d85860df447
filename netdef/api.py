"""The Python API: parse a net into the IR, compile it to a module, load weights, save."""
import zipfile
from pathlib import Path

import numpy as np

from compiler.backends import torch_fx, torch_weights
from compiler.backends.caffemodel import export_caffemodel, write_caffemodel
from compiler.backends.prototxt import net_to_text
from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends import caffemodel, prototxt
from compiler.layers import registry
from compiler.passes.fold import fast_path
from compiler.passes.validate import validate

SAVED_SUFFIX = ".netdef"


def register_layer(defn, replace=False):
    """Add a layer type: an instance of a netdef.LayerDef subclass with `type`, `shape()`
    and `lower()` (and `blob_shapes()` / `blob_names` if it has weights)."""
    return registry.register(defn, replace=replace)


def read_net(source, phase="TEST", stages=(), level=0, name=None):
    """A net file (prototxt, netdef DSL, or a saved .netdef) -> IR Net, not yet wired.
    `name` chooses one net of a .net file that declares several."""
    path = Path(source)
    if name is not None and path.suffix != ".net":
        raise NetdefError(str(path), None, None, "a net name (%s) chooses a net of a .net file; "
                          "this file holds one net" % name)
    if path.suffix == SAVED_SUFFIX:
        text, _ = _read_saved(path)
        return prototxt.load_net(path, phase, stages, level, text=text)
    if path.suffix == ".net":
        from compiler.frontends.dsl import load_dsl
        return load_dsl(path, phase=phase, stages=stages, level=level, net=name)
    return prototxt.load_net(path, phase, stages, level)


def parse(source, phase="TEST", input_shapes=None, stages=(), level=0, max_memory=None, name=None):
    """A net file -> wired, shaped IR Net. A net whose blobs would not fit `max_memory`
    bytes (default $NETDEF_MAX_MEMORY or 16 GiB) is refused before anything is allocated.
    `name` chooses one net of a .net file that declares several."""
    net = read_net(source, phase, stages, level, name)
    errors = validate(net, input_shapes, max_memory)
    if errors:
        raise NetdefErrors(errors)
    return net


def compile_net(net, weights=None, outputs=None, strict=True, fast=False):
    """IR Net -> GraphModule (optionally with weights: a .caffemodel path, a saved .netdef,
    or {layer: [arrays]}). In train() mode it computes Caffe's TRAIN behaviour, in eval()
    TEST's. fast=True is the inference fast path (compiler/passes/fold.py): BatchNorm and
    Scale folded into the convolutions before them, weights channels_last; the module's
    `netdef_ir` is then the folded net."""
    gm = torch_fx.build_module(net, outputs)
    if weights is not None:
        load_weights(net, gm, weights, strict=strict)
    gm.train(net.phase == "TRAIN")
    gm.netdef_ir = net
    if fast:
        _, gm = fast_path(net, gm)
    return gm


def load(source, weights=None, phase="TEST", input_shapes=None, outputs=None, strict=True,
         stages=(), level=0, fast=False, name=None):
    """One call from a net file (and weights) to a torch.nn.Module (a torch.fx.GraphModule)."""
    net = parse(source, phase, input_shapes, stages, level, name=name)
    if weights is None and Path(source).suffix == SAVED_SUFFIX:
        weights = source
    return compile_net(net, weights, outputs, strict, fast)


def export(gm, caffemodel_path, prototxt_path=None):
    """Write a compiled module's current weights as a Caffe .caffemodel (and its net as a
    prototxt): the files Caffe, or netdef.load, reads back."""
    export_caffemodel(gm.netdef_ir, gm, caffemodel_path, prototxt_path)


def read_weights(weights):
    """A .caffemodel path, a saved .netdef or {layer: [arrays]} -> ([LayerBlobs], file)."""
    if isinstance(weights, dict):
        return [caffemodel.LayerBlobs(k, "", [np.asarray(a, np.float32) for a in v], [False] * len(v))
                for k, v in weights.items()], None
    file = str(weights)
    if file.endswith(SAVED_SUFFIX):
        return _read_saved(Path(file))[1], file
    return caffemodel.read_caffemodel(file), file


def load_weights(net, gm, weights, strict=True):
    layers, file = read_weights(weights)
    return torch_weights.load_blobs(net, gm, layers, strict=strict, file=file)


def save(gm, path):
    """Save a compiled module as a .netdef file: a zip holding the net as prototxt text and
    its blobs as a .caffemodel. Loading it (netdef.load) parses both; nothing is unpickled."""
    net = gm.netdef_ir
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("net.prototxt", net_to_text(net, for_caffe=False))
        with z.open("weights.caffemodel", "w") as f:
            write_caffemodel(f, net, gm)


def _read_saved(path):
    """-> (prototxt text, [LayerBlobs])"""
    try:
        with zipfile.ZipFile(path) as z:
            text = z.read("net.prototxt").decode("utf-8")
            # A bytearray keeps the arrays that view it writable (see read_caffemodel).
            weights = bytearray(z.read("weights.caffemodel"))
    except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise NetdefError(str(path), None, None, "not a valid .netdef file: %s" % e) from None
    return text, caffemodel.parse_caffemodel(weights, str(path))
