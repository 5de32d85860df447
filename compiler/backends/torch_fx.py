"""IR -> torch.fx.GraphModule.

One call_module node per Caffe layer (the submodule is named after the layer), one
placeholder per input blob, and an output dict {Caffe blob name: tensor}. The graph is
plain torch.fx, so the module compiles with torch.compile, exports with torch.export and
to ONNX, and pickles with its record (NetModule). A layer whose definition gives an
`export_refusal` (DetectionOutput: a data-dependent number of rows) reads its first bottom
through `refuse_capture`, which stops an export with a NetdefError naming the layer; such
a layer is not called when no returned blob depends on it, so the net up to it exports.

Shared parameters (param { name: ... }) are one nn.Parameter referenced by every layer
that names it. `train()` / `eval()` select Caffe's TRAIN / TEST behaviour of the layers
that have one (Dropout, BatchNorm without use_global_stats).
"""
import contextlib
import gc
import keyword
import operator
import re

import torch
import torch.fx as fx
import torch.nn as nn

from compiler.accounting import fused_batch_norm, private_fresh_bottoms
from compiler.backends.record import META_KEY, ModuleRecord
from compiler.errors import NetdefError
from compiler.layers import registry
from compiler.runtime.normalization import batch_norm_scale


# Names a submodule or argument may not take: Python's keywords and everything an
# nn.Module or a GraphModule already has, its class's methods (a layer named `eval`, `to`
# or `train` would replace the method) and the attributes each instance sets (`training`,
# `_modules`: add_module refuses them). Caffe accepts any name; these get a suffix.
RESERVED = (frozenset(keyword.kwlist) | frozenset(dir(fx.GraphModule))
            | frozenset(vars(fx.GraphModule(nn.Module(), fx.Graph()))) | {"graph", "code", "meta"})


def python_name(name, taken):
    """A Caffe name ("conv1/7x7_s2", "res2a_branch1", "class", "x²") as a Python identifier
    that no keyword or module attribute has, unique in `taken`. The record keeps the Caffe
    name (ModuleRecord.layer_names), so outputs, weights and `run` still speak Caffe."""
    ident = "".join(c if ("_" + c).isidentifier() else "_" for c in re.sub(r"\W", "_", name))
    if not ident or not ident.isidentifier():
        ident = "_" + ident
    if ident in RESERVED:
        ident += "_"
    base, k = ident, 1
    while ident in taken:
        k += 1
        ident = "%s_%d" % (base, k)
    taken.add(ident)
    return ident


def build_module(net, outputs=None):
    """net: wired and shaped. outputs: Caffe blob names to return ("all" for every blob,
    None for the net's outputs). Returns a GraphModule whose forward takes the input blobs
    (positionally or by name) and returns {blob name: tensor}; its ModuleRecord
    (compiler/backends/record.py) is in gm.meta["netdef"]."""
    with _no_collections():
        return _build_module(net, outputs)


