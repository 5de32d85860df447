"""Validation: every problem of a net, found without building a module.

`validate` checks a wired, shaped net and changes nothing: compiler/pipeline.py runs it
after the wiring and shapes passes and gathers the errors of all three, so that `netdef
check` lists them all and `netdef draw` can still show the valid part of a broken net; the
shapes a source asserts (`expect` in the netdef language) are among the checks.
`check_memory` refuses a net whose declared blobs would not fit a memory budget, before
anything is allocated. (Weights are matched with a net by passes/weights.py.)
"""
import math
import warnings

from compiler.accounting import (BYTES_PER_VALUE, MEMORY_ENV, activation_buffers, human_bytes, layer_params,
                                 layer_workspace, memory_budget, training_step_bytes)
from compiler.errors import NetdefError, NetdefWarning
from compiler.layers import registry
from compiler.layers.base import ShapeError
from compiler.layers.fillers import FILLER_TYPES
from compiler.passes.expectations import check_expected_shapes
from compiler.proto import is_repeated


def check_memory(net, budget=None, history_sets=1):
    """Refuse a shaped net that would not fit `budget` bytes (see memory_budget) before
    anything is allocated. A TEST net: its float32 blobs (every distinct activation buffer
    of the batch, as accounting.activation_buffers counts them, and the learnable blobs)
    and the largest workspace a layer allocates while it runs (its temporaries, freed when
    it returns, so only one layer's at a time). A TRAIN net: what a training step holds
    (accounting.training_step_bytes: weights, gradients, `history_sets` solver history
    blobs per learnable blob, the activations kept for backward, the batch, the largest
    workspace)."""
    budget = memory_budget(budget)
    activations, params, largest, workspace = 0, 0, (0, None), (0, None)
    seen = set()
    buffer_of, buffer_bytes = activation_buffers(net)     # in-place tops add nothing
    for layer in net.layers:
        size = sum(buffer_bytes[t] for t in layer.tops if buffer_of[t] == t)
        activations += size
        if size > largest[0]:
            largest = size, layer
        temporaries = layer_workspace(net, layer)
        if temporaries > workspace[0]:
            workspace = temporaries, layer
        params += BYTES_PER_VALUE * layer_params(net, layer, seen)
    if net.phase == "TRAIN":
        step = training_step_bytes(net, history_sets)
        if step.total <= budget:
            return
        needs = "a training step of the net needs %s (weights %s, gradients %s, solver history %s, " \
                "activations kept for backward %s, batch %s%s), over the %s memory budget" % (
                    human_bytes(step.total), human_bytes(step.weights), human_bytes(step.gradients),
                    human_bytes(step.history), human_bytes(step.activations), human_bytes(step.inputs),
                    ", workspace %s" % human_bytes(step.workspace) if step.workspace else "", human_bytes(budget))
    else:
        if activations + params + workspace[0] <= budget:
            return
        needs = "the net needs %s (activations %s, learnable blobs %s%s), over the %s memory budget" % (
            human_bytes(activations + params + workspace[0]), human_bytes(activations), human_bytes(params),
            ", workspace %s" % human_bytes(workspace[0]) if workspace[0] else "", human_bytes(budget))
    hint = "use a smaller batch (--input-shape), or raise the budget with --max-memory or $%s" % MEMORY_ENV
    size, layer = largest
    if workspace[0] > size:
        layer = workspace[1]
        raise NetdefError(layer.file or net.file, layer.line, layer.name,
                          "%s; this layer's workspace alone is %s" % (needs, human_bytes(workspace[0])),
                          "check its parameters, " + hint)
    top = net.blobs[layer.tops[0]]
    raise NetdefError(layer.file or net.file, layer.line, layer.name,
                      "%s; this layer's top '%s' %s alone is %s"
                      % (needs, top.name, "x".join(map(str, top.shape)), human_bytes(size)),
                      "check the dimensions, " + hint)


def validate(net, failed=(), max_memory=None):
    """Every problem of a wired, shaped net that wiring and shapes do not find (fillers,
    learnable blob shapes, shared parameters, the shapes the source expects, the memory
    budget), as a list of NetdefError. `failed` names the layers that wiring or shapes
    already refused: their blobs are unknown, so their checks would only restate those
    errors, and the memory budget is checked on a net without failures only. Reads the
    net, never changes it."""
    errors = check_fillers(net)
    errors.extend(check_blobs(net, set(failed) | {e.layer for e in errors}))
    errors.extend(check_expected_shapes(net))
    if not failed and not errors:
        try:
            check_memory(net, max_memory)
        except NetdefError as e:
            errors.append(e)
    return errors


