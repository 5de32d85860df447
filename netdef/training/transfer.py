"""Fine-tuning edits over the IR: new classifier heads, frozen layers, as Caffe users make
them by hand (Caffe's examples/finetune_flickr_style).

Caffe fine-tunes by name: Net::CopyTrainedLayersFrom copies the blobs of every layer whose
name the weights file has, so a classifier given a new name keeps its filler values and
learns the new classes while every other layer starts from the pretrained weights. What
a layer learns is in its `param {}` specs: lr_mult 0 (and decay_mult 0) freezes a blob, a
missing spec means lr_mult 1. A frozen BatchNorm must also stop updating its running
statistics: use_global_stats true (Caffe's BatchNorm otherwise computes and stores batch
statistics in TRAIN).

The functions take IR nets: `classifiers` a wired and shaped one (one NetState), the
edits (`replace_heads`, `freeze`) any list of Layers, so that the command can find the
heads in each phase and edit the file's layers of every phase once.
"""
from compiler import pipeline
from compiler.errors import NetdefError
from compiler.ir import Net
from compiler.layers.conv import Convolution
from compiler.layers.inner_product import InnerProduct
from compiler.layers.normalization import BatchNorm
from compiler.state import NetState

HEAD_SUFFIX = "_ft"
# The new head learns faster than the pretrained layers (Caffe's flickr-style example:
# weights lr_mult 10 decay_mult 1, bias lr_mult 20 decay_mult 0).
HEAD_MULTS = ((10, 1), (20, 0))
CLASSIFIER_DEFS = (InnerProduct, Convolution)


def classifiers(net):
    """The layers of a wired, shaped net that classify: for each blob the net returns (its
    losses, accuracies, probabilities), the first layer with learnable blobs found walking
    back through layers without any, when that is an InnerProduct or a Convolution (the
    1x1 convolution of NIN-style heads). In net order; GoogLeNet's two auxiliary heads are
    among them, as they feed losses of their own."""
    found = set()
    for name in net.outputs:
        blob = net.latest[name]
        while True:
            layer = net.layer(net.blobs[blob].producer)
            if layer.defn.is_input:
                break
            if blob_count(net, layer):
                if isinstance(layer.defn, CLASSIFIER_DEFS):
                    found.add(layer.name)
                break
            if not layer.bottoms:
                break
            blob = layer.bottoms[0]      # the data, not the label, of a loss or an accuracy
    return [layer for layer in net.layers if layer.name in found]


def blob_count(net, layer):
    """How many learnable blobs (and statistics) Caffe gives the layer."""
    return len(layer.defn.blob_shapes(layer, [net.blobs[b].shape for b in layer.bottoms]))


def head_names(heads, head=None):
    """{old name: new name}: `head` for the main classifier (the last one), the others
    (auxiliary heads) their name + _ft; without `head`, every one its name + _ft."""
    names = {}
    for i, name in enumerate(heads):
        main = i == len(heads) - 1
        names[name] = head if head and main else name + HEAD_SUFFIX
    return names


def replace_heads(layers, renames, classes):
    """Give each classifier of `renames` ({old name: new name}) its new name and `classes`
    outputs, with HEAD_MULTS: weight loading by name then skips it and it starts from its
    fillers. `layers`: every layer of the net (all phases). A new name that another layer
    already has is an error at that layer."""
    existing = {layer.name: layer for layer in layers}
    for old, new in renames.items():
        if new in existing and new not in renames:
            clash = existing[new]
            raise NetdefError(clash.file, clash.line, clash.name, "the new head's name %s is taken by this "
                              "layer" % new, "choose another --head name")
    for layer in layers:
        if layer.name not in renames:
            continue
        param = layer.param
        param.name = layer.name = renames[layer.name]
        params = getattr(param, layer.defn.param_field)
        params.num_output = classes
        del param.param[:]
        for lr_mult, decay_mult in HEAD_MULTS[:2 if params.bias_term else 1]:
            param.param.add(lr_mult=lr_mult, decay_mult=decay_mult)
        layer.param = param


def frozen_layers(layers, upto, keep=()):
    """Names of the layers `--freeze upto` freezes: "all" every layer but those in `keep`
    (the new heads), "none" none, a layer's name the layers up to and including it in net
    order (an error when the net has no such layer)."""
    names = [layer.name for layer in layers]
    if upto == "none":
        return []
    if upto == "all":
        return [n for n in names if n not in keep]
    if upto not in names:
        raise NetdefError(layers[0].file if layers else None, None, None,
                          "--freeze %s: the net has no layer of that name" % upto,
                          "give a layer name, 'all' (everything but the new head) or 'none'")
    return [n for n in names[:names.index(upto) + 1] if n not in keep]


def freeze(layers, names, counts):
    """Freeze the layers named in `names`: each learnable blob's spec gets lr_mult 0 and
    decay_mult 0 (specs are added up to the layer's blob count, `counts` {name: count}, as
    Caffe refuses more specs than blobs), and a BatchNorm uses its stored statistics."""
    names = set(names)
    for layer in layers:
        if layer.name not in names:
            continue
        param = layer.param
        for i in range(counts.get(layer.name, 0)):
            spec = param.param[i] if i < len(param.param) else param.param.add()
            spec.lr_mult = 0
            spec.decay_mult = 0
        if isinstance(layer.defn, BatchNorm):
            param.batch_norm_param.use_global_stats = True
        layer.param = param


def phase_net(net, state, input_shapes=None, max_memory=None):
    """The layers of `net` (pipeline.read: every phase) that `state` keeps, wired and shaped
    as a Net of their own. The Layer objects are `net`'s: an edit of their parameters is an
    edit of `net`."""
    part = Net(net.name, net.layers, file=net.file)
    part.expected_shapes = net.expected_shapes
    return pipeline.build_net(part, state, input_shapes, max_memory)


def finetune(net, classes, head=None, freeze_upto="all", input_shapes=None, max_memory=None):
    """Edit `net` (pipeline.read: every phase) for fine-tuning to `classes` classes: the
    classifiers of its TRAIN and TEST nets replaced (replace_heads), the layers that
    `freeze_upto` names frozen. Returns ({old head: new head}, [names of the frozen layers
    that have blobs])."""
    if classes < 1:
        raise NetdefError(net.file, None, None, "a classifier needs at least 1 class, not %d" % classes,
                          "give --classes N, N >= 1")
    heads, counts = [], {}
    for phase in ("TRAIN", "TEST"):
        # One phase at a time: wiring a phase rewrites the shared layers' blob ids.
        part = phase_net(net, NetState(phase), input_shapes, max_memory)
        heads += [layer.name for layer in classifiers(part) if layer.name not in heads]
        counts.update((layer.name, blob_count(part, layer)) for layer in part.layers)
    if not heads:
        raise NetdefError(net.file, None, None, "no classifier found: no InnerProduct or Convolution feeds "
                          "the net's outputs or losses through layers without weights")
    order = [layer.name for layer in net.layers]
    renames = head_names(sorted(heads, key=order.index), head)
    frozen = [name for name in frozen_layers(net.layers, freeze_upto, keep=set(renames)) if counts.get(name)]
    replace_heads(net.layers, renames, classes)
    freeze(net.layers, frozen, counts)
    return renames, frozen
