"""The layer registry: Caffe type name -> LayerDef instance, and the hooks that tell the
compiler what only the code above it knows.

Built-in layers are listed in compiler/layers/__init__.py, which registers them when this
package is first imported. A user adds a layer type (a custom layer, a Python layer, a
fork's layer) with `register(MyLayerDef())`.

A data layer's top shapes come from its source (the first image of a list, the first
record of a database), which the compiler does not read: netdef/data does. It registers a
source-shapes function per type, `register_source_shapes("ImageData", fn)`, and the
shapes pass asks it when the user gives no shape for those tops.
"""
import difflib

_REGISTRY = {}
_SOURCE_SHAPES = {}


def register(defn, replace=False):
    if not defn.type:
        raise ValueError("a LayerDef needs a `type`")
    if defn.type in _REGISTRY and not replace:
        raise ValueError("layer type %r is already registered (pass replace=True)" % defn.type)
    _REGISTRY[defn.type] = defn
    return defn


def unregister(type_name):
    _REGISTRY.pop(type_name, None)


def get(type_name):
    return _REGISTRY.get(type_name)


def known_types():
    return sorted(_REGISTRY)


def close_matches(type_name):
    return difflib.get_close_matches(type_name, known_types(), n=3, cutoff=0.6) or \
        [t for t in known_types() if t.lower() == type_name.lower()]


def register_source_shapes(type_name, fn, replace=False):
    """fn(layer, net_file) -> the shapes of the layer's tops (a list, one tuple per top)
    read from its source, or None when it cannot tell. `layer` is the IR Layer (its
    LayerParameter is `layer.param`), `net_file` the path of the net file, against which
    Caffe-relative paths may be resolved. fn may raise NetdefError (an unreadable source)
    or ShapeError; the shapes pass reports either at the layer."""
    if type_name in _SOURCE_SHAPES and not replace:
        raise ValueError("layer type %r already has a source-shapes function (pass replace=True)"
                         % type_name)
    _SOURCE_SHAPES[type_name] = fn
    return fn


def unregister_source_shapes(type_name):
    _SOURCE_SHAPES.pop(type_name, None)


def source_shapes(layer, net_file):
    """The top shapes a registered source-shapes function gives for `layer`, or None."""
    fn = _SOURCE_SHAPES.get(layer.type)
    return None if fn is None else fn(layer, net_file)
