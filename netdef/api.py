"""The Python API: parse a net into the IR, compile it to a module, load weights, save."""
import sys
import warnings
import zipfile
from pathlib import Path

from compiler import pipeline
from compiler.backends import torch_fx, torch_weights
from compiler.backends.caffemodel import export_caffemodel, write_caffemodel
from compiler.backends.prototxt import net_to_text
from compiler.backends.fold import fast_path
from compiler.backends.record import record_of
from compiler.errors import NetdefError, NetdefWarning
from compiler.frontends import saved
from compiler.frontends.weights import read_weights
from compiler.layers import registry
from compiler.state import NetState
from netdef.inference import compile_for_inference


def register_layer(defn, replace=False):
    """Add a layer type: an instance of a netdef.LayerDef subclass with `type`, `shape()`
    and `lower()` (and `blob_shapes()` / `blob_names` if it has weights)."""
    return registry.register(defn, replace=replace)


def parse(source, phase="TEST", input_shapes=None, stages=(), level=0, max_memory=None, name=None):
    """A net file -> wired, shaped IR Net (compiler/pipeline.py). A net whose blobs would not
    fit `max_memory` bytes (default $NETDEF_MAX_MEMORY or 16 GiB) is refused before anything
    is allocated. `phase`, `stages` and `level` are Caffe's NetState; `name` chooses one net
    of a .net file that declares several."""
    return pipeline.build(source, NetState(phase, stages, level), input_shapes, max_memory, name)


def record(gm):
    """The ModuleRecord of a module netdef built (compiler/backends/record.py): its IR net,
    Caffe layer names per submodule, input and output blob names, the weight-loading report."""
    return record_of(gm)


def compile_net(net, weights=None, outputs=None, strict=False, fast=False, compile=False,
                precision="fp32"):
    """IR Net -> GraphModule (optionally with weights: a .caffemodel path, a saved .netdef,
    a .safetensors that netdef export wrote,
    or {layer: [arrays]}, loaded as load_weights says). In train() mode it computes Caffe's
    TRAIN behaviour, in eval() TEST's. fast=True is the inference fast path
    (compiler/backends/fold.py): BatchNorm and Scale folded into the convolutions before
    them, weights channels_last; the module's record (netdef.record(gm).net) is then the
    folded net, and its `weights` still say what came from the file.

    compile=True is the fastest exact inference: the fast path compiled by torch.compile
    with inductor freezing and warmed up here, on the net's input shapes, falling back to the
    eager fast path with one line on stderr where compiling fails (netdef/inference/compiled.py).
    It returns a netdef.inference.CompiledNet, for inference only. precision="bf16" (or
    "fp16" on CUDA) runs it under autocast, opt-in: float32 is what Caffe computes."""
    gm = torch_fx.build_module(net, outputs)
    report = load_weights(net, gm, weights, strict=strict) if weights is not None else None
    gm.train(net.phase == "TRAIN")
    if fast or compile:
        _, gm = fast_path(net, gm)
        record_of(gm).weights = report
    if compile:
        return compile_for_inference(gm, precision)
    if precision != "fp32":
        raise NetdefError(net.file, None, None, "precision=%r applies to compile=True" % precision,
                          hint="without compile, call the module under torch.autocast")
    return gm


def load(source, weights=None, phase="TEST", input_shapes=None, outputs=None, strict=False,
         stages=(), level=0, fast=False, name=None, compile=False, precision="fp32"):
    """One call from a net file (and weights) to a torch.nn.Module (a torch.fx.GraphModule,
    or with compile=True a netdef.inference.CompiledNet; see compile_net)."""
    net = parse(source, phase, input_shapes, stages, level, name=name)
    if weights is None and Path(source).suffix == saved.SUFFIX:
        weights = source
    return compile_net(net, weights, outputs, strict, fast, compile, precision)


def export(gm, caffemodel_path, prototxt_path=None):
    """Write a compiled module's current weights as a Caffe .caffemodel (and its net as a
    prototxt): the files Caffe, or netdef.load, reads back."""
    export_caffemodel(record_of(gm).net, gm, caffemodel_path, prototxt_path)


def load_weights(net, gm, weights, strict=False):
    """Copy weights into a module built from `net`, as Caffe's Net::CopyTrainedLayersFrom
    does: by layer name, skipping the file's layers that the net lacks and leaving the
    net's layers that the file lacks on their filler values. A blob of another shape, or a
    file that fills no layer at all, is an error; strict=True makes skipped and unfilled
    layers errors too. What happened, a compiler.passes.weights.WeightsReport, is returned
    and kept in the module's record (netdef.record(gm).weights); each thing in it worth
    knowing is also a NetdefWarning."""
    layers, file = read_weights(weights)
    report = torch_weights.load_blobs(net, gm, layers, strict=strict, file=file)
    record_of(gm).weights = report
    for line in report.lines():
        _warn(line)
    return report


def _warn(message):
    """A NetdefWarning attributed to the first caller outside netdef's packages, so that
    Python shows the user's line, not netdef's."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("netdef", "compiler"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, NetdefWarning, stacklevel=level)


def save(gm, path):
    """Save a compiled module as a .netdef file: a zip holding the net as prototxt text and
    its blobs as a .caffemodel, stamped with its format version (compiler/frontends/saved.py).
    Loading it (netdef.load) parses both; nothing is unpickled."""
    net = record_of(gm).net
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(saved.FORMAT_ENTRY, saved.FORMAT_STAMP)
        z.writestr(saved.NET_ENTRY, net_to_text(net, for_caffe=False))
        # Stored, not deflated: float weights barely compress (a few %), and deflating
        # ResNet-152's 240 MB took 2.4 s of a 9 s `netdef compile`.
        with z.open(zipfile.ZipInfo(saved.WEIGHTS_ENTRY, (1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
            write_caffemodel(f, net, gm)

