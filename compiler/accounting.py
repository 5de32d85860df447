"""Counting a net: learnable parameters, bytes of memory, and which blobs of a weights file
fill which blobs of the net.

These facts are read by several stages (the checks in passes/validate.py, the summary and
the drawings, the weight loader), so they live beneath all of them, beside the IR, and
import nothing but the IR's pieces and the layer definitions.
"""
import os
import re
from dataclasses import dataclass

from compiler.errors import NetdefError
from compiler.layers import registry
from compiler.layers.base import prod
from compiler.layers.normalization import BatchNorm
from compiler.layers.scale_bias import Scale

DEFAULT_MAX_MEMORY = 16 << 30
# A budget nothing exceeds, for a net known to fit (the fast path's folded net is smaller
# than the net it folds, which was checked against the user's budget).
NO_BUDGET = 1 << 62
MEMORY_ENV = "NETDEF_MAX_MEMORY"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# Caffe's blobs are float32.
BYTES_PER_VALUE = 4


def parse_size(text):
    """"16G", "512MiB", "1.5g", "1000000" -> bytes. Raises ValueError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
    if not m:
        raise ValueError("%r is not a size (e.g. 16G, 512M, 1000000)" % text)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def memory_budget(value=None):
    """Bytes allowed: `value` (bytes or a size string), else $NETDEF_MAX_MEMORY, else 16 GiB."""
    if value is None:
        value = os.environ.get(MEMORY_ENV)
        if not value:
            return DEFAULT_MAX_MEMORY
        try:
            return parse_size(value)
        except ValueError as e:
            raise NetdefError(None, None, None, "%s: %s" % (MEMORY_ENV, e)) from None
    return value if isinstance(value, int) else parse_size(value)


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def blob_bytes(shape):
    """Bytes of one float32 blob of `shape`."""
    return BYTES_PER_VALUE * prod(shape)


def layer_params(net, layer, seen_shared):
    """Learnable blob elements of one shaped layer; a shared blob counts once (`seen_shared`
    holds the param names already counted), statistics (LayerDef.stat_blobs: BatchNorm's
    mean, variance and factor) do not count."""
    return sum(param_counts(net, layer, seen_shared))


def param_counts(net, layer, seen_shared):
    """(trainable, frozen): layer_params split by the blobs' lr_mult (a missing param spec
    is lr_mult 1, Caffe's default; lr_mult 0 is a frozen blob, which no solver changes)."""
    counts = [0, 0]
    for s, statistic, frozen in layer_blobs(net, layer, seen_shared):
        if not statistic:
            counts[frozen] += prod(s)
    return tuple(counts)


def layer_blobs(net, layer, seen_shared):
    """(shape, statistic, frozen) of each blob of one shaped layer not counted yet: a shared
    blob (its param spec has a name) comes once, with the first layer that holds it
    (`seen_shared` gathers the names). `statistic`: a blob no solver learns
    (LayerDef.stat_blobs); `frozen`: its lr_mult is 0 (a missing param spec is lr_mult 1,
    Caffe's default)."""
    defn = registry.get(layer.type)
    shapes = [net.blobs[b].shape for b in layer.bottoms]
    for i, s in enumerate(defn.blob_shapes(layer, shapes)):
        spec = layer.param.param[i] if i < len(layer.param.param) else None
        if spec is not None and spec.name:
            if spec.name in seen_shared:
                continue
            seen_shared.add(spec.name)
        yield s, i in defn.stat_blobs, spec is not None and spec.lr_mult == 0


def layer_workspace(net, layer):
    """Bytes of the temporaries one shaped layer allocates while it runs
    (LayerDef.workspace_values)."""
    shapes = [net.blobs[b].shape for b in layer.bottoms]
    return BYTES_PER_VALUE * registry.get(layer.type).workspace_values(layer, shapes)


def blob_fits(arr_shape, want, legacy):
    """Whether a file's blob of `arr_shape` fills a blob of shape `want`."""
    if tuple(arr_shape) == tuple(want):
        return True
    # Old caffemodels store every blob as 4-D num/channels/height/width.
    return legacy and len(want) <= 4 and tuple(arr_shape) == (1,) * (4 - len(want)) + tuple(want)


