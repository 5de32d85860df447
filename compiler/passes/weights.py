"""Which blobs of a weights file fill which layers of a net: Caffe's Net::CopyTrainedLayersFrom.

Caffe walks the file's layers in order and looks each one up by name in the net:
- a layer of the file that the net lacks is skipped ("Ignoring source layer conv5-3").
  Trained files routinely hold layers their deploy net drops: MTCNN det2's landmark head
  conv5-3, GoogLeNet's auxiliary classifiers loss1/* and loss2/*, the data and loss layers
  of the training net;
- a layer found with another number of blobs, or a blob of another shape, is fatal, with
  the layer and both shapes ("To learn this layer's parameters from scratch rather than
  copying from a saved net, rename the layer");
- a layer of the net that the file lacks keeps the values its fillers gave it, silently.
  That is how fine-tuning works: the net renames fc8 to fc8_flickr, which learns from
  scratch while every other layer starts from the file.
Each file layer of a name is copied into the net's first layer of that name, so when a
file holds a name twice the last one fills it, and every one of them must fit.

netdef matches the same way and says what happened (WeightsReport): the layers loaded,
those that kept their fillers, the file's layers that matched nothing, and which of those
look like a renaming (same blob shapes, other name). A file that fills no layer of a net
with weights is an error: it belongs to another net. `strict` makes every ignored or
unfilled layer an error too.

A blob that does not fit because of the input's size, not the file's (a 256x256 image
makes a 2048x2x2 pool5, so an InnerProduct trained after a 2048x1x1 one gets another
weight shape), is reported as a problem of the input, with the size to feed.

No torch here: `netdef check --weights` matches without building a module.
"""
import copy
import difflib
from dataclasses import dataclass

import networkx as nx

from compiler.accounting import MEMORY_ENV, blob_fits, human_bytes, memory_budget
from compiler.errors import NetdefError, NetdefErrors
from compiler.layers import registry
from compiler.layers.base import prod
from compiler.passes.shapes import infer_shapes

# Names listed in one line before "and N more": the report keeps them all.
SHOWN_NAMES = 12


@dataclass(frozen=True)
class WeightsReport:
    """What loading a weights file did. Layer names are Caffe's."""
    file: str            # the weights file; None for arrays given in Python
    loaded: tuple        # layers of the net whose blobs came from the file, in net order
    kept_fillers: tuple  # layers of the net with blobs that the file lacks: filler values
    #                      (a later layer of a name the net repeats: its Layer.key, "loss#2")
    ignored: tuple       # layers of the file with blobs that the net lacks, in file order
    renamed: tuple       # (file layer, net layer): ignored and unfilled with the same blob shapes

    def lines(self):
        """One line per thing a user should know: nothing when every layer was loaded."""
        source = self.file or "the weights dict"
        paired_file = {f for f, _ in self.renamed}
        paired_net = {n for _, n in self.renamed}
        lines = ["%s: the file's %s has the shape of the net's %s: fine-tuning? %s keeps its fillers"
                 % (source, f, n, n) for f, n in self.renamed]
        ignored = [n for n in self.ignored if n not in paired_file]
        if ignored:
            lines.append("%s: ignoring %s: not in the net" % (source, names(ignored)))
        unfilled = [n for n in self.kept_fillers if n not in paired_net]
        if unfilled:
            lines.append("%s: no weights for %s: %s its filler values"
                         % (source, names(unfilled), "it keeps" if len(unfilled) == 1 else "they keep"))
        return lines

    def problems(self, net):
        """The ignored and unfilled layers as located problems, one per layer: errors when
        loading strictly, warnings in `netdef check`."""
        source = self.file or "the weights dict"
        rename_of = dict((n, f) for f, n in self.renamed)
        rename_to = dict(self.renamed)
        out = []
        for key in self.kept_fillers:
            layer = net.layer(key)
            if key != layer.name:
                out.append(NetdefError(layer.file or net.file, layer.line, layer.name,
                                       "a later layer of the name %s: weights load into the first "
                                       "one, so this one keeps its fillers" % layer.name,
                                       "Caffe does the same; give it a name of its own to load weights "
                                       "into it"))
                continue
            renamed = ("; the file's %s has its shapes: fine-tuning?" % rename_of[key]) if key in rename_of else ""
            out.append(NetdefError(layer.file or net.file, layer.line, key,
                                   "%s has no weights for this layer%s" % (source, renamed),
                                   "Caffe keeps its filler values; load without strict to do the same"))
        for name in self.ignored:
            renamed = (": it has the shapes of the net's %s" % rename_to[name]) if name in rename_to else ""
            out.append(NetdefError(self.file, None, name, "a layer of the weights that is not in the net%s" % renamed,
                                   "Caffe skips the layers of a file that the net lacks; load without strict "
                                   "to do the same"))
        return out


