"""The layer registry: Caffe type name -> LayerDef instance.

Built-in layers are listed in compiler/layers/__init__.py. A user adds a layer type
(a custom layer, a Python layer, a fork's layer) with `register(MyLayerDef())`.

A data layer's top shapes come from its source (the first image, record or HDF5 row after
the transform), which the compiler does not read: the package that reads sources (netdef's
data package) registers `fn(layer, net_file) -> [top shapes] or None` per type with
`register_source_shapes`, and the shapes pass asks it before the type's own shape rule.
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
    _load_builtins()
    return _REGISTRY.get(type_name)


def known_types():
    _load_builtins()
    return sorted(_REGISTRY)


def close_matches(type_name):
    return difflib.get_close_matches(type_name, known_types(), n=3, cutoff=0.6) or \
        [t for t in known_types() if t.lower() == type_name.lower()]


def _load_builtins():
    import compiler.layers  # noqa: F401  (registers the built-in layers on import)


def register_source_shapes(type_name, fn):
    """fn(layer, net_file) -> the top shapes read from the layer's source, or None when the
    source is absent (the type's shape rule then applies); it raises ShapeError when the
    source is there but unusable."""
    _SOURCE_SHAPES[type_name] = fn


def source_shapes(layer, net_file):
    fn = _SOURCE_SHAPES.get(layer.type)
    return fn(layer, net_file) if fn is not None else None