def activation_buffers(net):
    """({SSA id: buffer}, {buffer: bytes}) of a shaped net: each distinct piece of memory
    once. A top written in place (its name is one of its layer's bottoms: a ReLU after a
    convolution) lives in its bottom's memory, and so do the tops of a type whose tops
    alias its bottom (Split): Caffe allocates nothing for them, and neither does the
    module. A buffer is named by the SSA id of its first value."""
    buffer_of, size = {}, {}
    for layer in net.layers:
        defn = registry.get(layer.type)
        by_name = {net.blobs[b].name: buffer_of.get(b, b) for b in layer.bottoms}
        for t in layer.tops:
            blob = net.blobs[t]
            if blob.name in by_name:
                buffer_of[t] = by_name[blob.name]
            elif defn is not None and defn.aliases_bottom and len(layer.bottoms) == 1:
                buffer_of[t] = buffer_of.get(layer.bottoms[0], layer.bottoms[0])
            else:
                buffer_of[t] = t
                size[t] = blob_bytes(blob.shape) if blob.shape is not None else 0
    return buffer_of, size


def private_fresh_bottoms(net, layer, readers, returned):
    """Indices of the bottoms this layer may overwrite without anyone telling: a fresh
    tensor (its producer's LayerDef.fresh_output) that only this layer reads and the module
    does not return. `readers`: {SSA id: how many layers read it}; `returned`: the SSA ids
    the module returns. The backend lowers by it (LayerDef.in_place_bottom), and
    module_buffers counts by it."""
    private = []
    for i, b in enumerate(layer.bottoms):
        producer = net.layer(net.blobs[b].producer)
        if producer.defn.fresh_output and len(producer.tops) == 1 and readers[b] == 1 \
                and b not in returned:
            private.append(i)
    return private


def fused_batch_norm(net, layer, readers, returned):
    """The BatchNorm layer whose output only this per-channel Scale reads, if any: Caffe
    writes a batch norm as BatchNorm then Scale, and running them as one F.batch_norm call
    makes one pass over the activation instead of two, as nn.BatchNorm2d does. No one can
    tell: the value between them is neither read elsewhere nor returned. The backend fuses
    by it, and module_buffers counts by it."""
    # The built-in definitions only: a user's registered replacement lowers to its own module.
    if not isinstance(layer.defn, Scale) \
            or not layer.defn.per_channel(layer, [net.blobs[b].shape for b in layer.bottoms]):
        return None
    bottom = layer.bottoms[0]
    producer = net.layer(net.blobs[bottom].producer)
    if not isinstance(producer.defn, BatchNorm) or readers[bottom] != 1 or bottom in returned:
        return None
    return producer


def module_buffers(net):
    """activation_buffers as the module built from a shaped net allocates them, where
    activation_buffers is Caffe's memory: a top gets a buffer of its own unless its layer
    computes into a bottom nobody else sees (LayerDef.in_place_bottom: a ReLU after a
    convolution, a residual sum into its later bottom) or aliases its bottom (Split); a
    BatchNorm whose only reader is the per-channel Scale after it writes nothing, the one
    batch_norm call of the two writing the Scale's top (fused_batch_norm). So a BatchNorm,
    Scale or Dropout that Caffe writes in place takes memory of its own here, and a sum to
    which Caffe gives a new blob takes none."""
    readers = {}
    for layer in net.layers:
        for b in layer.bottoms:
            readers[b] = readers.get(b, 0) + 1
    returned = {net.latest[name] for name in net.outputs}
    buffer_of, size = {}, {}
    for layer in net.layers:
        defn = registry.get(layer.type)
        into = None
        if not defn.is_input:
            into = defn.in_place_bottom(layer, private_fresh_bottoms(net, layer, readers, returned))
            bn = fused_batch_norm(net, layer, readers, returned)
            if bn is not None:
                size.pop(buffer_of[bn.tops[0]])
        for k, t in enumerate(layer.tops):
            if k == 0 and into is not None:
                buffer_of[t] = buffer_of[layer.bottoms[into]]
            elif defn.aliases_bottom and len(layer.bottoms) == 1:
                buffer_of[t] = buffer_of[layer.bottoms[0]]
            else:
                buffer_of[t] = t
                size[t] = blob_bytes(net.blobs[t].shape)
    return buffer_of, size