def names(items):
    shown = ", ".join(items[:SHOWN_NAMES])
    return shown + (" and %d more" % (len(items) - SHOWN_NAMES) if len(items) > SHOWN_NAMES else "")


def net_blob_shapes(net, layer):
    """The shapes of a shaped layer's learnable blobs, in Caffe's order."""
    return [tuple(s) for s in registry.get(layer.type).blob_shapes(layer, [net.blobs[b].shape
                                                                           for b in layer.bottoms])]


def match_weights(net, file_layers, file=None, strict=False, max_memory=None):
    """Match a weights file's layers (ir.LayerBlobs) with a wired, shaped net as
    Caffe does. Returns ({layer name: [arrays in the net's blob shapes]}, WeightsReport);
    raises NetdefErrors with every blob that does not fit, for a file that fills nothing,
    and, when strict, for every ignored or unfilled layer. The arrays are views into the
    file (frontends/caffemodel.py): blobs the net uses that would exceed `max_memory`
    bytes (accounting.memory_budget) together are refused before any is read."""
    by_name = _first_by_name(net)
    wants = {name: net_blob_shapes(net, layer) for name, layer in by_name.items()}
    filled, errors, ignored, misfits = {}, [], [], set()
    reshaped = _Reshaped(net)
    for fl in file_layers:
        layer = by_name.get(fl.name)
        if layer is None:
            if fl.blobs and fl.name not in ignored:
                ignored.append(fl.name)
            continue
        want = wants[fl.name]
        bad = _misfit(fl, want)
        if bad is None:
            if want:
                filled[fl.name] = [a.reshape(w) for a, w in zip(fl.blobs, want)]
            continue
        misfits.add(fl.name)
        problem = _input_problem(net, reshaped, layer, fl, bad)
        if problem is None:
            where = (layer.file or net.file, layer.line, layer.name)
            problem = NetdefError(*where, _misfit_message(net, layer, file, fl, want, bad),
                                  "to learn this layer from scratch instead, rename it (Caffe's advice)")
        if str(problem) not in map(str, errors):
            errors.append(problem)
    # Every layer with blobs, by key: a later layer of a repeated name is never filled (Caffe
    # copies into the first), and says so among those that keep their fillers.
    weighted = [layer.key for layer in net.layers
                if (wants[layer.key] if layer.key in by_name else net_blob_shapes(net, layer))]
    loaded = tuple(n for n in weighted if n in filled)
    unfilled = [n for n in weighted if n not in filled and n not in misfits]
    report = WeightsReport(file, loaded, tuple(unfilled), tuple(ignored),
                           # a later layer of a repeated name can take no file layer's weights
                           _renamings(ignored, [n for n in unfilled if n in wants], file_layers, wants))
    if not errors and weighted and not loaded:
        errors.append(NetdefError(file, None, None, "%s fills no layer of the net: its layers with weights "
                                  "(%s) have none of the names of the net's (%s)"
                                  % (file or "the weights dict", names(ignored) or "none", names(weighted)),
                                  "layers match by name: these weights belong to another net"))
    elif strict:
        errors += report.problems(net)
    used = sum(fl.blobs[i].nbytes for fl in file_layers if fl.name in filled for i in range(len(fl.blobs)))
    budget = memory_budget(max_memory)
    if used > budget:
        errors.append(NetdefError(file, None, None, "the blobs the net uses from %s are %s, over the %s memory budget"
                                  % (file or "the weights dict", human_bytes(used), human_bytes(budget)),
                                  "raise the budget with --max-memory or $%s" % MEMORY_ENV))
    if errors:
        raise NetdefErrors(errors)
    return filled, report