@contextlib.contextmanager
def _no_collections():
    """Python's cyclic collector paused: building keeps every object it makes, and each
    collection during it would scan the ever larger heap for nothing, which made building
    superlinear (16k layers: 911 against 530 us per layer at 1k)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_module(net, outputs):
    if outputs is None:
        outputs = net.outputs
    elif outputs == "all":
        outputs = list(net.blob_order)
    root = nn.Module()
    graph = fx.Graph(tracer_cls=_Tracer)
    env = {}
    optional = set()                 # nodes of layers that refuse export, run only if needed
    taken = set()
    module_names = {}
    owners = {}                      # shared param name -> nn.Parameter
    readers = {}                     # SSA id -> number of layers reading it
    for layer in net.layers:
        for b in layer.bottoms:
            readers[b] = readers.get(b, 0) + 1
    returned = {net.latest[name] for name in outputs if name in net.latest}
    for layer in net.layers:
        defn = registry.get(layer.type)
        if defn.is_input:
            for t in layer.tops:
                env[t] = graph.placeholder(python_name(net.blobs[t].name, taken))
            continue
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        try:
            module = defn.lower(layer, shapes)
        except NotImplementedError as e:
            raise NetdefError(layer.file, layer.line, layer.name, str(e)) from None
        modname = python_name(layer.name, taken)
        module_names[modname] = layer.name
        _share_params(layer, defn.blob_attrs(layer, shapes), module, owners)
        into = defn.in_place_bottom(layer, private_fresh_bottoms(net, layer, readers, returned))
        if into is not None:
            # A ReLU or a sum computed into a bottom that nobody else sees: one allocation
            # and one pass over memory less. Autograd still works: neither the producer's
            # backward nor anything else reads the overwritten values.
            module = defn.lower_in_place(layer, module, into)
        root.add_module(modname, module)
        bn = fused_batch_norm(net, layer, readers, returned)
        if bn is not None:
            node = _fuse_batch_norm_scale(graph, env, bn, modname)
        else:
            args = tuple(env[b] for b in layer.bottoms)
            if defn.export_refusal:
                args = (_refusal_guard(graph, layer, modname, args[0]),) + args[1:]
                optional.add(args[0])
            node = graph.call_module(modname, args)
        if len(layer.tops) == 1:
            env[layer.tops[0]] = node
        else:
            for i, t in enumerate(layer.tops):
                env[t] = graph.call_function(operator.getitem, (node, i))
        if defn.export_refusal:
            optional.update([node] + [env[t] for t in layer.tops])
    missing = [o for o in outputs if o not in net.latest]
    if missing:
        raise NetdefError(net.file, None, None, "no blob named %s in the net" % ", ".join(missing))
    graph.output({name: env[net.latest[name]] for name in outputs})
    gm = NetModule(root, graph, class_name=python_name(net.name or "Net", set()))
    # A layer that refuses export is not called when no returned blob depends on it, so
    # that the net compiled with outputs= up to its bottoms exports. (Every other layer
    # is: GraphModule's copies keep only the submodules its code calls.) Without such a
    # layer nothing is dead, and the code GraphModule generated stands: generating it
    # again was a tenth of a second of ResNet-152's compile.
    if optional and gm.graph.eliminate_dead_code(is_impure_node=lambda node: node not in optional):
        gm.recompile()
    gm.meta[META_KEY] = ModuleRecord(net, module_names, [net.blobs[t].name for t in net.inputs],
                                     list(outputs))
    return gm


class NetModule(fx.GraphModule):
    """The module the backend builds. torch.fx unpickles a GraphModule by re-tracing its
    code into a module with an empty `meta`; this one keeps its meta (the ModuleRecord)
    through torch.save / torch.load, and through copy.copy its class."""

    def __reduce__(self):
        rebuild, args = super().__reduce__()
        return _unpickle, (rebuild, args, self.meta)

    def __copy__(self):
        copied = NetModule(self, self.graph, class_name=type(self).__name__)
        copied.meta = self.meta
        return copied


def _unpickle(rebuild, args, meta):
    plain = rebuild(*args)
    module = NetModule(plain, plain.graph, class_name=type(plain).__name__)
    for key, value in vars(plain).items():
        # What else the pickled module held, as torch.fx's own unpickling keeps it.
        if key not in vars(module):
            setattr(module, key, value)
    module.meta = meta
    return module


def refuse_capture(x, file, line, layer, message, hint):
    """`x` as it is when the module runs; a NetdefError while torch.export (and so
    torch.onnx.export) or torch.jit.trace captures the module into a graph."""
    if torch.compiler.is_exporting() or torch.jit.is_tracing():
        raise NetdefError(file, line, layer, message, hint)
    return x


def _refusal_guard(graph, layer, modname, first_bottom):
    """Route the first bottom of a layer whose LayerDef has an export_refusal through
    refuse_capture: the capture stops there, naming the layer and the outputs to export
    instead, and the guard is dead code exactly when the layer is."""
    names = ", ".join(repr(b) for b in layer.param.bottom)
    message = "%s cannot be exported: %s" % (layer.type, layer.defn.export_refusal)
    hint = ("export the net up to its bottoms, outputs=[%s] (netdef.load or "
            "netdef.compile_net), and apply the module's `%s` submodule to them in PyTorch"
            % (names, modname))
    return graph.call_function(refuse_capture, (first_bottom, layer.file and str(layer.file),
                                                layer.line, layer.name, message, hint))


class _Tracer(fx.Tracer):
    """The tracer torch.fx runs on a module's code when it unpickles it: the functions the
    backend calls stay single calls, as they were built, instead of being traced into."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, autowrap_functions=(batch_norm_scale, refuse_capture), **kwargs)


def _fuse_batch_norm_scale(graph, env, bn, scale_name):
    """Replace the BatchNorm's call by one batch_norm_scale call (its submodule and the
    Scale's stay where they are, so names and state_dict keys do not change)."""
    bn_node = env[bn.tops[0]]
    bn_name = bn_node.target
    graph.erase_node(bn_node)
    return graph.create_node("call_function", batch_norm_scale,
                             (env[bn.bottoms[0]], graph.get_attr(bn_name), graph.get_attr(scale_name)),
                             name=scale_name)


def _share_params(layer, attrs, module, owners):
    for i, spec in enumerate(layer.param.param):
        if not spec.name or i >= len(attrs):
            continue
        attr = attrs[i]
        mine = getattr(module, attr, None)
        if mine is None:
            continue
        owner = owners.get(spec.name)
        if owner is None:
            owners[spec.name] = mine
        elif owner.shape != mine.shape:
            raise NetdefError(layer.file, layer.line, layer.name,
                              "shared parameter '%s' has shape %s here but %s in its first layer"
                              % (spec.name, list(mine.shape), list(owner.shape)),
                              "layers sharing a param { name } need blobs of the same shape")
        else:
            setattr(module, attr, owner)
