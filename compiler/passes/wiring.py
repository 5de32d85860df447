"""Wire layers into a graph: Caffe blob names -> SSA ids, with Caffe's own checks.

- A top equal to one of the layer's bottoms is written in place: it gets a fresh SSA id
  ("conv1#1", "conv1#2", ...) and becomes the value users see as "conv1".
- An explicit Split does not copy in Caffe: its tops share memory with its bottom. An
  in-place layer on one of them rewrites them all, so they form one alias group.
- A layer whose LayerDef has `auto_top` and fewer tops than it needs gets anonymous ones,
  named "<layer>/(automatic)" (Caffe calls them all "(automatic)"; netdef's outputs are
  keyed by name, so each carries its layer's): they are net outputs no layer can read.
- Caffe refuses a top written by two layers unless in place, and an in-place write to a
  blob that another layer has already read ("produced by multiple sources").
- Caffe accepts two layers of one name (BVLC's mnist_autoencoder has two "loss"): the
  graph knows layers by Layer.key, which is unique.
"""
import difflib

from compiler.errors import NetdefError, NetdefErrors
from compiler.ir import Blob
from compiler.layers import registry


def wire(net):
    errors = []
    current = {}      # Caffe name -> SSA id of its value now
    aliases = {}      # Caffe name -> set of names sharing its memory (explicit Split)
    versions = {}     # Caffe name -> number of values written so far
    first_reader = {}  # SSA id -> name of the first layer that reads it
    automatic = {}    # anonymous tops (auto_top): Caffe name -> SSA id, readable by no layer
    net.blobs, net.latest, net.blob_order = {}, {}, []
    unknown_bottom_hint = _UnknownBottomHints(net)

    def fail(layer, message, hint=None):
        errors.append(NetdefError(layer.file or net.file, layer.line, layer.name, message, hint))

    for layer in net.layers:
        param = layer.param
        # Plain lists: each read of a protobuf field makes a new wrapper.
        bottom_names, top_names = list(param.bottom), list(param.top)
        if not layer.name:
            fail(layer, "layer of type %s has no name" % (layer.type or "?"), "add name: \"...\"")
        # Built as lists, kept as tuples (a third smaller, and a million of each in a big net).
        bottoms, tops = [], []
        for b in bottom_names:
            if b not in current:
                fail(layer, "unknown bottom blob '%s'" % b, unknown_bottom_hint(b, current))
                # A shapeless stand-in, so that this layer's tops still exist: the layers
                # below report their own problems instead of a cascade of unknown bottoms,
                # and the shapes pass skips everything that depends on it.
                sid = "?" + b
                net.blobs.setdefault(sid, Blob(sid, b, None))
                bottoms.append(sid)
                continue
            bottoms.append(current[b])
        for b, sid in zip(bottom_names, bottoms):
            if net.blobs[sid].producer is None:
                continue
            if b in top_names and sid in first_reader:
                fail(layer, "top blob '%s' produced by multiple sources: layer '%s' read it before "
                     "this in-place layer rewrites it (Caffe refuses this net)" % (b, first_reader[sid]),
                     "give this layer a new top name, or move it before '%s'" % first_reader[sid])
            first_reader.setdefault(sid, layer.name)
        for i, t in enumerate(top_names):
            in_place = t in bottom_names
            if t in current and not in_place:
                fail(layer, "top blob '%s' produced by multiple sources (already written by layer "
                     "'%s')" % (t, net.layer(net.blobs[current[t]].producer).name),
                     "rename the top, or make it in place by also listing it as a bottom")
                continue
            if t in top_names[:i]:
                fail(layer, "top blob '%s' listed twice" % t)
                continue
            k = versions.get(t, 0)
            versions[t] = k + 1
            sid = t if k == 0 else "%s#%d" % (t, k)
            net.blobs[sid] = Blob(sid, t, layer.key)
            tops.append(sid)
            if k == 0:                  # its first value (a list scan here made wiring quadratic)
                net.blob_order.append(t)
            group = aliases.get(t, {t})
            for name in group:
                current[name] = sid
        defn = registry.get(layer.type)
        if defn is not None and defn.auto_top and not top_names:
            for k in range(defn.tops[0]):
                name = "%s/(automatic)" % layer.key + ("" if k == 0 else str(k))
                net.blobs[name] = Blob(name, name, layer.key)
                tops.append(name)
                net.blob_order.append(name)
                automatic[name] = name
        layer.bottoms, layer.tops = tuple(bottoms), tuple(tops)
        if defn is not None and defn.aliases_bottom and len(bottoms) == 1:
            group = set(aliases.get(bottom_names[0], {bottom_names[0]})) | set(top_names)
            for name in group:
                aliases[name] = group
    net.latest = dict(current)
    net.latest.update(automatic)
    if errors:
        raise NetdefErrors(errors)
    return net



def _writers(layers):
    """{blob name: the first of `layers` that writes it}."""
    writers = {}
    for layer in layers:
        for t in layer.param.top:
            writers.setdefault(t, layer.name)
    return writers


class _UnknownBottomHints:
    """Why no value of a blob exists yet, as a hint. The maps of which layer writes what
    are made at the first unknown bottom, once: a valid net never needs them, and a net
    full of unknown bottoms still costs one scan."""

    def __init__(self, net):
        self.net = net
        self.writers = self.excluded = None

    def __call__(self, name, current):
        if self.writers is None:
            self.writers, self.excluded = _writers(self.net.layers), _writers(self.net.excluded_layers)
        if name in self.writers:
            return ("'%s' is written later, by layer '%s': layers run in file order, so this is "
                    "a cycle or a misplaced layer" % (name, self.writers[name]))
        close = difflib.get_close_matches(name, list(current), n=1, cutoff=0.75)
        if close:
            return "did you mean '%s'?" % close[0]
        if name in self.excluded:
            return ("'%s' is written only by layer '%s', which the %s phase excludes (its "
                    "include/exclude rules)" % (name, self.excluded[name], self.net.phase))
        return "no layer has top '%s'" % name