def _first_by_name(net):
    """{layer name: the net's first layer of that name}, the one Caffe copies into."""
    by_name = {}
    for layer in net.layers:
        by_name.setdefault(layer.name, layer)
    return by_name


def _misfit(fl, want):
    """None if the file layer's blobs fill `want`; else the index of the first blob that
    does not fit, or -1 for another number of blobs."""
    if len(fl.blobs) != len(want):
        return -1
    for i, (arr, w, legacy) in enumerate(zip(fl.blobs, want, fl.legacy)):
        if not blob_fits(arr.shape, w, legacy):
            return i
    return None


def _dims(shape):
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _blob_name(net, layer, i):
    """"weight", "bias", "mean"...: the lowered module's name for the layer's blob i."""
    attrs = registry.get(layer.type).blob_attrs(layer, [net.blobs[b].shape for b in layer.bottoms])
    return attrs[i] if i < len(attrs) else "blob %d" % i


def _misfit_message(net, layer, file, fl, want, bad):
    source = file or "the weights dict"
    if bad < 0:
        return "%s has %d blobs for this layer (%s), the net %d (%s)" % (
            source, len(fl.blobs), ", ".join(_dims(a.shape) for a in fl.blobs) or "none",
            len(want), ", ".join(_dims(w) for w in want) or "none")
    return "blob %d (%s) is %s in %s, the net's is %s" % (
        bad, _blob_name(net, layer, bad), _dims(fl.blobs[bad].shape), source, _dims(want[bad]))


def _renamings(ignored, unfilled, file_layers, wants):
    """(file layer, net layer) pairs with the same blob shapes among the ignored and the
    unfilled layers: each unfilled layer, in net order, takes the ignored layer of its
    shapes whose name is closest to its own."""
    blobs = {}
    for fl in file_layers:
        if fl.name in ignored:
            blobs.setdefault(fl.name, fl)
    pairs, taken = [], set()
    for name in unfilled:
        fits = [f for f in ignored if f not in taken and _misfit(blobs[f], wants[name]) is None]
        if fits:
            best = max(fits, key=lambda f: difflib.SequenceMatcher(None, f, name).ratio())
            taken.add(best)
            pairs.append((best, name))
    return tuple(pairs)


# ---- blobs that do not fit because of the input ----

class _Reshaped:
    """The learnable blob shapes of every layer with the net's inputs at other shapes,
    computed on one copy of the net and remembered: explaining several misfits asks for
    the same sizes again."""

    def __init__(self, net):
        self.net, self.trial, self.known = net, None, {}

    def at(self, shapes):
        """({layer name: blob shapes}, {input blob name: shape}) with the inputs at `shapes`
        (the others, and all of them when empty, as the net file declares them); None if
        the net cannot take them."""
        key = tuple(sorted(shapes.items()))
        if key not in self.known:
            if self.trial is None:
                self.trial = copy.deepcopy(self.net)     # infer_shapes writes into the blobs
            try:
                infer_shapes(self.trial, shapes)
                self.known[key] = ({name: net_blob_shapes(self.trial, layer)
                                    for name, layer in _first_by_name(self.trial).items()},
                                   {self.trial.blobs[t].name: tuple(self.trial.blobs[t].shape)
                                    for t in self.trial.inputs})
            except NetdefError:
                self.known[key] = None
        return self.known[key]