def empty_net_error(net):
    """A net without layers computes nothing: say why it has none."""
    if net.excluded_layers:
        state = net.phase + "".join(", stage %s" % s for s in net.state.stages) + \
            (", level %d" % net.state.level if net.state.level else "")
        return NetdefError(net.file, None, None, "no layer of the net is in the %s net: the include/exclude "
                           "rules of all %d layers leave them out" % (state, len(net.excluded_layers)),
                           "choose the phase or stages they are written for (--phase, --stage)")
    return NetdefError(net.file, None, None, "the file defines no layers: there is nothing to compile",
                       "a net needs at least an input and a layer")


def warn_duplicate_names(net):
    """One NetdefWarning for the names several layers share. Caffe accepts them and
    CopyTrainedLayersFrom copies a file's blobs into the first layer of a name only, so a
    later one always keeps its fillers: a user who did not mean it should know."""
    duplicates = net.duplicate_names
    if not duplicates:
        return
    said = "; ".join("%d layers named '%s' (lines %s)" % (len(layers), name,
                                                           ", ".join(str(x.line or "?") for x in layers))
                     for name, layers in duplicates.items())
    warnings.warn("%s: %s: weights load into the first layer of a name, as in Caffe; the others keep "
                  "their fillers" % (net.file or "<input>", said), NetdefWarning, stacklevel=3)


def _fillers(message):
    """Every FillerParameter inside a message, with the name of the field holding it."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in (value if is_repeated(field) else [value]):
            if field.message_type.full_name == "caffe.FillerParameter":
                yield field.name, item
            else:
                yield from _fillers(item)


def check_fillers(net):
    """Caffe refuses unknown filler types and impossible ranges when it sets up a layer;
    netdef fills the blobs that no weights file provides with them."""
    errors = []
    for layer in net.layers:
        for where, f in _fillers(layer.param):
            problem = None
            if f.type not in FILLER_TYPES:
                problem = "unknown filler type '%s'" % f.type, "one of " + ", ".join(FILLER_TYPES)
            elif not all(math.isfinite(v) for v in (f.value, f.min, f.max, f.mean, f.std)):
                problem = "filler values must be finite numbers", None
            elif f.type == "uniform" and f.min > f.max:
                problem = "uniform filler with min %g > max %g" % (f.min, f.max), None
            elif f.type == "gaussian" and f.std < 0:
                problem = "gaussian filler with a negative std %g" % f.std, None
            if problem:
                errors.append(NetdefError(layer.file or net.file, layer.line, layer.name,
                                          "%s: %s" % (where, problem[0]), problem[1]))
    return errors


def check_blobs(net, skip=()):
    """The learnable blobs of each shaped layer of a known type, except those named in
    `skip` (failed layers): their rule may refuse bottoms that the shape rule let through
    (BatchNorm on a 0-axis blob), and every later step needs them; layers sharing a blob by
    param { name } must give it one shape (Caffe's default STRICT share mode), as the module
    builder requires."""
    errors = []
    first = {}        # param name -> (layer name, shape)
    for layer in net.layers:
        defn = registry.get(layer.type)
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        if layer.name in skip or defn is None or any(s is None for s in shapes):
            continue
        try:
            blob_shapes = defn.blob_shapes(layer, shapes)
        except ShapeError as e:
            errors.append(NetdefError(layer.file or net.file, layer.line, layer.name, e.message, e.hint))
            continue
        if not blob_shapes:
            continue
        for i, spec in enumerate(layer.param.param[:len(blob_shapes)]):
            if not spec.name:
                continue
            shape = list(blob_shapes[i])
            owner = first.setdefault(spec.name, (layer.name, shape))
            if owner[1] != shape:
                errors.append(NetdefError(layer.file or net.file, layer.line, layer.name,
                                          "shared parameter '%s' has shape %s here but %s in layer '%s'"
                                          % (spec.name, shape, owner[1], owner[0]),
                                          "layers sharing a param { name } need blobs of the same shape"))
    return errors
