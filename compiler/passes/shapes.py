"""Shape inference with Caffe's rules, layer by layer in net order.

Each layer's rule lives in its LayerDef. This pass feeds it the bottoms' shapes, records
the tops' shapes on the blobs, and turns every failure into a located NetdefError. It
goes on past a failing layer (skipping only what depends on it) so that one run reports
every problem. `input_shapes` ({blob name: shape}) overrides what the net declares, as
Caffe's Net::Reshape does when the inputs change size. An input layer's tops that it does
not give are shaped by the source-shapes function registered for the layer's type (a data
layer's source, see compiler/layers/registry.py), else by the layer's own rule.
"""
from compiler.errors import NetdefError, NetdefErrors
from compiler.layers import registry
from compiler.layers.base import MAX_AXES, ShapeError

# Larger dims than this are typos, not networks (and would overflow Caffe's int32 counts).
MAX_DIM = 1 << 31


def unknown_type_error(layer):
    if not layer.type:
        return NetdefError(layer.file, layer.line, layer.name, "the layer has no type",
                           'add type: "..." with its Caffe type (Convolution, ReLU, ...)')
    close = registry.close_matches(layer.type)
    hint = ("did you mean %s? " % " or ".join("'%s'" % c for c in close)) if close else ""
    hint += ("to use a custom layer, register its shape rule and lowering: "
             "netdef.register_layer(MyLayer()) (see README, \"Custom layers\")")
    return NetdefError(layer.file, layer.line, layer.name,
                       "unsupported layer type '%s'" % layer.type, hint)


def check_dims(shape, what):
    if len(shape) > MAX_AXES:
        raise ShapeError("%s has %d axes; Caffe's blobs have at most %d (kMaxBlobAxes)"
                         % (what, len(shape), MAX_AXES))
    for d in shape:
        if d <= 0:
            raise ShapeError("%s has a non-positive dimension: %s" % (what, list(shape)),
                             "every dimension must be at least 1")
        if d >= MAX_DIM:
            raise ShapeError("%s has an absurdly large dimension: %s" % (what, list(shape)))


def check_count(blobs, bounds, message):
    """A LayerDef's (min, max) bottom or top count; max None means any number."""
    lo, hi = bounds
    n = len(blobs)
    if n < lo or (hi is not None and n > hi):
        want = str(lo) if lo == hi else ("%d or more" % lo if hi is None else "%d to %d" % (lo, hi))
        raise ShapeError(message % (want, n))


def infer_shapes(net, input_shapes=None):
    input_shapes = dict(input_shapes or {})
    errors = []
    # One tuple per distinct shape: in-place tops and most layers of a big net repeat a few
    # shapes, and a million blobs would otherwise hold a million equal tuples.
    distinct = {}
    for layer in net.layers:
        defn = registry.get(layer.type)
        if defn is None:
            errors.append(unknown_type_error(layer))
            continue
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        if any(s is None for s in shapes):
            continue  # an earlier error already explains this layer's inputs
        try:
            check_count(layer.bottoms, defn.bottoms, "%s takes %%s bottoms, got %%d" % layer.type)
            check_count(layer.tops, defn.tops, "%s gives %%s tops, got %%d" % layer.type)
            given = [input_shapes.get(net.blobs[t].name) for t in layer.tops]
            if defn.is_input and not all(g is not None for g in given):
                given = _with_source_shapes(layer, net.file, given)
            if not layer.bottoms and all(g is not None for g in given):
                out = [tuple(int(d) for d in g) for g in given]
            else:
                out = [tuple(int(d) for d in s) for s in defn.shape(layer, shapes)]
                out = [tuple(g) if g is not None else s for g, s in zip(given, out)]
            for t, s in zip(layer.tops, out):
                check_dims(s, "top '%s'" % net.blobs[t].name)
        except ShapeError as e:
            errors.append(NetdefError(layer.file, layer.line, layer.name, _with_shapes(e.message, net, layer),
                                      e.hint))
            continue
        except NetdefError as e:        # a source-shapes function that could not read the source
            errors.extend(getattr(e, "errors", [e]))
            continue
        for t, s in zip(layer.tops, out):
            net.blobs[t].shape = distinct.setdefault(s, s)
    if errors:
        raise NetdefErrors(errors)
    return net


def _with_source_shapes(layer, net_file, given):
    """The shapes of an input layer's tops: those the user gave, the others from the
    source-shapes function registered for its type (registry.register_source_shapes:
    netdef/data reads a data layer's first record), else None."""
    source = registry.source_shapes(layer, net_file)
    if source is None:
        return given
    if len(source) != len(layer.tops):
        raise ShapeError("the source of this %s layer gives %d top shapes for its %d tops"
                         % (layer.type, len(source), len(layer.tops)))
    return [g if g is not None else s for g, s in zip(given, source)]


def _with_shapes(message, net, layer):
    if not layer.bottoms:
        return message
    shapes = ", ".join("%s %s" % (net.blobs[b].name, list(net.blobs[b].shape)) for b in layer.bottoms)
    return "%s (bottoms: %s)" % (message, shapes)