def _input_problem(net, reshaped, layer, fl, bad):
    """When the net's input has a size for which `layer`'s blobs would fit the file's, the
    problem is the input: an error naming it, what it makes of the layer and what to feed.
    None when no input size explains the difference."""
    if bad < 0:
        return None          # the number of blobs does not depend on sizes
    ancestors = nx.ancestors(net.graph, layer.name) if layer.name in net.graph else set()
    current = {net.blobs[t].name: tuple(net.blobs[t].shape) for t in net.inputs}
    target = tuple(fl.blobs[bad].shape)

    def blob_at(shapes):
        """The layer's blob `bad` with the inputs at `shapes`; None if the net cannot take them."""
        found = reshaped.at(shapes)
        return None if found is None else found[0][layer.name][bad]

    def fits(shape):
        return shape is not None and blob_fits(target, shape, fl.legacy[bad])

    declared = reshaped.at({})
    for t in [t for t in net.inputs if net.blobs[t].producer in ancestors]:
        name = net.blobs[t].name
        if declared is not None and declared[1][name] != current[name]:
            shape = declared[1][name]
            if fits(blob_at(dict(current, **{name: shape}))):
                return _input_error(net, layer, t, shape, shape, bad, target)
        sizes = _spatial_sizes(current[name], target, lambda shape: blob_at(dict(current, **{name: shape})), fits)
        if sizes is not None:
            return _input_error(net, layer, t, *sizes, bad, target)
    return None


def _spatial_sizes(shape, target, blob_at, fits):
    """The smallest and the largest input shapes, scaled in their spatial axes (2 on) with
    the aspect kept, for which the blob fits `target`; None if none does. The blob's size
    grows with the input's, so two binary searches find the range."""
    if len(shape) < 3:
        return None
    last = shape[-1]

    def scaled(s):
        return shape[:2] + tuple(max(1, round(d * s / last)) for d in shape[2:-1]) + (s,)

    def count(s):
        blob = blob_at(scaled(s))
        return -1 if blob is None else prod(blob)

    want = prod(target)
    if count(last) == count(2 * last):
        return None               # the blob does not depend on the input's size
    lo, hi = 1, max(2 * last, 16)
    while count(hi) < want:       # grow until the blob is at least as big as the file's
        if hi > 1 << 16:
            return None
        hi *= 2
    while lo < hi:                # the smallest size whose blob is as big as the file's
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < want else (lo, mid)
    smallest = lo
    if not fits(blob_at(scaled(smallest))):
        return None
    hi = smallest
    while count(hi * 2) == want and hi < 1 << 16:
        hi *= 2
    lo, hi = hi, hi * 2           # count(lo) == want < count(hi) (or hi is out of range)
    while hi - lo > 1:            # the largest size whose blob is the file's
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) == want else (lo, mid)
    return scaled(smallest), scaled(lo)


def _input_error(net, layer, t, smallest, largest, bad, target):
    blob = net.blobs[t]
    have = tuple(blob.shape)
    want = net_blob_shapes(net, layer)[bad]
    made = [net.blobs[b] for b in layer.bottoms if b != t]
    what = _blob_name(net, layer, bad)
    if made:
        effect = "makes %s, so %s needs a %s %s" % (", ".join("%s %s" % (b.name, _dims(b.shape)) for b in made),
                                                    layer.name, _dims(want), what)
    else:
        effect = "gives %s a %s %s" % (layer.name, _dims(want), what)
    if smallest[:2] == have[:2]:
        feed = _dims(smallest[2:]) + ("" if largest == smallest else " to " + _dims(largest[2:]))
    elif smallest[2:] == have[2:] and smallest[0] == have[0]:
        feed = "%d channels" % smallest[1]
    else:
        feed = _dims(smallest)
    source = net.layer(blob.producer)
    return NetdefError(source.file or net.file, source.line, None,
                       "input '%s' %s %s; the weights have %s: feed %s"
                       % (blob.name, _dims(have), effect, _dims(target), feed),
                       "the weights fix the size of what reaches %s: resize or crop the input" % layer.name)