def activation_bytes(net):
    """Bytes of all the activations of a shaped net for its batch, each buffer once: what
    a training step keeps for the backward pass."""
    return sum(activation_buffers(net)[1].values())


@dataclass
class StepMemory:
    """Bytes of one training step, by what holds them."""
    weights: int           # learnable blobs and statistics (BatchNorm's)
    gradients: int         # one gradient per trainable blob (lr_mult not 0)
    history: int           # the solver's history: history_sets per learnable blob
    activations: int       # tensors kept between forward and backward
    inputs: int            # the batch
    workspace: int = 0     # the largest temporary one layer allocates while it runs

    @property
    def total(self):
        return self.weights + self.gradients + self.history + self.activations + self.inputs + self.workspace


def training_step_bytes(net, history_sets=1):
    """StepMemory of one training step of a shaped TRAIN net with a solver keeping
    `history_sets` history blobs per learnable blob (SGD 1, Adam 2: SolverType.history_sets),
    from the shapes alone (nothing is built; netdef.training.memory measures the same on
    PyTorch's meta device, and tests hold the two within 20%).

    Weights: every blob of every layer, a shared one once, statistics included; the solver
    keeps history for all of them (a .solverstate lines up with Caffe's learnable_params)
    and gradients for the trainable ones. Activations: every buffer the module allocates
    (module_buffers: as the backend lowers, so a BatchNorm that Caffe writes in place
    takes memory of its own, an in-place ReLU or a residual sum none), since in a
    convolutional net nearly each one is read by some backward (a convolution's input, a
    ReLU's output), plus what a layer keeps beside its blobs (LayerDef.backward_values:
    max pooling's indices)."""
    buffer_of, size = module_buffers(net)
    inputs = {buffer_of.get(t, t) for t in net.inputs}
    seen = set()
    weights = trainable = extra = workspace = 0
    for layer in net.layers:
        defn = registry.get(layer.type)
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        for s, statistic, frozen in layer_blobs(net, layer, seen):
            weights += blob_bytes(s)
            if not statistic and not frozen:
                trainable += blob_bytes(s)
        extra += BYTES_PER_VALUE * defn.backward_values(layer, shapes, [net.blobs[t].shape for t in layer.tops])
        workspace = max(workspace, layer_workspace(net, layer))
    return StepMemory(weights=weights, gradients=trainable, history=history_sets * weights,
                      activations=sum(n for b, n in size.items() if b not in inputs) + extra,
                      inputs=sum(size[b] for b in inputs if b in size), workspace=workspace)


def inference_peak_bytes(net, buffers=None):
    """Bytes live at once in an inference forward of a shaped net, for its batch: walking
    the layers in order, a buffer is allocated by its first writer and freed after its last
    reader, unless it is a net output; the inputs are the caller's and not counted. While a
    layer runs, its bottoms, its new tops and its workspace are live together, and a top it
    writes in place may be computed beside its old value (an eager batch norm is): that
    transient counts too. ResNet-50 and VGG-16 come within 5% of the measured peak
    (benchmarks/bench_memory.py). `buffers`: activation_buffers(net), where the caller has
    it."""
    buffer_of, size = buffers or activation_buffers(net)
    inputs = {buffer_of.get(t, t) for t in net.inputs}
    last_read = {}
    for i, layer in enumerate(net.layers):
        for b in layer.bottoms:
            last_read[buffer_of.get(b, b)] = i
    kept = {buffer_of[net.latest[name]] for name in net.outputs}
    live = peak = 0
    for i, layer in enumerate(net.layers):
        rewritten = 0
        for t in layer.tops:
            b = buffer_of[t]
            if b == t:
                live += size[b] if t not in inputs else 0
            elif net.blobs[t].name in {net.blobs[x].name for x in layer.bottoms}:
                rewritten += size.get(b, 0)
        peak = max(peak, live + rewritten + layer_workspace(net, layer))
        for b in {buffer_of.get(x, x) for x in layer.bottoms + layer.tops}:
            # Freed after its last reader, or at once if nothing reads it.
            if b in size and b not in inputs and b not in kept and last_read.get(b, i) == i:
                live -= size[b]
    return peak
